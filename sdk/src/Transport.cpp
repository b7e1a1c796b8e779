#include "Transport.h"

#include <algorithm>
#include <boost/asio/connect.hpp>
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/ssl.hpp>
#include <boost/beast/websocket.hpp>
#include <boost/beast/websocket/ssl.hpp>
#include <cerrno>
#include <charconv>
#include <cstdio>
#include <cstring>
#include <deque>
#include <map>
#include <mutex>
#include <thread>

#include "ResponseHeaders.h"
#include "platform/Platform.h"
#include "sotto/ThreadName.h"

namespace sotto::net {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
namespace websocket = beast::websocket;
namespace ssl = asio::ssl;
using tcp = asio::ip::tcp;
namespace fs = std::filesystem;

uint64_t steady_ms() {
  return static_cast<uint64_t>(std::chrono::duration_cast<std::chrono::milliseconds>(
                                   std::chrono::steady_clock::now().time_since_epoch())
                                   .count());
}

// ---- URLs ----

std::string Url::with_target(std::string_view t) const {
  Url u = *this;
  u.target = std::string(t);
  return (tls ? "https://" : "http://") + host + ":" + port + u.target;
}

Result<Url> parse_url(std::string_view text) {
  Url u;
  auto bad = [&](const std::string& why) {
    return make_error(ErrorCode::kInvalidArgument,
                      "the relay address '" + std::string(text) + "' " + why +
                          "; write it like ws://127.0.0.1:8080/v1/ws or wss://relay.example.org");
  };
  std::string_view rest = text;
  std::string default_port;
  for (auto [scheme, tls, port] :
       {std::tuple{"wss://", true, "443"}, std::tuple{"ws://", false, "80"},
        std::tuple{"https://", true, "443"}, std::tuple{"http://", false, "80"}}) {
    std::string_view s(scheme);
    if (rest.substr(0, s.size()) == s) {
      u.tls = tls;
      default_port = port;
      rest.remove_prefix(s.size());
      break;
    }
  }
  if (default_port.empty()) return bad("does not start with ws://, wss://, http:// or https://");
  size_t slash = rest.find('/');
  std::string_view authority = rest.substr(0, slash);
  u.target = slash == std::string_view::npos ? "/" : std::string(rest.substr(slash));
  if (authority.empty()) return bad("has no host");
  if (authority.front() == '[') {  // [v6]:port
    size_t close = authority.find(']');
    if (close == std::string_view::npos) return bad("has an unterminated IPv6 address");
    u.host = std::string(authority.substr(1, close - 1));
    authority.remove_prefix(close + 1);
    if (!authority.empty() && authority.front() == ':') u.port = std::string(authority.substr(1));
  } else {
    size_t colon = authority.rfind(':');
    u.host = std::string(authority.substr(0, colon));
    if (colon != std::string_view::npos) u.port = std::string(authority.substr(colon + 1));
  }
  if (u.host.empty()) return bad("has no host");
  if (u.port.empty()) u.port = default_port;
  unsigned port = 0;
  auto [p, ec] = std::from_chars(u.port.data(), u.port.data() + u.port.size(), port);
  if (ec != std::errc() || p != u.port.data() + u.port.size() || port == 0 || port > 65535)
    return bad("has an invalid port");
  return u;
}

bool is_loopback_host(std::string_view host) {
  std::string h(host);
  std::transform(h.begin(), h.end(), h.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  if (h == "localhost") return true;
  // 127.0.0.0/8 and ::1, as the address parses (inet_pton's forms, no names). Windows'
  // parser also takes inet_aton's shorthands (127.1, 0x7f.0.0.1): only the dotted quad counts,
  // on every system.
  boost::system::error_code ec;
  auto address = asio::ip::make_address(h, ec);
  if (ec || (address.is_v4() && address.to_string() != h)) return false;
  return address.is_loopback();
}

Status check_transport(const Url& url, std::string_view text, bool allow_plaintext) {
  if (url.tls || allow_plaintext || is_loopback_host(url.host)) return {};
  return make_error(ErrorCode::kInvalidArgument,
                    "the relay address '" + std::string(text) +
                        "' has no TLS (ws:// or http://), which is only allowed to this machine "
                        "(localhost, 127.0.0.0/8, [::1]): on a network anyone on the way could "
                        "read this device's relay password and the traffic. Use wss:// (the "
                        "relay's --tls-cert and --tls-key); for development only, set "
                        "ClientOptions::dangerously_allow_plaintext_relay");
}

// ---- event loop ----

struct EventLoop::Impl {
  asio::io_context io{1};
  asio::executor_work_guard<asio::io_context::executor_type> guard{io.get_executor()};
  std::thread thread;
  std::mutex mu;
  std::map<TimerId, std::shared_ptr<asio::steady_timer>> timers;
  TimerId next_timer = 1;
  ssl::context tls{ssl::context::tls_client};
};

EventLoop::EventLoop() : impl_(std::make_unique<Impl>()) {
  impl_->tls.set_default_verify_paths();
  impl_->tls.set_verify_mode(ssl::verify_peer);
  impl_->thread = std::thread([this] {
    name_this_thread("sotto-net");
    impl_->io.run();
  });
}

EventLoop::~EventLoop() {
  impl_->guard.reset();
  impl_->io.stop();
  if (impl_->thread.joinable()) impl_->thread.join();
}

void EventLoop::post(std::function<void()> fn) { asio::post(impl_->io, std::move(fn)); }

EventLoop::TimerId EventLoop::after(std::chrono::milliseconds delay, std::function<void()> fn) {
  auto timer = std::make_shared<asio::steady_timer>(impl_->io, delay);
  TimerId id;
  {
    std::lock_guard lock(impl_->mu);
    id = impl_->next_timer++;
    impl_->timers[id] = timer;
  }
  timer->async_wait([this, id, fn = std::move(fn)](const beast::error_code& ec) {
    {
      std::lock_guard lock(impl_->mu);
      impl_->timers.erase(id);
    }
    if (!ec) fn();
  });
  return id;
}

void EventLoop::cancel(TimerId id) {
  std::shared_ptr<asio::steady_timer> timer;
  {
    std::lock_guard lock(impl_->mu);
    auto it = impl_->timers.find(id);
    if (it == impl_->timers.end()) return;
    timer = it->second;
    impl_->timers.erase(it);
  }
  asio::post(impl_->io, [timer] { timer->cancel(); });
}

bool EventLoop::in_loop_thread() const {
  return impl_->thread.get_id() == std::this_thread::get_id();
}

namespace {

// ---- WebSocket, over plain TCP or TLS ----

template <class NextLayer>
class WebSocketImpl final : public WebSocket,
                            public std::enable_shared_from_this<WebSocketImpl<NextLayer>> {
 public:
  using Ws = websocket::stream<NextLayer>;

  WebSocketImpl(EventLoop& loop, Url url, Headers headers, WebSocketEvents events,
                std::chrono::milliseconds timeout)
      : io_(loop.impl().io),
        ws_(make_stream(loop)),
        resolver_(io_),
        url_(std::move(url)),
        headers_(std::move(headers)),
        events_(std::move(events)),
        timeout_(timeout) {}

  void start() {
    resolver_.async_resolve(
        url_.host, url_.port,
        [self = this->shared_from_this()](beast::error_code ec, tcp::resolver::results_type r) {
          self->on_resolve(ec, std::move(r));
        });
  }

  void send(Bytes frame) override {
    asio::post(io_, [self = this->shared_from_this(), f = std::move(frame)]() mutable {
      if (!self->open_) return;
      self->queued_ += f.size();
      self->queue_.push_back(std::move(f));
      if (self->queue_.size() == 1) self->do_write();
    });
  }

  void ping() override {
    asio::post(io_, [self = this->shared_from_this()] {
      if (!self->open_ || self->closing_) return;
      self->ws_.async_ping({}, [self](beast::error_code ec) {
        if (ec) self->fail(ec, "ping");
      });
    });
  }

  void close(int code, std::string reason) override {
    asio::post(io_, [self = this->shared_from_this(), code, reason = std::move(reason)] {
      if (self->done_ || self->closing_) return;
      self->closing_ = true;
      if (!self->open_) {
        self->finish(CloseInfo{CloseInfo::Kind::kLocal, 0, 0, code, reason});
        beast::error_code ignored;
        beast::get_lowest_layer(self->ws_).socket().close(ignored);
        return;
      }
      // The close handshake gets 2 s, then the socket is closed under it. A timer of its
      // own: the stream's expiry cannot be set while the read loop and a write are both
      // pending (Beast then applies it to neither, and asserts in a debug build).
      auto deadline = std::make_shared<asio::steady_timer>(self->io_, std::chrono::seconds(2));
      deadline->async_wait([self, deadline](beast::error_code ec) {
        if (ec) return;  // the handshake finished first
        beast::error_code ignored;
        beast::get_lowest_layer(self->ws_).socket().close(ignored);
      });
      self->ws_.async_close(
          websocket::close_reason(static_cast<websocket::close_code>(code), reason),
          [self, code, reason, deadline](beast::error_code) {
            deadline->cancel();
            self->finish(CloseInfo{CloseInfo::Kind::kLocal, 0, 0, code, reason});
            beast::error_code ignored;
            beast::get_lowest_layer(self->ws_).socket().close(ignored);
          });
    });
  }

  uint64_t last_received_ms() const override { return last_received_.load(); }
  size_t queued_bytes() const override { return queued_.load(); }

 private:
  static Ws make_stream(EventLoop& loop) {
    if constexpr (std::is_same_v<NextLayer, beast::tcp_stream>) {
      return Ws(loop.impl().io);
    } else {
      return Ws(loop.impl().io, loop.impl().tls);
    }
  }

  void on_resolve(beast::error_code ec, tcp::resolver::results_type results) {
    if (ec) return fail_connect(ec, "resolving " + url_.host);
    beast::get_lowest_layer(ws_).expires_after(timeout_);
    beast::get_lowest_layer(ws_).async_connect(
        results, [self = this->shared_from_this()](beast::error_code e, const tcp::endpoint&) {
          self->on_connect(e);
        });
  }

  void on_connect(beast::error_code ec) {
    if (ec) return fail_connect(ec, "connecting to " + url_.host + ":" + url_.port);
    beast::error_code ignored;
    beast::get_lowest_layer(ws_).socket().set_option(tcp::no_delay(true), ignored);
    if constexpr (std::is_same_v<NextLayer, beast::tcp_stream>) {
      do_upgrade();
    } else {
      if (!SSL_set_tlsext_host_name(ws_.next_layer().native_handle(), url_.host.c_str()))
        return fail_connect(
            beast::error_code(static_cast<int>(::ERR_get_error()), asio::error::get_ssl_category()),
            "TLS setup");
      ws_.next_layer().set_verify_callback(ssl::host_name_verification(url_.host));
      ws_.next_layer().async_handshake(
          ssl::stream_base::client, [self = this->shared_from_this()](beast::error_code e) {
            if (e) return self->fail_connect(e, "TLS handshake with " + self->url_.host);
            self->do_upgrade();
          });
    }
  }

  void do_upgrade() {
    ws_.set_option(websocket::stream_base::decorator([h = headers_](websocket::request_type& req) {
      req.set(http::field::user_agent, "libsotto");
      for (const auto& [k, v] : h) req.set(k, v);
    }));
    ws_.binary(true);
    ws_.auto_fragment(false);
    ws_.read_message_max(8 * 1024 * 1024);
    ws_.control_callback(
        [this](websocket::frame_type, beast::string_view) { last_received_ = steady_ms(); });
    std::string host = url_.host + ":" + url_.port;
    ws_.async_handshake(
        res_, host, url_.target,
        [self = this->shared_from_this()](beast::error_code ec) { self->on_upgrade(ec); });
  }

  void on_upgrade(beast::error_code ec) {
    if (ec == websocket::error::upgrade_declined) {
      CloseInfo info{
          CloseInfo::Kind::kUpgradeRefused, static_cast<int>(res_.result_int()), 0, 0,
          "the relay refused the connection with HTTP " + std::to_string(res_.result_int())};
      auto it = res_.find(http::field::retry_after);
      if (it != res_.end()) info.retry_after_ms = parse_retry_after(it->value());
      if (!res_.body().empty()) info.reason += ": " + res_.body().substr(0, 200);
      return finish(std::move(info));
    }
    if (ec) return fail_connect(ec, "upgrading to a WebSocket");
    // Liveness is the owner's job (it pings and watches last_received_ms); no Beast timeout.
    beast::get_lowest_layer(ws_).expires_never();
    open_ = true;
    last_received_ = steady_ms();
    if (closing_) return;
    if (events_.on_open) events_.on_open();
    do_read();
  }

  void do_read() {
    ws_.async_read(buffer_, [self = this->shared_from_this()](beast::error_code ec, size_t) {
      self->on_read(ec);
    });
  }

  void on_read(beast::error_code ec) {
    if (ec) return fail(ec, "read");
    last_received_ = steady_ms();
    if (ws_.got_binary() && events_.on_message && !done_) {
      auto data = buffer_.cdata();
      Bytes frame(static_cast<const uint8_t*>(data.data()),
                  static_cast<const uint8_t*>(data.data()) + data.size());
      buffer_.consume(buffer_.size());
      events_.on_message(std::move(frame));
    } else {
      buffer_.consume(buffer_.size());
    }
    if (!done_) do_read();
  }

  void do_write() {
    ws_.async_write(
        asio::buffer(queue_.front()),
        [self = this->shared_from_this()](beast::error_code ec, size_t) { self->on_write(ec); });
  }

  void on_write(beast::error_code ec) {
    if (ec) return fail(ec, "write");
    queued_ -= queue_.front().size();
    queue_.pop_front();
    if (!queue_.empty()) do_write();
  }

  void fail_connect(beast::error_code ec, const std::string& what) {
    finish(CloseInfo{CloseInfo::Kind::kConnectFailed, 0, 0, 0, what + ": " + ec.message()});
  }

  void fail(beast::error_code ec, const char* what) {
    if (done_) return;
    if (ec == websocket::error::closed) {
      auto r = ws_.reason();
      return finish(CloseInfo{CloseInfo::Kind::kClosed, 0, 0, r.code,
                              std::string(r.reason.data(), r.reason.size())});
    }
    if (closing_) return;  // our own close is completing
    finish(CloseInfo{CloseInfo::Kind::kBroken, 0, 0, 0,
                     std::string("the connection broke (") + what + "): " + ec.message()});
    beast::error_code ignored;
    beast::get_lowest_layer(ws_).socket().close(ignored);
  }

  void finish(CloseInfo info) {
    if (done_) return;
    done_ = true;
    open_ = false;
    queue_.clear();
    queued_ = 0;
    if (events_.on_close) {
      auto cb = std::move(events_.on_close);
      events_ = {};
      cb(info);
    }
  }

  asio::io_context& io_;
  Ws ws_;
  tcp::resolver resolver_;
  Url url_;
  Headers headers_;
  WebSocketEvents events_;
  std::chrono::milliseconds timeout_;
  websocket::response_type res_;
  beast::flat_buffer buffer_;
  std::deque<Bytes> queue_;
  std::atomic<size_t> queued_{0};
  std::atomic<uint64_t> last_received_{0};
  bool open_ = false;
  bool closing_ = false;
  bool done_ = false;
};

// ---- blocking HTTP ----

using platform::File;

Error http_error(beast::error_code ec, const std::string& what) {
  return make_error(ErrorCode::kUnavailable, what + ": " + ec.message());
}

template <class Stream>
Result<HttpResult> put_over(Stream& stream, const Url& url, const Headers& headers,
                            const fs::path& path, const TransferProgress& progress,
                            const std::atomic<bool>* cancel, std::chrono::milliseconds timeout) {
  File f = platform::open_file(path, "rb");
  if (!f)
    return make_error(ErrorCode::kStorageIo,
                      "cannot read " + path.string() + ": " + std::strerror(errno));
  std::error_code fec;
  uint64_t size = fs::file_size(path, fec);
  if (fec) return make_error(ErrorCode::kStorageIo, "cannot read " + path.string());

  http::request<http::buffer_body> req{http::verb::put, url.target, 11};
  req.set(http::field::host, url.host + ":" + url.port);
  req.set(http::field::user_agent, "libsotto");
  req.set(http::field::content_type, "application/octet-stream");
  for (const auto& [k, v] : headers) req.set(k, v);
  req.content_length(size);
  req.body().data = nullptr;
  req.body().more = true;
  http::request_serializer<http::buffer_body> sr{req};
  beast::error_code ec;
  beast::get_lowest_layer(stream).expires_after(timeout);
  http::write_header(stream, sr, ec);
  if (ec) return http_error(ec, "sending the upload request");
  std::vector<uint8_t> buf(64 * 1024);
  uint64_t done = 0;
  while (done < size) {
    if (cancel && cancel->load())
      return make_error(ErrorCode::kCancelled, "the upload was cancelled");
    size_t want = static_cast<size_t>(std::min<uint64_t>(buf.size(), size - done));
    size_t n = std::fread(buf.data(), 1, want, f.get());
    if (n != want)
      return make_error(ErrorCode::kStorageIo, "cannot read " + path.string() + " while sending");
    req.body().data = buf.data();
    req.body().size = n;
    req.body().more = done + n < size;
    beast::get_lowest_layer(stream).expires_after(timeout);
    http::write(stream, sr, ec);
    if (ec == http::error::need_buffer) ec = {};
    if (ec) {
      // The server may have answered (and closed) before taking the whole body: say why.
      beast::flat_buffer early_buf;
      http::response<http::string_body> early;
      beast::error_code rec;
      beast::get_lowest_layer(stream).expires_after(std::chrono::seconds(2));
      http::read(stream, early_buf, early, rec);
      if (!rec) {
        HttpResult out;
        out.status = static_cast<int>(early.result_int());
        out.body = early.body().substr(0, 1000);
        return out;
      }
      return http_error(ec, "uploading");
    }
    done += n;
    if (progress) progress(done, size);
  }
  if (size == 0) {
    req.body().data = nullptr;
    req.body().more = false;
    http::write(stream, sr, ec);
    if (ec) return http_error(ec, "uploading");
  }
  beast::flat_buffer buffer;
  http::response<http::string_body> res;
  beast::get_lowest_layer(stream).expires_after(timeout);
  http::read(stream, buffer, res, ec);
  if (ec) return http_error(ec, "reading the upload response");
  HttpResult out;
  out.status = static_cast<int>(res.result_int());
  out.body = res.body().substr(0, 1000);
  auto it = res.find(http::field::retry_after);
  if (it != res.end()) out.retry_after_ms = parse_retry_after(it->value());
  return out;
}

template <class Stream>
Result<HttpResult> get_over(Stream& stream, const Url& url, const Headers& headers,
                            const fs::path& path, uint64_t offset, const TransferProgress& progress,
                            const std::atomic<bool>* cancel, std::chrono::milliseconds timeout) {
  http::request<http::empty_body> req{http::verb::get, url.target, 11};
  req.set(http::field::host, url.host + ":" + url.port);
  req.set(http::field::user_agent, "libsotto");
  for (const auto& [k, v] : headers) req.set(k, v);
  if (offset > 0) req.set(http::field::range, "bytes=" + std::to_string(offset) + "-");
  beast::error_code ec;
  beast::get_lowest_layer(stream).expires_after(timeout);
  http::write(stream, req, ec);
  if (ec) return http_error(ec, "sending the download request");

  beast::flat_buffer buffer;
  http::response_parser<http::buffer_body> parser;
  parser.body_limit(boost::none);
  beast::get_lowest_layer(stream).expires_after(timeout);
  http::read_header(stream, buffer, parser, ec);
  if (ec) return http_error(ec, "reading the download response");
  HttpResult out;
  auto& res = parser.get();
  out.status = static_cast<int>(res.result_int());
  auto it = res.find(http::field::retry_after);
  if (it != res.end()) out.retry_after_ms = parse_retry_after(it->value());
  std::optional<std::string_view> range;
  it = res.find(http::field::content_range);
  if (it != res.end()) {
    out.content_range = std::string(it->value());
    range = out.content_range;
  }
  std::optional<uint64_t> length;
  if (parser.content_length()) length = *parser.content_length();
  uint64_t expected = length.value_or(0);
  out.content_length = expected;
  SOTTO_TRY_ASSIGN(DownloadTarget target, download_target(out.status, offset, range, length));
  File f;
  if (target.write) {
    f = platform::open_file(path, target.append ? "ab" : "wb");
    if (!f)
      return make_error(ErrorCode::kStorageIo,
                        "cannot write " + path.string() + ": " + std::strerror(errno));
    if (!target.append) offset = 0;
  }
  std::vector<char> buf(64 * 1024);
  uint64_t done = 0;
  std::string error_body;
  while (!parser.is_done()) {
    if (cancel && cancel->load())
      return make_error(ErrorCode::kCancelled, "the download was cancelled");
    res.body().data = buf.data();
    res.body().size = buf.size();
    beast::get_lowest_layer(stream).expires_after(timeout);
    http::read(stream, buffer, parser, ec);
    if (ec == http::error::need_buffer) ec = {};
    if (ec) {
      if (f) std::fflush(f.get());  // keep what arrived, so the next try resumes
      return http_error(ec, "downloading");
    }
    size_t n = buf.size() - res.body().size;
    if (n == 0) continue;
    if (f) {
      if (std::fwrite(buf.data(), 1, n, f.get()) != n)
        return make_error(errno == ENOSPC ? ErrorCode::kStorageFull : ErrorCode::kStorageIo,
                          "cannot write " + path.string() + ": " + std::strerror(errno));
      done += n;
      if (progress) progress(offset + done, offset + expected);
    } else if (error_body.size() < 1000) {
      error_body.append(buf.data(), std::min<size_t>(n, 1000 - error_body.size()));
    }
  }
  if (f && std::fflush(f.get()) != 0)
    return make_error(ErrorCode::kStorageIo, "cannot write " + path.string());
  out.body = std::move(error_body);
  return out;
}

template <class Fn>
Result<HttpResult> with_http_stream(const Url& url, std::chrono::milliseconds timeout, Fn&& fn) {
  asio::io_context io;
  tcp::resolver resolver(io);
  beast::error_code ec;
  auto results = resolver.resolve(url.host, url.port, ec);
  if (ec) return http_error(ec, "resolving " + url.host);
  if (!url.tls) {
    beast::tcp_stream stream(io);
    stream.expires_after(timeout);
    stream.connect(results, ec);
    if (ec) return http_error(ec, "connecting to " + url.host + ":" + url.port);
    auto r = fn(stream);
    stream.socket().shutdown(tcp::socket::shutdown_both, ec);
    return r;
  }
  ssl::context ctx(ssl::context::tls_client);
  ctx.set_default_verify_paths();
  ctx.set_verify_mode(ssl::verify_peer);
  beast::ssl_stream<beast::tcp_stream> stream(io, ctx);
  if (!SSL_set_tlsext_host_name(stream.native_handle(), url.host.c_str()))
    return make_error(ErrorCode::kUnavailable, "TLS setup failed");
  stream.set_verify_callback(ssl::host_name_verification(url.host));
  beast::get_lowest_layer(stream).expires_after(timeout);
  beast::get_lowest_layer(stream).connect(results, ec);
  if (ec) return http_error(ec, "connecting to " + url.host + ":" + url.port);
  stream.handshake(ssl::stream_base::client, ec);
  if (ec) return http_error(ec, "TLS handshake with " + url.host);
  auto r = fn(stream);
  stream.shutdown(ec);
  return r;
}

}  // namespace

std::shared_ptr<WebSocket> WebSocket::connect(EventLoop& loop, const Url& url, Headers headers,
                                              WebSocketEvents events,
                                              std::chrono::milliseconds handshake_timeout) {
  if (url.tls) {
    auto ws = std::make_shared<WebSocketImpl<beast::ssl_stream<beast::tcp_stream>>>(
        loop, url, std::move(headers), std::move(events), handshake_timeout);
    asio::post(loop.impl().io, [ws] { ws->start(); });
    return ws;
  }
  auto ws = std::make_shared<WebSocketImpl<beast::tcp_stream>>(
      loop, url, std::move(headers), std::move(events), handshake_timeout);
  asio::post(loop.impl().io, [ws] { ws->start(); });
  return ws;
}

Result<HttpResult> http_put_file(const Url& url, const Headers& headers, const fs::path& path,
                                 const TransferProgress& progress, const std::atomic<bool>* cancel,
                                 std::chrono::milliseconds timeout) {
  return with_http_stream(url, timeout, [&](auto& stream) {
    return put_over(stream, url, headers, path, progress, cancel, timeout);
  });
}

Result<HttpResult> http_get_to_file(const Url& url, const Headers& headers, const fs::path& path,
                                    uint64_t offset, const TransferProgress& progress,
                                    const std::atomic<bool>* cancel,
                                    std::chrono::milliseconds timeout) {
  return with_http_stream(url, timeout, [&](auto& stream) {
    return get_over(stream, url, headers, path, offset, progress, cancel, timeout);
  });
}

}  // namespace sotto::net
