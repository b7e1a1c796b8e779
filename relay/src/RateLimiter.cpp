#include "RateLimiter.h"

#include <algorithm>
#include <charconv>
#include <cmath>

namespace sotto::relay {

bool RateSpec::parse(std::string_view text, RateSpec& out) {
  if (text == "off" || text == "0") {
    out = RateSpec{};
    return true;
  }
  auto slash = text.find('/');
  if (slash == std::string_view::npos) return false;
  double rate = 0;
  auto r = std::from_chars(text.data(), text.data() + slash, rate);
  if (r.ec != std::errc() || r.ptr != text.data() + slash || !(rate > 0)) return false;
  std::string_view rest = text.substr(slash + 1);
  std::string_view burst_text;
  if (auto colon = rest.find(':'); colon != std::string_view::npos) {
    burst_text = rest.substr(colon + 1);
    rest = rest.substr(0, colon);
  }
  // Period: an optional number, then a unit.
  size_t i = 0;
  while (i < rest.size() && rest[i] >= '0' && rest[i] <= '9') ++i;
  uint64_t n = 1;
  if (i > 0) {
    auto rn = std::from_chars(rest.data(), rest.data() + i, n);
    if (rn.ec != std::errc() || n == 0) return false;
  }
  std::string_view unit = rest.substr(i);
  uint64_t unit_ms = 0;
  if (unit == "ms")
    unit_ms = 1;
  else if (unit == "s")
    unit_ms = 1000;
  else if (unit == "m")
    unit_ms = 60'000;
  else if (unit == "h")
    unit_ms = 3'600'000;
  else if (unit == "d")
    unit_ms = 86'400'000;
  else
    return false;
  double burst = rate;
  if (!burst_text.empty()) {
    auto rb = std::from_chars(burst_text.data(), burst_text.data() + burst_text.size(), burst);
    if (rb.ec != std::errc() || rb.ptr != burst_text.data() + burst_text.size() || !(burst >= 1))
      return false;
  }
  out.rate = rate;
  out.period_ms = n * unit_ms;
  out.burst = burst;
  out.enabled = true;
  return true;
}

std::string RateSpec::to_string() const {
  if (!enabled) return "off";
  auto num = [](double v) {
    std::string s = std::to_string(v);
    s.erase(s.find_last_not_of('0') + 1);
    if (!s.empty() && s.back() == '.') s.pop_back();
    return s;
  };
  // The largest unit that divides the period: "60/1m", not "60/60000ms".
  std::string period = std::to_string(period_ms) + "ms";
  for (auto [unit, ms] :
       {std::pair{"d", 86'400'000ull}, {"h", 3'600'000ull}, {"m", 60'000ull}, {"s", 1000ull}}) {
    if (period_ms % ms == 0) {
      period = std::to_string(period_ms / ms) + unit;
      break;
    }
  }
  std::string s = num(rate) + "/" + period;
  if (burst != rate) s += ":" + num(burst);
  return s;
}

void RateLimiter::refill(Bucket& b, uint64_t now_ms) const {
  if (now_ms > b.updated_ms) {
    double add = static_cast<double>(now_ms - b.updated_ms) * spec_.rate /
                 static_cast<double>(spec_.period_ms);
    b.tokens = std::min(spec_.burst, b.tokens + add);
    b.updated_ms = now_ms;
  }
}

uint64_t RateLimiter::take(std::string_view key, uint64_t now_ms, double cost) {
  if (!spec_.enabled) return 0;
  std::lock_guard lock(mu_);
  auto [it, inserted] = buckets_.try_emplace(std::string(key), Bucket{spec_.burst, now_ms});
  Bucket& b = it->second;
  refill(b, now_ms);
  if (b.tokens >= cost) {
    b.tokens -= cost;
    return 0;
  }
  double missing = cost - b.tokens;
  if (cost > spec_.burst) missing = spec_.burst;  // never satisfiable at once; say when full
  double ms = std::ceil(missing * static_cast<double>(spec_.period_ms) / spec_.rate);
  return std::max<uint64_t>(1, static_cast<uint64_t>(ms));
}

void RateLimiter::give_back(std::string_view key, double cost) {
  if (!spec_.enabled) return;
  std::lock_guard lock(mu_);
  auto it = buckets_.find(std::string(key));
  if (it != buckets_.end()) it->second.tokens = std::min(spec_.burst, it->second.tokens + cost);
}

void RateLimiter::sweep(uint64_t now_ms) {
  std::lock_guard lock(mu_);
  for (auto it = buckets_.begin(); it != buckets_.end();) {
    refill(it->second, now_ms);
    if (it->second.tokens >= spec_.burst)
      it = buckets_.erase(it);
    else
      ++it;
  }
}

size_t RateLimiter::size() const {
  std::lock_guard lock(mu_);
  return buckets_.size();
}

bool ConcurrencyLimiter::acquire(const std::string& key) {
  if (max_ == 0) return true;
  std::lock_guard lock(mu_);
  uint32_t& n = counts_[key];
  if (n >= max_) return false;
  ++n;
  return true;
}

void ConcurrencyLimiter::release(const std::string& key) {
  if (max_ == 0) return;
  std::lock_guard lock(mu_);
  auto it = counts_.find(key);
  if (it == counts_.end()) return;
  if (--it->second == 0) counts_.erase(it);
}

}  // namespace sotto::relay
