// The HTTP header values and path pieces the relay parses itself, free of Beast so that they
// are unit-tested and fuzzed alone.
#pragma once

#include <cstdint>
#include <string_view>

namespace sotto::relay {

// An attachment id: 32 lowercase hex digits (protocol.md section 2).
bool valid_attachment_id(std::string_view id);

// What a `Range` header asks of a body of `size` bytes (RFC 9110 section 14).
struct ByteRange {
  enum Kind {
    kWhole,          // no Range, or one the relay ignores: answer 200 with the whole body
    kPartial,        // answer 206 with bytes [first, last]
    kUnsatisfiable,  // answer 416 with "Content-Range: bytes */size"
  };
  Kind kind = kWhole;
  uint64_t first = 0;  // valid only for kPartial
  uint64_t last = 0;   // inclusive; valid only for kPartial
};

// One range of the forms "bytes=a-b", "bytes=a-" and "bytes=-n". A header that is not one
// valid byte range (another unit, several ranges, "a-b" with b < a, a number with a sign or
// other characters) is ignored, as RFC 9110 allows. A valid range that starts at or past the
// end of the body, a suffix of 0 bytes, or any range of an empty body is unsatisfiable.
// Numbers too large for 64 bits count as "past any end".
ByteRange parse_range(std::string_view header, uint64_t size);

}  // namespace sotto::relay
