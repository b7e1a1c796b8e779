#include "Server.h"

#include <fcntl.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <boost/asio.hpp>
#include <boost/asio/experimental/awaitable_operators.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/ssl.hpp>
#include <boost/beast/websocket.hpp>
#include <boost/beast/websocket/ssl.hpp>
#include <chrono>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <optional>
#include <set>
#include <thread>
#include <unordered_map>
#include <unordered_set>

#include "HttpFields.h"
#include "Listener.h"
#include "Log.h"
#include "PushClient.h"
#include "WebSocketFrames.h"
#include "sotto/ThreadName.h"

namespace sotto::relay {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
namespace websocket = beast::websocket;
namespace ssl = asio::ssl;
using tcp = asio::ip::tcp;

namespace {

// A concrete strand type instead of any_io_executor: smaller sockets and handlers per idle
// connection (~1.1 KiB less, measured; docs/benchmarks.md).
using Strand = asio::strand<asio::io_context::executor_type>;
using Socket = asio::basic_stream_socket<tcp, Strand>;
using TlsStream = beast::ssl_stream<Socket>;
constexpr auto use_nothrow = asio::as_tuple(asio::use_awaitable);

uint64_t now_ms() {
  return static_cast<uint64_t>(std::chrono::duration_cast<std::chrono::milliseconds>(
                                   std::chrono::system_clock::now().time_since_epoch())
                                   .count());
}

Socket& lowest(Socket& s) { return s; }
Socket& lowest(TlsStream& s) { return beast::get_lowest_layer(s); }

// Runs `fn(store, out)` on the writer thread and resumes the awaiting coroutine with the
// result; nullopt when storage failed or is stopping.
// WARNING: GCC 12 destroys a non-trivial temporary of a co_await full-expression twice (once
// after the resumption, once when the coroutine ends). So these take their arguments by
// reference, callers pass named locals, and neither is a coroutine itself.
template <class T, class F>
asio::awaitable<std::optional<T>> store_call(StoreExecutor& exec, const F& fn) {
  auto init = [&exec, fn](auto handler) mutable {
    using H = decltype(handler);
    auto h = std::make_shared<H>(std::move(handler));
    auto out = std::make_shared<T>();
    auto finish = [h, out](bool ok) {
      auto ex = asio::get_associated_executor(*h);
      asio::post(ex, [h, out, ok]() mutable {
        std::move (*h)(ok ? std::optional<T>(std::move(*out)) : std::optional<T>());
      });
    };
    bool queued = exec.submit(
        [out, fn](Store& s) mutable -> Status {
          *out = T{};
          return fn(s, *out);
        },
        [finish](const Status& st) { finish(st.ok()); });
    if (!queued) finish(false);
  };
  return asio::async_initiate<decltype(asio::use_awaitable), void(std::optional<T>)>(
      std::move(init), asio::use_awaitable);
}

// What a 401 says: wrong credentials, or why the operator suspended the account.
std::string refusal_text(const Relay::Auth& auth) {
  if (auth.kind != Relay::Auth::kSuspended) return "missing or wrong credentials";
  return "this account is suspended by the relay's operator" +
         (auth.reason.empty() ? std::string() : ": " + auth.reason);
}

asio::awaitable<Relay::Auth> authenticate(Relay& relay, const std::string& header) {
  auto init = [&relay, header](auto handler) {
    using H = decltype(handler);
    auto h = std::make_shared<H>(std::move(handler));
    relay.authenticate(header, [h](Relay::Auth a) {
      auto ex = asio::get_associated_executor(*h);
      asio::post(ex, [h, a = std::move(a)]() mutable { std::move (*h)(std::move(a)); });
    });
  };
  return asio::async_initiate<decltype(asio::use_awaitable), void(Relay::Auth)>(
      std::move(init), asio::use_awaitable);
}

// When the loaded certificate (the chain's first) expires, in Unix seconds; 0 if unknown.
int64_t certificate_not_after(ssl::context& ctx) {
  X509* cert = SSL_CTX_get0_certificate(ctx.native_handle());
  std::tm tm{};
  if (!cert || ASN1_TIME_to_tm(X509_get0_notAfter(cert), &tm) != 1) return 0;
  return static_cast<int64_t>(timegm(&tm));
}

// As 2027-02-21T09:00:00Z, for the log.
std::string utc_text(int64_t unix_s) {
  if (unix_s == 0) return "unknown";
  std::time_t t = static_cast<std::time_t>(unix_s);
  std::tm tm{};
  gmtime_r(&t, &tm);
  char text[32];
  std::strftime(text, sizeof text, "%Y-%m-%dT%H:%M:%SZ", &tm);
  return text;
}

}  // namespace

// Every live connection, for the one-second sweep that enforces deadlines: one shared timer
// instead of a timer per connection (~0.4 KiB less per idle connection, measured).
struct Tracked {
  virtual ~Tracked() = default;
  // Posts to the connection's strand. kind 0: hard close; 1: graceful close with 4000;
  // 2: a slow reader (no write progress), hard close.
  virtual void expire(int kind) = 0;
  std::atomic<uint64_t> hard_deadline{0};  // close the socket at this time
  std::atomic<uint64_t> soft_deadline{0};  // unauthenticated: close with 4000 at this time
  std::atomic<uint64_t> activity{0};       // last byte or control frame received
  std::atomic<bool> idle_check{false};     // authenticated: drop after idle_timeout of silence
  std::atomic<uint64_t> write_started{0};  // a WebSocket write in progress since then (0: none)
};

class Server::Impl {
 public:
  Impl(const Config& config, Relay& relay, Metrics& metrics)
      : config_(config),
        relay_(relay),
        metrics_(metrics),
        ioc_(static_cast<int>(config.threads)),
        acceptor_(ioc_) {}

  Status start(int listen_fd);
  void run();
  // The certificate chain and key files, read again on SIGHUP.
  Result<std::shared_ptr<ssl::context>> load_tls() const;
  void reload_tls();

  template <class Stream>
  class Conn;

  const Config& config_;
  Relay& relay_;
  Metrics& metrics_;

  // Declared before ioc_ so they outlive it: destroying the io_context destroys pending
  // handlers, and with them connections whose destructors use these.
  std::atomic<int64_t> open_connections_{0};
  int64_t budget_ = 0;
  std::atomic<bool> draining_{false};
  std::atomic<uint64_t> last_refusal_log_{0};
  std::atomic<uint64_t> refusals_since_log_{0};
  std::mutex tracked_mu_;
  std::unordered_map<uint64_t, std::weak_ptr<Tracked>> tracked_;
  uint64_t next_id_ = 1;
  std::mutex uploads_mu_;
  std::unordered_set<std::string> uploads_in_progress_;

  asio::io_context ioc_;
  // Created in start(), waited on in run().
  std::optional<asio::signal_set> hangups_, stops_;
  tcp::acceptor acceptor_;
  // Replaced as a whole by SIGHUP. A connection needs only its SSL object, which holds its own
  // reference to the OpenSSL context, so one built from the previous files keeps working.
  std::mutex tls_mu_;
  std::shared_ptr<ssl::context> tls_;
  bool use_tls_ = false;
  uint16_t port_ = 0;
  std::unique_ptr<Pusher> pusher_;

  uint64_t track(std::weak_ptr<Tracked> t) {
    std::lock_guard lock(tracked_mu_);
    uint64_t id = next_id_++;
    tracked_.emplace(id, std::move(t));
    return id;
  }
  void untrack(uint64_t id) {
    std::lock_guard lock(tracked_mu_);
    tracked_.erase(id);
  }

  asio::awaitable<void> accept_loop();
  asio::awaitable<void> housekeeping();
  asio::awaitable<void> shutdown();
  void refuse_budget(Socket socket);
};

// The buffer a plain connection reads into: one per thread, so an idle connection holds none.
// Bytes of a frame that is not complete yet are copied to the connection's own `pending_`.
constexpr size_t kReadChunk = 64 * 1024;
char* read_scratch() {
  static thread_local std::unique_ptr<char[]> buf(new char[kReadChunk]);
  return buf.get();
}
// The request line and header fields of one HTTP request (protocol.md section 11).
constexpr uint32_t kMaxHttpHeaderBytes = 16 * 1024;
// At most this much goes into one gathered write.
constexpr size_t kMaxBatchFrames = 64;
constexpr uint64_t kMaxBatchBytes = 256 * 1024;

// One accepted connection: HTTP requests until it upgrades to a WebSocket (or closes). After
// the upgrade, frames are read and written with ws:: (WebSocketFrames.h): an idle connection
// is a socket waiting for readability, no read buffer and no coroutine frame.
template <class Stream>
class Server::Impl::Conn final : public Tracked,
                                 public Connection,
                                 public std::enable_shared_from_this<Conn<Stream>> {
 public:
  static constexpr bool kPlain = std::is_same_v<Stream, Socket>;

  Conn(Impl& server, Stream stream, std::string ip)
      : server_(server),
        stream_(std::move(stream)),
        strand_(lowest(stream_).get_executor()),
        ip_(std::move(ip)),
        reader_(server.config_.limits.max_frame_bytes) {}
  ~Conn() override {
    server_.untrack(track_id_);
    server_.open_connections_.fetch_sub(1, std::memory_order_relaxed);
  }

  void begin() {
    track_id_ = server_.track(this->weak_from_this());
    asio::co_spawn(
        strand_, [self = this->shared_from_this()] { return self->run(); }, asio::detached);
  }

  // ---- Tracked ----
  void expire(int kind) override {
    asio::post(strand_, [self = this->shared_from_this(), kind] {
      if (kind == 1 && self->ws_open_) {
        self->close(4000);
      } else if (kind == 2) {
        self->server_.metrics_.slow_reader_drops.fetch_add(1, std::memory_order_relaxed);
        log_info("slow_reader_closed", {{"queued_bytes", self->queued_bytes_}});
        self->hard_close();
      } else {
        self->hard_close();
      }
    });
  }

  // ---- Connection ----
  void post(std::function<void()> fn) override {
    asio::post(strand_, [self = this->shared_from_this(), fn = std::move(fn)] { fn(); });
  }
  void write(std::shared_ptr<const std::string> frame) override {
    if (close_requested_ || dead_) return;
    enqueue(std::move(frame), ws::Opcode::kBinary);
    if (queued_bytes_ > server_.config_.limits.max_outgoing_bytes) {
      // The client does not read. Its queued envelopes stay stored for the next connection.
      server_.metrics_.slow_reader_drops.fetch_add(1, std::memory_order_relaxed);
      log_info("slow_reader_closed", {{"queued_bytes", queued_bytes_}});
      hard_close();
      return;
    }
    if (!writing_) do_write();
  }
  void close(uint16_t code) override {
    if (close_requested_ || dead_ || !ws_open_) return;
    close_requested_ = true;
    hard_deadline = now_ms() + 3000;  // a peer that never answers the close frame
    enqueue(std::make_shared<const std::string>(ws::close_payload(code)), ws::Opcode::kClose);
    if (!writing_) do_write();
  }
  void request_done(uint64_t id) override {
    auto it = std::find(unanswered_.begin(), unanswered_.end(), id);
    if (it != unanswered_.end()) unanswered_.erase(it);
    if (unanswered_.empty()) std::vector<uint64_t>().swap(unanswered_);  // idle: no heap block
    if (paused_self_ && unanswered_.size() < server_.config_.limits.max_unanswered_requests) {
      asio::post(strand_, [self = std::move(paused_self_)] { self->resume(); });
    }
  }
  void set_deadline(uint64_t at_ms) override { soft_deadline = at_ms; }
  uint64_t queued_bytes() const override { return queued_bytes_; }
  void when_below(uint64_t bytes, std::function<void()> fn) override {
    if (queued_bytes_ < bytes) {
      asio::post(strand_, [self = this->shared_from_this(), fn = std::move(fn)] {
        if (!self->dead_) fn();
      });
      return;
    }
    drain_mark_ = bytes;
    on_drained_ = std::move(fn);
  }

 private:
  struct Out {
    std::shared_ptr<const std::string> data;
    ws::Opcode op;
  };

  asio::awaitable<void> run();
  asio::awaitable<bool> serve_http(http::request_parser<http::empty_body>& parser);
  // true when the WebSocket session started: it then runs on callbacks, and this coroutine
  // (with the HTTP parser and buffers in its frame) ends and frees its memory.
  asio::awaitable<bool> serve_websocket(http::request_parser<http::empty_body>& parser);
  // NB: one optional extra header, passed as two strings: a braced list of pairs inside a
  // co_await expression trips a GCC 12 coroutine bug ("array used as initializer").
  asio::awaitable<bool> send_text(http::status status, std::string body, unsigned version,
                                  bool keep_alive, std::string header = {}, std::string value = {});
  asio::awaitable<bool> put_attachment(http::request_parser<http::empty_body>& parser,
                                       const std::string& id);
  asio::awaitable<bool> get_attachment(http::request_parser<http::empty_body>& parser,
                                       const std::string& id);

  // ---- reading frames ----

  // Waits until the socket is readable (plain) or reads into a small buffer (TLS, whose
  // engine may hold decrypted bytes the socket no longer shows).
  void arm() {
    // After the peer's close frame nothing more is read: the closing handshake ends the
    // connection, and a TLS shutdown must not overlap a read.
    if (dead_ || reading_ || paused_self_ || close_received_) return;
    reading_ = true;
    if constexpr (kPlain) {
      stream_.async_wait(tcp::socket::wait_read,
                         [self = this->shared_from_this()](beast::error_code ec) {
                           self->reading_ = false;
                           if (ec) return self->end_session();
                           self->read_now();
                         });
    } else {
      constexpr size_t kTlsChunk = 16 * 1024;
      if (!tls_in_) tls_in_.reset(new char[kTlsChunk]);
      stream_.async_read_some(asio::buffer(tls_in_.get(), kTlsChunk),
                              [self = this->shared_from_this()](beast::error_code ec, size_t n) {
                                self->reading_ = false;
                                if (ec) return self->end_session();
                                self->on_bytes(self->tls_in_.get(), n);
                                self->arm();
                              });
    }
  }
  // Plain sockets: read what the kernel has (non-blocking), then wait. Asio's reactor is
  // edge-triggered, but a wait re-arms the descriptor with EPOLL_CTL_MOD, which reports bytes
  // already waiting, so a short read may go straight back to waiting: no read just to see
  // would_block.
  void read_now() {
    if constexpr (kPlain) {
      for (int round = 0; round < 4; ++round) {
        if (dead_ || paused_self_) return;
        beast::error_code ec;
        char* buf = read_scratch();
        size_t n = stream_.read_some(asio::buffer(buf, kReadChunk), ec);
        if (ec == asio::error::would_block || ec == asio::error::try_again) return arm();
        if (ec) return end_session();
        on_bytes(buf, n);
        if (n < kReadChunk) return arm();
      }
      // A busy peer: let the other connections on this thread have a turn.
      asio::post(strand_, [self = this->shared_from_this()] { self->read_now(); });
    }
  }
  void resume() {
    if (dead_) return;
    if (!pending_.empty()) parse_pending();
    if (dead_ || paused_self_) return;
    if constexpr (kPlain)
      read_now();
    else
      arm();
  }
  void on_bytes(char* data, size_t n) {
    activity.store(now_ms(), std::memory_order_relaxed);
    if (!pending_.empty()) {
      pending_.append(data, n);
      return parse_pending();
    }
    std::span<char> rest(data, n);
    parse(rest);
    if (!rest.empty()) pending_.assign(rest.data(), rest.size());
  }
  void parse_pending() {
    std::span<char> rest(pending_.data(), pending_.size());
    parse(rest);
    if (rest.empty()) {
      std::string().swap(pending_);  // idle connections keep no buffer
    } else {
      pending_.erase(0, pending_.size() - rest.size());
    }
  }
  void parse(std::span<char>& rest) {
    const uint32_t window = server_.config_.limits.max_unanswered_requests;
    while (!dead_) {
      if (unanswered_.size() >= window) {
        // request_done() resumes. Nothing else holds the connection while no read is pending.
        paused_self_ = this->shared_from_this();
        return;
      }
      auto e = reader_.next(rest);
      switch (e.kind) {
        case ws::ClientFrameReader::Event::kNeedMore:
          return;
        case ws::ClientFrameReader::Event::kMessage:
          on_message(e.payload);
          break;
        case ws::ClientFrameReader::Event::kPing:
          if (!close_requested_) {
            enqueue(std::make_shared<const std::string>(e.payload), ws::Opcode::kPong);
            if (!writing_) do_write();
          }
          break;
        case ws::ClientFrameReader::Event::kPong:
          break;
        case ws::ClientFrameReader::Event::kClose:
          close_received_ = true;
          if (close_sent_) return finish();
          // Answer with the peer's code; the socket closes once that frame is out.
          close(e.code == ws::kCloseNoStatus ? ws::kCloseNormal : e.code);
          break;
        case ws::ClientFrameReader::Event::kRefused:
          if (!close_requested_) {
            server_.metrics_.protocol_errors.fetch_add(1, std::memory_order_relaxed);
            log_info("websocket_refused", {{"why", e.why}, {"close_code", e.code}});
          }
          close(e.code);
          break;
      }
    }
  }
  void on_message(std::string_view payload) {
    if (close_requested_) return;  // after a close frame, data is discarded
    wire::Frame frame;
    if (!frame.ParseFromArray(payload.data(), static_cast<int>(payload.size())) ||
        frame.kind_case() != wire::Frame::kRequest) {
      server_.metrics_.protocol_errors.fetch_add(1, std::memory_order_relaxed);
      close(ws::kCloseProtocolError);
      return;
    }
    // An answer to a repeated id could not be told apart from the first one's (protocol.md 3.2).
    uint64_t id = frame.request().id();
    if (id != 0 && std::find(unanswered_.begin(), unanswered_.end(), id) != unanswered_.end()) {
      server_.metrics_.protocol_errors.fetch_add(1, std::memory_order_relaxed);
      log_info("websocket_refused", {{"why", "request id already in use"}, {"close_code", 1002}});
      close(ws::kCloseProtocolError);
      return;
    }
    unanswered_.push_back(id);
    server_.relay_.on_request(peer_, std::move(*frame.mutable_request()));
  }
  // The WebSocket session is over (the socket failed or was closed): once.
  void end_session() {
    if (!ws_open_ || session_over_) return;
    session_over_ = true;
    server_.relay_.on_closed(peer_);
    if (counted_unauth_) server_.relay_.release_unauthenticated(ip_);
    counted_unauth_ = false;
    // A close frame we queued (1002, 1003, ...) still has to go out: its handshake ends the
    // socket, or the sweep does after three seconds.
    if (!close_requested_) hard_close();
  }

  // ---- writing frames ----

  void enqueue(std::shared_ptr<const std::string> data, ws::Opcode op) {
    queued_bytes_ += data->size();
    queue_.push_back({std::move(data), op});
  }
  // Writes the queued frames, many per system call.
  void do_write() {
    if (on_drained_ && queued_bytes_ < drain_mark_) {
      // Deferred: the callback queues frames, which must not re-enter do_write.
      asio::post(strand_, [self = this->shared_from_this(), fn = std::move(on_drained_)] {
        if (!self->dead_) fn();
      });
      on_drained_ = nullptr;
    }
    if (queue_head_ == queue_.size() || dead_) {
      queue_.clear();
      queue_.shrink_to_fit();
      queue_head_ = 0;
      std::vector<asio::const_buffer>().swap(iov_);
      std::string().swap(headers_);
      writing_ = false;
      write_started = 0;
      return;
    }
    writing_ = true;
    write_started = now_ms();
    size_t end = queue_head_;
    uint64_t bytes = 0;
    while (end < queue_.size() && end - queue_head_ < kMaxBatchFrames &&
           (end == queue_head_ || bytes + queue_[end].data->size() <= kMaxBatchBytes))
      bytes += queue_[end++].data->size();
    batch_end_ = end;
    headers_.resize((end - queue_head_) * ws::kMaxServerHeader);
    iov_.clear();
    auto* h = reinterpret_cast<uint8_t*>(headers_.data());
    for (size_t i = queue_head_; i < end; ++i, h += ws::kMaxServerHeader) {
      const std::string& payload = *queue_[i].data;
      iov_.emplace_back(h, ws::server_header(queue_[i].op, payload.size(), h));
      if (!payload.empty()) iov_.emplace_back(payload.data(), payload.size());
    }
    if constexpr (!kPlain) {
      // Asio's TLS stream encrypts one buffer per record: one contiguous buffer makes full
      // records instead of two small ones per frame.
      std::string flat;
      flat.reserve(bytes + (end - queue_head_) * ws::kMaxServerHeader);
      for (const auto& b : iov_) flat.append(static_cast<const char*>(b.data()), b.size());
      headers_ = std::move(flat);
      iov_.assign(1, asio::buffer(headers_));
    }
    asio::async_write(
        stream_, iov_,
        [self = this->shared_from_this()](beast::error_code ec, size_t) { self->on_written(ec); });
  }
  void on_written(beast::error_code ec) {
    bool close_went = false;
    for (size_t i = queue_head_; i < batch_end_; ++i) {
      queued_bytes_ -= queue_[i].data->size();
      close_went = close_went || queue_[i].op == ws::Opcode::kClose;
      queue_[i].data.reset();
    }
    queue_head_ = batch_end_;
    if (ec) return hard_close();
    if (close_went) {
      close_sent_ = true;
      if (close_received_) return finish();
    }
    do_write();
  }
  // The closing handshake is complete (both close frames went; no read or write is pending).
  // TLS first sends close_notify and waits for the peer's, so that it can tell an orderly end
  // from a cut connection; the hard deadline set by close() bounds the wait.
  void finish() {
    if constexpr (kPlain) {
      hard_close();
    } else {
      if (dead_ || tls_closing_) return;
      tls_closing_ = true;
      stream_.async_shutdown(
          [self = this->shared_from_this()](beast::error_code) { self->hard_close(); });
    }
  }
  void hard_close() {
    if (dead_) return;
    dead_ = true;
    beast::error_code ec;
    Socket& s = lowest(stream_);
    s.shutdown(tcp::socket::shutdown_both, ec);
    s.close(ec);
    if (ws_open_) asio::post(strand_, [self = this->shared_from_this()] { self->end_session(); });
    paused_self_.reset();
  }

  Impl& server_;
  Stream stream_;
  Strand strand_;
  std::string ip_;
  uint64_t track_id_ = 0;
  beast::flat_buffer buf_;  // HTTP requests only; freed at the upgrade
  std::shared_ptr<Peer> peer_;
  ws::ClientFrameReader reader_;
  std::string pending_;             // received bytes that do not make a whole frame yet
  std::unique_ptr<char[]> tls_in_;  // TLS: the read buffer (the engine holds bytes anyway)
  // A vector, not a deque: an empty std::deque still holds a 512-byte block per connection.
  std::vector<Out> queue_;
  size_t queue_head_ = 0;
  size_t batch_end_ = 0;                 // queue_[queue_head_, batch_end_) is being written
  std::string headers_;                  // the frame headers of that write (TLS: all of it)
  std::vector<asio::const_buffer> iov_;  // and its pieces
  uint64_t queued_bytes_ = 0;
  uint64_t drain_mark_ = 0;
  std::function<void()> on_drained_;
  std::vector<uint64_t> unanswered_;  // ids of the requests not answered yet
  bool ws_open_ = false;
  bool session_over_ = false;
  bool reading_ = false;
  // Set while the pipelining window is full: nothing is read until request_done() opens it.
  std::shared_ptr<Conn> paused_self_;
  bool writing_ = false;
  bool close_requested_ = false;
  bool close_sent_ = false;
  bool close_received_ = false;
  bool tls_closing_ = false;
  bool dead_ = false;
  bool counted_unauth_ = false;
};

template <class Stream>
asio::awaitable<void> Server::Impl::Conn<Stream>::run() {
  auto& limits = server_.config_.limits;
  hard_deadline = now_ms() + limits.http_header_timeout_ms;
  if constexpr (std::is_same_v<Stream, TlsStream>) {
    auto [ec] = co_await stream_.async_handshake(ssl::stream_base::server, use_nothrow);
    if (ec) co_return hard_close();
  }
  server_.metrics_.http_connections.fetch_add(1, std::memory_order_relaxed);
  bool counted_http = true;
  for (;;) {
    http::request_parser<http::empty_body> parser;
    parser.header_limit(kMaxHttpHeaderBytes);
    // Only the header is read here. Beast would refuse a Content-Length over 1 MiB already at
    // the header; the handlers judge bodies themselves (put_attachment: 413 past the limit).
    parser.body_limit(boost::none);
    hard_deadline = now_ms() + limits.http_header_timeout_ms;
    auto [ec, n] = co_await http::async_read_header(stream_, buf_, parser, use_nothrow);
    if (ec == http::error::header_limit) {
      co_await send_text(http::status::request_header_fields_too_large,
                         "the request header is larger than " +
                             std::to_string(kMaxHttpHeaderBytes / 1024) + " KiB",
                         11, false);
      break;
    }
    if (ec) break;
    if (websocket::is_upgrade(parser.get())) {
      server_.metrics_.http_connections.fetch_sub(1, std::memory_order_relaxed);
      counted_http = false;
      if (co_await serve_websocket(parser)) co_return;
      break;
    }
    bool keep = co_await serve_http(parser);
    if (!keep || dead_) break;
  }
  if (counted_http) server_.metrics_.http_connections.fetch_sub(1, std::memory_order_relaxed);
  if (counted_unauth_) server_.relay_.release_unauthenticated(ip_);
  if constexpr (!kPlain) {
    // close_notify after the last response (or in answer to the client's), as in finish().
    if (!dead_) {
      hard_deadline = now_ms() + 3000;
      co_await stream_.async_shutdown(use_nothrow);
    }
  }
  hard_close();
}

template <class Stream>
asio::awaitable<bool> Server::Impl::Conn<Stream>::send_text(http::status status, std::string body,
                                                            unsigned version, bool keep_alive,
                                                            std::string header, std::string value) {
  http::response<http::string_body> res{status, version};
  res.set(http::field::server, "sotto-relay");
  res.set(http::field::content_type, "text/plain; charset=utf-8");
  if (!header.empty()) res.set(header, value);
  if (!body.empty() && body.back() != '\n') body += '\n';
  res.body() = std::move(body);
  res.keep_alive(keep_alive);
  res.prepare_payload();
  hard_deadline = now_ms() + 30'000;
  auto [ec, n] = co_await http::async_write(stream_, res, use_nothrow);
  co_return !ec && keep_alive;
}

template <class Stream>
asio::awaitable<bool> Server::Impl::Conn<Stream>::serve_http(
    http::request_parser<http::empty_body>& parser) {
  auto& req = parser.get();
  unsigned v = req.version();
  bool keep = req.keep_alive();
  std::string target(req.target());
  auto method = req.method();
  if (auto q = target.find('?'); q != std::string::npos) target.resize(q);

  // A request with a body we do not read cannot keep the connection.
  bool has_body = parser.content_length() && *parser.content_length() > 0;
  if (parser.chunked()) has_body = true;

  if (target == "/healthz" || target == "/metrics") {
    if (method != http::verb::get && method != http::verb::head)
      co_return co_await send_text(http::status::method_not_allowed, "use GET", v, false, "Allow",
                                   "GET, HEAD");
    if (has_body) keep = false;
    if (target == "/healthz") {
      if (server_.draining_)
        co_return co_await send_text(http::status::service_unavailable, "shutting down", v, keep);
      auto ping = [](Store& s, int&) { return s.ping(); };
      auto ok = co_await store_call<int>(server_.relay_.store(), ping);
      if (!ok)
        co_return co_await send_text(http::status::service_unavailable, "storage unavailable", v,
                                     keep);
      co_return co_await send_text(http::status::ok, "ok", v, keep);
    }
    const Config& c = server_.config_;
    bool allowed = c.metrics_access == "open";
    if (c.metrics_access == "loopback") {
      beast::error_code ec;
      auto ep = lowest(stream_).remote_endpoint(ec);
      allowed = !ec && ep.address().is_loopback();
    } else if (c.metrics_access == "token") {
      std::string want = "Bearer " + c.metrics_token;
      std::string_view got = req[http::field::authorization];
      allowed =
          got.size() == want.size() && CRYPTO_memcmp(got.data(), want.data(), want.size()) == 0;
    }
    if (!allowed)
      co_return co_await send_text(http::status::forbidden, "metrics are not served to you", v,
                                   keep);
    co_return co_await send_text(http::status::ok, server_.metrics_.render(), v, keep,
                                 "Content-Type", "text/plain; version=0.0.4; charset=utf-8");
  }
  constexpr std::string_view kPrefix = "/v1/attachments/";
  if (target.starts_with(kPrefix)) {
    std::string id = target.substr(kPrefix.size());
    if (method == http::verb::put) co_return co_await put_attachment(parser, id);
    if (method == http::verb::get || method == http::verb::head) {
      if (has_body) keep = false;
      bool more = co_await get_attachment(parser, id);
      co_return more&& keep;
    }
    co_return co_await send_text(http::status::method_not_allowed, "use PUT, GET or HEAD", v, false,
                                 "Allow", "PUT, GET, HEAD");
  }
  if (target == "/v1/ws")
    co_return co_await send_text(http::status::upgrade_required,
                                 "this path takes a WebSocket upgrade", v, false);
  co_return co_await send_text(http::status::not_found, "not found", v, keep && !has_body);
}

template <class Stream>
asio::awaitable<bool> Server::Impl::Conn<Stream>::put_attachment(
    http::request_parser<http::empty_body>& parser, const std::string& id) {
  auto& req = parser.get();
  unsigned v = req.version();
  Relay& relay = server_.relay_;
  const Limits& limits = server_.config_.limits;
  const std::string authorization(req[http::field::authorization]);
  auto auth = co_await authenticate(relay, authorization);
  if (auth.kind == Relay::Auth::kUnavailable)
    co_return co_await send_text(http::status::service_unavailable, "storage unavailable", v, false,
                                 "Retry-After", "5");
  if (auth.kind != Relay::Auth::kOk)
    co_return co_await send_text(http::status::unauthorized, refusal_text(auth), v, false,
                                 "WWW-Authenticate", "Basic realm=\"sotto\"");
  if (!valid_attachment_id(id))
    co_return co_await send_text(http::status::not_found, "no such attachment slot", v, false);
  if (parser.chunked() || !parser.content_length())
    co_return co_await send_text(http::status::length_required,
                                 "Content-Length is required (no chunked uploads)", v, false);
  uint64_t length = *parser.content_length();
  auto find = [id](Store& s, std::optional<AttachmentRecord>& out) -> Status {
    SOTTO_TRY_ASSIGN(out, s.find_attachment(id));
    return {};
  };
  auto slot = co_await store_call<std::optional<AttachmentRecord>>(relay.store(), find);
  if (!slot)
    co_return co_await send_text(http::status::service_unavailable, "storage unavailable", v, false,
                                 "Retry-After", "5");
  uint64_t now = now_ms();
  if (!*slot || ((*slot)->uploaded_at_ms == 0 && (*slot)->upload_expires_at_ms < now))
    co_return co_await send_text(http::status::not_found, "no such slot, or it expired", v, false);
  const AttachmentRecord& rec = **slot;
  if (rec.uploaded_at_ms)
    co_return co_await send_text(http::status::conflict, "this blob was already uploaded", v,
                                 false);
  if (rec.account_id != auth.account || rec.device_id != auth.device)
    co_return co_await send_text(http::status::forbidden, "another device reserved this slot", v,
                                 false);
  if (length > limits.attachment_max_bytes)
    co_return co_await send_text(http::status::payload_too_large,
                                 "larger than the attachment size limit", v, false);
  if (length != rec.size_bytes)
    co_return co_await send_text(
        http::status::bad_request,
        "Content-Length differs from the reserved size (" + std::to_string(rec.size_bytes) + ")", v,
        false);
  bool busy;
  {
    // Not held across the co_await below: the coroutine may resume on another thread.
    std::lock_guard lock(server_.uploads_mu_);
    busy = !server_.uploads_in_progress_.insert(id).second;
  }
  if (busy)
    co_return co_await send_text(http::status::conflict,
                                 "another upload to this slot is in progress", v, false);
  struct Release {
    Impl& s;
    std::string id;
    ~Release() {
      std::lock_guard lock(s.uploads_mu_);
      s.uploads_in_progress_.erase(id);
    }
  } release{server_, id};

  auto final_path = relay.attachment_path(id);
  auto tmp_path = relay.upload_tmp_dir() / (id + "." + random_hex(4));
  http::request_parser<http::file_body> body(std::move(parser));
  body.body_limit(length);
  beast::error_code ec;
  body.get().body().open(tmp_path.c_str(), beast::file_mode::write, ec);
  if (ec) {
    log_error("attachment_open_failed", {{"error", ec.message()}});
    co_return co_await send_text(http::status::service_unavailable, "storage unavailable", v, false,
                                 "Retry-After", "5");
  }
  if (beast::iequals(body.get()[http::field::expect], "100-continue")) {
    http::response<http::empty_body> cont{http::status::continue_, v};
    auto [wec, wn] = co_await http::async_write(stream_, cont, use_nothrow);
    if (wec) ec = wec;
  }
  // Read the body in pieces, so a slow sender is judged by progress, not by total time.
  while (!ec && !body.is_done()) {
    hard_deadline = now_ms() + 30'000;
    auto [rec_ec, n] = co_await http::async_read_some(stream_, buf_, body, use_nothrow);
    ec = rec_ec;
    server_.metrics_.attachment_bytes_in.fetch_add(n, std::memory_order_relaxed);
  }
  int fd = body.get().body().file().native_handle();
  bool synced = !ec && fd >= 0 && ::fsync(fd) == 0;
  body.get().body().close();
  std::error_code fs_ec;
  if (!synced) {
    std::filesystem::remove(tmp_path, fs_ec);
    if (ec) co_return false;  // the connection broke mid-body: nothing is kept
    co_return co_await send_text(http::status::service_unavailable, "storage unavailable", v, false,
                                 "Retry-After", "5");
  }
  std::filesystem::rename(tmp_path, final_path, fs_ec);
  if (!fs_ec) {
    int dir = ::open(final_path.parent_path().c_str(), O_RDONLY | O_DIRECTORY);
    if (dir >= 0) {
      ::fsync(dir);
      ::close(dir);
    }
  }
  uint64_t done_at = now_ms();
  uint64_t expires = done_at + limits.attachment_retention_ms;
  auto mark = [id, done_at, expires](Store& s, int&) {
    return s.mark_attachment_uploaded(id, done_at, expires);
  };
  std::optional<int> marked;
  if (!fs_ec) marked = co_await store_call<int>(relay.store(), mark);
  if (!marked) {
    std::filesystem::remove(final_path, fs_ec);
    std::filesystem::remove(tmp_path, fs_ec);
    co_return co_await send_text(http::status::service_unavailable, "storage unavailable", v, false,
                                 "Retry-After", "5");
  }
  server_.metrics_.attachments_uploaded.fetch_add(1, std::memory_order_relaxed);
  co_return co_await send_text(http::status::created, "stored", v, body.get().keep_alive());
}

template <class Stream>
asio::awaitable<bool> Server::Impl::Conn<Stream>::get_attachment(
    http::request_parser<http::empty_body>& parser, const std::string& id) {
  auto& req = parser.get();
  unsigned v = req.version();
  bool keep = req.keep_alive();
  Relay& relay = server_.relay_;
  const std::string authorization(req[http::field::authorization]);
  auto auth = co_await authenticate(relay, authorization);
  if (auth.kind == Relay::Auth::kUnavailable)
    co_return co_await send_text(http::status::service_unavailable, "storage unavailable", v, keep,
                                 "Retry-After", "5");
  if (auth.kind != Relay::Auth::kOk)
    co_return co_await send_text(http::status::unauthorized, refusal_text(auth), v, keep,
                                 "WWW-Authenticate", "Basic realm=\"sotto\"");
  if (uint64_t wait = relay.admit_download(auth.account, auth.device))
    co_return co_await send_text(http::status::too_many_requests, "too many downloads", v, keep,
                                 "Retry-After", std::to_string((wait + 999) / 1000));
  if (!valid_attachment_id(id))
    co_return co_await send_text(http::status::not_found, "no such attachment", v, keep);
  auto find = [id](Store& s, std::optional<AttachmentRecord>& out) -> Status {
    SOTTO_TRY_ASSIGN(out, s.find_attachment(id));
    return {};
  };
  auto slot = co_await store_call<std::optional<AttachmentRecord>>(relay.store(), find);
  if (!slot)
    co_return co_await send_text(http::status::service_unavailable, "storage unavailable", v, keep,
                                 "Retry-After", "5");
  if (!*slot || (*slot)->uploaded_at_ms == 0 || (*slot)->expires_at_ms < now_ms())
    co_return co_await send_text(http::status::not_found, "no such attachment", v, keep);
  int fd = ::open(relay.attachment_path(id).c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) co_return co_await send_text(http::status::not_found, "no such attachment", v, keep);
  struct Fd {
    int fd;
    ~Fd() { ::close(fd); }
  } guard{fd};
  struct stat sb {};
  ::fstat(fd, &sb);
  uint64_t size = static_cast<uint64_t>(sb.st_size);
  ByteRange range;
  if (auto it = req.find(http::field::range); it != req.end()) range = parse_range(it->value(), size);
  if (range.kind == ByteRange::kUnsatisfiable)
    co_return co_await send_text(http::status::range_not_satisfiable, "range not satisfiable", v,
                                 keep, "Content-Range", "bytes */" + std::to_string(size));
  const bool ranged = range.kind == ByteRange::kPartial;
  const uint64_t first = ranged ? range.first : 0;
  const uint64_t last = ranged ? range.last : 0;
  const uint64_t length = ranged ? last - first + 1 : size;
  http::response<http::empty_body> res{ranged ? http::status::partial_content : http::status::ok,
                                       v};
  res.set(http::field::server, "sotto-relay");
  res.set(http::field::content_type, "application/octet-stream");
  res.set(http::field::accept_ranges, "bytes");
  if (ranged)
    res.set(http::field::content_range, "bytes " + std::to_string(first) + "-" +
                                            std::to_string(last) + "/" + std::to_string(size));
  res.content_length(length);
  res.keep_alive(keep);
  http::response_serializer<http::empty_body> sr{res};
  hard_deadline = now_ms() + 30'000;
  auto [ec, n] = co_await http::async_write_header(stream_, sr, use_nothrow);
  if (ec) co_return false;
  if (req.method() == http::verb::head) co_return keep;
  std::vector<char> chunk(64 * 1024);
  uint64_t offset = first, remaining = length;
  while (remaining > 0) {
    size_t want = static_cast<size_t>(std::min<uint64_t>(remaining, chunk.size()));
    ssize_t got = ::pread(fd, chunk.data(), want, static_cast<off_t>(offset));
    if (got <= 0) co_return false;
    hard_deadline = now_ms() + 30'000;
    auto [wec, wn] = co_await asio::async_write(
        stream_, asio::buffer(chunk.data(), static_cast<size_t>(got)), use_nothrow);
    if (wec) co_return false;
    server_.metrics_.attachment_bytes_out.fetch_add(wn, std::memory_order_relaxed);
    offset += static_cast<uint64_t>(got);
    remaining -= static_cast<uint64_t>(got);
  }
  co_return keep;
}

template <class Stream>
asio::awaitable<bool> Server::Impl::Conn<Stream>::serve_websocket(
    http::request_parser<http::empty_body>& parser) {
  auto& req = parser.get();
  unsigned v = req.version();
  Relay& relay = server_.relay_;
  std::string target(req.target());
  if (auto q = target.find('?'); q != std::string::npos) target.resize(q);
  if (target != "/v1/ws") {
    co_await send_text(http::status::not_found, "WebSocket path is /v1/ws", v, false);
    co_return false;
  }
  if (server_.draining_) {
    co_await send_text(http::status::service_unavailable, "shutting down", v, false, "Retry-After",
                       "5");
    co_return false;
  }
  if (uint64_t wait = relay.admit_upgrade(ip_)) {
    server_.metrics_.connections_refused_rate.fetch_add(1, std::memory_order_relaxed);
    co_await send_text(http::status::too_many_requests, "too many connection attempts", v, false,
                       "Retry-After", std::to_string((wait + 999) / 1000));
    co_return false;
  }
  std::optional<Relay::Auth> auth;
  // A header that is present is judged, even when empty or repeated: it never falls back to an
  // unauthenticated socket (protocol.md 3.1).
  if (auto h = req.find(http::field::authorization); h != req.end()) {
    const std::string authorization =
        req.count(http::field::authorization) == 1 ? std::string(h->value()) : std::string();
    auth = co_await authenticate(relay, authorization);
    if (auth->kind == Relay::Auth::kUnavailable) {
      co_await send_text(http::status::service_unavailable, "storage unavailable", v, false,
                         "Retry-After", "5");
      co_return false;
    }
    if (auth->kind != Relay::Auth::kOk) {
      co_await send_text(http::status::unauthorized, refusal_text(*auth), v, false,
                         "WWW-Authenticate", "Basic realm=\"sotto\"");
      co_return false;
    }
  } else {
    if (!relay.admit_unauthenticated(ip_)) {
      server_.metrics_.connections_refused_rate.fetch_add(1, std::memory_order_relaxed);
      co_await send_text(http::status::too_many_requests,
                         "too many unauthenticated sockets from this address", v, false,
                         "Retry-After", "5");
      co_return false;
    }
    counted_unauth_ = true;
  }

  {
    // Beast answers the upgrade (and refuses a bad one); the stream only borrows the socket
    // and its 2.5 KiB block is freed when the handshake is done.
    websocket::stream<Stream&> handshake(stream_);
    handshake.set_option(websocket::stream_base::decorator(
        [](websocket::response_type& res) { res.set(http::field::server, "sotto-relay"); }));
    auto [ec] = co_await handshake.async_accept(req, use_nothrow);
    if (ec) co_return false;
  }
  // Bytes the client sent right behind its upgrade request are its first frames.
  if (buf_.size()) pending_.assign(static_cast<const char*>(buf_.data().data()), buf_.size());
  // The HTTP read buffer is not needed any more: give its memory back.
  buf_ = beast::flat_buffer();
  // Autotuning lets the kernel take megabytes off the write queue for a peer that reads
  // nothing, so the write-progress rule would never see it stall (protocol.md 3.4, 1008).
  if (uint32_t sndbuf = server_.config_.limits.socket_send_buffer_bytes) {
    beast::error_code ec;
    lowest(stream_).set_option(asio::socket_base::send_buffer_size(static_cast<int>(sndbuf)), ec);
  }
  activity = now_ms();
  hard_deadline = 0;
  if (auth) {
    idle_check = true;
  } else {
    soft_deadline = now_ms() + server_.config_.limits.unauth_timeout_ms;
  }
  peer_ = relay.open(std::static_pointer_cast<Connection>(this->shared_from_this()), ip_,
                     auth ? &*auth : nullptr);
  ws_open_ = true;
  if constexpr (kPlain) {
    beast::error_code nb;
    stream_.non_blocking(true, nb);
  }
  asio::post(strand_, [self = this->shared_from_this()] { self->resume(); });
  co_return true;
}

void Server::Impl::refuse_budget(Socket socket) {
  metrics_.connections_refused_budget.fetch_add(1, std::memory_order_relaxed);
  refusals_since_log_.fetch_add(1, std::memory_order_relaxed);
  uint64_t now = now_ms();
  uint64_t last = last_refusal_log_.load();
  if (now >= last + 1000 && last_refusal_log_.compare_exchange_strong(last, now)) {
    log_warn("connection_refused", {{"reason", "descriptor_budget"},
                                    {"budget", budget_},
                                    {"refused_since_last_log", refusals_since_log_.exchange(0)}});
  }
  static const std::string kBody = "the relay is at its connection limit\n";
  static const std::string kResponse =
      "HTTP/1.1 503 Service Unavailable\r\nRetry-After: 5\r\nContent-Type: text/plain\r\n"
      "Content-Length: " +
      std::to_string(kBody.size()) + "\r\nConnection: close\r\n\r\n" + kBody;
  // A non-blocking best effort: the socket is closed right after, whatever was written.
  beast::error_code ec;
  socket.non_blocking(true, ec);
  socket.write_some(asio::buffer(kResponse), ec);
  socket.shutdown(tcp::socket::shutdown_both, ec);
  socket.close(ec);
}

asio::awaitable<void> Server::Impl::accept_loop() {
  for (;;) {
    Strand strand = asio::make_strand(ioc_);
    auto [ec, socket] = co_await acceptor_.async_accept(strand, use_nothrow);
    if (draining_) co_return;
    if (ec) {
      if (ec == asio::error::operation_aborted) co_return;
      metrics_.accept_errors.fetch_add(1, std::memory_order_relaxed);
      log_warn("accept_failed", {{"error", ec.message()}});
      // Out of descriptors (EMFILE) or memory: back off instead of spinning.
      asio::steady_timer t(ioc_, std::chrono::milliseconds(100));
      co_await t.async_wait(use_nothrow);
      continue;
    }
    metrics_.connections_accepted.fetch_add(1, std::memory_order_relaxed);
    if (open_connections_.load(std::memory_order_relaxed) >= budget_) {
      refuse_budget(std::move(socket));
      continue;
    }
    open_connections_.fetch_add(1, std::memory_order_relaxed);
    beast::error_code ep_ec;
    auto ep = socket.remote_endpoint(ep_ec);
    std::string ip = ep_ec ? std::string("?") : ep.address().to_string();
    socket.set_option(tcp::no_delay(true), ep_ec);
    if (use_tls_) {
      std::shared_ptr<ssl::context> tls;
      {
        std::lock_guard lock(tls_mu_);
        tls = tls_;
      }
      auto c = std::make_shared<Conn<TlsStream>>(*this, TlsStream(std::move(socket), *tls),
                                                 std::move(ip));
      c->begin();
    } else {
      auto c = std::make_shared<Conn<Socket>>(*this, std::move(socket), std::move(ip));
      c->begin();
    }
  }
}

asio::awaitable<void> Server::Impl::housekeeping() {
  asio::steady_timer timer(ioc_);
  const uint64_t idle = config_.limits.idle_timeout_ms;
  const uint64_t write_timeout = config_.limits.write_timeout_ms;
  while (!draining_) {
    timer.expires_after(std::chrono::milliseconds(250));
    co_await timer.async_wait(use_nothrow);
    uint64_t now = now_ms();
    std::vector<std::pair<std::shared_ptr<Tracked>, int>> due;
    // The references taken under tracked_mu_ are dropped after it: one may be a connection's
    // last, and its destructor takes tracked_mu_ (untrack) and would erase from tracked_.
    std::vector<std::shared_ptr<Tracked>> seen;
    {
      std::lock_guard lock(tracked_mu_);
      seen.reserve(tracked_.size());
      for (auto& [id, weak] : tracked_) {
        auto t = weak.lock();
        if (!t) continue;
        uint64_t hard = t->hard_deadline.load(std::memory_order_relaxed);
        uint64_t soft = t->soft_deadline.load(std::memory_order_relaxed);
        if (hard && now >= hard) {
          t->hard_deadline = 0;
          metrics_.idle_drops.fetch_add(1, std::memory_order_relaxed);
          due.emplace_back(std::move(t), 0);
        } else if (soft && now >= soft) {
          t->soft_deadline = 0;
          metrics_.idle_drops.fetch_add(1, std::memory_order_relaxed);
          due.emplace_back(std::move(t), 1);
        } else if (t->idle_check.load(std::memory_order_relaxed) &&
                   now >= t->activity.load(std::memory_order_relaxed) + idle) {
          t->idle_check = false;
          metrics_.idle_drops.fetch_add(1, std::memory_order_relaxed);
          due.emplace_back(std::move(t), 0);
        } else if (uint64_t w = t->write_started.load(std::memory_order_relaxed);
                   w && now >= w + write_timeout) {
          t->write_started = 0;
          due.emplace_back(std::move(t), 2);
        }
        if (t) seen.push_back(std::move(t));
      }
    }
    for (auto& [t, kind] : due) t->expire(kind);
    relay_.tick();
  }
}

asio::awaitable<void> Server::Impl::shutdown() {
  log_info("shutdown_started", {{"connections", open_connections_.load()}});
  draining_ = true;
  beast::error_code ec;
  acceptor_.close(ec);
  relay_.begin_shutdown();
  asio::steady_timer timer(ioc_);
  uint64_t give_up = now_ms() + config_.shutdown_grace_ms;
  // Let every queued storage job commit and its answer reach the write queues.
  while (relay_.store().pending() > 0 && now_ms() < give_up) {
    timer.expires_after(std::chrono::milliseconds(10));
    co_await timer.async_wait(use_nothrow);
  }
  timer.expires_after(std::chrono::milliseconds(50));
  co_await timer.async_wait(use_nothrow);
  relay_.close_all(1001);
  {
    // HTTP connections without a WebSocket: close them outright. (References dropped after
    // the lock, as in housekeeping().)
    std::vector<std::shared_ptr<Tracked>> seen;
    std::lock_guard lock(tracked_mu_);
    seen.reserve(tracked_.size());
    uint64_t soon = now_ms() + 500;
    for (auto& [id, weak] : tracked_)
      if (auto t = weak.lock()) {
        if (!t->idle_check && !t->soft_deadline) t->hard_deadline = soon;
        seen.push_back(std::move(t));
      }
  }
  while (open_connections_.load() > 0 && now_ms() < give_up) {
    timer.expires_after(std::chrono::milliseconds(20));
    co_await timer.async_wait(use_nothrow);
    uint64_t now = now_ms();
    std::vector<std::shared_ptr<Tracked>> due, seen;  // released after the lock, as above
    {
      std::lock_guard lock(tracked_mu_);
      seen.reserve(tracked_.size());
      for (auto& [id, weak] : tracked_)
        if (auto t = weak.lock()) {
          uint64_t hard = t->hard_deadline.load();
          if (hard && now >= hard) {
            t->hard_deadline = 0;
            due.push_back(std::move(t));
          } else {
            seen.push_back(std::move(t));
          }
        }
    }
    for (auto& t : due) t->expire(0);
  }
  log_info("shutdown_finished", {{"connections_left", open_connections_.load()}});
  ioc_.stop();
}

Status Server::Impl::start(int listen_fd) {
  // Use every descriptor the hard limit allows; the budget keeps a reserve for files.
  rlimit rl{};
  if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
    rl.rlim_cur = rl.rlim_max;
    setrlimit(RLIMIT_NOFILE, &rl);
  }
  getrlimit(RLIMIT_NOFILE, &rl);
  int64_t fd_budget = static_cast<int64_t>(rl.rlim_cur) - config_.descriptor_reserve;
  budget_ = config_.max_connections ? static_cast<int64_t>(config_.max_connections) : fd_budget;
  budget_ = std::max<int64_t>(1, std::min(budget_, fd_budget));
  metrics_.descriptor_budget = budget_;

  if (!config_.tls_cert.empty()) {
    SOTTO_TRY_ASSIGN(tls_, load_tls());
    use_tls_ = true;
    metrics_.tls_not_after_s = certificate_not_after(*tls_);
    log_info("tls_loaded", {{"not_after", utc_text(metrics_.tls_not_after_s)}});
  }

  beast::error_code ec;
  auto address = asio::ip::make_address(config_.listen_host, ec);
  if (ec)
    return make_error(ErrorCode::kInvalidArgument, "--listen: bad address " + config_.listen_host);
  tcp::endpoint ep(address, config_.listen_port);
  // The socket main() bound before the store opened (open_listener), else one of our own.
  if (listen_fd < 0) {
    SOTTO_TRY_ASSIGN(listen_fd, open_listener(config_.listen_host, config_.listen_port,
                                              config_.reuse_port));
  }
  acceptor_.assign(ep.protocol(), listen_fd, ec);
  if (ec) {
    ::close(listen_fd);
    return make_error(ErrorCode::kUnavailable, "cannot listen on " + config_.listen_host + ":" +
                                                   std::to_string(config_.listen_port) + ": " +
                                                   ec.message());
  }
  port_ = acceptor_.local_endpoint().port();
  // Signals are caught from here on (and queued until run() waits for them): the port file
  // says the relay is ready, and a SIGTERM right after it must shut down cleanly.
  hangups_.emplace(ioc_, SIGHUP);
  stops_.emplace(ioc_, SIGINT, SIGTERM);
  if (!config_.port_file.empty()) {
    auto tmp = config_.port_file;
    tmp += ".tmp";
    {
      std::ofstream out(tmp, std::ios::trunc);
      out << port_ << "\n";
      if (!out) return make_error(ErrorCode::kStorageIo, "cannot write " + tmp.string());
    }
    std::error_code fec;
    std::filesystem::rename(tmp, config_.port_file, fec);
    if (fec) return make_error(ErrorCode::kStorageIo, "cannot write " + config_.port_file.string());
  }
  pusher_ = make_push_client(ioc_, config_);
  relay_.set_pusher(pusher_.get());
  log_info("listening", {{"address", config_.listen_host},
                         {"port", port_},
                         {"tls", use_tls_ ? "on" : "off"},
                         {"threads", config_.threads},
                         {"connection_budget", budget_},
                         {"reuse_port", config_.reuse_port ? "on" : "off"}});
  return {};
}

Result<std::shared_ptr<ssl::context>> Server::Impl::load_tls() const {
  auto ctx = std::make_shared<ssl::context>(ssl::context::tls_server);
  ctx->set_options(ssl::context::default_workarounds | ssl::context::no_sslv2 |
                   ssl::context::no_sslv3 | ssl::context::no_tlsv1 | ssl::context::no_tlsv1_1);
  beast::error_code ec;
  ctx->use_certificate_chain_file(config_.tls_cert.string(), ec);
  if (ec)
    return make_error(
        ErrorCode::kInvalidArgument,
        "cannot load the TLS certificate chain " + config_.tls_cert.string() + ": " + ec.message());
  ctx->use_private_key_file(config_.tls_key.string(), ssl::context::pem, ec);
  if (!ec && SSL_CTX_check_private_key(ctx->native_handle()) != 1)
    ec = beast::error_code(static_cast<int>(ERR_get_error()), asio::error::get_ssl_category());
  if (ec)
    return make_error(
        ErrorCode::kInvalidArgument,
        "cannot load the TLS key " + config_.tls_key.string() +
            " (it must be the private key of the certificate's public key): " + ec.message());
  return ctx;
}

void Server::Impl::reload_tls() {
  if (!use_tls_) {
    log_info("tls_reload_skipped", {{"reason", "plain ws: no --tls-cert"}});
    return;
  }
  auto ctx = load_tls();
  if (!ctx.ok()) {
    metrics_.tls_reload_failures.fetch_add(1, std::memory_order_relaxed);
    log_error("tls_reload_failed",
              {{"error", ctx.error().message},
               {"action", "still serving the previous certificate; fix the files, then SIGHUP"}});
    return;
  }
  int64_t not_after = certificate_not_after(**ctx);
  {
    std::lock_guard lock(tls_mu_);
    tls_ = std::move(*ctx);
  }
  metrics_.tls_not_after_s = not_after;
  log_info("tls_reloaded", {{"not_after", utc_text(not_after)}});
}

void Server::Impl::run() {
  // SIGHUP: new connections get the certificate and key as the files now hold them (after a
  // renewal); open connections keep theirs.
  std::function<void(beast::error_code, int)> on_hangup = [&](beast::error_code ec, int) {
    if (ec || draining_) return;
    reload_tls();
    hangups_->async_wait(on_hangup);
  };
  hangups_->async_wait(on_hangup);
  stops_->async_wait([this](beast::error_code ec, int sig) {
    if (ec) return;
    log_info("signal", {{"signal", sig == SIGINT ? "SIGINT" : "SIGTERM"}});
    asio::co_spawn(ioc_, shutdown(), asio::detached);
  });
  asio::co_spawn(acceptor_.get_executor(), accept_loop(), asio::detached);
  asio::co_spawn(ioc_, housekeeping(), asio::detached);
  std::vector<std::thread> threads;
  for (unsigned i = 1; i < config_.threads; ++i)
    threads.emplace_back([this] {
      name_this_thread("sotto-io");
      ioc_.run();
    });
  ioc_.run();
  for (auto& t : threads) t.join();
  relay_.set_pusher(nullptr);
}

Server::Server(const Config& config, Relay& relay, Metrics& metrics)
    : impl_(std::make_unique<Impl>(config, relay, metrics)) {}
Server::~Server() = default;
Status Server::start(int listen_fd) { return impl_->start(listen_fd); }
void Server::run() { impl_->run(); }
uint16_t Server::port() const { return impl_->port_; }

}  // namespace sotto::relay
