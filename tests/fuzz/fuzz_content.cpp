// Bytes from another party, behind the cryptography: the decrypted Content of envelopes from a
// contact, a stranger and this account's own other device, as the receiving Client stores and
// applies it (messages, edits, deletes, receipts, typing, group updates and sender keys, sync
// transcripts, contact and group lists, session resets). The target encrypts the fuzzed bytes
// itself, over real sessions and sender keys, so every envelope is authentic and reaches the
// code behind the MAC check. The receiver is a real Client over a real SQLCipher profile in
// TMPDIR; envelopes reach it through the worker thread that receives them from a relay
// (ClientAccess), with no relay and no network. See ContentScript.h for the input language.
//
// Checked after every delivery:
//  - an envelope is always stored or dropped, never refused for good ("could not be stored");
//    an authentic one is never taken for a broken session (no "could not be decrypted" notice
//    unless the input sent garbage or relay pushes), nor for a changed identity;
//  - every message's text is UTF-8, at most 16 KiB; a deleted message keeps no text and no
//    files; (author, message id) is unique;
//  - an outgoing message's status never goes back; its receipts come only from accounts it was
//    sent to (the 1:1 peer, or a member of the group) and never from this account; delivered
//    and read counts never exceed its recipients;
//  - a group's revision never goes back, its admins are members, and this account is a member
//    exactly when the group says so;
// and at the end of the input, that the search index matches the history.
#include <unistd.h>

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <future>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <vector>

#include "ClientImpl.h"
#include "ContentScript.h"
#include "MemoryProtocolStore.h"
#include "ProfileAccess.h"
#include "SessionCrypto.h"
#include "Utf8.h"

namespace {

using namespace sotto;
using namespace sotto::fuzz;
namespace fs = std::filesystem;

[[noreturn]] void violated(const std::string& what) {
  std::fprintf(stderr, "content invariant violated: %s\n", what.c_str());
  std::abort();
}

// The world's own set-up must work; anything else is a broken target, not a finding.
void must(const Status& s, const std::string& what) {
  if (!s.ok()) violated("setting up (" + what + "): " + s.error().message);
}
template <class T>
T must(Result<T> r, const std::string& what) {
  if (!r.ok()) violated("setting up (" + what + "): " + r.error().message);
  return std::move(r).value();
}

std::string hex(const std::string& raw) { return to_hex(as_bytes(raw)); }

std::atomic<uint64_t> g_now{kWorldBuiltMs};
uint64_t clock_now() { return g_now.load(); }

class Script {
 public:
  Script(const uint8_t* data, size_t size) : data_(data), size_(size) {}
  bool done() const { return pos_ >= size_; }
  uint8_t byte() { return pos_ < size_ ? data_[pos_++] : 0; }
  uint16_t u16() {
    uint16_t lo = byte();
    return static_cast<uint16_t>(lo | (byte() << 8));
  }
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

// Another device: its protocol state in memory, its crypto over it.
struct Peer {
  Address address;
  MemoryProtocolStore store;
  std::unique_ptr<SessionCrypto> crypto;
};

std::unique_ptr<Peer> copy_peer(const Peer& from, const std::shared_ptr<keys::Context>& ctx) {
  auto p = std::make_unique<Peer>();
  p->address = from.address;
  p->store = from.store;
  p->crypto = must(SessionCrypto::create(ctx, p->store, clock_now), "peer crypto");
  return p;
}

// What the listener saw, on the worker thread (events run inline).
struct Seen {
  std::mutex mu;
  std::vector<std::string> refused;  // "could not be stored"
};

class Listener final : public ClientListener {
 public:
  explicit Listener(Seen& seen) : seen_(seen) {}
  void on_connection_state(ConnectionState, const std::string& detail) override {
    if (detail.find("could not be stored") == std::string::npos) return;
    std::lock_guard lock(seen_.mu);
    seen_.refused.push_back(detail);
  }
  void on_message(const Message& m) override { check(m); }
  void on_message_changed(const Message& m) override { check(m); }

 private:
  static void check(const Message& m) {
    if (!is_valid_utf8(m.text)) violated("an event carries a message whose text is not UTF-8");
  }
  Seen& seen_;
};

// One Client over a copy of the world's profile, and the other devices' states.
struct Run {
  std::shared_ptr<Seen> seen = std::make_shared<Seen>();
  std::unique_ptr<Client> client;
  std::unique_ptr<Peer> peers[kSenders];
  std::vector<wire::Envelope> pending;
  uint64_t sequence = 0;
  bool garbage_sent = false;  // or pushes from the relay, which may drop sessions
  // What earlier checks saw.
  std::map<std::string, MessageStatus> status;  // outgoing message id -> status
  std::map<ConversationId, uint32_t> revision;
  std::map<ConversationId, std::set<std::string>> ever_members;

  auto& impl() { return ClientAccess::impl(*client); }

  // Runs `fn` on the Client's worker thread and waits for it.
  void on_worker(std::function<void()> fn) {
    std::promise<void> done;
    impl().post_task([&] {
      fn();
      done.set_value();
    });
    done.get_future().wait();
  }
  // Until the worker finished a whole round of its loop (timers, sweeps, purges) after this.
  void settle() {
    on_worker([] {});
    on_worker([] {});
  }

  void deliver() {
    auto envs = std::move(pending);
    pending.clear();
    on_worker([&] {
      auto& in = impl();
      if (!envs.empty()) in.process_inbound(envs);
      // A batch cut short puts the rest back in front of the queue: take it from there.
      for (int round = 0; round < 100; ++round) {
        std::vector<wire::Envelope> rest;
        {
          std::lock_guard lock(in.mu);
          if (in.inbound.empty() || in.inbound_retry_ms) break;
          rest.assign(std::make_move_iterator(in.inbound.begin()),
                      std::make_move_iterator(in.inbound.end()));
          in.inbound.clear();
        }
        in.process_inbound(rest);
      }
    });
  }

  wire::Envelope envelope(const Peer& from, uint8_t flags) {
    wire::Envelope env;
    Bytes raw;
    from_hex(from.address.account, raw);
    env.set_sender_account_id(std::string(raw.begin(), raw.end()));
    env.set_sender_device_id(from.address.device_id);
    env.set_message_id(message_id(static_cast<uint8_t>(++sequence)) + "env");
    env.set_sequence(sequence);
    env.set_server_timestamp_ms((flags & kNoServerTime) ? 0 : clock_now());
    env.set_ephemeral(flags & kEphemeral);
    return env;
  }

  void send_pairwise(Peer& from, const std::string& content, uint8_t flags) {
    auto ct = from.crypto->encrypt(Address{hex(kMe), 1}, as_bytes(content));
    if (!ct.ok()) violated("the sender could not encrypt: " + ct.error().message);
    wire::Envelope env = envelope(from, flags);
    env.set_type(ct->type == CiphertextType::kPreKey ? wire::Envelope::PREKEY_MESSAGE
                                                     : wire::Envelope::MESSAGE);
    env.set_ciphertext(std::string(ct->bytes.begin(), ct->bytes.end()));
    pending.push_back(std::move(env));
  }

  void send_group(Peer& from, const std::string& content, uint8_t flags) {
    auto ct = from.crypto->group_encrypt(as_bytes(kGroupId), as_bytes(content));
    if (!ct.ok()) violated("the sender could not encrypt for the group: " + ct.error().message);
    wire::Envelope env = envelope(from, flags);
    env.set_type(wire::Envelope::SENDER_KEY);
    env.set_ciphertext(std::string(ct->begin(), ct->end()));
    pending.push_back(std::move(env));
  }

  void send_garbage(Peer& from, uint8_t type, const std::string& bytes) {
    wire::Envelope env = envelope(from, 0);
    env.set_type(static_cast<wire::Envelope::Type>(type % 4));
    env.set_ciphertext(bytes);
    pending.push_back(std::move(env));
    garbage_sent = true;
  }

  // A frame as RelayConnection reads it; a push goes to the Client as on the loop thread.
  void relay_frame(const std::string& bytes) {
    wire::Frame f;
    if (!f.ParseFromString(bytes) || !f.has_push()) return;
    garbage_sent = true;
    impl().on_push(std::move(*f.mutable_push()));
    // The worker may have taken a pushed envelope itself: wait until it is through.
    settle();
    deliver();
  }

  void check();
};

void Run::check() {
  {
    std::lock_guard lock(seen->mu);
    if (!seen->refused.empty())
      violated("an authentic envelope was refused: " + seen->refused.front());
  }
  {
    std::lock_guard lock(impl().mu);
    if (!impl().inbound.empty()) violated("received envelopes are left waiting in the queue");
  }
  const std::string me = hex(kMe);
  auto convs = client->conversations();
  if (!convs.ok()) violated("conversations() failed: " + convs.error().message);
  std::set<std::pair<std::string, std::string>> ids;
  for (const auto& conv : *convs) {
    std::set<std::string> recipients;
    if (conv.kind == ConversationKind::kDirect) {
      recipients.insert(conv.peer);
    } else {
      auto g = client->group(conv.id);
      if (!g.ok()) violated("group() failed: " + g.error().message);
      bool me_in = false;
      for (const auto& m : g->members) {
        me_in |= m.account == me;
        ever_members[conv.id].insert(m.account);
      }
      if (me_in != g->is_member)
        violated("the group says this account is " + std::string(g->is_member ? "" : "not ") +
                 "a member, its members say otherwise");
      if (g->members.size() > 1000) violated("a group has more than 1,000 members");
      auto [it, fresh] = revision.emplace(conv.id, g->revision);
      if (!fresh && g->revision < it->second)
        violated("a group went back from revision " + std::to_string(it->second) + " to " +
                 std::to_string(g->revision));
      it->second = g->revision;
      recipients = ever_members[conv.id];
    }
    std::string cursor;
    for (int page = 0; page < 100; ++page) {
      auto p = client->messages(conv.id, cursor, 1000);
      if (!p.ok()) violated("messages() failed: " + p.error().message);
      for (const auto& m : p->messages) {
        if (!is_valid_utf8(m.text)) violated("message " + m.id + " has text that is not UTF-8");
        if (m.kind == MessageKind::kText && m.text.size() > 16 * 1024)
          violated("message " + m.id + " has more than 16 KiB of text");
        if (m.deleted && (!m.text.empty() || !m.attachments.empty()))
          violated("deleted message " + m.id + " kept its text or attachments");
        if (m.kind == MessageKind::kNotice) {
          if (!garbage_sent && m.text.find("could not be decrypted") != std::string::npos)
            violated("an authentic envelope was taken for a broken session: " + m.text);
          if (m.text.find("safety number with this contact changed") != std::string::npos)
            violated("an authentic envelope was held for a changed identity");
          continue;
        }
        if (!ids.emplace(m.sender, m.id).second)
          violated("message " + m.id + " from " + m.sender + " is in history twice");
        if (!m.outgoing) continue;
        if (m.delivered_to > m.recipients || m.read_by > m.recipients)
          violated("message " + m.id + " is delivered to " + std::to_string(m.delivered_to) +
                   " and read by " + std::to_string(m.read_by) + " of " +
                   std::to_string(m.recipients));
        auto [it, fresh] = status.emplace(m.id, m.status);
        if (!fresh && m.status < it->second && m.status != MessageStatus::kFailed)
          violated("message " + m.id + " went back from status " +
                   std::to_string(static_cast<int>(it->second)) + " to " +
                   std::to_string(static_cast<int>(m.status)));
        it->second = m.status;
        auto receipts = client->receipts(conv.id, m.id);
        if (!receipts.ok()) violated("receipts() failed: " + receipts.error().message);
        for (const auto& r : *receipts) {
          if (r.account == me || !recipients.count(r.account))
            violated("message " + m.id + " has a receipt from " + r.account +
                     ", who it was not sent to");
        }
      }
      cursor = p->next_cursor;
      if (cursor.empty()) break;
    }
  }
}

// The template every input starts from, built once: a profile on disk with an identity, an
// account, sessions with three devices, a group and a few messages, and those devices' states.
class World {
 public:
  World() {
    const char* tmp = std::getenv("TMPDIR");
    std::string pattern = std::string(tmp && *tmp ? tmp : "/tmp") + "/sotto-fuzz-content-XXXXXX";
    if (!::mkdtemp(pattern.data())) violated("cannot make a directory in TMPDIR");
    base_ = pattern;
    std::atexit([] { World::remove_base(); });
    base_for_exit() = base_;
    // These Clients never speak TLS: spare each one's event loop loading the system's CA
    // bundle, which otherwise takes most of an input's time.
    ::setenv("SSL_CERT_FILE", (base_ / "no-ca-bundle").c_str(), 1);
    ::setenv("SSL_CERT_DIR", (base_ / "no-ca-dir").c_str(), 1);
    ctx_ = must(keys::Context::create(), "context");
    build();
  }

  // A fresh Client over a copy of the template, with copies of the other devices.
  std::unique_ptr<Run> start() {
    g_now = kInputStartMs;
    fs::path dir = base_ / "run";
    std::error_code ec;
    fs::remove_all(dir, ec);
    fs::copy(base_ / "template", dir, fs::copy_options::recursive, ec);
    if (ec) violated("cannot copy the template profile: " + ec.message());
    auto run = std::make_unique<Run>();
    run->client = open_client(dir, *run->seen);
    for (int i = 0; i < kSenders; ++i) run->peers[i] = copy_peer(*peers_[i], ctx_);
    return run;
  }

 private:
  static fs::path& base_for_exit() {
    static fs::path p;
    return p;
  }
  static void remove_base() {
    std::error_code ec;
    if (!base_for_exit().empty()) fs::remove_all(base_for_exit(), ec);
  }

  std::unique_ptr<Client> open_client(const fs::path& dir, Seen& seen) {
    ProfileOptions po;
    po.initial_prekeys = 5;
    po.sync_every_commit = false;
    po.cache_mib = 2;
    po.clock = clock_now;
    auto profile = must(Profile::open_with_key(dir, SecureBytes(Bytes(32, 0x42)), po), "profile");
    if (!profile->has_identity()) {
      must(profile->create_identity(hex(kMe), 1), "identity");
      auto parts = ProfileAccess::parts(*profile);
      std::lock_guard lock(parts.mu);
      must(parts.crypto.transaction([&]() -> Status {
        History history(parts.db);
        AccountRow a;
        a.account = hex(kMe);
        a.device_id = 1;
        a.handle = "me";
        a.auth_secret = Bytes(32, 7);
        a.state = AccountState::kRegistered;
        return history.save_account(a);
      }),
           "account");
    }
    ClientOptions co;
    co.executor = [](std::function<void()> fn) { fn(); };
    auto client = must(Client::create(std::move(profile), co), "client");
    client->set_listener(std::make_shared<Listener>(seen));
    return client;
  }

  void build() {
    g_now = kWorldBuiltMs;
    Run run;
    run.client = open_client(base_ / "template", *run.seen);
    auto& me = run.impl();
    const Address me_address{hex(kMe), 1};
    wire::PreKeyBundle bundles[kSenders];
    keys::IdentityKeyPair me_pair;
    {
      std::lock_guard lock(me.parts.mu);
      for (auto& b : bundles) b = must(me.parts.crypto.issue_bundle(), "bundle");
      me_pair = me.parts.crypto.identity_key_pair();
    }
    const Address addresses[kSenders] = {{hex(kPeer), 1}, {hex(kStranger), 1}, {hex(kMe), 2}};
    for (int i = 0; i < kSenders; ++i) {
      auto& p = peers_[i];
      p = std::make_unique<Peer>();
      p->address = addresses[i];
      p->crypto = must(SessionCrypto::create(ctx_, p->store, clock_now), "peer");
      if (i == kFromOwnDevice)
        must(p->crypto->import_identity(p->address.account, 2, me_pair, 0), "own device");
      else
        must(p->crypto->create_identity(p->address.account, 1, 0), "peer identity");
      must(p->crypto->start_session(me_address, bundles[i]), "session");
      run.peers[i] = copy_peer(*p, ctx_);
    }
    auto text = [](const std::string& id, const std::string& body) {
      content::DataMessage dm;
      dm.set_message_id(id);
      dm.set_timestamp_ms(kWorldBuiltMs);
      dm.set_text(body);
      return dm;
    };
    auto send = [&](int from, const content::Content& c, bool group) {
      std::string bytes = c.SerializeAsString();
      if (group)
        run.send_group(*run.peers[from], bytes, 0);
      else
        run.send_pairwise(*run.peers[from], bytes, 0);
      run.deliver();
    };
    // The group, made by alice with everyone in it, and everyone's sender key for it.
    content::Content update;
    auto* u = update.mutable_group_update();
    u->set_group_id(kGroupId);
    u->set_revision(1);
    u->set_name("fuzz");
    const std::pair<std::string, std::string> members[] = {
        {kPeer, "alice"}, {kMe, "me"}, {kStranger, "carol"}};
    for (const auto& [account, handle] : members) {
      auto* m = u->add_members();
      m->set_account_id(account);
      m->set_handle(handle);
    }
    u->add_admins(kPeer);
    u->set_changed_by(kPeer);
    u->set_timestamp_ms(kWorldBuiltMs);
    send(kFromPeer, update, false);
    for (int i = 0; i < kSenders; ++i) {
      content::Content skd;
      skd.mutable_sender_key_distribution()->set_group_id(kGroupId);
      auto dist = must(run.peers[i]->crypto->group_sender_key(as_bytes(kGroupId)), "sender key");
      skd.mutable_sender_key_distribution()->set_distribution_message(
          std::string(dist.begin(), dist.end()));
      send(i, skd, false);
    }
    content::Content c;
    *c.mutable_data_message() = text(kPeerMessage, "hello from alice");
    send(kFromPeer, c, false);
    *c.mutable_data_message() = text(kStrangerMessage, "hello from carol");
    send(kFromStranger, c, false);
    *c.mutable_data_message() = text(kPeerGroupMessage, "hello group from alice");
    c.mutable_data_message()->mutable_group()->set_group_id(kGroupId);
    c.mutable_data_message()->mutable_group()->set_revision(1);
    send(kFromPeer, c, true);
    *c.mutable_data_message() = text(kOwnGroupMessage, "hello group from me");
    c.mutable_data_message()->mutable_group()->set_group_id(kGroupId);
    c.mutable_data_message()->mutable_group()->set_revision(1);
    send(kFromOwnDevice, c, true);
    const std::tuple<std::string, std::string, std::string> transcripts[] = {
        {kPeer, kOwnToPeerMessage, "hi alice"}, {kStranger, kOwnToStrangerMessage, "hi carol"}};
    for (const auto& [to, id, body] : transcripts) {
      content::Content sync;
      auto* sent = sync.mutable_sync()->mutable_sent();
      sent->set_destination_account_id(to);
      sent->set_message_id(id);
      sent->set_timestamp_ms(kWorldBuiltMs);
      *sent->mutable_message() = text(id, body);
      send(kFromOwnDevice, sync, false);
    }
    run.check();
    auto convs = must(run.client->conversations(), "conversations");
    size_t messages = 0;
    for (const auto& conv : convs)
      messages += must(run.client->messages(conv.id, "", 100), "messages").messages.size();
    // Three conversations; six messages and the notice that alice added this account.
    if (convs.size() != 3 || messages != 7)
      violated("the world was not built as planned: " + std::to_string(convs.size()) +
               " conversations, " + std::to_string(messages) + " messages");
    for (int i = 0; i < kSenders; ++i) {
      peers_[i]->store = run.peers[i]->store;
      peers_[i]->crypto.reset();
    }
    run.client.reset();  // closes the profile: the template is on disk
  }

  fs::path base_;
  std::shared_ptr<keys::Context> ctx_;
  std::unique_ptr<Peer> peers_[kSenders];
};

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static World world;
  auto run = world.start();
  Script s(data, size);
  for (int step = 0; step < 48 && !s.done(); ++step) {
    uint8_t op = s.byte() % kContentOps;
    switch (op) {
      case kPairwise:
      case kGroup: {
        Peer& from = *run->peers[s.byte() % kSenders];
        uint8_t flags = s.byte();
        std::string content = s.bytes(s.u16());
        if (op == kPairwise)
          run->send_pairwise(from, content, flags);
        else
          run->send_group(from, content, flags);
        break;
      }
      case kGarbage: {
        Peer& from = *run->peers[s.byte() % kSenders];
        uint8_t type = s.byte();
        run->send_garbage(from, type, s.bytes(s.u16()));
        break;
      }
      case kDeliver:
        run->deliver();
        run->check();
        break;
      case kClock:
        g_now += uint64_t{s.u16()} * 10'000;
        run->settle();
        run->check();
        break;
      case kRelay:
        run->relay_frame(s.bytes(s.u16()));
        run->check();
        break;
    }
    if (run->pending.size() >= 4) {
      run->deliver();
      run->check();
    }
  }
  run->deliver();
  run->check();
  auto index = run->client->profile().check_search_index();
  if (!index.ok()) violated("check_search_index() failed: " + index.error().message);
  if (index->damaged) violated("the search index does not match the history: " + index->problem);
  return 0;
}
