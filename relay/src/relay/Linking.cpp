// Linking a new device (protocol.md 5.4 to 5.7): link channels opened by the new device, looked up
// and approved by an existing one, and the link itself; in a cluster the channel may be
// another node's.
#include <optional>

#include "Log.h"
#include "Relay.h"
#include "relay/Common.h"
#include "sotto/keys/KeyGen.h"
#include "sotto/proto/cluster.pb.h"

namespace sotto::relay {

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
    Registry::LinkChannel ch;
    ch.peer = p;
    ch.ephemeral_key = Bytes(key.begin(), key.end());
    ch.expires_at_ms = expires;
    registry_.open_link(code, std::move(ch));
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
  std::string code = registry_.fresh_link_code();
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
  auto ch = code.empty() ? std::nullopt : registry_.find_link(code);
  if (ch || !bus_ || code.empty()) {
    if (!ch) return respond(false, false, Bytes(), 0);
    return respond(true, ch->approved, ch->ephemeral_key, ch->expires_at_ms);
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
    auto ch = code.empty() ? std::nullopt : registry_.find_link(code);
    if (!ch || ch->expires_at_ms < clock_())
      return status_refusal(wire::NOT_FOUND, "no live link channel has this code");
    if (ch->approved)
      return status_refusal(wire::CONFLICT, "this link channel was already approved");
    return std::nullopt;
  };
  if (!bus_) {  // in a cluster the channel may be another node's: the bus decides
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
          auto target = registry_.approve_link(code, p->account);
          if (target && *target)
            if (auto conn = (*target)->conn.lock())
              conn->post([conn, frame] { conn->write(frame); });
        };
        if (!bus_) {
          if (auto bad = check()) return refuse(p, id, op, *bad);
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
    auto ch = p->link_code.empty() ? std::nullopt : registry_.find_link(p->link_code);
    if (!ch || code != p->link_code)
      return refuse(p, id, op,
                    status_refusal(wire::NOT_FOUND,
                                   "this socket has no live link channel with this "
                                   "code"));
    if (!ch->approved)
      return refuse(p, id, op, status_refusal(wire::CONFLICT, "the channel is not approved yet"));
    if (bytes_str(ch->approved_by) != payload.account_id())
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
        // On the writer thread: p->link_code belongs to the strand (an expiry clears it
        // there), so the channel is found by the code checked above, and only if it is still
        // this socket's.
        registry_.close_link(code, p);
        if (bus_) bus_->link_close(code);
        if (conn) {
          conn->post([p, conn] {
            p->link_code.clear();
            conn->close(1000);
          });
        }
        devices_changed(st->account);
      });
}

void Relay::end_link(const std::string& code, uint16_t close_code) {
  auto taken = registry_.take_link(code);
  if (!taken) return;
  if (bus_) bus_->link_close(code);
  if (std::shared_ptr<Peer> peer = *taken)
    if (auto conn = peer->conn.lock())
      conn->post([peer, conn, close_code] {
        peer->link_code.clear();
        conn->close(close_code);
      });
}

}  // namespace sotto::relay
