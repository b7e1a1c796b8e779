#include "Scenario.h"

#include <openssl/evp.h>
#include <sys/random.h>

#include <algorithm>
#include <cctype>
#include <cstdio>
#include <fstream>
#include <functional>
#include <map>
#include <optional>
#include <set>
#include <sstream>
#include <thread>

#include "AppSupport.h"
#include "Inspect.h"
#include "RelayRunner.h"
#include "Transcript.h"
#include "sotto/Client.h"

namespace sotto::demo {
namespace {

using namespace std::chrono_literals;
namespace fs = std::filesystem;

constexpr size_t kPeerWidth = 23;
constexpr size_t kTextWidth = 44;

// What the people say. Every string here is also searched for in the relay's files at the end.
const char* const kHello = "Lunch at the harbour today?";
const char* const kReply = "Sounds good, see you at the pier at noon.";
const std::vector<std::string> kWhileAway = {
    "1/5 Ferry times change this weekend",      "2/5 Boats now leave every forty minutes",
    "3/5 The last one back is at ten past ten", "4/5 Tickets are cheaper at the kiosk",
    "5/5 Call me when you read this",
};
const char* const kGroupName = "Harbour crew";
const char* const kGroupHello = "Who's in for the ferry at six?";
const char* const kGroupReply = "Count me in, I'll bring the snacks.";
const char* const kAfterRemoval = "Change of plan: the ferry leaves at seven.";
const char* const kRemovedTries = "Wait, am I still in the crew?";
const char* const kFileName = "harbour-map.txt";
const char* const kCaption = "The map for tonight, pier seven is marked";
const char* const kFileLinePrefix = "harbour-map line ";

int64_t steady_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

std::string short_id(const std::string& hex) { return hex.substr(0, 8) + "…"; }

std::string sha256_hex(const std::string& data) {
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int n = 0;
  EVP_Digest(data.data(), data.size(), md, &n, EVP_sha256(), nullptr);
  return to_hex(ByteView(md, n));
}

std::string thousands(uint64_t n) {
  std::string digits = std::to_string(n), s;
  for (size_t i = 0; i < digits.size(); ++i) {
    if (i > 0 && (digits.size() - i) % 3 == 0) s += ',';
    s += digits[i];
  }
  return s;
}

std::string seconds(std::chrono::milliseconds d) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.1f s", static_cast<double>(d.count()) / 1000.0);
  return buf;
}

// Lower-case ASCII words, for checking what a search should find.
std::vector<std::string> words(const std::string& text) {
  std::vector<std::string> out;
  std::string w;
  for (char c : text) {
    if (std::isalnum(static_cast<unsigned char>(c))) {
      w += static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    } else if (!w.empty()) {
      out.push_back(w);
      w.clear();
    }
  }
  if (!w.empty()) out.push_back(w);
  return out;
}

// An outgoing message whose status changes are printed as they happen.
struct Tracked {
  std::string from;  // who sent it
  std::string to;    // "bob", or the group's name
  std::string text;
  bool group = false;
  std::set<MessageStatus> show;     // which statuses to print
  std::set<MessageStatus> printed;  // printed already
  // Groups: "delivered to X of Y, read by Z of Y", from the receipts as they come.
  uint32_t recipients = 0;
  std::set<std::string> delivered, read;
  uint32_t delivered_to = 0, read_by = 0;  // printed so far
};

}  // namespace

// One person: a profile directory, its key, and the Client on it.
struct User {
  std::string name;
  fs::path dir;
  SecureBytes key;
  std::unique_ptr<Client> client;
  AccountInfo info;
  std::atomic<bool> show_connection{false};

  // What the listener recorded.
  std::mutex mu;
  std::vector<Message> incoming;
  struct Typing {
    std::string account;
    bool typing;
  };
  std::vector<Typing> typing;
  struct Presence {
    std::string account;
    bool online;
    uint64_t last_seen_ms;
  };
  std::vector<Presence> presence;

  Client* operator->() { return client.get(); }
};

struct Scenario::Impl {
  ScenarioOptions opt;
  Progress& progress;
  std::unique_ptr<RelayRunner> relay;
  fs::path profiles_dir, files_dir, client_log;
  std::vector<std::unique_ptr<User>> users;
  int passed = 0;
  bool shut = false;
  std::vector<std::string> needles;  // the demo's plaintext

  // ---- what the listeners saw (under mu) ----
  mutable std::mutex mu;
  std::map<std::string, std::string> name_of;                                // account -> "alice"
  std::map<std::string, std::map<ConversationId, std::string>> group_label;  // user -> conv -> name
  std::map<std::string, Tracked> tracked;                     // message id -> what to print
  std::map<std::string, std::vector<MessageStatus>> stashed;  // statuses before track()
  std::mutex log_mu;

  Impl(ScenarioOptions o, Progress& p) : opt(std::move(o)), progress(p) {}

  // ---- waiting and failing ----
  void expect(const std::string& what, const std::function<bool()>& pred) {
    {
      std::lock_guard lock(progress.mu);
      progress.expecting = what;
    }
    auto deadline = std::chrono::steady_clock::now() + opt.wait;
    while (!pred()) {
      if (std::chrono::steady_clock::now() >= deadline)
        throw StepFailure("expected " + what + ", but that did not happen within " +
                          seconds(opt.wait));
      std::this_thread::sleep_for(10ms);
    }
    std::lock_guard lock(progress.mu);
    progress.expecting.clear();
  }
  [[noreturn]] void fail(const std::string& what) { throw StepFailure(what); }
  template <class T>
  T must(Result<T> r, const std::string& what) {
    if (!r.ok())
      fail(what + " failed: " + std::string(error_code_name(r.code())) + ": " + r.error().message);
    return std::move(r).value();
  }
  void must(Status s, const std::string& what) {
    if (!s.ok())
      fail(what + " failed: " + std::string(error_code_name(s.code())) + ": " + s.error().message);
  }

  void step(int n, const std::string& title, const std::function<void()>& body) {
    {
      std::lock_guard lock(progress.mu);
      progress.step = n;
      progress.title = title;
      progress.expecting.clear();
    }
    progress.deadline_ms = steady_ms() + opt.step.count();
    out().heading(n, title);
    body();
    progress.deadline_ms = 0;
    passed = n;
  }

  // ---- printing messages ----
  std::string name(const std::string& account) {
    std::lock_guard lock(mu);
    auto it = name_of.find(account);
    return it == name_of.end() ? short_id(account) : it->second;
  }
  void print_outgoing(const Tracked& t, const std::string& status) {
    out().event(t.from, Transcript::fit("-> " + t.to, kPeerWidth - 1) + " " +
                            Transcript::quote(t.text, kTextWidth) + " " + status);
  }
  std::string status_text(MessageStatus s) {
    switch (s) {
      case MessageStatus::kPending:
        return out().paint(Paint::kDim, "sending …");
      case MessageStatus::kSent:
        return "sent ✓";
      case MessageStatus::kDelivered:
        return "delivered ✓✓";
      case MessageStatus::kRead:
        return out().paint(Paint::kBlue, "read ✓✓");
      case MessageStatus::kFailed:
        return out().paint(Paint::kRed, "failed !");
      default:
        return app::status_word(s);
    }
  }
  // Under mu.
  void print_status_locked(Tracked& t, MessageStatus s) {
    if (t.group && (s == MessageStatus::kDelivered || s == MessageStatus::kRead)) return;
    if (!t.show.count(s) || t.printed.count(s)) return;
    t.printed.insert(s);
    print_outgoing(t, status_text(s));
  }
  void track(const std::string& id, Tracked t) {
    std::lock_guard lock(mu);
    auto& tr = tracked[id] = std::move(t);
    print_outgoing(tr, status_text(MessageStatus::kPending));
    for (auto s : stashed[id]) print_status_locked(tr, s);
    stashed.erase(id);
  }

  void on_status(const std::string& id, MessageStatus s) {
    std::lock_guard lock(mu);
    auto it = tracked.find(id);
    if (it == tracked.end()) {
      stashed[id].push_back(s);
      return;
    }
    print_status_locked(it->second, s);
  }

  // Under mu: prints the group counts that went up.
  void print_counts_locked(Tracked& t, uint32_t delivered_to, uint32_t read_by,
                           const std::string& who) {
    std::string of = " of " + std::to_string(t.recipients);
    std::string by = who.empty() ? "" : out().paint(Paint::kDim, " (" + who + ")");
    if (delivered_to > t.delivered_to) {
      t.delivered_to = delivered_to;
      print_outgoing(t, "delivered to " + std::to_string(delivered_to) + of + by);
    }
    if (read_by > t.read_by) {
      t.read_by = read_by;
      print_outgoing(t, out().paint(Paint::kBlue, "read by " + std::to_string(read_by) + of) + by);
    }
  }

  void on_changed(const Message& m) {
    std::lock_guard lock(mu);
    auto it = tracked.find(m.id);
    if (it == tracked.end() || !it->second.group) return;
    if (m.recipients) it->second.recipients = m.recipients;
    print_counts_locked(it->second, m.delivered_to, m.read_by, "");
  }

  void on_receipt(const std::string& id, const Receipt& r) {
    std::lock_guard lock(mu);
    auto it = tracked.find(id);
    if (it == tracked.end() || !it->second.group) return;
    Tracked& t = it->second;
    t.delivered.insert(r.account);
    if (r.status == MessageStatus::kRead) t.read.insert(r.account);
    auto n = name_of.find(r.account);
    print_counts_locked(t, static_cast<uint32_t>(t.delivered.size()),
                        static_cast<uint32_t>(t.read.size()), n == name_of.end() ? "" : n->second);
  }

  void on_incoming(const std::string& me, const Message& m) {
    if (m.outgoing) return;
    if (m.kind == MessageKind::kNotice) {
      out().event(me, out().paint(Paint::kDim, "notice: " + m.text));
      return;
    }
    std::string from = name(m.sender);
    {
      std::lock_guard lock(mu);
      auto g = group_label[me].find(m.conversation);
      if (g != group_label[me].end()) from += ", " + g->second;
    }
    std::string line =
        Transcript::fit("<- " + from, kPeerWidth - 1) + " " + Transcript::quote(m.text, kTextWidth);
    for (const auto& a : m.attachments)
      line += " + " + a.file_name + " (" + app::format_size(a.size) + ")";
    out().event(me, line);
  }

  void client_log_line(const std::string& who, const std::string& line) {
    std::lock_guard lock(log_mu);
    std::ofstream(client_log, std::ios::app) << who << ": " << line << "\n";
  }

  // ---- steps ----
  User& user(const std::string& n);
  void open(User& u);
  void close(User& u);
  std::string send(User& from, ConversationId conv, const std::string& to, const std::string& text,
                   bool group, std::set<MessageStatus> show);
  std::optional<Message> message(User& u, ConversationId conv, const std::string& id);
  bool received(User& u, const std::string& id);
  std::optional<ConversationId> group_of(User& u);
  std::vector<Message> history(User& u, ConversationId conv);

  void start_relay();
  void step_register();
  void step_chat();
  void step_offline();
  void step_group();
  void step_removal();
  void step_file();
  void step_live();
  void step_search();
  void step_relay_view();

  // Conversations, by who sees them.
  ConversationId ab = 0, ba = 0, g_alice = 0, g_bob = 0, g_carol = 0;
  std::string file_sha;
};

namespace {

class Events : public ClientListener {
 public:
  Events(Scenario::Impl& s, User& u) : s_(s), u_(u) {}

  void on_message(const Message& m) override {
    {
      std::lock_guard lock(u_.mu);
      u_.incoming.push_back(m);
    }
    s_.on_incoming(u_.name, m);
  }
  void on_message_status(ConversationId, const std::string& id, MessageStatus st) override {
    s_.on_status(id, st);
  }
  void on_message_changed(const Message& m) override { s_.on_changed(m); }
  void on_receipt(ConversationId, const std::string& id, const Receipt& r) override {
    s_.on_receipt(id, r);
  }
  void on_connection_state(ConnectionState st, const std::string& detail) override {
    if (!u_.show_connection) return;
    static const char* const kNames[] = {"offline", "connecting", "syncing (receiving the queue)",
                                         "online", "logged out"};
    auto i = static_cast<size_t>(st);
    std::string line = "connection: " + std::string(i < 5 ? kNames[i] : "?");
    if (st == ConnectionState::kOffline && !detail.empty()) line += " (" + detail + ")";
    out().event(u_.name, out().paint(Paint::kDim, line));
  }
  void on_identity_changed(const IdentityChange& c) override {
    out().event(u_.name,
                out().paint(Paint::kRed, "the safety number with @" + c.handle + " changed"));
  }
  void on_typing(ConversationId, const std::string& account, bool typing) override {
    {
      std::lock_guard lock(u_.mu);
      u_.typing.push_back({account, typing});
    }
    out().event(u_.name, "sees " + s_.name(account) + (typing ? " typing…" : " stop typing"));
  }
  void on_presence(const std::string& account, bool online, uint64_t last_seen_ms) override {
    {
      std::lock_guard lock(u_.mu);
      bool same = false;
      for (auto it = u_.presence.rbegin(); it != u_.presence.rend(); ++it)
        if (it->account == account) {
          same = it->online == online && it->last_seen_ms == last_seen_ms;
          break;
        }
      u_.presence.push_back({account, online, last_seen_ms});
      if (same) return;  // said already
    }
    std::string what = "sees @" + s_.name(account) + " ";
    if (online) {
      what += out().paint(Paint::kGreen, "● online");
    } else {
      what += "○ offline";
      if (last_seen_ms)
        what += ", " + app::format_last_seen(last_seen_ms, app::now_ms()) + " (" +
                app::format_clock(last_seen_ms) + ")";
    }
    out().event(u_.name, what);
  }

 private:
  Scenario::Impl& s_;
  User& u_;
};

}  // namespace

User& Scenario::Impl::user(const std::string& n) {
  for (auto& u : users)
    if (u->name == n) return *u;
  fail("no user " + n);
}

void Scenario::Impl::open(User& u) {
  auto profile = must(Profile::open_with_key(u.dir, u.key), "opening " + u.name + "'s profile");
  ClientOptions o;
  o.relay_url = relay->ws_url();
  o.device_name = u.name + "'s laptop";
  o.request_timeout = opt.wait;
  std::string who = u.name;
  o.log = [this, who](const std::string& line) { client_log_line(who, line); };
  u.client = must(Client::create(std::move(profile), o), "creating " + u.name + "'s client");
  u.client->set_listener(std::make_shared<Events>(*this, u));
}

void Scenario::Impl::close(User& u) { u.client.reset(); }

std::string Scenario::Impl::send(User& from, ConversationId conv, const std::string& to,
                                 const std::string& text, bool group,
                                 std::set<MessageStatus> show) {
  needles.push_back(text);
  auto id = must(from->send_text(conv, text), from.name + " sending \"" + text + "\"");
  Tracked t;
  t.from = from.name;
  t.to = to;
  t.text = text;
  t.group = group;
  t.show = std::move(show);
  if (group) {
    auto g = must(from->group(conv), from.name + " reading the group");
    t.recipients = static_cast<uint32_t>(g.members.size() - 1);
  }
  track(id, std::move(t));
  return id;
}

std::optional<Message> Scenario::Impl::message(User& u, ConversationId conv,
                                               const std::string& id) {
  auto m = u->message(conv, id);
  if (!m.ok()) return std::nullopt;
  return *m;
}

bool Scenario::Impl::received(User& u, const std::string& id) {
  std::lock_guard lock(u.mu);
  return std::any_of(u.incoming.begin(), u.incoming.end(),
                     [&](const Message& m) { return m.id == id; });
}

std::optional<ConversationId> Scenario::Impl::group_of(User& u) {
  auto convs = u->conversations();
  if (!convs.ok()) return std::nullopt;
  for (const auto& c : *convs)
    if (c.kind == ConversationKind::kGroup) return c.id;
  return std::nullopt;
}

std::vector<Message> Scenario::Impl::history(User& u, ConversationId conv) {
  std::vector<Message> all;
  std::string cursor;
  for (;;) {
    auto page = must(u->messages(conv, cursor, 200), u.name + " reading history");
    all.insert(all.end(), page.messages.begin(), page.messages.end());
    if (page.next_cursor.empty()) break;
    cursor = page.next_cursor;
  }
  std::reverse(all.begin(), all.end());
  return all;
}

// ---- the relay ----

void Scenario::Impl::start_relay() {
  relay = std::make_unique<RelayRunner>(opt.relay_binary, opt.work_dir / "relay", opt.relay_args);
  std::string error;
  bool started = relay->start(static_cast<int>(opt.wait.count()), error);
  progress.relay_pid = relay->pid();
  if (!started) fail("starting the relay: " + error);
  std::string cmd;
  for (const auto& a : relay->args()) {
    std::string s = a;
    std::string root = opt.work_dir.string();
    if (s.rfind(root, 0) == 0) s = "$DEMO" + s.substr(root.size());
    cmd += (cmd.empty() ? "" : " ") + s;
  }
  out().event("relay", cmd);
  out().event("relay", "listening on " + relay->ws_url() + " (pid " + std::to_string(relay->pid()) +
                           "), log in $DEMO/relay/relay.log");
  std::string limits =
      opt.relay_args.empty()
          ? "limits: the relay's defaults, none relaxed (three registrations from 127.0.0.1 fit "
            "--rate-register-ip 5/1h)"
          : "flags added to the defaults:";
  for (const auto& a : opt.relay_args) limits += " " + a;
  out().event("relay", "store: the embedded one (SQLite in $DEMO/relay/data); " + limits);
}

// ---- 1. registration and safety numbers ----

void Scenario::Impl::step_register() {
  for (const char* n : {"alice", "bob", "carol"}) {
    auto u = std::make_unique<User>();
    u->name = n;
    u->dir = profiles_dir / n;
    u->key = SecureBytes(32);
    if (::getrandom(u->key.data(), u->key.size(), 0) != static_cast<ssize_t>(u->key.size()))
      fail("no random bytes for a profile key");
    open(*u);
    auto info = must(u->client->register_account(n), "registering @" + std::string(n));
    u->info = info;
    {
      std::lock_guard lock(mu);
      name_of[info.account] = n;
    }
    User& ref = *u;
    users.push_back(std::move(u));
    expect(std::string(n) + " online after registering",
           [&] { return ref->connection_state() == ConnectionState::kOnline; });
    out().event(n, "registered " + Transcript::fit("@" + std::string(n), 7) + "account " +
                       short_id(info.account) + " device " + std::to_string(info.device_id) +
                       ", profile: SQLCipher in $DEMO/profiles/" + n);
  }
  User& alice = user("alice");
  User& bob = user("bob");
  auto to_bob = must(alice->add_contact("@bob"), "alice looking up @bob");
  auto to_alice = must(bob->add_contact("@alice"), "bob looking up @alice");
  ab = must(alice->direct_conversation(to_bob.account), "alice opening the chat with bob");
  ba = must(bob->direct_conversation(to_alice.account), "bob opening the chat with alice");
  out().event("alice", "looked up @bob at the relay: account " + short_id(to_bob.account));
  out().event("bob", "looked up @alice at the relay: account " + short_id(to_alice.account));
  // Before any message: the numbers come from the identity keys the lookups returned, which is
  // when comparing them matters most.
  auto sn_ab = alice->safety_number(bob.info.account);
  auto sn = must(std::move(sn_ab), "alice's safety number with bob");
  auto sn_ba = must(bob->safety_number(alice.info.account), "bob's safety number with alice");
  out().event("alice", "safety number with @bob:   " + app::group_digits(sn.digits));
  out().event("bob", "safety number with @alice: " + app::group_digits(sn_ba.digits));
  if (sn.digits.size() != 60 || sn.digits != sn_ba.digits)
    fail("expected alice and bob to see the same 60-digit safety number");
  out().event("demo", out().ok("alice and bob see the same 60 digits: no one in the middle"));
}

// ---- 2. 1:1 chat with sent / delivered / read ----

void Scenario::Impl::step_chat() {
  User& alice = user("alice");
  User& bob = user("bob");
  std::set<MessageStatus> all = {MessageStatus::kSent, MessageStatus::kDelivered,
                                 MessageStatus::kRead, MessageStatus::kFailed};
  auto hello = send(alice, ab, "bob", kHello, false, all);
  expect("bob to receive \"" + std::string(kHello) + "\"", [&] { return received(bob, hello); });
  expect("alice's message to be marked delivered", [&] {
    auto m = message(alice, ab, hello);
    return m && m->status >= MessageStatus::kDelivered && m->status != MessageStatus::kFailed;
  });
  must(bob->mark_read(ba, hello), "bob marking the chat read");
  out().event("bob", "opens the chat: marks alice's message read");
  expect("alice's message to be marked read", [&] {
    auto m = message(alice, ab, hello);
    return m && m->status == MessageStatus::kRead;
  });

  auto reply = send(bob, ba, "alice", kReply, false, all);
  expect("alice to receive bob's reply", [&] { return received(alice, reply); });
  must(alice->mark_read(ab, reply), "alice marking the chat read");
  out().event("alice", "opens the chat: marks bob's reply read");
  expect("bob's reply to be marked read", [&] {
    auto m = message(bob, ba, reply);
    return m && m->status == MessageStatus::kRead;
  });
  // Let the last status line print before the step's summary.
  std::this_thread::sleep_for(50ms);
  out().event("demo", out().ok("both messages went sending → sent → delivered → read"));
}

// ---- 3. bob offline: his queue waits at the relay, and arrives in order ----

void Scenario::Impl::step_offline() {
  User& alice = user("alice");
  User& bob = user("bob");
  close(bob);
  out().event("bob", "quits the app (his Client is closed)");
  std::vector<std::string> ids;
  for (const auto& text : kWhileAway)
    ids.push_back(send(alice, ab, "bob", text, false,
                       {MessageStatus::kSent, MessageStatus::kDelivered, MessageStatus::kFailed}));
  expect("the relay to commit alice's 5 messages (status sent)", [&] {
    for (const auto& id : ids) {
      auto m = message(alice, ab, id);
      if (!m || m->status < MessageStatus::kSent || m->status == MessageStatus::kFailed)
        return false;
    }
    return true;
  });
  for (const auto& id : ids)
    if (message(alice, ab, id)->status != MessageStatus::kSent)
      fail("expected alice's messages to stay 'sent' (not delivered) while bob is away");

  // What the relay holds for bob now, straight from its database.
  std::string error;
  auto snap = read_store(relay->data_dir() / "relay.db", bob.info.account, error);
  if (!snap) fail("reading the relay's store: " + error);
  if (snap->queued_sizes.size() < ids.size())
    fail("expected at least " + std::to_string(ids.size()) + " envelopes queued for bob, found " +
         std::to_string(snap->queued_sizes.size()));
  std::string sizes;
  for (auto s : snap->queued_sizes) sizes += (sizes.empty() ? "" : ", ") + thousands(s);
  out().event("relay", "holds " + std::to_string(snap->queued_sizes.size()) +
                           " envelopes for bob's device: ciphertexts of " + sizes + " bytes");
  out().event("relay",
              out().paint(Paint::kDim,
                          "(it sees who sent them to which device and when; the "
                          "contents are opaque and padded, so sizes do not tell lengths)"));

  bob.show_connection = true;
  out().event("bob", "opens the app again");
  open(bob);
  must(bob->connect(), "bob reconnecting");
  expect("bob to receive all 5 messages sent while he was away", [&] {
    return std::all_of(ids.begin(), ids.end(),
                       [&](const std::string& id) { return received(bob, id); });
  });
  bob.show_connection = false;
  // Order: as they arrived, and as his history shows them.
  std::vector<std::string> arrived;
  {
    std::lock_guard lock(bob.mu);
    for (const auto& m : bob.incoming)
      if (std::find(ids.begin(), ids.end(), m.id) != ids.end()) arrived.push_back(m.id);
  }
  std::vector<std::string> in_history;
  for (const auto& m : history(bob, ba))
    if (std::find(ids.begin(), ids.end(), m.id) != ids.end()) in_history.push_back(m.id);
  if (arrived != ids) fail("expected bob to get alice's 5 messages in the order she sent them");
  if (in_history != ids) fail("expected bob's history to show the 5 messages in sending order");
  out().event("demo", out().ok("5 of 5 arrived in the order alice sent them (1 2 3 4 5), and "
                               "bob's history shows them in that order"));
  expect("alice to see her 5 messages delivered", [&] {
    for (const auto& id : ids) {
      auto m = message(alice, ab, id);
      if (!m || m->status < MessageStatus::kDelivered) return false;
    }
    return true;
  });
  std::this_thread::sleep_for(50ms);
}

// ---- 4. a group with carol ----

void Scenario::Impl::step_group() {
  User& alice = user("alice");
  User& bob = user("bob");
  User& carol = user("carol");
  must(alice->add_contact("@carol"), "alice looking up @carol");
  needles.push_back(kGroupName);
  g_alice = must(alice->create_group(kGroupName, {bob.info.account, carol.info.account}),
                 "alice creating the group");
  {
    std::lock_guard lock(mu);
    group_label["alice"][g_alice] = kGroupName;
  }
  out().event("alice", "creates the group \"" + std::string(kGroupName) +
                           "\" with @bob and @carol (she is its admin; the relay never learns "
                           "who is in it)");
  for (User* u : {&bob, &carol}) {
    ConversationId c = 0;
    expect(u->name + " to learn of the group", [&] {
      auto g = group_of(*u);
      if (g) c = *g;
      return g.has_value();
    });
    (u == &bob ? g_bob : g_carol) = c;
    {
      std::lock_guard lock(mu);
      group_label[u->name][c] = kGroupName;
    }
    auto info = must((*u)->group(c), u->name + " reading the group");
    std::string members;
    for (const auto& m : info.members)
      members +=
          (members.empty() ? "" : ", ") + app::at_handle(m.handle) + (m.admin ? " (admin)" : "");
    out().event(u->name, "is in \"" + info.name + "\": " + members);
  }

  auto hello = send(alice, g_alice, kGroupName, kGroupHello, true,
                    {MessageStatus::kSent, MessageStatus::kFailed});
  expect("bob and carol to receive \"" + std::string(kGroupHello) + "\"",
         [&] { return received(bob, hello) && received(carol, hello); });
  expect("alice's group message to be delivered to 2 of 2", [&] {
    auto m = message(alice, g_alice, hello);
    return m && m->recipients == 2 && m->delivered_to == 2;
  });
  must(bob->mark_read(g_bob, hello), "bob marking the group read");
  out().event("bob", "reads the group");
  must(carol->mark_read(g_carol, hello), "carol marking the group read");
  out().event("carol", "reads the group");
  expect("alice's group message to be read by 2 of 2", [&] {
    auto m = message(alice, g_alice, hello);
    return m && m->read_by == 2;
  });
  std::this_thread::sleep_for(50ms);
  auto receipts = must(alice->receipts(g_alice, hello), "alice reading the receipts");
  std::string who;
  for (const auto& r : receipts)
    who += (who.empty() ? "" : ", ") + name(r.account) + " " + app::status_word(r.status) + " at " +
           app::format_clock(r.at_ms);
  out().event("alice", out().ok("delivered to 2 of 2, read by 2 of 2 (" + who + ")"));

  auto reply = send(bob, g_bob, kGroupName, kGroupReply, true,
                    {MessageStatus::kSent, MessageStatus::kFailed});
  expect("alice and carol to receive bob's group reply",
         [&] { return received(alice, reply) && received(carol, reply); });
  expect("bob's group message to be delivered to 2 of 2", [&] {
    auto m = message(bob, g_bob, reply);
    return m && m->delivered_to == 2;
  });
  std::this_thread::sleep_for(50ms);
  out().event("demo", out().ok("every message reached every member"));
}

// ---- 5. a member removed ----

void Scenario::Impl::step_removal() {
  User& alice = user("alice");
  User& bob = user("bob");
  User& carol = user("carol");
  must(alice->remove_group_members(g_alice, {carol.info.account}), "alice removing carol");
  uint32_t revision = must(alice->group(g_alice), "alice reading the group").revision;
  out().event("alice", "removes @carol from \"" + std::string(kGroupName) + "\" (revision " +
                           std::to_string(revision) + "; every remaining sender key is rotated)");
  expect("carol to learn she is no longer a member", [&] {
    auto g = carol->group(g_carol);
    return g.ok() && !g->is_member;
  });
  out().event("carol", "is no longer a member of \"" + std::string(kGroupName) + "\"");
  expect("bob to see the group without carol", [&] {
    auto g = bob->group(g_bob);
    return g.ok() && g->revision == revision && g->members.size() == 2;
  });
  out().event("bob", "sees \"" + std::string(kGroupName) + "\" with 2 members: @alice, @bob");

  auto after = send(alice, g_alice, kGroupName, kAfterRemoval, true,
                    {MessageStatus::kSent, MessageStatus::kFailed});
  expect("bob to receive \"" + std::string(kAfterRemoval) + "\"",
         [&] { return received(bob, after); });
  std::this_thread::sleep_for(1s);
  bool carol_has = received(carol, after);
  for (const auto& m : history(carol, g_carol))
    if (m.id == after || m.text == kAfterRemoval) carol_has = true;
  if (carol_has) fail("expected carol NOT to receive the message sent after her removal");
  out().event("carol", out().ok("did not get it: nothing arrived in 1.0 s after bob had it, "
                                "and her history ends before it"));
  needles.push_back(kRemovedTries);
  auto refused = carol->send_text(g_carol, kRemovedTries);
  if (refused.ok()) fail("expected carol's message to the group she left to be refused");
  out().event("carol", Transcript::fit("-> " + std::string(kGroupName), kPeerWidth - 1) + " " +
                           Transcript::quote(kRemovedTries, kTextWidth) + " refused (" +
                           std::string(error_code_name(refused.code())) + ")");
  expect("alice's message to be delivered to 1 of 1", [&] {
    auto m = message(alice, g_alice, after);
    return m && m->recipients == 1 && m->delivered_to == 1;
  });
  std::this_thread::sleep_for(50ms);
}

// ---- 6. an attachment ----

void Scenario::Impl::step_file() {
  User& alice = user("alice");
  User& bob = user("bob");
  // A text file of a few hundred KiB, readable, so the scan at the end can look for its lines.
  std::string content;
  for (int i = 1; content.size() < 320 * 1024; ++i) {
    char line[128];
    std::snprintf(line, sizeof line, "%s%05d: pier %d, berth %02d, depth %d.%d m, lights %s\n",
                  kFileLinePrefix, i, 1 + i % 9, i % 40, 2 + i % 7, i % 10,
                  i % 3 ? "green" : "red");
    content += line;
  }
  fs::path file = files_dir / kFileName;
  std::ofstream(file, std::ios::binary)
      .write(content.data(), static_cast<std::streamsize>(content.size()));
  file_sha = sha256_hex(content);
  needles.push_back(kFileName);
  needles.push_back(kCaption);
  needles.push_back(kFileLinePrefix);
  for (size_t at : {size_t{0}, content.size() / 2, content.size() - 80}) {
    size_t b = content.find('\n', at);
    b = (at == 0) ? 0 : b + 1;
    needles.push_back(content.substr(b, content.find('\n', b) - b));
  }
  out().event("alice", "writes " + std::string(kFileName) + ": " + thousands(content.size()) +
                           " bytes, sha256 " + file_sha.substr(0, 16) + "…");

  auto progress_printer = [](const std::string& who, const std::string& verb) {
    return [who, verb, last = -100](uint64_t done, uint64_t total) mutable {
      if (total == 0) return;
      int pct = static_cast<int>(done * 100 / total);
      if (pct < last + 20 && done != total) return;
      if (pct == last) return;
      last = pct;
      out().event(who, verb + " " + Transcript::fit(std::to_string(pct) + "%", 5) +
                           thousands(done) + " of " + thousands(total) + " bytes");
    };
  };
  FileOptions fo;
  fo.caption = kCaption;
  auto id = must(alice->send_file(ab, file, fo, progress_printer("alice", "uploading  ")),
                 "alice sending the file");
  Tracked t;
  t.from = "alice";
  t.to = "bob";
  t.text = std::string(kCaption);
  t.show = {MessageStatus::kSent, MessageStatus::kDelivered, MessageStatus::kFailed};
  track(id, std::move(t));
  expect("bob to receive the message with the file", [&] { return received(bob, id); });
  auto m = must(bob->message(ba, id), "bob reading the file message");
  if (m.attachments.size() != 1 || m.attachments[0].file_name != kFileName ||
      m.attachments[0].size != content.size())
    fail("expected bob's message to carry " + std::string(kFileName) + " of " +
         std::to_string(content.size()) + " bytes");
  must(bob->download_attachment(ba, id, 0, progress_printer("bob", "downloading")),
       "bob downloading the file");
  out().event("bob",
              "keeps it in his profile, still encrypted (the SDK checked the blob's "
              "digest and every chunk first)");
  // Where bob chose to save it: the one place its plaintext is written.
  fs::path saved = files_dir / "bob" / kFileName;
  fs::create_directories(saved.parent_path());
  must(bob->save_attachment(ba, id, 0, saved), "bob saving the file");
  std::string got = read_file(saved);
  std::string got_sha = sha256_hex(got);
  out().event("bob", "saves it where he chose: " + thousands(got.size()) + " bytes, sha256 " +
                         got_sha.substr(0, 16) + "…");
  if (got_sha != file_sha || got != content)
    fail("expected bob's saved file to equal alice's file byte for byte");
  out().event("bob", out().ok("sha256 and all " + thousands(got.size()) + " bytes equal"));
  expect("alice's file message to be delivered", [&] {
    auto mm = message(alice, ab, id);
    return mm && mm->status >= MessageStatus::kDelivered;
  });
  std::this_thread::sleep_for(50ms);
}

// ---- 7. typing and presence ----

void Scenario::Impl::step_live() {
  User& alice = user("alice");
  User& bob = user("bob");
  const std::string a = alice.info.account;
  auto last_presence = [&]() -> std::optional<User::Presence> {
    std::lock_guard lock(bob.mu);
    for (auto it = bob.presence.rbegin(); it != bob.presence.rend(); ++it)
      if (it->account == a) return *it;
    return std::nullopt;
  };
  auto typing_count = [&](bool typing) {
    std::lock_guard lock(bob.mu);
    return std::count_if(bob.typing.begin(), bob.typing.end(), [&](const User::Typing& t) {
      return t.account == a && t.typing == typing;
    });
  };

  must(bob->watch_presence({ba}), "bob watching presence");
  out().event("bob", "has the chat with @alice open: watches her presence");
  expect("bob to see alice online", [&] {
    auto p = last_presence();
    return p && p->online;
  });

  must(alice->set_typing(ab, true), "alice typing");
  out().event("alice", "starts typing to @bob");
  expect("bob to see alice typing", [&] { return typing_count(true) >= 1; });
  must(alice->set_typing(ab, false), "alice stopping typing");
  out().event("alice", "stops typing (deletes her draft)");
  expect("bob to see alice stop typing", [&] { return typing_count(false) >= 1; });

  out().event("alice", "goes offline (disconnects)");
  alice->disconnect();
  expect("bob to see alice offline with a last-seen time", [&] {
    auto p = last_presence();
    return p && !p->online && p->last_seen_ms > 0;
  });
  out().event("alice", "comes back online");
  must(alice->connect(), "alice reconnecting");
  expect("alice online again",
         [&] { return alice->connection_state() == ConnectionState::kOnline; });
  expect("bob to see alice online again", [&] {
    auto p = last_presence();
    return p && p->online;
  });
  must(bob->watch_presence({}), "bob closing the chat");
  std::this_thread::sleep_for(50ms);
  out().event("demo", out().ok("typing started/stopped and online/offline/online reached bob "
                               "live (ephemeral: never queued or stored)"));
}

// ---- 8. search ----

void Scenario::Impl::step_search() {
  User& bob = user("bob");
  // What bob's history holds, to know what each search must find.
  struct Known {
    std::string id, text;
  };
  std::vector<Known> known;
  for (const auto& c : must(bob->conversations(), "bob listing his chats"))
    for (const auto& m : history(bob, c.id)) {
      if (m.kind != MessageKind::kText) continue;
      std::string all = m.text;
      for (const auto& att : m.attachments) all += " " + att.file_name;
      known.push_back({m.id, all});
    }

  auto render = [&](const SearchHit& h) {
    std::string s;
    size_t at = 0;
    for (const auto& hl : h.highlights) {
      if (hl.begin < at || hl.end > h.snippet.size() || hl.begin > hl.end) continue;
      s += h.snippet.substr(at, hl.begin - at);
      std::string word = h.snippet.substr(hl.begin, hl.end - hl.begin);
      s += out().color() ? out().paint(Paint::kInverse, word) : "«" + word + "»";
      at = hl.end;
    }
    s += h.snippet.substr(at);
    std::replace(s.begin(), s.end(), '\n', ' ');
    return s;
  };

  struct Case {
    std::string query;
    std::function<bool(const std::string&)> matches;  // on a lower-case word
  };
  std::vector<Case> cases = {
      {"ferry", [](const std::string& w) { return w == "ferry"; }},
      {"harb*", [](const std::string& w) { return w.rfind("harb", 0) == 0; }},
  };
  for (const auto& c : cases) {
    SearchQuery q;
    q.text = c.query;
    q.limit = 50;
    auto page = must(bob->search(q), "bob searching for " + c.query);
    out().event("bob", "searches his history for " + c.query + ": " +
                           std::to_string(page.hits.size()) + " hits");
    std::set<std::string> hit_ids;
    for (const auto& h : page.hits) {
      hit_ids.insert(h.message_id);
      std::string where = name(h.sender);
      auto conv = bob->conversation(h.conversation);
      if (conv.ok() && conv->kind == ConversationKind::kGroup) where += ", " + conv->title;
      out().event("",
                  "  " + Transcript::fit(where, 24) + render(h) +
                      (h.snippet_from_attachment ? out().paint(Paint::kDim, "  (file name)") : ""));
      if (h.highlights.empty()) fail("expected every hit for " + c.query + " to be highlighted");
    }
    size_t expected = 0;
    for (const auto& k : known) {
      auto ws = words(k.text);
      if (std::none_of(ws.begin(), ws.end(), c.matches)) continue;
      ++expected;
      if (!hit_ids.count(k.id))
        fail("expected the search for " + c.query + " to find \"" + k.text + "\"");
    }
    if (expected == 0) fail("the demo's texts have nothing for " + c.query + " to find");
    out().event("demo", out().ok("found all " + std::to_string(expected) + " messages with " +
                                 c.query + ", on bob's device, in his encrypted profile"));
  }
}

// ---- 9. what the relay stored ----

void Scenario::Impl::step_relay_view() {
  for (auto& u : users) close(*u);
  out().event("demo", "everyone quits the app (all three Clients closed)");
  std::string error;
  auto metrics = fetch_metrics(relay->port(), error);
  if (!metrics.empty()) {
    auto n = [&](const char* k) { return thousands(static_cast<uint64_t>(metrics[k])); };
    out().event("relay", "/metrics: " + n("sotto_envelopes_queued_total") + " envelopes queued, " +
                             n("sotto_envelopes_acked_total") + " acknowledged and deleted, " +
                             n("sotto_envelopes_ephemeral_total") +
                             " ephemeral (typing, never stored); " +
                             n("sotto_attachments_uploaded_total") + " attachment upload, " +
                             n("sotto_attachment_bytes_in_total") + " bytes in, " +
                             n("sotto_attachment_bytes_out_total") + " out");
  } else {
    out().event("relay", out().paint(Paint::kDim, "/metrics unavailable: " + error));
  }
  int status = relay->stop(static_cast<int>(opt.wait.count()));
  progress.relay_pid = -1;
  if (status != 0)
    fail("expected the relay to shut down cleanly on SIGTERM; exit status " +
         std::to_string(status));
  out().event("relay", "stopped with SIGTERM: clean exit (status 0)");

  fs::path relay_dir = opt.work_dir / "relay";
  std::vector<fs::path> paths;
  std::string listing;
  for (const auto& f : list_files(relay_dir)) {
    paths.push_back(f.path);
    std::string rel = fs::relative(f.path, relay_dir).string();
    if (rel.rfind("data/attachments/", 0) == 0 && rel.size() > 30) rel = rel.substr(0, 30) + "…";
    listing += (listing.empty() ? "" : ", ") + rel + " " + app::format_size(f.size);
  }
  out().event("relay", "its files: " + listing);

  auto snap = read_store(relay->data_dir() / "relay.db", "", error);
  if (!snap) fail("reading the relay's store: " + error);
  uint64_t queued = 0;
  for (auto s : snap->queued_sizes) queued += s;
  std::string handles;
  for (const auto& h : snap->handles) handles += (handles.empty() ? "" : " ") + app::at_handle(h);
  out().event("relay", "its store: " + std::to_string(snap->accounts) + " accounts (" + handles +
                           "), " + std::to_string(snap->devices) + " devices, " +
                           std::to_string(snap->prekeys) + " public one-time prekeys, " +
                           std::to_string(snap->queued_sizes.size()) + " envelopes queued (" +
                           thousands(queued) + " bytes)");
  out().event(
      "relay",
      "and " + std::to_string(snap->attachments) +
          (snap->attachments == 1 ? " attachment blob: " : " attachment blobs: ") +
          thousands(snap->attachment_bytes) + " bytes of ciphertext for alice's " +
          thousands(fs::exists(files_dir / kFileName) ? fs::file_size(files_dir / kFileName) : 0) +
          "-byte file");

  // Every string the demo wrote, searched for in every byte the relay wrote and in the users'
  // profiles.
  for (const auto& u : users) needles.push_back(u->name + "'s laptop");
  std::sort(needles.begin(), needles.end());
  needles.erase(std::unique(needles.begin(), needles.end()), needles.end());
  std::vector<fs::path> everything = paths;
  for (const auto& f : list_files(profiles_dir)) everything.push_back(f.path);
  auto scan = scan_for(everything, needles);
  out().event("demo", "searching " + std::to_string(scan.files) + " files / " +
                          app::format_size(scan.bytes) +
                          " (the relay's data dir and log, and the users' profiles) for " +
                          std::to_string(needles.size()) +
                          " strings of the demo: texts, caption, group and file names, device "
                          "names, lines of the file");
  if (!scan.found.empty()) {
    std::string what;
    for (const auto& f : scan.found)
      what += "\n    \"" + f.needle + "\" in " + fs::relative(f.file, opt.work_dir).string();
    fail("plaintext found in the relay's files or a profile:" + what);
  }
  out().event("demo", out().ok("no plaintext found in " + std::to_string(scan.files) + " files / " +
                               app::format_size(scan.bytes)));
  // The control: the scan does see what the relay keeps in clear.
  std::vector<std::string> handle_needles;
  for (const auto& u : users) handle_needles.push_back(u->name);
  auto control = scan_for(paths, handle_needles);
  if (!control.found.empty())
    out().event("demo", out().paint(Paint::kDim,
                                    "(the same scan finds the handles, which the relay keeps in "
                                    "clear to look people up: \"" +
                                        control.found.front().needle + "\" in " +
                                        control.found.front().file.filename().string() + ")"));
}

// ---- Scenario ----

Scenario::Scenario(ScenarioOptions options, Progress& progress)
    : impl_(std::make_unique<Impl>(std::move(options), progress)) {
  impl_->profiles_dir = impl_->opt.work_dir / "profiles";
  impl_->files_dir = impl_->opt.work_dir / "files";
  impl_->client_log = impl_->opt.work_dir / "clients.log";
  fs::create_directories(impl_->profiles_dir);
  fs::create_directories(impl_->files_dir);
}

Scenario::~Scenario() { shut_down(); }

void Scenario::shut_down() {
  if (impl_->shut) return;
  impl_->shut = true;
  for (auto& u : impl_->users) impl_->close(*u);
  if (impl_->relay && impl_->relay->pid() > 0) impl_->relay->stop(5000);
  impl_->progress.relay_pid = -1;
}

int Scenario::steps_passed() const { return impl_->passed; }

std::string Scenario::logs_tail(size_t lines) const {
  std::string s;
  if (impl_->relay)
    s += "the relay's log (last lines):\n" + file_tail(impl_->relay->log_file(), lines);
  if (fs::exists(impl_->client_log))
    s += "the clients' log (last lines):\n" + file_tail(impl_->client_log, lines);
  return s;
}

void Scenario::run() {
  auto& s = *impl_;
  {
    std::lock_guard lock(s.progress.mu);
    s.progress.step = 0;
    s.progress.title = "starting the relay";
  }
  s.progress.deadline_ms = steady_ms() + s.opt.step.count();
  s.start_relay();
  s.progress.deadline_ms = 0;
  s.step(1, "Registration and safety numbers", [&] { s.step_register(); });
  s.step(2, "A 1:1 chat: sent, delivered, read", [&] { s.step_chat(); });
  s.step(3, "Bob offline: the relay queues, he gets it all in order", [&] { s.step_offline(); });
  s.step(4, "A group with carol, with group receipts", [&] { s.step_group(); });
  s.step(5, "A member removed: carol cannot read what comes next", [&] { s.step_removal(); });
  s.step(6, "An attachment", [&] { s.step_file(); });
  s.step(7, "Typing and presence", [&] { s.step_live(); });
  s.step(8, "Search over the history (on the device)", [&] { s.step_search(); });
  s.step(9, "What the relay stored", [&] { s.step_relay_view(); });
}

}  // namespace sotto::demo
