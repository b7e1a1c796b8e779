// A child process whose stdout a test reads line by line, and can kill -9 (on Windows,
// TerminateProcess: the status is then 137, as for SIGKILL on Linux).
#pragma once

#include <sys/types.h>

#include <chrono>
#include <optional>
#include <string>
#include <vector>

namespace sotto::test {

class ChildProcess {
 public:
  explicit ChildProcess(const std::vector<std::string>& argv);
  ~ChildProcess();  // SIGKILL if still running
  ChildProcess(const ChildProcess&) = delete;
  ChildProcess& operator=(const ChildProcess&) = delete;

  // The next line of stdout (without the newline), or nullopt on EOF or timeout.
  std::optional<std::string> read_line(std::chrono::milliseconds timeout);
  void kill9();
  int wait();  // exit status, or 128 + signal
  // The exit status if the process has ended, without waiting.
  std::optional<int> exit_status();
  pid_t pid() const { return pid_; }

 private:
  pid_t pid_ = -1;
#ifdef _WIN32
  void* process_ = nullptr;  // HANDLEs (windows.h stays out of this header)
  void* out_ = nullptr;
#else
  int out_ = -1;
#endif
  std::string buffer_;
  int status_ = -1;
};

}  // namespace sotto::test
