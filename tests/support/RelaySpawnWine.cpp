// RelaySpawn.h for a Windows test program under Wine. The relay is the native Linux binary:
// Wine starts a Unix program when CreateProcess is given one, but hands back no handle to
// wait on, so each start runs a small shell script that records the relay's process id and,
// once it ends, its exit status, in files of the RelayProcess's directory; signals go through
// kill(1). The directory is under Z:\tmp, Wine's name for /tmp, so both sides name it. A
// relay outlives a test program that crashed by at most 15 minutes (the script's watchdog).
#include <winsock2.h>
#include <windows.h>
#include <ws2tcpip.h>

#include <chrono>
#include <fstream>
#include <random>
#include <sstream>
#include <thread>

#include "RelaySpawn.h"

namespace sotto::test::spawn {
namespace {

namespace fs = std::filesystem;

// 'text' for sh, with any single quote in it closed, escaped and reopened.
std::string quoted(const std::string& text) {
  std::string out = "'";
  for (char c : text) out += c == '\'' ? std::string("'\\''") : std::string(1, c);
  return out + "'";
}

// Runs `script` with /bin/sh as a Unix program; false if Wine could not start it.
bool run_script(const fs::path& script) {
  std::string command = "/bin/sh " + native_path(script);
  STARTUPINFOA si{};
  si.cb = sizeof si;
  PROCESS_INFORMATION pi{};
  if (!CreateProcessA("/bin/sh", command.data(), nullptr, nullptr, FALSE, 0, nullptr, nullptr,
                      &si, &pi))
    return false;
  if (pi.hProcess) CloseHandle(pi.hProcess);
  if (pi.hThread) CloseHandle(pi.hThread);
  return true;
}

std::optional<long> read_number(const fs::path& file) {
  std::ifstream in(file);
  long n = 0;
  std::string rest;
  // Complete only with its newline: the script writes the number, then the newline.
  if (!(in >> n) || !std::getline(in, rest) || in.eof()) return std::nullopt;
  return n;
}

// Waits for `file` to hold a whole number, up to `limit`.
std::optional<long> await_number(const fs::path& file, std::chrono::milliseconds limit) {
  auto deadline = std::chrono::steady_clock::now() + limit;
  for (;;) {
    if (auto n = read_number(file)) return n;
    if (std::chrono::steady_clock::now() > deadline) return std::nullopt;
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
}

void write_script(const fs::path& path, const std::string& body) {
  std::ofstream out(path, std::ios::binary);
  out << "#!/bin/sh\n" << body;
}

// The command for sh, each argument quoted; those that are Windows paths ("C:/...", a data
// dir, a certificate) as the relay names them.
std::string command_line(const std::vector<std::string>& command) {
  std::string line;
  for (const auto& a : command) {
    bool windows_path = a.size() > 2 && a[1] == ':' && (a[2] == '/' || a[2] == '\\');
    line += (line.empty() ? "" : " ") + quoted(windows_path ? native_path(a) : a);
  }
  return line;
}

}  // namespace

fs::path make_dir() {
  std::random_device rd;
  for (int i = 0; i < 100; ++i) {
    fs::path dir = fs::path("Z:/tmp") / ("sotto-relay-" + std::to_string(GetCurrentProcessId()) +
                                         "-" + std::to_string(rd()));
    std::error_code ec;
    if (fs::create_directory(dir, ec)) return dir;
  }
  return {};
}

std::string native_path(const fs::path& p) {
  std::string s = p.generic_string();
  if (s.size() >= 3 && (s[0] == 'Z' || s[0] == 'z') && s[1] == ':' && s[2] == '/')
    return s.substr(2);
  // Anywhere else (a TempDir under C:\users\...): Wine's own mapping.
  using Convert = char*(CDECL*)(const wchar_t*);
  static auto convert = reinterpret_cast<Convert>(
      reinterpret_cast<void*>(GetProcAddress(GetModuleHandleA("kernel32.dll"),
                                             "wine_get_unix_file_name")));
  if (!convert) return s;
  std::wstring wide = p.wstring();
  char* unix_name = convert(wide.c_str());
  if (!unix_name) return s;
  std::string out = unix_name;
  HeapFree(GetProcessHeap(), 0, unix_name);
  return out;
}

Running start(const std::vector<std::string>& command, const std::vector<std::string>& env,
              const fs::path& log, const fs::path& dir, std::string& why) {
  Running r;
  r.dir = dir;
  std::error_code ec;
  fs::remove(dir / "pid", ec);
  fs::remove(dir / "status", ec);
  std::string body;
  for (const auto& e : env) body += "export " + quoted(e) + "\n";
  std::string at = native_path(dir);
  body += command_line(command) + " >>" + quoted(native_path(log)) + " 2>&1 &\n";
  body += "relay=$!\n";
  body += "echo $relay >" + quoted(at + "/pid") + "\n";
  // A relay left behind by a test program that crashed is killed after 15 minutes.
  body += "(n=0; while kill -0 $relay 2>/dev/null; do n=$((n + 1)); "
          "[ $n -ge 900 ] && kill -9 $relay; sleep 1; done) >/dev/null 2>&1 &\n";
  body += "wait $relay\n";
  body += "echo $? >" + quoted(at + "/status.tmp") + " && mv " + quoted(at + "/status.tmp") +
          " " + quoted(at + "/status") + "\n";
  write_script(dir / "start.sh", body);
  if (!run_script(dir / "start.sh")) {
    why = "Wine could not run /bin/sh (error " + std::to_string(GetLastError()) + ")";
    return r;
  }
  auto pid = await_number(dir / "pid", std::chrono::seconds(20));
  if (!pid) {
    why = "the relay's start script never said the relay's process id";
    return r;
  }
  r.pid = *pid;
  return r;
}

std::optional<int> exited(Running& r) {
  if (r.pid <= 0) return std::nullopt;
  auto status = read_number(r.dir / "status");
  if (!status) return std::nullopt;
  r.pid = -1;
  // sh's `wait` gives 128 + the signal for a relay a signal ended, as waitpid() does.
  return static_cast<int>(*status);
}

void signal(const Running& r, int sig) {
  if (r.pid <= 0) return;
  write_script(r.dir / "signal.sh",
               "kill -" + std::to_string(sig) + " " + std::to_string(r.pid) + "\n");
  run_script(r.dir / "signal.sh");
}

std::pair<int, std::string> run(const std::vector<std::string>& command) {
  std::pair<int, std::string> out{-1, {}};
  fs::path dir = make_dir();
  if (dir.empty()) return out;
  std::string at = native_path(dir);
  write_script(dir / "run.sh", command_line(command) + " >" + quoted(at + "/output") +
                                   " 2>&1\necho $? >" + quoted(at + "/status.tmp") + " && mv " +
                                   quoted(at + "/status.tmp") + " " + quoted(at + "/status") +
                                   "\n");
  if (run_script(dir / "run.sh")) {
    if (auto status = await_number(dir / "status", std::chrono::seconds(120))) {
      out.first = static_cast<int>(*status);
      std::ifstream in(dir / "output", std::ios::binary);
      std::stringstream ss;
      ss << in.rdbuf();
      out.second = ss.str();
    }
  }
  std::error_code ec;
  fs::remove_all(dir, ec);
  return out;
}

bool can_connect(uint16_t port) {
  static const bool started = [] {
    WSADATA data;
    return WSAStartup(MAKEWORD(2, 2), &data) == 0;
  }();
  if (!started) return false;
  SOCKET s = ::socket(AF_INET, SOCK_STREAM, IPPROTO_TCP);
  if (s == INVALID_SOCKET) return false;
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(port);
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  bool ok = ::connect(s, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0;
  closesocket(s);
  return ok;
}

}  // namespace sotto::test::spawn
