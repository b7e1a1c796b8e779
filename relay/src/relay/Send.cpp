// Messages (protocol.md 5.15 to 5.17, 7 and 8): send and send_multi, delivery (live pushes
// and the stored queue, under flow control) and acks.
#include <algorithm>
#include <map>
#include <optional>
#include <set>

#include "Relay.h"
#include "relay/Common.h"

namespace sotto::relay {

// A send or send_multi as checked on the strand: the copies to store (or forward), in the
// request's order, and the device each is for.
struct ParsedSend {
  struct Target {
    Bytes account;
    uint32_t device;
    uint32_t registration_id;
    wire::Envelope::Type type;
  };
  std::shared_ptr<NewSend> send = std::make_shared<NewSend>();
  std::vector<Target> targets;  // targets[i] is send->copies[i]'s device
  bool multi = false;
  bool ephemeral = false;
  bool urgent = false;
  bool targeted = false;
  std::string message_id;
};

// What the storage job of a send found.
struct SendOutcome {
  std::optional<Refusal> refusal;
  wire::DeviceMismatch mismatch;
  bool stale = false;
  bool duplicate = false;
  uint64_t timestamp = 0;
  std::vector<uint64_t> sequences;
  std::map<std::string, std::string> push_urls;  // device key -> url
};

namespace {

// Step 1: the request's fields, each checked against the limits; nothing is looked up.
std::optional<Refusal> parse_send(wire::Request& r, bool multi, const Limits& l, ParsedSend& out) {
  using Target = ParsedSend::Target;
  NewSend* send = out.send.get();
  std::vector<Target>& targets = out.targets;
  out.multi = multi;
  if (!multi) {
    auto& req = *r.mutable_send();
    out.message_id = req.message_id();
    out.ephemeral = req.ephemeral();
    out.urgent = req.urgent();
    out.targeted = req.targeted();
    send->batch = req.batch();
    if (req.messages_size() == 0) return bad_request("no messages");
    if (static_cast<uint32_t>(req.messages_size()) > l.max_send_messages)
      return too_large_items("too many messages in one send", l.max_send_messages);
    for (auto& m : *req.mutable_messages()) {
      if (m.account_id().size() != 16) return bad_request("every account_id must be 16 bytes");
      if (m.type() == wire::Envelope::TYPE_UNSPECIFIED || !wire::Envelope::Type_IsValid(m.type()))
        return bad_request("every message needs a type");
      if (m.ciphertext().empty()) return bad_request("empty ciphertext");
      if (m.ciphertext().size() > l.max_envelope_bytes)
        return too_large_bytes("a ciphertext is too large", l.max_envelope_bytes);
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
    out.message_id = req.message_id();
    out.ephemeral = req.ephemeral();
    out.urgent = req.urgent();
    out.targeted = false;
    send->batch = req.batch();
    if (req.recipients_size() == 0) return bad_request("no recipients");
    if (static_cast<uint32_t>(req.recipients_size()) > l.max_send_multi_devices)
      return too_large_items("too many recipients in one send_multi", l.max_send_multi_devices);
    if (req.type() == wire::Envelope::TYPE_UNSPECIFIED || !wire::Envelope::Type_IsValid(req.type()))
      return bad_request("type is required");
    if (req.ciphertext().empty()) return bad_request("empty ciphertext");
    size_t longest = 0;
    for (const auto& m : req.recipients()) {
      if (m.account_id().size() != 16) return bad_request("every account_id must be 16 bytes");
      if (m.header().size() > l.max_multi_header_bytes)
        return too_large_bytes("a recipient header is too large", l.max_multi_header_bytes);
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
      return too_large_bytes("the ciphertext plus the longest header is too large",
                             l.max_envelope_bytes);
    send->type = req.type();
    send->shared_ciphertext = Bytes(req.ciphertext().begin(), req.ciphertext().end());
  }
  if (out.message_id.size() != 16) return bad_request("message_id must be 16 bytes");
  return std::nullopt;
}

// Step 1, with the sender: no device twice, and not the sender's own.
std::optional<Refusal> check_recipients(const ParsedSend& req, const Peer& sender) {
  std::set<std::string> seen;
  for (const auto& t : req.targets) {
    std::string k = device_key(t.account, t.device);
    if (!seen.insert(k).second) return bad_request("a recipient device appears twice");
    if (t.account == sender.account && t.device == sender.device)
      return bad_request("a device does not send to itself");
  }
  return std::nullopt;
}

// The devices a send names, and what the store has, per recipient account.
struct RecipientDevices {
  std::vector<Bytes> accounts;                          // in order of first appearance
  std::map<Bytes, std::map<uint32_t, uint32_t>> named;  // account -> device -> registration id
  std::map<Bytes, std::vector<DeviceRecord>> current;   // account -> its devices
};

// Step 2 (writer thread): every recipient account exists (else `out.refusal`), and the request
// names its current devices (protocol.md 8; else `out.stale` and `out.mismatch`).
Status check_devices(Store& s, const ParsedSend& req, const Peer& sender, SendOutcome& out,
                     RecipientDevices& rd) {
  const NewSend& send = *req.send;
  for (const auto& t : req.targets) {
    if (!rd.named.count(t.account)) rd.accounts.push_back(t.account);
    rd.named[t.account][t.device] = t.registration_id;
  }
  bool own_named = rd.named.count(sender.account) > 0;
  for (const auto& a : rd.accounts) {
    SOTTO_TRY_ASSIGN(auto account, s.find_account(a));
    if (!account) {
      out.refusal = status_refusal(wire::NOT_FOUND, "account " + to_hex(a) + " does not exist");
      return {};
    }
    SOTTO_TRY_ASSIGN(rd.current[a], s.list_devices(a));
  }
  if (req.urgent && !req.targeted && send.batch == 0 && !own_named) {
    SOTTO_TRY_ASSIGN(auto mine, s.list_devices(sender.account));
    wire::DeviceMismatch::Account entry;
    entry.set_account_id(bytes_str(sender.account));
    for (const auto& d : mine)
      if (d.device_id != sender.device) entry.add_missing_devices(d.device_id);
    if (entry.missing_devices_size() > 0) {
      *out.mismatch.add_accounts() = std::move(entry);
      out.stale = true;
    }
  }
  for (const auto& a : rd.accounts) {
    const auto& devs = rd.current[a];
    const auto& want = rd.named[a];
    wire::DeviceMismatch::Account entry;
    entry.set_account_id(bytes_str(a));
    bool differs = false;
    for (const auto& d : devs) {
      auto it = want.find(d.device_id);
      if (it == want.end()) {
        if (a == sender.account && d.device_id == sender.device) continue;
        entry.add_missing_devices(d.device_id);
        if (!req.targeted) differs = true;
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
      *out.mismatch.add_accounts() = std::move(entry);
      out.stale = true;
    }
  }
  return {};
}

// Step 3 (writer thread): room in every recipient's queue (else a refusal); collects the push
// endpoints of the recipients, for wake-ups.
std::optional<Refusal> check_queues(const NewSend& send, RecipientDevices& rd, uint64_t max_queue,
                                    uint64_t max_bytes, std::map<std::string, std::string>& urls) {
  for (const auto& c : send.copies) {
    uint64_t bytes = (c.ciphertext.empty() ? send.shared_ciphertext.size() : c.ciphertext.size()) +
                     c.header.size();
    for (const auto& d : rd.current[c.account_id]) {
      if (d.device_id != c.device_id) continue;
      if (d.queue_length >= max_queue || d.queue_bytes + bytes > max_bytes)
        return status_refusal(
            wire::LIMIT_REACHED,
            "the queue of recipient device " + to_hex(c.account_id) + "." +
                std::to_string(c.device_id) +
                " is full (envelopes or bytes); retry later, when it has been drained");
      if (!d.push_url.empty()) urls[device_key(c.account_id, c.device_id)] = d.push_url;
    }
  }
  return std::nullopt;
}

// The envelope of copy `i`, as its device receives it (without sequence or ephemeral flag).
std::shared_ptr<wire::Envelope> make_envelope(const ParsedSend& req, size_t i) {
  const NewSend& send = *req.send;
  const QueuedCopy& c = send.copies[i];
  auto env = std::make_shared<wire::Envelope>();
  env->set_type(send.copy_types.empty() ? send.type : send.copy_types[i]);
  env->set_sender_account_id(bytes_str(send.sender_account));
  env->set_sender_device_id(send.sender_device);
  env->set_recipient_device_id(c.device_id);
  env->set_message_id(req.message_id);
  env->set_server_timestamp_ms(send.server_timestamp_ms);
  env->set_ciphertext(req.multi ? bytes_str(send.shared_ciphertext) : bytes_str(c.ciphertext));
  if (!c.header.empty()) env->set_header(bytes_str(c.header));
  env->set_urgent(send.urgent);
  return env;
}

}  // namespace

// Four steps: parse and check the request (on the strand); in one storage job, check the
// recipients' devices (STALE_DEVICES) and their queues, and enqueue; after the commit, answer,
// build the envelopes and route each to its device (route_sent). Ephemeral sends skip the
// store: forward_ephemeral.
void Relay::op_send(const std::shared_ptr<Peer>& p, wire::Request& r, bool multi) {
  const uint64_t id = r.id();
  const int op = r.op();
  const Limits& l = config_.limits;

  auto req = std::make_shared<ParsedSend>();
  if (auto bad = parse_send(r, multi, l, *req)) return refuse(p, id, op, *bad);
  if (auto bad = check_recipients(*req, *p)) return refuse(p, id, op, *bad);
  uint64_t now = clock_();
  if (uint64_t wait = send_device_.take(p->key, now)) return rate_limited(p, id, op, wait, "send");

  NewSend& send = *req->send;
  send.sender_account = p->account;
  send.sender_device = p->device;
  send.message_id = Bytes(req->message_id.begin(), req->message_id.end());
  send.urgent = req->urgent;
  send.server_timestamp_ms = now;
  send.expires_at_ms = now + l.envelope_ttl_ms;
  if (req->ephemeral) return forward_ephemeral(p, id, op, *req);

  auto st = std::make_shared<SendOutcome>();
  const uint64_t max_queue = l.max_queue_envelopes, max_bytes = l.max_queue_bytes;
  submit(
      p, id, op,
      [st, req, p, max_queue, max_bytes](Store& s) -> Status {
        *st = SendOutcome{};
        const NewSend& ns = *req->send;
        SOTTO_TRY_ASSIGN(auto prior,
                         s.find_send(ns.sender_account, ns.sender_device, ns.message_id, ns.batch));
        if (prior) {
          st->duplicate = true;
          st->timestamp = prior->server_timestamp_ms;
          return {};
        }
        RecipientDevices devices;
        SOTTO_TRY(check_devices(s, *req, *p, *st, devices));
        if (st->refusal || st->stale) return {};
        st->refusal = check_queues(ns, devices, max_queue, max_bytes, st->push_urls);
        if (st->refusal) return {};
        SOTTO_TRY(s.enqueue(ns, &st->sequences));
        st->timestamp = ns.server_timestamp_ms;
        return {};
      },
      [this, p, id, op, st, req] {
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
        (req->multi ? resp.mutable_send_multi() : resp.mutable_send())
            ->set_server_timestamp_ms(st->timestamp);
        answer(p, std::move(resp), op);
        if (st->duplicate) return;
        size_t n = req->send->copies.size();
        metrics_.envelopes_queued.fetch_add(n, std::memory_order_relaxed);
        metrics_.queue_depth.fetch_add(static_cast<int64_t>(n), std::memory_order_relaxed);
        route_sent(req, st);
      });
}

void Relay::forward_ephemeral(const std::shared_ptr<Peer>& p, uint64_t id, int op,
                              const ParsedSend& req) {
  // Forward to whichever named devices are connected; nothing is stored or checked.
  std::vector<std::string> remote_keys;
  std::vector<std::shared_ptr<const wire::Envelope>> remote;
  for (size_t i = 0; i < req.targets.size(); ++i) {
    std::string key = device_key(req.targets[i].account, req.targets[i].device);
    auto peer = find_peer(key);
    if (!peer && !bus_) continue;
    auto env = make_envelope(req, i);
    env->set_ephemeral(true);
    if (!peer) {  // perhaps on another node
      remote_keys.push_back(std::move(key));
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
  (req.multi ? resp.mutable_send_multi() : resp.mutable_send())
      ->set_server_timestamp_ms(req.send->server_timestamp_ms);
  answer(p, std::move(resp), op);
}

void Relay::route_sent(const std::shared_ptr<ParsedSend>& req,
                       const std::shared_ptr<SendOutcome>& st) {
  std::vector<std::string> remote_keys;
  std::vector<std::shared_ptr<const wire::Envelope>> remote;
  for (size_t i = 0; i < req->send->copies.size(); ++i) {
    const QueuedCopy& c = req->send->copies[i];
    auto env = make_envelope(*req, i);
    env->set_sequence(st->sequences[i]);
    std::string key = device_key(c.account_id, c.device_id);
    if (find_peer(key)) {
      deliver(key, std::move(env));
      continue;
    }
    remote_keys.push_back(std::move(key));
    remote.push_back(std::move(env));
  }
  // Devices not connected here: on another node, or offline (a wake-up, if urgent).
  auto offline = [this, req, st](const std::string& key) {
    auto url = st->push_urls.find(key);
    if (!req->urgent || url == st->push_urls.end()) return;
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

}  // namespace sotto::relay
