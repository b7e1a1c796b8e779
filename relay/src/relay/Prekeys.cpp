// Prekeys (protocol.md 5.12 to 5.14): uploads, counts, bundles, and the low-pool push.
#include <algorithm>
#include <optional>
#include <set>

#include "Relay.h"
#include "relay/Common.h"

namespace sotto::relay {

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

}  // namespace sotto::relay
