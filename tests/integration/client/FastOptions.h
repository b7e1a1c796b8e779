// Client options for tests: connection timings shortened so that reconnects, liveness checks
// and receipts happen within a test's patience. Header-only, so that the client processes the
// tests start (which do not link GoogleTest) use the same values.
#pragma once

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <string>

#include "sotto/Client.h"

namespace sotto::test {

// With SOTTO_TEST_VERBOSE set, the client's diagnostic lines go to stderr after `name`.
inline ClientOptions fast_options(const std::string& relay_url, std::string name = "client") {
  using namespace std::chrono_literals;
  ClientOptions o;
  o.relay_url = relay_url;
  o.receipt_delay = 20ms;
  o.ping_interval = 1s;
  o.idle_timeout = 6s;
  o.backoff_initial = 100ms;
  o.backoff_max = 1s;
  o.request_timeout = 15s;
  o.prekey_batch = 20;
  if (std::getenv("SOTTO_TEST_VERBOSE"))
    o.log = [name = std::move(name)](const std::string& line) {
      std::fprintf(stderr, "%s: %s\n", name.c_str(), line.c_str());
    };
  return o;
}

}  // namespace sotto::test
