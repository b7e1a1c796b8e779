#include "ChatApp.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <filesystem>
#include <sstream>

#include "AppSupport.h"

namespace sotto::chat {

using app::at_handle;
using app::now_ms;

// ---- MainLoop ------------------------------------------------------------------------------

MainLoop::MainLoop() {
  if (::pipe2(pipe_, O_CLOEXEC | O_NONBLOCK) != 0) pipe_[0] = pipe_[1] = -1;
}

MainLoop::~MainLoop() {
  for (int fd : pipe_)
    if (fd >= 0) ::close(fd);
}

void MainLoop::post(std::function<void()> fn) {
  {
    std::lock_guard lock(mu_);
    queue_.push_back(std::move(fn));
  }
  char b = 1;
  // A full pipe already means "wake up": the result does not matter.
  [[maybe_unused]] ssize_t n = ::write(pipe_[1], &b, 1);
}

void MainLoop::run_pending() {
  char buf[256];
  while (::read(pipe_[0], buf, sizeof buf) > 0) {
  }
  for (;;) {
    std::function<void()> fn;
    {
      std::lock_guard lock(mu_);
      if (queue_.empty()) return;
      fn = std::move(queue_.front());
      queue_.pop_front();
    }
    fn();
  }
}

// ---- helpers -------------------------------------------------------------------------------

namespace {

std::string trim(const std::string& s) {
  size_t b = s.find_first_not_of(" \t");
  if (b == std::string::npos) return "";
  size_t e = s.find_last_not_of(" \t");
  return s.substr(b, e - b + 1);
}

// First word and the rest.
std::pair<std::string, std::string> split_word(const std::string& s) {
  std::string t = trim(s);
  size_t sp = t.find(' ');
  if (sp == std::string::npos) return {t, ""};
  return {t.substr(0, sp), trim(t.substr(sp + 1))};
}

std::vector<std::string> words(const std::string& s) {
  std::istringstream in(s);
  std::vector<std::string> out;
  for (std::string w; in >> w;) out.push_back(w);
  return out;
}

std::string ellipsize(const std::string& s, size_t max_bytes) {
  if (s.size() <= max_bytes) return s;
  size_t cut = max_bytes;
  while (cut > 0 && (static_cast<unsigned char>(s[cut]) & 0xc0) == 0x80) --cut;
  return s.substr(0, cut) + "\u2026";
}

std::string one_line(std::string s) {
  std::replace(s.begin(), s.end(), '\n', ' ');
  std::replace(s.begin(), s.end(), '\r', ' ');
  return s;
}

std::string progress_bar(uint64_t done, uint64_t total, size_t width) {
  size_t filled = total ? static_cast<size_t>(done * width / total) : 0;
  filled = std::min(filled, width);
  std::string bar = "[";
  for (size_t i = 0; i < width; ++i) bar += i < filled ? "#" : "-";
  bar += "]";
  char pct[16];
  std::snprintf(pct, sizeof pct, " %3d%%", total ? static_cast<int>(done * 100 / total) : 0);
  return bar + pct;
}

}  // namespace

// ---- ChatApp -------------------------------------------------------------------------------

ChatApp::ChatApp(Screen& screen, MainLoop& loop) : screen_(screen), loop_(loop) {
  worker_ = std::thread([this] { worker_main(); });
}

ChatApp::~ChatApp() {
  cancel_ = true;
  {
    std::lock_guard lock(worker_mu_);
    worker_stop_ = true;
    jobs_.clear();
  }
  worker_cv_.notify_all();
  worker_.join();
  client_.reset();
}

void ChatApp::worker_main() {
  std::unique_lock lock(worker_mu_);
  for (;;) {
    worker_cv_.wait(lock, [&] { return worker_stop_ || !jobs_.empty(); });
    if (worker_stop_) return;
    auto job = std::move(jobs_.front());
    jobs_.pop_front();
    lock.unlock();
    cancel_ = false;
    auto then = job();
    if (then) loop_.post(std::move(then));
    lock.lock();
  }
}

void ChatApp::background(std::function<std::function<void()>()> work) {
  if (!screen_.interactive()) {
    // A script expects each command to be done before the next line runs.
    cancel_ = false;
    if (auto then = work()) then();
    return;
  }
  {
    std::lock_guard lock(worker_mu_);
    jobs_.push_back(std::move(work));
  }
  worker_cv_.notify_one();
}

void ChatApp::info(const std::string& text) { screen_.print(text); }
void ChatApp::error(const std::string& text) {
  screen_.print(screen_.paint("1;31", "error: ") + text);
}
void ChatApp::error(const Error& e) { error(e.message); }
void ChatApp::notice(const std::string& text) { screen_.print(screen_.paint("33", text)); }

void ChatApp::quit() { quit_ = true; }

void ChatApp::end_of_input() {
  // A script's last lines are often messages: give the relay a moment to take them.
  if (screen_.interactive() || sending_.empty() || me_.empty()) return quit();
  quit_deadline_ms_ = now_ms() + 15'000;
}

void ChatApp::start(std::unique_ptr<Client> client) {
  client_ = std::move(client);
  auto acct = client_->account();
  if (acct.ok()) {
    me_ = acct->account;
    my_handle_ = acct->handle;
    info("Profile of " + at_handle(acct->handle) + " (device " + std::to_string(acct->device_id) +
         "). Connecting\u2026  Type /help for the commands.");
    if (auto s = client_->connect(); !s.ok()) error(s.error());
    refresh_contacts();
  } else {
    info(
        "This profile has no account yet. Create one with /register HANDLE, or join an "
        "account you already have with /link. /help lists every command.");
  }
  update_prompt();
}

// ---- display -------------------------------------------------------------------------------

void ChatApp::refresh_contacts() {
  auto contacts = client_->contacts();
  if (!contacts.ok()) return;
  for (const auto& c : *contacts) handles_[c.account] = c.handle;
}

std::string ChatApp::account_of(const std::string& handle) {
  std::string h = handle;
  if (!h.empty() && h[0] == '@') h.erase(0, 1);
  std::transform(h.begin(), h.end(), h.begin(), [](unsigned char c) { return std::tolower(c); });
  for (const auto& [account, hh] : handles_)
    if (hh == h) return account;
  return "";
}

std::string ChatApp::sender_name(const Message& m) {
  if (m.outgoing) return "you";
  auto it = handles_.find(m.sender);
  if (it == handles_.end()) {
    refresh_contacts();
    it = handles_.find(m.sender);
  }
  if (it != handles_.end() && !it->second.empty()) return at_handle(it->second);
  return m.sender.substr(0, 8);
}

std::string ChatApp::conversation_title(ConversationId c) {
  auto conv = client_->conversation(c);
  if (!conv.ok()) return "#" + std::to_string(c);
  if (conv->kind == ConversationKind::kGroup) return conv->title.empty() ? "group" : conv->title;
  return conv->title;
}

int ChatApp::number_of(ConversationId c, const std::string& id) {
  Numbers& n = numbers_[c];
  if (!n.loaded) {
    // Once per conversation and run, the ids of its whole history (the SDK keeps no count):
    // the numbers are then the same in every run, whatever was shown first.
    n.loaded = true;
    std::vector<std::string> newest_first;
    std::string cursor;
    do {
      auto page = client_->messages(c, cursor, 1000);
      if (!page.ok()) break;
      for (const auto& m : page->messages) newest_first.push_back(m.id);
      cursor = page->next_cursor;
    } while (!cursor.empty());
    for (auto it = newest_first.rbegin(); it != newest_first.rend(); ++it)
      if (n.number.emplace(*it, static_cast<int>(n.ids.size() + 1)).second) n.ids.push_back(*it);
  }
  if (id.empty()) return 0;
  auto it = n.number.find(id);
  if (it != n.number.end()) return it->second;
  // New in this run: the next number. (A message that disappears keeps its number until the
  // next run; so does one the relay placed before others already numbered.)
  n.ids.push_back(id);
  int number = static_cast<int>(n.ids.size());
  n.number[id] = number;
  return number;
}

std::string ChatApp::short_title(ConversationId c) {
  std::string title = conversation_title(c);
  // A sender who is not a contact yet has no handle here, only an account id: its first
  // digits are enough to find it.
  if (title.size() == 32 && title.find_first_not_of("0123456789abcdef") == std::string::npos)
    return title.substr(0, 8);
  size_t space = title.find(' ');
  return space == std::string::npos ? title : title.substr(0, space);
}

std::string ChatApp::ref_label(ConversationId c, int number) {
  return (c == current_ ? "" : short_title(c)) + "#" + std::to_string(number);
}

ConversationId ChatApp::find_conversation(const std::string& name, bool quiet) {
  auto list = client_->conversations();
  if (!list.ok()) {
    if (!quiet) error(list.error());
    return 0;
  }
  auto lower = [](std::string s) {
    std::transform(s.begin(), s.end(), s.begin(),
                   [](unsigned char ch) { return std::tolower(ch); });
    return s;
  };
  std::string want = lower(name);
  for (const auto& c : *list) {
    std::string title = lower(c.title);
    if (title == want || title == at_handle(want)) return c.id;
  }
  // Else a unique prefix (a group's first word, or the first digits of an unknown sender).
  ConversationId match = 0;
  int matches = 0;
  for (const auto& c : *list) {
    std::string title = lower(c.title);
    if (title.rfind(want, 0) == 0 || title.rfind(at_handle(want), 0) == 0) {
      match = c.id;
      ++matches;
    }
  }
  if (matches == 1) return match;
  if (!quiet)
    error(matches > 1 ? "'" + name + "' names more than one conversation: type more of it"
                      : "no conversation called '" + name + "' (see /chats)");
  return 0;
}

bool ChatApp::resolve_ref(const std::string& token, ConversationId& c, std::string& id) {
  size_t hash = token.rfind('#');
  std::string where = hash == std::string::npos ? "" : token.substr(0, hash);
  std::string t = hash == std::string::npos ? token : token.substr(hash + 1);
  char* end = nullptr;
  long n = std::strtol(t.c_str(), &end, 10);
  if (t.empty() || *end != '\0' || n < 1) {
    error("'" + token +
          "' is not a message number: the #N at a message's start, or NAME#N for one in "
          "another conversation (@bob#5, Crew#2)");
    return false;
  }
  if (where.empty()) {
    if (!current_) {
      error("no conversation open: /open one first, or name it as in @bob#" + t);
      return false;
    }
    c = current_;
  } else {
    c = find_conversation(where);
    if (!c) return false;
  }
  number_of(c, "");
  const Numbers& nb = numbers_[c];
  if (static_cast<size_t>(n) > nb.ids.size()) {
    error("there is no message #" + t + " in " + conversation_title(c) +
          (nb.ids.empty() ? " yet" : " (#1 to #" + std::to_string(nb.ids.size()) + ")"));
    return false;
  }
  id = nb.ids[static_cast<size_t>(n - 1)];
  return true;
}

std::string ChatApp::ticks(const Message& m) {
  std::string t = app::status_ticks(m.status) + " " + app::status_word(m.status);
  if (m.recipients > 1 && m.status >= MessageStatus::kDelivered && m.status <= MessageStatus::kRead)
    t += " (" + std::to_string(m.status == MessageStatus::kRead ? m.read_by : m.delivered_to) +
         "/" + std::to_string(m.recipients) + ")";
  return screen_.paint(m.status == MessageStatus::kRead     ? "1;34"
                       : m.status == MessageStatus::kFailed ? "1;31"
                                                            : "2",
                       t);
}

std::string ChatApp::mention(const Message& m) {
  std::string what = m.deleted         ? ""
                     : !m.text.empty() ? "\u201c" + ellipsize(one_line(m.text), 30) + "\u201d"
                     : !m.attachments.empty() ? "[file " + m.attachments[0].file_name + "]"
                                              : "";
  return "  " + ref_label(m.conversation, number_of(m.conversation, m.id)) +
         (what.empty() ? "" : " " + what);
}

std::string ChatApp::render(const Message& m, bool tag_conversation) {
  // In another conversation's line the number says where it is (Crew#5), so that it can be
  // typed as it reads.
  int number = number_of(m.conversation, m.id);
  std::string label =
      (tag_conversation ? short_title(m.conversation) : "") + "#" + std::to_string(number);
  std::string out =
      screen_.paint("2", label + " " + app::format_clock(m.sort_ms ? m.sort_ms : m.sent_ms));
  out += ' ';
  if (tag_conversation) out += screen_.paint("35", "[" + conversation_title(m.conversation) + "] ");
  if (m.kind == MessageKind::kNotice) return out + screen_.paint("33", "* " + one_line(m.text));
  out += m.outgoing ? screen_.paint("1;32", "you") : screen_.paint("1;36", sender_name(m));
  out += ": ";
  if (m.deleted) return out + screen_.paint("2;3", "this message was deleted");
  out += one_line(m.text);
  for (size_t i = 0; i < m.attachments.size(); ++i) {
    const auto& a = m.attachments[i];
    if (!m.text.empty() || i > 0) out += "  ";
    out += screen_.paint("34", "[file " + (a.file_name.empty() ? "unnamed" : a.file_name) + ", " +
                                   app::format_size(a.size) + "]");
    if (!a.stored && !m.outgoing)
      out += screen_.paint("2", " /get " + (tag_conversation ? label : std::to_string(number)) +
                                    (m.attachments.size() > 1 ? " " + std::to_string(i + 1) : ""));
  }
  if (m.edited_ms) out += screen_.paint("2", " (edited)");
  if (m.expires_ms) out += screen_.paint("2", " \u23f1");
  if (m.outgoing) out += "  " + ticks(m);
  return out;
}

void ChatApp::show(const Message& m) {
  bool tagged = m.conversation != current_;
  uint64_t line = screen_.print(render(m, tagged));
  shown_.insert({m.conversation, m.id});
  lines_[{m.conversation, m.id}] = Shown{line, tagged, 0};
  if (!tagged && current_empty_) {
    current_empty_ = false;
    update_footer();
  }
}

void ChatApp::update_prompt() {
  std::string p;
  if (state_ != ConnectionState::kOnline && !me_.empty()) {
    const char* what = state_ == ConnectionState::kSyncing      ? "syncing"
                       : state_ == ConnectionState::kConnecting ? "connecting"
                       : state_ == ConnectionState::kLoggedOut  ? "logged out"
                                                                : "offline";
    p += screen_.paint("33", std::string("(") + what + ") ");
  }
  if (current_) {
    p += screen_.paint("1", conversation_title(current_));
    auto conv = client_->conversation(current_);
    if (conv.ok() && conv->kind == ConversationKind::kDirect) {
      auto it = presence_.find(conv->peer);
      if (it != presence_.end()) {
        if (it->second.online)
          p += screen_.paint("32", " \u25cf online");
        else if (it->second.last_seen_ms)
          p += screen_.paint("2", " " + app::format_last_seen(it->second.last_seen_ms, now_ms()));
      }
    }
    if (conv.ok() && conv->expire_timer_s)
      p += screen_.paint("2", " \u23f1 " + app::format_duration(conv->expire_timer_s));
  } else {
    p += screen_.paint("1", my_handle_.empty() ? "sotto" : at_handle(my_handle_));
  }
  p += "> ";
  screen_.set_prompt(p);
}

void ChatApp::update_footer() {
  std::vector<std::string> rows;
  // Here rather than printed: it goes away when the first message comes.
  if (current_ && current_empty_)
    rows.push_back(screen_.paint("2", "(no messages yet: type one and press Enter)"));
  for (const auto& [id, t] : transfers_)
    rows.push_back(screen_.paint("2", t.label + " ") + progress_bar(t.done, t.total, 24) + " " +
                   app::format_size(t.done) + " of " + app::format_size(t.total));
  auto it = typing_.find(current_);
  if (current_ && it != typing_.end() && !it->second.empty()) {
    std::string who;
    for (const auto& [account, until] : it->second) {
      if (!who.empty()) who += ", ";
      auto h = handles_.find(account);
      who += h != handles_.end() ? at_handle(h->second) : account.substr(0, 8);
    }
    rows.push_back(
        screen_.paint("2;3", who + (it->second.size() > 1 ? " are" : " is") + " typing\u2026"));
  }
  screen_.set_footer(std::move(rows));
}

void ChatApp::show_history(ConversationId c, uint32_t count) {
  auto page = client_->messages(c, "", count);
  if (!page.ok()) return error(page.error());
  if (page->messages.empty()) {
    if (!screen_.interactive()) return info("(no messages yet)");
    current_empty_ = c == current_;
    update_footer();
    return;
  }
  for (auto it = page->messages.rbegin(); it != page->messages.rend(); ++it) show(*it);
  mark_read_upto(c, page->messages.front().id);
}

void ChatApp::mark_read_upto(ConversationId c, const std::string& id) {
  auto conv = client_->conversation(c);
  if (!conv.ok() || conv->unread == 0) return;
  if (auto s = client_->mark_read(c, id); !s.ok()) error(s.error());
}

void ChatApp::open_conversation(ConversationId c) {
  if (typing_sent_ && typing_conv_) (void)client_->set_typing(typing_conv_, false);
  typing_sent_ = false;
  current_ = c;
  current_empty_ = false;
  reply_hinted_.insert(c);  // they know how to get here
  info(screen_.paint("1", "\u2500\u2500 " + conversation_title(c) + " \u2500\u2500"));
  show_history(c, 20);
  (void)client_->watch_presence({c});
  update_prompt();
  update_footer();
}

bool ChatApp::need_account() {
  if (!me_.empty()) return true;
  error("no account yet: /register HANDLE or /link first");
  return false;
}

bool ChatApp::need_conversation() {
  if (current_) return true;
  error("no conversation open: /open one (see /chats) or /add @handle");
  return false;
}

// ---- events --------------------------------------------------------------------------------

void ChatApp::on_message(const Message& m) {
  // Opening a conversation prints its history; an event for a message already printed there
  // (a notice written in the same moment) is not printed twice.
  if (shown_.count({m.conversation, m.id})) return;
  show(m);
  if (m.conversation == current_ && !m.outgoing) {
    typing_[current_].erase(m.sender);
    update_footer();
    mark_read_upto(m.conversation, m.id);
  } else if (!m.outgoing && m.kind != MessageKind::kNotice && screen_.interactive() &&
             reply_hinted_.insert(m.conversation).second) {
    // Once per conversation and run: after that the [tag] is reminder enough.
    screen_.print(screen_.paint("2", "  (/open " + short_title(m.conversation) + " to reply)"));
  }
}

void ChatApp::on_message_status(ConversationId c, const std::string& id, MessageStatus s) {
  if (s != MessageStatus::kPending) sending_.erase({c, id});
  // A message not printed yet (a file still being sent, say) shows its status when it is.
  auto shown = lines_.find({c, id});
  if (shown == lines_.end()) return;
  auto m = client_->message(c, id);
  if (!m.ok()) return;
  // Its own line, in place, in whichever conversation, while it is on the screen.
  if (screen_.rewrite(shown->second.line, render(*m, shown->second.tagged))) return;
  // Else one short line about it, itself rewritten as the status moves on. "sent" is not worth
  // a line for a message out of sight; "delivered", "read" and "failed" are.
  if (m->status == MessageStatus::kSent || m->status == MessageStatus::kPending) return;
  std::string line = screen_.paint("2", mention(*m)) + " " + ticks(*m);
  if (shown->second.status && screen_.rewrite(shown->second.status, line)) return;
  shown->second.status = screen_.print(line);
}

void ChatApp::on_message_changed(const Message& m) {
  auto shown = lines_.find({m.conversation, m.id});
  if (shown != lines_.end() && screen_.rewrite(shown->second.line, render(m, shown->second.tagged)))
    return;
  if (m.conversation != current_) return;
  if (m.deleted) {
    screen_.print(screen_.paint(
        "2", "  #" + std::to_string(number_of(m.conversation, m.id)) + " was deleted"));
  } else if (m.edited_ms) {
    screen_.print(
        screen_.paint("2", "  #" + std::to_string(number_of(m.conversation, m.id)) + " edited: ") +
        one_line(m.text));
  }
  // Else a countdown started, a file was stored or a group receipt came: nothing worth a line.
}

void ChatApp::on_message_removed(ConversationId c, const std::string& id) {
  auto shown = lines_.find({c, id});
  if (shown == lines_.end()) return;
  int number = number_of(c, id);
  lines_.erase(shown);
  shown_.erase({c, id});
  if (c != current_) return;
  screen_.print(screen_.paint("2", "  #" + std::to_string(number) + " disappeared"));
}

void ChatApp::on_conversation_changed(ConversationId c) {
  refresh_contacts();  // a name the SDK just learned from the relay, say
  if (c == current_) update_prompt();
}

void ChatApp::on_connection_state(ConnectionState s, const std::string& detail) {
  ConnectionState before = state_;
  state_ = s;
  update_prompt();
  if (s == ConnectionState::kOnline && (before != s || !state_shown_)) {
    notice(state_shown_ ? "back online" : "online");
    state_shown_ = true;
    if (current_) (void)client_->watch_presence({current_});
  } else if (s == ConnectionState::kOffline && before == ConnectionState::kOnline) {
    notice("connection lost, retrying" + (detail.empty() ? "" : " (" + detail + ")"));
  } else if (s == ConnectionState::kLoggedOut) {
    error("this device was removed from its account" + (detail.empty() ? "" : ": " + detail));
  }
}

void ChatApp::on_identity_changed(const IdentityChange& change) {
  notice("The safety number with " + at_handle(change.handle) +
         " changed: they reinstalled, or someone is in the middle. Messages to them wait. "
         "Compare the new number (/verify " +
         at_handle(change.handle) + ") and then /accept " + at_handle(change.handle));
}

void ChatApp::on_devices_changed() { notice("the devices of this account changed (/devices)"); }

void ChatApp::on_typing(ConversationId c, const std::string& account, bool typing) {
  if (typing)
    typing_[c][account] = now_ms() + 15'000;
  else
    typing_[c].erase(account);
  if (c == current_) update_footer();
}

void ChatApp::on_presence(const std::string& account, bool online, uint64_t last_seen_ms) {
  presence_[account] = Presence{online, last_seen_ms};
  update_prompt();
}

void ChatApp::tick() {
  uint64_t now = now_ms();
  if (quit_deadline_ms_ && (sending_.empty() || now > quit_deadline_ms_)) {
    if (!sending_.empty())
      error(std::to_string(sending_.size()) +
            " message(s) not sent yet; they go out the next time this profile is online");
    quit();
  }
  bool changed = false;
  for (auto& [c, who] : typing_)
    for (auto it = who.begin(); it != who.end();) {
      if (it->second < now) {
        it = who.erase(it);
        changed = true;
      } else {
        ++it;
      }
    }
  if (changed) update_footer();
  // Typing stops by itself when the user pauses for five seconds.
  if (typing_sent_ && now - typing_sent_ms_ > 5'000) {
    (void)client_->set_typing(typing_conv_, false);
    typing_sent_ = false;
  }
}

void ChatApp::edited() {
  if (!client_ || !current_ || me_.empty()) return;
  const std::string& line = screen_.line();
  bool typing = !line.empty() && line[0] != '/';
  uint64_t now = now_ms();
  if (typing && (!typing_sent_ || now - typing_sent_ms_ > 3'000 || typing_conv_ != current_)) {
    (void)client_->set_typing(current_, true);
    typing_sent_ = true;
    typing_conv_ = current_;
    typing_sent_ms_ = now;
  } else if (!typing && typing_sent_) {
    (void)client_->set_typing(typing_conv_, false);
    typing_sent_ = false;
  }
}

// ---- commands ------------------------------------------------------------------------------

const std::vector<ChatApp::Command>& ChatApp::commands() {
  static const std::vector<Command> list = {
      {"help", "", "this list", &ChatApp::cmd_help},
      {"register", "HANDLE [INVITE]",
       "create an account named @HANDLE on the relay (INVITE: from its operator, when "
       "registration is closed)",
       &ChatApp::cmd_register},
      {"link", "", "join an account you already have (approve on another device)",
       &ChatApp::cmd_link},
      {"approve", "TEXT", "let a new device join this account (the text it shows)",
       &ChatApp::cmd_approve},
      {"whoami", "", "this account, device and connection", &ChatApp::cmd_whoami},
      {"devices", "", "the devices of this account", &ChatApp::cmd_devices},
      {"unlink", "DEVICE", "remove a device from this account", &ChatApp::cmd_unlink},
      {"add", "@HANDLE", "add a contact and open the chat with them", &ChatApp::cmd_add},
      {"contacts", "", "your contacts", &ChatApp::cmd_contacts},
      {"chats", "", "conversations, most recent first, with unread counts", &ChatApp::cmd_chats},
      {"open", "N|@HANDLE|GROUP", "switch to a conversation (N from /chats)", &ChatApp::cmd_open},
      {"msg", "@HANDLE TEXT", "send to someone without switching", &ChatApp::cmd_msg},
      {"history", "[N]", "the last N messages here (20)", &ChatApp::cmd_history},
      {"info", "#N", "a message's delivered / read receipts", &ChatApp::cmd_receipts},
      {"search", "WORDS", "search every conversation (\"a phrase\", prefix*, -word)",
       &ChatApp::cmd_search},
      {"send", "FILE [CAPTION]", "send a file here, with a progress bar", &ChatApp::cmd_send},
      {"get", "#N [I] [DIR]",
       "download a message's file and save it into DIR (default: the folder sotto-chat "
       "started in, or --downloads)",
       &ChatApp::cmd_get},
      {"cancel", "", "stop the transfer under way", &ChatApp::cmd_cancel},
      {"group",
       "create NAME @a @b | add @c | remove @c | admin @c | unadmin @c | rename NAME | "
       "leave",
       "create and manage groups", &ChatApp::cmd_group},
      {"members", "", "the members of the open group", &ChatApp::cmd_members},
      {"edit", "#N TEXT", "change a message you sent", &ChatApp::cmd_edit},
      {"delete", "#N", "delete a message you sent, for everyone", &ChatApp::cmd_delete},
      {"timer", "off|30s|5m|1h|1d|1w", "disappearing messages in this conversation",
       &ChatApp::cmd_timer},
      {"verify", "[@HANDLE]", "the safety number to compare with a contact", &ChatApp::cmd_verify},
      {"accept", "@HANDLE", "accept a contact's new safety number", &ChatApp::cmd_accept},
      {"presence", "on|off", "show or hide when you are online", &ChatApp::cmd_presence},
      {"readreceipts", "on|off", "send read receipts or not", &ChatApp::cmd_receipts_setting},
      {"quit", "", "leave (also Ctrl-D)", &ChatApp::cmd_quit},
  };
  return list;
}

void ChatApp::command(const std::string& raw) {
  std::string line = trim(raw);
  if (line.empty()) return;
  if (line[0] != '/') {
    if (!need_account() || !need_conversation()) return;
    send_text(current_, line);
    return;
  }
  if (line.size() > 1 && line[1] == '/') {  // "//text" sends "/text"
    if (!need_account() || !need_conversation()) return;
    send_text(current_, line.substr(1));
    return;
  }
  auto [name, args] = split_word(line.substr(1));
  for (const auto& c : commands())
    if (name == c.name) {
      (this->*c.run)(args);
      return;
    }
  if (name == "q" || name == "exit") return cmd_quit(args);
  if (name == "h" || name == "?") return cmd_help(args);
  error("unknown command /" + name + " (type /help)");
}

void ChatApp::send_text(ConversationId c, const std::string& text) {
  if (typing_sent_) {
    (void)client_->set_typing(typing_conv_, false);
    typing_sent_ = false;
  }
  auto id = client_->send_text(c, text);
  if (!id.ok()) return error(id.error());
  sending_.insert({c, *id});
  auto m = client_->message(c, *id);
  if (m.ok()) show(*m);
}

void ChatApp::cmd_help(const std::string&) {
  info(screen_.paint("1", "Type a message and press Enter to send it to the open conversation."));
  info("Commands:");
  for (const auto& c : commands()) {
    std::string head = std::string("  /") + c.name + (*c.args ? std::string(" ") + c.args : "");
    if (display_width(head) < 28) {
      head.append(28 - display_width(head), ' ');
      info(head + c.help);
    } else {
      info(head);
      info(std::string(30, ' ') + c.help);
    }
  }
  info(
      "Messages are numbered #N in each conversation, the same in every run; /edit, /delete, "
      "/get and /info take that number, or NAME#N for a message in another conversation "
      "(@bob#5, Crew#2), as lines from there show it.");
}

void ChatApp::cmd_register(const std::string& a) {
  if (!me_.empty()) return error("this profile already has the account " + at_handle(my_handle_));
  if (a.empty()) return error("usage: /register HANDLE [INVITE] (3 to 32 of a-z, 0-9, _ and .)");
  auto space = a.find(' ');
  std::string handle = a.substr(0, space);
  std::string invite = space == std::string::npos ? "" : a.substr(space + 1);
  info("registering " + at_handle(handle) + "\u2026");
  background([this, handle, invite]() -> std::function<void()> {
    auto r = client_->register_account(handle, invite);
    return [this, r, a = handle, invite] {
      if (!r.ok()) {
        if (r.code() == ErrorCode::kConflict)
          return error(at_handle(a) + " is taken; try another handle");
        if (r.code() == ErrorCode::kForbidden && invite.empty())
          return error(r.error().message + " (then /register " + a + " INVITE)");
        return error(r.error());
      }
      me_ = r->account;
      my_handle_ = r->handle;
      info("Welcome, " + at_handle(r->handle) + ". Add a contact with /add @handle.");
      update_prompt();
    };
  });
}

void ChatApp::cmd_link(const std::string&) {
  if (!me_.empty()) return error("this profile already has the account " + at_handle(my_handle_));
  background([this]() -> std::function<void()> {
    auto invite = client_->start_link();
    if (!invite.ok()) return [this, e = invite.error()] { error(e); };
    loop_.post([this, text = invite->text] {
      info("On a device of your account, run:");
      info(screen_.paint("1", "  /approve " + text));
      info(
          "(or open Settings \u2192 Devices \u2192 Link a device in the desktop app). Waiting "
          "up to 10 minutes; /cancel stops.");
    });
    // Short waits, so /cancel and quitting are not held up.
    for (int i = 0; i < 600 && !cancel_; ++i) {
      auto r = client_->finish_link(std::chrono::seconds(1));
      if (r.code() == ErrorCode::kTimeout) continue;
      return [this, r] {
        if (!r.ok()) return error(r.error());
        me_ = r->account;
        my_handle_ = r->handle;
        info("This device is now part of " + at_handle(r->handle) + ".");
        refresh_contacts();
        update_prompt();
      };
    }
    return [this] { error("linking stopped before a device approved it"); };
  });
}

void ChatApp::cmd_approve(const std::string& a) {
  if (!need_account()) return;
  if (a.empty()) return error("usage: /approve TEXT (the text the new device shows)");
  background([this, a]() -> std::function<void()> {
    auto s = client_->approve_link(a);
    return [this, s] {
      if (!s.ok()) return error(s.error());
      info("approved: the new device joins this account");
    };
  });
}

void ChatApp::cmd_whoami(const std::string&) {
  auto a = client_->account();
  if (!a.ok()) return info("no account yet (/register HANDLE or /link)");
  info(at_handle(a->handle) + "  account " + a->account + "  device " +
       std::to_string(a->device_id));
  const char* names[] = {"offline", "connecting", "syncing", "online", "logged out"};
  info(std::string("connection: ") + names[static_cast<int>(client_->connection_state())] +
       "  profile: " + client_->profile().directory().string());
  info("/get saves into " +
       (downloads_.empty() ? std::filesystem::current_path() : downloads_).string());
}

void ChatApp::cmd_devices(const std::string&) {
  if (!need_account()) return;
  background([this]() -> std::function<void()> {
    auto d = client_->devices();
    return [this, d] {
      if (!d.ok()) return error(d.error());
      info("Devices of " + at_handle(my_handle_) + ":");
      for (const auto& dev : *d)
        info("  " + std::to_string(dev.device_id) + "  " +
             (dev.name.empty() ? std::string("(unnamed)") : dev.name) +
             (dev.this_device ? screen_.paint("1", "  this device") : "") +
             (dev.connected ? screen_.paint("32", "  connected") : "") +
             screen_.paint("2", "  linked " + app::format_time(dev.created_ms, now_ms())));
    };
  });
}

void ChatApp::cmd_unlink(const std::string& a) {
  if (!need_account()) return;
  char* end = nullptr;
  unsigned long id = std::strtoul(a.c_str(), &end, 10);
  if (a.empty() || *end != '\0' || id == 0) return error("usage: /unlink DEVICE (see /devices)");
  background([this, id]() -> std::function<void()> {
    auto s = client_->remove_device(static_cast<uint32_t>(id));
    return [this, s, id] {
      if (!s.ok()) return error(s.error());
      info("device " + std::to_string(id) + " removed");
    };
  });
}

void ChatApp::cmd_add(const std::string& a) {
  if (!need_account()) return;
  if (a.empty()) return error("usage: /add @HANDLE");
  background([this, a]() -> std::function<void()> {
    auto contact = client_->add_contact(a);
    return [this, contact, a] {
      if (!contact.ok()) {
        if (contact.code() == ErrorCode::kNotFound)
          return error("nobody is called " + at_handle(a) + " on this relay");
        return error(contact.error());
      }
      handles_[contact->account] = contact->handle;
      auto conv = client_->direct_conversation(contact->account);
      if (!conv.ok()) return error(conv.error());
      open_conversation(*conv);
    };
  });
}

void ChatApp::cmd_contacts(const std::string&) {
  auto list = client_->contacts();
  if (!list.ok()) return error(list.error());
  if (list->empty()) return info("no contacts yet (/add @handle)");
  for (const auto& c : *list) {
    handles_[c.account] = c.handle;
    auto p = presence_.find(c.account);
    info("  " + at_handle(c.handle) +
         (p != presence_.end() && p->second.online ? screen_.paint("32", "  \u25cf online") : ""));
  }
}

void ChatApp::cmd_chats(const std::string&) {
  if (!need_account()) return;
  auto list = client_->conversations();
  if (!list.ok()) return error(list.error());
  if (list->empty()) return info("no conversations yet (/add @handle)");
  chat_list_.clear();
  uint64_t now = now_ms();
  for (const auto& c : *list) {
    chat_list_.push_back(c.id);
    std::string line = "  " + std::to_string(chat_list_.size()) + ". " +
                       screen_.paint(c.id == current_ ? "1;4" : "1", c.title) +
                       (c.kind == ConversationKind::kGroup ? screen_.paint("2", " (group)") : "");
    if (c.unread) line += " " + screen_.paint("1;33", "(" + std::to_string(c.unread) + " new)");
    if (c.last_message) {
      const Message& m = *c.last_message;
      std::string preview = m.deleted                ? "deleted"
                            : !m.text.empty()        ? one_line(m.text)
                            : !m.attachments.empty() ? "[file " + m.attachments[0].file_name + "]"
                                                     : "";
      line += screen_.paint("2", "  " + app::format_time(m.sort_ms, now) + "  " +
                                     (m.outgoing ? "you: " : "") + ellipsize(preview, 40));
    }
    info(line);
  }
  info(screen_.paint("2", "/open N to switch"));
}

void ChatApp::cmd_open(const std::string& a) {
  if (!need_account()) return;
  if (a.empty()) return error("usage: /open N (from /chats), /open @handle or /open GROUP");
  char* end = nullptr;
  long n = std::strtol(a.c_str(), &end, 10);
  if (*end == '\0' && n >= 1) {
    if (static_cast<size_t>(n) > chat_list_.size())
      return error("no conversation " + a + " in the last /chats list");
    return open_conversation(chat_list_[static_cast<size_t>(n - 1)]);
  }
  if (ConversationId c = find_conversation(a, a[0] == '@')) return open_conversation(c);
  if (a[0] == '@') return cmd_add(a);  // a new contact: look them up
}

void ChatApp::cmd_msg(const std::string& a) {
  if (!need_account()) return;
  auto [who, text] = split_word(a);
  if (who.empty() || text.empty()) return error("usage: /msg @HANDLE TEXT");
  std::string account = account_of(who);
  if (!account.empty()) {
    auto conv = client_->direct_conversation(account);
    if (!conv.ok()) return error(conv.error());
    return send_text(*conv, text);
  }
  background([this, who = who, text = text]() -> std::function<void()> {
    auto contact = client_->add_contact(who);
    return [this, contact, who, text] {
      if (!contact.ok()) return error(contact.error());
      handles_[contact->account] = contact->handle;
      auto conv = client_->direct_conversation(contact->account);
      if (!conv.ok()) return error(conv.error());
      send_text(*conv, text);
    };
  });
}

void ChatApp::cmd_history(const std::string& a) {
  if (!need_conversation()) return;
  int n = a.empty() ? 20 : std::atoi(a.c_str());
  if (n < 1 || n > 500) return error("usage: /history [N] with N from 1 to 500");
  show_history(current_, static_cast<uint32_t>(n));
}

void ChatApp::cmd_info(const std::string& a) { cmd_receipts(a); }

void ChatApp::cmd_receipts(const std::string& a) {
  ConversationId c;
  std::string id;
  if (a.empty()) return error("usage: /info #N");
  if (!resolve_ref(a, c, id)) return;
  auto m = client_->message(c, id);
  if (!m.ok()) return error(m.error());
  info(render(*m, c != current_));
  info("  sent " + app::format_time(m->sent_ms, now_ms()) + " by " + sender_name(*m));
  if (!m->outgoing) return;
  auto r = client_->receipts(c, id);
  if (!r.ok()) return error(r.error());
  if (r->empty()) info("  no receipts yet");
  for (const auto& rc : *r) {
    auto h = handles_.find(rc.account);
    info("  " + (h != handles_.end() ? at_handle(h->second) : rc.account.substr(0, 8)) + ": " +
         app::status_word(rc.status) + " " + app::format_time(rc.at_ms, now_ms()));
  }
}

void ChatApp::cmd_verify(const std::string& a) {
  if (!need_account()) return;
  std::string account, handle;
  if (!a.empty()) {
    account = account_of(a);
    handle = a;
    if (account.empty()) return error(at_handle(a) + " is not a contact (/add them first)");
  } else {
    if (!need_conversation()) return;
    auto conv = client_->conversation(current_);
    if (!conv.ok()) return error(conv.error());
    if (conv->kind != ConversationKind::kDirect)
      return error("a group has no single safety number: /verify @member");
    account = conv->peer;
    handle = conv->title;
  }
  auto sn = client_->safety_number(account);
  if (!sn.ok()) {
    if (sn.code() == ErrorCode::kNotFound)
      return error("no safety number with " + at_handle(handle) +
                   " yet: it exists once you have exchanged a message");
    return error(sn.error());
  }
  std::string g = app::group_digits(sn->digits);
  info("Safety number with " + at_handle(handle) + ":");
  for (size_t row = 0; row < 3 && row * 24 < g.size(); ++row)
    info("    " + screen_.paint("1", g.substr(row * 24, 23)));
  info("Compare it with the one " + at_handle(handle) +
       " sees (in person or on a call). If they match, nobody is in the middle.");
}

void ChatApp::cmd_accept(const std::string& a) {
  if (!need_account()) return;
  std::string account = account_of(a);
  if (account.empty()) return error("usage: /accept @HANDLE (a contact)");
  if (auto s = client_->accept_identity(account); !s.ok()) return error(s.error());
  info("accepted the new safety number of " + at_handle(a) + "; waiting messages go out now");
}

void ChatApp::cmd_search(const std::string& a) {
  if (!need_account()) return;
  if (a.empty()) return error("usage: /search WORDS");
  SearchQuery q;
  q.text = a;
  q.limit = 20;
  q.snippet_bytes = 100;
  auto page = client_->search(q);
  if (!page.ok()) return error(page.error());
  // The SDK gives pages, not a count: the rest is counted by paging on, up to a bound.
  constexpr size_t kCountUpTo = 1000;
  size_t total = page->hits.size();
  SearchQuery more = q;
  more.limit = 200;
  more.snippet_bytes = 32;
  more.cursor = page->next_cursor;
  while (!more.cursor.empty() && total <= kCountUpTo) {
    auto next = client_->search(more);
    if (!next.ok()) break;
    total += next->hits.size();
    more.cursor = next->next_cursor;
  }
  bool over = !more.cursor.empty();
  std::string count = over         ? "more than " + std::to_string(kCountUpTo) + " messages"
                      : total == 1 ? "1 message"
                      : total == 0 ? "no messages"
                                   : std::to_string(total) + " messages";
  std::string header = "\u2500\u2500 search \u201c" + a + "\u201d: " + count;
  if (total > page->hits.size())
    header += ", the newest " + std::to_string(page->hits.size());
  else if (total > 1)
    header += ", newest first";
  info(screen_.paint("1", header + " \u2500\u2500"));
  for (const auto& hit : page->hits) {
    std::string snippet;
    size_t pos = 0;
    for (const auto& h : hit.highlights) {
      if (h.begin < pos || h.end > hit.snippet.size()) continue;
      snippet += hit.snippet.substr(pos, h.begin - pos);
      snippet += screen_.color()
                     ? screen_.paint("1;43;30", hit.snippet.substr(h.begin, h.end - h.begin))
                     : "[" + hit.snippet.substr(h.begin, h.end - h.begin) + "]";
      pos = h.end;
    }
    snippet += hit.snippet.substr(std::min(pos, hit.snippet.size()));
    Message who;
    who.sender = hit.sender;
    who.outgoing = hit.sender == me_;
    info(screen_.paint(
             "2", ref_label(hit.conversation, number_of(hit.conversation, hit.message_id)) + " " +
                      app::format_time(hit.sort_ms, now_ms())) +
         " " + screen_.paint("35", "[" + conversation_title(hit.conversation) + "] ") +
         sender_name(who) + ": " + one_line(snippet));
  }
  if (!page->next_cursor.empty())
    info(screen_.paint("2", "(" + std::to_string(page->hits.size()) +
                                " shown: add words, or -word to leave some out, to narrow it)"));
  if (!page->index_complete) notice("the search index is being rebuilt: some messages are missing");
}

void ChatApp::start_transfer(const std::string& label, uint64_t id) {
  transfers_[id] = Transfer{label, 0, 0};
  update_footer();
}

void ChatApp::finish_transfer(uint64_t id) {
  transfers_.erase(id);
  update_footer();
}

void ChatApp::cmd_send(const std::string& a) {
  if (!need_account() || !need_conversation()) return;
  auto [path, caption] = split_word(a);
  if (path.empty()) return error("usage: /send FILE [CAPTION]");
  if (path[0] == '~')
    if (const char* home = std::getenv("HOME")) path = home + path.substr(1);
  std::error_code ec;
  if (!std::filesystem::is_regular_file(path, ec)) return error("no such file: " + path);
  uint64_t tid = next_transfer_++;
  ConversationId conv = current_;
  start_transfer("\u2191 " + std::filesystem::path(path).filename().string(), tid);
  background([this, conv, path = path, caption = caption, tid]() -> std::function<void()> {
    FileOptions fo;
    fo.caption = caption;
    auto last = std::make_shared<uint64_t>(0);
    auto id = client_->send_file(
        conv, path, fo,
        [this, tid, last](uint64_t done, uint64_t total) {
          uint64_t now = now_ms();
          if (done != total && now - *last < 100) return;  // a few redraws a second
          *last = now;
          loop_.post([this, tid, done, total] {
            auto it = transfers_.find(tid);
            if (it == transfers_.end()) return;
            it->second.done = done;
            it->second.total = total;
            update_footer();
          });
        },
        &cancel_);
    return [this, id, conv, tid] {
      finish_transfer(tid);
      if (!id.ok()) {
        if (id.code() == ErrorCode::kCancelled) return info("sending cancelled");
        return error(id.error());
      }
      auto m = client_->message(conv, *id);
      if (m.ok() && conv == current_) show(*m);
    };
  });
}

void ChatApp::cmd_get(const std::string& a) {
  if (!need_account()) return;
  auto w = words(a);
  if (w.empty()) return error("usage: /get #N [I] [DIR]");
  ConversationId c;
  std::string id;
  if (!resolve_ref(w[0], c, id)) return;
  uint32_t index = 0;
  std::filesystem::path dir = downloads_.empty() ? std::filesystem::current_path() : downloads_;
  if (w.size() >= 2) {
    char* end = nullptr;
    long i = std::strtol(w[1].c_str(), &end, 10);
    if (*end == '\0' && i >= 1)
      index = static_cast<uint32_t>(i - 1);
    else
      dir = w[1];
  }
  if (w.size() >= 3) dir = w[2];
  if (dir.string().size() > 1 && dir.string()[0] == '~')
    if (const char* home = std::getenv("HOME")) dir = home + dir.string().substr(1);
  std::error_code absolute_ec;
  dir = std::filesystem::absolute(dir, absolute_ec).lexically_normal();
  auto m = client_->message(c, id);
  if (!m.ok()) return error(m.error());
  if (index >= m->attachments.size())
    return error("that message has no file " + std::to_string(index + 1));
  uint64_t tid = next_transfer_++;
  start_transfer("\u2193 " + m->attachments[index].file_name, tid);
  std::string name = m->attachments[index].file_name;
  uint64_t size = m->attachments[index].size;
  background([this, c, id, index, dir, tid, name, size]() -> std::function<void()> {
    auto last = std::make_shared<uint64_t>(0);
    auto progress = [this, tid, last](uint64_t done, uint64_t total) {
      uint64_t now = now_ms();
      if (done != total && now - *last < 100) return;
      *last = now;
      loop_.post([this, tid, done, total] {
        auto it = transfers_.find(tid);
        if (it == transfers_.end()) return;
        it->second.done = done;
        it->second.total = total;
        update_footer();
      });
    };
    // The profile keeps the file encrypted; the user's copy goes where they asked, under the
    // sender's name (numbered when that name is taken).
    Status done = client_->download_attachment(c, id, index, progress, &cancel_);
    std::filesystem::path target;
    if (done.ok()) {
      std::error_code ec;
      std::filesystem::create_directories(dir, ec);
      target = app::unused_path(dir, name);
      done = client_->save_attachment(c, id, index, target, progress, &cancel_);
    }
    return [this, done, tid, target, size] {
      finish_transfer(tid);
      if (!done.ok()) {
        if (done.code() == ErrorCode::kCancelled) return info("download cancelled");
        return error(done.error());
      }
      info("saved " + target.string() + screen_.paint("2", " (" + app::format_size(size) + ")"));
    };
  });
}

void ChatApp::cmd_cancel(const std::string&) {
  cancel_ = true;
  info("cancelling\u2026");
}

void ChatApp::cmd_group(const std::string& a) {
  if (!need_account()) return;
  auto [sub, rest] = split_word(a);
  auto targets = [&](const std::string& list, std::vector<std::string>& out) {
    for (const auto& h : words(list)) {
      std::string acc = account_of(h);
      if (acc.empty()) {
        error(at_handle(h) + " is not a contact: /add them first");
        return false;
      }
      out.push_back(acc);
    }
    if (out.empty()) error("name at least one member (@handle)");
    return !out.empty();
  };
  if (sub == "create") {
    // NAME is everything before the first @member.
    size_t at = rest.find(" @");
    std::string name = trim(at == std::string::npos ? rest : rest.substr(0, at));
    std::vector<std::string> members;
    if (name.empty()) return error("usage: /group create NAME @a @b");
    if (at != std::string::npos && !targets(rest.substr(at), members)) return;
    auto conv = client_->create_group(name, members);
    if (!conv.ok()) return error(conv.error());
    info("group " + name + " created with " + std::to_string(members.size() + 1) + " members");
    return open_conversation(*conv);
  }
  if (!need_conversation()) return;
  Status s;
  std::string done;
  if (sub == "add" || sub == "remove") {
    std::vector<std::string> accounts;
    if (!targets(rest, accounts)) return;
    s = sub == "add" ? client_->add_group_members(current_, accounts)
                     : client_->remove_group_members(current_, accounts);
    done = sub == "add" ? "added " + rest : "removed " + rest;
  } else if (sub == "admin" || sub == "unadmin") {
    std::string acc = account_of(rest);
    if (acc.empty()) return error("usage: /group " + sub + " @member");
    s = client_->set_group_admin(current_, acc, sub == "admin");
    done = at_handle(rest) + (sub == "admin" ? " is now an admin" : " is no longer an admin");
  } else if (sub == "rename") {
    if (rest.empty()) return error("usage: /group rename NAME");
    s = client_->rename_group(current_, rest);
    done = "renamed to " + rest;
  } else if (sub == "leave") {
    s = client_->leave_group(current_);
    done = "you left the group";
  } else if (sub == "info" || sub.empty()) {
    return cmd_members("");
  } else {
    return error(
        "usage: /group create NAME @a @b | add @c | remove @c | admin @c | unadmin @c | "
        "rename NAME | leave | info");
  }
  if (!s.ok()) {
    if (s.code() == ErrorCode::kForbidden) return error("only the group's admins can do that");
    return error(s.error());
  }
  info(done);
  update_prompt();
}

void ChatApp::cmd_members(const std::string&) {
  if (!need_conversation()) return;
  auto g = client_->group(current_);
  if (!g.ok()) {
    if (g.code() == ErrorCode::kNotFound || g.code() == ErrorCode::kInvalidArgument)
      return error("this conversation is not a group");
    return error(g.error());
  }
  info(screen_.paint("1", g->name) +
       screen_.paint("2", "  " + std::to_string(g->members.size()) + " members, revision " +
                              std::to_string(g->revision)));
  for (const auto& m : g->members) {
    if (!m.handle.empty()) handles_[m.account] = m.handle;
    auto p = presence_.find(m.account);
    info("  " + (m.account == me_ ? at_handle(my_handle_) + " (you)" : at_handle(m.handle)) +
         (m.admin ? screen_.paint("33", "  admin") : "") +
         (p != presence_.end() && p->second.online ? screen_.paint("32", "  \u25cf online") : ""));
  }
  if (!g->is_member) notice("you are no longer a member of this group");
}

void ChatApp::cmd_edit(const std::string& a) {
  auto [ref, text] = split_word(a);
  if (ref.empty() || text.empty()) return error("usage: /edit #N NEW TEXT");
  ConversationId c;
  std::string id;
  if (!resolve_ref(ref, c, id)) return;
  if (auto s = client_->edit_message(c, id, text); !s.ok()) return error(s.error());
}

void ChatApp::cmd_delete(const std::string& a) {
  if (a.empty()) return error("usage: /delete #N");
  ConversationId c;
  std::string id;
  if (!resolve_ref(a, c, id)) return;
  if (auto s = client_->delete_for_everyone(c, id); !s.ok()) return error(s.error());
}

void ChatApp::cmd_timer(const std::string& a) {
  if (!need_conversation()) return;
  if (a.empty()) {
    auto conv = client_->conversation(current_);
    if (!conv.ok()) return error(conv.error());
    return info("disappearing messages: " + app::format_duration(conv->expire_timer_s));
  }
  int64_t seconds = app::parse_duration(a);
  if (seconds < 0) return error("usage: /timer off|30s|5m|1h|1d|1w");
  if (auto s = client_->set_disappearing_timer(current_, static_cast<uint32_t>(seconds)); !s.ok())
    return error(s.error());
  info("disappearing messages: " + app::format_duration(static_cast<uint32_t>(seconds)));
  update_prompt();
}

void ChatApp::cmd_presence(const std::string& a) {
  if (a != "on" && a != "off") return error("usage: /presence on|off");
  if (auto s = client_->set_presence_hidden(a == "off"); !s.ok()) return error(s.error());
  info(a == "on" ? "others see when you are online" : "others no longer see when you are online");
}

void ChatApp::cmd_receipts_setting(const std::string& a) {
  if (a != "on" && a != "off") return error("usage: /readreceipts on|off");
  if (auto s = client_->set_read_receipts(a == "on"); !s.ok()) return error(s.error());
  info(a == "on" ? "read receipts on" : "read receipts off (delivered receipts still go)");
}

void ChatApp::cmd_quit(const std::string&) { quit(); }

}  // namespace sotto::chat
