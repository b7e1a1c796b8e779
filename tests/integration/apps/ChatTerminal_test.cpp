// sotto-chat as a person uses it: two instances in tmux (send-keys to type, capture-pane to
// read the screen) against a real relay process, each with its own profile on disk.
#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <array>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <string>
#include <thread>
#include <vector>

#include "RelayProcess.h"
#include "TestSupport.h"

namespace sotto::test {
namespace {

using namespace std::chrono_literals;

std::string shell_quote(const std::string& s) {
  std::string out = "'";
  for (char c : s) {
    if (c == '\'')
      out += "'\\''";
    else
      out += c;
  }
  return out + "'";
}

// Runs a command; its stdout, and the exit status in `status`.
std::string run(const std::string& command, int* status = nullptr) {
  std::string out;
  FILE* p = ::popen(command.c_str(), "r");
  if (!p) return out;
  std::array<char, 4096> buf{};
  size_t n;
  while ((n = std::fread(buf.data(), 1, buf.size(), p)) > 0) out.append(buf.data(), n);
  int st = ::pclose(p);
  if (status) *status = WIFEXITED(st) ? WEXITSTATUS(st) : -1;
  return out;
}

// A tmux server of the test's own (its socket in a temp dir), one session per chat client.
class Tmux {
 public:
  explicit Tmux(const std::filesystem::path& dir) : socket_((dir / "tmux.sock").string()) {}
  ~Tmux() { run(base() + " kill-server 2>/dev/null"); }

  std::string base() const { return "tmux -u -S " + shell_quote(socket_); }

  bool start(const std::string& name, const std::string& command) {
    int status = -1;
    run(base() + " new-session -d -x 160 -y 50 -s " + name + " " + shell_quote(command), &status);
    return status == 0;
  }
  void type(const std::string& name, const std::string& text) {
    run(base() + " send-keys -t " + name + " -l " + shell_quote(text));
  }
  void key(const std::string& name, const std::string& key) {
    run(base() + " send-keys -t " + name + " " + key);
  }
  void line(const std::string& name, const std::string& text) {
    type(name, text);
    key(name, "Enter");
  }
  // The visible screen and the scrollback.
  std::string screen(const std::string& name) const {
    return run(base() + " capture-pane -p -J -S -500 -t " + name + " 2>/dev/null");
  }
  // The last non-empty row: where the line being typed is.
  std::string prompt_row(const std::string& name) const {
    std::string s = run(base() + " capture-pane -p -t " + name + " 2>/dev/null");
    size_t end = s.find_last_not_of("\n ");
    if (end == std::string::npos) return "";
    size_t begin = s.rfind('\n', end);
    return s.substr(begin == std::string::npos ? 0 : begin + 1, end + 1 - (begin + 1));
  }
  // A new width for the window, as when the user drags its edge (the program gets SIGWINCH).
  void resize(const std::string& name, int columns) {
    run(base() + " resize-window -t " + name + " -x " + std::to_string(columns) + " -y 50");
  }
  // The visible rows only.
  std::string visible(const std::string& name) const {
    return run(base() + " capture-pane -p -t " + name + " 2>/dev/null");
  }
  bool alive(const std::string& name) const {
    int status = -1;
    run(base() + " has-session -t " + name + " 2>/dev/null", &status);
    return status == 0;
  }
  bool wait_for(const std::string& name, const std::string& text,
                std::chrono::milliseconds timeout = 20s) const {
    auto deadline = std::chrono::steady_clock::now() + timeout;
    while (std::chrono::steady_clock::now() < deadline) {
      if (screen(name).find(text) != std::string::npos) return true;
      std::this_thread::sleep_for(100ms);
    }
    return screen(name).find(text) != std::string::npos;
  }
  // How often `text` occurs on the screen and in the scrollback.
  size_t count(const std::string& name, const std::string& text) const {
    std::string s = screen(name);
    size_t n = 0;
    for (size_t pos = s.find(text); pos != std::string::npos; pos = s.find(text, pos + 1)) ++n;
    return n;
  }

 private:
  std::string socket_;
};

class ChatTerminal : public ::testing::Test {
 protected:
  void SetUp() override {
    if (run("command -v tmux").empty()) GTEST_SKIP() << "tmux is not installed (./run deps)";
  }

  // The command line of one client with its own profile and key file; `options` go on its
  // command line, and it starts in `cwd` when one is given.
  std::string client_command(const std::string& name, const RelayProcess& relay,
                             const std::string& options = "",
                             const std::filesystem::path& cwd = {}) {
    auto profile = dir_ / (name + "-profile");
    auto key = dir_ / (name + ".key");
    std::ofstream(key) << "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcd"
                       << (name == "alice" ? "01" : "02") << "\n";
    return (cwd.empty() ? "" : "cd " + shell_quote(cwd.string()) + " && ") +
           "env LANG=C.UTF-8 LC_ALL=C.UTF-8 TERM=xterm-256color " + shell_quote(SOTTO_CHAT_BINARY) +
           " --profile " + shell_quote(profile.string()) + " --key-file " +
           shell_quote(key.string()) + " --relay " + shell_quote(relay.ws_url()) +
           " --device-name " + name + "-terminal " + options + " 2>>" +
           shell_quote((dir_ / (name + ".err")).string());
  }

  // Alice and bob registered, each in a tmux session of that name.
  void register_both(Tmux& tmux, const RelayProcess& relay,
                     const std::filesystem::path& bob_cwd = {}) {
    ASSERT_TRUE(tmux.start("alice", client_command("alice", relay)));
    ASSERT_TRUE(tmux.start("bob", client_command("bob", relay, "", bob_cwd)));
    ASSERT_TRUE(tmux.wait_for("alice", "no account yet")) << dump(tmux);
    ASSERT_TRUE(tmux.wait_for("bob", "no account yet")) << dump(tmux);
    tmux.line("alice", "/register alice");
    tmux.line("bob", "/register bob");
    ASSERT_TRUE(tmux.wait_for("alice", "Welcome, @alice")) << dump(tmux);
    ASSERT_TRUE(tmux.wait_for("bob", "Welcome, @bob")) << dump(tmux);
  }

  // As register_both, then each has the chat with the other open.
  void chatting(Tmux& tmux, const RelayProcess& relay, const std::filesystem::path& bob_cwd = {}) {
    register_both(tmux, relay, bob_cwd);
    if (HasFatalFailure()) return;
    tmux.line("alice", "/add @bob");
    ASSERT_TRUE(tmux.wait_for("alice", "\u2500\u2500 @bob \u2500\u2500")) << dump(tmux);
    tmux.line("bob", "/add @alice");
    ASSERT_TRUE(tmux.wait_for("bob", "\u2500\u2500 @alice \u2500\u2500")) << dump(tmux);
  }

  // The rows of a screen that hold `text`.
  static std::vector<std::string> rows_with(const std::string& screen, const std::string& text) {
    std::vector<std::string> out;
    size_t begin = 0;
    while (begin < screen.size()) {
      size_t end = screen.find('\n', begin);
      if (end == std::string::npos) end = screen.size();
      std::string row = screen.substr(begin, end - begin);
      if (row.find(text) != std::string::npos) out.push_back(row);
      begin = end + 1;
    }
    return out;
  }

  std::string dump(Tmux& tmux) {
    return "\n--- alice ---\n" + tmux.screen("alice") + "\n--- bob ---\n" + tmux.screen("bob");
  }

  TempDir temp_;
  std::filesystem::path dir_ = temp_.path();
};

TEST_F(ChatTerminal, TwoClientsChatBothWaysWithTicksTypingAndAnIntactLine) {
  RelayProcess relay;
  ASSERT_TRUE(relay.running());
  Tmux tmux(dir_);
  ASSERT_TRUE(tmux.start("alice", client_command("alice", relay)));
  ASSERT_TRUE(tmux.start("bob", client_command("bob", relay)));
  ASSERT_TRUE(tmux.wait_for("alice", "no account yet")) << dump(tmux);
  ASSERT_TRUE(tmux.wait_for("bob", "no account yet")) << dump(tmux);

  tmux.line("alice", "/register alice");
  tmux.line("bob", "/register bob");
  ASSERT_TRUE(tmux.wait_for("alice", "Welcome, @alice")) << dump(tmux);
  ASSERT_TRUE(tmux.wait_for("bob", "Welcome, @bob")) << dump(tmux);

  // Alice finds bob by handle and writes; her line shows the ticks moving on in place.
  tmux.line("alice", "/add @bob");
  ASSERT_TRUE(tmux.wait_for("alice", "\u2500\u2500 @bob \u2500\u2500")) << dump(tmux);
  tmux.line("alice", "hello from alice");
  ASSERT_TRUE(tmux.wait_for("bob", ": hello from alice")) << dump(tmux);
  ASSERT_TRUE(tmux.wait_for("alice", "you: hello from alice  \u2713\u2713 delivered"))
      << dump(tmux);

  // Bob adds alice (a message carries no handle, only her account id) and so opens the chat:
  // the message is read, and alice's ticks say so.
  tmux.line("bob", "/add @alice");
  ASSERT_TRUE(tmux.wait_for("bob", "@alice: hello from alice")) << dump(tmux);
  ASSERT_TRUE(tmux.wait_for("alice", "you: hello from alice  \u2713\u2713 read")) << dump(tmux);

  // Bob starts typing: alice sees it live, under her messages.
  tmux.type("bob", "thinking about it");
  ASSERT_TRUE(tmux.wait_for("alice", "@bob is typing\u2026")) << dump(tmux);
  tmux.key("bob", "C-u");

  // Alice has half a line typed when bob's answer arrives: the answer prints above it and her
  // line stays as it was, cursor and all.
  tmux.type("alice", "a draft in progress");
  ASSERT_TRUE(tmux.wait_for("alice", "a draft in progress", 5s));
  tmux.line("bob", "hi alice, got it");
  ASSERT_TRUE(tmux.wait_for("alice", "@bob: hi alice, got it")) << dump(tmux);
  EXPECT_NE(tmux.prompt_row("alice").find("a draft in progress"), std::string::npos) << dump(tmux);
  EXPECT_EQ(tmux.count("alice", "a draft in progress"), 1u) << dump(tmux);
  // Alice has the chat open, so bob's answer is read at once.
  ASSERT_TRUE(tmux.wait_for("bob", "you: hi alice, got it  \u2713\u2713 read")) << dump(tmux);
  tmux.type("alice", " and done");
  tmux.key("alice", "Enter");
  ASSERT_TRUE(tmux.wait_for("bob", "@alice: a draft in progress and done")) << dump(tmux);

  // Both numbers are the same 60 digits.
  tmux.line("alice", "/verify");
  tmux.line("bob", "/verify");
  ASSERT_TRUE(tmux.wait_for("alice", "Safety number with @bob:")) << dump(tmux);
  ASSERT_TRUE(tmux.wait_for("bob", "Safety number with @alice:")) << dump(tmux);
  auto digits_of = [](const std::string& screen) {
    size_t at = screen.rfind("Safety number with");
    std::string digits;
    for (size_t i = screen.find('\n', at); i < screen.size() && digits.size() < 60; ++i)
      if (screen[i] >= '0' && screen[i] <= '9') digits += screen[i];
    return digits;
  };
  std::string a = digits_of(tmux.screen("alice")), b = digits_of(tmux.screen("bob"));
  EXPECT_EQ(a.size(), 60u) << dump(tmux);
  EXPECT_EQ(a, b);

  // A group: bob sees its messages tagged with its name.
  tmux.line("alice", "/group create Crew @bob");
  ASSERT_TRUE(tmux.wait_for("alice", "group Crew created with 2 members")) << dump(tmux);
  tmux.line("alice", "hello crew");
  ASSERT_TRUE(tmux.wait_for("bob", "[Crew] @alice: hello crew")) << dump(tmux);

  // A file with a progress bar on the way, fetched by bob with /get.
  auto file = dir_ / "notes.txt";
  std::string content(300'000, 'x');
  for (size_t i = 0; i < content.size(); i += 7) content[i] = static_cast<char>('a' + i % 26);
  std::ofstream(file, std::ios::binary) << content;
  tmux.line("alice", "/open @bob");
  tmux.line("alice", "/send " + file.string() + " the notes");
  ASSERT_TRUE(tmux.wait_for("bob", "the notes  [file notes.txt, 293.0 KB] /get")) << dump(tmux);
  std::string bob_screen = tmux.screen("bob");
  size_t at = bob_screen.find("[file notes.txt, 293.0 KB] /get ");
  std::string ref =
      bob_screen.substr(at + 32, bob_screen.find_first_not_of("0123456789", at + 32) - at - 32);
  auto downloads = dir_ / "downloads";
  tmux.line("bob", "/get " + ref + " " + downloads.string());
  ASSERT_TRUE(tmux.wait_for("bob", "saved " + (downloads / "notes.txt").string())) << dump(tmux);
  Bytes got = read_file(downloads / "notes.txt");
  EXPECT_EQ(std::string(got.begin(), got.end()), content);

  tmux.line("alice", "/quit");
  tmux.line("bob", "/quit");
  auto deadline = std::chrono::steady_clock::now() + 15s;
  while ((tmux.alive("alice") || tmux.alive("bob")) && std::chrono::steady_clock::now() < deadline)
    std::this_thread::sleep_for(100ms);
  EXPECT_FALSE(tmux.alive("alice")) << "sotto-chat did not quit on /quit";
  EXPECT_FALSE(tmux.alive("bob")) << "sotto-chat did not quit on /quit";
}

// Numbers belong to a conversation and come from its history: the same in any order of
// viewing, and after a restart.
TEST_F(ChatTerminal, MessageNumbersBelongToTheirChatAndSurviveARestart) {
  RelayProcess relay;
  ASSERT_TRUE(relay.running());
  Tmux tmux(dir_);
  chatting(tmux, relay);
  if (HasFatalFailure()) return;
  tmux.line("alice", "/group create Crew @bob");
  ASSERT_TRUE(tmux.wait_for("alice", "group Crew created")) << dump(tmux);
  tmux.line("alice", "hello crew");
  ASSERT_TRUE(tmux.wait_for("bob", "[Crew] @alice: hello crew")) << dump(tmux);
  // Bob writes while alice is in the group: his line is #1 of his chat, and says where.
  tmux.line("bob", "one");
  ASSERT_TRUE(tmux.wait_for("alice", "@bob: one")) << dump(tmux);
  EXPECT_EQ(rows_with(tmux.screen("alice"), "@bob: one")[0].rfind("@bob#1 ", 0), 0u) << dump(tmux);
  tmux.line("alice", "/open @bob");
  tmux.line("alice", "two");
  ASSERT_TRUE(tmux.wait_for("alice", "you: two  \u2713\u2713 read")) << dump(tmux);
  auto numbered = [&](const std::vector<std::string>& want) {
    std::string screen = tmux.screen("alice");
    std::string view = screen.substr(screen.rfind("\u2500\u2500 @bob \u2500\u2500"));
    for (size_t n = 1; n <= want.size(); ++n) {
      auto rows = rows_with(view, want[n - 1]);
      ASSERT_EQ(rows.size(), 1u) << view;
      EXPECT_EQ(rows[0].rfind("#" + std::to_string(n) + " ", 0), 0u) << rows[0] << "\n" << view;
    }
  };
  numbered({"@bob: one", "you: two"});
  if (HasFatalFailure()) return;
  tmux.line("alice", "/info 2");
  ASSERT_TRUE(tmux.wait_for("alice", "  @bob: ")) << dump(tmux);

  // Another run, the group looked at first: the chat with bob is numbered as before.
  tmux.line("alice", "/quit");
  auto deadline = std::chrono::steady_clock::now() + 15s;
  while (tmux.alive("alice") && std::chrono::steady_clock::now() < deadline)
    std::this_thread::sleep_for(100ms);
  ASSERT_FALSE(tmux.alive("alice"));
  ASSERT_TRUE(tmux.start("alice", client_command("alice", relay)));
  ASSERT_TRUE(tmux.wait_for("alice", "online")) << dump(tmux);
  tmux.line("alice", "/open Crew");
  ASSERT_TRUE(tmux.wait_for("alice", "\u2500\u2500 Crew \u2500\u2500")) << dump(tmux);
  tmux.line("alice", "/open @bob");
  ASSERT_TRUE(tmux.wait_for("alice", "you: two")) << dump(tmux);
  numbered({"@bob: one", "you: two"});
}

// A /msg from another chat: its line names the chat, and its ticks move on like any other's.
TEST_F(ChatTerminal, AMsgToAnotherChatGetsItsTicks) {
  RelayProcess relay;
  ASSERT_TRUE(relay.running());
  Tmux tmux(dir_);
  chatting(tmux, relay);
  if (HasFatalFailure()) return;
  tmux.line("alice", "/group create Crew @bob");
  ASSERT_TRUE(tmux.wait_for("alice", "group Crew created")) << dump(tmux);
  tmux.line("alice", "/msg @bob psst");
  ASSERT_TRUE(tmux.wait_for("bob", "@alice: psst")) << dump(tmux);
  ASSERT_TRUE(tmux.wait_for("alice", "[@bob] you: psst  \u2713\u2713 read")) << dump(tmux);
  EXPECT_EQ(tmux.count("alice", "psst"), 1u) << dump(tmux);
  EXPECT_EQ(rows_with(tmux.screen("alice"), "you: psst")[0].rfind("@bob#1 ", 0), 0u) << dump(tmux);
  tmux.line("alice", "/info @bob#1");
  ASSERT_TRUE(tmux.wait_for("alice", "  @bob: read")) << dump(tmux);
}

// Three messages from a chat that is not open: one "to reply" hint.
TEST_F(ChatTerminal, TheReplyHintComesOncePerChat) {
  RelayProcess relay;
  ASSERT_TRUE(relay.running());
  Tmux tmux(dir_);
  register_both(tmux, relay);
  if (HasFatalFailure()) return;
  tmux.line("bob", "/add @alice");
  ASSERT_TRUE(tmux.wait_for("bob", "\u2500\u2500 @alice \u2500\u2500")) << dump(tmux);
  for (const char* text : {"one", "two", "three"}) {
    tmux.line("bob", text);
    ASSERT_TRUE(tmux.wait_for("alice", std::string(": ") + text)) << dump(tmux);
  }
  EXPECT_EQ(tmux.count("alice", "to reply)"), 1u) << dump(tmux);
}

// An empty chat says so until its first message, and no longer.
TEST_F(ChatTerminal, NoMessagesYetGoesAwayWithTheFirstMessage) {
  RelayProcess relay;
  ASSERT_TRUE(relay.running());
  Tmux tmux(dir_);
  chatting(tmux, relay);
  if (HasFatalFailure()) return;
  ASSERT_TRUE(tmux.wait_for("alice", "(no messages yet")) << dump(tmux);
  ASSERT_TRUE(tmux.wait_for("bob", "(no messages yet")) << dump(tmux);
  tmux.line("alice", "first");
  ASSERT_TRUE(tmux.wait_for("bob", "@alice: first")) << dump(tmux);
  ASSERT_TRUE(tmux.wait_for("alice", "you: first  \u2713\u2713 read")) << dump(tmux);
  EXPECT_EQ(tmux.count("alice", "(no messages yet"), 0u) << dump(tmux);
  EXPECT_EQ(tmux.count("bob", "(no messages yet"), 0u) << dump(tmux);
}

// Ticks of a message longer than a row change its own line: no "#1 “…” ✓ sent" lines.
TEST_F(ChatTerminal, TicksOfAWrappedMessageStayOnItsLine) {
  RelayProcess relay;
  ASSERT_TRUE(relay.running());
  Tmux tmux(dir_);
  chatting(tmux, relay);
  if (HasFatalFailure()) return;
  std::string text;  // two rows' worth (the window is 160 wide)
  while (text.size() < 230) text += "a long line about the zebra crossing ";
  text += "end";
  tmux.line("alice", text);
  ASSERT_TRUE(tmux.wait_for("bob", "end")) << dump(tmux);
  ASSERT_TRUE(tmux.wait_for("alice", "you: " + text + "  \u2713\u2713 read")) << dump(tmux);
  EXPECT_EQ(tmux.count("alice", "end  \u2713"), 1u) << dump(tmux);
  EXPECT_EQ(tmux.count("alice", "\u201c"), 0u) << dump(tmux);
}

// A file without a caption: its line appears once and takes its ticks, also when it is no
// longer the last line; no "#1 “” ✓ sent" line, before it or after.
TEST_F(ChatTerminal, AFileShowsItsStatusOnItsOwnLine) {
  RelayProcess relay;
  ASSERT_TRUE(relay.running());
  Tmux tmux(dir_);
  register_both(tmux, relay);
  if (HasFatalFailure()) return;
  tmux.line("alice", "/add @bob");
  ASSERT_TRUE(tmux.wait_for("alice", "\u2500\u2500 @bob \u2500\u2500")) << dump(tmux);
  auto file = dir_ / "notes.txt";
  std::ofstream(file, std::ios::binary) << std::string(100'000, 'n');
  tmux.line("alice", "/send " + file.string());
  ASSERT_TRUE(tmux.wait_for("bob", "[file notes.txt, 97.7 KB]")) << dump(tmux);
  ASSERT_TRUE(tmux.wait_for("alice", "you: [file notes.txt, 97.7 KB]  \u2713\u2713 delivered"))
      << dump(tmux);
  // More lines below it; then bob opens the chat and reads it.
  tmux.line("alice", "/whoami");
  ASSERT_TRUE(tmux.wait_for("alice", "connection: ")) << dump(tmux);
  tmux.line("bob", "/add @alice");
  ASSERT_TRUE(tmux.wait_for("alice", "you: [file notes.txt, 97.7 KB]  \u2713\u2713 read"))
      << dump(tmux);
  EXPECT_EQ(tmux.count("alice", "\u201c"), 0u) << dump(tmux);
  EXPECT_EQ(tmux.count("alice", "notes.txt"), 1u) << dump(tmux);
}

// /get without a folder saves where sotto-chat started (or into --downloads) and says the full
// path.
TEST_F(ChatTerminal, GetSavesIntoTheStartingFolderAndSaysWhere) {
  RelayProcess relay;
  ASSERT_TRUE(relay.running());
  Tmux tmux(dir_);
  auto bob_cwd = dir_ / "bob-home";
  std::filesystem::create_directories(bob_cwd);
  chatting(tmux, relay, bob_cwd);
  if (HasFatalFailure()) return;
  auto file = dir_ / "notes.txt";
  std::string content(100'000, 'n');
  std::ofstream(file, std::ios::binary) << content;
  tmux.line("alice", "/send " + file.string() + " first copy");
  ASSERT_TRUE(tmux.wait_for("bob", "[file notes.txt, 97.7 KB] /get 1")) << dump(tmux);
  tmux.line("bob", "/get 1");
  ASSERT_TRUE(tmux.wait_for("bob", "saved " + (bob_cwd / "notes.txt").string() + " (97.7 KB)"))
      << dump(tmux);
  Bytes got = read_file(bob_cwd / "notes.txt");
  EXPECT_EQ(std::string(got.begin(), got.end()), content);

  // With --downloads, there.
  tmux.line("bob", "/quit");
  auto deadline = std::chrono::steady_clock::now() + 15s;
  while (tmux.alive("bob") && std::chrono::steady_clock::now() < deadline)
    std::this_thread::sleep_for(100ms);
  ASSERT_FALSE(tmux.alive("bob"));
  auto downloads = dir_ / "bob-downloads";
  ASSERT_TRUE(tmux.start(
      "bob", client_command("bob", relay, "--downloads " + downloads.string(), bob_cwd)));
  ASSERT_TRUE(tmux.wait_for("bob", "online")) << dump(tmux);
  tmux.line("bob", "/open @alice");
  tmux.line("bob", "/get 1");
  ASSERT_TRUE(tmux.wait_for("bob", "saved " + (downloads / "notes.txt").string())) << dump(tmux);
  EXPECT_TRUE(std::filesystem::exists(downloads / "notes.txt"));
}

// Search: a header with how many messages match, then the hits.
TEST_F(ChatTerminal, SearchSaysWhatItFound) {
  RelayProcess relay;
  ASSERT_TRUE(relay.running());
  Tmux tmux(dir_);
  chatting(tmux, relay);
  if (HasFatalFailure()) return;
  tmux.line("alice", "the zebra crossing");
  tmux.line("alice", "another zebra");
  tmux.line("alice", "no stripes here");
  ASSERT_TRUE(tmux.wait_for("bob", "@alice: no stripes here")) << dump(tmux);
  tmux.line("alice", "/search zebra");
  ASSERT_TRUE(tmux.wait_for("alice", "search \u201czebra\u201d: 2 messages, newest first"))
      << dump(tmux);
  tmux.line("alice", "/search nothinglikethis");
  ASSERT_TRUE(tmux.wait_for("alice", "search \u201cnothinglikethis\u201d: no messages"))
      << dump(tmux);
}

// A resize while a long line is typed: the prompt row is drawn again for the new width.
TEST_F(ChatTerminal, AResizeRedrawsTheLineBeingTyped) {
  RelayProcess relay;
  ASSERT_TRUE(relay.running());
  Tmux tmux(dir_);
  chatting(tmux, relay);
  if (HasFatalFailure()) return;
  std::string draft;
  for (int i = 0; draft.size() < 120; ++i) draft += "word" + std::to_string(i) + " ";
  draft += "tail";
  tmux.type("alice", draft);
  ASSERT_TRUE(tmux.wait_for("alice", "tail", 5s)) << dump(tmux);
  tmux.resize("alice", 80);
  auto deadline = std::chrono::steady_clock::now() + 5s;
  std::string row;
  while (std::chrono::steady_clock::now() < deadline) {
    row = tmux.prompt_row("alice");
    if (row.rfind("@bob", 0) == 0 && row.find("tail") != std::string::npos) break;
    std::this_thread::sleep_for(100ms);
  }
  EXPECT_EQ(row.rfind("@bob", 0), 0u) << row << "\n" << tmux.visible("alice");
  EXPECT_NE(row.find("tail"), std::string::npos) << row << "\n" << tmux.visible("alice");
  // Nothing of the row drawn for the old width is left.
  EXPECT_EQ(tmux.visible("alice").find("word0"), std::string::npos) << tmux.visible("alice");
  tmux.resize("alice", 160);
  tmux.key("alice", "Enter");
  ASSERT_TRUE(tmux.wait_for("bob", "@alice: word0 ")) << dump(tmux);
}

TEST_F(ChatTerminal, HelpAndBadInvocationsSayWhatToDo) {
  int status = -1;
  std::string help = run(shell_quote(SOTTO_CHAT_BINARY) + " --help", &status);
  EXPECT_EQ(status, 0);
  EXPECT_NE(help.find("--key-file FILE"), std::string::npos) << help;
  EXPECT_NE(help.find("--relay URL"), std::string::npos) << help;
  EXPECT_NE(help.find("--downloads DIR"), std::string::npos) << help;

  std::string out = run(shell_quote(SOTTO_CHAT_BINARY) + " --bogus 2>&1", &status);
  EXPECT_EQ(status, 2);
  EXPECT_NE(out.find("unknown option '--bogus'"), std::string::npos) << out;

  auto missing = dir_ / "no-such.key";
  out = run(shell_quote(SOTTO_CHAT_BINARY) + " --profile " + shell_quote((dir_ / "p").string()) +
                " --key-file " + shell_quote(missing.string()) + " 2>&1",
            &status);
  EXPECT_EQ(status, 1);
  EXPECT_NE(out.find("openssl rand -hex 32"), std::string::npos) << out;

  // A script without a terminal: commands one per line, errors on stdout, no prompt.
  std::ofstream(dir_ / "k") << std::string(64, 'a') << "\n";
  out = run("printf '/chats\\nhello\\n/nonsense\\n' | " + shell_quote(SOTTO_CHAT_BINARY) +
                " --profile " + shell_quote((dir_ / "p").string()) + " --key-file " +
                shell_quote((dir_ / "k").string()) + " --relay ws://127.0.0.1:9/v1/ws 2>&1",
            &status);
  EXPECT_EQ(status, 0) << out;
  EXPECT_NE(out.find("no account yet: /register HANDLE or /link first"), std::string::npos) << out;
  EXPECT_NE(out.find("unknown command /nonsense (type /help)"), std::string::npos) << out;
}

}  // namespace
}  // namespace sotto::test
