// Shared by the benchmarks that run real clients: a sotto-relay process on 127.0.0.1:0 and a
// listener that timestamps what a client reports.
#pragma once

#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "BenchCommon.h"
#include "sotto/Client.h"

namespace sotto::bench {

namespace fs = std::filesystem;
using namespace std::chrono_literals;

// A relay on 127.0.0.1:0 in `dir`, rate limits off (a benchmark is one address with many
// accounts), stopped with SIGTERM when destroyed.
class BenchRelay {
 public:
  BenchRelay(const fs::path& binary, const fs::path& dir, std::vector<std::string> extra = {})
      : dir_(dir) {
    fs::create_directories(dir_);
    std::vector<std::string> args = {binary.string(),
                                     "--data-dir",
                                     (dir_ / "data").string(),
                                     "--init",
                                     "--listen",
                                     "127.0.0.1:0",
                                     "--port-file",
                                     (dir_ / "port").string(),
                                     "--ip-rate-limits=false",
                                     "--rate-send-device=off",
                                     "--rate-bundles-device=off",
                                     "--rate-bundles-target=off",
                                     "--rate-lookup-device=off",
                                     "--rate-frames-connection=off",
                                     "--rate-attachment-account=off",
                                     "--attachment-bytes-per-day=0",
                                     "--rate-download-device=off"};
    args.insert(args.end(), extra.begin(), extra.end());
    pid_ = ::fork();
    if (pid_ == 0) {
      ::prctl(PR_SET_PDEATHSIG, SIGKILL);
      std::string log = (dir_ / "relay.log").string();
      if (!std::freopen(log.c_str(), "w", stderr)) ::_exit(126);
      std::vector<char*> argv;
      for (auto& a : args) argv.push_back(a.data());
      argv.push_back(nullptr);
      ::execv(argv[0], argv.data());
      ::_exit(127);
    }
    for (int i = 0; i < 500 && port_ == 0; ++i) {
      std::this_thread::sleep_for(20ms);
      std::ifstream in(dir_ / "port");
      in >> port_;
    }
    if (port_ == 0) die("the relay did not start; see " + (dir_ / "relay.log").string());
  }
  ~BenchRelay() {
    ::kill(pid_, SIGTERM);
    int st = 0;
    ::waitpid(pid_, &st, 0);
  }
  BenchRelay(const BenchRelay&) = delete;
  BenchRelay& operator=(const BenchRelay&) = delete;
  std::string url() const { return "ws://127.0.0.1:" + std::to_string(port_) + "/v1/ws"; }

 private:
  fs::path dir_;
  pid_t pid_ = -1;
  int port_ = 0;
};

// Timestamps of what one client reported.
class Stamps : public ClientListener {
 public:
  void on_message(const Message& m) override {
    if (m.outgoing || m.kind != MessageKind::kText) return;
    std::lock_guard lock(mu_);
    ++received_;
    arrived_[m.text] = Steady::now();
    cv_.notify_all();
  }
  void on_message_status(ConversationId, const std::string& id, MessageStatus s) override {
    if (s != MessageStatus::kDelivered && s != MessageStatus::kSent) return;
    std::lock_guard lock(mu_);
    (s == MessageStatus::kSent ? sent_ : delivered_)[id] = Steady::now();
    cv_.notify_all();
  }
  bool wait_received(size_t n, std::chrono::seconds timeout) {
    std::unique_lock lock(mu_);
    return cv_.wait_for(lock, timeout, [&] { return received_ >= n; });
  }
  // When a message with this text arrived.
  std::optional<Steady::time_point> arrived(const std::string& text, std::chrono::seconds timeout) {
    std::unique_lock lock(mu_);
    if (!cv_.wait_for(lock, timeout, [&] { return arrived_.count(text) > 0; })) return {};
    return arrived_[text];
  }
  // When the relay acknowledged an outgoing message.
  std::optional<Steady::time_point> sent(const std::string& id, std::chrono::seconds timeout) {
    std::unique_lock lock(mu_);
    if (!cv_.wait_for(lock, timeout, [&] { return sent_.count(id) > 0; })) return {};
    return sent_[id];
  }
  std::optional<Steady::time_point> delivered(const std::string& id, std::chrono::seconds timeout) {
    std::unique_lock lock(mu_);
    if (!cv_.wait_for(lock, timeout, [&] { return delivered_.count(id) > 0; })) return {};
    return delivered_[id];
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  size_t received_ = 0;
  std::map<std::string, Steady::time_point> arrived_, sent_, delivered_;
};

struct Peer {
  std::unique_ptr<Client> client;
  std::shared_ptr<Stamps> events = std::make_shared<Stamps>();
  AccountInfo info;
};

struct PeerOptions {
  std::chrono::milliseconds receipt_delay{250};
  bool durable = true;  // fsync every commit
  uint32_t prekeys = 20;
};

inline Peer make_peer(const fs::path& dir, const std::string& url, const std::string& handle,
                      const PeerOptions& po = {}) {
  SecureBytes key(32);
  for (size_t i = 0; i < 32; ++i)
    key.data()[i] = static_cast<uint8_t>(handle[i % handle.size()] + i);
  ProfileOptions profile_options;
  profile_options.initial_prekeys = 0;
  profile_options.sync_every_commit = po.durable;
  auto profile = Profile::open_with_key(dir, key, profile_options);
  if (!profile.ok()) die(profile.error().message);
  ClientOptions o;
  o.relay_url = url;
  o.receipt_delay = po.receipt_delay;
  o.prekey_batch = po.prekeys;
  auto client = Client::create(std::move(*profile), o);
  if (!client.ok()) die(client.error().message);
  Peer p;
  p.client = std::move(*client);
  p.client->set_listener(p.events);
  auto info = p.client->register_account(handle);
  if (!info.ok()) die(handle + ": " + info.error().message);
  p.info = *info;
  if (!p.client->wait_online(60s)) die(handle + " did not come online");
  return p;
}

}  // namespace sotto::bench
