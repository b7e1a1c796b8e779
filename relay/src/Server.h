// The network face of the relay: one Beast port serving WebSocket (/v1/ws) and HTTP
// (attachments, /healthz, /metrics), plain or TLS. One io_context on N threads, a strand per
// connection, C++20 coroutines for reading and a per-connection write queue for writing.
// Boost types stay inside Server.cpp and PushClient.cpp; this header names none.
#pragma once

#include <cstdint>
#include <memory>

#include "Config.h"
#include "Metrics.h"
#include "Relay.h"
#include "sotto/Result.h"

namespace sotto::relay {

class Server {
 public:
  Server(const Config& config, Relay& relay, Metrics& metrics);
  ~Server();
  Server(const Server&) = delete;
  Server& operator=(const Server&) = delete;

  // Serves on `listen_fd`, a socket from open_listener() that it takes over, or binds one of
  // its own when -1; writes --port-file. kInvalidArgument / kUnavailable with a reason.
  Status start(int listen_fd = -1);
  // Serves until SIGINT/SIGTERM, then shuts down: stops accepting, lets queued storage jobs
  // commit and their answers go out, closes every socket with 1001 and returns.
  void run();
  uint16_t port() const;

  class Impl;

 private:
  std::unique_ptr<Impl> impl_;
};

}  // namespace sotto::relay
