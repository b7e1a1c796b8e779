// A client in a process of its own, so tests can kill -9 it at the worst moment.
//
//   client_driver DIR KEY_HEX RELAY_URL send PEER_ACCOUNT COUNT PREFIX
//       connects, queues COUNT texts PREFIX0.. to PEER_ACCOUNT, printing "QUEUED <id>" after
//       each send_text() returned, then waits to be killed.
//   client_driver DIR KEY_HEX RELAY_URL receive [RECEIPT_DELAY_MS]
//       connects and prints "GOT <text>" for every message it stores, until killed. Delivered
//       receipts wait RECEIPT_DELAY_MS (20) before they go out.
//   client_driver DIR KEY_HEX RELAY_URL download CONVERSATION MESSAGE_ID
//       connects and downloads attachment 0 of the message, printing "AT <bytes>" as the
//       download moves on and "DOWNLOADED" when it is stored, then waits to be killed.
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <string>
#include <thread>

#include "sotto/Client.h"

using namespace sotto;

namespace {

class Printer : public ClientListener {
 public:
  void on_message(const Message& m) override {
    if (m.outgoing || m.kind != MessageKind::kText) return;
    std::printf("GOT %s\n", m.text.c_str());
    std::fflush(stdout);
  }
};

int die(const std::string& what) {
  std::fprintf(stderr, "client_driver: %s\n", what.c_str());
  return 1;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 5) return die("usage: client_driver DIR KEY_HEX RELAY_URL send|receive|download ...");
  Bytes key;
  if (!from_hex(argv[2], key) || key.size() != 32) return die("bad key");
  auto profile = Profile::open_with_key(argv[1], SecureBytes(key.data(), key.size()));
  if (!profile.ok()) return die(profile.error().message);
  ClientOptions o;
  o.relay_url = argv[3];
  o.receipt_delay = std::chrono::milliseconds(20);
  o.backoff_initial = std::chrono::milliseconds(100);
  o.backoff_max = std::chrono::milliseconds(1000);
  std::string mode = argv[4];
  if (mode == "receive" && argc == 6)
    o.receipt_delay = std::chrono::milliseconds(std::stoi(argv[5]));
  auto client = Client::create(std::move(*profile), o);
  if (!client.ok()) return die(client.error().message);
  if (mode == "receive") {
    (*client)->set_listener(std::make_shared<Printer>());
    if (auto s = (*client)->connect(); !s.ok()) return die(s.error().message);
    for (;;) std::this_thread::sleep_for(std::chrono::seconds(1));
  }
  if (mode == "send" && argc == 8) {
    if (auto s = (*client)->connect(); !s.ok()) return die(s.error().message);
    if (!(*client)->wait_online(std::chrono::seconds(20))) return die("not online");
    auto conv = (*client)->direct_conversation(argv[5]);
    if (!conv.ok()) return die(conv.error().message);
    int count = std::stoi(argv[6]);
    for (int i = 0; i < count; ++i) {
      auto id = (*client)->send_text(*conv, std::string(argv[7]) + std::to_string(i));
      if (!id.ok()) return die(id.error().message);
      std::printf("QUEUED %s\n", id->c_str());
      std::fflush(stdout);
    }
    for (;;) std::this_thread::sleep_for(std::chrono::seconds(1));
  }
  if (mode == "download" && argc == 7) {
    if (auto s = (*client)->connect(); !s.ok()) return die(s.error().message);
    if (!(*client)->wait_online(std::chrono::seconds(20))) return die("not online");
    uint64_t reported = 0;
    auto s = (*client)->download_attachment(
        std::stoll(argv[5]), argv[6], 0, [&](uint64_t done, uint64_t) {
          if (done < reported + (256 << 10)) return;  // every 256 KiB
          reported = done;
          std::printf("AT %llu\n", static_cast<unsigned long long>(done));
          std::fflush(stdout);
        });
    if (!s.ok()) return die(s.error().message);
    std::printf("DOWNLOADED\n");
    std::fflush(stdout);
    for (;;) std::this_thread::sleep_for(std::chrono::seconds(1));
  }
  return die("unknown command " + mode);
}
