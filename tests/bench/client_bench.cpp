// client_bench: what a sotto::Client costs on the sending and the receiving side and how long
// a message takes from one client to another, through a real sotto-relay on loopback.
//
//   client_bench [--messages N] [--latency-samples N] [--relay PATH]
//
// The N texts come from the chat corpus search_bench writes (BenchCorpus.h): several scripts,
// lengths of 1 to 200 words, Zipf-distributed vocabularies. Prints:
//   - sender: send_text() calls/s (the clock runs from the first call until the last returns,
//     each message then committed to history and outbox) with the sender offline, and the
//     outbox drain on its own clock: connect() until the relay has acknowledged every message.
//     Then both at once, as an app sends: calls/s while the outbox sends alongside, and the
//     time from the first call until the relay has acknowledged the last message;
//   - receive: messages/s a client decrypts, stores (with the ratchet state, one transaction
//     per batch, fsync on), indexes for search and acknowledges while draining an N-message
//     queue, against raw libsignal decryption of the same texts with in-memory stores;
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

#include "BenchCorpus.h"
#include "BenchReference.h"
#include "BenchSupport.h"
#include "MemoryProtocolStore.h"
#include "SessionCrypto.h"
#include "sotto/Client.h"
#include "sotto/keys/Bundle.h"

#ifndef SOTTO_RELAY_BINARY
#error "SOTTO_RELAY_BINARY must name the sotto-relay executable"
#endif

namespace fs = std::filesystem;
using namespace sotto;
using namespace sotto::bench;

namespace {

// Raw libsignal: decrypt `texts` with in-memory stores (the library's own limit).
double raw_decrypt_rate(const std::vector<std::string>& texts) {
  auto ctx = keys::Context::create().value();
  MemoryProtocolStore sa, sb;
  auto a = SessionCrypto::create(ctx, sa).value();
  auto b = SessionCrypto::create(ctx, sb).value();
  if (!a->create_identity("alice", 1, 1).ok() || !b->create_identity("bob", 1, 1).ok())
    die("identity");
  auto bundle = b->issue_bundle().value();
  if (!a->start_session(Address{"bob", 1}, bundle).ok()) die("session");
  std::vector<Ciphertext> cts;
  for (const auto& text : texts)
    cts.push_back(a->encrypt(Address{"bob", 1}, as_bytes(text)).value());
  auto t = Steady::now();
  for (const auto& ct : cts)
    if (!b->decrypt(Address{"alice", 1}, ct).ok()) die("raw decrypt failed");
  return static_cast<double>(texts.size()) / seconds_since(t);
}

double percentile(std::vector<double> v, double p) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  size_t i = std::min(v.size() - 1, static_cast<size_t>(p * static_cast<double>(v.size())));
  return v[i];
}

// One send_text() after another: the clock starts before the first call and stops when the
// last returns, that is when the last message is committed to history and outbox.
struct SendRun {
  Steady::time_point start;
  double calls_s = 0;
  std::vector<double> call_ms;
  std::vector<std::string> ids;
};

SendRun send_all(Peer& from, ConversationId conv, const std::vector<std::string>& texts) {
  SendRun run;
  run.start = Steady::now();
  for (const auto& text : texts) {
    auto t = Steady::now();
    auto id = from.client->send_text(conv, text);
    run.call_ms.push_back(std::chrono::duration<double, std::milli>(Steady::now() - t).count());
    if (!id.ok()) die("send_text", id.error());
    run.ids.push_back(*id);
  }
  run.calls_s = seconds_since(run.start);
  return run;
}

// Seconds from `since` until the relay had acknowledged the last of `ids` (status sent).
double seconds_until_sent(Peer& from, const std::vector<std::string>& ids,
                          Steady::time_point since) {
  Steady::time_point last = since;
  for (const auto& id : ids) {
    auto t = from.events->sent(id, 600s);
    if (!t) die("the relay did not acknowledge message " + id + " within 600 s");
    last = std::max(last, *t);
  }
  return std::chrono::duration<double>(last - since).count();
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
  if (messages < 1 || samples < 1) die("--messages and --latency-samples must be at least 1");
  // Chat texts of every length and script, so that indexing them costs what real history does.
  std::vector<std::string> texts;
  size_t text_bytes = 0;
  {
    Corpus corpus(static_cast<size_t>(messages));
    for (int i = 0; i < messages; ++i) {
      texts.push_back(corpus.next(static_cast<size_t>(i)).body);
      text_bytes += texts.back().size();
    }
  }
  const double mean_bytes = static_cast<double>(text_bytes) / messages;
  fs::path dir = fs::temp_directory_path() / ("sotto-client-bench-" + std::to_string(::getpid()));
  fs::remove_all(dir);
  {
    BenchRelay relay(relay_bin, dir / "relay");
    std::printf("client_bench: %d queued messages, %d latency samples, relay %s\n", messages,
                samples, relay.url().c_str());
    std::printf("texts: the chat corpus of search_bench (BenchCorpus.h), mean %.0f bytes\n",
                mean_bytes);
    print_machine("start", measure_machine(dir));

    // ---- sender: send_text() calls, and the outbox drain, each timed on its own ----
    Peer alice = make_peer(dir / "alice", relay.url(), "alice");
    Peer bob = make_peer(dir / "bob", relay.url(), "bob");
    Peer erin = make_peer(dir / "erin", relay.url(), "erin");
    auto contact = alice.client->add_contact("bob");
    if (!contact.ok()) die(contact.error().message);
    ConversationId conv = alice.client->direct_conversation(contact->account).value();
    auto contact_erin = alice.client->add_contact("erin");
    if (!contact_erin.ok()) die(contact_erin.error().message);
    ConversationId conv_erin = alice.client->direct_conversation(contact_erin->account).value();
    bob.client->disconnect();
    erin.client->disconnect();
    // Offline: nothing but the calls, each committing the message to history and outbox.
    alice.client->disconnect();
    SendRun offline = send_all(alice, conv, texts);
    // Then the drain alone: connect() until the relay has acknowledged every message.
    auto connected = Steady::now();
    if (!alice.client->connect().ok()) die("the sender could not connect");
    double drain_s = seconds_until_sent(alice, offline.ids, connected);
    // Online, as an app sends: the outbox sends while the calls go on.
    SendRun online = send_all(alice, conv_erin, texts);
    double online_s = seconds_until_sent(alice, online.ids, online.start);

    // ---- receive: drain a queue ----
    auto t = Steady::now();
    if (!bob.client->connect().ok()) die("connect");
    if (!bob.events->wait_received(static_cast<size_t>(messages), 600s)) die("drain stalled");
    double drain_receive_s = seconds_since(t);
    double client_rate = messages / drain_receive_s;
    double raw_rate = raw_decrypt_rate(texts);

    std::printf("\n%-58s %10s %8s %8s\n", "sender, one send_text() after another", "msgs/s",
                "p50 ms", "p99 ms");
    std::printf("%-58s %10.0f %8.2f %8.2f\n",
                "send_text() returned, sender offline (history + outbox)",
                messages / offline.calls_s, percentile(offline.call_ms, 0.5),
                percentile(offline.call_ms, 0.99));
    std::printf("%-58s %10.0f\n", "outbox drain: connect() until the relay acknowledged all",
                messages / drain_s);
    std::printf("%-58s %10.0f %8.2f %8.2f\n", "send_text() returned, sender online (outbox busy)",
                messages / online.calls_s, percentile(online.call_ms, 0.5),
                percentile(online.call_ms, 0.99));
    std::printf("%-58s %10.0f\n", "  first call until the relay acknowledged all",
                messages / online_s);

    std::printf("\n%-58s %10s\n", "receive (decrypt + store + index + ack)", "msgs/s");
    std::printf("%-58s %10.0f\n", "sotto::Client draining its queue (SQLCipher, fsync)",
                client_rate);
    std::printf("%-58s %10.0f\n", "raw libsignal decrypt of the same texts, in-memory stores",
                raw_rate);
    std::printf("%-58s %9.0f%%\n", "client / raw", 100.0 * client_rate / raw_rate);

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
    std::printf("\n");
    print_machine("end", measure_machine(dir));
  }
  fs::remove_all(dir);
  return 0;
}
