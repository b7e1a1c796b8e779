// Cluster mode: routing to the node that holds a device, and what the bus brings to this
// node (messages, presence, its state, expired claims).
#include "Log.h"
#include "Relay.h"
#include "relay/Common.h"
#include "sotto/proto/cluster.pb.h"

namespace sotto::relay {

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
      // One NodeMessage per envelope, even for many to one node (SEND_MULTI): a batch would
      // need a new NodeMessage field, which a node of the previous version parses as an empty
      // message and drops, so its device would wait for its next queue read. RedisBus
      // pipelines the PUBLISHes in one round trip anyway.
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
      auto target = registry_.approve_link(a.link_code(),
                                           Bytes(a.approved_by().begin(), a.approved_by().end()));
      if (target && *target)
        if (auto conn = (*target)->conn.lock()) {
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
  for (auto& peer : registry_.peers())
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

}  // namespace sotto::relay
