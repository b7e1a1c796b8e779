// What every benchmark program needs: wall-clock seconds, and stopping with a message when a
// step it measures fails (a benchmark has nothing sensible to print after that).
#pragma once

#include <errno.h>  // program_invocation_short_name

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <utility>

#include "sotto/Result.h"

namespace sotto::bench {

using Steady = std::chrono::steady_clock;

inline double seconds_since(Steady::time_point t) {
  return std::chrono::duration<double>(Steady::now() - t).count();
}

// Prints "<program>: <what>" and exits 1.
[[noreturn]] inline void die(const std::string& what) {
  std::fprintf(stderr, "%s: %s\n", program_invocation_short_name, what.c_str());
  std::exit(1);
}
[[noreturn]] inline void die(const std::string& what, const Error& e) {
  die(what + ": " + e.message);
}

template <class T>
T check(Result<T> r, const std::string& what) {
  if (!r.ok()) die(what, r.error());
  return std::move(r).value();
}
inline void check(const Status& s, const std::string& what) {
  if (!s.ok()) die(what, s.error());
}

}  // namespace sotto::bench
