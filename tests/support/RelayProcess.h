// A real sotto-relay process for integration tests: its own temp data dir, 127.0.0.1 on an
// ephemeral port, started and stopped with signals. The relay announces readiness by writing
// --port-file (atomically) once it listens; the fixture also waits for a TCP connect.
//
// Thread rule: one test thread drives a RelayProcess; the accessors may be read from any.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <filesystem>
#include <string>
#include <utility>
#include <vector>

#include "RelaySpawn.h"

namespace sotto::test {

// sotto-relay run as a command (backup, restore, admin, --check-config): its exit status and
// everything it printed on stdout and stderr.
struct Outcome {
  int status = -1;
  std::string output;
};
Outcome run_relay(const std::vector<std::string>& args);

class RelayProcess {
 public:
  struct Options {
    std::vector<std::string> extra_args;  // appended to the command line (e.g. limit overrides)
    // Turns off the per-address limits and raises the per-device rate limits, and lets push
    // endpoints be plain http on loopback: what tests with many accounts from 127.0.0.1 need.
    bool permissive_limits = true;
    // The relay's --data-dir; empty: "data" in the fixture's own temp dir. Not removed.
    std::filesystem::path data_dir;
  };

  // Starts the relay and waits until it accepts; on failure the test fails with the relay's
  // output. (Two constructors rather than `Options options = {}`: a nested struct with default
  // member initializers cannot be a default argument inside its own class.)
  RelayProcess() : RelayProcess(Options{}) {}
  explicit RelayProcess(Options options) : RelayProcess(std::move(options), {}) {}
  // `env`: NAME=value pairs added to the relay's environment (e.g. an LD_PRELOAD).
  RelayProcess(Options options, std::vector<std::string> env);
  // SIGTERM, wait (SIGKILL after 15 s); removes the data dir.
  ~RelayProcess();
  RelayProcess(const RelayProcess&) = delete;
  RelayProcess& operator=(const RelayProcess&) = delete;

  uint16_t port() const { return port_; }
  std::string host() const { return "127.0.0.1"; }
  // wss:// and https:// when extra_args gave the relay a certificate (--tls-cert).
  std::string ws_url() const;     // "ws://127.0.0.1:<port>/v1/ws"
  std::string http_base() const;  // "http://127.0.0.1:<port>"
  bool tls() const;
  const std::filesystem::path& data_dir() const { return data_dir_; }
  pid_t pid() const { return pid_; }
  bool running() const { return pid_ > 0; }

  void signal(int sig);     // sends a signal (spawn::kHup, kTerm: Linux numbers) and goes on
  void kill9();             // SIGKILL, reap
  int terminate();          // SIGTERM, wait; the exit status (or 128 + signal)
  int await_exit();         // as terminate(), for a SIGTERM the test sent: no second signal
  void restart();           // start again on the same data dir and the SAME port, wait until ready
  std::string log() const;  // what the relay printed so far

  // The sotto-relay executable these tests run.
  static std::string binary();
  // The command line the relay was started with (for failure messages).
  const std::vector<std::string>& args() const { return args_; }

 private:
  void start(uint16_t port);
  int wait_exit(int timeout_ms);

  Options options_;
  std::vector<std::string> env_;
  std::filesystem::path dir_;
  std::filesystem::path data_dir_;
  std::filesystem::path port_file_;
  std::filesystem::path log_file_;
  std::vector<std::string> args_;
  uint16_t port_ = 0;
  pid_t pid_ = -1;
  spawn::Running running_;
};

}  // namespace sotto::test
