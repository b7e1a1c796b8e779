#include "RelayHarness.h"

#include <sodium.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <thread>

#include "SqliteStore.h"

namespace sotto::test {

// ---- HarnessConnection ----

HarnessConnection::HarnessConnection(RelayHarness& harness, std::string ip_address)
    : ip(std::move(ip_address)), harness_(harness) {}

void HarnessConnection::post(std::function<void()> fn) {
  harness_.post([self = shared_from_this(), fn = std::move(fn)] { fn(); });
}

void HarnessConnection::write(std::shared_ptr<const std::string> frame) {
  if (ended || close_code) return;  // as the server: nothing goes out after a close
  ++frames_written;
  if (stalled_) {
    queued_ += frame->size();
    held_.push_back(std::move(frame));
    if (queued_ > harness_.config().limits.max_outgoing_bytes) {
      harness_.metrics().slow_reader_drops.fetch_add(1);
      cut = true;
      held_.clear();
      harness_.disconnect(*this);
    }
    return;
  }
  receive(*frame);
}

void HarnessConnection::receive(const std::string& frame) {
  wire::Frame f;
  if (!f.ParseFromString(frame)) {
    std::fprintf(stderr, "RelayHarness: the relay wrote a frame that does not parse\n");
    std::abort();
  }
  if (f.has_response()) {
    responses.push_back(std::move(*f.mutable_response()));
  } else if (f.has_push()) {
    pushes.push_back(std::move(*f.mutable_push()));
  } else {
    std::fprintf(stderr, "RelayHarness: the relay wrote a frame that is neither kind\n");
    std::abort();
  }
}

void HarnessConnection::close(uint16_t code) {
  if (ended || close_code) return;
  close_code = code;
  // The client answers the close frame; then the socket ends.
  post([self = shared_from_this()] { self->harness_.disconnect(*self); });
}

void HarnessConnection::request_done(uint64_t id) {
  auto it = std::find(unanswered_.begin(), unanswered_.end(), id);
  if (it != unanswered_.end()) unanswered_.erase(it);
}

void HarnessConnection::when_below(uint64_t bytes, std::function<void()> fn) {
  if (queued_ < bytes) {
    post(std::move(fn));
    return;
  }
  drain_mark_ = bytes;
  on_drained_ = std::move(fn);
}

void HarnessConnection::drain() {
  stalled_ = false;
  queued_ = 0;
  for (const auto& frame : std::exchange(held_, {})) receive(*frame);
  if (on_drained_) post(std::exchange(on_drained_, nullptr));
}

std::optional<wire::Response> HarnessConnection::take_response(uint64_t id) {
  for (auto it = responses.begin(); it != responses.end(); ++it) {
    if (it->id() != id) continue;
    wire::Response r = std::move(*it);
    responses.erase(it);
    return r;
  }
  return std::nullopt;
}

std::vector<wire::Envelope> HarnessConnection::take_envelopes() {
  std::vector<wire::Envelope> out;
  std::deque<wire::Push> rest;
  for (auto& p : pushes) {
    if (p.has_envelope())
      out.push_back(std::move(*p.mutable_envelope()));
    else
      rest.push_back(std::move(p));
  }
  pushes = std::move(rest);
  return out;
}

// ---- RelayHarness ----

RelayHarness::RelayHarness() : RelayHarness(Options{}) {}

RelayHarness::RelayHarness(Options options)
    : config_(std::move(options.config)), now_ms_(options.start_ms) {
  static std::atomic<int> counter{0};
  dir_ = std::filesystem::temp_directory_path() /
         ("sotto-relay-harness-" + std::to_string(::getpid()) + "-" + std::to_string(counter++));
  std::filesystem::remove_all(dir_);
  std::filesystem::create_directories(dir_ / "attachments" / "tmp");
  config_.data_dir = dir_;
  relay::SqliteStore::Options store_options;
  store_options.sync_full = options.sync_full;
  auto store = relay::SqliteStore::open(dir_ / "relay.db", store_options);
  if (!store.ok()) {
    std::fprintf(stderr, "RelayHarness: %s\n", store.error().message.c_str());
    std::abort();
  }
  store_ = std::make_unique<relay::StoreExecutor>(std::move(*store), metrics_,
                                                  config_.store_batch_max);
  auto ctx = keys::Context::create();
  if (!ctx.ok()) std::abort();
  relay_ = std::make_unique<relay::Relay>(config_, *store_, metrics_, std::move(*ctx),
                                          [this] { return now_ms_.load(); });
  settle();
}

RelayHarness::~RelayHarness() {
  settle();
  relay_->begin_shutdown();
  store_->stop();
  {
    std::lock_guard lock(mu_);
    posted_.clear();  // may hold connections, which refer to this harness
  }
  relay_.reset();
  store_.reset();
  std::error_code ec;
  std::filesystem::remove_all(dir_, ec);
}

void RelayHarness::post(std::function<void()> fn) {
  std::lock_guard lock(mu_);
  posted_.push_back(std::move(fn));
}

void RelayHarness::settle() {
  for (;;) {
    // pending() drops only after a job's completion has run (and posted what it posts).
    bool store_idle = store_->pending() == 0;
    std::deque<std::function<void()>> run;
    {
      std::lock_guard lock(mu_);
      run.swap(posted_);
    }
    if (run.empty()) {
      if (store_idle) return;
      std::this_thread::sleep_for(std::chrono::microseconds(50));
      continue;
    }
    for (auto& fn : run) fn();
  }
}

void RelayHarness::advance(uint64_t ms) {
  now_ms_ += ms;
  relay_->tick();
  settle();
}

std::shared_ptr<HarnessConnection> RelayHarness::open(const std::string& ip) {
  auto conn = std::make_shared<HarnessConnection>(*this, ip);
  conn->peer = relay_->open(conn, ip, nullptr);
  settle();
  return conn;
}

std::shared_ptr<HarnessConnection> RelayHarness::open_authenticated(
    const std::string& authorization, relay::Relay::Auth::Kind* refused, const std::string& ip) {
  auto auth = std::make_shared<std::optional<relay::Relay::Auth>>();
  relay_->authenticate(authorization, [this, auth](relay::Relay::Auth a) {
    post([auth, a = std::move(a)] { *auth = a; });
  });
  settle();
  if (!*auth || (*auth)->kind != relay::Relay::Auth::kOk) {
    if (refused) *refused = *auth ? (*auth)->kind : relay::Relay::Auth::kUnavailable;
    return nullptr;
  }
  auto conn = std::make_shared<HarnessConnection>(*this, ip);
  conn->peer = relay_->open(conn, ip, &**auth);
  settle();
  return conn;
}

std::shared_ptr<HarnessConnection> RelayHarness::connect(const TestDevice& device,
                                                         const std::string& ip) {
  return open_authenticated(device.credentials().authorization(), nullptr, ip);
}

Result<TestDevice> RelayHarness::register_device(const std::string& handle, uint32_t prekeys) {
  SOTTO_TRY_ASSIGN(TestDevice d, make_device(handle, prekeys));
  return register_keys(std::move(d));
}

Result<TestDevice> RelayHarness::register_keys(TestDevice d) {
  // Each from an address of its own: the per-address registration limit is not under test.
  auto conn = open("198.51.100." + std::to_string(1 + registrations_++ % 250));
  SOTTO_TRY_ASSIGN(wire::Response r, call(*conn, register_request(d, now_ms())));
  disconnect(*conn);
  if (r.status() != wire::OK)
    return make_error(ErrorCode::kInvalidArgument, "register @" + d.handle + ": " +
                                                       wire::Status_Name(r.status()) + " " +
                                                       r.message());
  d.account_id = Bytes(r.registration().account_id().begin(), r.registration().account_id().end());
  d.device_id = r.registration().device_id();
  return d;
}

void RelayHarness::disconnect(HarnessConnection& conn) {
  if (conn.ended) return;
  conn.ended = true;
  if (conn.peer) relay_->on_closed(conn.peer);
}

uint64_t RelayHarness::send(HarnessConnection& conn, wire::Request request, bool keep_id) {
  if (request.id() == 0 && !keep_id) request.set_id(next_request_id_++);
  uint64_t id = request.id();
  if (conn.ended) return id;
  conn.unanswered_.push_back(id);
  relay_->on_request(conn.peer, std::move(request));
  return id;
}

Result<wire::Response> RelayHarness::call(HarnessConnection& conn, wire::Request request) {
  uint64_t id = send(conn, std::move(request));
  settle();
  if (auto r = conn.take_response(id)) return std::move(*r);
  return make_error(ErrorCode::kNotFound, "no answer to request " + std::to_string(id));
}

}  // namespace sotto::test
