#include "sotto/Bytes.h"

#include <sodium.h>

namespace sotto {

std::string to_hex(ByteView bytes) {
  static constexpr char kDigits[] = "0123456789abcdef";
  std::string out;
  out.reserve(bytes.size() * 2);
  for (uint8_t b : bytes) {
    out.push_back(kDigits[b >> 4]);
    out.push_back(kDigits[b & 0xf]);
  }
  return out;
}

namespace {
int nibble(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}
}  // namespace

bool from_hex(std::string_view hex, Bytes& out) {
  if (hex.size() % 2) return false;
  Bytes result;
  result.reserve(hex.size() / 2);
  for (size_t i = 0; i < hex.size(); i += 2) {
    int hi = nibble(hex[i]), lo = nibble(hex[i + 1]);
    if (hi < 0 || lo < 0) return false;
    result.push_back(static_cast<uint8_t>(hi << 4 | lo));
  }
  out = std::move(result);
  return true;
}

Bytes new_message_id(uint64_t now_ms) {
  Bytes id(16);
  randombytes_buf(id.data(), id.size());
  for (size_t i = 0; i < 6; ++i) id[i] = static_cast<uint8_t>(now_ms >> (40 - 8 * i));
  id[6] = static_cast<uint8_t>(0x70 | (id[6] & 0x0f));
  id[8] = static_cast<uint8_t>(0x80 | (id[8] & 0x3f));
  return id;
}

}  // namespace sotto
