// sotto-demo: the whole system on one machine, as `./run demo` shows it. Starts a relay of its
// own on 127.0.0.1 in a temporary directory, plays three people through nine steps (Scenario),
// prints a transcript, and removes everything it started: on success, on a failed step, on a
// step that hangs (watchdog) and on Ctrl-C. Exit status 0 when every step passed.
#include <signal.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <iostream>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "Scenario.h"
#include "Transcript.h"

namespace {

using namespace sotto::demo;
namespace fs = std::filesystem;

const char kUsage[] =
    "sotto-demo: three people, one relay on this machine, every message end-to-end encrypted.\n"
    "\n"
    "Usage: sotto-demo [--relay PATH] [options]\n"
    "\n"
    "  --relay PATH       the sotto-relay executable (default: the one built beside this demo)\n"
    "  --relay-arg FLAG   add FLAG to the relay's command line (repeatable), e.g.\n"
    "                     --relay-arg=--rate-register-ip=off; the relay's defaults otherwise\n"
    "  --timeout SECONDS  how long each wait for an event may take (10); a step as a whole\n"
    "                     may take three times that\n"
    "  --keep             keep the temporary directory (profiles, relay data and logs)\n"
    "  --color WHEN       auto (default: when stdout is a terminal), always, never\n"
    "  -h, --help         this text\n"
    "\n"
    "Exit status: 0 when every step passed, 1 when one failed, 2 for bad options,\n"
    "130 when interrupted.\n";

#ifndef SOTTO_DEMO_RELAY_DEFAULT
#define SOTTO_DEMO_RELAY_DEFAULT ""
#endif

// What the signal and watchdog threads need to clean up: set before they start.
std::string g_work_dir;
bool g_keep = false;
Progress g_progress;

void say(const std::string& s) {
  // Straight to the descriptor: another thread may hold the transcript's lock.
  ssize_t w = ::write(STDOUT_FILENO, s.data(), s.size());
  (void)w;
}

// Stops the relay, removes the temporary directory and exits, whatever the other threads do.
[[noreturn]] void emergency_exit(const std::string& why, int code) {
  static std::mutex once;
  once.lock();  // never unlocked: a second caller waits for the process to end
  say("\n" + why + "\n");
  pid_t pid = g_progress.relay_pid.load();
  if (pid > 0) {
    ::kill(pid, SIGKILL);
    for (int i = 0; i < 200 && ::waitpid(pid, nullptr, WNOHANG) == 0; ++i)
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
    say("stopped the relay (pid " + std::to_string(pid) + ")\n");
  }
  if (!g_work_dir.empty()) {
    if (g_keep) {
      say("kept " + g_work_dir + "\n");
    } else {
      std::error_code ec;
      for (int i = 0; i < 3; ++i)
        if (fs::remove_all(g_work_dir, ec), !ec) break;
      say("removed " + g_work_dir + "\n");
    }
  }
  std::fflush(nullptr);
  ::_exit(code);
}

void signal_thread(sigset_t set) {
  int sig = 0;
  if (::sigwait(&set, &sig) != 0) return;
  emergency_exit("sotto-demo: interrupted (" + std::string(::strsignal(sig)) + ")", 130);
}

void watchdog_thread() {
  for (;;) {
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
    int64_t deadline = g_progress.deadline_ms.load();
    if (deadline == 0) continue;
    int64_t now = std::chrono::duration_cast<std::chrono::milliseconds>(
                      std::chrono::steady_clock::now().time_since_epoch())
                      .count();
    if (now < deadline) continue;
    std::string what;
    {
      std::lock_guard lock(g_progress.mu);
      what = "FAILED: step " + std::to_string(g_progress.step) + " (" + g_progress.title +
             ") did not finish in time";
      if (!g_progress.expecting.empty()) what += "; it was waiting for " + g_progress.expecting;
    }
    emergency_exit(what, 1);
  }
}

struct Args {
  std::string relay = SOTTO_DEMO_RELAY_DEFAULT;
  std::vector<std::string> relay_args;
  int timeout_s = 10;
  bool keep = false;
  std::string color = "auto";
};

// false (after printing why) for bad options; exits for --help.
bool parse(int argc, char** argv, Args& a) {
  for (int i = 1; i < argc; ++i) {
    std::string arg = argv[i];
    std::string value;
    bool has_value = false;
    if (auto eq = arg.find('='); arg.rfind("--", 0) == 0 && eq != std::string::npos) {
      value = arg.substr(eq + 1);
      arg = arg.substr(0, eq);
      has_value = true;
    }
    auto take = [&]() -> bool {
      if (has_value) return true;
      if (i + 1 >= argc) {
        std::fprintf(stderr, "sotto-demo: %s needs a value\n", arg.c_str());
        return false;
      }
      value = argv[++i];
      return true;
    };
    if (arg == "-h" || arg == "--help") {
      std::fputs(kUsage, stdout);
      std::exit(0);
    } else if (arg == "--relay") {
      if (!take()) return false;
      a.relay = value;
    } else if (arg == "--relay-arg") {
      if (!take()) return false;
      a.relay_args.push_back(value);
    } else if (arg == "--timeout") {
      if (!take()) return false;
      a.timeout_s = std::atoi(value.c_str());
      if (a.timeout_s <= 0 || a.timeout_s > 600) {
        std::fprintf(stderr, "sotto-demo: --timeout takes 1..600 seconds, not '%s'\n",
                     value.c_str());
        return false;
      }
    } else if (arg == "--keep") {
      a.keep = true;
    } else if (arg == "--color" || arg == "--colour") {
      if (!take()) return false;
      if (value != "auto" && value != "always" && value != "never") {
        std::fprintf(stderr, "sotto-demo: --color takes auto, always or never\n");
        return false;
      }
      a.color = value;
    } else {
      std::fprintf(stderr, "sotto-demo: unknown option '%s' (try --help)\n", argv[i]);
      return false;
    }
  }
  if (a.relay.empty()) {
    std::fprintf(stderr, "sotto-demo: give the relay with --relay PATH\n");
    return false;
  }
  if (::access(a.relay.c_str(), X_OK) != 0) {
    std::fprintf(stderr, "sotto-demo: cannot run the relay '%s' (build it: ./run build)\n",
                 a.relay.c_str());
    return false;
  }
  return true;
}

}  // namespace

int main(int argc, char** argv) {
  Args args;
  if (!parse(argc, argv, args)) return 2;

  // Signals go to one thread of ours: block them before any other thread exists, so the
  // Clients' threads inherit the mask.
  sigset_t set;
  sigemptyset(&set);
  for (int s : {SIGINT, SIGTERM, SIGHUP, SIGQUIT}) sigaddset(&set, s);
  ::pthread_sigmask(SIG_BLOCK, &set, nullptr);
  ::signal(SIGPIPE, SIG_IGN);

  Transcript& t = out();
  bool tty = ::isatty(STDOUT_FILENO) == 1;
  const char* term = std::getenv("TERM");
  bool color = args.color == "always" || (args.color == "auto" && tty && !std::getenv("NO_COLOR") &&
                                          !(term && std::string(term) == "dumb"));
  t.set_color(color);

  std::string tmpl = (fs::temp_directory_path() / "sotto-demo-XXXXXX").string();
  if (!::mkdtemp(tmpl.data())) {
    std::perror("sotto-demo: cannot create a temporary directory");
    return 1;
  }
  g_work_dir = tmpl;
  g_keep = args.keep;
  std::thread(signal_thread, set).detach();
  std::thread(watchdog_thread).detach();

  t.line(t.paint(Paint::kBold,
                 "sotto demo: three people, one relay on this machine, every message "
                 "end-to-end encrypted"));
  t.event("demo", "temporary directory $DEMO = " + g_work_dir +
                      (args.keep ? " (kept: --keep)" : " (removed at the end)"));

  ScenarioOptions so;
  so.relay_binary = args.relay;
  so.work_dir = g_work_dir;
  so.relay_args = args.relay_args;
  so.wait = std::chrono::seconds(args.timeout_s);
  so.step = std::chrono::seconds(3 * args.timeout_s);

  int code = 0;
  std::string failure;
  int passed = 0;
  {
    Scenario scenario(so, g_progress);
    try {
      scenario.run();
    } catch (const StepFailure& e) {
      failure = e.what();
    } catch (const std::exception& e) {
      failure = std::string("unexpected error: ") + e.what();
    }
    passed = scenario.steps_passed();
    if (!failure.empty()) {
      std::string step_title;
      int step = 0;
      {
        std::lock_guard lock(g_progress.mu);
        step = g_progress.step;
        step_title = g_progress.title;
      }
      t.line("");
      t.line(
          t.paint(Paint::kRed, "FAILED: step " + std::to_string(step) + " (" + step_title + ")") +
          ": " + failure);
      t.line(scenario.logs_tail(15));
      code = 1;
    }
    // Clean-up under the watchdog too: nothing here may hang the demo.
    g_progress.deadline_ms = std::chrono::duration_cast<std::chrono::milliseconds>(
                                 std::chrono::steady_clock::now().time_since_epoch())
                                 .count() +
                             so.step.count();
    scenario.shut_down();
  }
  std::error_code ec;
  if (args.keep) {
    t.event("demo", "kept " + g_work_dir);
  } else {
    fs::remove_all(g_work_dir, ec);
    t.event("demo", ec ? "could not remove " + g_work_dir + ": " + ec.message()
                       : "relay stopped, temporary directory removed");
  }
  g_progress.deadline_ms = 0;

  char took[32];
  std::snprintf(took, sizeof took, "%.1f s", t.elapsed());
  t.line("");
  if (code == 0)
    t.line(t.paint(Paint::kGreen, "demo: all 9 steps passed in " + std::string(took)));
  else
    t.line(t.paint(Paint::kRed, "demo: failed at step " + std::to_string(passed + 1) + " after " +
                                    std::to_string(passed) + " passed, in " + took));
  return code;
}
