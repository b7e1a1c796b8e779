#include "RelayProcess.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <fstream>
#include <sstream>
#include <string_view>
#include <thread>

#ifndef SOTTO_RELAY_BINARY
#error "SOTTO_RELAY_BINARY must name the sotto-relay executable"
#endif

namespace sotto::test {
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

// Limits for tests that open many accounts and connections from one address.
const std::vector<std::string>& permissive_args() {
  static const std::vector<std::string> args = {
      "--ip-rate-limits=false",
      "--unauth-sockets-ip=0",
      "--rate-provision-lookup-account=off",
      "--rate-lookup-device=off",
      "--rate-bundles-device=off",
      "--rate-bundles-target=off",
      "--rate-send-device=off",
      "--rate-presence-device=off",
      "--rate-attachment-account=off",
      "--attachment-bytes-per-day=0",
      "--rate-download-device=off",
      "--rate-frames-connection=off",
      "--push-allow-http=true",
      "--push-allow-private=true",
  };
  return args;
}

}  // namespace

RelayProcess::RelayProcess(Options options, std::vector<std::string> env)
    : options_(std::move(options)), env_(std::move(env)) {
  std::string tmpl = (std::filesystem::temp_directory_path() / "sotto-relay-XXXXXX").string();
  if (!::mkdtemp(tmpl.data())) {
    ADD_FAILURE() << "cannot create a temp dir for the relay";
    return;
  }
  dir_ = tmpl;
  data_dir_ = options_.data_dir.empty() ? dir_ / "data" : options_.data_dir;
  port_file_ = dir_ / "port";
  log_file_ = dir_ / "relay.log";
  start(0);
}

RelayProcess::~RelayProcess() {
  if (pid_ > 0) {
    int status = terminate();
    if (status != 0) ADD_FAILURE() << "sotto-relay exited with status " << status << "\n" << log();
  }
  std::error_code ec;
  if (!dir_.empty()) std::filesystem::remove_all(dir_, ec);
}

std::string RelayProcess::binary() { return SOTTO_RELAY_BINARY; }

bool RelayProcess::tls() const {
  const auto& a = options_.extra_args;
  return std::find(a.begin(), a.end(), "--tls-cert") != a.end();
}
std::string RelayProcess::ws_url() const {
  return (tls() ? "wss://127.0.0.1:" : "ws://127.0.0.1:") + std::to_string(port_) + "/v1/ws";
}
std::string RelayProcess::http_base() const {
  return (tls() ? "https://127.0.0.1:" : "http://127.0.0.1:") + std::to_string(port_);
}

std::string RelayProcess::log() const {
  std::ifstream in(log_file_);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

void RelayProcess::start(uint16_t port) {
  std::error_code ec;
  std::filesystem::remove(port_file_, ec);
  args_ = {SOTTO_RELAY_BINARY,
           "--data-dir",
           data_dir_.string(),
           "--init",
           "--listen",
           "127.0.0.1:" + std::to_string(port),
           "--port-file",
           port_file_.string(),
           "--threads",
           "2",
           "--shutdown-grace-ms",
           "8000"};
  if (options_.permissive_limits) {
    // An option may appear once: extra_args override the permissive value of the same name.
    for (const auto& p : permissive_args()) {
      std::string name = p.substr(0, p.find('='));
      bool overridden = false;
      for (const auto& e : options_.extra_args)
        if (e == name || e.rfind(name + "=", 0) == 0) overridden = true;
      if (!overridden) args_.push_back(p);
    }
  }
  args_.insert(args_.end(), options_.extra_args.begin(), options_.extra_args.end());

  // SOTTO_RELAY_WRAPPER="gdb -batch -ex run -ex bt --args" (or valgrind, strace ...) runs the
  // relay under a tool; its output lands in log().
  std::vector<std::string> command;
  if (const char* wrapper = std::getenv("SOTTO_RELAY_WRAPPER")) {
    std::istringstream words(wrapper);
    for (std::string w; words >> w;) command.push_back(w);
  }
  command.insert(command.end(), args_.begin(), args_.end());
  // The environment is built here: after fork() only async-signal-safe calls are allowed.
  // The constructor's `env` wins over a variable of the same name.
  std::vector<std::string> env_strings = env_;
  for (char** e = environ; *e; ++e) {
    std::string_view var(*e);
    bool replaced = std::any_of(env_.begin(), env_.end(), [&](const auto& o) {
      return o.substr(0, o.find('=') + 1) == var.substr(0, var.find('=') + 1);
    });
    if (!replaced) env_strings.emplace_back(var);
  }
  std::vector<char*> envp;
  for (auto& e : env_strings) envp.push_back(e.data());
  envp.push_back(nullptr);
  std::vector<char*> argv;
  for (auto& a : command) argv.push_back(a.data());
  argv.push_back(nullptr);
  int log_fd = ::open(log_file_.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
  pid_t parent = ::getpid();
  pid_t pid = ::fork();
  if (pid == 0) {
    // The relay dies with the test process, whatever happens to it.
    ::prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (::getppid() != parent) ::_exit(127);
    if (log_fd >= 0) {
      ::dup2(log_fd, STDOUT_FILENO);
      ::dup2(log_fd, STDERR_FILENO);
    }
    ::close_range(3, ~0U, 0);
    ::execvpe(argv[0], argv.data(), envp.data());
    ::_exit(127);
  }
  if (log_fd >= 0) ::close(log_fd);
  if (pid < 0) {
    ADD_FAILURE() << "fork failed";
    return;
  }
  pid_ = pid;

  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(30);
  while (std::chrono::steady_clock::now() < deadline) {
    int status = 0;
    if (::waitpid(pid_, &status, WNOHANG) == pid_) {
      pid_ = -1;
      ADD_FAILURE() << "sotto-relay exited during start-up (status " << status << "):\n" << log();
      return;
    }
    std::ifstream in(port_file_);
    unsigned p = 0;
    if (in >> p && p > 0 && p < 65536 && can_connect(static_cast<uint16_t>(p))) {
      port_ = static_cast<uint16_t>(p);
      return;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  ADD_FAILURE() << "sotto-relay did not start listening within 30 s:\n" << log();
  kill9();
}

int RelayProcess::wait_exit(int timeout_ms) {
  auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(timeout_ms);
  while (std::chrono::steady_clock::now() < deadline) {
    int status = 0;
    pid_t r = ::waitpid(pid_, &status, WNOHANG);
    if (r == pid_) {
      pid_ = -1;
      if (WIFEXITED(status)) return WEXITSTATUS(status);
      if (WIFSIGNALED(status)) return 128 + WTERMSIG(status);
      return -1;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  return -2;
}

void RelayProcess::kill9() {
  if (pid_ <= 0) return;
  ::kill(pid_, SIGKILL);
  int status = 0;
  ::waitpid(pid_, &status, 0);
  pid_ = -1;
}

int RelayProcess::terminate() {
  if (pid_ <= 0) return -1;
  ::kill(pid_, SIGTERM);
  return await_exit();
}

// Once Server::run() returns, Asio gives SIGTERM back its default action: a second SIGTERM
// then ends a relay that is committing its last jobs (status 143). A test that sent the
// first one itself waits here instead of calling terminate().
int RelayProcess::await_exit() {
  if (pid_ <= 0) return -1;
  int status = wait_exit(15'000);
  if (status == -2) {
    ADD_FAILURE() << "sotto-relay did not exit within 15 s of SIGTERM:\n" << log();
    kill9();
  }
  return status;
}

void RelayProcess::restart() {
  if (pid_ > 0) {
    int status = terminate();
    if (status != 0) ADD_FAILURE() << "sotto-relay exited with status " << status;
  }
  uint16_t port = port_;
  start(port);
  if (port_ != port) ADD_FAILURE() << "the relay came back on port " << port_ << ", not " << port;
}

Outcome run_relay(const std::vector<std::string>& args) {
  std::string cmd = RelayProcess::binary();
  for (const auto& a : args) cmd += " '" + a + "'";
  cmd += " 2>&1";
  Outcome out;
  FILE* f = ::popen(cmd.c_str(), "r");
  if (!f) return out;
  char buf[4096];
  while (size_t n = std::fread(buf, 1, sizeof buf, f)) out.output.append(buf, n);
  int status = ::pclose(f);
  out.status = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  return out;
}

}  // namespace sotto::test
