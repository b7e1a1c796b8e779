#include "RelayConnection.h"

#include <sodium.h>

#include <future>

#include "SendMulti.h"
#include "sotto/Bytes.h"

namespace sotto {

namespace {

constexpr std::chrono::milliseconds kTick{250};
// A second 4002 within this long stops the connection (on_close).
constexpr uint64_t kReplacedWindowMs = 60'000;

std::string base64(std::string_view in) {
  std::string out(sodium_base64_encoded_len(in.size(), sodium_base64_VARIANT_ORIGINAL), '\0');
  sodium_bin2base64(out.data(), out.size(), reinterpret_cast<const unsigned char*>(in.data()),
                    in.size(), sodium_base64_VARIANT_ORIGINAL);
  out.resize(std::strlen(out.c_str()));
  return out;
}

}  // namespace

std::string basic_auth(const Credentials& c) {
  std::string user = c.account + "." + std::to_string(c.device_id) + ":" + to_hex(c.auth_secret);
  std::string header = "Basic " + base64(user);
  sodium_memzero(user.data(), user.size());
  return header;
}

Error status_error(const wire::Response& r, std::string_view what) {
  std::string msg = std::string(what) + ": the relay answered " + wire::Status_Name(r.status());
  if (!r.message().empty()) msg += " (" + r.message() + ")";
  switch (r.status()) {
    case wire::BAD_REQUEST:
      return make_error(ErrorCode::kRelayRejected, msg);
    case wire::UNAUTHORIZED:
      return make_error(ErrorCode::kUnauthorized, msg);
    case wire::FORBIDDEN:
      return make_error(ErrorCode::kForbidden, msg);
    case wire::NOT_FOUND:
      return make_error(ErrorCode::kNotFound, msg);
    case wire::CONFLICT:
      return make_error(ErrorCode::kConflict, msg);
    case wire::TOO_LARGE:
      return make_error(ErrorCode::kTooLarge, msg);
    case wire::LIMIT_REACHED:
      return make_error(ErrorCode::kTooLarge, msg);
    case wire::RATE_LIMITED:
      if (r.has_rate_limited())
        msg += "; try again in " +
               std::to_string((r.rate_limited().retry_after_ms() + 999) / 1000) + " s";
      return make_error(ErrorCode::kRateLimited, msg);
    case wire::UNAVAILABLE:
      return make_error(ErrorCode::kUnavailable, msg);
    default:
      return make_error(ErrorCode::kRelayRejected, msg);
  }
}

Result<std::shared_ptr<RelayConnection>> RelayConnection::create(net::EventLoop& loop,
                                                                 Options options,
                                                                 PushCallback on_push,
                                                                 StateCallback on_state) {
  SOTTO_TRY_ASSIGN(auto url, net::parse_url(options.url));
  return std::shared_ptr<RelayConnection>(new RelayConnection(
      loop, std::move(options), std::move(url), std::move(on_push), std::move(on_state)));
}

RelayConnection::RelayConnection(net::EventLoop& loop, Options options, net::Url url,
                                 PushCallback on_push, StateCallback on_state)
    : loop_(loop),
      options_(std::move(options)),
      url_(std::move(url)),
      on_push_(std::move(on_push)),
      on_state_(std::move(on_state)),
      rng_(std::random_device{}()) {}

RelayConnection::~RelayConnection() = default;

void RelayConnection::start() {
  loop_.post([self = shared_from_this()] {
    if (self->started_ || self->stopped_) return;
    self->started_ = true;
    self->tick_timer_ = self->loop_.after(kTick, [self] { self->tick(); });
    self->dial();
  });
}

void RelayConnection::stop() {
  auto self = shared_from_this();
  auto work = [self] {
    if (self->stopped_) return;
    self->stopped_ = true;
    if (self->retry_timer_) self->loop_.cancel(*self->retry_timer_);
    if (self->tick_timer_) self->loop_.cancel(*self->tick_timer_);
    ++self->generation_;  // ignore whatever the old socket still reports
    if (self->ws_) self->ws_->close(1000, "closing");
    self->ws_.reset();
    self->fail_all(ErrorCode::kUnavailable, "the connection to the relay was closed");
    self->set_state({LinkState::kStopped, "stopped", 0, false, 0});
  };
  if (loop_.in_loop_thread()) {
    work();
    return;
  }
  // Wait, so no callback runs after stop() returns.
  std::promise<void> done;
  loop_.post([&] {
    work();
    done.set_value();
  });
  done.get_future().wait();
}

void RelayConnection::reconnect_now() {
  loop_.post([self = shared_from_this()] {
    if (self->stopped_) return;
    if (self->retry_timer_) {
      self->loop_.cancel(*self->retry_timer_);
      self->retry_timer_.reset();
    }
    self->backoff_ = std::chrono::milliseconds(0);
    if (self->ws_) {
      ++self->generation_;
      self->ws_->close(1000, "reconnecting");
      self->ws_.reset();
      self->fail_all(ErrorCode::kUnavailable, "reconnecting to the relay");
    }
    self->dial();
  });
}

LinkState RelayConnection::state() const {
  std::lock_guard lock(state_mu_);
  return state_;
}

void RelayConnection::set_state(LinkEvent event) {
  {
    std::lock_guard lock(state_mu_);
    state_ = event.state;
  }
  if (on_state_) on_state_(event);
}

void RelayConnection::retry_now() {
  loop_.post([self = shared_from_this()] {
    if (self->stopped_ || !self->retry_timer_) return;
    self->loop_.cancel(*self->retry_timer_);
    self->retry_timer_.reset();
    self->backoff_ = std::chrono::milliseconds(0);
    self->dial();
  });
}

void RelayConnection::dial() {
  if (stopped_) return;
  retry_timer_.reset();
  uint64_t gen = ++generation_;
  net::Headers headers;
  if (options_.credentials)
    headers.emplace_back("Authorization", basic_auth(*options_.credentials));
  set_state({LinkState::kConnecting, "connecting to " + options_.url, 0, false, 0});
  auto self = shared_from_this();
  net::WebSocketEvents events;
  events.on_open = [self, gen] { self->on_open(gen); };
  events.on_message = [self, gen](Bytes frame) { self->on_message(gen, std::move(frame)); };
  events.on_close = [self, gen](const net::CloseInfo& info) { self->on_close(gen, info); };
  ws_ = net::WebSocket::connect(loop_, url_, std::move(headers), std::move(events),
                                options_.timing.handshake_timeout);
}

void RelayConnection::on_open(uint64_t generation) {
  if (generation != generation_ || stopped_) return;
  connected_at_ms_ = net::steady_ms();
  last_ping_ms_ = connected_at_ms_;
  set_state({LinkState::kConnected, "connected", 0, false, 0});
  pump();
}

void RelayConnection::on_message(uint64_t generation, Bytes frame) {
  if (generation != generation_ || stopped_) return;
  wire::Frame f;
  if (!f.ParseFromArray(frame.data(), static_cast<int>(frame.size()))) {
    // A relay that sends garbage is broken or not a sotto relay; start over.
    if (ws_) ws_->close(1002, "unparsable frame");
    return;
  }
  if (f.has_response()) {
    auto it = in_flight_.find(f.response().id());
    if (it == in_flight_.end()) return;  // timed out already
    auto cb = std::move(it->second.callback);
    in_flight_.erase(it);
    // An answered request proves the relay is back and takes this device: the next drop
    // starts over at the shortest wait, however short this connection turns out.
    backoff_ = std::chrono::milliseconds(0);
    cb(std::move(*f.mutable_response()));
    pump();
  } else if (f.has_push()) {
    if (on_push_) on_push_(std::move(*f.mutable_push()));
  }
}

void RelayConnection::on_close(uint64_t generation, const net::CloseInfo& info) {
  if (generation != generation_ || stopped_) return;
  ws_.reset();
  std::string why = "the connection to the relay closed: " + info.reason;
  // No new connection follows: requests not sent yet fail now too (tick() stops with it).
  auto stop = [&](LinkEvent event) {
    stopped_ = true;
    stop_reason_ = why;
    fail_all(ErrorCode::kUnavailable, why);
    set_state(std::move(event));
  };
  using Kind = net::CloseInfo::Kind;
  // The relay's operator suspended the account (protocol.md 3.1): the credentials are still
  // this device's and work again once the suspension is lifted, so try again, rarely.
  const bool suspended =
      (info.kind == Kind::kUpgradeRefused && info.http_status == 401 &&
       info.reason.find("suspended by the relay's operator") != std::string::npos) ||
      (info.kind == Kind::kClosed && info.close_code == 4003);
  if (suspended && options_.reconnect) {
    fail_all(ErrorCode::kUnavailable, why);
    connected_at_ms_ = 0;
    backoff_ = options_.timing.backoff_max;
    return schedule_retry(info.close_code == 4003
                              ? "the relay's operator suspended this account"
                              : info.reason,
                          static_cast<uint64_t>(options_.timing.backoff_max.count()),
                          info.close_code);
  }
  if (info.kind == Kind::kUpgradeRefused && info.http_status == 401 && !suspended)
    return stop({LinkState::kStopped,
                 "the relay refused this device's credentials: the device was removed from its "
                 "account, or the account was deleted",
                 0, true, 0});
  // A newer connection of this device took over (protocol.md 3.1). It may be this device's own
  // earlier socket, closed here while the relay was still authenticating it and registered
  // there last (a reconnect racing the one before it): then nothing else is connected, so try
  // once more. A second replacement within kReplacedWindowMs means another copy of this device
  // is live, and this one gives way as the protocol asks.
  if (info.kind == Kind::kClosed && info.close_code == 4002 && options_.reconnect &&
      (!replaced_at_ms_ || net::steady_ms() - replaced_at_ms_ > kReplacedWindowMs)) {
    replaced_at_ms_ = net::steady_ms();
    fail_all(ErrorCode::kUnavailable, why);
    connected_at_ms_ = 0;
    return schedule_retry("another connection of this device replaced this one; trying once "
                          "more in case it was this device's own earlier one",
                          0, info.close_code);
  }
  if (info.kind == Kind::kClosed && (info.close_code == 4001 || info.close_code == 4002))
    return stop({LinkState::kStopped,
                 info.close_code == 4001
                     ? "this device was removed from its account (or the account was deleted)"
                     : "another connection of this device replaced this one",
                 0, info.close_code == 4001, info.close_code});
  if (!options_.reconnect)
    return stop({LinkState::kStopped, info.reason, 0, false, info.close_code});
  fail_all(ErrorCode::kUnavailable, why);
  // A connection that lasted resets the backoff; one that dropped at once does not.
  if (connected_at_ms_ &&
      net::steady_ms() - connected_at_ms_ >= uint64_t(options_.timing.stable_after.count()))
    backoff_ = std::chrono::milliseconds(0);
  connected_at_ms_ = 0;
  schedule_retry(info.reason, info.retry_after_ms, info.close_code);
}

void RelayConnection::schedule_retry(std::string detail, uint64_t at_least_ms, int close_code) {
  const auto& t = options_.timing;
  backoff_ = backoff_.count() == 0 ? t.backoff_initial : std::min(backoff_ * 2, t.backoff_max);
  // Full jitter over the upper half, so a relay restart does not bring every client back in
  // the same instant.
  auto ms = static_cast<uint64_t>(backoff_.count());
  std::uniform_int_distribution<uint64_t> jitter(ms / 2, ms);
  uint64_t delay = std::max(jitter(rng_), at_least_ms);
  set_state({LinkState::kOffline, std::move(detail), delay, false, close_code});
  auto self = shared_from_this();
  retry_timer_ = loop_.after(std::chrono::milliseconds(delay), [self] { self->dial(); });
}

void RelayConnection::tick() {
  if (stopped_) return;
  uint64_t now = net::steady_ms();
  // Requests past their deadline fail with kTimeout, wherever they are.
  for (auto it = in_flight_.begin(); it != in_flight_.end();) {
    if (it->second.deadline_ms <= now) {
      auto cb = std::move(it->second.callback);
      it = in_flight_.erase(it);
      cb(make_error(ErrorCode::kTimeout, "the relay did not answer in time"));
    } else {
      ++it;
    }
  }
  for (auto it = waiting_.begin(); it != waiting_.end();) {
    if (it->deadline_ms <= now) {
      auto cb = std::move(it->callback);
      it = waiting_.erase(it);
      cb(make_error(ErrorCode::kUnavailable,
                    "not connected to the relay; the request was not sent (it is retried "
                    "automatically where that is safe)"));
    } else {
      ++it;
    }
  }
  if (ws_ && state() == LinkState::kConnected) {
    uint64_t last = std::max(ws_->last_received_ms(), connected_at_ms_);
    if (now - last >= uint64_t(options_.timing.idle_timeout.count())) {
      // Nothing from the relay for too long: the connection is dead even if TCP says not.
      ++generation_;
      auto ws = std::move(ws_);
      ws->close(1001, "no answer to pings");
      fail_all(ErrorCode::kUnavailable, "the relay stopped answering");
      connected_at_ms_ = 0;
      schedule_retry("the relay stopped answering", 0, 0);
    } else if (now - last_ping_ms_ >= uint64_t(options_.timing.ping_interval.count())) {
      last_ping_ms_ = now;
      ws_->ping();
    }
  }
  pump();
  tick_timer_ = loop_.after(kTick, [self = shared_from_this()] { self->tick(); });
}

void RelayConnection::request(wire::Request request, ResponseCallback callback,
                              std::chrono::milliseconds timeout) {
  this->request(std::move(request), std::nullopt, std::move(callback), timeout);
}

void RelayConnection::request(wire::Request request, std::optional<std::string> body,
                              ResponseCallback callback, std::chrono::milliseconds timeout) {
  if (timeout.count() == 0) timeout = options_.timing.request_timeout;
  uint64_t deadline = net::steady_ms() + static_cast<uint64_t>(timeout.count());
  loop_.post([self = shared_from_this(), request = std::move(request), body = std::move(body),
              callback = std::move(callback), deadline]() mutable {
    if (self->stopped_) {
      // A connection that failed before this request was queued (a TLS handshake refused
      // at once, say) tells it why, not only that it is closed.
      callback(make_error(ErrorCode::kUnavailable, self->stop_reason_.empty()
                                                       ? "the connection to the relay is closed"
                                                       : self->stop_reason_));
      return;
    }
    self->waiting_.push_back(
        Pending{std::move(request), std::move(body), std::move(callback), deadline, false});
    self->pump();
  });
}

void RelayConnection::pump() {
  if (!ws_ || state() != LinkState::kConnected) return;
  while (!waiting_.empty() && in_flight_.size() < options_.max_in_flight) {
    Pending p = std::move(waiting_.front());
    waiting_.pop_front();
    uint64_t id = next_id_++;
    p.request.set_id(id);
    Bytes bytes;
    if (p.body) {
      bytes = encode_request_frame(p.request, *p.body);
      p.body.reset();
    } else {
      wire::Frame frame;
      *frame.mutable_request() = std::move(p.request);
      bytes.resize(frame.ByteSizeLong());
      frame.SerializeToArray(bytes.data(), static_cast<int>(bytes.size()));
    }
    p.sent = true;
    in_flight_.emplace(id, std::move(p));
    ws_->send(std::move(bytes));
  }
}

void RelayConnection::fail_all(ErrorCode code, const std::string& why) {
  auto in_flight = std::move(in_flight_);
  in_flight_.clear();
  for (auto& [id, p] : in_flight) p.callback(make_error(code, why));
  if (stopped_) {
    auto waiting = std::move(waiting_);
    waiting_.clear();
    for (auto& p : waiting) p.callback(make_error(code, why));
  }
}

Result<wire::Response> RelayConnection::call(wire::Request request,
                                             std::chrono::milliseconds timeout) {
  auto promise = std::make_shared<std::promise<Result<wire::Response>>>();
  auto future = promise->get_future();
  this->request(
      std::move(request), [promise](Result<wire::Response> r) { promise->set_value(std::move(r)); },
      timeout);
  return future.get();
}

Result<wire::Response> RelayConnection::call_encoded(wire::Request head, std::string body,
                                                     std::chrono::milliseconds timeout) {
  auto promise = std::make_shared<std::promise<Result<wire::Response>>>();
  auto future = promise->get_future();
  this->request(
      std::move(head), std::move(body),
      [promise](Result<wire::Response> r) { promise->set_value(std::move(r)); }, timeout);
  return future.get();
}

}  // namespace sotto
