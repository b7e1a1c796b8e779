// One device of the soak test, in a process of its own so the controller can kill -9 it at any
// moment and start it again on the same profile.
//
//   soak_user DIR KEY_HEX RELAY_URL register HANDLE
//       registers HANDLE, prints "ACCOUNT <account> <device_id>", exits.
//   soak_user DIR KEY_HEX RELAY_URL link
//       prints "INVITE <text>", waits until an existing device approves it, prints "ACCOUNT ...".
//   soak_user DIR KEY_HEX RELAY_URL approve INVITE_TEXT
//       approves a new device of this account, exits.
//   soak_user DIR KEY_HEX RELAY_URL chat DEVICE SEED PEERS NEXT [creator]
//       chats until killed: a text every 20-150 ms to a random conversation (one per handle in
//       the comma-separated PEERS, the group "soak" and the group "churn", both of which
//       `creator` creates). The text is "soak DEVICE TAG N": TAG names the conversation, N
//       counts this device's messages in it and starts at the number NEXT gives for TAG
//       ("TAG:N,TAG:N...", or "-" for none: 0 everywhere). NEXT comes from the controller's
//       record of what this device announced, not from history, so a message that vanished
//       from history never has its number used again. Every 2-4 s `creator` removes dave from
//       "churn" or adds him back, and renames it every third time.
//       Prints, each line with one write(2) so that it is in the pipe before the next step
//       (a kill -9 right after cannot take back a line printed):
//         "READY" once its conversations exist;
//         "SENDING <tag> <n>" just before each send_text();
//         "SENT <tag> <n> <message id>" as soon as send_text() returned the id;
//         "CHURN <revision> <1 or 0>" (creator) whether dave is in churn at that revision, at
//             the start and after each change;
//         "STATE <connection state> <steady clock ns> <detail>" at each change of the
//             connection's state (the steady clock is the machine's monotonic clock, the
//             controller's too: it times how long a device takes to come back);
//         "ERROR <what>" when something fails.
//   soak_user DIR KEY_HEX RELAY_URL dump DEVICE FLUSHED_FILE GO_FILE
//       connects, creates FLUSHED_FILE once every message of DEVICE left the outbox, waits for
//       GO_FILE, waits until nothing happened for 3 s, then prints "MSG <tag> <status>
//       <outgoing> <group revision> <message id> <text>" for every message of every
//       conversation, oldest first (the group revision it went at, 0 outside groups), "GROUP
//       churn <member or not> <name>|<handles>" for the churn group, and "END".
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <mutex>
#include <random>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "FastOptions.h"
#include "sotto/Client.h"

using namespace sotto;
using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;

namespace {

// One line to the controller with one write(2) (a line is shorter than PIPE_BUF, so it is
// never split): once this returns the line is in the pipe, where a kill -9 of this process
// cannot reach it. A stdio buffer could hold it back.
void say(const std::string& line) {
  std::string out = line + "\n";
  for (size_t done = 0; done < out.size();) {
    ssize_t n = ::write(STDOUT_FILENO, out.data() + done, out.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) std::_Exit(3);  // the controller is gone: nothing more may be sent unrecorded
    done += static_cast<size_t>(n);
  }
}

int die(const std::string& what) {
  say("ERROR " + what);
  return 1;
}

// Remembers the connection state and when anything last happened; tells the controller of
// every change of the connection's state when `report` is set.
class Watcher : public ClientListener {
 public:
  explicit Watcher(bool report = false) : report_(report) {}
  void on_message(const Message&) override { touch(); }
  void on_message_status(ConversationId, const std::string&, MessageStatus) override { touch(); }
  void on_receipt(ConversationId, const std::string&, const Receipt&) override { touch(); }
  void on_message_changed(const Message&) override { touch(); }
  void on_conversation_changed(ConversationId) override { touch(); }
  void on_connection_state(ConnectionState s, const std::string& detail) override {
    auto now = Clock::now();
    {
      std::lock_guard lock(mu_);
      state_ = s;
      detail_ = detail;
      last_ = now;
    }
    if (!report_) return;
    auto ns = std::chrono::duration_cast<std::chrono::nanoseconds>(now.time_since_epoch());
    std::string text = detail;
    std::replace(text.begin(), text.end(), '\n', ' ');
    say("STATE " + std::to_string(static_cast<int>(s)) + " " + std::to_string(ns.count()) + " " +
        text);
  }
  ConnectionState state() const {
    std::lock_guard lock(mu_);
    return state_;
  }
  std::string detail() const {
    std::lock_guard lock(mu_);
    return detail_;
  }
  Clock::duration quiet_for() const {
    std::lock_guard lock(mu_);
    return Clock::now() - last_;
  }

 private:
  void touch() {
    std::lock_guard lock(mu_);
    last_ = Clock::now();
  }
  const bool report_;
  mutable std::mutex mu_;
  ConnectionState state_ = ConnectionState::kOffline;
  std::string detail_;
  Clock::time_point last_ = Clock::now();
};

std::vector<std::string> split(const std::string& s, char sep) {
  std::vector<std::string> out;
  std::stringstream in(s);
  for (std::string part; std::getline(in, part, sep);)
    if (!part.empty()) out.push_back(part);
  return out;
}

// Every message of a conversation, oldest first.
Result<std::vector<Message>> history(Client& client, ConversationId conversation) {
  std::vector<Message> all;
  std::string cursor;
  for (;;) {
    auto page = client.messages(conversation, cursor, 500);
    if (!page.ok()) return page.error();
    all.insert(all.end(), page->messages.begin(), page->messages.end());
    if (page->next_cursor.empty()) break;
    cursor = page->next_cursor;
  }
  return std::vector<Message>(all.rbegin(), all.rend());
}

bool is_churn(const Conversation& c) {
  return c.kind == ConversationKind::kGroup && c.title.rfind("churn", 0) == 0;
}

// The conversation's tag, the same on every device: "alice-bob" for a 1:1, "group" for the
// group "soak", "churn" for the group whose members and name change.
std::string tag_of(const Conversation& c, const std::string& my_handle,
                   const std::map<std::string, std::string>& handle_of) {
  if (c.kind == ConversationKind::kGroup) return is_churn(c) ? "churn" : "group";
  auto it = handle_of.find(c.peer);
  std::string peer = it != handle_of.end() ? it->second : c.peer;
  return my_handle < peer ? my_handle + "-" + peer : peer + "-" + my_handle;
}

struct Conversations {
  std::map<std::string, ConversationId> by_tag;
  std::map<std::string, std::string> handle_of;  // account -> handle
};

Result<Conversations> list_conversations(Client& client) {
  Conversations out;
  auto account = client.account();
  if (!account.ok()) return account.error();
  auto contacts = client.contacts();
  if (!contacts.ok()) return contacts.error();
  for (const auto& c : *contacts) out.handle_of[c.account] = c.handle;
  auto convs = client.conversations();
  if (!convs.ok()) return convs.error();
  for (const auto& c : *convs) {
    if (c.kind == ConversationKind::kGroup && c.title != "soak" && !is_churn(c)) continue;
    out.by_tag[tag_of(c, account->handle, out.handle_of)] = c.id;
  }
  return out;
}

// Retries a call that needs the relay until it works or a minute passes (the controller
// stops and restarts the relay while devices start).
template <typename F>
auto with_retries(F&& f) -> decltype(f()) {
  auto deadline = Clock::now() + 60s;
  for (;;) {
    auto r = f();
    if (r.ok() || Clock::now() > deadline) return r;
    std::this_thread::sleep_for(200ms);
  }
}

// "TAG:N,TAG:N" (or "-") as a map.
std::map<std::string, uint64_t> parse_next(const std::string& spec) {
  std::map<std::string, uint64_t> out;
  if (spec == "-") return out;
  for (const auto& item : split(spec, ',')) {
    auto colon = item.rfind(':');
    if (colon == std::string::npos) continue;
    out[item.substr(0, colon)] = std::stoull(item.substr(colon + 1));
  }
  return out;
}

int chat(Client& client, const std::string& device, uint32_t seed,
         const std::vector<std::string>& peers, const std::string& next_spec, bool creator) {
  auto watcher = std::make_shared<Watcher>(true);
  client.set_listener(watcher);
  if (auto s = client.connect(); !s.ok()) return die("connect: " + s.error().message);
  auto account = client.account();
  if (!account.ok()) return die("account: " + account.error().message);

  // Contacts and 1:1 conversations (already in the profile after the first start).
  auto known = client.contacts();
  if (!known.ok()) return die("contacts: " + known.error().message);
  std::vector<std::string> peer_accounts;
  for (const auto& handle : peers) {
    std::string peer_account;
    for (const auto& c : *known)
      if (c.handle == handle) peer_account = c.account;
    if (peer_account.empty()) {
      auto c = with_retries([&] { return client.add_contact(handle); });
      if (!c.ok()) return die("add_contact " + handle + ": " + c.error().message);
      peer_account = c->account;
    }
    auto conv = client.direct_conversation(peer_account);
    if (!conv.ok()) return die("direct_conversation: " + conv.error().message);
    peer_accounts.push_back(peer_account);
  }
  auto convs = list_conversations(client);
  if (!convs.ok()) return die("conversations: " + convs.error().message);
  std::string dave;  // the member who leaves and comes back
  for (size_t i = 0; i < peers.size(); ++i)
    if (peers[i] == "dave") dave = peer_accounts[i];
  if (creator && !convs->by_tag.count("group")) {
    auto g = with_retries([&] { return client.create_group("soak", peer_accounts); });
    if (!g.ok()) return die("create_group: " + g.error().message);
  }
  if (creator && !convs->by_tag.count("churn")) {
    auto g = with_retries([&] { return client.create_group("churn", peer_accounts); });
    if (!g.ok()) return die("create_group churn: " + g.error().message);
  }
  // Whether dave is in churn now, at its current revision.
  auto report_churn = [&](ConversationId churn) -> Status {
    auto g = client.group(churn);
    if (!g.ok()) return g.error();
    bool in = false;
    for (const auto& m : g->members) in = in || m.account == dave;
    say("CHURN " + std::to_string(g->revision) + " " + (in ? "1" : "0"));
    return {};
  };
  bool churn_reported = false;

  std::map<std::string, uint64_t> next = parse_next(next_spec);
  const std::string mine = "soak " + device + " ";
  say("READY");

  std::mt19937 rng(seed);
  std::uniform_int_distribution<int> pause_ms(20, 150);
  std::uniform_int_distribution<int> churn_ms(2000, 4000);
  auto next_churn = Clock::now() + std::chrono::milliseconds(churn_ms(rng));
  uint64_t sent = 0, churns = 0;
  for (;;) {
    std::this_thread::sleep_for(std::chrono::milliseconds(pause_ms(rng)));
    // A member learns of a group from the creator's first message; look again until then.
    if (!convs->by_tag.count("group") || !convs->by_tag.count("churn")) {
      auto now = list_conversations(client);
      if (!now.ok()) return die("conversations: " + now.error().message);
      convs = std::move(now);
    }
    if (creator && !churn_reported && convs->by_tag.count("churn")) {
      if (auto s = report_churn(convs->by_tag["churn"]); !s.ok())
        return die("group churn: " + s.error().message);
      churn_reported = true;
    }
    if (creator && !dave.empty() && churn_reported && Clock::now() >= next_churn) {
      ConversationId churn = convs->by_tag["churn"];
      auto g = client.group(churn);
      if (!g.ok()) return die("group churn: " + g.error().message);
      bool in = false;
      for (const auto& m : g->members) in = in || m.account == dave;
      Status s =
          in ? client.remove_group_members(churn, {dave}) : client.add_group_members(churn, {dave});
      if (!s.ok()) return die(std::string(in ? "remove" : "add") + " dave: " + s.error().message);
      if (auto r = report_churn(churn); !r.ok()) return die("group churn: " + r.error().message);
      if (++churns % 3 == 0) {
        if (auto r = client.rename_group(churn, "churn " + std::to_string(churns)); !r.ok())
          return die("rename churn: " + r.error().message);
        if (auto r = report_churn(churn); !r.ok()) return die("group churn: " + r.error().message);
      }
      next_churn = Clock::now() + std::chrono::milliseconds(churn_ms(rng));
    }
    auto pick = std::next(convs->by_tag.begin(),
                          std::uniform_int_distribution<size_t>(0, convs->by_tag.size() - 1)(rng));
    const auto& [tag, id] = *pick;
    const std::string n = std::to_string(next[tag]);
    say("SENDING " + tag + " " + n);
    auto r = client.send_text(id, mine + tag + " " + n);
    if (!r.ok() && tag == "churn" && r.code() == ErrorCode::kForbidden) continue;  // removed
    if (!r.ok()) return die("send_text: " + r.error().message);
    say("SENT " + tag + " " + n + " " + *r);
    ++next[tag];
    // Now and then read everything, so read receipts flow too.
    if (++sent % 10 == 0) {
      auto page = client.messages(id, {}, 1);
      if (page.ok() && !page->messages.empty() && !page->messages[0].outgoing)
        if (auto s = client.mark_read(id, page->messages[0].id); !s.ok())
          return die("mark_read: " + s.error().message);
    }
  }
}

int dump(Client& client, const std::string& device, const std::filesystem::path& flushed,
         const std::filesystem::path& go) {
  auto watcher = std::make_shared<Watcher>();
  client.set_listener(watcher);
  if (auto s = client.connect(); !s.ok()) return die("connect: " + s.error().message);
  const std::string mine = "soak " + device + " ";
  auto deadline = Clock::now() + 120s;
  // 1. Everything this device wrote has left its outbox.
  for (;;) {
    auto convs = list_conversations(client);
    if (!convs.ok()) return die("conversations: " + convs.error().message);
    size_t pending = 0;
    for (const auto& [tag, id] : convs->by_tag) {
      auto h = history(client, id);
      if (!h.ok()) return die("history: " + h.error().message);
      for (const auto& m : *h)
        if (m.outgoing && m.text.rfind(mine, 0) == 0 && m.status == MessageStatus::kPending)
          ++pending;
    }
    if (pending == 0) break;
    if (Clock::now() > deadline)
      return die(std::to_string(pending) +
                 " messages still pending; connection: " + watcher->detail());
    std::this_thread::sleep_for(100ms);
  }
  std::ofstream(flushed) << "flushed\n";
  // 2. Every device has flushed: what is left to arrive is queued at the relay.
  while (!std::filesystem::exists(go)) {
    if (Clock::now() > deadline) return die("the controller never said go");
    std::this_thread::sleep_for(50ms);
  }
  // 3. Online, and nothing happened for 3 s.
  while (watcher->state() != ConnectionState::kOnline || watcher->quiet_for() < 3s) {
    if (Clock::now() > deadline) return die("never settled; connection: " + watcher->detail());
    std::this_thread::sleep_for(100ms);
  }
  auto convs = list_conversations(client);
  if (!convs.ok()) return die("conversations: " + convs.error().message);
  for (const auto& [tag, id] : convs->by_tag) {
    auto h = history(client, id);
    if (!h.ok()) return die("history: " + h.error().message);
    for (const auto& m : *h) {
      if (m.kind == MessageKind::kNotice) {
        say("NOTICE " + tag + " " + m.text);
        continue;
      }
      say("MSG " + tag + " " + std::to_string(static_cast<int>(m.status)) + " " +
          (m.outgoing ? "1" : "0") + " " + std::to_string(m.group_revision) + " " + m.id + " " +
          m.text);
    }
    if (tag == "churn") {
      auto g = client.group(id);
      if (!g.ok()) return die("group churn: " + g.error().message);
      std::vector<std::string> handles;
      for (const auto& m : g->members) handles.push_back(m.handle);
      std::sort(handles.begin(), handles.end());
      std::string line = "GROUP churn " + std::string(g->is_member ? "1 " : "0 ") + g->name + "|";
      for (const auto& handle : handles) line += handle + ",";
      say(line);
    }
  }
  say("END");
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 5) return die("usage: soak_user DIR KEY_HEX RELAY_URL MODE ...");
  std::vector<std::string> args(argv + 5, argv + argc);
  Bytes key;
  if (!from_hex(argv[2], key) || key.size() != 32) return die("KEY_HEX must be 64 hex digits");
  ProfileOptions po;
  po.initial_prekeys = 0;
  auto profile = Profile::open_with_key(argv[1], SecureBytes(key.data(), key.size()), po);
  if (!profile.ok()) return die("profile: " + profile.error().message);
  auto made = Client::create(std::move(*profile), test::fast_options(argv[3], argv[1]));
  if (!made.ok()) return die("client: " + made.error().message);
  Client& client = **made;
  std::string mode = argv[4];

  if (mode == "register" && args.size() == 1) {
    auto info = client.register_account(args[0]);
    if (!info.ok()) return die("register: " + info.error().message);
    say("ACCOUNT " + info->account + " " + std::to_string(info->device_id));
    return 0;
  }
  if (mode == "link" && args.empty()) {
    auto invite = client.start_link();
    if (!invite.ok()) return die("start_link: " + invite.error().message);
    say("INVITE " + invite->text);
    auto info = client.finish_link(60s);
    if (!info.ok()) return die("finish_link: " + info.error().message);
    say("ACCOUNT " + info->account + " " + std::to_string(info->device_id));
    return 0;
  }
  if (mode == "approve" && args.size() == 1) {
    if (auto s = client.connect(); !s.ok()) return die("connect: " + s.error().message);
    if (!client.wait_online(30s)) return die("not online");
    if (auto s = client.approve_link(args[0]); !s.ok())
      return die("approve_link: " + s.error().message);
    return 0;
  }
  if (mode == "chat" && (args.size() == 4 || args.size() == 5))
    return chat(client, args[0], static_cast<uint32_t>(std::stoul(args[1])), split(args[2], ','),
                args[3], args.size() == 5 && args[4] == "creator");
  if (mode == "dump" && args.size() == 3) return dump(client, args[0], args[1], args[2]);
  return die("unknown mode or wrong arguments: " + mode);
}
