// One device's WebSocket to the relay (docs/protocol.md 3): request/response matching,
// pipelining within the relay's limit, pushes, ping/pong liveness, and reconnection with
// exponential backoff and jitter. Knows nothing about messages or storage.
//
// Thread rule: every public method may be called from any thread, except call(), which blocks
// and must not run on the loop thread. Callbacks (pushes, state) run on the loop thread and
// must not block.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <random>
#include <string>

#include "Transport.h"
#include "sotto/Result.h"
#include "sotto/proto/wire.pb.h"

namespace sotto {

struct Credentials {
  std::string account;  // 32 hex digits
  uint32_t device_id = 0;
  Bytes auth_secret;  // 32 bytes
};

// The Authorization header value of protocol.md 3.1.
std::string basic_auth(const Credentials& credentials);

struct ConnectionTiming {
  std::chrono::milliseconds ping_interval{30'000};
  std::chrono::milliseconds idle_timeout{90'000};
  std::chrono::milliseconds backoff_initial{1'000};
  std::chrono::milliseconds backoff_max{30'000};
  std::chrono::milliseconds stable_after{60'000};  // a connection this old resets the backoff
  std::chrono::milliseconds handshake_timeout{15'000};
  std::chrono::milliseconds request_timeout{30'000};
};

enum class LinkState {
  kOffline,     // not connected; will retry after a backoff (see retry_in_ms)
  kConnecting,  // dialing
  kConnected,   // socket open (authenticated when credentials were given)
  kStopped,     // stopped for good: stop() was called, or the relay refused the credentials
};

struct LinkEvent {
  LinkState state = LinkState::kOffline;
  std::string detail;         // why, for people
  uint64_t retry_in_ms = 0;   // kOffline: when the next attempt starts
  bool unauthorized = false;  // kStopped because the relay refused the credentials
  int close_code = 0;         // the relay's close code, if it closed the socket
};

class RelayConnection : public std::enable_shared_from_this<RelayConnection> {
 public:
  using ResponseCallback = std::function<void(Result<wire::Response>)>;
  using PushCallback = std::function<void(wire::Push)>;
  using StateCallback = std::function<void(const LinkEvent&)>;

  struct Options {
    std::string url;                         // ws:// or wss:// ... /v1/ws
    std::optional<Credentials> credentials;  // none: an unauthenticated socket
    bool reconnect = true;                   // false: one attempt, then kStopped
    ConnectionTiming timing;
    size_t max_in_flight = 32;  // the relay's limit on unanswered requests
  };

  static Result<std::shared_ptr<RelayConnection>> create(net::EventLoop& loop, Options options,
                                                         PushCallback on_push,
                                                         StateCallback on_state);
  ~RelayConnection();

  void start();
  // Closes the socket (1000) and stops reconnecting. Pending requests fail with kUnavailable.
  void stop();
  // Drops the current socket (if any) and dials again at once, resetting the backoff.
  void reconnect_now();
  // Dials at once if waiting to try again (an app back from the background); nothing while a
  // socket is open or being opened, so no second socket of this device races the first.
  void retry_now();
  // stop() was called, or the relay ended this connection for good. Any thread.
  bool stopped() const { return stopped_.load(); }

  // Sends a request (its id is assigned here). The callback gets the relay's Response, whatever
  // its status, or kUnavailable/kTimeout when the socket is not open or closes first, or no
  // answer comes within `timeout` (the default from the options when zero).
  void request(wire::Request request, ResponseCallback callback,
               std::chrono::milliseconds timeout = std::chrono::milliseconds(0));
  // Blocking form of request(). NB: never call it on the loop thread.
  Result<wire::Response> call(wire::Request request,
                              std::chrono::milliseconds timeout = std::chrono::milliseconds(0));
  // call() for a request whose typed body is already serialized (SendMulti.h): `head` has
  // its op and no body.
  Result<wire::Response> call_encoded(
      wire::Request head, std::string body,
      std::chrono::milliseconds timeout = std::chrono::milliseconds(0));

  LinkState state() const;
  bool connected() const { return state() == LinkState::kConnected; }

 private:
  RelayConnection(net::EventLoop& loop, Options options, net::Url url, PushCallback on_push,
                  StateCallback on_state);

  struct Pending {
    wire::Request request;
    std::optional<std::string> body;  // the serialized typed body, when `request` has none
    ResponseCallback callback;
    uint64_t deadline_ms = 0;  // steady clock
    bool sent = false;
  };

  // request() with the typed body serialized apart (call_encoded()).
  void request(wire::Request head, std::optional<std::string> body, ResponseCallback callback,
               std::chrono::milliseconds timeout);
  void dial();
  void on_open(uint64_t generation);
  void on_message(uint64_t generation, Bytes frame);
  void on_close(uint64_t generation, const net::CloseInfo& info);
  void schedule_retry(std::string detail, uint64_t at_least_ms, int close_code);
  void tick();
  void pump();
  void fail_all(ErrorCode code, const std::string& why);
  void set_state(LinkEvent event);

  net::EventLoop& loop_;
  Options options_;
  net::Url url_;
  PushCallback on_push_;
  StateCallback on_state_;

  // Loop-thread state.
  std::shared_ptr<net::WebSocket> ws_;
  uint64_t generation_ = 0;
  uint64_t connected_at_ms_ = 0;
  uint64_t last_ping_ms_ = 0;
  std::chrono::milliseconds backoff_{0};
  std::optional<net::EventLoop::TimerId> retry_timer_;
  std::optional<net::EventLoop::TimerId> tick_timer_;
  std::map<uint64_t, Pending> in_flight_;  // by request id
  std::deque<Pending> waiting_;            // over max_in_flight, or before the socket opens
  uint64_t next_id_ = 1;
  std::atomic<bool> stopped_{false};  // written on the loop thread only
  // When the relay last replaced this connection by a newer one of the same device (4002).
  uint64_t replaced_at_ms_ = 0;
  // Why the relay ended a connection that is not re-dialled: what later requests are told.
  std::string stop_reason_;
  bool started_ = false;
  std::mt19937_64 rng_;

  mutable std::mutex state_mu_;
  LinkState state_ = LinkState::kOffline;
};

// The relay's non-OK status as an Error (the relay's own message included).
Error status_error(const wire::Response& response, std::string_view what);

}  // namespace sotto
