#include "sotto/Client.h"

#include <sodium.h>

#include <algorithm>
#include <condition_variable>
#include <deque>
#include <future>
#include <map>
#include <mutex>
#include <set>
#include <thread>

#include "History.h"
#include "ProfileAccess.h"
#include "Provisioning.h"
#include "RelayConnection.h"
#include "Transport.h"
#include "sotto/keys/Bundle.h"
#include "sotto/keys/SafetyNumber.h"
#include "sotto/proto/content.pb.h"
#include "sotto/proto/wire.pb.h"

namespace sotto {

namespace {

using namespace std::chrono_literals;

constexpr uint32_t kMaxSendMessages = 100;  // protocol.md 12
constexpr uint32_t kMaxAckSequences = 1000;
constexpr size_t kInboundBatch = 256;
constexpr uint32_t kPreKeyLowWater = 10;
constexpr uint64_t kResetInterval = 3600'000;  // one session reset per peer device per hour
constexpr uint64_t kResendWindow = 24 * 3600'000;
constexpr uint32_t kMaxText = 16 * 1024;
constexpr const char* kUnregistered = "unregistered";

Bytes bytes_of(const std::string& s) { return Bytes(s.begin(), s.end()); }
std::string str_of(ByteView b) { return std::string(b.begin(), b.end()); }
ByteView view_of(const std::string& s) { return as_bytes(s); }

// 16 bytes, UUIDv7 layout: 48-bit milliseconds, then random bits (version and variant set).
Bytes new_message_id(uint64_t now_ms) {
  Bytes id(16);
  randombytes_buf(id.data(), id.size());
  for (int i = 0; i < 6; ++i) id[i] = static_cast<uint8_t>(now_ms >> (40 - 8 * i));
  id[6] = static_cast<uint8_t>(0x70 | (id[6] & 0x0f));
  id[8] = static_cast<uint8_t>(0x80 | (id[8] & 0x3f));
  return id;
}

Result<Bytes> parse_message_id(const std::string& hex) {
  Bytes out;
  if (hex.size() != 32 || !from_hex(hex, out))
    return make_error(ErrorCode::kInvalidArgument,
                      "a message id is 32 hex digits, as returned by send_text() or messages()");
  return out;
}

Result<Bytes> parse_account(const std::string& hex) {
  Bytes out;
  if (hex.size() != 32 || !from_hex(hex, out))
    return make_error(ErrorCode::kInvalidArgument,
                      "an account id is 32 hex digits (use add_contact() to find one by handle)");
  return out;
}

// protocol.md 2: 3..32 of a-z 0-9 _ . ; starts with a letter; no trailing '.', no "..".
Result<std::string> normalise_handle(std::string h) {
  if (!h.empty() && h.front() == '@') h.erase(0, 1);
  std::transform(h.begin(), h.end(), h.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  auto bad = [&](const std::string& why) {
    return make_error(ErrorCode::kInvalidArgument,
                      "'" + h + "' is not a valid handle: " + why +
                          " (3 to 32 of a-z, 0-9, '_' and '.', starting with a letter)");
  };
  if (h.size() < 3 || h.size() > 32) return bad("wrong length");
  if (h.front() < 'a' || h.front() > 'z') return bad("it must start with a letter");
  for (char c : h)
    if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_' || c == '.'))
      return bad("it has a character that is not allowed");
  if (h.back() == '.') return bad("it ends with '.'");
  if (h.find("..") != std::string::npos) return bad("it has '..'");
  return h;
}

bool is_crypto_failure(ErrorCode c) {
  switch (c) {
    case ErrorCode::kInvalidMessage:
    case ErrorCode::kDuplicateMessage:
    case ErrorCode::kInvalidSignature:
    case ErrorCode::kUnknownKeyId:
    case ErrorCode::kNoSession:
    case ErrorCode::kUntrustedIdentity:
    case ErrorCode::kInvalidKey:
    case ErrorCode::kMalformedBundle:
    case ErrorCode::kLegacyMessage:
      return true;
    default:
      return false;
  }
}

Bytes serialize(const google::protobuf::MessageLite& m) {
  Bytes out(m.ByteSizeLong());
  m.SerializeToArray(out.data(), static_cast<int>(out.size()));
  return out;
}

void fill_keys(wire::SignedPreKey* out, const keys::SignedPreKey& spk) {
  out->set_id(spk.id);
  out->set_public_key(str_of(spk.public_key));
  out->set_signature(str_of(spk.signature));
  out->set_timestamp_ms(spk.timestamp_ms);
}

void fill_key(wire::OneTimePreKey* out, const keys::OneTimePreKey& k) {
  out->set_id(k.id);
  out->set_public_key(str_of(k.public_key));
}

// A request for `op` with its body field (number 100 + op) present, even when the body has no
// fields: the relay requires exactly that one body to be set.
wire::Request make_request(wire::Op op) {
  wire::Request r;
  r.set_op(op);
  const auto* field = wire::Request::descriptor()->FindFieldByNumber(100 + static_cast<int>(op));
  if (field) r.GetReflection()->MutableMessage(&r, field);
  return r;
}

// Events run after the transaction that caused them has committed.
using Event = std::function<void(ClientListener&)>;

struct Effects {
  std::vector<Event> events;
  bool kick_outbox = false;
  bool receipts_owed = false;
};

// A single thread that runs listener calls in order, when the app gave no executor.
class EventThread {
 public:
  EventThread() : thread_([this] { run(); }) {}
  ~EventThread() {
    {
      std::lock_guard lock(mu_);
      stop_ = true;
    }
    cv_.notify_all();
    thread_.join();
  }
  void post(std::function<void()> fn) {
    {
      std::lock_guard lock(mu_);
      queue_.push_back(std::move(fn));
    }
    cv_.notify_one();
  }

 private:
  void run() {
    std::unique_lock lock(mu_);
    for (;;) {
      cv_.wait(lock, [&] { return stop_ || !queue_.empty(); });
      if (queue_.empty()) return;  // stopping and drained
      auto fn = std::move(queue_.front());
      queue_.pop_front();
      lock.unlock();
      fn();
      lock.lock();
    }
  }
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<std::function<void()>> queue_;
  bool stop_ = false;
  std::thread thread_;
};

}  // namespace

struct Client::Impl {
  std::unique_ptr<Profile> profile;
  ProfileParts parts;
  ClientOptions options;
  Clock clock;
  History history;

  // Declared before everything that posts to it and after what its callbacks use.
  std::unique_ptr<EventThread> event_thread;
  std::mutex listener_mu;
  std::shared_ptr<ClientListener> listener;

  net::EventLoop loop;
  std::mutex conn_mu;
  std::shared_ptr<RelayConnection> conn;  // the authenticated connection, once connected

  // Worker thread: inbound envelopes, the outbox, receipts and housekeeping.
  std::thread worker;
  std::mutex mu;
  std::condition_variable cv;
  std::deque<wire::Envelope> inbound;
  std::deque<std::function<void()>> tasks;
  bool outbox_kick = false;
  bool stopping = false;
  uint64_t receipts_due_ms = 0;  // 0: none owed
  uint64_t outbox_due_ms = 0;    // 0: nothing waiting on a timer

  // Connection state for the app.
  mutable std::mutex state_mu;
  mutable std::condition_variable state_cv;
  ConnectionState state = ConnectionState::kOffline;
  std::string state_detail;

  // Worker-only state.
  std::set<uint32_t> own_devices;  // this account's other devices, as the relay last said
  bool own_devices_known = false;

  // Linking (new device side).
  std::mutex link_mu;
  std::condition_variable link_cv;
  std::shared_ptr<RelayConnection> link_conn;
  std::optional<LinkKeys> link_keys;
  std::string link_code;
  std::optional<wire::ProvisionPush> link_push;
  bool link_closed = false;

  Impl(std::unique_ptr<Profile> p, ClientOptions o)
      : profile(std::move(p)),
        parts(ProfileAccess::parts(*profile)),
        options(std::move(o)),
        clock(parts.options.clock ? parts.options.clock : Clock(system_clock_ms)),
        history(parts.db) {
    if (!options.executor) event_thread = std::make_unique<EventThread>();
    worker = std::thread([this] { worker_main(); });
  }

  ~Impl() {
    disconnect();
    {
      std::lock_guard lock(link_mu);
      if (link_conn) link_conn->stop();
    }
    {
      std::lock_guard lock(mu);
      stopping = true;
    }
    cv.notify_all();
    if (worker.joinable()) worker.join();
  }

  uint64_t now() const { return clock(); }

  // ---------------------------------------------------------------------------------------
  // Plumbing
  // ---------------------------------------------------------------------------------------

  template <class F>
  auto locked(F&& f) {
    std::lock_guard lock(parts.mu);
    return f();
  }

  // One transaction on the profile database, mutex held throughout.
  Status txn(const std::function<Status()>& body) {
    std::lock_guard lock(parts.mu);
    return parts.crypto.transaction(body);
  }

  void emit(std::vector<Event> events) {
    if (events.empty()) return;
    std::shared_ptr<ClientListener> l;
    {
      std::lock_guard lock(listener_mu);
      l = listener;
    }
    if (!l) return;
    auto run = [l, events = std::move(events)] {
      for (const auto& e : events) e(*l);
    };
    if (options.executor)
      options.executor(std::move(run));
    else
      event_thread->post(std::move(run));
  }
  void emit(Event e) {
    std::vector<Event> v;
    v.push_back(std::move(e));
    emit(std::move(v));
  }

  void post_task(std::function<void()> fn) {
    {
      std::lock_guard lock(mu);
      tasks.push_back(std::move(fn));
    }
    cv.notify_one();
  }

  void kick_outbox() {
    {
      std::lock_guard lock(mu);
      outbox_kick = true;
    }
    cv.notify_one();
  }

  void owe_receipts() {
    {
      std::lock_guard lock(mu);
      uint64_t due = now() + static_cast<uint64_t>(options.receipt_delay.count());
      if (receipts_due_ms == 0 || due < receipts_due_ms) receipts_due_ms = due;
    }
    cv.notify_one();
  }

  Result<AccountRow> registered_account() {
    auto a = locked([&] { return history.account(); });
    if (!a.ok()) return std::move(a).error();
    if (!*a || (*a)->state != AccountState::kRegistered)
      return make_error(ErrorCode::kInvalidState,
                        "this profile has no account yet: call register_account() or link it to "
                        "an existing account first");
    return std::move(**a);
  }

  std::string self_account() {
    return locked([&] { return parts.crypto.identity().account; });
  }
  uint32_t self_device() {
    return locked([&] { return parts.crypto.identity().device_id; });
  }

  std::shared_ptr<RelayConnection> connection() {
    std::lock_guard lock(conn_mu);
    return conn;
  }

  ConnectionTiming timing() const {
    ConnectionTiming t;
    t.ping_interval = options.ping_interval;
    t.idle_timeout = options.idle_timeout;
    t.backoff_initial = options.backoff_initial;
    t.backoff_max = options.backoff_max;
    t.request_timeout = options.request_timeout;
    return t;
  }

  // A blocking request on the authenticated connection.
  Result<wire::Response> call(wire::Request r) {
    auto c = connection();
    if (!c)
      return make_error(ErrorCode::kUnavailable,
                        "not connected to the relay: call connect() first");
    return c->call(std::move(r));
  }

  void set_state(ConnectionState s, const std::string& detail) {
    {
      std::lock_guard lock(state_mu);
      if (state == s && state_detail == detail) return;
      state = s;
      state_detail = detail;
    }
    state_cv.notify_all();
    emit([s, detail](ClientListener& l) { l.on_connection_state(s, detail); });
  }

  // ---------------------------------------------------------------------------------------
  // Connection
  // ---------------------------------------------------------------------------------------

  Status connect() {
    SOTTO_TRY_ASSIGN(auto account, registered_account());
    if (options.relay_url.empty())
      return make_error(ErrorCode::kInvalidArgument,
                        "no relay address: set ClientOptions::relay_url");
    RelayConnection::Options o;
    o.url = options.relay_url;
    o.credentials = Credentials{account.account, account.device_id, account.auth_secret};
    o.timing = timing();
    std::weak_ptr<int> alive = alive_;
    SOTTO_TRY_ASSIGN(auto c, RelayConnection::create(
                                 loop, std::move(o),
                                 [this, alive](wire::Push p) {
                                   if (alive.lock()) on_push(std::move(p));
                                 },
                                 [this, alive](const LinkEvent& e) {
                                   if (alive.lock()) on_link_event(e);
                                 }));
    std::shared_ptr<RelayConnection> old;
    {
      std::lock_guard lock(conn_mu);
      old = std::exchange(conn, c);
    }
    if (old) old->stop();
    c->start();
    return {};
  }

  void disconnect() {
    std::shared_ptr<RelayConnection> old;
    {
      std::lock_guard lock(conn_mu);
      old = std::exchange(conn, nullptr);
    }
    if (old) old->stop();
    set_state(ConnectionState::kOffline, "disconnected");
  }

  // Loop thread.
  void on_link_event(const LinkEvent& e) {
    switch (e.state) {
      case LinkState::kConnecting:
        set_state(ConnectionState::kConnecting, e.detail);
        break;
      case LinkState::kConnected:
        set_state(ConnectionState::kSyncing, "receiving what was queued");
        post_task([this] { on_connected(); });
        break;
      case LinkState::kOffline:
        set_state(ConnectionState::kOffline, e.detail);
        break;
      case LinkState::kStopped:
        if (e.unauthorized) {
          post_task([this] {
            (void)txn([&]() -> Status {
              SOTTO_TRY_ASSIGN(auto a, history.account());
              if (!a) return {};
              a->state = AccountState::kRemoved;
              return history.save_account(*a);
            });
          });
          set_state(ConnectionState::kLoggedOut, e.detail);
        } else if (e.close_code == 4002) {
          set_state(ConnectionState::kOffline, e.detail);
        }
        break;
    }
  }

  // Loop thread: hand everything to the worker.
  void on_push(wire::Push p) {
    switch (p.kind_case()) {
      case wire::Push::kEnvelope: {
        {
          std::lock_guard lock(mu);
          inbound.push_back(std::move(*p.mutable_envelope()));
        }
        cv.notify_one();
        break;
      }
      case wire::Push::kQueueEmpty:
        // Everything queued before this arrived is ahead of this task in the worker.
        post_task([this] { set_state(ConnectionState::kOnline, "up to date"); });
        break;
      case wire::Push::kPrekeysLow:
        post_task([this] { (void)refill_prekeys(); });
        break;
      case wire::Push::kDevicesChanged: {
        auto devices = std::move(*p.mutable_devices_changed());
        post_task([this, devices = std::move(devices)] { on_devices_changed(devices); });
        break;
      }
      default:
        break;  // presence and unknown kinds: later versions
    }
  }

  // Worker thread, after each (re)connect.
  void on_connected() {
    (void)refresh_own_devices();
    (void)maintain_prekeys();
    kick_outbox();
  }

  Status refresh_own_devices() {
    SOTTO_TRY_ASSIGN(auto r, call(make_request(wire::OP_LIST_DEVICES)));
    if (r.status() != wire::OK) return status_error(r, "listing this account's devices");
    std::set<uint32_t> ids;
    uint32_t me = self_device();
    for (const auto& d : r.list_devices().devices())
      if (d.device_id() != me) ids.insert(d.device_id());
    return apply_own_devices(ids);
  }

  Status apply_own_devices(const std::set<uint32_t>& ids) {
    std::string me = self_account();
    // Sessions with devices that are gone would only earn a STALE_DEVICES later.
    SOTTO_TRY(txn([&]() -> Status {
      SOTTO_TRY_ASSIGN(auto sessions, parts.crypto.session_devices(me));
      for (uint32_t d : sessions)
        if (!ids.count(d) && d != parts.crypto.identity().device_id)
          SOTTO_TRY(parts.crypto.delete_session(Address{me, d}));
      return {};
    }));
    own_devices = ids;
    own_devices_known = true;
    return {};
  }

  void on_devices_changed(const wire::DevicesChanged& dc) {
    std::set<uint32_t> ids;
    uint32_t me = self_device();
    for (const auto& d : dc.devices())
      if (d.device_id() != me) ids.insert(d.device_id());
    (void)apply_own_devices(ids);
    emit([](ClientListener& l) { l.on_devices_changed(); });
  }

  // ---------------------------------------------------------------------------------------
  // Prekeys
  // ---------------------------------------------------------------------------------------

  Status maintain_prekeys() {
    SOTTO_TRY_ASSIGN(auto r, call(make_request(wire::OP_GET_PREKEY_COUNT)));
    if (r.status() != wire::OK) return status_error(r, "reading the prekey count");
    const auto& count = r.get_prekey_count();
    auto req = make_request(wire::OP_UPLOAD_PREKEYS);
    auto* up = req.mutable_upload_prekeys();
    uint64_t rotation = static_cast<uint64_t>(
        std::chrono::duration_cast<std::chrono::milliseconds>(options.signed_prekey_rotation)
            .count());
    SOTTO_TRY(locked([&]() -> Status {
      SOTTO_TRY_ASSIGN(auto spk, parts.crypto.current_signed_prekey());
      if (count.signed_prekey_id() != spk.id || spk.timestamp_ms + rotation <= now()) {
        if (spk.timestamp_ms + rotation <= now()) {
          SOTTO_TRY_ASSIGN(spk, parts.crypto.rotate_signed_prekey());
        }
        fill_keys(up->mutable_signed_prekey(), spk);
      }
      if (!count.has_last_resort()) {
        SOTTO_TRY_ASSIGN(auto lr, parts.crypto.last_resort_prekey());
        fill_key(up->mutable_last_resort_prekey(), lr);
      }
      if (count.one_time_prekeys() < kPreKeyLowWater) {
        SOTTO_TRY_ASSIGN(auto fresh, parts.crypto.generate_prekeys(options.prekey_batch));
        for (const auto& k : fresh) fill_key(up->add_one_time_prekeys(), k);
      }
      return {};
    }));
    if (!up->has_signed_prekey() && !up->has_last_resort_prekey() &&
        up->one_time_prekeys_size() == 0)
      return {};
    SOTTO_TRY_ASSIGN(auto u, call(std::move(req)));
    if (u.status() != wire::OK) return status_error(u, "uploading prekeys");
    return {};
  }

  Status refill_prekeys() {
    auto req = make_request(wire::OP_UPLOAD_PREKEYS);
    SOTTO_TRY(locked([&]() -> Status {
      SOTTO_TRY_ASSIGN(auto fresh, parts.crypto.generate_prekeys(options.prekey_batch));
      for (const auto& k : fresh) fill_key(req.mutable_upload_prekeys()->add_one_time_prekeys(), k);
      return {};
    }));
    SOTTO_TRY_ASSIGN(auto u, call(std::move(req)));
    if (u.status() != wire::OK) return status_error(u, "uploading prekeys");
    return {};
  }

  // DeviceKeys for registration and linking: a new auth secret, the current signed prekey,
  // a fresh batch of one-time prekeys and the last-resort key. Caller holds the mutex.
  Result<wire::DeviceKeys> device_keys(const Bytes& auth_secret) {
    wire::DeviceKeys k;
    k.set_registration_id(parts.crypto.identity().registration_id);
    k.set_auth_secret(str_of(auth_secret));
    SOTTO_TRY_ASSIGN(auto spk, parts.crypto.current_signed_prekey());
    fill_keys(k.mutable_signed_prekey(), spk);
    SOTTO_TRY_ASSIGN(auto fresh, parts.crypto.generate_prekeys(options.prekey_batch));
    for (const auto& otk : fresh) fill_key(k.add_one_time_prekeys(), otk);
    SOTTO_TRY_ASSIGN(auto lr, parts.crypto.last_resort_prekey());
    fill_key(k.mutable_last_resort_prekey(), lr);
    if (!options.device_name.empty()) {
      SOTTO_TRY_ASSIGN(auto name,
                       seal_device_name(options.device_name, parts.crypto.identity().key_pair));
      k.set_encrypted_name(str_of(name));
    }
    return k;
  }

  // ---------------------------------------------------------------------------------------
  // Registration and linking
  // ---------------------------------------------------------------------------------------

  // An unauthenticated socket for registration or linking: one attempt, no reconnects.
  Result<std::shared_ptr<RelayConnection>> open_anonymous(RelayConnection::PushCallback on_push) {
    if (options.relay_url.empty())
      return make_error(ErrorCode::kInvalidArgument,
                        "no relay address: set ClientOptions::relay_url");
    RelayConnection::Options o;
    o.url = options.relay_url;
    o.reconnect = false;
    o.timing = timing();
    SOTTO_TRY_ASSIGN(auto c, RelayConnection::create(loop, std::move(o), std::move(on_push), {}));
    c->start();
    return c;
  }

  // The relay's clock, so signed timestamps are inside its window even if ours is off.
  Result<uint64_t> relay_time(RelayConnection& c) {
    SOTTO_TRY_ASSIGN(auto r, c.call(make_request(wire::OP_PING)));
    if (r.status() != wire::OK) return status_error(r, "reaching the relay");
    return r.ping().server_time_ms();
  }

  Result<AccountInfo> register_account(const std::string& wanted) {
    SOTTO_TRY_ASSIGN(std::string handle, normalise_handle(wanted));
    {
      auto existing = locked([&] { return history.account(); });
      if (!existing.ok()) return std::move(existing).error();
      if (*existing && (*existing)->state != AccountState::kRegistering)
        return make_error(ErrorCode::kAlreadyExists,
                          "this profile already belongs to @" + (*existing)->handle +
                              "; use another profile directory for another account");
    }
    SOTTO_TRY_ASSIGN(auto c, open_anonymous({}));
    struct Stop {
      std::shared_ptr<RelayConnection> c;
      ~Stop() { c->stop(); }
    } stop{c};
    SOTTO_TRY_ASSIGN(uint64_t relay_now, relay_time(*c));

    wire::RegisterRequest reg;
    SOTTO_TRY(txn([&]() -> Status {
      if (!parts.crypto.has_identity())
        SOTTO_TRY(parts.crypto.create_identity(kUnregistered, 1, 0));
      SOTTO_TRY_ASSIGN(auto row, history.account());
      AccountRow a = row ? *row : AccountRow{};
      if (a.auth_secret.size() != 32) {
        a.auth_secret.resize(32);
        randombytes_buf(a.auth_secret.data(), a.auth_secret.size());
      }
      a.state = AccountState::kRegistering;
      a.handle = handle;
      SOTTO_TRY(history.save_account(a));
      wire::RegistrationPayload p;
      p.set_handle(handle);
      p.set_identity_key(str_of(parts.crypto.identity().public_key));
      SOTTO_TRY_ASSIGN(*p.mutable_device(), device_keys(a.auth_secret));
      p.set_timestamp_ms(relay_now);
      Bytes nonce(16);
      randombytes_buf(nonce.data(), nonce.size());
      p.set_nonce(str_of(nonce));
      Bytes payload = serialize(p);
      SOTTO_TRY_ASSIGN(auto sig, keys::sign_payload(parts.ctx, parts.crypto.identity_key_pair(),
                                                    keys::SignedPurpose::kRegistration, payload));
      reg.set_payload(str_of(payload));
      reg.set_signature(str_of(sig));
      return {};
    }));
    auto req = make_request(wire::OP_REGISTER);
    *req.mutable_registration() = std::move(reg);
    SOTTO_TRY_ASSIGN(auto r, c->call(std::move(req)));
    if (r.status() == wire::CONFLICT)
      return make_error(ErrorCode::kConflict, "the handle @" + handle +
                                                  " is taken (or this request was replayed); "
                                                  "choose another handle");
    if (r.status() != wire::OK) return status_error(r, "registering @" + handle);
    if (r.registration().account_id().size() != 16)
      return make_error(ErrorCode::kProtocolError,
                        "the relay answered registration without an "
                        "account id");
    std::string account = to_hex(view_of(r.registration().account_id()));
    uint32_t device = r.registration().device_id() ? r.registration().device_id() : 1;
    SOTTO_TRY(txn([&]() -> Status {
      SOTTO_TRY(parts.crypto.set_address(account, device));
      SOTTO_TRY_ASSIGN(auto row, history.account());
      AccountRow a = *row;
      a.account = account;
      a.device_id = device;
      a.state = AccountState::kRegistered;
      return history.save_account(a);
    }));
    SOTTO_TRY(connect());
    return AccountInfo{account, device, handle};
  }

  Result<LinkInvite> start_link() {
    {
      auto existing = locked([&] { return history.account(); });
      if (!existing.ok()) return std::move(existing).error();
      if ((*existing && (*existing)->state != AccountState::kRegistering) ||
          locked([&] { return parts.crypto.has_identity(); }))
        return make_error(ErrorCode::kAlreadyExists,
                          "this profile already has an identity; link from an empty profile "
                          "directory");
    }
    SOTTO_TRY_ASSIGN(auto keys, new_link_keys());
    std::weak_ptr<int> alive = alive_;
    SOTTO_TRY_ASSIGN(auto c, open_anonymous([this, alive](wire::Push p) {
                       if (!alive.lock() || !p.has_provision()) return;
                       {
                         std::lock_guard lock(link_mu);
                         link_push = std::move(*p.mutable_provision());
                       }
                       link_cv.notify_all();
                     }));
    auto req = make_request(wire::OP_PROVISION_OPEN);
    req.mutable_provision_open()->set_ephemeral_public_key(str_of(keys.public_key));
    auto r = c->call(std::move(req));
    if (!r.ok() || r->status() != wire::OK) {
      c->stop();
      if (!r.ok()) return std::move(r).error();
      return status_error(*r, "opening a link channel");
    }
    LinkInvite invite;
    invite.code = r->provision_open().link_code();
    invite.text = link_text(invite.code, keys.public_key);
    invite.uri = link_uri(invite.code, keys.public_key);
    invite.expires_ms = r->provision_open().expires_at_ms();
    std::shared_ptr<RelayConnection> old;
    {
      std::lock_guard lock(link_mu);
      old = std::exchange(link_conn, c);
      link_keys = std::move(keys);
      link_code = invite.code;
      link_push.reset();
    }
    if (old) old->stop();
    return invite;
  }

  Result<AccountInfo> finish_link(std::chrono::milliseconds timeout) {
    std::shared_ptr<RelayConnection> c;
    wire::ProvisionPush push;
    LinkKeys keys;
    std::string code;
    {
      std::unique_lock lock(link_mu);
      if (!link_conn) return make_error(ErrorCode::kInvalidState, "call start_link() first");
      if (!link_cv.wait_for(lock, timeout, [&] { return link_push.has_value(); }))
        return make_error(ErrorCode::kTimeout,
                          "no existing device approved the link in time; approve it on another "
                          "device of the account, or start again");
      c = link_conn;
      push = std::move(*link_push);
      link_push.reset();
      keys = LinkKeys{link_keys->public_key, SecureBytes(link_keys->secret_key)};
      code = link_code;
    }
    struct Stop {
      Impl* self;
      std::shared_ptr<RelayConnection> c;
      ~Stop() {
        c->stop();
        std::lock_guard lock(self->link_mu);
        if (self->link_conn == c) {
          self->link_conn.reset();
          self->link_keys.reset();
        }
      }
    } stop{this, c};
    SOTTO_TRY_ASSIGN(auto msg, open_provision(push.envelope(), keys, code));
    if (msg.account_id().size() != 16 || msg.account_id() != push.account_id())
      return make_error(ErrorCode::kInvalidMessage,
                        "the link approval names another account than the relay says");
    std::string account = to_hex(view_of(msg.account_id()));
    SOTTO_TRY_ASSIGN(uint64_t relay_now, relay_time(*c));
    keys::IdentityKeyPair pair{
        bytes_of(msg.identity_key()),
        SecureBytes(view_of(msg.identity_key_pair()).data(), msg.identity_key_pair().size())};
    sodium_memzero(msg.mutable_identity_key_pair()->data(), msg.identity_key_pair().size());
    // The device id is the relay's to assign; until it answers, use a placeholder.
    wire::LinkDeviceRequest link;
    SOTTO_TRY(txn([&]() -> Status {
      SOTTO_TRY(parts.crypto.import_identity(account, 0x7fffffff, pair, 0));
      AccountRow a;
      a.auth_secret.resize(32);
      randombytes_buf(a.auth_secret.data(), a.auth_secret.size());
      a.state = AccountState::kRegistering;
      a.handle = msg.handle();
      a.account = account;
      SOTTO_TRY(history.save_account(a));
      wire::LinkPayload p;
      p.set_account_id(msg.account_id());
      p.set_link_code(code);
      p.set_identity_key(str_of(pair.public_key));
      SOTTO_TRY_ASSIGN(*p.mutable_device(), device_keys(a.auth_secret));
      p.set_timestamp_ms(relay_now);
      Bytes nonce(16);
      randombytes_buf(nonce.data(), nonce.size());
      p.set_nonce(str_of(nonce));
      Bytes payload = serialize(p);
      SOTTO_TRY_ASSIGN(auto sig,
                       keys::sign_payload(parts.ctx, pair, keys::SignedPurpose::kLink, payload));
      link.set_payload(str_of(payload));
      link.set_signature(str_of(sig));
      return {};
    }));
    auto req = make_request(wire::OP_LINK_DEVICE);
    *req.mutable_link_device() = std::move(link);
    SOTTO_TRY_ASSIGN(auto r, c->call(std::move(req)));
    if (r.status() != wire::OK) return status_error(r, "linking this device");
    uint32_t device = r.link_device().device_id();
    SOTTO_TRY(txn([&]() -> Status {
      SOTTO_TRY(parts.crypto.set_address(account, device));
      SOTTO_TRY_ASSIGN(auto row, history.account());
      AccountRow a = *row;
      a.device_id = device;
      a.state = AccountState::kRegistered;
      SOTTO_TRY(history.save_account(a));
      // Ask the other devices for the contact list.
      content::Content ask;
      ask.mutable_sync()->mutable_request()->set_kind(content::SyncRequest::CONTACTS);
      OutboxItem item;
      item.message_id = new_message_id(now());
      item.kind = OutboxKind::kOwnSync;
      item.content = serialize(ask);
      SOTTO_TRY(history.enqueue(item, now()));
      return {};
    }));
    SOTTO_TRY(connect());
    return AccountInfo{account, device, msg.handle()};
  }

  Status approve_link(const std::string& invite_text) {
    SOTTO_TRY_ASSIGN(auto invite, parse_invite(invite_text));
    SOTTO_TRY_ASSIGN(auto account, registered_account());
    Bytes key = invite.public_key;
    if (key.empty()) {
      auto req = make_request(wire::OP_PROVISION_LOOKUP);
      req.mutable_provision_lookup()->set_link_code(invite.code);
      SOTTO_TRY_ASSIGN(auto r, call(std::move(req)));
      if (r.status() != wire::OK) return status_error(r, "looking up the link code");
      key = bytes_of(r.provision_lookup().ephemeral_public_key());
      if (!fingerprint_matches(invite.fingerprint, key))
        return make_error(ErrorCode::kInvalidSignature,
                          "the key the relay returned for this link code does not match the "
                          "fingerprint you typed: someone may be trying to take over your account. "
                          "Nothing was sent; start linking again on the new device");
    }
    content::ProvisionMessage msg;
    SOTTO_TRY(locked([&]() -> Status {
      const auto& id = parts.crypto.identity();
      Bytes acct;
      from_hex(account.account, acct);
      msg.set_account_id(str_of(acct));
      msg.set_handle(account.handle);
      msg.set_identity_key(str_of(id.public_key));
      msg.set_identity_key_pair(std::string(id.key_pair.span().begin(), id.key_pair.span().end()));
      msg.set_approver_device_id(id.device_id);
      msg.set_link_code(invite.code);
      msg.set_timestamp_ms(now());
      return {};
    }));
    auto sealed = seal_provision(msg, key, invite.code);
    sodium_memzero(msg.mutable_identity_key_pair()->data(), msg.identity_key_pair().size());
    if (!sealed.ok()) return std::move(sealed).error();
    auto req = make_request(wire::OP_PROVISION_APPROVE);
    req.mutable_provision_approve()->set_link_code(invite.code);
    *req.mutable_provision_approve()->mutable_envelope() = std::move(*sealed);
    SOTTO_TRY_ASSIGN(auto r, call(std::move(req)));
    if (r.status() != wire::OK) return status_error(r, "approving the new device");
    return {};
  }

  Result<std::vector<DeviceInfo>> devices() {
    SOTTO_TRY_ASSIGN(auto account, registered_account());
    SOTTO_TRY_ASSIGN(auto r, call(make_request(wire::OP_LIST_DEVICES)));
    if (r.status() != wire::OK) return status_error(r, "listing devices");
    SecureBytes pair = locked([&] { return SecureBytes(parts.crypto.identity().key_pair); });
    std::vector<DeviceInfo> out;
    for (const auto& d : r.list_devices().devices()) {
      DeviceInfo i;
      i.device_id = d.device_id();
      i.name = open_device_name(view_of(d.encrypted_name()), pair).value_or("");
      i.created_ms = d.created_at_ms();
      i.last_seen_ms = d.last_seen_ms();
      i.connected = d.connected();
      i.this_device = d.device_id() == account.device_id;
      out.push_back(std::move(i));
    }
    return out;
  }

  Status remove_device(uint32_t device_id) {
    SOTTO_TRY(registered_account());
    auto req = make_request(wire::OP_REMOVE_DEVICE);
    req.mutable_remove_device()->set_device_id(device_id);
    SOTTO_TRY_ASSIGN(auto r, call(std::move(req)));
    if (r.status() != wire::OK)
      return status_error(r, "removing device " + std::to_string(device_id));
    return {};
  }

  // ---------------------------------------------------------------------------------------
  // Contacts and sending
  // ---------------------------------------------------------------------------------------

  Result<Contact> add_contact(const std::string& wanted) {
    SOTTO_TRY_ASSIGN(std::string handle, normalise_handle(wanted));
    SOTTO_TRY(registered_account());
    auto req = make_request(wire::OP_LOOKUP_ACCOUNT);
    req.mutable_lookup_account()->set_handle(handle);
    SOTTO_TRY_ASSIGN(auto r, call(std::move(req)));
    if (r.status() == wire::NOT_FOUND)
      return make_error(ErrorCode::kNotFound,
                        "nobody has the handle @" + handle + " on this relay; check the spelling");
    if (r.status() != wire::OK) return status_error(r, "looking up @" + handle);
    if (r.lookup_account().account_id().size() != 16)
      return make_error(ErrorCode::kProtocolError, "the relay answered a lookup without an id");
    Contact c{to_hex(view_of(r.lookup_account().account_id())), r.lookup_account().handle()};
    SOTTO_TRY(txn([&]() -> Status {
      return history.upsert_contact(c.account, c.handle, view_of(r.lookup_account().identity_key()),
                                    now());
    }));
    return c;
  }

  Result<std::string> send_text(ConversationId conversation, const std::string& text) {
    if (text.empty())
      return make_error(ErrorCode::kInvalidArgument, "the message is empty; nothing was sent");
    if (text.size() > kMaxText)
      return make_error(ErrorCode::kTooLarge,
                        "the text is " + std::to_string(text.size()) +
                            " bytes; at most 16 KiB fit in a message (send longer text as a "
                            "file)");
    SOTTO_TRY_ASSIGN(auto account, registered_account());
    uint64_t t = now();
    Bytes id = new_message_id(t);
    SOTTO_TRY(txn([&]() -> Status {
      SOTTO_TRY_ASSIGN(auto conv, history.conversation(conversation));
      if (!conv)
        return make_error(ErrorCode::kNotFound, "no conversation " + std::to_string(conversation));
      if (conv->kind != ConversationKind::kDirect)
        return make_error(ErrorCode::kInvalidArgument, "group messages are not supported yet");
      content::Content c;
      auto* dm = c.mutable_data_message();
      dm->set_message_id(str_of(id));
      dm->set_timestamp_ms(t);
      dm->set_text(text);
      content::Content own;
      auto* sent = own.mutable_sync()->mutable_sent();
      Bytes peer;
      from_hex(conv->peer, peer);
      sent->set_destination_account_id(str_of(peer));
      sent->set_destination_handle(
          conv->title.size() > 1 && conv->title[0] == '@' ? conv->title.substr(1) : std::string());
      sent->set_message_id(str_of(id));
      sent->set_timestamp_ms(t);
      *sent->mutable_message() = *dm;

      NewMessage m;
      m.conversation = conversation;
      m.message_id = id;
      m.sender = account.account;
      m.sender_device = account.device_id;
      m.outgoing = true;
      m.body = text;
      m.sent_ms = t;
      m.sort_ms = t;
      m.status = MessageStatus::kPending;
      m.extra = serialize(*dm);
      m.recipients = 1;
      SOTTO_TRY_ASSIGN(auto row, history.insert_message(m));
      if (!row) return make_error(ErrorCode::kInternal, "a fresh message id collided");
      OutboxItem item;
      item.message_id = id;
      item.kind = OutboxKind::kData;
      item.target = conv->peer;
      item.content = serialize(c);
      item.own_content = serialize(own);
      item.urgent = true;
      item.message = *row;
      SOTTO_TRY(history.enqueue(item, t));
      return {};
    }));
    kick_outbox();
    return to_hex(id);
  }

  Status mark_read(ConversationId conversation, const std::string& up_to) {
    SOTTO_TRY_ASSIGN(Bytes id, parse_message_id(up_to));
    SOTTO_TRY_ASSIGN(auto account, registered_account());
    uint64_t t = now();
    bool receipts = false;
    SOTTO_TRY(txn([&]() -> Status {
      SOTTO_TRY_ASSIGN(auto m, history.find_in_conversation(conversation, id));
      if (!m)
        return make_error(ErrorCode::kNotFound, "no message " + up_to + " in conversation " +
                                                    std::to_string(conversation));
      SOTTO_TRY_ASSIGN(auto read, history.mark_read(conversation, m->row));
      if (read.empty()) return {};
      content::Content own;
      auto* read_state = own.mutable_sync()->mutable_read();
      for (const auto& r : read) {
        if (r.message.kind != MessageKind::kText) continue;
        if (account.read_receipts) {
          SOTTO_TRY(history.add_pending_receipt(
              PendingReceipt{r.message.sender, content::Receipt::READ, r.message_id, t}));
          receipts = true;
        }
        auto* rec = read_state->add_records();
        Bytes sender;
        from_hex(r.message.sender, sender);
        rec->set_sender_account_id(str_of(sender));
        rec->set_message_id(str_of(r.message_id));
        rec->set_read_at_ms(t);
        if (read_state->records_size() == 100) {
          SOTTO_TRY(enqueue_own_sync(own, t));
          read_state->clear_records();
        }
      }
      if (read_state->records_size() > 0) SOTTO_TRY(enqueue_own_sync(own, t));
      return {};
    }));
    if (receipts) owe_receipts();
    kick_outbox();
    return {};
  }

  // Caller holds the transaction.
  Status enqueue_own_sync(const content::Content& c, uint64_t t) {
    OutboxItem item;
    item.message_id = new_message_id(t);
    item.kind = OutboxKind::kOwnSync;
    item.content = serialize(c);
    SOTTO_TRY(history.enqueue(item, t));
    return {};
  }

  // ---------------------------------------------------------------------------------------
  // Worker
  // ---------------------------------------------------------------------------------------

  void worker_main() {
    std::unique_lock lock(mu);
    while (!stopping) {
      auto due = std::chrono::steady_clock::now() + 1s;
      uint64_t t = now();
      auto at = [&](uint64_t ms) {
        return std::chrono::steady_clock::now() + std::chrono::milliseconds(ms > t ? ms - t : 0);
      };
      if (receipts_due_ms) due = std::min(due, at(receipts_due_ms));
      if (outbox_due_ms) due = std::min(due, at(outbox_due_ms));
      cv.wait_until(lock, due,
                    [&] { return stopping || !tasks.empty() || !inbound.empty() || outbox_kick; });
      if (stopping) break;
      auto work = std::move(tasks);
      tasks.clear();
      std::vector<wire::Envelope> envs;
      while (!inbound.empty() && envs.size() < kInboundBatch) {
        envs.push_back(std::move(inbound.front()));
        inbound.pop_front();
      }
      t = now();
      bool flush = receipts_due_ms && receipts_due_ms <= t;
      if (flush) receipts_due_ms = 0;
      bool send = std::exchange(outbox_kick, false) || (outbox_due_ms && outbox_due_ms <= t);
      lock.unlock();

      for (auto& task : work) task();
      if (!envs.empty()) process_inbound(envs);
      if (flush) flush_receipts();
      if (send) run_outbox();

      lock.lock();
    }
  }

  // ---------------------------------------------------------------------------------------
  // Inbound
  // ---------------------------------------------------------------------------------------

  void process_inbound(std::vector<wire::Envelope>& envs) {
    std::vector<uint64_t> acks;
    Effects effects;
    // Fast path: the whole batch in one transaction (one disk sync). If any envelope fails,
    // nothing of the batch is kept and each is handled on its own below.
    Status batch = txn([&]() -> Status {
      for (auto& env : envs) SOTTO_TRY(decrypt_and_apply(env, effects));
      return {};
    });
    if (batch.ok()) {
      for (const auto& env : envs)
        if (env.sequence()) acks.push_back(env.sequence());
    } else {
      effects = {};
      for (auto& env : envs) {
        Effects one;
        Status s = txn([&] { return decrypt_and_apply(env, one); });
        if (!s.ok() && is_crypto_failure(s.code())) {
          one = {};
          s = handle_failure(env, s.error(), one);
        }
        if (!s.ok()) {
          // Storage trouble (a full disk, say): leave it unacknowledged so the relay keeps it
          // and pushes it again on the next connection.
          set_state(ConnectionState::kSyncing,
                    "a received message could not be stored: " + s.error().message);
          continue;
        }
        if (env.sequence()) acks.push_back(env.sequence());
        for (auto& e : one.events) effects.events.push_back(std::move(e));
        effects.kick_outbox |= one.kick_outbox;
        effects.receipts_owed |= one.receipts_owed;
      }
    }
    send_acks(acks);
    emit(std::move(effects.events));
    if (effects.receipts_owed) owe_receipts();
    if (effects.kick_outbox) kick_outbox();
  }

  void send_acks(const std::vector<uint64_t>& acks) {
    auto c = connection();
    if (!c) return;
    for (size_t i = 0; i < acks.size(); i += kMaxAckSequences) {
      auto req = make_request(wire::OP_ACK);
      for (size_t j = i; j < std::min(acks.size(), i + kMaxAckSequences); ++j)
        req.mutable_ack()->add_sequences(acks[j]);
      // Fire and forget: an ack that is lost only means the envelope comes again, and the
      // duplicate is recognised.
      c->request(std::move(req), [](Result<wire::Response>) {});
    }
  }

  // Inside a transaction, mutex held. Errors: crypto failures of the envelope (the caller
  // handles them outside the transaction) or storage errors.
  Status decrypt_and_apply(const wire::Envelope& env, Effects& fx) {
    if (env.sender_account_id().size() != 16 || env.sender_device_id() == 0)
      return make_error(ErrorCode::kInvalidMessage, "an envelope without a valid sender");
    Address from{to_hex(view_of(env.sender_account_id())), env.sender_device_id()};
    if (env.type() == wire::Envelope::SENDER_KEY) return {};  // groups: not in this version
    if (env.type() != wire::Envelope::MESSAGE && env.type() != wire::Envelope::PREKEY_MESSAGE)
      return {};  // an unknown kind from a newer sender: acknowledge and drop
    Ciphertext ct{env.type() == wire::Envelope::PREKEY_MESSAGE ? CiphertextType::kPreKey
                                                               : CiphertextType::kSignal,
                  bytes_of(env.ciphertext())};
    std::optional<Error> apply_error;
    auto plain = parts.crypto.decrypt(from, ct, [&](ByteView plaintext) -> Status {
      content::Content c;
      if (!c.ParseFromArray(plaintext.data(), static_cast<int>(plaintext.size())))
        return {};  // authentic but unreadable: nothing to do
      Status s = apply_content(from, env, c, fx);
      if (!s.ok()) apply_error = s.error();
      return s;
    });
    if (!plain.ok()) {
      // A storage failure inside the hook must not pass for a crypto failure.
      if (apply_error) return std::move(*apply_error);
      return std::move(plain).error();
    }
    return {};
  }

  Status apply_content(const Address& from, const wire::Envelope& env, const content::Content& c,
                       Effects& fx) {
    const std::string& me = parts.crypto.identity().account;
    bool from_self = from.account == me;
    switch (c.body_case()) {
      case content::Content::kDataMessage:
        if (from_self) return {};  // own devices send transcripts, not data messages
        return apply_data(from, env, c.data_message(), fx);
      case content::Content::kReceipt:
        return apply_receipt(from, c.receipt(), fx);
      case content::Content::kSync:
        if (!from_self) return {};  // only an account's own devices may sync it
        return apply_sync(from, env, c.sync(), fx);
      case content::Content::kSessionReset:
        return apply_session_reset(from, c.session_reset(), fx);
      default:
        return {};  // typing, groups, and bodies from newer versions
    }
  }

  Status apply_data(const Address& from, const wire::Envelope& env, const content::DataMessage& dm,
                    Effects& fx) {
    if (dm.message_id().size() != 16 || dm.has_group()) return {};
    if (dm.text().empty() || dm.text().size() > kMaxText) return {};
    SOTTO_TRY(history.upsert_contact(from.account, "", {}, now()));
    SOTTO_TRY_ASSIGN(auto conv, history.direct_conversation(from.account, now()));
    NewMessage m;
    m.conversation = conv;
    m.message_id = bytes_of(dm.message_id());
    m.sender = from.account;
    m.sender_device = from.device_id;
    m.outgoing = false;
    m.body = dm.text();
    m.sent_ms = dm.timestamp_ms();
    m.sort_ms = env.server_timestamp_ms() ? env.server_timestamp_ms() : now();
    m.status = MessageStatus::kUnread;
    SOTTO_TRY_ASSIGN(auto row, history.insert_message(m));
    // A duplicate (a resend after a session reset, say) still earns its receipt.
    SOTTO_TRY(history.add_pending_receipt(
        PendingReceipt{from.account, content::Receipt::DELIVERED, m.message_id, now()}));
    fx.receipts_owed = true;
    if (!row) return {};
    SOTTO_TRY_ASSIGN(auto stored, history.message(*row));
    if (stored) {
      Message msg = stored->message;
      fx.events.push_back([msg](ClientListener& l) { l.on_message(msg); });
    }
    return {};
  }

  Status apply_receipt(const Address& from, const content::Receipt& r, Effects& fx) {
    MessageStatus status;
    if (r.type() == content::Receipt::DELIVERED)
      status = MessageStatus::kDelivered;
    else if (r.type() == content::Receipt::READ)
      status = MessageStatus::kRead;
    else
      return {};
    const std::string& me = parts.crypto.identity().account;
    uint64_t at = r.timestamp_ms() ? r.timestamp_ms() : now();
    for (const auto& id : r.message_ids()) {
      if (id.size() != 16) continue;
      SOTTO_TRY_ASSIGN(auto m, history.find_message(me, view_of(id)));
      if (!m || !m->message.outgoing) continue;
      if (from.account == me) continue;  // own devices do not deliver to themselves
      SOTTO_TRY_ASSIGN(bool changed, history.record_receipt(m->row, from.account, status, at));
      if (changed) {
        Receipt rec{from.account, status, at};
        ConversationId conv = m->message.conversation;
        std::string mid = m->message.id;
        fx.events.push_back([conv, mid, rec](ClientListener& l) { l.on_receipt(conv, mid, rec); });
      }
      SOTTO_TRY_ASSIGN(bool raised, history.raise_status(m->row, status));
      if (raised) {
        ConversationId conv = m->message.conversation;
        std::string mid = m->message.id;
        fx.events.push_back(
            [conv, mid, status](ClientListener& l) { l.on_message_status(conv, mid, status); });
      }
    }
    return {};
  }

  Status apply_sync(const Address& from, const wire::Envelope& env, const content::Sync& s,
                    Effects& fx) {
    switch (s.kind_case()) {
      case content::Sync::kSent: {
        const auto& t = s.sent();
        const auto& dm = t.message();
        if (t.destination_account_id().size() != 16 || dm.message_id().size() != 16) return {};
        if (dm.text().empty()) return {};
        std::string dest = to_hex(view_of(t.destination_account_id()));
        SOTTO_TRY(history.upsert_contact(dest, t.destination_handle(), {}, now()));
        SOTTO_TRY_ASSIGN(auto conv, history.direct_conversation(dest, now()));
        NewMessage m;
        m.conversation = conv;
        m.message_id = bytes_of(dm.message_id());
        m.sender = from.account;
        m.sender_device = from.device_id;
        m.outgoing = true;
        m.body = dm.text();
        m.sent_ms = dm.timestamp_ms();
        m.sort_ms = env.server_timestamp_ms() ? env.server_timestamp_ms() : now();
        m.status = MessageStatus::kSent;
        m.extra = serialize(dm);
        m.recipients = 1;
        SOTTO_TRY_ASSIGN(auto row, history.insert_message(m));
        if (!row) return {};
        SOTTO_TRY_ASSIGN(auto stored, history.message(*row));
        if (stored) {
          Message msg = stored->message;
          fx.events.push_back([msg](ClientListener& l) { l.on_message(msg); });
        }
        return {};
      }
      case content::Sync::kRead: {
        for (const auto& rec : s.read().records()) {
          if (rec.sender_account_id().size() != 16 || rec.message_id().size() != 16) continue;
          SOTTO_TRY_ASSIGN(auto m, history.find_message(to_hex(view_of(rec.sender_account_id())),
                                                        view_of(rec.message_id())));
          if (!m) continue;
          SOTTO_TRY_ASSIGN(bool changed, history.mark_one_read(m->row));
          if (changed) {
            ConversationId conv = m->message.conversation;
            std::string mid = m->message.id;
            fx.events.push_back([conv, mid](ClientListener& l) {
              l.on_message_status(conv, mid, MessageStatus::kSeen);
            });
          }
        }
        return {};
      }
      case content::Sync::kRequest: {
        if (s.request().kind() != content::SyncRequest::CONTACTS) return {};
        SOTTO_TRY_ASSIGN(auto list, history.contacts());
        content::Content reply;
        auto* contacts = reply.mutable_sync()->mutable_contacts();
        for (const auto& k : list) {
          auto* c = contacts->add_contacts();
          Bytes id;
          from_hex(k.account, id);
          c->set_account_id(str_of(id));
          c->set_handle(k.handle);
          SOTTO_TRY_ASSIGN(auto key, parts.crypto.peer_identity(k.account));
          if (key) c->set_identity_key(str_of(*key));
        }
        contacts->set_complete(true);
        OutboxItem item;
        item.message_id = new_message_id(now());
        item.kind = OutboxKind::kSyncReply;
        item.target = from.account;
        item.target_device = from.device_id;
        item.content = serialize(reply);
        SOTTO_TRY(history.enqueue(item, now()));
        fx.kick_outbox = true;
        return {};
      }
      case content::Sync::kContacts: {
        for (const auto& c : s.contacts().contacts()) {
          if (c.account_id().size() != 16) continue;
          SOTTO_TRY(history.upsert_contact(to_hex(view_of(c.account_id())), c.handle(),
                                           view_of(c.identity_key()), now()));
        }
        return {};
      }
      default:
        return {};
    }
  }

  Status apply_session_reset(const Address& from, const content::SessionReset& r, Effects& fx) {
    // libsignal already replaced the session with the one this PreKey message started; resend
    // what the peer could not read, over it.
    const std::string& me = parts.crypto.identity().account;
    uint64_t t = now();
    int count = 0;
    for (const auto& id : r.failed_message_ids()) {
      if (id.size() != 16 || ++count > 100) continue;
      SOTTO_TRY_ASSIGN(auto m, history.find_message(me, view_of(id)));
      if (!m || !m->message.outgoing || m->extra.empty()) continue;
      if (m->message.sent_ms + kResendWindow < t) continue;
      content::DataMessage dm;
      if (!dm.ParseFromArray(m->extra.data(), static_cast<int>(m->extra.size()))) continue;
      content::Content c;
      *c.mutable_data_message() = std::move(dm);
      OutboxItem item;
      item.message_id = new_message_id(t);
      item.kind = OutboxKind::kResend;
      item.target = from.account;
      item.target_device = from.device_id;
      item.content = serialize(c);
      item.message = m->row;
      SOTTO_TRY(history.enqueue(item, t));
      fx.kick_outbox = true;
    }
    return {};
  }

  // Outside any transaction: what to do with an envelope that did not decrypt.
  Status handle_failure(const wire::Envelope& env, const Error& err, Effects& fx) {
    if (env.sender_account_id().size() != 16 || env.sender_device_id() == 0) return {};
    Address from{to_hex(view_of(env.sender_account_id())), env.sender_device_id()};
    if (err.code == ErrorCode::kDuplicateMessage) return {};  // already stored once
    if (err.code == ErrorCode::kUntrustedIdentity) return hold_untrusted(from, env, fx);
    std::lock_guard lock(parts.mu);
    uint64_t t = now();
    return parts.crypto.transaction([&]() -> Status {
      SOTTO_TRY_ASSIGN(auto last, history.last_reset(from.account, from.device_id));
      bool recent = last && *last + kResetInterval > t;
      if (!recent) {
        // Throw our side away; the reset (a PreKey message) starts a new session.
        SOTTO_TRY(parts.crypto.delete_session(from));
        SOTTO_TRY(history.record_reset(from.account, from.device_id, t));
        SOTTO_TRY_ASSIGN(auto conv, history.direct_conversation(from.account, t));
        SOTTO_TRY(add_notice(conv,
                             "A message could not be decrypted. The secure session was "
                             "reset and the sender was asked to send it again.",
                             env.server_timestamp_ms(), fx));
      }
      // Within the hour a reset was already made: only ask for this message again.
      content::Content c;
      c.mutable_session_reset()->add_failed_message_ids(env.message_id());
      c.mutable_session_reset()->set_timestamp_ms(t);
      OutboxItem item;
      item.message_id = new_message_id(t);
      item.kind = OutboxKind::kSessionReset;
      item.target = from.account;
      item.target_device = from.device_id;
      item.content = serialize(c);
      SOTTO_TRY(history.enqueue(item, t));
      fx.kick_outbox = true;
      return {};
    });
  }

  Status add_notice(ConversationId conv, const std::string& text, uint64_t sort_ms, Effects& fx) {
    NewMessage n;
    n.conversation = conv;
    n.message_id = new_message_id(now());
    n.sender = parts.crypto.identity().account;
    n.sender_device = parts.crypto.identity().device_id;
    n.kind = MessageKind::kNotice;
    n.body = text;
    n.sent_ms = now();
    n.sort_ms = sort_ms ? sort_ms : now();
    n.status = MessageStatus::kSeen;
    SOTTO_TRY_ASSIGN(auto row, history.insert_message(n));
    if (!row) return {};
    SOTTO_TRY_ASSIGN(auto stored, history.message(*row));
    if (stored) {
      Message msg = stored->message;
      fx.events.push_back([msg](ClientListener& l) { l.on_message(msg); });
    }
    return {};
  }

  Status hold_untrusted(const Address& from, const wire::Envelope& env, Effects& fx) {
    std::lock_guard lock(parts.mu);
    Bytes new_key;
    if (env.type() == wire::Envelope::PREKEY_MESSAGE) {
      auto k = parts.crypto.prekey_message_identity(view_of(env.ciphertext()));
      if (k.ok()) new_key = std::move(*k);
    }
    bool first = false;
    SOTTO_TRY(parts.crypto.transaction([&]() -> Status {
      SOTTO_TRY_ASSIGN(auto held, history.held_envelopes(from.account));
      first = held.empty();
      SOTTO_TRY(history.hold_envelope(from.account, serialize(env), now()));
      if (first) {
        SOTTO_TRY_ASSIGN(auto conv, history.direct_conversation(from.account, now()));
        SOTTO_TRY(add_notice(conv,
                             "The safety number with this contact changed. Messages from them "
                             "are kept unread until you accept the new safety number.",
                             env.server_timestamp_ms(), fx));
      }
      return {};
    }));
    if (first && !new_key.empty()) identity_changed_event(from.account, new_key, fx);
    return {};
  }

  // Mutex held.
  void identity_changed_event(const std::string& account, const Bytes& new_key, Effects& fx) {
    const auto& id = parts.crypto.identity();
    auto sn = keys::safety_number(parts.ctx, id.account, id.public_key, account, new_key);
    auto contact = history.contact(account);
    IdentityChange change;
    change.account = account;
    if (contact.ok() && *contact) change.handle = (*contact)->handle;
    if (sn.ok()) change.safety_number = SafetyNumber{sn->digits, sn->scannable};
    fx.events.push_back([change](ClientListener& l) { l.on_identity_changed(change); });
  }

  // ---------------------------------------------------------------------------------------
  // Receipts owed
  // ---------------------------------------------------------------------------------------

  void flush_receipts() {
    for (int round = 0; round < 50; ++round) {
      bool more = false;
      Status s = txn([&]() -> Status {
        SOTTO_TRY_ASSIGN(auto owed, history.pending_receipts(1000));
        more = owed.size() == 1000;
        std::map<std::pair<std::string, int>, std::vector<PendingReceipt>> groups;
        for (auto& r : owed) groups[{r.author, r.type}].push_back(std::move(r));
        for (auto& [key, list] : groups) {
          for (size_t i = 0; i < list.size(); i += 100) {
            content::Content c;
            auto* rec = c.mutable_receipt();
            rec->set_type(static_cast<content::Receipt::Type>(key.second));
            rec->set_timestamp_ms(now());
            for (size_t j = i; j < std::min(list.size(), i + 100); ++j) {
              rec->add_message_ids(str_of(list[j].message_id));
              SOTTO_TRY(history.remove_pending_receipt(list[j]));
            }
            OutboxItem item;
            item.message_id = new_message_id(now());
            item.kind = OutboxKind::kReceipt;
            item.target = key.first;
            item.content = serialize(c);
            SOTTO_TRY(history.enqueue(item, now()));
          }
        }
        return {};
      });
      if (!s.ok() || !more) break;
    }
    kick_outbox();
  }

  // ---------------------------------------------------------------------------------------
  // Outbox
  // ---------------------------------------------------------------------------------------

  enum class Outcome { kDone, kRetry, kStop };

  void run_outbox() {
    {
      std::lock_guard lock(mu);
      outbox_due_ms = 0;
    }
    {
      auto c = connection();
      if (!c || !c->connected()) return;  // resumes on the next connect
    }
    // Sends cover this account's other devices, so know them first.
    if (!own_devices_known && !refresh_own_devices().ok()) {
      std::lock_guard lock(mu);
      outbox_due_ms = now() + 1000;
      return;
    }
    for (int sent = 0; sent < 10000; ++sent) {
      auto c = connection();
      if (!c || !c->connected()) return;
      auto next = locked([&] { return history.next_outbox(now()); });
      if (!next.ok() || !*next) break;
      Outcome o = send_item(**next);
      if (o == Outcome::kStop) return;
    }
    auto due = locked([&] { return history.next_outbox_due(); });
    if (due.ok() && *due) {
      std::lock_guard lock(mu);
      outbox_due_ms = std::max<uint64_t>(**due, now() + 1);
    }
  }

  struct Target {
    Address address;
    const Bytes* content;
  };

  Outcome retry_later(const OutboxItem& item, const Error& e, uint64_t delay_ms) {
    // Exponential up to 5 minutes, so a persistent problem does not spin.
    uint64_t backoff =
        delay_ms ? delay_ms : std::min<uint64_t>(300'000, 1000ull << std::min(item.attempts, 8));
    (void)txn([&] { return history.outbox_retry(item.id, now() + backoff, e.message); });
    std::lock_guard lock(mu);
    uint64_t due = now() + backoff;
    if (outbox_due_ms == 0 || due < outbox_due_ms) outbox_due_ms = due;
    return Outcome::kRetry;
  }

  Outcome fail_item(const OutboxItem& item, const Error& e) {
    Effects fx;
    (void)txn([&]() -> Status {
      SOTTO_TRY(history.outbox_done(item.id));
      if (item.message && item.kind == OutboxKind::kData) {
        SOTTO_TRY_ASSIGN(auto m, history.message(*item.message));
        if (m) {
          SOTTO_TRY_ASSIGN(auto u, parts.db.query("UPDATE messages SET status = 4 WHERE id = ?"));
          u.bind(1, *item.message);
          SOTTO_TRY(u.run());
          ConversationId conv = m->message.conversation;
          std::string mid = m->message.id;
          fx.events.push_back([conv, mid](ClientListener& l) {
            l.on_message_status(conv, mid, MessageStatus::kFailed);
          });
          SOTTO_TRY(add_notice(conv, "A message could not be sent: " + e.message, 0, fx));
        }
      }
      return {};
    });
    emit(std::move(fx.events));
    return Outcome::kDone;
  }

  // Starts sessions from the relay's bundles for `account` (all devices when `devices` is
  // empty). kUntrustedIdentity when the account's identity key changed.
  Status fetch_sessions(const std::string& account, const std::vector<uint32_t>& devices) {
    Bytes id;
    from_hex(account, id);
    auto req = make_request(wire::OP_GET_BUNDLES);
    req.mutable_get_bundles()->set_account_id(str_of(id));
    for (uint32_t d : devices) req.mutable_get_bundles()->add_device_ids(d);
    SOTTO_TRY_ASSIGN(auto r, call(std::move(req)));
    if (r.status() != wire::OK) return status_error(r, "fetching prekey bundles");
    Effects fx;
    Status s = locked([&]() -> Status {
      for (const auto& b : r.get_bundles().bundles()) {
        Address a{account, b.device_id()};
        Status st = parts.crypto.start_session(a, b);
        if (st.code() == ErrorCode::kUntrustedIdentity) {
          SOTTO_TRY(parts.crypto.transaction([&] { return history.hold_outbox(account, true); }));
          identity_changed_event(account, bytes_of(b.identity_key()), fx);
          return st;
        }
        SOTTO_TRY(std::move(st));
      }
      return {};
    });
    emit(std::move(fx.events));
    return s;
  }

  Outcome send_item(const OutboxItem& item) {
    std::string me = self_account();
    uint32_t my_device = self_device();
    bool targeted = item.target_device.has_value();
    for (int attempt = 0; attempt < 6; ++attempt) {
      // Who gets what.
      std::vector<Target> targets;
      if (targeted) {
        Address a{*item.target, *item.target_device};
        auto has = locked([&] { return parts.crypto.has_session(a); });
        if (!has.ok()) return retry_later(item, has.error(), 0);
        if (!*has) {
          Status s = fetch_sessions(a.account, {a.device_id});
          if (!s.ok()) return on_send_error(item, s.error());
        }
        targets.push_back(Target{a, &item.content});
      } else {
        if (item.target) {
          auto devs = locked([&] { return parts.crypto.session_devices(*item.target); });
          if (!devs.ok()) return retry_later(item, devs.error(), 0);
          if (devs->empty()) {
            Status s = fetch_sessions(*item.target, {});
            if (!s.ok()) return on_send_error(item, s.error());
            devs = locked([&] { return parts.crypto.session_devices(*item.target); });
            if (!devs.ok()) return retry_later(item, devs.error(), 0);
          }
          for (uint32_t d : *devs)
            if (!(*item.target == me && d == my_device))
              targets.push_back(Target{Address{*item.target, d}, &item.content});
        }
        const Bytes* own =
            item.target ? (item.own_content ? &*item.own_content : nullptr) : &item.content;
        if (own) {
          std::vector<uint32_t> missing;
          auto devs = locked([&] { return parts.crypto.session_devices(me); });
          if (!devs.ok()) return retry_later(item, devs.error(), 0);
          for (uint32_t d : own_devices)
            if (!std::count(devs->begin(), devs->end(), d)) missing.push_back(d);
          if (!missing.empty()) {
            Status s = fetch_sessions(me, missing);
            if (!s.ok()) return on_send_error(item, s.error());
            devs = locked([&] { return parts.crypto.session_devices(me); });
            if (!devs.ok()) return retry_later(item, devs.error(), 0);
          }
          for (uint32_t d : *devs)
            if (d != my_device) targets.push_back(Target{Address{me, d}, own});
        }
      }
      if (targets.empty()) {
        // Nobody to send to (own-device sync with no other devices): nothing to do.
        (void)txn([&] { return history.outbox_done(item.id); });
        return Outcome::kDone;
      }
      if (targets.size() > kMaxSendMessages)
        return fail_item(item, make_error(ErrorCode::kTooLarge, "too many recipient devices"));

      // Encrypt for every device in one transaction; the ratchet steps commit before the send
      // (a resend re-encrypts; the relay keeps the first copy it committed).
      auto req = make_request(wire::OP_SEND);
      auto* send = req.mutable_send();
      std::optional<Address> broken;
      Status enc = txn([&]() -> Status {
        send->Clear();
        send->set_message_id(str_of(item.message_id));
        send->set_urgent(item.urgent);
        send->set_targeted(targeted);
        for (const auto& t : targets) {
          auto ct = parts.crypto.encrypt(t.address, *t.content);
          if (!ct.ok()) {
            broken = t.address;
            return std::move(ct).error();
          }
          SOTTO_TRY_ASSIGN(uint32_t reg, parts.crypto.remote_registration_id(t.address));
          auto* m = send->add_messages();
          Bytes acct;
          from_hex(t.address.account, acct);
          m->set_account_id(str_of(acct));
          m->set_device_id(t.address.device_id);
          m->set_registration_id(reg);
          m->set_type(ct->type == CiphertextType::kPreKey ? wire::Envelope::PREKEY_MESSAGE
                                                          : wire::Envelope::MESSAGE);
          m->set_ciphertext(str_of(ct->bytes));
        }
        return {};
      });
      if (!enc.ok()) {
        if (broken && is_crypto_failure(enc.code())) {
          // Our session record with that device is unusable: drop it, start a fresh one.
          (void)locked([&] { return parts.crypto.delete_session(*broken); });
          continue;
        }
        return retry_later(item, enc.error(), 0);
      }

      auto c = connection();
      if (!c) return Outcome::kStop;
      auto r = c->call(std::move(req));
      if (!r.ok()) {
        if (r.code() == ErrorCode::kTimeout) return retry_later(item, r.error(), 2000);
        return Outcome::kStop;  // disconnected: the next connect resumes the outbox
      }
      switch (r->status()) {
        case wire::OK:
          return item_sent(item, r->send().server_timestamp_ms());
        case wire::STALE_DEVICES: {
          Status s = apply_mismatch(r->stale_devices(), me);
          if (!s.ok()) return on_send_error(item, s.error());
          continue;
        }
        default:
          return on_send_error(item, status_error(*r, "sending"));
      }
    }
    return retry_later(item,
                       make_error(ErrorCode::kUnavailable,
                                  "the recipients' devices kept changing during the send"),
                       0);
  }

  Outcome on_send_error(const OutboxItem& item, const Error& e) {
    switch (e.code) {
      case ErrorCode::kUntrustedIdentity:
        return Outcome::kDone;  // held until accept_identity()
      case ErrorCode::kUnavailable:
        if (!connection() || !connection()->connected()) return Outcome::kStop;
        return retry_later(item, e, 0);
      case ErrorCode::kTimeout:
        return retry_later(item, e, 2000);
      case ErrorCode::kRateLimited:
        return retry_later(item, e, 0);
      case ErrorCode::kNotFound:
      case ErrorCode::kTooLarge:
      case ErrorCode::kRelayRejected:
      case ErrorCode::kForbidden:
      case ErrorCode::kMalformedBundle:
      case ErrorCode::kInvalidKey:
      case ErrorCode::kInvalidSignature:
        if (item.attempts >= 3 || e.code == ErrorCode::kNotFound) return fail_item(item, e);
        return retry_later(item, e, 0);
      default:
        return retry_later(item, e, 0);
    }
  }

  Status apply_mismatch(const wire::DeviceMismatch& mismatch, const std::string& me) {
    for (const auto& a : mismatch.accounts()) {
      if (a.account_id().size() != 16) continue;
      std::string account = to_hex(view_of(a.account_id()));
      SOTTO_TRY(locked([&]() -> Status {
        for (uint32_t d : a.extra_devices())
          SOTTO_TRY(parts.crypto.delete_session(Address{account, d}));
        for (uint32_t d : a.stale_devices())
          SOTTO_TRY(parts.crypto.delete_session(Address{account, d}));
        return {};
      }));
      if (account == me) {
        for (uint32_t d : a.extra_devices()) own_devices.erase(d);
        for (uint32_t d : a.missing_devices()) own_devices.insert(d);
        for (uint32_t d : a.stale_devices()) own_devices.insert(d);
      }
      std::vector<uint32_t> fetch(a.missing_devices().begin(), a.missing_devices().end());
      fetch.insert(fetch.end(), a.stale_devices().begin(), a.stale_devices().end());
      if (!fetch.empty()) SOTTO_TRY(fetch_sessions(account, fetch));
    }
    return {};
  }

  Outcome item_sent(const OutboxItem& item, uint64_t server_ms) {
    Effects fx;
    Status s = txn([&]() -> Status {
      SOTTO_TRY(history.outbox_done(item.id));
      if (item.message && item.kind == OutboxKind::kData) {
        SOTTO_TRY_ASSIGN(bool raised, history.raise_status(*item.message, MessageStatus::kSent));
        if (server_ms) SOTTO_TRY(history.set_sort_ms(*item.message, server_ms));
        if (raised) {
          SOTTO_TRY_ASSIGN(auto m, history.message(*item.message));
          if (m) {
            ConversationId conv = m->message.conversation;
            std::string mid = m->message.id;
            fx.events.push_back([conv, mid](ClientListener& l) {
              l.on_message_status(conv, mid, MessageStatus::kSent);
            });
          }
        }
      }
      return {};
    });
    if (!s.ok()) return retry_later(item, s.error(), 0);
    emit(std::move(fx.events));
    return Outcome::kDone;
  }

  // ---------------------------------------------------------------------------------------
  // Identity
  // ---------------------------------------------------------------------------------------

  Status accept_identity(const std::string& account) {
    SOTTO_TRY(parse_account(account));
    SOTTO_TRY(txn([&]() -> Status {
      SOTTO_TRY(parts.crypto.forget_identity(account));
      return history.hold_outbox(account, false);
    }));
    post_task([this, account] {
      auto held = locked([&] { return history.held_envelopes(account); });
      if (!held.ok()) return;
      Effects fx;
      std::vector<uint64_t> acks;
      for (const auto& h : *held) {
        wire::Envelope env;
        if (!env.ParseFromArray(h.envelope.data(), static_cast<int>(h.envelope.size()))) continue;
        Effects one;
        Status s = txn([&]() -> Status {
          SOTTO_TRY(decrypt_and_apply(env, one));
          return history.remove_held(h.id);
        });
        if (!s.ok() && is_crypto_failure(s.code())) {
          one = {};
          s = handle_failure(env, s.error(), one);
          if (s.ok()) (void)txn([&] { return history.remove_held(h.id); });
        }
        for (auto& e : one.events) fx.events.push_back(std::move(e));
        fx.receipts_owed |= one.receipts_owed;
      }
      emit(std::move(fx.events));
      if (fx.receipts_owed) owe_receipts();
      kick_outbox();
    });
    return {};
  }

  // Declared last: callbacks from the loop check it before touching anything.
  std::shared_ptr<int> alive_ = std::make_shared<int>(0);
};

// -------------------------------------------------------------------------------------------
// Client
// -------------------------------------------------------------------------------------------

Client::Client(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Client::~Client() { impl_->alive_.reset(); }

Result<std::unique_ptr<Client>> Client::create(std::unique_ptr<Profile> profile,
                                               ClientOptions options) {
  if (!profile) return make_error(ErrorCode::kInvalidArgument, "no profile given");
  if (sodium_init() < 0)
    return make_error(ErrorCode::kCryptoFailure, "libsodium could not be initialised");
  if (!options.relay_url.empty()) SOTTO_TRY(net::parse_url(options.relay_url));
  auto impl = std::make_unique<Impl>(std::move(profile), std::move(options));
  return std::unique_ptr<Client>(new Client(std::move(impl)));
}

void Client::set_listener(std::shared_ptr<ClientListener> listener) {
  std::lock_guard lock(impl_->listener_mu);
  impl_->listener = std::move(listener);
}

Result<AccountInfo> Client::register_account(const std::string& handle) {
  return impl_->register_account(handle);
}
Result<LinkInvite> Client::start_link() { return impl_->start_link(); }
Result<AccountInfo> Client::finish_link(std::chrono::milliseconds timeout) {
  return impl_->finish_link(timeout);
}
Status Client::approve_link(const std::string& invite) { return impl_->approve_link(invite); }

Result<AccountInfo> Client::account() const {
  SOTTO_TRY_ASSIGN(auto a, impl_->registered_account());
  return AccountInfo{a.account, a.device_id, a.handle};
}

Result<std::vector<DeviceInfo>> Client::devices() { return impl_->devices(); }
Status Client::remove_device(uint32_t device_id) { return impl_->remove_device(device_id); }

Status Client::connect() { return impl_->connect(); }
void Client::disconnect() { impl_->disconnect(); }

ConnectionState Client::connection_state() const {
  std::lock_guard lock(impl_->state_mu);
  return impl_->state;
}

bool Client::wait_online(std::chrono::milliseconds timeout) const {
  std::unique_lock lock(impl_->state_mu);
  return impl_->state_cv.wait_for(lock, timeout,
                                  [&] { return impl_->state == ConnectionState::kOnline; });
}

Result<Contact> Client::add_contact(const std::string& handle) {
  return impl_->add_contact(handle);
}

Result<std::vector<Contact>> Client::contacts() const {
  return impl_->locked([&] { return impl_->history.contacts(); });
}

Result<ConversationId> Client::direct_conversation(const std::string& account) {
  SOTTO_TRY(parse_account(account));
  SOTTO_TRY_ASSIGN(auto me, impl_->registered_account());
  if (account == me.account)
    return make_error(ErrorCode::kInvalidArgument,
                      "that is this account; a conversation needs another account");
  ConversationId id = 0;
  SOTTO_TRY(impl_->txn([&]() -> Status {
    SOTTO_TRY_ASSIGN(id, impl_->history.direct_conversation(account, impl_->now()));
    return {};
  }));
  return id;
}

Result<std::vector<Conversation>> Client::conversations() const {
  return impl_->locked([&] { return impl_->history.conversations(); });
}

Result<Conversation> Client::conversation(ConversationId id) const {
  SOTTO_TRY_ASSIGN(auto c, impl_->locked([&] { return impl_->history.conversation(id); }));
  if (!c) return make_error(ErrorCode::kNotFound, "no conversation " + std::to_string(id));
  return std::move(*c);
}

Result<std::string> Client::send_text(ConversationId conversation, const std::string& text) {
  return impl_->send_text(conversation, text);
}

Result<MessagePage> Client::messages(ConversationId conversation, const std::string& cursor,
                                     uint32_t limit) const {
  return impl_->locked([&] { return impl_->history.page(conversation, cursor, limit); });
}

Result<Message> Client::message(ConversationId conversation, const std::string& id) const {
  SOTTO_TRY_ASSIGN(Bytes mid, parse_message_id(id));
  SOTTO_TRY_ASSIGN(auto m, impl_->locked([&] {
    return impl_->history.find_in_conversation(conversation, mid);
  }));
  if (!m) return make_error(ErrorCode::kNotFound, "no message " + id + " in that conversation");
  return std::move(m->message);
}

Result<std::vector<Receipt>> Client::receipts(ConversationId conversation,
                                              const std::string& id) const {
  SOTTO_TRY_ASSIGN(Bytes mid, parse_message_id(id));
  return impl_->locked([&]() -> Result<std::vector<Receipt>> {
    SOTTO_TRY_ASSIGN(auto m, impl_->history.find_in_conversation(conversation, mid));
    if (!m) return make_error(ErrorCode::kNotFound, "no message " + id + " in that conversation");
    return impl_->history.receipts(m->row);
  });
}

Status Client::mark_read(ConversationId conversation, const std::string& up_to) {
  return impl_->mark_read(conversation, up_to);
}

Status Client::set_read_receipts(bool enabled) {
  return impl_->txn([&]() -> Status {
    SOTTO_TRY_ASSIGN(auto a, impl_->history.account());
    if (!a) return make_error(ErrorCode::kInvalidState, "no account yet");
    a->read_receipts = enabled;
    return impl_->history.save_account(*a);
  });
}

Result<SafetyNumber> Client::safety_number(const std::string& account) const {
  SOTTO_TRY(parse_account(account));
  return impl_->profile->safety_number(account);
}

Status Client::accept_identity(const std::string& account) {
  return impl_->accept_identity(account);
}

Profile& Client::profile() { return *impl_->profile; }

}  // namespace sotto
