// A small synchronous client of the sotto wire protocol for tests: one WebSocket to a relay,
// requests answered in any order, pushes collected on the side. Real sockets, real frames;
// keys made with sotto::keys. Not thread-safe: one thread per client.
#pragma once

#include <chrono>
#include <cstdint>
#include <deque>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "WireRequests.h"
#include "sotto/Bytes.h"
#include "sotto/Result.h"
#include "sotto/proto/wire.pb.h"

namespace sotto::test {

using namespace std::chrono_literals;

class WireClient {
 public:
  // Connects to ws://host:port/v1/ws, with credentials when given. On a refused upgrade the
  // error message carries the HTTP status and body ("upgrade refused: 401 ...") and `http_status`
  // is set.
  static Result<std::unique_ptr<WireClient>> connect(const std::string& host, uint16_t port,
                                                     const Credentials* credentials = nullptr,
                                                     int* http_status = nullptr);
  ~WireClient();

  // Sends the request (an id is assigned when it is 0) and waits for its response; pushes
  // that arrive meanwhile are kept for next_push(). kNotFound on timeout, kStorageIo when the
  // connection closed.
  Result<wire::Response> call(wire::Request request,
                              std::chrono::milliseconds timeout = std::chrono::seconds(10));
  // Sends without waiting; returns the id used.
  uint64_t send(wire::Request request);
  // Waits for the response to `id`.
  Result<wire::Response> wait_response(
      uint64_t id, std::chrono::milliseconds timeout = std::chrono::seconds(10));
  // Any bytes as one WebSocket message (binary or text), for hostile-input tests.
  bool send_raw(const std::string& bytes, bool binary = true);

  // The next push, or nullopt after `timeout`.
  std::optional<wire::Push> next_push(std::chrono::milliseconds timeout = std::chrono::seconds(5));
  // Pushes received so far and not yet taken.
  std::deque<wire::Push>& pushes() { return pushes_; }
  // Waits until the relay closes the connection: its close code (1006 for a drop without a
  // close frame), or nullopt after `timeout`.
  std::optional<uint16_t> wait_closed(std::chrono::milliseconds timeout = std::chrono::seconds(10));
  bool is_open() const;
  // A WebSocket ping (liveness).
  void ping();
  // Closes with 1000 and waits briefly for the relay's answer.
  void close();

  class Impl;

 private:
  explicit WireClient(std::unique_ptr<Impl> impl);
  void pump(std::chrono::milliseconds timeout, const std::function<bool()>& done);
  std::unique_ptr<Impl> impl_;
  std::deque<wire::Push> pushes_;
  std::vector<wire::Response> responses_;
  uint64_t next_id_ = 1;
};

// Connects unauthenticated, registers, closes; fills account_id and device_id.
Result<TestDevice> register_device(const std::string& host, uint16_t port,
                                   const std::string& handle, uint32_t prekeys = 10);
// Connects with the device's credentials.
Result<std::unique_ptr<WireClient>> connect_device(const std::string& host, uint16_t port,
                                                   const TestDevice& device);

}  // namespace sotto::test
