#include "RelayProcess.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <fstream>
#include <sstream>
#include <thread>

#include "RelaySpawn.h"

#ifndef SOTTO_RELAY_BINARY
#error "SOTTO_RELAY_BINARY must name the sotto-relay executable"
#endif

namespace sotto::test {
namespace {

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
  dir_ = spawn::make_dir();
  if (dir_.empty()) {
    ADD_FAILURE() << "cannot create a temp dir for the relay";
    return;
  }
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
           spawn::native_path(data_dir_),
           "--init",
           "--listen",
           "127.0.0.1:" + std::to_string(port),
           "--port-file",
           spawn::native_path(port_file_),
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
  std::string why;
  running_ = spawn::start(command, env_, log_file_, dir_, why);
  if (!why.empty()) {
    ADD_FAILURE() << why;
    return;
  }
  pid_ = static_cast<pid_t>(running_.pid);

  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(30);
  while (std::chrono::steady_clock::now() < deadline) {
    if (auto status = spawn::exited(running_)) {
      pid_ = -1;
      ADD_FAILURE() << "sotto-relay exited during start-up (status " << *status << "):\n"
                    << log();
      return;
    }
    std::ifstream in(port_file_);
    unsigned p = 0;
    if (in >> p && p > 0 && p < 65536 && spawn::can_connect(static_cast<uint16_t>(p))) {
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
    if (auto status = spawn::exited(running_)) {
      pid_ = -1;
      return *status;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  return -2;
}

void RelayProcess::signal(int sig) {
  if (pid_ > 0) spawn::signal(running_, sig);
}

void RelayProcess::kill9() {
  if (pid_ <= 0) return;
  spawn::signal(running_, spawn::kKill);
  if (wait_exit(30'000) == -2) {
    ADD_FAILURE() << "sotto-relay (process " << pid_ << ") was not gone 30 s after SIGKILL";
    running_.pid = -1;
  }
  pid_ = -1;
}

int RelayProcess::terminate() {
  if (pid_ <= 0) return -1;
  spawn::signal(running_, spawn::kTerm);
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
  std::vector<std::string> command{RelayProcess::binary()};
  command.insert(command.end(), args.begin(), args.end());
  auto [status, output] = spawn::run(command);
  return Outcome{status, std::move(output)};
}

}  // namespace sotto::test
