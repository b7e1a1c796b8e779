// Accounts and devices (protocol.md 5.3, 5.8 to 5.11): registration, the device list and its
// changes, removing a device, deleting an account, looking one up.
#include <algorithm>
#include <optional>

#include "Log.h"
#include "Relay.h"
#include "relay/Common.h"
#include "sotto/keys/KeyGen.h"
#include "sotto/proto/cluster.pb.h"

namespace sotto::relay {

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
          for (size_t i = 0; i < list->size(); ++i) {
            const DeviceRecord& d = (*list)[i];
            bool connected = registry_.connected(device_key(p->account, d.device_id)) ||
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
          auto frame = push_frame([&](wire::Push& push) {
            auto* dc = push.mutable_devices_changed();
            for (size_t i = 0; i < list->size(); ++i) {
              const DeviceRecord& d = (*list)[i];
              bool connected = registry_.connected(device_key(account, d.device_id)) ||
                               (nodes && !(*nodes)[i].empty());
              fill_device_info(*dc->add_devices(), d, connected);
            }
          });
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
  for (auto& peer : registry_.account_peers(account, except_device))
    if (auto conn = peer->conn.lock()) conn->post([conn, frame] { conn->write(frame); });
}

std::shared_ptr<Peer> Relay::find_peer(const std::string& key) { return registry_.find(key); }

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
        refresh_queue_depth();
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
        // Nothing more is announced for it.
        if (!registry_.hide_for_good(p->account)) {
          wire::PresenceUpdate u;
          u.set_account_id(bytes_str(p->account));
          u.set_online(false);
          presence_changed(p->account, std::move(u));
        }
        for (const auto& d : *devices) close_device(device_key(p->account, d.device_id), 4001);
        refresh_queue_depth();
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

}  // namespace sotto::relay
