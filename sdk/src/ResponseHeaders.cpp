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
  (void)content_range;
  (void)content_length;
  bool ok = status == 200 || status == 206;
  // A 200 to a ranged request is the whole blob: start the file over.
  return DownloadTarget{ok, status == 206 && offset > 0};
}

}  // namespace sotto::net
