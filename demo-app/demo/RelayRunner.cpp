#include "RelayRunner.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <deque>
#include <fstream>
#include <thread>

namespace sotto::demo {
namespace {

bool can_connect(uint16_t port) {
  int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return false;
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(port);
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  bool ok = ::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0;
  ::close(fd);
  return ok;
}

}  // namespace

std::string file_tail(const std::filesystem::path& file, size_t lines) {
  std::ifstream in(file);
  std::deque<std::string> last;
  for (std::string l; std::getline(in, l);) {
    last.push_back(l);
    if (last.size() > lines) last.pop_front();
  }
  std::string s;
  for (const auto& l : last) s += "    " + l + "\n";
  return s;
}

RelayRunner::RelayRunner(std::string binary, std::filesystem::path dir,
                         std::vector<std::string> extra_args)
    : binary_(std::move(binary)),
      dir_(std::move(dir)),
      data_dir_(dir_ / "data"),
      port_file_(dir_ / "port"),
      log_file_(dir_ / "relay.log"),
      extra_args_(std::move(extra_args)) {}

RelayRunner::~RelayRunner() {
  if (pid_ > 0) {
    ::kill(pid_, SIGKILL);
    int status = 0;
    ::waitpid(pid_, &status, 0);
    pid_ = -1;
  }
}

std::string RelayRunner::ws_url() const {
  return "ws://127.0.0.1:" + std::to_string(port_) + "/v1/ws";
}

std::string RelayRunner::log_tail(size_t lines) const { return file_tail(log_file_, lines); }

void RelayRunner::kill_now(pid_t pid) {
  if (pid > 0) ::kill(pid, SIGKILL);
}

bool RelayRunner::start(int timeout_ms, std::string& error) {
  std::error_code ec;
  std::filesystem::create_directories(dir_, ec);
  std::filesystem::remove(port_file_, ec);
  args_ = {std::filesystem::path(binary_).filename().string(),
           "--data-dir",
           data_dir_.string(),
           "--init",
           "--listen",
           "127.0.0.1:0",
           "--port-file",
           port_file_.string(),
           "--threads",
           "2"};
  args_.insert(args_.end(), extra_args_.begin(), extra_args_.end());

  std::vector<std::string> argv_strings{binary_};
  argv_strings.insert(argv_strings.end(), args_.begin() + 1, args_.end());
  std::vector<char*> argv;
  for (auto& a : argv_strings) argv.push_back(a.data());
  argv.push_back(nullptr);

  int log_fd = ::open(log_file_.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
  if (log_fd < 0) {
    error = "cannot create " + log_file_.string();
    return false;
  }
  pid_t parent = ::getpid();
  pid_t pid = ::fork();
  if (pid == 0) {
    // Only async-signal-safe calls from here to exec.
    ::prctl(PR_SET_PDEATHSIG, SIGKILL);  // dies with the demo, whatever happens to it
    if (::getppid() != parent) ::_exit(127);
    ::setpgid(0, 0);  // Ctrl-C goes to the demo, which stops the relay in order
    sigset_t none;
    sigemptyset(&none);
    ::sigprocmask(SIG_SETMASK, &none, nullptr);  // the demo blocks signals for its own thread
    ::signal(SIGPIPE, SIG_DFL);
    ::dup2(log_fd, STDOUT_FILENO);
    ::dup2(log_fd, STDERR_FILENO);
    int devnull = ::open("/dev/null", O_RDONLY);
    if (devnull >= 0) ::dup2(devnull, STDIN_FILENO);
    ::close_range(3, ~0U, 0);
    ::execv(argv[0], argv.data());
    static const char msg[] = "sotto-demo: cannot execute the relay\n";
    ssize_t w = ::write(STDERR_FILENO, msg, sizeof msg - 1);
    (void)w;
    ::_exit(127);
  }
  ::close(log_fd);
  if (pid < 0) {
    error = "fork failed";
    return false;
  }
  pid_ = pid;

  auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(timeout_ms);
  while (std::chrono::steady_clock::now() < deadline) {
    int status = 0;
    if (::waitpid(pid, &status, WNOHANG) == pid) {
      pid_ = -1;
      error = "sotto-relay exited during start-up (status " + std::to_string(status) +
              "); its log:\n" + log_tail(20);
      return false;
    }
    std::ifstream in(port_file_);
    unsigned p = 0;
    if (in >> p && p > 0 && p < 65536 && can_connect(static_cast<uint16_t>(p))) {
      port_ = static_cast<uint16_t>(p);
      return true;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  error = "sotto-relay did not listen within " + std::to_string(timeout_ms / 1000) +
          " s; its log:\n" + log_tail(20);
  stop(1000);
  return false;
}

int RelayRunner::wait_exit(int timeout_ms) {
  auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(timeout_ms);
  for (;;) {
    int status = 0;
    pid_t r = ::waitpid(pid_, &status, WNOHANG);
    if (r == pid_) {
      pid_ = -1;
      if (WIFEXITED(status)) return WEXITSTATUS(status);
      if (WIFSIGNALED(status)) return 128 + WTERMSIG(status);
      return -1;
    }
    if (std::chrono::steady_clock::now() >= deadline) return -2;
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
}

int RelayRunner::stop(int timeout_ms) {
  if (pid_ <= 0) return -1;
  ::kill(pid_, SIGTERM);
  int status = wait_exit(timeout_ms);
  if (status == -2) {
    ::kill(pid_, SIGKILL);
    int s = 0;
    ::waitpid(pid_, &s, 0);
    pid_ = -1;
    return -1;
  }
  return status;
}

}  // namespace sotto::demo
