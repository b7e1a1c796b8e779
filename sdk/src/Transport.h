// The SDK's network edge: one event-loop thread, a WebSocket to the relay and HTTP transfers
// for attachments. Boost.Beast lives in Transport.cpp only; nothing here names a Boost type,
// so the rest of the SDK compiles without it.
//
// Thread rule: EventLoop::post/after/cancel and WebSocket::send/ping/close may be called from
// any thread. Every callback runs on the loop's thread.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "sotto/Bytes.h"
#include "sotto/Result.h"

namespace sotto::net {

class EventLoop {
 public:
  using TimerId = uint64_t;

  EventLoop();   // starts the thread
  ~EventLoop();  // stops it; pending work is dropped
  EventLoop(const EventLoop&) = delete;
  EventLoop& operator=(const EventLoop&) = delete;

  void post(std::function<void()> fn);
  // Runs `fn` once after `delay` unless cancelled first.
  TimerId after(std::chrono::milliseconds delay, std::function<void()> fn);
  void cancel(TimerId id);
  bool in_loop_thread() const;

  struct Impl;
  Impl& impl() { return *impl_; }

 private:
  std::unique_ptr<Impl> impl_;
};

// ws://, wss://, http:// or https://host[:port][/path]
struct Url {
  bool tls = false;
  std::string host;
  std::string port;
  std::string target = "/";  // path and query
  std::string with_target(std::string_view target) const;
};
Result<Url> parse_url(std::string_view text);

// True for the names of this machine: "localhost", 127.0.0.0/8 and ::1, written as literals
// (nothing is resolved).
bool is_loopback_host(std::string_view host);
// Plain ws:// and http:// only to this machine: kInvalidArgument, naming `text` and the fix,
// for a url without TLS to any other host, unless `allow_plaintext` (a development option).
Status check_transport(const Url& url, std::string_view text, bool allow_plaintext);

using Headers = std::vector<std::pair<std::string, std::string>>;

// Why a WebSocket ended (or never opened).
struct CloseInfo {
  enum class Kind {
    kConnectFailed,   // DNS, TCP or TLS failed, or the handshake timed out
    kUpgradeRefused,  // the server answered the upgrade with an HTTP status (see http_status)
    kClosed,          // a close frame arrived (see close_code)
    kBroken,          // the connection broke without a close frame
    kLocal,           // close() was called
  };
  Kind kind = Kind::kBroken;
  int http_status = 0;          // kUpgradeRefused
  uint64_t retry_after_ms = 0;  // from a Retry-After header, if any
  int close_code = 0;           // kClosed
  std::string reason;           // for logs and error messages
};

struct WebSocketEvents {
  std::function<void()> on_open;
  std::function<void(Bytes frame)> on_message;     // one binary message
  std::function<void(const CloseInfo&)> on_close;  // exactly once, after which nothing else
};

class WebSocket {
 public:
  virtual ~WebSocket() = default;
  // Starts connecting to `url` with `headers` on the upgrade request. Events go to `events`
  // on the loop thread.
  static std::shared_ptr<WebSocket> connect(EventLoop& loop, const Url& url, Headers headers,
                                            WebSocketEvents events,
                                            std::chrono::milliseconds handshake_timeout);
  // Queues one binary message; dropped if the socket is not open.
  virtual void send(Bytes frame) = 0;
  virtual void ping() = 0;
  virtual void close(int code, std::string reason) = 0;
  // Steady-clock ms of the last byte, frame, ping or pong received; 0 before any.
  virtual uint64_t last_received_ms() const = 0;
  // Bytes queued but not yet written.
  virtual size_t queued_bytes() const = 0;
};

// Steady clock in ms, for liveness and backoff.
uint64_t steady_ms();

// ---- HTTP (attachments) ----

struct HttpResult {
  int status = 0;
  std::string body;  // error bodies (short); empty for downloads written to a file
  uint64_t retry_after_ms = 0;
  uint64_t content_length = 0;
  std::string content_range;  // as sent by the server
};

using TransferProgress = std::function<void(uint64_t done, uint64_t total)>;

// PUT the whole file at `path` to `url` (with Content-Length). Blocking; call it from a worker
// thread, never from the loop thread. `cancel` is polled between chunks.
Result<HttpResult> http_put_file(const Url& url, const Headers& headers,
                                 const std::filesystem::path& path,
                                 const TransferProgress& progress, const std::atomic<bool>* cancel,
                                 std::chrono::milliseconds timeout);
// GET `url` into `path`, appending from byte `offset` (Range request when offset > 0).
// Blocking, as http_put_file.
Result<HttpResult> http_get_to_file(const Url& url, const Headers& headers,
                                    const std::filesystem::path& path, uint64_t offset,
                                    const TransferProgress& progress,
                                    const std::atomic<bool>* cancel,
                                    std::chrono::milliseconds timeout);

}  // namespace sotto::net
