#include "HttpFields.h"

#include <algorithm>
#include <limits>

namespace sotto::relay {
namespace {

constexpr uint64_t kMax = std::numeric_limits<uint64_t>::max();

// A non-empty run of decimal digits; saturates at kMax instead of wrapping.
bool parse_digits(std::string_view s, uint64_t& out) {
  if (s.empty()) return false;
  uint64_t v = 0;
  for (char c : s) {
    if (c < '0' || c > '9') return false;
    uint64_t d = static_cast<uint64_t>(c - '0');
    v = v > (kMax - d) / 10 ? kMax : v * 10 + d;
  }
  out = v;
  return true;
}

}  // namespace

bool valid_attachment_id(std::string_view id) {
  if (id.size() != 32) return false;
  return std::all_of(id.begin(), id.end(),
                     [](char c) { return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'); });
}

ByteRange parse_range(std::string_view h, uint64_t size) {
  constexpr std::string_view kUnit = "bytes=";
  ByteRange whole;
  if (!h.starts_with(kUnit)) return whole;
  h.remove_prefix(kUnit.size());
  auto dash = h.find('-');
  if (dash == std::string_view::npos || h.find(',') != std::string_view::npos) return whole;
  std::string_view a = h.substr(0, dash), b = h.substr(dash + 1);
  ByteRange unsatisfiable{ByteRange::kUnsatisfiable};
  if (a.empty()) {  // the last n bytes
    uint64_t n = 0;
    if (!parse_digits(b, n)) return whole;
    if (n == 0 || size == 0) return unsatisfiable;
    return ByteRange{ByteRange::kPartial, n >= size ? 0 : size - n, size - 1};
  }
  uint64_t first = 0, last = kMax;
  if (!parse_digits(a, first)) return whole;
  if (!b.empty() && (!parse_digits(b, last) || last < first)) return whole;
  if (first >= size) return unsatisfiable;
  return ByteRange{ByteRange::kPartial, first, std::min(last, size - 1)};
}

}  // namespace sotto::relay
