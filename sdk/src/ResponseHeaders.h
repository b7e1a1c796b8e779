// What the SDK takes from the headers of the relay's HTTP answers (attachment transfers and
// the WebSocket upgrade), apart from Beast so it can be tested and fuzzed on its own: the
// values arrive from the network and are checked before anything is written where they point.
//
// Thread rule: free functions, no shared state; any thread.
#pragma once

#include <cstdint>
#include <optional>
#include <string_view>

#include "sotto/Result.h"

namespace sotto::net {

// Retry-After as delay-seconds (RFC 9110 10.2.3), in ms; 0 when it is malformed, an
// HTTP-date, or more than a day.
uint64_t parse_retry_after(std::string_view value);

// Content-Range: "bytes first-last/complete" (complete may be "*": unknown).
struct ContentRange {
  uint64_t first = 0;
  uint64_t last = 0;                 // inclusive
  std::optional<uint64_t> complete;  // the whole representation's length, when given
};
// nullopt unless `value` is a well-formed byte range with first <= last < complete.
std::optional<ContentRange> parse_content_range(std::string_view value);

// Where the body of an answer to GET (from byte `offset` of the blob, a Range request when
// offset > 0) goes.
struct DownloadTarget {
  bool write = false;   // the body is blob bytes (200 or 206); else an error message
  bool append = false;  // after the `offset` bytes already kept; else the file starts over
};
// kProtocolError, and nothing may be written, for a 206 whose Content-Range is missing,
// malformed, does not start at `offset`, or disagrees with the body's Content-Length.
Result<DownloadTarget> download_target(int status, uint64_t offset,
                                       std::optional<std::string_view> content_range,
                                       std::optional<uint64_t> content_length);

}  // namespace sotto::net
