// Untrusted bytes: sequences of requests from several connections to one relay, in-process
// (RelayHarness: the real protocol logic over a real store, no sockets). The input is a
// script: each step connects or disconnects a device, sends (1:1, multi, ephemeral, repeated
// message ids), acks, fetches bundles, uploads prekeys, stalls or drains a reader, moves the
// clock, or hands the relay a request decoded from the fuzzer's own bytes.
//
// A model kept beside the relay checks after every step:
//  - every envelope a device receives was sent to that device, with the same sender,
//    message id and ciphertext, under the sequence number the model expects;
//  - an acknowledged envelope is never delivered again (one already on its way to a stalled
//    connection when it was acknowledged may still arrive there), and a connection's pushes
//    ascend;
//  - each device's stored queue length and bytes equal the model's;
//  - no one-time prekey is handed out twice (unless it was uploaded again);
//  - every request is answered exactly once, with the id it carried.
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <set>
#include <string>
#include <vector>

#include "Log.h"
#include "RelayHarness.h"

namespace {

using namespace sotto;
using namespace sotto::test;

[[noreturn]] void violated(const std::string& what) {
  std::fprintf(stderr, "relay invariant violated: %s\n", what.c_str());
  std::abort();
}

std::string str(ByteView b) { return std::string(as_chars(b)); }

// Reads the script; past the end every read gives 0.
class Script {
 public:
  Script(const uint8_t* data, size_t size) : data_(data), size_(size) {}
  bool done() const { return pos_ >= size_; }
  uint8_t byte() { return pos_ < size_ ? data_[pos_++] : 0; }
  uint32_t below(uint32_t n) { return n ? byte() % n : 0; }
  std::string bytes(size_t n) {
    n = std::min(n, size_ - std::min(pos_, size_));
    std::string out(reinterpret_cast<const char*>(data_ + pos_), n);
    pos_ += n;
    return out;
  }

 private:
  const uint8_t* data_;
  size_t size_;
  size_t pos_ = 0;
};

constexpr int kDevices = 3;
constexpr uint32_t kPrekeys = 3;

// Keys are made once: generating them dominates a run otherwise.
const std::vector<TestDevice>& device_keys_once() {
  static const std::vector<TestDevice> keys = [] {
    std::vector<TestDevice> out;
    for (int i = 0; i < kDevices; ++i) {
      auto d = make_device("user" + std::to_string(i), kPrekeys);
      if (!d.ok()) violated("cannot make keys: " + d.error().message);
      out.push_back(std::move(*d));
    }
    return out;
  }();
  return keys;
}

struct Copy {
  std::string sender;  // account id
  std::string message_id;
  std::string ciphertext;
  bool acked = false;  // deleted by the relay; kept until the next connection (see acked())
};

struct DeviceModel {
  TestDevice keys;
  std::shared_ptr<HarnessConnection> conn;
  std::map<uint64_t, Copy> queue;  // sequence -> what was committed to it
  uint64_t next_sequence = 1;
  uint64_t last_seen_on_conn = 0;  // highest sequence pushed on the current connection
  std::set<uint32_t> handed_out;   // one-time prekey ids given to others
  uint32_t next_prekey_id = 1000;
};

class Session {
 public:
  Session() {
    RelayHarness::Options o;
    o.config.limits.max_queue_bytes = 4096;  // small, so that the byte bound is reached
    o.config.limits.max_unacked_envelopes = 8;
    o.config.limits.max_outgoing_bytes = 4096;
    o.config.rates.send_device = relay::RateSpec{};  // not under test; every send goes through
    o.config.rates.frames_connection = relay::RateSpec{};
    o.config.rates.bundles_device = relay::RateSpec{};
    o.config.rates.bundles_target = relay::RateSpec{};
    h_ = std::make_unique<RelayHarness>(std::move(o));
    for (const auto& k : device_keys_once()) {
      auto d = h_->register_keys(k);
      if (!d.ok()) violated("registration failed: " + d.error().message);
      devices_.emplace_back().keys = std::move(*d);
    }
  }

  void step(Script& s) {
    DeviceModel& d = devices_[s.below(kDevices)];
    int action = static_cast<int>(s.below(12));
    if (trace_) std::fprintf(stderr, "step: device %s, action %d\n", d.keys.handle.c_str(), action);
    // A stalled device reads nothing, answers included: it only receives (a backlog builds)
    // until it drains or goes away.
    bool requests = action == 2 || action == 3 || action == 4 || action == 5 || action == 6 ||
                    action == 9 || action == 10 || action == 11;
    if (requests && d.conn && d.conn->stalled()) return;
    switch (action) {
      case 0:
        return connect(d);
      case 1:
        if (d.conn) h_->disconnect(*d.conn);
        d.conn.reset();
        return;
      case 2:
      case 3:
        return send(s, d);
      case 4:
        return ack(s, d);
      case 5:
        return get_bundles(s, d);
      case 6:
        return upload_prekeys(s, d);
      case 7:
        if (!d.conn) return;
        if (s.byte() & 1)
          d.conn->stall();
        else
          d.conn->drain();
        return;
      case 8:
        h_->advance(s.byte() * 100u);
        return;
      case 9:
        return raw(s, d);
      case 10:
        return send_multi(s, d);
      default:
        return resend(d);
    }
  }

  void settle_and_check() {
    h_->settle();
    for (auto& d : devices_) check(d);
  }

 private:
  void connect(DeviceModel& d) {
    if (d.conn) h_->disconnect(*d.conn);
    // What was acknowledged must never come again on a new connection.
    std::erase_if(d.queue, [](const auto& e) { return e.second.acked; });
    d.conn = h_->connect(d.keys);
    if (!d.conn) violated("the relay refused a registered device's credentials");
    d.last_seen_on_conn = 0;
  }

  void acked(DeviceModel& d, const wire::AckRequest& ack) {
    for (uint64_t seq : ack.sequences()) {
      auto it = d.queue.find(seq);
      if (it == d.queue.end()) continue;
      // Delivered already: gone. Not delivered yet: a push may be on its way to this
      // (stalled) connection, so it is marked, and dropped at the next connection.
      if (seq <= d.last_seen_on_conn)
        d.queue.erase(it);
      else
        it->second.acked = true;
    }
  }

  // What the model expects when the relay answers a send of `req` by `from` with `status`.
  void sent(DeviceModel& from, const wire::SendRequest& req, wire::Status status) {
    if (status != wire::OK || req.ephemeral()) return;
    std::string key = str(from.keys.account_id) + req.message_id() + std::to_string(req.batch());
    if (!sends_.insert(key).second) return;  // a repeat: stored once
    for (const auto& m : req.messages()) commit(m.account_id(), m.device_id(), from, req.message_id(), m.ciphertext());
  }
  void sent_multi(DeviceModel& from, const wire::SendMultiRequest& req, wire::Status status) {
    if (status != wire::OK || req.ephemeral()) return;
    std::string key = str(from.keys.account_id) + req.message_id() + std::to_string(req.batch());
    if (!sends_.insert(key).second) return;
    for (const auto& m : req.recipients())
      commit(m.account_id(), m.device_id(), from, req.message_id(), req.ciphertext());
  }
  void commit(const std::string& account, uint32_t device, DeviceModel& from,
              const std::string& message_id, const std::string& ciphertext) {
    DeviceModel* to = find(account, device);
    if (!to) violated("the relay accepted a send to a device that does not exist");
    to->queue[to->next_sequence++] =
        Copy{str(from.keys.account_id), message_id, ciphertext, false};
  }
  DeviceModel* find(const std::string& account, uint32_t device) {
    for (auto& d : devices_)
      if (str(d.keys.account_id) == account && d.keys.device_id == device) return &d;
    return nullptr;
  }

  std::string message_id(Script& s) {
    // Mostly new ids; now and then one used before, which must be idempotent.
    if (!used_ids_.empty() && (s.byte() & 7) == 0) return used_ids_[s.below(used_ids_.size())];
    std::string id(16, '\0');
    uint64_t n = ++id_counter_;
    for (int i = 0; i < 8; ++i) id[15 - i] = static_cast<char>(n >> (8 * i));
    used_ids_.push_back(id);
    return id;
  }

  wire::Response answered(DeviceModel& d, uint64_t id) {
    h_->settle();
    auto r = d.conn ? d.conn->take_response(id) : std::nullopt;
    if (!r && d.conn && !d.conn->ended) violated("a request was never answered");
    return r ? std::move(*r) : wire::Response();
  }

  void send(Script& s, DeviceModel& d) {
    if (!d.conn) return;
    wire::Request r = make_request(wire::OP_SEND);
    auto* req = r.mutable_send();
    req->set_message_id(message_id(s));
    uint8_t flags = s.byte();
    req->set_ephemeral(flags & 1);
    req->set_urgent(flags & 2);
    int copies = 1 + s.below(kDevices);
    for (int i = 0; i < copies; ++i) {
      const DeviceModel& to = devices_[s.below(kDevices)];
      if (&to == &d) continue;
      auto* m = req->add_messages();
      m->set_account_id(str(to.keys.account_id));
      m->set_device_id(to.keys.device_id);
      m->set_registration_id(to.keys.registration_id);
      m->set_type(wire::Envelope::MESSAGE);
      m->set_ciphertext("c" + s.bytes(s.below(64)) + std::string(s.below(8) * 200, 'p'));
    }
    wire::Request copy = r;
    uint64_t id = h_->send(*d.conn, std::move(r));
    wire::Response resp = answered(d, id);
    sent(d, copy.send(), resp.status());
    last_send_ = copy.SerializeAsString();
  }

  void send_multi(Script& s, DeviceModel& d) {
    if (!d.conn) return;
    wire::Request r = make_request(wire::OP_SEND_MULTI);
    auto* req = r.mutable_send_multi();
    req->set_message_id(message_id(s));
    req->set_type(wire::Envelope::SENDER_KEY);
    req->set_ciphertext("g" + s.bytes(s.below(64)));
    req->set_ephemeral(s.byte() & 1);
    for (const auto& to : devices_) {
      if (&to == &d || (s.byte() & 3) == 0) continue;
      auto* m = req->add_recipients();
      m->set_account_id(str(to.keys.account_id));
      m->set_device_id(to.keys.device_id);
      m->set_registration_id(to.keys.registration_id);
    }
    wire::Request copy = r;
    uint64_t id = h_->send(*d.conn, std::move(r));
    wire::Response resp = answered(d, id);
    sent_multi(d, copy.send_multi(), resp.status());
  }

  // A send again with an id and content already used: never stored twice.
  void resend(DeviceModel& d) {
    if (!d.conn || last_send_.empty()) return;
    wire::Request r;
    if (!r.ParseFromString(last_send_)) return;
    r.set_id(0);
    wire::Request copy = r;
    uint64_t id = h_->send(*d.conn, std::move(r));
    wire::Response resp = answered(d, id);
    if (copy.has_send()) sent(d, copy.send(), resp.status());
  }

  void ack(Script& s, DeviceModel& d) {
    if (!d.conn) return;
    wire::Request r = make_request(wire::OP_ACK);
    int n = 1 + s.below(4);
    for (int i = 0; i < n; ++i) {
      // Mostly sequences the device has, sometimes any number.
      uint64_t seq = (s.byte() & 3) == 0 ? s.byte()
                     : d.queue.empty()   ? 1
                                         : std::next(d.queue.begin(), s.below(d.queue.size()))->first;
      r.mutable_ack()->add_sequences(seq);
    }
    wire::Request copy = r;
    uint64_t id = h_->send(*d.conn, std::move(r));
    if (answered(d, id).status() == wire::OK) acked(d, copy.ack());
  }

  void get_bundles(Script& s, DeviceModel& d) {
    if (!d.conn) return;
    DeviceModel& target = devices_[s.below(kDevices)];
    if (&target == &d) return;
    wire::Request r = make_request(wire::OP_GET_BUNDLES);
    r.mutable_get_bundles()->set_account_id(str(target.keys.account_id));
    uint64_t id = h_->send(*d.conn, std::move(r));
    wire::Response resp = answered(d, id);
    if (resp.status() != wire::OK) return;
    for (const auto& b : resp.get_bundles().bundles()) {
      if (!b.has_one_time_prekey() || b.last_resort()) continue;
      if (!target.handed_out.insert(b.one_time_prekey().id()).second)
        violated("one-time prekey " + std::to_string(b.one_time_prekey().id()) +
                 " was handed out twice");
    }
  }

  void upload_prekeys(Script& s, DeviceModel& d) {
    if (!d.conn) return;
    auto fresh = keys::generate_one_time_prekeys(test_context(), d.next_prekey_id, 1);
    if (!fresh.ok()) return;
    wire::Request r = make_request(wire::OP_UPLOAD_PREKEYS);
    auto* k = r.mutable_upload_prekeys()->add_one_time_prekeys();
    // Sometimes an id handed out before: uploaded again, it may be handed out again.
    uint32_t reuse = d.handed_out.empty() || (s.byte() & 1) ? 0 : *d.handed_out.begin();
    k->set_id(reuse ? reuse : d.next_prekey_id++);
    k->set_public_key(str((*fresh)[0].public_key));
    uint64_t id = h_->send(*d.conn, std::move(r));
    if (answered(d, id).status() == wire::OK && reuse) d.handed_out.erase(reuse);
  }

  // Whatever request the fuzzer's bytes decode to, except those that change who exists.
  void raw(Script& s, DeviceModel& d) {
    bool unauthenticated = s.byte() & 1;
    std::string bytes = s.bytes(s.below(200));
    wire::Request r;
    if (!r.ParseFromString(bytes)) return;
    if (r.op() == wire::OP_REMOVE_DEVICE || r.op() == wire::OP_DELETE_ACCOUNT ||
        r.op() == wire::OP_UPLOAD_PREKEYS)
      return;
    r.set_id(0);
    if (unauthenticated || !d.conn) {
      auto c = h_->open();
      uint64_t id = h_->send(*c, std::move(r));
      h_->settle();
      if (!c->take_response(id) && !c->ended) violated("an unauthenticated request got no answer");
      h_->disconnect(*c);
      return;
    }
    wire::Request copy = r;
    uint64_t id = h_->send(*d.conn, std::move(r));
    wire::Response resp = answered(d, id);
    if (copy.has_send() && copy.op() == wire::OP_SEND) {
      sent(d, copy.send(), resp.status());
      last_send_ = copy.SerializeAsString();
    }
    if (copy.has_send_multi() && copy.op() == wire::OP_SEND_MULTI)
      sent_multi(d, copy.send_multi(), resp.status());
    if (copy.has_ack() && copy.op() == wire::OP_ACK && resp.status() == wire::OK)
      acked(d, copy.ack());
  }

  void check(DeviceModel& d) {
    if (d.conn) {
      if (!d.conn->unanswered().empty() && !d.conn->ended)
        violated("a request is still unanswered after the relay went idle");
      for (const auto& e : d.conn->take_envelopes()) {
        if (e.recipient_device_id() != d.keys.device_id)
          violated("an envelope for device " + std::to_string(e.recipient_device_id()) +
                   " reached device " + std::to_string(d.keys.device_id));
        if (e.ephemeral()) continue;
        if (e.sequence() <= d.last_seen_on_conn)
          violated("pushes on one connection did not ascend");
        d.last_seen_on_conn = e.sequence();
        auto it = d.queue.find(e.sequence());
        if (it == d.queue.end())
          violated("sequence " + std::to_string(e.sequence()) +
                   " was delivered but is not queued (never sent, or acknowledged)");
        const Copy& c = it->second;
        if (e.sender_account_id() != c.sender || e.message_id() != c.message_id ||
            e.ciphertext() != c.ciphertext)
          violated("an envelope differs from what was sent under its sequence");
      }
      if (d.conn->ended) d.conn.reset();
    }
    auto record = std::make_shared<std::optional<relay::DeviceRecord>>();
    h_->store().submit(
        [record, &d](relay::Store& st) -> Status {
          SOTTO_TRY_ASSIGN(*record, st.find_device(d.keys.account_id, d.keys.device_id));
          return {};
        },
        nullptr);
    h_->settle();
    if (!*record) violated("a device vanished");
    uint64_t bytes = 0, length = 0;
    for (const auto& [seq, c] : d.queue) {
      if (c.acked) continue;
      bytes += c.ciphertext.size();
      ++length;
    }
    if ((*record)->queue_length != length)
      violated("stored queue length " + std::to_string((*record)->queue_length) + ", model " +
               std::to_string(length));
    if ((*record)->queue_bytes != bytes)
      violated("stored queue bytes " + std::to_string((*record)->queue_bytes) + ", model " +
               std::to_string(bytes));
  }

  // SOTTO_FUZZ_TRACE=1 prints each step, to read a failing input's story.
  const bool trace_ = std::getenv("SOTTO_FUZZ_TRACE") != nullptr;
  std::unique_ptr<RelayHarness> h_;
  std::vector<DeviceModel> devices_;
  std::set<std::string> sends_;  // sender + message id + batch of every stored send
  std::vector<std::string> used_ids_;
  std::string last_send_;
  uint64_t id_counter_ = 0;
};

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  sotto::relay::set_log_level(sotto::relay::LogLevel::kError);
  Script script(data, size);
  Session session;
  for (int steps = 0; !script.done() && steps < 64; ++steps) {
    session.step(script);
    session.settle_and_check();
  }
  return 0;
}
