// client_bench: what a sotto::Client costs on the receiving side and how long a message takes
// from one client to another, through a real sotto-relay on loopback.
//
//   client_bench [--messages N] [--latency-samples N] [--relay PATH]
//
// Prints:
//   - receive: messages/s a client decrypts, stores (with the ratchet state, one transaction
//     per batch, fsync on) and acknowledges while draining an N-message queue, against raw
//     libsignal decryption with in-memory stores in the same run;
//   - latency: send_text() on one client until the message is stored on the other (p50/p99),
//     and until the sender sees it delivered, one message at a time.
#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
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

#include "MemoryProtocolStore.h"
#include "SessionCrypto.h"
#include "sotto/Client.h"
#include "sotto/keys/Bundle.h"

#ifndef SOTTO_RELAY_BINARY
#error "SOTTO_RELAY_BINARY must name the sotto-relay executable"
#endif

namespace fs = std::filesystem;
using namespace sotto;
using Steady = std::chrono::steady_clock;
using namespace std::chrono_literals;

namespace {

double seconds_since(Steady::time_point t) {
  return std::chrono::duration<double>(Steady::now() - t).count();
}

[[noreturn]] void die(const std::string& what) {
  std::fprintf(stderr, "client_bench: %s\n", what.c_str());
  std::exit(1);
}

// A relay process on 127.0.0.1:0 in a temp dir.
class Relay {
 public:
  Relay(const fs::path& binary, const fs::path& dir) : dir_(dir) {
    fs::create_directories(dir_);
    pid_ = ::fork();
    if (pid_ == 0) {
      ::prctl(PR_SET_PDEATHSIG, SIGKILL);
      std::string data = (dir_ / "data").string(), port = (dir_ / "port").string();
      std::string log = (dir_ / "relay.log").string();
      std::FILE* f = std::freopen(log.c_str(), "w", stderr);
      (void)f;
      ::execl(binary.c_str(), binary.c_str(), "--data-dir", data.c_str(), "--listen", "127.0.0.1:0",
              "--port-file", port.c_str(), "--ip-rate-limits=false", "--rate-send-device=off",
              "--rate-bundles-device=off", "--rate-bundles-target=off", "--rate-lookup-device=off",
              "--rate-frames-connection=off", "--threads", "1", static_cast<char*>(nullptr));
      ::_exit(127);
    }
    for (int i = 0; i < 500 && port_ == 0; ++i) {
      std::this_thread::sleep_for(20ms);
      std::ifstream in(dir_ / "port");
      in >> port_;
    }
    if (port_ == 0) die("the relay did not start; see " + (dir_ / "relay.log").string());
  }
  ~Relay() {
    ::kill(pid_, SIGTERM);
    int st = 0;
    ::waitpid(pid_, &st, 0);
  }
  std::string url() const { return "ws://127.0.0.1:" + std::to_string(port_) + "/v1/ws"; }

 private:
  fs::path dir_;
  pid_t pid_ = -1;
  int port_ = 0;
};

class Counter : public ClientListener {
 public:
  void on_message(const Message& m) override {
    if (m.outgoing || m.kind != MessageKind::kText) return;
    std::lock_guard lock(mu_);
    ++received_;
    arrived_[m.id] = Steady::now();
    cv_.notify_all();
  }
  void on_message_status(ConversationId, const std::string& id, MessageStatus s) override {
    if (s != MessageStatus::kDelivered) return;
    std::lock_guard lock(mu_);
    delivered_[id] = Steady::now();
    cv_.notify_all();
  }
  bool wait_received(size_t n, std::chrono::seconds timeout) {
    std::unique_lock lock(mu_);
    return cv_.wait_for(lock, timeout, [&] { return received_ >= n; });
  }
  std::optional<Steady::time_point> arrived(const std::string& id, std::chrono::seconds timeout) {
    std::unique_lock lock(mu_);
    if (!cv_.wait_for(lock, timeout, [&] { return arrived_.count(id) > 0; })) return {};
    return arrived_[id];
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
  std::map<std::string, Steady::time_point> arrived_, delivered_;
};

struct Peer {
  std::unique_ptr<Client> client;
  std::shared_ptr<Counter> events = std::make_shared<Counter>();
  AccountInfo info;
};

Peer make_peer(const fs::path& dir, const std::string& url, const std::string& handle,
               std::chrono::milliseconds receipt_delay) {
  SecureBytes key(32);
  for (size_t i = 0; i < 32; ++i)
    key.data()[i] = static_cast<uint8_t>(handle[i % handle.size()] + i);
  ProfileOptions po;
  po.initial_prekeys = 0;
  auto profile = Profile::open_with_key(dir, key, po);
  if (!profile.ok()) die(profile.error().message);
  ClientOptions o;
  o.relay_url = url;
  o.receipt_delay = receipt_delay;
  o.prekey_batch = 20;
  auto client = Client::create(std::move(*profile), o);
  if (!client.ok()) die(client.error().message);
  Peer p;
  p.client = std::move(*client);
  p.client->set_listener(p.events);
  auto info = p.client->register_account(handle);
  if (!info.ok()) die(info.error().message);
  p.info = *info;
  if (!p.client->wait_online(20s)) die(handle + " did not come online");
  return p;
}

// Raw libsignal: decrypt `n` messages with in-memory stores (the library's own limit).
double raw_decrypt_rate(int n) {
  auto ctx = keys::Context::create().value();
  MemoryProtocolStore sa, sb;
  auto a = SessionCrypto::create(ctx, sa).value();
  auto b = SessionCrypto::create(ctx, sb).value();
  if (!a->create_identity("alice", 1, 1).ok() || !b->create_identity("bob", 1, 1).ok())
    die("identity");
  auto bundle = b->issue_bundle().value();
  if (!a->start_session(Address{"bob", 1}, bundle).ok()) die("session");
  std::vector<Ciphertext> cts;
  std::string text(60, 'x');
  for (int i = 0; i < n; ++i) cts.push_back(a->encrypt(Address{"bob", 1}, as_bytes(text)).value());
  auto t = Steady::now();
  for (const auto& ct : cts)
    if (!b->decrypt(Address{"alice", 1}, ct).ok()) die("raw decrypt failed");
  return n / seconds_since(t);
}

double percentile(std::vector<double> v, double p) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  size_t i = std::min(v.size() - 1, static_cast<size_t>(p * static_cast<double>(v.size())));
  return v[i];
}

}  // namespace

int main(int argc, char** argv) {
  int messages = 10000, samples = 300;
  fs::path relay_bin = SOTTO_RELAY_BINARY;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    if (a == "--messages" && i + 1 < argc)
      messages = std::stoi(argv[++i]);
    else if (a == "--latency-samples" && i + 1 < argc)
      samples = std::stoi(argv[++i]);
    else if (a == "--relay" && i + 1 < argc)
      relay_bin = argv[++i];
    else
      die("usage: client_bench [--messages N] [--latency-samples N] [--relay PATH]");
  }
  fs::path dir = fs::temp_directory_path() / ("sotto-client-bench-" + std::to_string(::getpid()));
  fs::remove_all(dir);
  {
    Relay relay(relay_bin, dir / "relay");
    std::printf("client_bench: %d queued messages, %d latency samples, relay %s\n", messages,
                samples, relay.url().c_str());

    // ---- receive: drain a queue ----
    Peer alice = make_peer(dir / "alice", relay.url(), "alice", 250ms);
    Peer bob = make_peer(dir / "bob", relay.url(), "bob", 250ms);
    auto contact = alice.client->add_contact("bob");
    if (!contact.ok()) die(contact.error().message);
    ConversationId conv = alice.client->direct_conversation(contact->account).value();
    bob.client->disconnect();
    std::string last;
    std::string text(60, 'x');
    for (int i = 0; i < messages; ++i) last = alice.client->send_text(conv, text).value();
    auto queued = Steady::now();
    for (;;) {
      auto m = alice.client->message(conv, last);
      if (m.ok() && m->status == MessageStatus::kSent) break;
      if (seconds_since(queued) > 600) die("the sender did not finish");
      std::this_thread::sleep_for(20ms);
    }
    double send_s = seconds_since(queued);
    auto t = Steady::now();
    if (!bob.client->connect().ok()) die("connect");
    if (!bob.events->wait_received(static_cast<size_t>(messages), 600s)) die("drain stalled");
    double drain_s = seconds_since(t);
    double client_rate = messages / drain_s;
    double raw_rate = raw_decrypt_rate(messages);

    std::printf("\n%-58s %12s\n", "receive (decrypt + store + ack), 60-byte texts", "msgs/s");
    std::printf("%-58s %12.0f\n", "sotto::Client draining its queue (SQLCipher, fsync)",
                client_rate);
    std::printf("%-58s %12.0f\n", "raw libsignal decrypt, in-memory stores", raw_rate);
    std::printf("%-58s %11.0f%%\n", "client / raw", 100.0 * client_rate / raw_rate);
    std::printf("%-58s %12.0f\n", "(sender: queued messages committed by the relay)",
                messages / send_s);

    // ---- latency: one message at a time ----
    Peer carol = make_peer(dir / "carol", relay.url(), "carol", 0ms);
    Peer dave = make_peer(dir / "dave", relay.url(), "dave", 0ms);
    auto d = carol.client->add_contact("dave").value();
    ConversationId cd = carol.client->direct_conversation(d.account).value();
    std::vector<double> stored_ms, delivered_ms;
    for (int i = 0; i < samples + 10; ++i) {
      auto start = Steady::now();
      auto id = carol.client->send_text(cd, "ping " + std::to_string(i)).value();
      auto arrived = dave.events->arrived(id, 20s);
      auto delivered = carol.events->delivered(id, 20s);
      if (!arrived || !delivered) die("a latency sample was lost");
      if (i < 10) continue;  // warm-up: sessions, caches
      stored_ms.push_back(std::chrono::duration<double, std::milli>(*arrived - start).count());
      delivered_ms.push_back(std::chrono::duration<double, std::milli>(*delivered - start).count());
    }
    std::printf("\n%-58s %8s %8s\n", "latency, loopback, one message at a time", "p50 ms",
                "p99 ms");
    std::printf("%-58s %8.2f %8.2f\n", "send_text() -> stored on the recipient",
                percentile(stored_ms, 0.5), percentile(stored_ms, 0.99));
    std::printf("%-58s %8.2f %8.2f\n", "send_text() -> sender sees it delivered",
                percentile(delivered_ms, 0.5), percentile(delivered_ms, 0.99));
  }
  fs::remove_all(dir);
  return 0;
}
