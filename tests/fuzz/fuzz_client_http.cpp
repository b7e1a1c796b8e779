// Untrusted bytes: the head of an HTTP/1.1 answer from the relay (or whatever answers in its
// place) to an attachment download or upload, through the same parser the SDK uses (Beast's
// response parser, reading the header first), then what the SDK takes from it: the status,
// Retry-After, and the Content-Range that says where a resumed download's bytes go. The first
// input byte picks the byte the download resumes from.
//
// Checked: a Content-Range that parses is well-formed (first <= last < complete) and prints
// back to itself; a download answer whose body is appended to the bytes already kept starts
// exactly where they end and is as long as its range says; Retry-After is at most a day.
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <optional>
#include <string>
#include <string_view>

#include "ResponseHeaders.h"

namespace http = boost::beast::http;

namespace {

[[noreturn]] void violated(const std::string& what) {
  std::fprintf(stderr, "client HTTP invariant violated: %s\n", what.c_str());
  std::abort();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  const uint64_t offsets[] = {0, 1, 65536, 300'000, ~uint64_t{0} - 1};
  uint64_t offset = offsets[data[0] % 5];
  http::response_parser<http::buffer_body> parser;
  parser.body_limit(boost::none);
  boost::beast::error_code ec;
  parser.put(boost::asio::buffer(data + 1, size - 1), ec);
  if (!parser.is_header_done()) return 0;
  const auto& res = parser.get();
  int status = static_cast<int>(res.result_int());
  if (auto it = res.find(http::field::retry_after); it != res.end()) {
    uint64_t ms = sotto::net::parse_retry_after(it->value());
    if (ms > 86'400'000) violated("Retry-After of " + std::to_string(ms) + " ms");
  }
  std::optional<std::string> range_text;
  if (auto it = res.find(http::field::content_range); it != res.end())
    range_text = std::string(it->value());
  std::optional<sotto::net::ContentRange> range;
  if (range_text) {
    range = sotto::net::parse_content_range(*range_text);
    if (range) {
      if (range->first > range->last || (range->complete && *range->complete <= range->last))
        violated("accepted the Content-Range \"" + *range_text + "\"");
      std::string printed = "bytes " + std::to_string(range->first) + "-" +
                            std::to_string(range->last) + "/" +
                            (range->complete ? std::to_string(*range->complete) : "*");
      auto again = sotto::net::parse_content_range(printed);
      if (!again || again->first != range->first || again->last != range->last ||
          again->complete != range->complete)
        violated("the Content-Range \"" + printed + "\" does not parse back to itself");
    }
  }
  std::optional<uint64_t> length;
  if (parser.content_length()) length = *parser.content_length();
  auto target = sotto::net::download_target(
      status, offset, range_text ? std::optional<std::string_view>(*range_text) : std::nullopt,
      length);
  if (!target.ok() || !target->write) return 0;
  if (status != 200 && status != 206)
    violated("the body of a " + std::to_string(status) + " is kept");
  // Bytes that continue a file (or start it for a 206) must be the ones it lacks.
  if (status == 206) {
    if (!range)
      violated("a partial answer without a valid Content-Range is kept (\"" +
               range_text.value_or("") + "\")");
    if (range->first != (target->append ? offset : 0))
      violated("the bytes " + *range_text + " are kept as if they started at byte " +
               std::to_string(target->append ? offset : 0));
    if (length && *length != range->last - range->first + 1)
      violated("a body of " + std::to_string(*length) + " bytes is kept for the range " +
               *range_text);
  } else if (target->append) {
    violated("a whole blob (200) is appended to a partial one");
  }
  return 0;
}
