#include "ClientImpl.h"

namespace sotto {

using namespace std::chrono_literals;

Client::Impl::Impl(std::unique_ptr<Profile> p, ClientOptions o)
    : profile(std::move(p)),
      parts(ProfileAccess::parts(*profile)),
      options(std::move(o)),
      clock(parts.options.clock ? parts.options.clock : Clock(system_clock_ms)),
      history(parts.db) {
  if (!options.executor) event_thread = std::make_unique<EventThread>();
  sweep_attachment_files();
  worker = std::thread([this] {
    name_this_thread("sotto-client");
    worker_main();
  });
}

Client::Impl::~Impl() {
  disconnect();
  // stop() waits for the loop thread, whose provision callback takes link_mu: never under it.
  std::shared_ptr<RelayConnection> link;
  {
    std::lock_guard lock(link_mu);
    link = link_conn;
  }
  if (link) link->stop();
  {
    std::lock_guard lock(mu);
    stopping = true;
  }
  cv.notify_all();
  if (worker.joinable()) worker.join();
}

// One transaction on the profile database, mutex held throughout.
Status Client::Impl::txn(const std::function<Status()>& body) {
  std::lock_guard lock(parts.mu);
  return parts.crypto.transaction(body);
}

void Client::Impl::emit(std::vector<Event> events) {
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

void Client::Impl::emit(Event e) {
  std::vector<Event> v;
  v.push_back(std::move(e));
  emit(std::move(v));
}

void Client::Impl::post_task(std::function<void()> fn) {
  {
    std::lock_guard lock(mu);
    tasks.push_back(std::move(fn));
  }
  cv.notify_one();
}

void Client::Impl::kick_outbox() {
  {
    std::lock_guard lock(mu);
    outbox_kick = true;
  }
  cv.notify_one();
}

void Client::Impl::owe_receipts() {
  {
    std::lock_guard lock(mu);
    uint64_t due = now() + static_cast<uint64_t>(options.receipt_delay.count());
    if (receipts_due_ms == 0 || due < receipts_due_ms) receipts_due_ms = due;
  }
  cv.notify_one();
}

Result<AccountRow> Client::Impl::registered_account() {
  auto a = locked([&] { return history.account(); });
  if (!a.ok()) return std::move(a).error();
  if (*a && (*a)->state == AccountState::kRemoved)
    return make_error(ErrorCode::kInvalidState,
                      "this device is no longer part of its account (it was unlinked, or the "
                      "account was deleted): its history stays readable here, but to chat "
                      "again register or link a new profile");
  if (!*a || (*a)->state != AccountState::kRegistered)
    return make_error(ErrorCode::kInvalidState,
                      "this profile has no account yet: call register_account() or link it to "
                      "an existing account first");
  return std::move(**a);
}

std::string Client::Impl::self_account() {
  return locked([&] { return parts.crypto.identity().account; });
}

uint32_t Client::Impl::self_device() {
  return locked([&] { return parts.crypto.identity().device_id; });
}

std::shared_ptr<RelayConnection> Client::Impl::connection() {
  std::lock_guard lock(conn_mu);
  return conn;
}

ConnectionTiming Client::Impl::timing() const {
  ConnectionTiming t;
  t.ping_interval = options.ping_interval;
  t.idle_timeout = options.idle_timeout;
  t.backoff_initial = options.backoff_initial;
  t.backoff_max = options.backoff_max;
  t.request_timeout = options.request_timeout;
  return t;
}

// A blocking request on the authenticated connection.
Result<wire::Response> Client::Impl::call(wire::Request r) {
  auto c = connection();
  if (!c)
    return make_error(ErrorCode::kUnavailable, "not connected to the relay: call connect() first");
  return c->call(std::move(r));
}

void Client::Impl::set_state(ConnectionState s, const std::string& detail) {
  diagnose("connection: " + detail);
  {
    std::lock_guard lock(state_mu);
    if (state == s && state_detail == detail) return;
    state = s;
    state_detail = detail;
  }
  state_cv.notify_all();
  emit([s, detail](ClientListener& l) { l.on_connection_state(s, detail); });
}

Status Client::Impl::connect() {
  SOTTO_TRY_ASSIGN(auto account, registered_account());
  if (options.relay_url.empty())
    return make_error(ErrorCode::kInvalidArgument,
                      "no relay address: set ClientOptions::relay_url");
  // Connected or on the way (register_account() and finish_link() connect by themselves): a
  // second socket of this device would only race the first at the relay. A connection
  // waiting to try again dials now.
  if (auto live = connection(); live && !live->stopped()) {
    live->retry_now();
    return {};
  }
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

void Client::Impl::disconnect() {
  std::shared_ptr<RelayConnection> old;
  {
    std::lock_guard lock(conn_mu);
    old = std::exchange(conn, nullptr);
  }
  if (old) old->stop();
  set_state(ConnectionState::kOffline, "disconnected");
}

// Loop thread.
void Client::Impl::on_link_event(const LinkEvent& e) {
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
        // logged_out() reports kLoggedOut once the profile says so, so that a connect() made on
        // seeing the state is refused.
        post_task([this, detail = e.detail] { logged_out(detail); });
      } else if (e.close_code == 4002) {
        set_state(ConnectionState::kOffline, e.detail);
      }
      break;
  }
}

// Loop thread: hand everything to the worker.
void Client::Impl::on_push(wire::Push p) {
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
      post_task([this] { log_failure(refill_prekeys(), "refilling prekeys"); });
      break;
    case wire::Push::kDevicesChanged: {
      auto devices = std::move(*p.mutable_devices_changed());
      post_task([this, devices = std::move(devices)] { on_devices_changed(devices); });
      break;
    }
    case wire::Push::kPresence: {
      const auto& presence = p.presence();
      if (presence.account_id().size() != 16) break;
      std::string account = to_hex(view_of(presence.account_id()));
      bool online = presence.online();
      uint64_t seen = presence.last_seen_ms();
      emit([account, online, seen](ClientListener& l) { l.on_presence(account, online, seen); });
      break;
    }
    default:
      break;  // kinds from newer relays
  }
}

// Worker thread, after each (re)connect.
void Client::Impl::on_connected() {
  names_due_ms = now();  // lookups that could not be made while offline
  log_failure(refresh_own_devices(), "listing this account's devices");
  log_failure(maintain_prekeys(), "keeping prekeys on the relay");
  send_presence_visibility();
  if (!presence_watch.empty()) subscribe_presence();
  // Receipts still owed from before a crash or a quit go out now, without waiting for the next
  // received message to schedule them; then the outbox.
  flush_receipts();
  // Acks the last connection could not get confirmed.
  std::vector<uint64_t> acks;
  {
    std::lock_guard lock(mu);
    acks.assign(acks_unconfirmed.begin(), acks_unconfirmed.end());
    acks_unconfirmed.clear();
    ack_retry_ms = 0;
  }
  if (!acks.empty()) send_acks(acks);
}

Status Client::Impl::refresh_own_devices() {
  SOTTO_TRY_ASSIGN(auto r, call(make_request(wire::OP_LIST_DEVICES)));
  if (r.status() != wire::OK) return status_error(r, "listing this account's devices");
  std::set<uint32_t> ids;
  uint32_t me = self_device();
  for (const auto& d : r.list_devices().devices())
    if (d.device_id() != me) ids.insert(d.device_id());
  return apply_own_devices(ids);
}

Status Client::Impl::apply_own_devices(const std::set<uint32_t>& ids) {
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

void Client::Impl::on_devices_changed(const wire::DevicesChanged& dc) {
  std::set<uint32_t> ids;
  uint32_t me = self_device();
  for (const auto& d : dc.devices())
    if (d.device_id() != me) ids.insert(d.device_id());
  log_failure(apply_own_devices(ids), "applying a change of this account's devices");
  emit([](ClientListener& l) { l.on_devices_changed(); });
}

Status Client::Impl::maintain_prekeys() {
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
  if (!up->has_signed_prekey() && !up->has_last_resort_prekey() && up->one_time_prekeys_size() == 0)
    return {};
  SOTTO_TRY_ASSIGN(auto u, call(std::move(req)));
  if (u.status() != wire::OK) return status_error(u, "uploading prekeys");
  return {};
}

Status Client::Impl::refill_prekeys() {
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
Result<wire::DeviceKeys> Client::Impl::device_keys(const Bytes& auth_secret) {
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

// An unauthenticated socket for registration or linking: one attempt, no reconnects.
Result<std::shared_ptr<RelayConnection>> Client::Impl::open_anonymous(
    RelayConnection::PushCallback on_push) {
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
Result<uint64_t> Client::Impl::relay_time(RelayConnection& c) {
  SOTTO_TRY_ASSIGN(auto r, c.call(make_request(wire::OP_PING)));
  if (r.status() != wire::OK) return status_error(r, "reaching the relay");
  return r.ping().server_time_ms();
}

Result<AccountInfo> Client::Impl::register_account(const std::string& wanted,
                                                   const std::string& invite) {
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
    if (!parts.crypto.has_identity()) SOTTO_TRY(parts.crypto.create_identity(kUnregistered, 1, 0));
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
    p.set_invite(invite);
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

Result<LinkInvite> Client::Impl::start_link() {
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

Result<AccountInfo> Client::Impl::finish_link(std::chrono::milliseconds timeout) {
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
    // Ask the other devices for the contact list and the groups this account is in.
    for (auto kind : {content::SyncRequest::CONTACTS, content::SyncRequest::GROUPS}) {
      content::Content ask;
      ask.mutable_sync()->mutable_request()->set_kind(kind);
      OutboxItem item;
      item.message_id = new_message_id(now());
      item.kind = OutboxKind::kOwnSync;
      item.content = serialize(ask);
      SOTTO_TRY(history.enqueue(item, now()));
    }
    return {};
  }));
  SOTTO_TRY(connect());
  return AccountInfo{account, device, msg.handle()};
}

Status Client::Impl::approve_link(const std::string& invite_text) {
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

Result<std::vector<DeviceInfo>> Client::Impl::devices() {
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

Status Client::Impl::remove_device(uint32_t device_id) {
  SOTTO_TRY_ASSIGN(auto account, registered_account());
  if (device_id == account.device_id) return unlink_this_device();
  auto req = make_request(wire::OP_REMOVE_DEVICE);
  req.mutable_remove_device()->set_device_id(device_id);
  SOTTO_TRY_ASSIGN(auto r, call(std::move(req)));
  if (r.status() != wire::OK)
    return status_error(r, "removing device " + std::to_string(device_id));
  return {};
}

Status Client::Impl::unlink_this_device() {
  SOTTO_TRY_ASSIGN(auto account, registered_account());
  auto req = make_request(wire::OP_REMOVE_DEVICE);
  req.mutable_remove_device()->set_device_id(account.device_id);
  SOTTO_TRY_ASSIGN(auto r, call(std::move(req)));
  if (r.status() == wire::FORBIDDEN)
    return make_error(ErrorCode::kForbidden,
                      "this is the only device of the account, so it cannot be unlinked; "
                      "delete_account() removes the account instead");
  if (r.status() != wire::OK) return status_error(r, "unlinking this device");
  logged_out("this device was unlinked from its account");
  return {};
}

Status Client::Impl::delete_account() {
  SOTTO_TRY_ASSIGN(auto account, registered_account());
  Bytes id;
  from_hex(account.account, id);
  auto req = make_request(wire::OP_DELETE_ACCOUNT);
  req.mutable_delete_account()->set_confirm_account_id(str_of(id));
  SOTTO_TRY_ASSIGN(auto r, call(std::move(req)));
  if (r.status() != wire::OK) return status_error(r, "deleting the account");
  logged_out("the account was deleted");
  return {};
}

Status Client::Impl::push_endpoint(const std::string& url) {
  SOTTO_TRY(registered_account());
  if (url.size() > 2048)
    return make_error(
        ErrorCode::kInvalidArgument,
        "a push endpoint is at most 2048 bytes; this one has " + std::to_string(url.size()));
  auto req = make_request(wire::OP_SET_PUSH_ENDPOINT);
  if (url.empty())
    req.mutable_set_push_endpoint()->set_clear(true);
  else
    req.mutable_set_push_endpoint()->set_url(url);
  SOTTO_TRY_ASSIGN(auto r, call(std::move(req)));
  if (r.status() != wire::OK)
    return status_error(r,
                        url.empty() ? "clearing the push endpoint" : "setting the push endpoint");
  return {};
}

void Client::Impl::logged_out(const std::string& detail) {
  log_failure(txn([&]() -> Status {
                SOTTO_TRY_ASSIGN(auto a, history.account());
                if (!a || a->state == AccountState::kRemoved) return {};
                a->state = AccountState::kRemoved;
                return history.save_account(*a);
              }),
              "marking the profile's account removed (the relay has removed it)");
  std::shared_ptr<RelayConnection> old;
  {
    std::lock_guard lock(conn_mu);
    old = std::exchange(conn, nullptr);
  }
  if (old) old->stop();
  set_state(ConnectionState::kLoggedOut, detail);
}

Result<Contact> Client::Impl::add_contact(const std::string& wanted) {
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

void Client::Impl::resolve_names() {
  names_due_ms = 0;
  {
    std::lock_guard lock(state_mu);
    if (state != ConnectionState::kOnline && state != ConnectionState::kSyncing) return;
  }
  std::string self = self_account();
  auto accounts = locked(
      [&] { return history.accounts_without_handle(self, names_unknown, kNamesPerRound); });
  if (!accounts.ok() || accounts->empty()) return;
  std::set<ConversationId> changed;
  for (const auto& account : *accounts) {
    Bytes id;
    from_hex(account, id);
    auto req = make_request(wire::OP_LOOKUP_ACCOUNT);
    req.mutable_lookup_account()->set_account_id(str_of(id));
    auto r = call(std::move(req));
    if (r.ok() && r->status() == wire::NOT_FOUND) {
      names_unknown.insert(account);  // deleted: its messages keep showing its last known name
      continue;
    }
    if (!r.ok() || r->status() != wire::OK) {
      diagnose("looking up the handle of " + account.substr(0, 8) + " failed: " +
               (r.ok() ? wire::Status_Name(r->status()) : r.error().message) +
               "; trying again in a minute");
      names_due_ms = now() + kNamesRetryMs;
      break;
    }
    const auto& found = r->lookup_account();
    auto handle = normalise_handle(found.handle());
    if (found.account_id() != str_of(id) || !handle.ok() || *handle != found.handle()) {
      names_unknown.insert(account);
      continue;
    }
    auto shows = txn([&]() -> Status {
      SOTTO_TRY(history.upsert_contact(account, *handle, {}, now()));
      SOTTO_TRY_ASSIGN(auto convs, history.conversations_showing(account));
      changed.insert(convs.begin(), convs.end());
      return {};
    });
    if (!shows.ok()) {
      names_due_ms = now() + kNamesRetryMs;
      break;
    }
  }
  std::vector<Event> events;
  for (ConversationId c : changed)
    events.push_back([c](ClientListener& l) { l.on_conversation_changed(c); });
  emit(std::move(events));
  if (!names_due_ms && accounts->size() == kNamesPerRound) names_due_ms = now();  // more wait
}

// Caller holds the transaction.

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
  if (options.backoff_initial.count() <= 0 || options.backoff_max < options.backoff_initial)
    return make_error(ErrorCode::kInvalidArgument,
                      "ClientOptions::backoff_max must be at least backoff_initial, which must be "
                      "positive (C API: backoff_max_ms and backoff_initial_ms)");
  if (!options.relay_url.empty()) {
    SOTTO_TRY_ASSIGN(auto url, net::parse_url(options.relay_url));
    SOTTO_TRY(
        net::check_transport(url, options.relay_url, options.dangerously_allow_plaintext_relay));
  }
  auto impl = std::make_unique<Impl>(std::move(profile), std::move(options));
  return std::unique_ptr<Client>(new Client(std::move(impl)));
}

void Client::set_listener(std::shared_ptr<ClientListener> listener) {
  std::shared_ptr<ClientListener> old;
  {
    std::lock_guard lock(impl_->listener_mu);
    old = std::exchange(impl_->listener, std::move(listener));
  }
  // `old` may be the last reference: the app's destructor runs here, not under listener_mu.
}

Result<AccountInfo> Client::register_account(const std::string& handle,
                                             const std::string& invite) {
  return impl_->register_account(handle, invite);
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
Status Client::unlink_this_device() { return impl_->unlink_this_device(); }
Status Client::delete_account() { return impl_->delete_account(); }

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

Status Client::set_push_endpoint(const std::string& url) {
  if (url.empty())
    return make_error(ErrorCode::kInvalidArgument,
                      "an empty push endpoint: to stop wake-ups call clear_push_endpoint()");
  return impl_->push_endpoint(url);
}

Status Client::clear_push_endpoint() { return impl_->push_endpoint({}); }

Status Client::edit_message(ConversationId conversation, const std::string& message_id,
                            const std::string& new_text) {
  return impl_->edit_message(conversation, message_id, new_text);
}

Status Client::delete_for_everyone(ConversationId conversation, const std::string& message_id) {
  return impl_->delete_for_everyone(conversation, message_id);
}

Status Client::set_disappearing_timer(ConversationId conversation, uint32_t seconds) {
  return impl_->set_disappearing_timer(conversation, seconds);
}

Result<std::string> Client::send_file(ConversationId conversation,
                                      const std::filesystem::path& file, const FileOptions& options,
                                      const TransferProgress& progress,
                                      const std::atomic<bool>* cancel) {
  return impl_->send_file(conversation, file, options, progress, cancel);
}

Status Client::download_attachment(ConversationId conversation, const std::string& message_id,
                                   uint32_t index, const TransferProgress& progress,
                                   const std::atomic<bool>* cancel) {
  return impl_->download_attachment(conversation, message_id, index, progress, cancel);
}

Status Client::save_attachment(ConversationId conversation, const std::string& message_id,
                               uint32_t index, const std::filesystem::path& destination,
                               const TransferProgress& progress, const std::atomic<bool>* cancel) {
  return impl_->save_attachment(conversation, message_id, index, destination, progress, cancel);
}

Result<Bytes> Client::read_attachment(ConversationId conversation, const std::string& message_id,
                                      uint32_t index, uint64_t max_bytes) {
  return impl_->read_attachment(conversation, message_id, index, max_bytes);
}

Result<ConversationId> Client::create_group(const std::string& name,
                                            const std::vector<std::string>& member_accounts) {
  return impl_->create_group(name, member_accounts);
}

Result<GroupInfo> Client::group(ConversationId conversation) const {
  return impl_->group_info(conversation);
}

namespace {

void add_member(content::GroupUpdate& u, const std::string& account, const std::string& handle) {
  Bytes id;
  from_hex(account, id);
  for (const auto& m : u.members())
    if (m.account_id() == str_of(id)) return;
  auto* m = u.add_members();
  m->set_account_id(str_of(id));
  m->set_handle(handle);
}

void remove_member(content::GroupUpdate& u, const std::string& account) {
  Bytes id;
  from_hex(account, id);
  auto* members = u.mutable_members();
  for (int i = members->size() - 1; i >= 0; --i)
    if (members->Get(i).account_id() == str_of(id)) members->DeleteSubrange(i, 1);
  auto* admins = u.mutable_admins();
  for (int i = admins->size() - 1; i >= 0; --i)
    if (admins->Get(i) == str_of(id)) admins->DeleteSubrange(i, 1);
}

}  // namespace

Status Client::add_group_members(ConversationId conversation,
                                 const std::vector<std::string>& accounts) {
  for (const auto& a : accounts) SOTTO_TRY(parse_account(a));
  std::vector<std::pair<std::string, std::string>> named;
  for (const auto& a : accounts) {
    auto c = impl_->locked([&] { return impl_->history.contact(a); });
    named.emplace_back(a, c.ok() && *c ? (*c)->handle : std::string());
  }
  return impl_->change_group(
      conversation,
      [&](content::GroupUpdate& u) -> Status {
        for (const auto& [a, h] : named) add_member(u, a, h);
        return {};
      },
      false);
}

Status Client::remove_group_members(ConversationId conversation,
                                    const std::vector<std::string>& accounts) {
  for (const auto& a : accounts) SOTTO_TRY(parse_account(a));
  SOTTO_TRY_ASSIGN(auto me, impl_->registered_account());
  for (const auto& a : accounts)
    if (a == me.account)
      return make_error(ErrorCode::kInvalidArgument, "to take this account out, use leave_group()");
  return impl_->change_group(
      conversation,
      [&](content::GroupUpdate& u) -> Status {
        for (const auto& a : accounts) remove_member(u, a);
        return {};
      },
      false);
}

Status Client::rename_group(ConversationId conversation, const std::string& name) {
  if (name.empty() || name.size() > 256)
    return make_error(ErrorCode::kInvalidArgument, "a group name is 1 to 256 bytes");
  if (!is_valid_utf8(name))
    return make_error(ErrorCode::kInvalidArgument,
                      "the group name is not valid UTF-8; the group was not renamed (convert it "
                      "to UTF-8)");
  return impl_->change_group(
      conversation,
      [&](content::GroupUpdate& u) -> Status {
        u.set_name(name);
        return {};
      },
      false);
}

Status Client::set_group_admin(ConversationId conversation, const std::string& account,
                               bool admin) {
  SOTTO_TRY(parse_account(account));
  return impl_->change_group(
      conversation,
      [&](content::GroupUpdate& u) -> Status {
        Bytes id;
        from_hex(account, id);
        bool member = false;
        for (const auto& m : u.members()) member |= m.account_id() == str_of(id);
        if (!member)
          return make_error(ErrorCode::kNotFound, "that account is not a member of the group");
        auto* admins = u.mutable_admins();
        for (int i = admins->size() - 1; i >= 0; --i)
          if (admins->Get(i) == str_of(id)) admins->DeleteSubrange(i, 1);
        if (admin) u.add_admins(str_of(id));
        if (u.admins_size() == 0)
          return make_error(ErrorCode::kInvalidArgument, "a group needs at least one admin");
        return {};
      },
      false);
}

Status Client::leave_group(ConversationId conversation) {
  SOTTO_TRY_ASSIGN(auto me, impl_->registered_account());
  return impl_->change_group(
      conversation,
      [&](content::GroupUpdate& u) -> Status {
        remove_member(u, me.account);
        // The last admin leaving hands the group to the longest-standing member, so it can
        // still be changed.
        if (u.admins_size() == 0 && u.members_size() > 0) u.add_admins(u.members(0).account_id());
        if (u.members_size() == 0)
          return make_error(ErrorCode::kInvalidState,
                            "you are the group's last member; there is nobody to tell");
        return {};
      },
      true);
}

Status Client::set_typing(ConversationId conversation, bool typing) {
  return impl_->set_typing(conversation, typing);
}

Status Client::watch_presence(const std::vector<ConversationId>& conversations) {
  return impl_->watch_presence(conversations);
}

Status Client::set_presence_hidden(bool hidden) { return impl_->set_presence_hidden(hidden); }

Result<SearchPage> Client::search(const SearchQuery& query) const {
  auto page = impl_->profile->search(query);
  // A search that found the index damaged started a rebuild: the worker carries it on.
  if (page.ok() && !page->index_complete) impl_->schedule_rebuild(0);
  return page;
}

Result<SafetyNumber> Client::safety_number(const std::string& account) const {
  SOTTO_TRY(parse_account(account));
  auto sn = impl_->profile->safety_number(account);
  if (sn.ok() || sn.code() != ErrorCode::kNotFound) return sn;
  // No session yet: the key the contact lookup returned is the one a first message will use,
  // and comparing it before that message is exactly what the number is for.
  auto& parts = impl_->parts;
  std::lock_guard lock(parts.mu);
  SOTTO_TRY_ASSIGN(Bytes key, impl_->history.contact_identity_key(account));
  if (key.empty() || !parts.crypto.has_identity())
    return make_error(ErrorCode::kNotFound,
                      "no identity key known for " + account +
                          ": add it as a contact or exchange a message first");
  const auto& me = parts.crypto.identity();
  SOTTO_TRY_ASSIGN(auto k, keys::safety_number(parts.ctx, me.account, me.public_key, account, key));
  return SafetyNumber{std::move(k.digits), std::move(k.scannable)};
}

Status Client::accept_identity(const std::string& account) {
  return impl_->accept_identity(account);
}

Status Client::set_verified(const std::string& account, bool verified) {
  std::string digits;
  if (verified) {
    SOTTO_TRY_ASSIGN(auto sn, safety_number(account));
    digits = sn.digits;
  } else {
    SOTTO_TRY(parse_account(account));
  }
  return impl_->txn(
      [&] { return impl_->history.set_verified_number(account, digits, impl_->now()); });
}

Result<bool> Client::verified(const std::string& account) const {
  SOTTO_TRY_ASSIGN(auto current, safety_number(account));
  SOTTO_TRY_ASSIGN(auto digits,
                   impl_->locked([&] { return impl_->history.verified_number(account); }));
  return !digits.empty() && digits == current.digits;
}

Profile& Client::profile() { return *impl_->profile; }

}  // namespace sotto
