// The scenario ./run demo plays: a relay of its own, three people (alice, bob, carol) each
// with a profile and a sotto::Client, and nine steps that show the system end to end. Each
// wait has a timeout; a step that does not see what it expects throws StepFailure, which
// says what was expected.
//
// Thread rule: run() on one thread. Progress is shared with the watchdog and signal threads
// of main().
#pragma once

#include <sys/types.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <filesystem>
#include <memory>
#include <mutex>
#include <stdexcept>
#include <string>
#include <vector>

namespace sotto::demo {

struct StepFailure : std::runtime_error {
  using std::runtime_error::runtime_error;
};

// Where the scenario is, for the watchdog and for failure reports.
struct Progress {
  std::mutex mu;
  int step = 0;
  std::string title;
  std::string expecting;  // the wait under way, if any
  // The current step's hard limit, in steady-clock milliseconds; 0 when none.
  std::atomic<int64_t> deadline_ms{0};
  std::atomic<pid_t> relay_pid{-1};
};

struct ScenarioOptions {
  std::string relay_binary;
  std::filesystem::path work_dir;          // an empty temp dir: relay/, profiles/, files/
  std::vector<std::string> relay_args;     // flags added to the relay's defaults
  std::chrono::milliseconds wait{10'000};  // each wait for an event
  std::chrono::milliseconds step{30'000};  // each step as a whole (enforced by the watchdog)
};

class Scenario {
 public:
  Scenario(ScenarioOptions options, Progress& progress);
  ~Scenario();  // closes the clients and stops the relay if still running
  Scenario(const Scenario&) = delete;
  Scenario& operator=(const Scenario&) = delete;

  // Plays every step. Throws StepFailure when one fails (the caller reports it and cleans up).
  void run();
  // Closes the clients and stops the relay (idempotent). After a failure, for a clean exit.
  void shut_down();
  // The relay's and the clients' logs, the last lines of each: for a failure report.
  std::string logs_tail(size_t lines) const;
  int steps_passed() const;

  struct Impl;  // public so the listeners in Scenario.cpp can reach it

 private:
  std::unique_ptr<Impl> impl_;
};

}  // namespace sotto::demo
