#include "ResponseHeaders.h"

#include <charconv>
#include <string>

namespace sotto::net {

namespace {

// A whole decimal number (no sign, no spaces) that fits in 64 bits.
std::optional<uint64_t> number(std::string_view s) {
  uint64_t v = 0;
  if (s.empty()) return std::nullopt;
  auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  if (ec != std::errc() || p != s.data() + s.size()) return std::nullopt;
  return v;
}

}  // namespace

uint64_t parse_retry_after(std::string_view value) {
  auto seconds = number(value);
  if (!seconds || *seconds > 86400) return 0;
  return *seconds * 1000;
}

std::optional<ContentRange> parse_content_range(std::string_view value) {
  constexpr std::string_view kUnit = "bytes ";
  if (value.substr(0, kUnit.size()) != kUnit) return std::nullopt;
  value.remove_prefix(kUnit.size());
  size_t dash = value.find('-'), slash = value.find('/');
  if (dash == std::string_view::npos || slash == std::string_view::npos || dash > slash)
    return std::nullopt;
  auto first = number(value.substr(0, dash));
  auto last = number(value.substr(dash + 1, slash - dash - 1));
  if (!first || !last || *first > *last) return std::nullopt;
  ContentRange r{*first, *last, std::nullopt};
  std::string_view complete = value.substr(slash + 1);
  if (complete != "*") {
    r.complete = number(complete);
    if (!r.complete || *r.complete <= *last) return std::nullopt;
  }
  return r;
}

Result<DownloadTarget> download_target(int status, uint64_t offset,
                                       std::optional<std::string_view> content_range,
                                       std::optional<uint64_t> content_length) {
  // A 200 is the whole blob, even to a ranged request: the file starts over.
  if (status == 200) return DownloadTarget{true, false};
  if (status != 206) return DownloadTarget{false, false};
  // A 206 continues the file only with the bytes it lacks: bytes from elsewhere would sit at
  // the wrong place, and the whole download would fail its digest only at the end.
  auto refuse = [&](const std::string& why) {
    return make_error(ErrorCode::kProtocolError, "the relay answered a download from byte " +
                                                     std::to_string(offset) +
                                                     " with a partial content that " + why +
                                                     "; nothing of it was kept: try again");
  };
  if (!content_range) return refuse("does not say which bytes it holds");
  auto range = parse_content_range(*content_range);
  if (!range)
    return refuse("has a malformed Content-Range (\"" + std::string(content_range->substr(0, 100)) +
                  "\")");
  if (range->first != offset) return refuse("starts at byte " + std::to_string(range->first));
  if (content_length && *content_length != range->last - range->first + 1)
    return refuse("is " + std::to_string(*content_length) + " bytes long, not the " +
                  std::to_string(range->last - range->first + 1) + " its Content-Range names");
  return DownloadTarget{true, offset > 0};
}

}  // namespace sotto::net
