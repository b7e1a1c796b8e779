// A TCP proxy on 127.0.0.1 between clients and the relay that a test can make misbehave the
// way networks do: cut every connection at once (a reset in both directions), or stop
// forwarding for a while (a stall: bytes wait, nothing is lost, pings go unanswered).
//
// One thread forwards with poll(); each direction keeps at most one buffer and reads no more
// from its source until the destination took it, so a slow side slows only its own pair.
// A tap, when given, sees every byte that passes, for tests that look at what is on the wire.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <thread>

namespace sotto::test {

class FaultyProxy {
 public:
  // The bytes read from one side of connection `connection` (numbered from 1 as accepted),
  // before they go on: `to_upstream` for client -> upstream. Called on the proxy's thread.
  using Tap =
      std::function<void(uint64_t connection, bool to_upstream, const char* data, size_t size)>;

  // Listens on 127.0.0.1, an ephemeral port; connects each accepted socket to `upstream_port`.
  explicit FaultyProxy(uint16_t upstream_port, Tap tap = {});
  ~FaultyProxy();
  FaultyProxy(const FaultyProxy&) = delete;
  FaultyProxy& operator=(const FaultyProxy&) = delete;

  uint16_t port() const { return port_; }
  // Resets every open connection (both ends see ECONNRESET). New ones are accepted as before.
  void cut_all();
  // Forwards nothing, on any connection, for `duration` (connections are still accepted).
  void stall(std::chrono::milliseconds duration);
  // Connections cut so far.
  uint64_t cut_count() const { return cuts_.load(); }

 private:
  void run();

  int listener_ = -1;
  int wake_[2] = {-1, -1};
  uint16_t port_ = 0;
  uint16_t upstream_ = 0;
  Tap tap_;
  std::atomic<bool> stop_{false};
  std::atomic<bool> cut_requested_{false};
  std::atomic<int64_t> stalled_until_ns_{0};
  std::atomic<uint64_t> cuts_{0};
  std::thread thread_;
};

}  // namespace sotto::test
