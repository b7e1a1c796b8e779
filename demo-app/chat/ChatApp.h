// sotto-chat's application: the commands, and the Client's events rendered for a terminal.
//
// Thread rule: everything here runs on the main thread, except the bodies of slow commands
// (those that wait for the relay or move files), which run on one worker thread and hand their
// results back through the main loop. Client events reach the main loop through
// ClientOptions::executor.
#pragma once

#include <atomic>
#include <condition_variable>
#include <deque>
#include <filesystem>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "Screen.h"
#include "sotto/Client.h"

namespace sotto::chat {

// Functions posted from any thread, run on the main thread; poll() wakes on fd().
class MainLoop {
 public:
  MainLoop();
  ~MainLoop();
  MainLoop(const MainLoop&) = delete;
  MainLoop& operator=(const MainLoop&) = delete;
  void post(std::function<void()> fn);
  int fd() const { return pipe_[0]; }
  // The end to write a byte to from a signal handler (post() takes a lock; this does not).
  int wake_fd() const { return pipe_[1]; }
  void run_pending();

 private:
  int pipe_[2] = {-1, -1};
  std::mutex mu_;
  std::deque<std::function<void()>> queue_;
};

class ChatApp {
 public:
  ChatApp(Screen& screen, MainLoop& loop);
  ~ChatApp();
  ChatApp(const ChatApp&) = delete;
  ChatApp& operator=(const ChatApp&) = delete;

  // Takes the client (created with an executor that posts to `loop`) and starts: connects when
  // the profile has an account, or says how to make one.
  void start(std::unique_ptr<Client> client);
  // Where /get saves when no folder is given.
  void set_downloads(const std::filesystem::path& dir) { downloads_ = dir; }
  void command(const std::string& line);
  void edited();  // the line being typed changed
  void tick();    // about every 250 ms, from the main loop
  bool quitting() const { return quit_; }
  void quit();
  // The input ended: quit once the messages sent in this run reached the relay (scripts).
  void end_of_input();

  // Client events, on the main thread.
  void on_message(const Message& m);
  void on_message_status(ConversationId c, const std::string& id, MessageStatus s);
  void on_message_changed(const Message& m);
  void on_message_removed(ConversationId c, const std::string& id);
  void on_conversation_changed(ConversationId c);
  void on_connection_state(ConnectionState s, const std::string& detail);
  void on_identity_changed(const IdentityChange& change);
  void on_devices_changed();
  void on_typing(ConversationId c, const std::string& account, bool typing);
  void on_presence(const std::string& account, bool online, uint64_t last_seen_ms);

 private:
  struct Command {
    const char* name;
    const char* args;
    const char* help;
    void (ChatApp::*run)(const std::string& args);
  };
  static const std::vector<Command>& commands();

  // Output helpers.
  void info(const std::string& text);
  void error(const std::string& text);
  void error(const Error& e);
  void notice(const std::string& text);

  // The slow part of a command on the worker thread; `then` runs on the main thread after.
  void background(std::function<std::function<void()>()> work);
  void worker_main();

  // Display.
  std::string sender_name(const Message& m);
  std::string conversation_title(ConversationId c);
  std::string render(const Message& m, bool tag_conversation);
  // A message's number in its conversation: its place in the history, oldest first (#1), so
  // the same after a restart. Messages that arrive during the run take the next numbers.
  int number_of(ConversationId c, const std::string& id);
  // How a message is named in commands: "#5" in the open conversation, "@bob#5" or "Crew#5"
  // elsewhere.
  std::string ref_label(ConversationId c, int number);
  // A conversation's name as typed in "NAME#5": a handle, a group's first word, or the first
  // digits of an account without a handle.
  std::string short_title(ConversationId c);
  // A conversation by name as /open takes it (title, @handle, unique prefix); 0 and an error
  // printed when none or several match.
  ConversationId find_conversation(const std::string& name, bool quiet = false);
  // A short line about a message shown earlier: "  [@bob] #5 “hello…”" and what follows.
  std::string mention(const Message& m);
  // An outgoing message's ticks and status word, coloured: "✓✓ delivered (2/3)".
  std::string ticks(const Message& m);
  void show(const Message& m);
  void update_prompt();
  void update_footer();
  void show_history(ConversationId c, uint32_t count);
  void open_conversation(ConversationId c);
  void mark_read_upto(ConversationId c, const std::string& id);
  void refresh_contacts();
  bool need_account();
  bool need_conversation();
  // A message by its #N (the open conversation) or NAME#N (another one).
  bool resolve_ref(const std::string& token, ConversationId& c, std::string& id);
  // An account id from "@handle" among known contacts; "" when unknown.
  std::string account_of(const std::string& handle);

  // Commands.
  void cmd_help(const std::string& a);
  void cmd_register(const std::string& a);
  void cmd_link(const std::string& a);
  void cmd_approve(const std::string& a);
  void cmd_whoami(const std::string& a);
  void cmd_devices(const std::string& a);
  void cmd_unlink(const std::string& a);
  void cmd_add(const std::string& a);
  void cmd_contacts(const std::string& a);
  void cmd_chats(const std::string& a);
  void cmd_open(const std::string& a);
  void cmd_msg(const std::string& a);
  void cmd_history(const std::string& a);
  void cmd_info(const std::string& a);
  void cmd_receipts(const std::string& a);
  void cmd_verify(const std::string& a);
  void cmd_accept(const std::string& a);
  void cmd_search(const std::string& a);
  void cmd_send(const std::string& a);
  void cmd_get(const std::string& a);
  void cmd_cancel(const std::string& a);
  void cmd_group(const std::string& a);
  void cmd_members(const std::string& a);
  void cmd_edit(const std::string& a);
  void cmd_delete(const std::string& a);
  void cmd_timer(const std::string& a);
  void cmd_presence(const std::string& a);
  void cmd_receipts_setting(const std::string& a);
  void cmd_quit(const std::string& a);

  void send_text(ConversationId c, const std::string& text);
  void start_transfer(const std::string& label, uint64_t id);
  void finish_transfer(uint64_t id);

  Screen& screen_;
  MainLoop& loop_;
  std::unique_ptr<Client> client_;
  bool quit_ = false;
  uint64_t quit_deadline_ms_ = 0;
  std::set<std::pair<ConversationId, std::string>> shown_;  // printed in this run
  struct Shown {
    uint64_t line = 0;    // Screen handle of the message's own line
    bool tagged = false;  // printed with its conversation's name
    uint64_t status = 0;  // the short line about its last change, if one was printed
  };
  std::map<std::pair<ConversationId, std::string>, Shown> lines_;
  std::set<std::pair<ConversationId, std::string>> sending_;  // sent, not yet at the relay

  // Main-thread state.
  std::string me_;  // own account id, once known
  std::string my_handle_;
  ConnectionState state_ = ConnectionState::kOffline;
  bool state_shown_ = false;
  ConversationId current_ = 0;
  std::map<std::string, std::string> handles_;  // account -> handle (contacts, group members)
  struct Numbers {
    bool loaded = false;
    std::vector<std::string> ids;       // #n -> ids[n - 1]
    std::map<std::string, int> number;  // id -> n
  };
  std::map<ConversationId, Numbers> numbers_;
  bool current_empty_ = false;             // the open conversation has no messages yet
  std::set<ConversationId> reply_hinted_;  // "(/open X to reply)" shown once per conversation
  std::filesystem::path downloads_;        // /get's folder when none is given
  std::vector<ConversationId> chat_list_;  // what /chats numbered
  std::map<ConversationId, std::map<std::string, uint64_t>> typing_;  // conv -> account -> until
  struct Presence {
    bool online = false;
    uint64_t last_seen_ms = 0;
  };
  std::map<std::string, Presence> presence_;
  bool typing_sent_ = false;
  uint64_t typing_sent_ms_ = 0;
  ConversationId typing_conv_ = 0;
  struct Transfer {
    std::string label;
    uint64_t done = 0;
    uint64_t total = 0;
  };
  std::map<uint64_t, Transfer> transfers_;
  uint64_t next_transfer_ = 1;

  // Worker thread.
  std::thread worker_;
  std::mutex worker_mu_;
  std::condition_variable worker_cv_;
  std::deque<std::function<std::function<void()>()>> jobs_;
  bool worker_stop_ = false;
  std::atomic<bool> cancel_{false};  // the running transfer or link wait should stop
};

}  // namespace sotto::chat
