// class Relay: construction, answers, the upgrade and the connections (open, close, and the
// dispatch of requests). The protocol's sections live beside it, one file each, in relay/:
// Accounts, Linking, Prekeys, Send (send, delivery and acks), Presence, Push, Attachments,
// Cluster (the bus) and Housekeeping.
#include "Relay.h"

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <utility>

#include "Log.h"
#include "relay/Common.h"
#include "sotto/proto/cluster.pb.h"

namespace sotto::relay {
namespace {

uint64_t system_now_ms() {
  return static_cast<uint64_t>(std::chrono::duration_cast<std::chrono::milliseconds>(
                                   std::chrono::system_clock::now().time_since_epoch())
                                   .count());
}

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
  refresh_queue_depth();
}

Relay::~Relay() = default;

void Relay::refresh_queue_depth() {
  store_.submit(
      [this](Store& s) -> Status {
        SOTTO_TRY_ASSIGN(uint64_t total, s.total_queued());
        metrics_.queue_depth = static_cast<int64_t>(total);
        return {};
      },
      nullptr);
}

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
    registry_.add_unauthenticated(peer);
    metrics_.ws_unauthenticated.fetch_add(1, std::memory_order_relaxed);
    return peer;
  }
  peer->authenticated = true;
  peer->account = auth->account;
  peer->device = auth->device;
  peer->identity_key = auth->identity_key;
  peer->key = device_key(peer->account, peer->device);
  metrics_.ws_authenticated.fetch_add(1, std::memory_order_relaxed);

  bool hidden = auth->hidden;
  Registry::Attached attached = registry_.attach(peer, hidden);
  if (attached.replaced) {
    if (auto old = attached.replaced->conn.lock()) old->post([old] { old->close(4002); });
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
  } else if (attached.came_online && !hidden) {
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
  Registry::Detached left = registry_.detach(peer, peer->subscriptions, peer->link_code);
  if (bus_) {  // never under the registry's lock: the bus may write to its socket
    for (const auto& a : left.unsubscribed) bus_->listen_presence(a, false);
    if (!peer->authenticated && !peer->link_code.empty()) bus_->link_close(peer->link_code);
  }
  const bool went_offline = left.went_offline, hidden = left.hidden;
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
    if (!left.still_here)
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

}  // namespace sotto::relay
