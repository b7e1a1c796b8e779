// The demo's own sotto-relay: a child process on 127.0.0.1 with an ephemeral port, a data
// dir and a log file of its own. It is in a process group of its own (Ctrl-C reaches the
// demo, which stops it in order) and dies with the demo whatever happens (PR_SET_PDEATHSIG).
//
// Thread rule: one thread drives a RelayRunner; pid() may be read from any thread (the
// signal and watchdog threads kill the relay through it).
#pragma once

#include <sys/types.h>

#include <atomic>
#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

namespace sotto::demo {

class RelayRunner {
 public:
  // `dir` holds data/, port and relay.log.
  RelayRunner(std::string binary, std::filesystem::path dir, std::vector<std::string> extra_args);
  ~RelayRunner();  // kills the relay if it still runs
  RelayRunner(const RelayRunner&) = delete;
  RelayRunner& operator=(const RelayRunner&) = delete;

  // Starts the relay and waits (up to `timeout_ms`) until it listens. false with `error` set
  // (including the end of its log) when it does not.
  bool start(int timeout_ms, std::string& error);
  // SIGTERM, then waits up to `timeout_ms`; SIGKILL after that. The exit status (0 for a clean
  // shutdown), 128 + signal, or -1 when it had to be killed.
  int stop(int timeout_ms);

  uint16_t port() const { return port_; }
  std::string ws_url() const;
  pid_t pid() const { return pid_.load(); }
  const std::filesystem::path& data_dir() const { return data_dir_; }
  const std::filesystem::path& log_file() const { return log_file_; }
  // The command line, without the binary's directory.
  const std::vector<std::string>& args() const { return args_; }
  // The last `lines` lines of the relay's log.
  std::string log_tail(size_t lines) const;

  // From a signal handler thread or a watchdog: SIGKILL the relay with this pid, if any.
  static void kill_now(pid_t pid);

 private:
  int wait_exit(int timeout_ms);

  std::string binary_;
  std::filesystem::path dir_, data_dir_, port_file_, log_file_;
  std::vector<std::string> extra_args_;
  std::vector<std::string> args_;
  uint16_t port_ = 0;
  std::atomic<pid_t> pid_{-1};
};

// The tail of a text file, for failure reports.
std::string file_tail(const std::filesystem::path& file, size_t lines);

}  // namespace sotto::demo
