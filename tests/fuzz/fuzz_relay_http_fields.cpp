// Untrusted bytes: the HTTP header values the relay parses itself (Authorization credentials,
// push endpoint URLs, rate specs from a config file).
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "RateLimiter.h"
#include "Validate.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view text(reinterpret_cast<const char*>(data), size);
  (void)sotto::relay::parse_authorization(text);
  std::string basic = "Basic " + std::string(text);
  (void)sotto::relay::parse_authorization(basic);
  sotto::relay::Refusal why;
  (void)sotto::relay::parse_push_url(text, true, false, 2048, why);
  (void)sotto::relay::is_private_address(text);
  sotto::relay::RateSpec spec;
  if (sotto::relay::RateSpec::parse(text, spec)) {
    sotto::relay::RateLimiter rl(spec);
    (void)rl.take("k", 1000);
  }
  return 0;
}
