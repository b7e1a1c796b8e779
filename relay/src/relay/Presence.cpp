// Presence (protocol.md 5.18, 5.19 and 9): subscriptions, visibility and updates.
#include <algorithm>
#include <utility>

#include "Relay.h"
#include "relay/Common.h"

namespace sotto::relay {

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
  for (const auto& sub : registry_.subscribers(account)) {
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
  std::vector<std::string> unsubscribed;
  std::vector<Registry::Seen> here =
      registry_.resubscribe(p, std::exchange(p->subscriptions, wanted), wanted, unsubscribed);
  if (bus_) {  // never under the registry's lock: the bus may write to its socket
    for (const auto& a : unsubscribed) bus_->listen_presence(a, false);
    for (const auto& a : wanted) bus_->listen_presence(account_key(a), true);
  }
  for (size_t i = 0; i < wanted.size(); ++i) {
    Entry e;
    e.account = wanted[i];
    e.known = here[i].known;
    e.online = here[i].online;
    entries->push_back(std::move(e));
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
        bool online = registry_.set_hidden(p->account, hidden);
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

}  // namespace sotto::relay
