// Byte strings as sotto passes them around, and hex helpers.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "sotto/export.h"

namespace sotto {

using Bytes = std::vector<uint8_t>;
using ByteView = std::span<const uint8_t>;

inline ByteView as_bytes(std::string_view s) {
  return {reinterpret_cast<const uint8_t*>(s.data()), s.size()};
}
inline std::string_view as_chars(ByteView b) {
  return {reinterpret_cast<const char*>(b.data()), b.size()};
}

SOTTO_API std::string to_hex(ByteView bytes);
// false (and `out` untouched) on odd length or a non-hex character.
SOTTO_API bool from_hex(std::string_view hex, Bytes& out);

// A new message id as protocol.md section 2 defines it: 16 bytes in UUIDv7 layout, the
// 48-bit milliseconds `now_ms` first, then random bits (version and variant set).
SOTTO_API Bytes new_message_id(uint64_t now_ms);

}  // namespace sotto
