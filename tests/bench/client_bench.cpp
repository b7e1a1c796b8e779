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
#include "BenchSupport.h"

#ifndef SOTTO_RELAY_BINARY
#error "SOTTO_RELAY_BINARY must name the sotto-relay executable"
#endif

namespace fs = std::filesystem;
using namespace sotto;
using namespace sotto::bench;

namespace {

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
    BenchRelay relay(relay_bin, dir / "relay");
    std::printf("client_bench: %d queued messages, %d latency samples, relay %s\n", messages,
                samples, relay.url().c_str());

    // ---- receive: drain a queue ----
    Peer alice = make_peer(dir / "alice", relay.url(), "alice");
    Peer bob = make_peer(dir / "bob", relay.url(), "bob");
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
    Peer carol = make_peer(dir / "carol", relay.url(), "carol", PeerOptions{0ms});
    Peer dave = make_peer(dir / "dave", relay.url(), "dave", PeerOptions{0ms});
    auto d = carol.client->add_contact("dave").value();
    ConversationId cd = carol.client->direct_conversation(d.account).value();
    std::vector<double> stored_ms, delivered_ms;
    for (int i = 0; i < samples + 10; ++i) {
      auto start = Steady::now();
      auto id = carol.client->send_text(cd, "ping " + std::to_string(i)).value();
      auto arrived = dave.events->arrived("ping " + std::to_string(i), 20s);
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
