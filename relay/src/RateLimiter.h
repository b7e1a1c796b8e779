// Token buckets keyed by a string (an address, an account, a device, a pair). Thread-safe.
// The clock is a parameter so tests can drive it.
#pragma once

#include <cstdint>
#include <mutex>
#include <string>
#include <string_view>
#include <unordered_map>

namespace sotto::relay {

// `rate` tokens per `period_ms`, holding at most `burst`. A disabled spec never limits.
struct RateSpec {
  double rate = 0;
  uint64_t period_ms = 1000;
  double burst = 0;
  bool enabled = false;

  // "30/1s:300", "5/1h", "2000/1h", "off". Units: ms, s, m, h, d. Burst defaults to rate.
  static bool parse(std::string_view text, RateSpec& out);
  std::string to_string() const;
};

class RateLimiter {
 public:
  explicit RateLimiter(RateSpec spec) : spec_(spec) {}

  // Takes `cost` tokens for `key`. 0 when allowed; otherwise the milliseconds until that many
  // tokens will be there (nothing is taken then).
  uint64_t take(std::string_view key, uint64_t now_ms, double cost = 1);
  // Gives tokens back (e.g. an unauthenticated socket closed).
  void give_back(std::string_view key, double cost = 1);
  // Forgets buckets that are full again, so idle keys cost no memory.
  void sweep(uint64_t now_ms);
  const RateSpec& spec() const { return spec_; }
  size_t size() const;

 private:
  struct Bucket {
    double tokens;
    uint64_t updated_ms;
  };
  void refill(Bucket& b, uint64_t now_ms) const;

  RateSpec spec_;
  mutable std::mutex mu_;
  std::unordered_map<std::string, Bucket> buckets_;
};

// A count of concurrent things per key (unauthenticated sockets per address).
class ConcurrencyLimiter {
 public:
  explicit ConcurrencyLimiter(uint32_t max) : max_(max) {}
  bool acquire(const std::string& key);  // false when the key is at its maximum
  void release(const std::string& key);

 private:
  uint32_t max_;
  std::mutex mu_;
  std::unordered_map<std::string, uint32_t> counts_;
};

}  // namespace sotto::relay
