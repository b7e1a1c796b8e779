// sotto-chat: an interactive terminal client on sotto::Client.
#include <fcntl.h>
#include <poll.h>
#include <termios.h>
#include <unistd.h>

#include <clocale>
#include <csignal>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <memory>
#include <string>

#include "AppSupport.h"
#include "ChatApp.h"
#include "sotto/Client.h"

namespace {

constexpr const char* kUsage =
    "Usage: sotto-chat [OPTIONS]\n"
    "An end-to-end encrypted chat in the terminal, on a sotto relay.\n"
    "\n"
    "  -p, --profile DIR       the profile (this device's encrypted database);\n"
    "                          default: $XDG_DATA_HOME/sotto/chat (~/.local/share/sotto/chat)\n"
    "  -r, --relay URL         the relay, e.g. wss://relay.example.org/v1/ws;\n"
    "                          default: $SOTTO_RELAY or ws://127.0.0.1:8080/v1/ws\n"
    "  -k, --key-file FILE     open the profile with the 32-byte key in FILE (64 hex digits)\n"
    "                          instead of asking for a passphrase (for scripts)\n"
    "  -n, --device-name NAME  this device's name in the account's device list\n"
    "  -d, --downloads DIR     where /get saves files; default: the folder sotto-chat\n"
    "                          started in (~/Downloads when that is inside the profile)\n"
    "      --dangerously-allow-plaintext-relay\n"
    "                          for development: accept a plain ws:// relay on another\n"
    "                          machine (only localhost is accepted without TLS otherwise)\n"
    "      --no-color          plain text, no colours (also when NO_COLOR is set)\n"
    "  -h, --help              this text\n"
    "\n"
    "Without a terminal on stdin, commands are read one per line (a script).\n"
    "First run:  sotto-chat, choose a passphrase, then /register yourname, /add @friend, and\n"
    "type. /help inside lists every command.\n";

struct Args {
  std::filesystem::path profile;
  std::string relay;
  std::filesystem::path key_file;
  std::string device_name;
  std::filesystem::path downloads;
  bool color = true;
  bool allow_plaintext_relay = false;
};

int usage_error(const std::string& what) {
  std::fprintf(stderr, "sotto-chat: %s\nTry 'sotto-chat --help'.\n", what.c_str());
  return 2;
}

// Reads a line from the terminal with echo off. Empty result with `ok` false when there is no
// terminal to ask on.
std::string read_secret(const char* prompt, bool& ok) {
  ok = false;
  int fd = ::open("/dev/tty", O_RDWR | O_CLOEXEC);
  if (fd < 0) return {};
  termios old{};
  if (tcgetattr(fd, &old) != 0) {
    ::close(fd);
    return {};
  }
  termios quiet = old;
  quiet.c_lflag &= ~static_cast<tcflag_t>(ECHO);
  quiet.c_lflag |= ICANON;
  tcsetattr(fd, TCSAFLUSH, &quiet);
  [[maybe_unused]] ssize_t w = ::write(fd, prompt, std::strlen(prompt));
  std::string line;
  char c;
  bool got_end = false;
  while (::read(fd, &c, 1) == 1) {
    if (c == '\n' || c == '\r') {
      got_end = true;
      break;
    }
    line += c;
  }
  tcsetattr(fd, TCSAFLUSH, &old);
  w = ::write(fd, "\n", 1);
  ::close(fd);
  ok = got_end;
  return line;
}

// SIGWINCH: noted here, and the main loop woken through its pipe to redraw.
volatile std::sig_atomic_t g_resized = 0;
int g_wake_fd = -1;

void on_sigwinch(int) {
  g_resized = 1;
  char b = 1;
  [[maybe_unused]] ssize_t n = ::write(g_wake_fd, &b, 1);
}

// Where /get saves by default: --downloads, else the working directory, unless that is inside
// the profile (which keeps files only encrypted, and refuses plaintext copies): then the
// user's downloads folder.
std::filesystem::path downloads_dir(const Args& args) {
  std::error_code ec;
  if (!args.downloads.empty())
    return std::filesystem::absolute(args.downloads, ec).lexically_normal();
  auto cwd = std::filesystem::current_path(ec);
  auto profile = std::filesystem::weakly_canonical(args.profile, ec);
  auto rel = std::filesystem::weakly_canonical(cwd, ec).lexically_relative(profile);
  bool inside = !rel.empty() && *rel.begin() != "..";
  if (!inside && !cwd.empty()) return cwd;
  if (const char* xdg = std::getenv("XDG_DOWNLOAD_DIR"); xdg && *xdg) return xdg;
  if (const char* home = std::getenv("HOME"); home && *home)
    return std::filesystem::path(home) / "Downloads";
  return "/tmp";
}

void wipe(std::string& s) {
  volatile char* p = s.data();
  for (size_t i = 0; i < s.size(); ++i) p[i] = 0;
  s.clear();
}

}  // namespace

int main(int argc, char** argv) {
  std::setlocale(LC_ALL, "");
  Args args;
  args.relay = sotto::app::default_relay_url();
  args.profile = sotto::app::default_data_dir() / "chat";
  args.color = std::getenv("NO_COLOR") == nullptr;
  char host[256] = "this computer";
  gethostname(host, sizeof host - 1);
  args.device_name = std::string("sotto-chat on ") + host;

  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    auto value = [&](std::string& out) {
      if (i + 1 >= argc) return false;
      out = argv[++i];
      return true;
    };
    std::string v;
    if (a == "-h" || a == "--help") {
      std::fputs(kUsage, stdout);
      return 0;
    } else if (a == "-p" || a == "--profile") {
      if (!value(v)) return usage_error(a + " needs a directory");
      args.profile = v;
    } else if (a == "-r" || a == "--relay") {
      if (!value(v)) return usage_error(a + " needs a URL");
      args.relay = v;
    } else if (a == "-k" || a == "--key-file") {
      if (!value(v)) return usage_error(a + " needs a file");
      args.key_file = v;
    } else if (a == "-n" || a == "--device-name") {
      if (!value(v)) return usage_error(a + " needs a name");
      args.device_name = v;
    } else if (a == "-d" || a == "--downloads") {
      if (!value(v)) return usage_error(a + " needs a directory");
      args.downloads = v;
    } else if (a == "--no-color") {
      args.color = false;
    } else if (a == "--dangerously-allow-plaintext-relay") {
      args.allow_plaintext_relay = true;
    } else {
      return usage_error("unknown option '" + a + "'");
    }
  }

  // The profile.
  std::unique_ptr<sotto::Profile> profile;
  std::error_code ec;
  std::filesystem::create_directories(args.profile, ec);
  if (ec) {
    std::fprintf(stderr, "sotto-chat: cannot create %s: %s\n", args.profile.c_str(),
                 ec.message().c_str());
    return 1;
  }
  if (!args.key_file.empty()) {
    auto key = sotto::app::read_key_file(args.key_file);
    if (!key.ok()) {
      std::fprintf(stderr, "sotto-chat: %s\n", key.error().message.c_str());
      return 1;
    }
    auto p = sotto::Profile::open_with_key(args.profile, *key);
    if (!p.ok()) {
      std::fprintf(stderr, "sotto-chat: %s\n", p.error().message.c_str());
      return 1;
    }
    profile = std::move(*p);
  } else {
    bool fresh = sotto::app::is_new_profile(args.profile);
    if (fresh)
      std::fprintf(stderr,
                   "A new profile in %s. Choose a passphrase: it encrypts everything "
                   "on this device and cannot be recovered.\n",
                   args.profile.c_str());
    for (int attempt = 0; attempt < 3 && !profile; ++attempt) {
      bool ok = false;
      std::string pass = read_secret(fresh ? "New passphrase: " : "Passphrase: ", ok);
      if (!ok) {
        std::fprintf(stderr,
                     "sotto-chat: no terminal to ask for the passphrase on; use "
                     "--key-file for scripts\n");
        return 1;
      }
      if (pass.empty()) {
        std::fprintf(stderr, "The passphrase cannot be empty.\n");
        continue;
      }
      if (fresh) {
        std::string again = read_secret("Same passphrase again: ", ok);
        bool same = ok && again == pass;
        wipe(again);
        if (!same) {
          wipe(pass);
          std::fprintf(stderr, "The two did not match; again.\n");
          continue;
        }
      }
      auto p = sotto::Profile::open(args.profile, sotto::SecureBytes::from_string(pass));
      wipe(pass);
      if (p.ok()) {
        profile = std::move(*p);
      } else if (p.code() == sotto::ErrorCode::kWrongKey) {
        std::fprintf(stderr, "Wrong passphrase.\n");
      } else {
        std::fprintf(stderr, "sotto-chat: %s\n", p.error().message.c_str());
        return 1;
      }
    }
    if (!profile) return 1;
  }

  bool interactive = isatty(STDIN_FILENO) && isatty(STDOUT_FILENO);
  sotto::chat::MainLoop loop;
  sotto::chat::Screen screen(interactive, args.color && isatty(STDOUT_FILENO));
  sotto::chat::ChatApp app(screen, loop);
  app.set_downloads(downloads_dir(args));

  sotto::ClientOptions options;
  options.relay_url = args.relay;
  options.device_name = args.device_name;
  options.dangerously_allow_plaintext_relay = args.allow_plaintext_relay;
  options.executor = [&loop](std::function<void()> fn) { loop.post(std::move(fn)); };
  auto client = sotto::Client::create(std::move(profile), options);
  if (!client.ok()) {
    std::fprintf(stderr, "sotto-chat: %s\n", client.error().message.c_str());
    return 1;
  }

  // Events go to the app on the main loop.
  struct Forward : sotto::ClientListener {
    sotto::chat::ChatApp* app;
    explicit Forward(sotto::chat::ChatApp* a) : app(a) {}
    void on_message(const sotto::Message& m) override { app->on_message(m); }
    void on_message_status(sotto::ConversationId c, const std::string& id,
                           sotto::MessageStatus s) override {
      app->on_message_status(c, id, s);
    }
    void on_connection_state(sotto::ConnectionState s, const std::string& d) override {
      app->on_connection_state(s, d);
    }
    void on_identity_changed(const sotto::IdentityChange& c) override {
      app->on_identity_changed(c);
    }
    void on_devices_changed() override { app->on_devices_changed(); }
    void on_message_changed(const sotto::Message& m) override { app->on_message_changed(m); }
    void on_message_removed(sotto::ConversationId c, const std::string& id) override {
      app->on_message_removed(c, id);
    }
    void on_conversation_changed(sotto::ConversationId c) override {
      app->on_conversation_changed(c);
    }
    void on_typing(sotto::ConversationId c, const std::string& a, bool t) override {
      app->on_typing(c, a, t);
    }
    void on_presence(const std::string& a, bool online, uint64_t seen) override {
      app->on_presence(a, online, seen);
    }
  };
  (*client)->set_listener(std::make_shared<Forward>(&app));

  screen.on_line = [&](const std::string& line) { app.command(line); };
  screen.on_edit = [&] { app.edited(); };
  screen.on_eof = [&] { app.end_of_input(); };
  std::signal(SIGPIPE, SIG_IGN);
  if (interactive) {
    g_wake_fd = loop.wake_fd();
    struct sigaction sa {};
    sa.sa_handler = on_sigwinch;
    sigemptyset(&sa.sa_mask);
    sa.sa_flags = SA_RESTART;
    sigaction(SIGWINCH, &sa, nullptr);
  }

  app.start(std::move(*client));
  bool input_open = true;
  while (!app.quitting()) {
    pollfd fds[2] = {{loop.fd(), POLLIN, 0}, {STDIN_FILENO, POLLIN, 0}};
    int n = ::poll(fds, input_open ? 2 : 1, 250);
    if (n < 0 && errno != EINTR) break;
    loop.run_pending();
    if (g_resized) {
      g_resized = 0;
      screen.resized();
    }
    if (input_open && (fds[1].revents & (POLLIN | POLLHUP | POLLERR))) {
      char buf[4096];
      ssize_t got = ::read(STDIN_FILENO, buf, sizeof buf);
      if (got > 0) {
        screen.feed(buf, static_cast<size_t>(got));
      } else if (got == 0 || errno != EINTR) {
        input_open = false;
        screen.end_of_input();
      }
    }
    app.tick();
  }
  return 0;
}
