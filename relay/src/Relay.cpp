#include "Relay.h"

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <map>
#include <utility>

#include "Log.h"
#include "sotto/keys/KeyGen.h"
#include "sotto/proto/cluster.pb.h"

namespace sotto::relay {
namespace {

constexpr uint64_t kMinuteMs = 60'000;
constexpr uint64_t kBusDownPollMs = 2'000;
constexpr uint64_t kOperatorPollMs = 2'000;
constexpr uint64_t kDayMs = 86'400'000;

uint64_t system_now_ms() {
  return static_cast<uint64_t>(std::chrono::duration_cast<std::chrono::milliseconds>(
                                   std::chrono::system_clock::now().time_since_epoch())
                                   .count());
}

std::string account_key(ByteView account) { return std::string(as_chars(account)); }

template <class Fill>
std::shared_ptr<const std::string> push_frame(Fill fill) {
  wire::Frame f;
  fill(*f.mutable_push());
  return std::make_shared<const std::string>(f.SerializeAsString());
}

std::string bytes_str(ByteView b) { return std::string(as_chars(b)); }

void fill_device_info(wire::DeviceInfo& info, const DeviceRecord& d, bool connected) {
  info.set_device_id(d.device_id);
  info.set_registration_id(d.registration_id);
  info.set_created_at_ms(d.created_at_ms);
  info.set_last_seen_ms(d.last_seen_ms / kDayMs * kDayMs);
  info.set_encrypted_name(bytes_str(d.encrypted_name));
  info.set_connected(connected);
}

Refusal status_refusal(wire::Status s, std::string m) { return Refusal{s, std::move(m)}; }

}  // namespace

std::string device_key(ByteView account, uint32_t device) {
  std::string k(as_chars(account));
  for (int i = 0; i < 4; ++i) k += static_cast<char>((device >> (8 * i)) & 0xff);
  return k;
}

Relay::Relay(const Config& config, StoreExecutor& store, Metrics& metrics,
             std::shared_ptr<keys::Context> ctx, Clock clock)
    : config_(config),
      store_(store),
      metrics_(metrics),
      ctx_(std::move(ctx)),
      clock_(clock ? std::move(clock) : Clock(system_now_ms)),
      upgrade_ip_(config.rates.per_ip ? config.rates.upgrade_ip : RateSpec{}),
      register_ip_(config.rates.per_ip ? config.rates.register_ip : RateSpec{}),
      provision_ip_(config.rates.per_ip ? config.rates.provision_ip : RateSpec{}),
      provision_lookup_account_(config.rates.provision_lookup_account),
      lookup_device_(config.rates.lookup_device),
      bundles_device_(config.rates.bundles_device),
      bundles_target_(config.rates.bundles_target),
      send_device_(config.rates.send_device),
      presence_device_(config.rates.presence_device),
      attachment_account_(config.rates.attachment_account),
      attachment_bytes_(
          config.rates.attachment_bytes_per_day
              ? RateSpec{static_cast<double>(config.rates.attachment_bytes_per_day), kDayMs,
                         static_cast<double>(config.rates.attachment_bytes_per_day), true}
              : RateSpec{}),
      download_device_(config.rates.download_device),
      unauth_ip_(config.rates.per_ip ? config.rates.unauth_sockets_ip : 0) {
  auto total = std::make_shared<uint64_t>(0);
  store_.submit(
      [total](Store& s) -> Status {
        SOTTO_TRY_ASSIGN(*total, s.total_queued());
        return {};
      },
      [this, total](const Status& st) {
        if (st.ok()) metrics_.queue_depth = static_cast<int64_t>(*total);
      });
}

Relay::~Relay() = default;

std::filesystem::path Relay::attachment_path(const std::string& id) const {
  return config_.data_dir / "attachments" / id;
}

std::filesystem::path Relay::upload_tmp_dir() const {
  auto tmp = config_.data_dir / "attachments" / "tmp";
  return config_.node_id.empty() ? tmp : tmp / config_.node_id;
}

// ---- answers ----

void Relay::answer(const std::shared_ptr<Peer>& peer, wire::Response response, int op) {
  metrics_.count_request(op, response.status());
  // --log-level debug: every answer, with what a refusal said (never a payload).
  if (log_enabled(LogLevel::kDebug))
    log(LogLevel::kDebug, "request",
        {{"op", wire::Op_Name(static_cast<wire::Op>(op))},
         {"status", wire::Status_Name(response.status())},
         {"message", response.message()}});
  auto conn = peer->conn.lock();
  if (!conn) return;
  wire::Frame f;
  *f.mutable_response() = std::move(response);
  uint64_t id = f.response().id();
  auto bytes = std::make_shared<const std::string>(f.SerializeAsString());
  conn->post([conn, bytes, id] {
    conn->write(bytes);
    conn->request_done(id);
  });
}

void Relay::refuse(const std::shared_ptr<Peer>& peer, uint64_t id, int op, const Refusal& r) {
  wire::Response resp;
  resp.set_id(id);
  resp.set_status(r.status);
  resp.set_message(r.message);
  if (r.status == wire::TOO_LARGE) {
    resp.mutable_too_large()->set_max_bytes(r.max_bytes);
    resp.mutable_too_large()->set_max_items(r.max_items);
  }
  answer(peer, std::move(resp), op);
}

void Relay::rate_limited(const std::shared_ptr<Peer>& peer, uint64_t id, int op, uint64_t retry_ms,
                         const char* which) {
  // An operator sees refusals at info: a line per limit a minute at most, with how many.
  uint64_t now = clock_();
  uint64_t refused = 0;
  {
    std::lock_guard lock(refusals_mu_);
    auto& r = refusals_[which];
    ++r.count;
    if (now >= r.next_log_ms) {
      refused = std::exchange(r.count, 0);
      r.next_log_ms = now + 60'000;
    }
  }
  if (refused)
    log_info("rate_limited", {{"limit", which}, {"refused", refused}, {"retry_after_ms", retry_ms}});
  wire::Response resp;
  resp.set_id(id);
  resp.set_status(wire::RATE_LIMITED);
  resp.set_message(std::string("too many requests (") + which + "); retry after " +
                   std::to_string(retry_ms) + " ms");
  resp.mutable_rate_limited()->set_retry_after_ms(retry_ms);
  resp.mutable_rate_limited()->set_limit(which);
  answer(peer, std::move(resp), op);
}

void Relay::unavailable(const std::shared_ptr<Peer>& peer, uint64_t id, int op,
                        const Status* cause) {
  const char* message = "storage is unavailable; retry with backoff";
  if (shutting_down_)
    message = "the relay is shutting down; retry with backoff";
  else if (cause && !cause->ok() && cause->error().code == ErrorCode::kStorageFull)
    message = "the relay's storage is full; retry with backoff";
  refuse(peer, id, op, status_refusal(wire::UNAVAILABLE, message));
}

bool Relay::submit(const std::shared_ptr<Peer>& peer, uint64_t id, int op,
                   std::function<Status(Store&)> work, std::function<void()> on_commit) {
  if (shutting_down_) {
    unavailable(peer, id, op);
    return false;
  }
  bool ok = store_.submit(std::move(work),
                          [this, peer, id, op, on_commit = std::move(on_commit)](const Status& st) {
                            if (!st.ok())
                              unavailable(peer, id, op, &st);
                            else
                              on_commit();
                          });
  if (!ok) unavailable(peer, id, op);
  return ok;
}

bool Relay::frame_allowed(Peer& p) {
  const RateSpec& s = config_.rates.frames_connection;
  if (!s.enabled) return true;
  uint64_t now = clock_();
  if (p.frame_tokens < 0) {
    p.frame_tokens = s.burst;
    p.frame_tokens_ms = now;
  }
  if (now > p.frame_tokens_ms) {
    p.frame_tokens =
        std::min(s.burst, p.frame_tokens + static_cast<double>(now - p.frame_tokens_ms) * s.rate /
                                               static_cast<double>(s.period_ms));
    p.frame_tokens_ms = now;
  }
  if (p.frame_tokens < 1) return false;
  p.frame_tokens -= 1;
  return true;
}

// ---- upgrade ----

void Relay::authenticate(std::string_view authorization, std::function<void(Auth)> done) {
  auto creds = parse_authorization(authorization);
  if (!creds) {
    metrics_.auth_failures.fetch_add(1, std::memory_order_relaxed);
    done(Auth{});
    return;
  }
  auto result = std::make_shared<Auth>();
  auto c = std::make_shared<Credentials>(std::move(*creds));
  bool ok = store_.submit(
      [result, c](Store& s) -> Status {
        *result = Auth{};
        SOTTO_TRY_ASSIGN(auto device, s.find_device(c->account_id, c->device_id));
        if (!device || !auth_hash_matches(device->auth_hash, c->secret)) return {};
        SOTTO_TRY_ASSIGN(auto account, s.find_account(c->account_id));
        if (!account) return {};
        if (account->suspended) {
          result->kind = Auth::kSuspended;
          result->reason = account->suspended_reason;
          return {};
        }
        result->kind = Auth::kOk;
        result->account = c->account_id;
        result->device = c->device_id;
        result->identity_key = account->identity_key;
        result->hidden = account->presence_hidden;
        return {};
      },
      [this, result, done](const Status& st) {
        if (!st.ok()) result->kind = Auth::kUnavailable;
        if (result->kind == Auth::kUnauthorized)
          metrics_.auth_failures.fetch_add(1, std::memory_order_relaxed);
        done(std::move(*result));
      });
  if (!ok) {
    Auth a;
    a.kind = Auth::kUnavailable;
    done(std::move(a));
  }
}

uint64_t Relay::admit_upgrade(const std::string& ip) { return upgrade_ip_.take(ip, clock_()); }
bool Relay::admit_unauthenticated(const std::string& ip) { return unauth_ip_.acquire(ip); }
void Relay::release_unauthenticated(const std::string& ip) { unauth_ip_.release(ip); }

uint64_t Relay::admit_download(const Bytes& account, uint32_t device) {
  return download_device_.take(device_key(account, device), clock_());
}

// ---- connections ----

std::shared_ptr<Peer> Relay::open(std::shared_ptr<Connection> conn, std::string ip,
                                  const Auth* auth) {
  auto peer = std::make_shared<Peer>();
  peer->conn = conn;
  peer->ip = std::move(ip);
  if (!auth) {
    std::lock_guard lock(mu_);
    unauthenticated_.insert(peer);
    metrics_.ws_unauthenticated.fetch_add(1, std::memory_order_relaxed);
    return peer;
  }
  peer->authenticated = true;
  peer->account = auth->account;
  peer->device = auth->device;
  peer->identity_key = auth->identity_key;
  peer->key = device_key(peer->account, peer->device);
  metrics_.ws_authenticated.fetch_add(1, std::memory_order_relaxed);

  std::shared_ptr<Peer> replaced;
  bool came_online = false;
  bool hidden = auth->hidden;
  {
    std::lock_guard lock(mu_);
    auto& slot = devices_[peer->key];
    replaced = std::move(slot);
    slot = peer;
    Online& on = online_[account_key(peer->account)];
    came_online = on.devices.empty();
    on.devices.insert(peer->device);
    on.hidden = hidden;
    last_wake_.erase(peer->key);
  }
  if (replaced) {
    if (auto old = replaced->conn.lock()) old->post([old] { old->close(4002); });
  }
  if (bus_) {
    // One connection per device in the whole cluster, and the account's presence changes once
    // in the cluster: the bus knows both.
    bus_->claim(peer->key, [this, peer, hidden](std::optional<Bus::Claim> c) {
      if (!c) return;  // the bus is down: its claims are made again when it is back
      if (!c->before.empty() && c->before != bus_->node()) {
        cluster::NodeMessage m;
        m.set_device_key(peer->key);
        m.set_close_code(4002);
        bus_->send(c->before, m.SerializeAsString());
      }
      if (c->account_online && !hidden) {
        wire::PresenceUpdate u;
        u.set_account_id(bytes_str(peer->account));
        u.set_online(true);
        presence_changed(peer->account, std::move(u));
      }
    });
  } else if (came_online && !hidden) {
    wire::PresenceUpdate u;
    u.set_account_id(bytes_str(peer->account));
    u.set_online(true);
    presence_changed(peer->account, std::move(u));
  }
  // Drain the stored queue, then tell the device about a low prekey pool.
  pump(peer);
  auto counts = std::make_shared<PreKeyCounts>();
  uint64_t today = clock_() / kDayMs * kDayMs;
  store_.submit(
      [peer, counts, today](Store& s) -> Status {
        SOTTO_TRY_ASSIGN(*counts, s.prekey_counts(peer->account, peer->device));
        return s.set_last_seen(peer->account, 0, peer->device, today);
      },
      [this, peer, counts](const Status& st) {
        if (st.ok()) maybe_prekeys_low(peer, counts->one_time);
      });
  return peer;
}

void Relay::on_closed(const std::shared_ptr<Peer>& peer) {
  if (peer->closed.exchange(true)) return;
  std::vector<std::string> subs;
  bool went_offline = false, hidden = false, still_here = false;
  {
    std::lock_guard lock(mu_);
    for (const auto& a : peer->subscriptions) {
      auto it = subscribers_.find(account_key(a));
      if (it == subscribers_.end()) continue;
      it->second.erase(peer);
      if (it->second.empty()) subscribers_.erase(it);
      if (bus_) bus_->listen_presence(account_key(a), false);
    }
    if (!peer->authenticated) {
      unauthenticated_.erase(peer);
      if (!peer->link_code.empty()) {
        links_.erase(peer->link_code);
        if (bus_) bus_->link_close(peer->link_code);
      }
    } else {
      auto it = devices_.find(peer->key);
      if (it != devices_.end() && it->second == peer) {
        devices_.erase(it);
        auto on = online_.find(account_key(peer->account));
        if (on != online_.end()) {
          hidden = on->second.hidden;
          on->second.devices.erase(peer->device);
          if (on->second.devices.empty()) {
            went_offline = true;
            online_.erase(on);
          }
        }
      } else {
        still_here = it != devices_.end();  // replaced by a newer connection on this node
      }
    }
  }
  if (!peer->authenticated) {
    metrics_.ws_unauthenticated.fetch_sub(1, std::memory_order_relaxed);
    return;
  }
  metrics_.ws_authenticated.fetch_sub(1, std::memory_order_relaxed);
  uint64_t now = clock_();
  uint64_t minute = now / kMinuteMs * kMinuteMs;
  uint64_t today = now / kDayMs * kDayMs;
  auto announce_offline = [this, account = peer->account, minute] {
    wire::PresenceUpdate u;
    u.set_account_id(bytes_str(account));
    u.set_online(false);
    u.set_last_seen_ms(minute);
    presence_changed(account, std::move(u));
  };
  if (bus_) {
    // Unless a newer connection of the device took over here (another node's is told by the
    // bus: its claim is no longer ours, and release leaves it alone).
    if (!still_here)
      bus_->release(peer->key, [hidden, announce_offline](std::optional<bool> offline) {
        if (offline && *offline && !hidden) announce_offline();
      });
  } else if (went_offline && !hidden) {
    announce_offline();
  }
  store_.submit(
      [peer, minute, today, went_offline](Store& s) -> Status {
        return s.set_last_seen(peer->account, went_offline ? minute : 0, peer->device, today);
      },
      nullptr);
}

void Relay::on_request(const std::shared_ptr<Peer>& p, wire::Request r) {
  const int op = r.op();
  const uint64_t id = r.id();
  if (!wire::Op_IsValid(op)) {
    refuse(p, id, op,
           status_refusal(wire::UNSUPPORTED,
                          "this relay does not implement op " + std::to_string(op)));
    return;
  }
  if (!frame_allowed(*p)) {
    rate_limited(p, id, op, 1000, "frames");
    return;
  }
  if (id == 0) {
    refuse(p, id, op, bad_request("Request.id must be non-zero"));
    return;
  }
  if (op == wire::OP_UNSPECIFIED) {
    refuse(p, id, op, bad_request("op is not set"));
    return;
  }
  if (static_cast<int>(r.body_case()) != 100 + op) {
    refuse(p, id, op,
           bad_request(r.body_case() == wire::Request::BODY_NOT_SET
                           ? "the request has no body; set the body field of op " +
                                 wire::Op_Name(static_cast<wire::Op>(op))
                           : "the body does not match op " +
                                 wire::Op_Name(static_cast<wire::Op>(op))));
    return;
  }
  switch (op) {
    case wire::OP_PING: {
      wire::Response resp;
      resp.set_id(id);
      resp.set_status(wire::OK);
      resp.mutable_ping()->set_server_time_ms(clock_());
      answer(p, std::move(resp), op);
      return;
    }
    case wire::OP_SERVER_INFO: {
      const Limits& l = config_.limits;
      wire::Response resp;
      resp.set_id(id);
      resp.set_status(wire::OK);
      auto* i = resp.mutable_server_info();
      i->set_relay_version("sotto-relay 0.1.0");
      i->set_server_time_ms(clock_());
      i->set_max_frame_bytes(l.max_frame_bytes);
      i->set_max_envelope_bytes(l.max_envelope_bytes);
      i->set_max_devices_per_account(l.max_devices_per_account);
      i->set_max_send_multi_devices(l.max_send_multi_devices);
      i->set_max_send_messages(l.max_send_messages);
      i->set_max_prekeys_per_upload(l.max_prekeys_per_upload);
      i->set_prekey_low_threshold(l.prekey_low_threshold);
      i->set_envelope_ttl_ms(l.envelope_ttl_ms);
      i->set_attachment_max_bytes(l.attachment_max_bytes);
      i->set_attachment_retention_ms(l.attachment_retention_ms);
      i->set_ping_interval_ms(l.ping_interval_ms);
      i->set_idle_timeout_ms(l.idle_timeout_ms);
      i->set_registration_open(config_.registration_open);
      answer(p, std::move(resp), op);
      return;
    }
    case wire::OP_REGISTER:
      return op_register(p, r);
    case wire::OP_PROVISION_OPEN:
      return op_provision_open(p, r);
    case wire::OP_LINK_DEVICE:
      return op_link_device(p, r);
    default:
      break;
  }
  if (!p->authenticated) {
    refuse(p, id, op,
           status_refusal(wire::UNAUTHORIZED,
                          "this op needs an authenticated socket; reconnect with credentials"));
    return;
  }
  switch (op) {
    case wire::OP_PROVISION_LOOKUP:
      return op_provision_lookup(p, r);
    case wire::OP_PROVISION_APPROVE:
      return op_provision_approve(p, r);
    case wire::OP_LIST_DEVICES:
      return op_list_devices(p, r);
    case wire::OP_REMOVE_DEVICE:
      return op_remove_device(p, r);
    case wire::OP_DELETE_ACCOUNT:
      return op_delete_account(p, r);
    case wire::OP_LOOKUP_ACCOUNT:
      return op_lookup_account(p, r);
    case wire::OP_UPLOAD_PREKEYS:
      return op_upload_prekeys(p, r);
    case wire::OP_GET_PREKEY_COUNT:
      return op_get_prekey_count(p, r);
    case wire::OP_GET_BUNDLES:
      return op_get_bundles(p, r);
    case wire::OP_SEND:
      return op_send(p, r, false);
    case wire::OP_SEND_MULTI:
      return op_send(p, r, true);
    case wire::OP_ACK:
      return op_ack(p, r);
    case wire::OP_PRESENCE_SUBSCRIBE:
      return op_presence_subscribe(p, r);
    case wire::OP_PRESENCE_VISIBILITY:
      return op_presence_visibility(p, r);
    case wire::OP_SET_PUSH_ENDPOINT:
      return op_set_push_endpoint(p, r);
    case wire::OP_ATTACHMENT_UPLOAD:
      return op_attachment_upload(p, r);
    default:
      refuse(p, id, op, status_refusal(wire::UNSUPPORTED, "op not implemented"));
  }
}

// ---- accounts and devices ----

void Relay::op_register(const std::shared_ptr<Peer>& p, wire::Request& r) {
  const uint64_t id = r.id();
  const int op = r.op();
  const Limits& l = config_.limits;
  if (p->authenticated) {
    refuse(p, id, op, status_refusal(wire::FORBIDDEN, "register on an unauthenticated socket"));
    return;
  }
  if (uint64_t wait = register_ip_.take(p->ip, clock_())) {
    rate_limited(p, id, op, wait, "register");
    return;
  }
  const auto& req = r.registration();
  if (req.payload().size() > l.max_signed_payload_bytes) {
    refuse(p, id, op,
           too_large_bytes("the registration payload is too large", l.max_signed_payload_bytes));
    return;
  }
  wire::RegistrationPayload payload;
  if (!payload.ParseFromString(req.payload())) {
    refuse(p, id, op, bad_request("the registration payload does not parse"));
    return;
  }
  if (!valid_handle(payload.handle())) {
    refuse(p, id, op,
           bad_request("the handle must be 3 to 32 of a-z 0-9 _ . , start with a letter, not "
                       "end with '.' and have no '..'"));
    return;
  }
  if (auto bad = check_device_keys(*ctx_, payload.identity_key(), payload.device(), l)) {
    refuse(p, id, op, *bad);
    return;
  }
  uint64_t now = clock_();
  uint64_t ts = payload.timestamp_ms();
  if (ts + l.clock_skew_ms < now || ts > now + l.clock_skew_ms) {
    refuse(p, id, op,
           bad_request("the payload's timestamp is more than the allowed skew away from the "
                       "relay's clock (see OP_PING)"));
    return;
  }
  if (payload.nonce().size() != 16) {
    refuse(p, id, op, bad_request("the nonce must be 16 bytes"));
    return;
  }
  if (!keys::verify_payload(*ctx_, as_bytes(payload.identity_key()),
                            keys::SignedPurpose::kRegistration, as_bytes(req.payload()),
                            as_bytes(req.signature()))
           .ok()) {
    refuse(p, id, op, bad_request("the registration signature does not verify"));
    return;
  }
  // A closed relay takes an invite from its operator; an open one ignores any.
  Bytes invite;
  if (!config_.registration_open) {
    if (payload.invite().empty()) {
      refuse(p, id, op,
             status_refusal(wire::FORBIDDEN,
                            "registration is closed on this relay: ask its operator for an "
                            "invite"));
      return;
    }
    invite = hash_invite_token(payload.invite());
    if (invite.empty()) {
      refuse(p, id, op,
             bad_request("the invite is not one: 25 letters and digits, as the relay's "
                         "operator gave it"));
      return;
    }
  }
  const auto& reserved = config_.reserved_handles;
  if (std::find(reserved.begin(), reserved.end(), payload.handle()) != reserved.end()) {
    refuse(p, id, op, status_refusal(wire::FORBIDDEN, "this handle is reserved"));
    return;
  }

  struct State {
    AccountRecord account;
    NewDevice device;
    Bytes nonce;
    Bytes invite;
    std::optional<Refusal> refusal;
  };
  auto st = std::make_shared<State>();
  st->invite = std::move(invite);
  st->account.id = random_bytes(16);
  st->account.handle = payload.handle();
  st->account.identity_key = Bytes(payload.identity_key().begin(), payload.identity_key().end());
  st->account.created_at_ms = now;
  const auto& d = payload.device();
  st->device.registration_id = d.registration_id();
  st->device.auth_hash = hash_auth_secret(as_bytes(d.auth_secret()));
  st->device.encrypted_name = Bytes(d.encrypted_name().begin(), d.encrypted_name().end());
  st->device.signed_prekey = d.signed_prekey();
  st->device.one_time_prekeys.assign(d.one_time_prekeys().begin(), d.one_time_prekeys().end());
  st->device.last_resort = d.last_resort_prekey();
  st->device.created_at_ms = now;
  st->nonce = Bytes(payload.nonce().begin(), payload.nonce().end());
  uint64_t keep = now + l.nonce_window_ms;
  submit(
      p, id, op,
      [st, now, keep](Store& s) -> Status {
        st->refusal.reset();
        SOTTO_TRY_ASSIGN(bool fresh, s.use_nonce(st->nonce, now, keep));
        if (!fresh) {
          st->refusal = status_refusal(wire::CONFLICT,
                                       "the nonce was used before; make a new "
                                       "payload with a fresh nonce");
          return {};
        }
        if (!st->invite.empty()) {
          SOTTO_TRY_ASSIGN(bool usable, s.use_invite(st->invite, now));
          if (!usable) {
            st->refusal = status_refusal(wire::FORBIDDEN,
                                         "the invite is used up, expired or revoked: ask the "
                                         "relay's operator for a new one");
            return {};
          }
        }
        SOTTO_TRY_ASSIGN(bool created, s.create_account(st->account, st->device));
        if (!created) {
          st->refusal = status_refusal(wire::CONFLICT, "the handle is taken");
          // The invite stays good for another handle.
          if (!st->invite.empty()) SOTTO_TRY(s.return_invite(st->invite));
        }
        return {};
      },
      [this, p, id, op, st] {
        if (st->refusal) return refuse(p, id, op, *st->refusal);
        wire::Response resp;
        resp.set_id(id);
        resp.set_status(wire::OK);
        resp.mutable_registration()->set_account_id(bytes_str(st->account.id));
        resp.mutable_registration()->set_device_id(1);
        log_info("account_registered");
        answer(p, std::move(resp), op);
      });
}

void Relay::op_provision_open(const std::shared_ptr<Peer>& p, wire::Request& r) {
  const uint64_t id = r.id();
  const int op = r.op();
  if (p->authenticated) {
    refuse(p, id, op,
           status_refusal(wire::FORBIDDEN,
                          "link channels are opened by new devices "
                          "on an unauthenticated socket"));
    return;
  }
  if (r.provision_open().ephemeral_public_key().size() != 32) {
    refuse(p, id, op, bad_request("ephemeral_public_key must be a raw 32-byte X25519 key"));
    return;
  }
  if (!p->link_code.empty()) {
    refuse(p, id, op, status_refusal(wire::CONFLICT, "this socket already has a link channel"));
    return;
  }
  if (uint64_t wait = provision_ip_.take(p->ip, clock_())) {
    rate_limited(p, id, op, wait, "provision");
    return;
  }
  const std::string key = r.provision_open().ephemeral_public_key();
  const uint64_t expires = clock_() + config_.limits.link_lifetime_ms;
  // Opens the channel under `code` here (a code unique on this node, and in the cluster when
  // the bus said so) and answers.
  auto opened = [this, p, id, op, key, expires](const std::string& code) {
    {
      std::lock_guard lock(mu_);
      LinkChannel ch;
      ch.peer = p;
      ch.ephemeral_key = Bytes(key.begin(), key.end());
      ch.expires_at_ms = expires;
      links_.emplace(code, std::move(ch));
    }
    if (auto conn = p->conn.lock())
      conn->post([p, conn, code, expires] {
        p->link_code = code;
        conn->set_deadline(expires);
      });
    wire::Response resp;
    resp.set_id(id);
    resp.set_status(wire::OK);
    resp.mutable_provision_open()->set_link_code(code);
    resp.mutable_provision_open()->set_expires_at_ms(expires);
    answer(p, std::move(resp), op);
  };
  auto fresh_code = [this] {
    std::lock_guard lock(mu_);
    std::string code;
    do code = make_link_code();
    while (links_.count(code));
    return code;
  };
  std::string code = fresh_code();
  if (!bus_) return opened(code);
  // In a cluster the code must be unique among every node's channels: the bus reserves it.
  // A clash (one in 32^8 per live channel) is answered like an unavailable bus: retry.
  bus_->link_open(code, key, expires, [this, p, id, op, code, opened](std::optional<bool> created) {
    if (created && *created) return opened(code);
    refuse(p, id, op,
           status_refusal(wire::UNAVAILABLE,
                          created ? "the link code was taken meanwhile; retry"
                                  : "the cluster's bus is unavailable; retry with backoff"));
  });
}

void Relay::op_provision_lookup(const std::shared_ptr<Peer>& p, wire::Request& r) {
  const uint64_t id = r.id();
  const int op = r.op();
  if (uint64_t wait = provision_lookup_account_.take(account_key(p->account), clock_())) {
    rate_limited(p, id, op, wait, "provision_lookup");
    return;
  }
  std::string code = normalize_link_code(r.provision_lookup().link_code());
  auto respond = [this, p, id, op](bool found, bool approved, const Bytes& key,
                                   uint64_t expires) {
    wire::Response resp;
    resp.set_id(id);
    if (!found || expires < clock_()) {
      resp.set_status(wire::NOT_FOUND);
      resp.set_message("no live link channel has this code");
    } else if (approved) {
      resp.set_status(wire::CONFLICT);
      resp.set_message("this link channel was already approved");
    } else {
      resp.set_status(wire::OK);
      resp.mutable_provision_lookup()->set_ephemeral_public_key(bytes_str(key));
      resp.mutable_provision_lookup()->set_expires_at_ms(expires);
    }
    answer(p, std::move(resp), op);
  };
  {
    std::lock_guard lock(mu_);
    auto it = code.empty() ? links_.end() : links_.find(code);
    if (it != links_.end() || !bus_ || code.empty()) {
      bool found = it != links_.end();
      Bytes key = found ? it->second.ephemeral_key : Bytes();
      uint64_t expires = found ? it->second.expires_at_ms : 0;
      bool approved = found && it->second.approved;
      // NB: answer() only posts; calling it under mu_ is the documented order.
      return respond(found, approved, key, expires);
    }
  }
  // A channel opened on another node of the cluster.
  bus_->link_find(code, [this, p, id, op, respond](std::optional<Bus::LinkInfo> info) {
    if (!info)
      return refuse(p, id, op,
                    status_refusal(wire::UNAVAILABLE,
                                   "the cluster's bus is unavailable; retry with backoff"));
    respond(!info->node.empty(), info->approved,
            Bytes(info->ephemeral_key.begin(), info->ephemeral_key.end()), info->expires_at_ms);
  });
}

void Relay::op_provision_approve(const std::shared_ptr<Peer>& p, wire::Request& r) {
  const uint64_t id = r.id();
  const int op = r.op();
  if (uint64_t wait = provision_lookup_account_.take(account_key(p->account), clock_())) {
    rate_limited(p, id, op, wait, "provision_lookup");
    return;
  }
  const auto& env = r.provision_approve().envelope();
  if (env.ciphertext().size() > config_.limits.max_provision_ciphertext_bytes) {
    refuse(p, id, op,
           too_large_bytes("the provisioning ciphertext is too large",
                           config_.limits.max_provision_ciphertext_bytes));
    return;
  }
  if (env.ephemeral_public_key().size() != 32 || env.nonce().size() != 24 ||
      env.ciphertext().empty()) {
    refuse(p, id, op,
           bad_request("the envelope needs a 32-byte key, a 24-byte nonce and a "
                       "non-empty ciphertext"));
    return;
  }
  std::string code = normalize_link_code(r.provision_approve().link_code());
  auto check = [this, code]() -> std::optional<Refusal> {
    auto it = code.empty() ? links_.end() : links_.find(code);
    if (it == links_.end() || it->second.expires_at_ms < clock_())
      return status_refusal(wire::NOT_FOUND, "no live link channel has this code");
    if (it->second.approved)
      return status_refusal(wire::CONFLICT, "this link channel was already approved");
    return std::nullopt;
  };
  if (!bus_) {  // in a cluster the channel may be another node's: the bus decides
    std::lock_guard lock(mu_);
    if (auto bad = check()) return refuse(p, id, op, *bad);
  }
  auto count = std::make_shared<size_t>(0);
  auto envelope = std::make_shared<wire::ProvisionEnvelope>(env);
  submit(
      p, id, op,
      [p, count](Store& s) -> Status {
        SOTTO_TRY_ASSIGN(auto devices, s.list_devices(p->account));
        *count = devices.size();
        return {};
      },
      [this, p, id, op, count, envelope, code, check] {
        if (*count >= config_.limits.max_devices_per_account)
          return refuse(p, id, op,
                        status_refusal(wire::LIMIT_REACHED,
                                       "the account already has the maximum number of devices"));
        auto frame = push_frame([&](wire::Push& push) {
          auto* pp = push.mutable_provision();
          pp->set_link_code(code);
          pp->set_account_id(bytes_str(p->account));
          *pp->mutable_envelope() = *envelope;
        });
        auto ok = [this, p, id, op] {
          wire::Response resp;
          resp.set_id(id);
          resp.set_status(wire::OK);
          answer(p, std::move(resp), op);
        };
        // Approves the channel held here and gives the new device its ProvisionMessage.
        auto approve_here = [this, p, code, frame] {
          std::shared_ptr<Peer> target;
          {
            std::lock_guard lock(mu_);
            auto it = links_.find(code);
            if (it == links_.end()) return;
            it->second.approved = true;
            it->second.approved_by = p->account;
            target = it->second.peer.lock();
          }
          if (target)
            if (auto conn = target->conn.lock()) conn->post([conn, frame] { conn->write(frame); });
        };
        if (!bus_) {
          {
            std::lock_guard lock(mu_);
            if (auto bad = check()) return refuse(p, id, op, *bad);
          }
          approve_here();
          return ok();
        }
        bus_->link_approve(
            code, clock_(),
            [this, p, id, op, code, frame, ok, approve_here](
                std::optional<std::pair<Bus::Approval, std::string>> outcome) {
              if (!outcome)
                return refuse(p, id, op,
                              status_refusal(wire::UNAVAILABLE,
                                             "the cluster's bus is unavailable; retry with "
                                             "backoff"));
              if (outcome->first == Bus::Approval::kNotFound)
                return refuse(p, id, op,
                              status_refusal(wire::NOT_FOUND, "no live link channel has this code"));
              if (outcome->first == Bus::Approval::kAlreadyApproved)
                return refuse(p, id, op,
                              status_refusal(wire::CONFLICT,
                                             "this link channel was already approved"));
              if (outcome->second == bus_->node()) {
                approve_here();
              } else {
                cluster::NodeMessage m;
                auto* a = m.mutable_link_approved();
                a->set_link_code(code);
                a->set_approved_by(bytes_str(p->account));
                a->set_frame(*frame);
                bus_->send(outcome->second, m.SerializeAsString());
              }
              ok();
            });
      });
}

void Relay::op_link_device(const std::shared_ptr<Peer>& p, wire::Request& r) {
  const uint64_t id = r.id();
  const int op = r.op();
  const Limits& l = config_.limits;
  if (p->authenticated) {
    refuse(p, id, op,
           status_refusal(wire::FORBIDDEN,
                          "link on the unauthenticated socket that "
                          "opened the channel"));
    return;
  }
  if (uint64_t wait = provision_ip_.take(p->ip, clock_())) {
    rate_limited(p, id, op, wait, "provision");
    return;
  }
  const auto& req = r.link_device();
  if (req.payload().size() > l.max_signed_payload_bytes) {
    refuse(p, id, op, too_large_bytes("the link payload is too large", l.max_signed_payload_bytes));
    return;
  }
  wire::LinkPayload payload;
  if (!payload.ParseFromString(req.payload())) {
    refuse(p, id, op, bad_request("the link payload does not parse"));
    return;
  }
  if (payload.account_id().size() != 16) {
    refuse(p, id, op, bad_request("account_id must be 16 bytes"));
    return;
  }
  if (auto bad = check_device_keys(*ctx_, payload.identity_key(), payload.device(), l)) {
    refuse(p, id, op, *bad);
    return;
  }
  uint64_t now = clock_();
  if (payload.timestamp_ms() + l.clock_skew_ms < now ||
      payload.timestamp_ms() > now + l.clock_skew_ms) {
    refuse(p, id, op, bad_request("the payload's timestamp is outside the allowed clock skew"));
    return;
  }
  if (payload.nonce().size() != 16) {
    refuse(p, id, op, bad_request("the nonce must be 16 bytes"));
    return;
  }
  if (!keys::verify_payload(*ctx_, as_bytes(payload.identity_key()), keys::SignedPurpose::kLink,
                            as_bytes(req.payload()), as_bytes(req.signature()))
           .ok()) {
    refuse(p, id, op, bad_request("the link signature does not verify"));
    return;
  }
  std::string code = normalize_link_code(payload.link_code());
  {
    std::lock_guard lock(mu_);
    auto it = links_.find(p->link_code);
    if (p->link_code.empty() || it == links_.end() || code != p->link_code)
      return refuse(p, id, op,
                    status_refusal(wire::NOT_FOUND,
                                   "this socket has no live link channel with this "
                                   "code"));
    if (!it->second.approved)
      return refuse(p, id, op, status_refusal(wire::CONFLICT, "the channel is not approved yet"));
    if (bytes_str(it->second.approved_by) != payload.account_id())
      return refuse(p, id, op,
                    status_refusal(wire::FORBIDDEN, "the channel was approved by another account"));
  }
  struct State {
    Bytes account;
    Bytes identity_key;
    Bytes nonce;
    NewDevice device;
    uint32_t device_id = 0;
    std::optional<Refusal> refusal;
  };
  auto st = std::make_shared<State>();
  st->account = Bytes(payload.account_id().begin(), payload.account_id().end());
  st->identity_key = Bytes(payload.identity_key().begin(), payload.identity_key().end());
  st->nonce = Bytes(payload.nonce().begin(), payload.nonce().end());
  const auto& d = payload.device();
  st->device.registration_id = d.registration_id();
  st->device.auth_hash = hash_auth_secret(as_bytes(d.auth_secret()));
  st->device.encrypted_name = Bytes(d.encrypted_name().begin(), d.encrypted_name().end());
  st->device.signed_prekey = d.signed_prekey();
  st->device.one_time_prekeys.assign(d.one_time_prekeys().begin(), d.one_time_prekeys().end());
  st->device.last_resort = d.last_resort_prekey();
  st->device.created_at_ms = now;
  uint64_t keep = now + l.nonce_window_ms;
  uint32_t cap = l.max_devices_per_account;
  submit(
      p, id, op,
      [st, now, keep, cap](Store& s) -> Status {
        st->refusal.reset();
        st->device_id = 0;
        SOTTO_TRY_ASSIGN(auto account, s.find_account(st->account));
        if (!account) {
          st->refusal = status_refusal(wire::NOT_FOUND, "the account no longer exists");
          return {};
        }
        if (account->identity_key != st->identity_key) {
          st->refusal = status_refusal(wire::FORBIDDEN, "the identity key is not the account's");
          return {};
        }
        SOTTO_TRY_ASSIGN(bool fresh, s.use_nonce(st->nonce, now, keep));
        if (!fresh) {
          st->refusal = status_refusal(wire::CONFLICT, "the nonce was used before");
          return {};
        }
        SOTTO_TRY_ASSIGN(st->device_id, s.add_device(st->account, st->device, cap));
        if (st->device_id == 0)
          st->refusal =
              status_refusal(wire::LIMIT_REACHED, "the account has the maximum number of devices");
        return {};
      },
      [this, p, id, op, st, code] {
        if (st->refusal) return refuse(p, id, op, *st->refusal);
        wire::Response resp;
        resp.set_id(id);
        resp.set_status(wire::OK);
        resp.mutable_link_device()->set_device_id(st->device_id);
        answer(p, std::move(resp), op);
        log_info("device_linked", {{"device", st->device_id}});
        auto conn = p->conn.lock();
        {
          // On the writer thread: p->link_code belongs to the strand (an expiry clears it
          // there), so the channel is found by the code checked above, and only if it is
          // still this socket's.
          std::lock_guard lock(mu_);
          auto it = links_.find(code);
          if (it != links_.end() && it->second.peer.lock() == p) links_.erase(it);
          if (bus_) bus_->link_close(code);
        }
        if (conn) {
          conn->post([p, conn] {
            p->link_code.clear();
            conn->close(1000);
          });
        }
        devices_changed(st->account);
      });
}

void Relay::op_list_devices(const std::shared_ptr<Peer>& p, wire::Request& r) {
  auto list = std::make_shared<std::vector<DeviceRecord>>();
  const uint64_t id = r.id();
  const int op = r.op();
  submit(
      p, id, op,
      [p, list](Store& s) -> Status {
        SOTTO_TRY_ASSIGN(*list, s.list_devices(p->account));
        return {};
      },
      [this, p, id, op, list] {
        auto respond = [this, p, id, op, list](std::optional<std::vector<std::string>> nodes) {
          wire::Response resp;
          resp.set_id(id);
          resp.set_status(wire::OK);
          auto* out = resp.mutable_list_devices();
          std::lock_guard lock(mu_);
          for (size_t i = 0; i < list->size(); ++i) {
            const DeviceRecord& d = (*list)[i];
            bool connected = devices_.count(device_key(p->account, d.device_id)) ||
                             (nodes && !(*nodes)[i].empty());
            fill_device_info(*out->add_devices(), d, connected);
          }
          answer(p, std::move(resp), op);
        };
        if (!bus_) return respond(std::nullopt);
        std::vector<std::string> keys;
        for (const auto& d : *list) keys.push_back(device_key(p->account, d.device_id));
        bus_->locate(std::move(keys), respond);
      });
}

void Relay::devices_changed(const Bytes& account) {
  auto list = std::make_shared<std::vector<DeviceRecord>>();
  store_.submit(
      [account, list](Store& s) -> Status {
        SOTTO_TRY_ASSIGN(*list, s.list_devices(account));
        return {};
      },
      [this, account, list](const Status& st) {
        if (!st.ok()) return;
        auto send_list = [this, account, list](std::optional<std::vector<std::string>> nodes) {
          std::shared_ptr<const std::string> frame;
          {
            std::lock_guard lock(mu_);
            frame = push_frame([&](wire::Push& push) {
              auto* dc = push.mutable_devices_changed();
              for (size_t i = 0; i < list->size(); ++i) {
                const DeviceRecord& d = (*list)[i];
                bool connected = devices_.count(device_key(account, d.device_id)) ||
                                 (nodes && !(*nodes)[i].empty());
                fill_device_info(*dc->add_devices(), d, connected);
              }
            });
          }
          push_to_account(account, frame);
          if (!nodes) return;
          // The account's devices on other nodes.
          for (size_t i = 0; i < list->size(); ++i) {
            const std::string& node = (*nodes)[i];
            std::string key = device_key(account, (*list)[i].device_id);
            if (node.empty() || node == bus_->node() || find_peer(key)) continue;
            cluster::NodeMessage m;
            m.set_device_key(key);
            m.set_frame(*frame);
            bus_->send(node, m.SerializeAsString());
          }
        };
        if (!bus_) return send_list(std::nullopt);
        std::vector<std::string> keys;
        for (const auto& d : *list) keys.push_back(device_key(account, d.device_id));
        bus_->locate(std::move(keys), send_list);
      });
}

void Relay::push_to_account(const Bytes& account, std::shared_ptr<const std::string> frame,
                            uint32_t except_device) {
  std::vector<std::shared_ptr<Peer>> peers;
  {
    std::lock_guard lock(mu_);
    auto on = online_.find(account_key(account));
    if (on == online_.end()) return;
    for (uint32_t d : on->second.devices) {
      if (d == except_device) continue;
      auto it = devices_.find(device_key(account, d));
      if (it != devices_.end()) peers.push_back(it->second);
    }
  }
  for (auto& peer : peers)
    if (auto conn = peer->conn.lock()) conn->post([conn, frame] { conn->write(frame); });
}

std::shared_ptr<Peer> Relay::find_peer(const std::string& key) {
  std::lock_guard lock(mu_);
  auto it = devices_.find(key);
  return it == devices_.end() ? nullptr : it->second;
}

void Relay::close_device(const std::string& key, uint16_t code) {
  if (auto peer = find_peer(key)) {
    if (auto conn = peer->conn.lock()) conn->post([conn, code] { conn->close(code); });
    return;
  }
  if (!bus_) return;
  cluster::NodeMessage m;
  m.set_device_key(key);
  m.set_close_code(code);
  route(key, m.SerializeAsString());
}

// ---- cluster mode ----

void Relay::send_to_nodes(std::vector<std::string> keys,
                          std::vector<std::shared_ptr<const wire::Envelope>> envelopes,
                          std::function<void(const std::string& key)> offline) {
  auto k = std::make_shared<std::vector<std::string>>(std::move(keys));
  bus_->locate(*k, [this, k, envelopes = std::move(envelopes),
                    offline = std::move(offline)](std::optional<std::vector<std::string>> nodes) {
    for (size_t i = 0; i < k->size(); ++i) {
      const std::string& key = (*k)[i];
      // A stale claim naming this node means nowhere; an unknown one (the bus is down) may be
      // anywhere: its node polls, and a wake-up is worth the doubt.
      bool elsewhere = nodes && !(*nodes)[i].empty() && (*nodes)[i] != bus_->node();
      if (!elsewhere) {
        if (offline) offline(key);
        continue;
      }
      cluster::NodeMessage m;
      m.set_device_key(key);
      *m.mutable_envelope() = *envelopes[i];
      bus_->send((*nodes)[i], m.SerializeAsString());
    }
  });
}

void Relay::route(const std::string& key, std::string message,
                  std::function<void(bool known)> absent) {
  bus_->locate({key}, [this, message = std::move(message),
                       absent = std::move(absent)](std::optional<std::vector<std::string>> nodes) {
    if (!nodes) {
      if (absent) absent(false);
      return;
    }
    const std::string& node = nodes->front();
    // Its claim naming this node is stale (the device is not here): it is nowhere.
    if (node.empty() || node == bus_->node()) {
      if (absent) absent(true);
      return;
    }
    bus_->send(node, message);
  });
}

Bus::Handlers Relay::bus_handlers() {
  Bus::Handlers h;
  h.message = [this](const std::string& m) { on_bus_message(m); };
  h.presence = [this](const std::string& account, const std::string& update) {
    wire::PresenceUpdate u;
    if (!u.ParseFromString(update)) return;
    presence_to_subscribers(account,
                            push_frame([&](wire::Push& push) { *push.mutable_presence() = u; }));
  };
  h.state = [this](bool up) { on_bus_state(up); };
  h.expired = [this](const std::string& key) { on_claim_expired(key); };
  return h;
}

void Relay::on_bus_message(const std::string& bytes) {
  cluster::NodeMessage m;
  if (!m.ParseFromString(bytes)) {
    log_warn("bus_message_unreadable", {{"bytes", bytes.size()}});
    return;
  }
  const std::string& key = m.device_key();
  switch (m.kind_case()) {
    case cluster::NodeMessage::kEnvelope: {
      auto env = std::make_shared<wire::Envelope>(std::move(*m.mutable_envelope()));
      if (!env->ephemeral()) return deliver(key, std::move(env));
      if (auto peer = find_peer(key))
        if (auto conn = peer->conn.lock()) {
          auto frame = push_frame([&](wire::Push& push) { *push.mutable_envelope() = *env; });
          conn->post([this, conn, frame] { push_ephemeral(*conn, frame); });
        }
      return;
    }
    case cluster::NodeMessage::kWake:
      if (auto peer = find_peer(key))
        if (auto conn = peer->conn.lock())
          conn->post([this, peer] {
            peer->caught_up = false;
            pump(peer);
          });
      return;
    case cluster::NodeMessage::kCloseCode:
      if (auto peer = find_peer(key))
        if (auto conn = peer->conn.lock())
          conn->post([conn, code = static_cast<uint16_t>(m.close_code())] { conn->close(code); });
      return;
    case cluster::NodeMessage::kFrame:
      if (auto peer = find_peer(key))
        if (auto conn = peer->conn.lock()) {
          auto frame = std::make_shared<const std::string>(std::move(*m.mutable_frame()));
          conn->post([conn, frame] { conn->write(frame); });
        }
      return;
    case cluster::NodeMessage::kLinkApproved: {
      const auto& a = m.link_approved();
      std::shared_ptr<Peer> target;
      {
        std::lock_guard lock(mu_);
        auto it = links_.find(a.link_code());
        if (it == links_.end()) return;
        it->second.approved = true;
        it->second.approved_by = Bytes(a.approved_by().begin(), a.approved_by().end());
        target = it->second.peer.lock();
      }
      if (target)
        if (auto conn = target->conn.lock()) {
          auto frame = std::make_shared<const std::string>(a.frame());
          conn->post([conn, frame] { conn->write(frame); });
        }
      return;
    }
    default:
      return;
  }
}

void Relay::on_bus_state(bool up) {
  // Down: what other nodes commit for devices here is not announced; poll (tick()). Back: one
  // more read of every queue, for what was committed while it was down.
  last_poll_ms_ = clock_();
  pump_all_local();
  if (up) log_info("bus_back", {{"action", "read every local device's queue once"}});
}

void Relay::pump_all_local() {
  std::vector<std::shared_ptr<Peer>> peers;
  {
    std::lock_guard lock(mu_);
    for (auto& [k, p] : devices_) peers.push_back(p);
  }
  for (auto& peer : peers)
    if (auto conn = peer->conn.lock())
      conn->post([this, peer] {
        peer->caught_up = false;
        pump(peer);
      });
}

void Relay::on_claim_expired(const std::string& key) {
  // The node that held the device died without releasing it. Every node hears this; the bus
  // lets exactly one find the account offline, and that one announces it.
  bus_->forget(key, [this, key](std::optional<bool> offline) {
    if (!offline || !*offline) return;
    Bytes account(key.begin(), key.begin() + 16);
    auto found = std::make_shared<std::optional<AccountRecord>>();
    uint64_t minute = clock_() / kMinuteMs * kMinuteMs;
    store_.submit(
        [account, found, minute](Store& s) -> Status {
          SOTTO_TRY_ASSIGN(*found, s.find_account(account));
          if (!*found) return {};
          return s.set_last_seen(account, minute, 0, 0);
        },
        [this, account, found, minute](const Status& st) {
          if (!st.ok() || !*found || (*found)->presence_hidden) return;
          wire::PresenceUpdate u;
          u.set_account_id(bytes_str(account));
          u.set_online(false);
          u.set_last_seen_ms(minute);
          presence_changed(account, std::move(u));
        });
  });
}

void Relay::op_remove_device(const std::shared_ptr<Peer>& p, wire::Request& r) {
  const uint64_t id = r.id();
  const int op = r.op();
  uint32_t target = r.remove_device().device_id();
  auto refusal = std::make_shared<std::optional<Refusal>>();
  submit(
      p, id, op,
      [p, target, refusal](Store& s) -> Status {
        refusal->reset();
        SOTTO_TRY_ASSIGN(auto devices, s.list_devices(p->account));
        bool exists = std::any_of(devices.begin(), devices.end(),
                                  [&](const DeviceRecord& d) { return d.device_id == target; });
        if (!exists) {
          *refusal = status_refusal(wire::NOT_FOUND, "the account has no such device");
          return {};
        }
        if (devices.size() == 1) {
          *refusal = status_refusal(wire::FORBIDDEN,
                                    "the last device cannot be removed; use OP_DELETE_ACCOUNT");
          return {};
        }
        SOTTO_TRY_ASSIGN(bool removed, s.remove_device(p->account, target));
        (void)removed;
        return {};
      },
      [this, p, id, op, target, refusal] {
        if (*refusal) return refuse(p, id, op, **refusal);
        wire::Response resp;
        resp.set_id(id);
        resp.set_status(wire::OK);
        answer(p, std::move(resp), op);
        close_device(device_key(p->account, target), 4001);
        devices_changed(p->account);
        store_.submit(
            [this](Store& s) -> Status {
              SOTTO_TRY_ASSIGN(uint64_t total, s.total_queued());
              metrics_.queue_depth = static_cast<int64_t>(total);
              return {};
            },
            nullptr);
      });
}

void Relay::op_delete_account(const std::shared_ptr<Peer>& p, wire::Request& r) {
  const uint64_t id = r.id();
  const int op = r.op();
  if (r.delete_account().confirm_account_id() != bytes_str(p->account)) {
    refuse(p, id, op, bad_request("confirm_account_id is not this account's id"));
    return;
  }
  auto devices = std::make_shared<std::vector<DeviceRecord>>();
  submit(
      p, id, op,
      [p, devices](Store& s) -> Status {
        SOTTO_TRY_ASSIGN(*devices, s.list_devices(p->account));
        return s.delete_account(p->account);
      },
      [this, p, id, op, devices] {
        wire::Response resp;
        resp.set_id(id);
        resp.set_status(wire::OK);
        answer(p, std::move(resp), op);
        log_info("account_deleted");
        bool hidden = false;
        {
          std::lock_guard lock(mu_);
          auto on = online_.find(account_key(p->account));
          if (on != online_.end()) {
            hidden = on->second.hidden;
            on->second.hidden = true;  // nothing more is announced for it
          }
        }
        if (!hidden) {
          wire::PresenceUpdate u;
          u.set_account_id(bytes_str(p->account));
          u.set_online(false);
          presence_changed(p->account, std::move(u));
        }
        for (const auto& d : *devices) close_device(device_key(p->account, d.device_id), 4001);
        store_.submit(
            [this](Store& s) -> Status {
              SOTTO_TRY_ASSIGN(uint64_t total, s.total_queued());
              metrics_.queue_depth = static_cast<int64_t>(total);
              return {};
            },
            nullptr);
      });
}

void Relay::op_lookup_account(const std::shared_ptr<Peer>& p, wire::Request& r) {
  const uint64_t id = r.id();
  const int op = r.op();
  if (uint64_t wait = lookup_device_.take(p->key, clock_())) {
    rate_limited(p, id, op, wait, "lookup_account");
    return;
  }
  const auto& req = r.lookup_account();
  std::string handle;
  Bytes account;
  if (req.key_case() == wire::LookupAccountRequest::kHandle) {
    if (!valid_handle(req.handle()))
      return refuse(p, id, op, bad_request("the handle is not in normalized form"));
    handle = req.handle();
  } else if (req.key_case() == wire::LookupAccountRequest::kAccountId) {
    if (req.account_id().size() != 16)
      return refuse(p, id, op, bad_request("account_id must be 16 bytes"));
    account = Bytes(req.account_id().begin(), req.account_id().end());
  } else {
    return refuse(p, id, op, bad_request("set handle or account_id"));
  }
  auto found = std::make_shared<std::optional<AccountRecord>>();
  submit(
      p, id, op,
      [handle, account, found](Store& s) -> Status {
        if (!handle.empty()) {
          SOTTO_TRY_ASSIGN(*found, s.find_account_by_handle(handle));
        } else {
          SOTTO_TRY_ASSIGN(*found, s.find_account(account));
        }
        return {};
      },
      [this, p, id, op, found] {
        if (!*found) return refuse(p, id, op, status_refusal(wire::NOT_FOUND, "no such account"));
        wire::Response resp;
        resp.set_id(id);
        resp.set_status(wire::OK);
        auto* out = resp.mutable_lookup_account();
        out->set_account_id(bytes_str((*found)->id));
        out->set_handle((*found)->handle);
        out->set_identity_key(bytes_str((*found)->identity_key));
        answer(p, std::move(resp), op);
      });
}

// ---- prekeys ----

void Relay::op_upload_prekeys(const std::shared_ptr<Peer>& p, wire::Request& r) {
  const uint64_t id = r.id();
  const int op = r.op();
  auto req = std::make_shared<wire::UploadPreKeysRequest>(std::move(*r.mutable_upload_prekeys()));
  if (auto bad = check_prekey_upload(*ctx_, bytes_str(p->identity_key), *req, config_.limits))
    return refuse(p, id, op, *bad);
  auto pool = std::make_shared<std::optional<uint32_t>>();
  uint32_t cap = config_.limits.max_prekeys_stored;
  submit(
      p, id, op,
      [p, req, pool, cap](Store& s) -> Status {
        std::vector<wire::OneTimePreKey> keys(req->one_time_prekeys().begin(),
                                              req->one_time_prekeys().end());
        SOTTO_TRY_ASSIGN(
            *pool,
            s.upload_prekeys(
                p->account, p->device, req->has_signed_prekey() ? &req->signed_prekey() : nullptr,
                keys, req->has_last_resort_prekey() ? &req->last_resort_prekey() : nullptr, cap));
        return {};
      },
      [this, p, id, op, pool, cap] {
        if (!*pool)
          return refuse(
              p, id, op,
              status_refusal(wire::LIMIT_REACHED, "the prekey pool would hold more than " +
                                                      std::to_string(cap) + " keys"));
        uint32_t n = **pool;
        if (n >= config_.limits.prekey_low_threshold) {
          if (auto conn = p->conn.lock()) conn->post([p] { p->prekeys_low_sent = false; });
        }
        wire::Response resp;
        resp.set_id(id);
        resp.set_status(wire::OK);
        resp.mutable_upload_prekeys()->set_one_time_prekeys(n);
        answer(p, std::move(resp), op);
      });
}

void Relay::op_get_prekey_count(const std::shared_ptr<Peer>& p, wire::Request& r) {
  const uint64_t id = r.id();
  const int op = r.op();
  auto counts = std::make_shared<PreKeyCounts>();
  submit(
      p, id, op,
      [p, counts](Store& s) -> Status {
        SOTTO_TRY_ASSIGN(*counts, s.prekey_counts(p->account, p->device));
        return {};
      },
      [this, p, id, op, counts] {
        wire::Response resp;
        resp.set_id(id);
        resp.set_status(wire::OK);
        auto* c = resp.mutable_get_prekey_count();
        c->set_one_time_prekeys(counts->one_time);
        c->set_has_last_resort(counts->has_last_resort);
        c->set_signed_prekey_id(counts->signed_prekey_id);
        c->set_signed_prekey_timestamp_ms(counts->signed_prekey_timestamp_ms);
        answer(p, std::move(resp), op);
      });
}

void Relay::maybe_prekeys_low(const std::shared_ptr<Peer>& peer, uint32_t remaining) {
  uint32_t threshold = config_.limits.prekey_low_threshold;
  if (remaining >= threshold) return;
  auto conn = peer->conn.lock();
  if (!conn) return;
  conn->post([peer, conn, remaining, threshold] {
    if (peer->prekeys_low_sent || peer->closed) return;
    peer->prekeys_low_sent = true;
    conn->write(push_frame([&](wire::Push& push) {
      push.mutable_prekeys_low()->set_remaining(remaining);
      push.mutable_prekeys_low()->set_threshold(threshold);
    }));
  });
}

void Relay::op_get_bundles(const std::shared_ptr<Peer>& p, wire::Request& r) {
  const uint64_t id = r.id();
  const int op = r.op();
  const auto& req = r.get_bundles();
  if (req.account_id().size() != 16)
    return refuse(p, id, op, bad_request("account_id must be 16 bytes"));
  Bytes target(req.account_id().begin(), req.account_id().end());
  bool own = target == p->account;
  std::vector<uint32_t> wanted(req.device_ids().begin(), req.device_ids().end());
  {
    std::set<uint32_t> seen;
    for (uint32_t d : wanted) {
      if (!seen.insert(d).second)
        return refuse(p, id, op, bad_request("device id " + std::to_string(d) + " appears twice"));
      if (own && d == p->device)
        return refuse(p, id, op, bad_request("a device does not fetch its own bundle"));
    }
  }
  uint64_t now = clock_();
  if (uint64_t wait = bundles_device_.take(p->key, now))
    return rate_limited(p, id, op, wait, "get_bundles");
  if (uint64_t wait = bundles_target_.take(p->key + account_key(target), now))
    return rate_limited(p, id, op, wait, "get_bundles_target");

  struct State {
    std::optional<Refusal> refusal;
    Bytes identity_key;
    std::vector<wire::PreKeyBundle> bundles;
    std::vector<std::pair<uint32_t, uint32_t>> low;  // device, remaining
  };
  auto st = std::make_shared<State>();
  uint32_t caller = own ? p->device : 0;
  uint32_t threshold = config_.limits.prekey_low_threshold;
  submit(
      p, id, op,
      [st, target, wanted, caller, threshold](Store& s) -> Status {
        *st = State{};
        SOTTO_TRY_ASSIGN(auto account, s.find_account(target));
        if (!account) {
          st->refusal = status_refusal(wire::NOT_FOUND, "no such account");
          return {};
        }
        SOTTO_TRY_ASSIGN(auto devices, s.list_devices(target));
        std::vector<const DeviceRecord*> chosen;
        if (wanted.empty()) {
          for (const auto& d : devices)
            if (d.device_id != caller) chosen.push_back(&d);
        } else {
          for (uint32_t w : wanted) {
            auto it = std::find_if(devices.begin(), devices.end(),
                                   [&](const DeviceRecord& d) { return d.device_id == w; });
            if (it == devices.end()) {
              st->refusal =
                  status_refusal(wire::NOT_FOUND, "the account has no device " + std::to_string(w));
              return {};
            }
            chosen.push_back(&*it);
          }
          std::sort(chosen.begin(), chosen.end(),
                    [](auto* a, auto* b) { return a->device_id < b->device_id; });
        }
        for (const DeviceRecord* d : chosen) {
          SOTTO_TRY_ASSIGN(TakenPreKey taken, s.take_prekey(target, d->device_id));
          wire::PreKeyBundle b;
          b.set_registration_id(d->registration_id);
          b.set_device_id(d->device_id);
          b.set_identity_key(bytes_str(account->identity_key));
          *b.mutable_signed_prekey() = d->signed_prekey;
          if (taken.key) *b.mutable_one_time_prekey() = *taken.key;
          b.set_last_resort(taken.last_resort);
          st->bundles.push_back(std::move(b));
          if (taken.key && !taken.last_resort && taken.remaining < threshold)
            st->low.emplace_back(d->device_id, taken.remaining);
        }
        return {};
      },
      [this, p, id, op, st, target] {
        if (st->refusal) return refuse(p, id, op, *st->refusal);
        wire::Response resp;
        resp.set_id(id);
        resp.set_status(wire::OK);
        auto* out = resp.mutable_get_bundles();
        out->set_account_id(bytes_str(target));
        for (auto& b : st->bundles) *out->add_bundles() = std::move(b);
        answer(p, std::move(resp), op);
        for (auto [device, remaining] : st->low)
          if (auto peer = find_peer(device_key(target, device))) maybe_prekeys_low(peer, remaining);
      });
}

// ---- messages ----

void Relay::op_send(const std::shared_ptr<Peer>& p, wire::Request& r, bool multi) {
  const uint64_t id = r.id();
  const int op = r.op();
  const Limits& l = config_.limits;

  struct Target {
    Bytes account;
    uint32_t device;
    uint32_t registration_id;
    wire::Envelope::Type type;
  };
  auto send = std::make_shared<NewSend>();
  std::vector<Target> targets;
  bool ephemeral, urgent, targeted;
  std::string message_id;
  if (!multi) {
    auto& req = *r.mutable_send();
    message_id = req.message_id();
    ephemeral = req.ephemeral();
    urgent = req.urgent();
    targeted = req.targeted();
    send->batch = req.batch();
    if (req.messages_size() == 0) return refuse(p, id, op, bad_request("no messages"));
    if (static_cast<uint32_t>(req.messages_size()) > l.max_send_messages)
      return refuse(p, id, op,
                    too_large_items("too many messages in one send", l.max_send_messages));
    for (auto& m : *req.mutable_messages()) {
      if (m.account_id().size() != 16)
        return refuse(p, id, op, bad_request("every account_id must be 16 bytes"));
      if (m.type() == wire::Envelope::TYPE_UNSPECIFIED || !wire::Envelope::Type_IsValid(m.type()))
        return refuse(p, id, op, bad_request("every message needs a type"));
      if (m.ciphertext().empty()) return refuse(p, id, op, bad_request("empty ciphertext"));
      if (m.ciphertext().size() > l.max_envelope_bytes)
        return refuse(p, id, op,
                      too_large_bytes("a ciphertext is too large", l.max_envelope_bytes));
      targets.push_back(Target{Bytes(m.account_id().begin(), m.account_id().end()), m.device_id(),
                               m.registration_id(), m.type()});
      QueuedCopy c;
      c.account_id = targets.back().account;
      c.device_id = m.device_id();
      c.ciphertext = Bytes(m.ciphertext().begin(), m.ciphertext().end());
      send->copies.push_back(std::move(c));
      send->copy_types.push_back(m.type());
    }
  } else {
    auto& req = *r.mutable_send_multi();
    message_id = req.message_id();
    ephemeral = req.ephemeral();
    urgent = req.urgent();
    targeted = false;
    send->batch = req.batch();
    if (req.recipients_size() == 0) return refuse(p, id, op, bad_request("no recipients"));
    if (static_cast<uint32_t>(req.recipients_size()) > l.max_send_multi_devices)
      return refuse(
          p, id, op,
          too_large_items("too many recipients in one send_multi", l.max_send_multi_devices));
    if (req.type() == wire::Envelope::TYPE_UNSPECIFIED || !wire::Envelope::Type_IsValid(req.type()))
      return refuse(p, id, op, bad_request("type is required"));
    if (req.ciphertext().empty()) return refuse(p, id, op, bad_request("empty ciphertext"));
    size_t longest = 0;
    for (const auto& m : req.recipients()) {
      if (m.account_id().size() != 16)
        return refuse(p, id, op, bad_request("every account_id must be 16 bytes"));
      if (m.header().size() > l.max_multi_header_bytes)
        return refuse(p, id, op,
                      too_large_bytes("a recipient header is too large", l.max_multi_header_bytes));
      longest = std::max(longest, m.header().size());
      targets.push_back(Target{Bytes(m.account_id().begin(), m.account_id().end()), m.device_id(),
                               m.registration_id(), req.type()});
      QueuedCopy c;
      c.account_id = targets.back().account;
      c.device_id = m.device_id();
      c.header = Bytes(m.header().begin(), m.header().end());
      send->copies.push_back(std::move(c));
    }
    if (req.ciphertext().size() + longest > l.max_envelope_bytes)
      return refuse(p, id, op,
                    too_large_bytes("the ciphertext plus the longest header is too "
                                    "large",
                                    l.max_envelope_bytes));
    send->type = req.type();
    send->shared_ciphertext = Bytes(req.ciphertext().begin(), req.ciphertext().end());
  }
  if (message_id.size() != 16) return refuse(p, id, op, bad_request("message_id must be 16 bytes"));
  {
    std::set<std::string> seen;
    for (const auto& t : targets) {
      std::string k = device_key(t.account, t.device);
      if (!seen.insert(k).second)
        return refuse(p, id, op, bad_request("a recipient device appears twice"));
      if (t.account == p->account && t.device == p->device)
        return refuse(p, id, op, bad_request("a device does not send to itself"));
    }
  }
  uint64_t now = clock_();
  if (uint64_t wait = send_device_.take(p->key, now)) return rate_limited(p, id, op, wait, "send");

  if (ephemeral) {
    // Forward to whichever named devices are connected; nothing is stored or checked.
    std::vector<std::string> remote_keys;
    std::vector<std::shared_ptr<const wire::Envelope>> remote;
    for (size_t i = 0; i < targets.size(); ++i) {
      auto peer = find_peer(device_key(targets[i].account, targets[i].device));
      if (!peer && !bus_) continue;
      auto env = std::make_shared<wire::Envelope>();
      env->set_type(targets[i].type);
      env->set_sender_account_id(bytes_str(p->account));
      env->set_sender_device_id(p->device);
      env->set_recipient_device_id(targets[i].device);
      env->set_message_id(message_id);
      env->set_server_timestamp_ms(now);
      env->set_ciphertext(multi ? bytes_str(send->shared_ciphertext)
                                : bytes_str(send->copies[i].ciphertext));
      if (!send->copies[i].header.empty()) env->set_header(bytes_str(send->copies[i].header));
      env->set_ephemeral(true);
      env->set_urgent(urgent);
      if (!peer) {  // perhaps on another node
        remote_keys.push_back(device_key(targets[i].account, targets[i].device));
        remote.push_back(std::move(env));
        continue;
      }
      if (auto conn = peer->conn.lock()) {
        auto frame = push_frame([&](wire::Push& push) { *push.mutable_envelope() = *env; });
        conn->post([this, conn, frame] { push_ephemeral(*conn, frame); });
      }
    }
    if (!remote.empty()) send_to_nodes(std::move(remote_keys), std::move(remote), nullptr);
    wire::Response resp;
    resp.set_id(id);
    resp.set_status(wire::OK);
    (multi ? resp.mutable_send_multi() : resp.mutable_send())->set_server_timestamp_ms(now);
    return answer(p, std::move(resp), op);
  }

  send->sender_account = p->account;
  send->sender_device = p->device;
  send->message_id = Bytes(message_id.begin(), message_id.end());
  send->urgent = urgent;
  send->server_timestamp_ms = now;
  send->expires_at_ms = now + l.envelope_ttl_ms;

  struct State {
    std::optional<Refusal> refusal;
    wire::DeviceMismatch mismatch;
    bool stale = false;
    bool duplicate = false;
    uint64_t timestamp = 0;
    std::vector<uint64_t> sequences;
    std::map<std::string, std::string> push_urls;  // device key -> url
  };
  auto st = std::make_shared<State>();
  auto tg = std::make_shared<std::vector<Target>>(std::move(targets));
  const uint64_t max_queue = l.max_queue_envelopes, max_bytes = l.max_queue_bytes;
  submit(
      p, id, op,
      [st, tg, send, p, urgent, targeted, max_queue, max_bytes](Store& s) -> Status {
        *st = State{};
        SOTTO_TRY_ASSIGN(auto prior, s.find_send(send->sender_account, send->sender_device,
                                                 send->message_id, send->batch));
        if (prior) {
          st->duplicate = true;
          st->timestamp = prior->server_timestamp_ms;
          return {};
        }
        // Accounts in order of first appearance, with what the request names for each.
        std::vector<Bytes> accounts;
        std::map<Bytes, std::map<uint32_t, uint32_t>> named;  // account -> device -> reg id
        for (const auto& t : *tg) {
          if (!named.count(t.account)) accounts.push_back(t.account);
          named[t.account][t.device] = t.registration_id;
        }
        bool own_named = named.count(p->account) > 0;
        std::map<Bytes, std::vector<DeviceRecord>> current;
        for (const auto& a : accounts) {
          SOTTO_TRY_ASSIGN(auto account, s.find_account(a));
          if (!account) {
            st->refusal =
                status_refusal(wire::NOT_FOUND, "account " + to_hex(a) + " does not exist");
            return {};
          }
          SOTTO_TRY_ASSIGN(current[a], s.list_devices(a));
        }
        if (urgent && !targeted && send->batch == 0 && !own_named) {
          SOTTO_TRY_ASSIGN(auto mine, s.list_devices(p->account));
          wire::DeviceMismatch::Account entry;
          entry.set_account_id(bytes_str(p->account));
          for (const auto& d : mine)
            if (d.device_id != p->device) entry.add_missing_devices(d.device_id);
          if (entry.missing_devices_size() > 0) {
            *st->mismatch.add_accounts() = std::move(entry);
            st->stale = true;
          }
        }
        for (const auto& a : accounts) {
          const auto& devs = current[a];
          const auto& want = named[a];
          wire::DeviceMismatch::Account entry;
          entry.set_account_id(bytes_str(a));
          bool differs = false;
          for (const auto& d : devs) {
            auto it = want.find(d.device_id);
            if (it == want.end()) {
              if (a == p->account && d.device_id == p->device) continue;
              entry.add_missing_devices(d.device_id);
              if (!targeted) differs = true;
            } else if (it->second != d.registration_id) {
              entry.add_stale_devices(d.device_id);
              differs = true;
            }
          }
          for (const auto& named_device : want) {
            uint32_t dev = named_device.first;  // clang 14 cannot capture a structured binding
            bool exists = std::any_of(devs.begin(), devs.end(),
                                      [&](const DeviceRecord& d) { return d.device_id == dev; });
            if (!exists) {
              entry.add_extra_devices(dev);
              differs = true;
            }
          }
          if (differs) {
            *st->mismatch.add_accounts() = std::move(entry);
            st->stale = true;
          }
        }
        if (st->stale) return {};
        for (const auto& c : send->copies) {
          uint64_t bytes =
              (c.ciphertext.empty() ? send->shared_ciphertext.size() : c.ciphertext.size()) +
              c.header.size();
          for (const auto& d : current[c.account_id]) {
            if (d.device_id != c.device_id) continue;
            if (d.queue_length >= max_queue || d.queue_bytes + bytes > max_bytes) {
              st->refusal = status_refusal(
                  wire::LIMIT_REACHED,
                  "the queue of recipient device " + to_hex(c.account_id) + "." +
                      std::to_string(c.device_id) +
                      " is full (envelopes or bytes); retry later, when it has been drained");
              return {};
            }
            if (!d.push_url.empty())
              st->push_urls[device_key(c.account_id, c.device_id)] = d.push_url;
          }
        }
        SOTTO_TRY(s.enqueue(*send, &st->sequences));
        st->timestamp = send->server_timestamp_ms;
        return {};
      },
      [this, p, id, op, st, send, multi] {
        if (st->refusal) return refuse(p, id, op, *st->refusal);
        wire::Response resp;
        resp.set_id(id);
        if (st->stale) {
          resp.set_status(wire::STALE_DEVICES);
          resp.set_message(
              "the send does not match the recipients' current devices; refresh "
              "them and resend with the same message id");
          *resp.mutable_stale_devices() = std::move(st->mismatch);
          return answer(p, std::move(resp), op);
        }
        resp.set_status(wire::OK);
        (multi ? resp.mutable_send_multi() : resp.mutable_send())
            ->set_server_timestamp_ms(st->timestamp);
        answer(p, std::move(resp), op);
        if (st->duplicate) return;
        size_t n = send->copies.size();
        metrics_.envelopes_queued.fetch_add(n, std::memory_order_relaxed);
        metrics_.queue_depth.fetch_add(static_cast<int64_t>(n), std::memory_order_relaxed);
        std::string sender = bytes_str(send->sender_account);
        std::string mid = bytes_str(send->message_id);
        std::string shared = bytes_str(send->shared_ciphertext);
        std::vector<std::string> remote_keys;
        std::vector<std::shared_ptr<const wire::Envelope>> remote;
        for (size_t i = 0; i < n; ++i) {
          const QueuedCopy& c = send->copies[i];
          auto env = std::make_shared<wire::Envelope>();
          env->set_type(send->copy_types.empty() ? send->type : send->copy_types[i]);
          env->set_sender_account_id(sender);
          env->set_sender_device_id(send->sender_device);
          env->set_recipient_device_id(c.device_id);
          env->set_message_id(mid);
          env->set_server_timestamp_ms(send->server_timestamp_ms);
          env->set_sequence(st->sequences[i]);
          env->set_ciphertext(multi ? shared : bytes_str(c.ciphertext));
          if (!c.header.empty()) env->set_header(bytes_str(c.header));
          env->set_urgent(send->urgent);
          std::string key = device_key(c.account_id, c.device_id);
          if (find_peer(key)) {
            deliver(key, std::move(env));
            continue;
          }
          remote_keys.push_back(std::move(key));
          remote.push_back(std::move(env));
        }
        // Devices not connected here: on another node, or offline (a wake-up, if urgent).
        auto offline = [this, send, st](const std::string& key) {
          auto url = st->push_urls.find(key);
          if (!send->urgent || url == st->push_urls.end()) return;
          Bytes account(key.begin(), key.begin() + 16);
          uint32_t device = 0;
          for (int b = 0; b < 4; ++b)
            device |= static_cast<uint32_t>(static_cast<uint8_t>(key[16 + b])) << (8 * b);
          wake(account, device, url->second);
        };
        if (!bus_) {
          for (const auto& key : remote_keys) offline(key);
          return;
        }
        send_to_nodes(std::move(remote_keys), std::move(remote), offline);
      });
}

void Relay::deliver(const std::string& key, std::shared_ptr<const wire::Envelope> env) {
  auto peer = find_peer(key);
  if (!peer) return;
  auto conn = peer->conn.lock();
  if (!conn) return;
  conn->post([this, peer, conn, env] {
    if (peer->closed || env->sequence() <= peer->last_pushed) return;
    if (peer->fetching) {
      peer->missed_live = true;
      return;
    }
    // Pushed at once only when it is the next of the queue: committed on another node, an
    // envelope may arrive here before one committed earlier, which the store then gives first.
    if (peer->caught_up && env->sequence() == peer->last_pushed + 1 &&
        peer->unacked.size() < config_.limits.max_unacked_envelopes && !hold_back(peer, *conn)) {
      push_envelope(*peer, *conn, *env);
      return;
    }
    peer->caught_up = false;
    pump(peer);
  });
}

void Relay::push_ephemeral(Connection& conn, std::shared_ptr<const std::string> frame) {
  // A flood of ephemeral envelopes must never make a recipient look like a slow reader (1008)
  // nor delay its stored envelopes: past the same backlog at which stored envelopes wait
  // (hold_back), ephemeral ones are dropped, as their senders are told they may be.
  if (conn.queued_bytes() + frame->size() > config_.limits.max_outgoing_bytes / 2) {
    metrics_.envelopes_ephemeral_dropped.fetch_add(1, std::memory_order_relaxed);
    return;
  }
  metrics_.envelopes_ephemeral.fetch_add(1, std::memory_order_relaxed);
  conn.write(std::move(frame));
}

void Relay::push_envelope(Peer& peer, Connection& conn, const wire::Envelope& env) {
  peer.last_pushed = env.sequence();
  peer.unacked.push_back(env.sequence());  // above every earlier push: still ascending
  metrics_.envelopes_pushed.fetch_add(1, std::memory_order_relaxed);
  conn.write(push_frame([&](wire::Push& push) { *push.mutable_envelope() = env; }));
}

bool Relay::hold_back(const std::shared_ptr<Peer>& peer, Connection& conn) {
  // Envelopes wait in storage while half the outgoing budget is queued, so a backlog never
  // pushes a reading client over the slow-reader limit; only a client that stops reading
  // (no write progress, see --write-timeout-ms) is cut off.
  uint64_t soft = config_.limits.max_outgoing_bytes / 2;
  if (conn.queued_bytes() < soft) return false;
  peer->caught_up = false;
  if (!peer->waiting_drain) {
    peer->waiting_drain = true;
    conn.when_below(soft, [this, peer] {
      peer->waiting_drain = false;
      pump(peer);
    });
  }
  return true;
}

// NB: on the peer's strand.
void Relay::pump(const std::shared_ptr<Peer>& peer) {
  if (peer->closed || peer->fetching || peer->caught_up || peer->waiting_drain) return;
  size_t window = config_.limits.max_unacked_envelopes;
  if (peer->unacked.size() >= window) return;
  {
    auto conn = peer->conn.lock();
    if (!conn || hold_back(peer, *conn)) return;
  }
  uint32_t room = static_cast<uint32_t>(window - peer->unacked.size());
  peer->fetching = true;
  peer->missed_live = false;
  uint64_t after = peer->last_pushed;
  uint64_t now = clock_();
  uint64_t ttl = config_.limits.envelope_ttl_ms;
  auto loaded = std::make_shared<std::vector<wire::Envelope>>();
  auto full = std::make_shared<bool>(false);
  bool ok = store_.submit(
      [peer, after, room, loaded, full, now, ttl](Store& s) -> Status {
        SOTTO_TRY_ASSIGN(*loaded, s.load_queue(peer->account, peer->device, after, room));
        *full = loaded->size() == room;
        // Envelopes past their TTL are never delivered, even before the sweep deletes them.
        std::erase_if(*loaded, [now, ttl](const wire::Envelope& e) {
          return e.server_timestamp_ms() + ttl <= now;
        });
        return {};
      },
      [this, peer, loaded, full](const Status& st) {
        auto conn = peer->conn.lock();
        if (!conn) return;
        conn->post([this, peer, conn, loaded, full, ok = st.ok()] {
          peer->fetching = false;
          if (peer->closed || !ok) return;
          bool held = false;
          for (const auto& e : *loaded) {
            if (e.sequence() <= peer->last_pushed) continue;
            if (hold_back(peer, *conn)) {
              held = true;  // the rest is fetched again once the socket drains
              break;
            }
            push_envelope(*peer, *conn, e);
          }
          if (held) {
            peer->missed_live = false;
            return;
          }
          if (!*full) {
            peer->caught_up = !peer->missed_live;
            if (!peer->queue_empty_sent) {
              peer->queue_empty_sent = true;
              conn->write(push_frame([&](wire::Push& push) {
                push.mutable_queue_empty()->set_last_sequence(peer->last_pushed);
              }));
            }
          }
          peer->missed_live = false;
          pump(peer);
        });
      });
  if (!ok) peer->fetching = false;
}

void Relay::op_ack(const std::shared_ptr<Peer>& p, wire::Request& r) {
  const uint64_t id = r.id();
  const int op = r.op();
  const auto& seqs = r.ack().sequences();
  if (seqs.empty()) return refuse(p, id, op, bad_request("no sequence numbers"));
  if (static_cast<uint32_t>(seqs.size()) > config_.limits.max_ack_sequences)
    return refuse(p, id, op,
                  too_large_items("too many sequence numbers", config_.limits.max_ack_sequences));
  auto list = std::make_shared<std::vector<uint64_t>>(seqs.begin(), seqs.end());
  auto deleted = std::make_shared<uint64_t>(0);
  submit(
      p, id, op,
      [p, list, deleted](Store& s) -> Status {
        SOTTO_TRY_ASSIGN(*deleted, s.ack(p->account, p->device, *list));
        return {};
      },
      [this, p, id, op, list, deleted] {
        metrics_.envelopes_acked.fetch_add(*deleted, std::memory_order_relaxed);
        metrics_.queue_depth.fetch_sub(static_cast<int64_t>(*deleted), std::memory_order_relaxed);
        wire::Response resp;
        resp.set_id(id);
        resp.set_status(wire::OK);
        answer(p, std::move(resp), op);
        if (auto conn = p->conn.lock()) {
          conn->post([this, p, list] {
            for (uint64_t s : *list) {
              auto it = std::lower_bound(p->unacked.begin(), p->unacked.end(), s);
              if (it != p->unacked.end() && *it == s) p->unacked.erase(it);
            }
            if (p->unacked.empty()) p->unacked.shrink_to_fit();  // an idle connection keeps none
            pump(p);
          });
        }
      });
}

// ---- presence ----

void Relay::presence_changed(const Bytes& account, wire::PresenceUpdate update) {
  if (bus_) {
    // Subscribers on every node, this one included, hear it from the bus.
    bus_->publish_presence(account_key(account), update.SerializeAsString());
    return;
  }
  presence_to_subscribers(account_key(account),
                          push_frame([&](wire::Push& push) { *push.mutable_presence() = update; }));
}

void Relay::presence_to_subscribers(const std::string& account,
                                    std::shared_ptr<const std::string> frame) {
  std::vector<std::shared_ptr<Peer>> subs;
  {
    std::lock_guard lock(mu_);
    auto it = subscribers_.find(account);
    if (it == subscribers_.end()) return;
    subs.reserve(it->second.size());
    for (const auto& sub : it->second) subs.push_back(sub);
  }
  for (const auto& sub : subs) {
    std::shared_ptr<Connection> conn = sub->conn.lock();
    if (!conn) continue;
    conn->post([conn, frame] { conn->write(frame); });
  }
}

void Relay::op_presence_subscribe(const std::shared_ptr<Peer>& p, wire::Request& r) {
  const uint64_t id = r.id();
  const int op = r.op();
  const auto& ids = r.presence_subscribe().account_ids();
  if (static_cast<uint32_t>(ids.size()) > config_.limits.max_presence_subscriptions)
    return refuse(p, id, op,
                  too_large_items("too many accounts in one subscription list",
                                  config_.limits.max_presence_subscriptions));
  std::vector<Bytes> wanted;
  for (const auto& a : ids) {
    if (a.size() != 16) return refuse(p, id, op, bad_request("every account id must be 16 bytes"));
    Bytes b(a.begin(), a.end());
    if (std::find(wanted.begin(), wanted.end(), b) == wanted.end()) wanted.push_back(std::move(b));
  }
  if (uint64_t wait = presence_device_.take(p->key, clock_()))
    return rate_limited(p, id, op, wait, "presence_subscribe");

  struct Entry {
    Bytes account;
    bool online = false;
    bool known = false;
  };
  auto entries = std::make_shared<std::vector<Entry>>();
  {
    std::lock_guard lock(mu_);
    for (const auto& a : p->subscriptions) {
      auto it = subscribers_.find(account_key(a));
      if (it == subscribers_.end()) continue;
      it->second.erase(p);
      if (it->second.empty()) subscribers_.erase(it);
      if (bus_) bus_->listen_presence(account_key(a), false);
    }
    p->subscriptions = wanted;
    for (const auto& a : wanted) {
      subscribers_[account_key(a)].insert(p);
      if (bus_) bus_->listen_presence(account_key(a), true);
      Entry e;
      e.account = a;
      auto on = online_.find(account_key(a));
      if (on != online_.end()) {
        e.known = true;
        e.online = !on->second.hidden;
      }
      entries->push_back(std::move(e));
    }
  }
  auto seen = std::make_shared<std::vector<uint64_t>>();
  auto respond = [this, p, id, op, entries, seen] {
    submit(
        p, id, op,
        [entries, seen](Store& s) -> Status {
          seen->assign(entries->size(), 0);
          for (size_t i = 0; i < entries->size(); ++i) {
            Entry& e = (*entries)[i];
            if (e.known && !e.online) continue;  // online elsewhere, but hidden here
            SOTTO_TRY_ASSIGN(auto a, s.find_account(e.account));
            if (a && a->presence_hidden) {  // the cluster's answer, checked against the store
              e.known = true;
              e.online = false;
            }
            if (!e.known && a && !a->presence_hidden) (*seen)[i] = a->last_seen_ms;
          }
          return {};
        },
        [this, p, id, op, entries, seen] {
        wire::Response resp;
        resp.set_id(id);
        resp.set_status(wire::OK);
        auto* out = resp.mutable_presence_subscribe();
        for (size_t i = 0; i < entries->size(); ++i) {
          auto* u = out->add_current();
          u->set_account_id(bytes_str((*entries)[i].account));
          u->set_online((*entries)[i].online);
          if (!(*entries)[i].known) u->set_last_seen_ms((*seen)[i]);
        }
        answer(p, std::move(resp), op);
        });
  };
  if (!bus_) return respond();
  // Which accounts have a device connected anywhere in the cluster.
  std::vector<std::string> accounts;
  for (const auto& e : *entries) accounts.push_back(account_key(e.account));
  bus_->online(std::move(accounts),
               [entries, respond](std::optional<std::vector<bool>> online) {
                 if (online)  // else (the bus is down): what this node knows
                   for (size_t i = 0; i < entries->size(); ++i) {
                     (*entries)[i].known = (*online)[i];
                     (*entries)[i].online = (*online)[i];
                   }
                 respond();
               });
}

void Relay::op_presence_visibility(const std::shared_ptr<Peer>& p, wire::Request& r) {
  const uint64_t id = r.id();
  const int op = r.op();
  bool hidden = r.presence_visibility().hidden();
  auto last_seen = std::make_shared<uint64_t>(0);
  submit(
      p, id, op,
      [p, hidden, last_seen](Store& s) -> Status {
        SOTTO_TRY(s.set_presence_hidden(p->account, hidden));
        SOTTO_TRY_ASSIGN(auto a, s.find_account(p->account));
        *last_seen = a ? a->last_seen_ms : 0;
        return {};
      },
      [this, p, id, op, hidden, last_seen] {
        bool online = false;
        {
          std::lock_guard lock(mu_);
          auto on = online_.find(account_key(p->account));
          if (on != online_.end()) {
            on->second.hidden = hidden;
            online = true;
          }
        }
        wire::Response resp;
        resp.set_id(id);
        resp.set_status(wire::OK);
        answer(p, std::move(resp), op);
        wire::PresenceUpdate u;
        u.set_account_id(bytes_str(p->account));
        if (!hidden) {
          u.set_online(online);
          if (!online) u.set_last_seen_ms(*last_seen);
        }
        presence_changed(p->account, std::move(u));
      });
}

// ---- push endpoints and wake-ups ----

void Relay::op_set_push_endpoint(const std::shared_ptr<Peer>& p, wire::Request& r) {
  const uint64_t id = r.id();
  const int op = r.op();
  std::string url = r.set_push_endpoint().url();
  const bool clear = r.set_push_endpoint().clear();
  if (clear && !url.empty())
    return refuse(p, id, op, bad_request("set either url or clear, not both"));
  if (!clear && url.empty())
    return refuse(p, id, op, bad_request("url is empty; set clear to remove the endpoint"));
  if (!clear) {
    Refusal why;
    if (!parse_push_url(url, config_.push_allow_http, config_.push_allow_private,
                        config_.limits.max_push_url_bytes, why))
      return refuse(p, id, op, why);
  }
  submit(
      p, id, op,
      [p, url](Store& s) -> Status { return s.set_push_url(p->account, p->device, url); },
      [this, p, id, op] {
        wire::Response resp;
        resp.set_id(id);
        resp.set_status(wire::OK);
        answer(p, std::move(resp), op);
      });
}

void Relay::wake(const Bytes& account, uint32_t device, const std::string& url) {
  // On the writer thread, while the Server may clear the pusher as it stops: read it once.
  Pusher* pusher = pusher_.load();
  if (!pusher) return;
  std::string key = device_key(account, device);
  uint64_t now = clock_();
  {
    std::lock_guard lock(mu_);
    auto [it, fresh] = last_wake_.try_emplace(key, now);
    if (!fresh) {
      if (now < it->second + config_.push_coalesce_ms) {
        metrics_.wakeups_coalesced.fetch_add(1, std::memory_order_relaxed);
        return;
      }
      it->second = now;
    }
  }
  pusher->wake(url, [this, account, device, url](int status) {
    if (status >= 200 && status < 300) {
      metrics_.wakeups_sent.fetch_add(1, std::memory_order_relaxed);
      return;
    }
    metrics_.wakeups_failed.fetch_add(1, std::memory_order_relaxed);
    if (status == 404 || status == 410) {
      // The endpoint is gone for good: forget it unless the device set a new one meanwhile.
      store_.submit(
          [account, device, url](Store& s) -> Status {
            SOTTO_TRY_ASSIGN(auto d, s.find_device(account, device));
            if (d && d->push_url == url) return s.set_push_url(account, device, "");
            return {};
          },
          nullptr);
    }
  });
}

// ---- attachments ----

void Relay::op_attachment_upload(const std::shared_ptr<Peer>& p, wire::Request& r) {
  const uint64_t id = r.id();
  const int op = r.op();
  uint64_t size = r.attachment_upload().size_bytes();
  const Limits& l = config_.limits;
  if (size == 0) return refuse(p, id, op, bad_request("size_bytes must be at least 1"));
  if (size > l.attachment_max_bytes)
    return refuse(p, id, op,
                  too_large_bytes("the attachment is larger than this relay accepts",
                                  l.attachment_max_bytes));
  uint64_t now = clock_();
  std::string acct = account_key(p->account);
  if (uint64_t wait = attachment_account_.take(acct, now))
    return rate_limited(p, id, op, wait, "attachment_upload");
  if (uint64_t wait = attachment_bytes_.take(acct, now, static_cast<double>(size)))
    return rate_limited(p, id, op, wait, "attachment_bytes");
  AttachmentRecord slot;
  slot.id = random_hex(16);
  slot.account_id = p->account;
  slot.device_id = p->device;
  slot.size_bytes = size;
  slot.upload_expires_at_ms = now + l.attachment_slot_ms;
  submit(
      p, id, op, [slot](Store& s) -> Status { return s.create_attachment(slot); },
      [this, p, id, op, slot] {
        wire::Response resp;
        resp.set_id(id);
        resp.set_status(wire::OK);
        auto* out = resp.mutable_attachment_upload();
        out->set_attachment_id(slot.id);
        out->set_path("/v1/attachments/" + slot.id);
        out->set_upload_expires_at_ms(slot.upload_expires_at_ms);
        out->set_retention_ms(config_.limits.attachment_retention_ms);
        out->set_max_bytes(config_.limits.attachment_max_bytes);
        answer(p, std::move(resp), op);
      });
}

// ---- housekeeping ----

void Relay::end_link(const std::string& code, uint16_t close_code) {
  std::shared_ptr<Peer> peer;
  {
    std::lock_guard lock(mu_);
    auto it = links_.find(code);
    if (it == links_.end()) return;
    peer = it->second.peer.lock();
    links_.erase(it);
  }
  if (bus_) bus_->link_close(code);
  if (peer)
    if (auto conn = peer->conn.lock())
      conn->post([peer, conn, close_code] {
        peer->link_code.clear();
        conn->close(close_code);
      });
}

void Relay::apply_operator_actions() {
  if (actions_polling_.exchange(true)) return;
  auto actions = std::make_shared<std::vector<OperatorAction>>();
  uint64_t after = actions_seq_;
  bool queued = store_.submit(
      [actions, after](Store& s) -> Status {
        SOTTO_TRY_ASSIGN(*actions, s.actions_since(after));
        return {};
      },
      [this, actions](const Status& st) {
        actions_polling_ = false;
        if (!st.ok()) return;
        for (const OperatorAction& a : *actions) {
          actions_seq_ = std::max<uint64_t>(actions_seq_, a.seq);
          if (a.kind == OperatorAction::kUnsuspended) continue;
          std::vector<uint32_t> devices;
          {
            std::lock_guard lock(mu_);
            auto on = online_.find(account_key(a.account));
            if (on != online_.end()) devices.assign(on->second.devices.begin(),
                                                    on->second.devices.end());
          }
          uint16_t code = a.kind == OperatorAction::kSuspended ? 4003 : 4001;
          for (uint32_t d : devices) {
            std::string key = device_key(a.account, d);
            if (auto peer = find_peer(key))
              if (auto conn = peer->conn.lock()) conn->post([conn, code] { conn->close(code); });
          }
          if (!devices.empty())
            log_info("operator_action_applied",
                     {{"action", a.kind == OperatorAction::kSuspended ? "suspended" : "deleted"},
                      {"connections_closed", devices.size()}});
        }
      });
  if (!queued) actions_polling_ = false;
}

void Relay::tick() {
  uint64_t now = clock_();
  // What an operator did with `sotto-relay admin` (in another process, or on another node).
  if (now >= last_actions_ms_ + kOperatorPollMs) {
    last_actions_ms_ = now;
    apply_operator_actions();
  }
  // Cluster mode without its bus: nothing announces what other nodes commit for devices here,
  // so each reads its queue every poll interval (a bounded delay instead of none).
  if (bus_ && !bus_->up() && now >= last_poll_ms_ + kBusDownPollMs) {
    last_poll_ms_ = now;
    pump_all_local();
  }
  std::vector<std::string> expired;
  bool run_expiry = false;
  {
    std::lock_guard lock(mu_);
    for (auto& [code, ch] : links_)
      if (ch.expires_at_ms <= now) expired.push_back(code);
    if (now >= last_expiry_ms_ + config_.expiry_interval_ms) {
      last_expiry_ms_ = now;
      run_expiry = true;
    }
    for (auto it = last_wake_.begin(); it != last_wake_.end();)
      it = now >= it->second + config_.push_coalesce_ms ? last_wake_.erase(it) : std::next(it);
  }
  for (const auto& code : expired) end_link(code, 4000);
  if (!run_expiry) return;
  for (RateLimiter* rl :
       {&upgrade_ip_, &register_ip_, &provision_ip_, &provision_lookup_account_, &lookup_device_,
        &bundles_device_, &bundles_target_, &send_device_, &presence_device_, &attachment_account_,
        &attachment_bytes_, &download_device_})
    rl->sweep(now);
  auto result = std::make_shared<ExpiryResult>();
  auto total = std::make_shared<uint64_t>(0);
  store_.submit(
      [now, result, total](Store& s) -> Status {
        SOTTO_TRY_ASSIGN(*result, s.expire(now));
        SOTTO_TRY_ASSIGN(*total, s.total_queued());
        return {};
      },
      [this, result, total](const Status& st) {
        if (!st.ok()) return;
        metrics_.envelopes_expired.fetch_add(result->envelopes, std::memory_order_relaxed);
        metrics_.queue_depth = static_cast<int64_t>(*total);
        for (const auto& id : result->attachments) {
          std::error_code ec;
          std::filesystem::remove(attachment_path(id), ec);
        }
        if (result->envelopes || !result->attachments.empty())
          log_info("expired",
                   {{"envelopes", result->envelopes}, {"attachments", result->attachments.size()}});
      });
}

void Relay::close_all(uint16_t code) {
  std::vector<std::shared_ptr<Peer>> peers;
  {
    std::lock_guard lock(mu_);
    for (auto& [k, p] : devices_) peers.push_back(p);
    peers.insert(peers.end(), unauthenticated_.begin(), unauthenticated_.end());
  }
  for (auto& p : peers)
    if (auto conn = p->conn.lock()) conn->post([conn, code] { conn->close(code); });
}

}  // namespace sotto::relay
