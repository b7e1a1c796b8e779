// A TCP proxy on 127.0.0.1 between clients and the relay that a test can make misbehave the
// way networks do: cut every connection at once (a reset in both directions), or stop
// forwarding for a while (a stall: bytes wait, nothing is lost, pings go unanswered).
//
// Given several upstreams (the nodes of a cluster), it is also the load balancer in front of
// them: each new connection goes to the next one in turn, skipping those that refuse it (a
// node that is down), so a client that reconnects to the one address lands on a live node.
//
// One thread forwards with poll() (WSAPoll on Windows); each direction keeps at most one buffer and reads no more
// from its source until the destination took it, so a slow side slows only its own pair.
// A tap, when given, sees every byte that passes, for tests that look at what is on the wire.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <thread>
#include <vector>

#ifdef _WIN32
#include <winsock2.h>
#endif

namespace sotto::test {

#ifdef _WIN32
using Socket = SOCKET;
#else
using Socket = int;
#endif

class FaultyProxy {
 public:
  // The bytes read from one side of connection `connection` (numbered from 1 as accepted),
  // before they go on: `to_upstream` for client -> upstream. Called on the proxy's thread.
  using Tap =
      std::function<void(uint64_t connection, bool to_upstream, const char* data, size_t size)>;

  // Listens on 127.0.0.1, an ephemeral port; connects each accepted socket to `upstream_port`.
  explicit FaultyProxy(uint16_t upstream_port, Tap tap = {});
  // The same in front of several upstreams: connections go round-robin, starting at
  // `upstreams[first % size]`; one that refuses is skipped (all refuse: the client's
  // connection is reset).
  FaultyProxy(std::vector<uint16_t> upstreams, size_t first);
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
  // The upstream (an index into the constructor's list) of the newest connection still open:
  // for a client that holds one connection at a time, where it is now. nullopt: none open.
  std::optional<size_t> current_upstream() const;
  // Connections made to upstream `index` so far.
  uint64_t connections_to(size_t index) const { return routed_[index].load(); }

 private:
  void start();
  void run();

  Socket listener_ = static_cast<Socket>(-1);
  // A UDP socket connected to itself: a byte sent wakes the proxy thread's poll().
  Socket wake_ = static_cast<Socket>(-1);
  uint16_t port_ = 0;
  std::vector<uint16_t> upstreams_;
  size_t next_upstream_ = 0;  // the proxy thread's turn
  Tap tap_;
  std::atomic<bool> stop_{false};
  std::atomic<bool> cut_requested_{false};
  std::atomic<int64_t> stalled_until_ns_{0};
  std::atomic<uint64_t> cuts_{0};
  std::atomic<int> current_{-1};
  std::unique_ptr<std::atomic<uint64_t>[]> routed_;
  std::thread thread_;
};

}  // namespace sotto::test
