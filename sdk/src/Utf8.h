// UTF-8 checks for text that goes into content: libprotobuf refuses to parse a proto3
// string field that is not well-formed UTF-8, so every receiver would drop such a message.
#pragma once

#include <cstddef>
#include <string>
#include <string_view>

namespace sotto {

// True when `s` is well-formed UTF-8 (RFC 3629): no overlong forms, no surrogates, nothing
// above U+10FFFF, no sequence cut short.
bool is_valid_utf8(std::string_view s);

// `s` with each ill-formed part replaced by U+FFFD: for names the user did not type, such as
// a file name from a file system that allows any bytes.
std::string repair_utf8(std::string_view s);

// The last at most `max_bytes` bytes of well-formed `s`, starting on a character boundary.
std::string_view utf8_tail(std::string_view s, size_t max_bytes);

}  // namespace sotto
