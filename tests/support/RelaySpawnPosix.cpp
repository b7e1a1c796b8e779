// RelaySpawn.h on Linux: fork and exec, waitpid, kill.
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <string_view>

#include "RelaySpawn.h"

namespace sotto::test::spawn {

std::filesystem::path make_dir() {
  std::string tmpl = (std::filesystem::temp_directory_path() / "sotto-relay-XXXXXX").string();
  if (!::mkdtemp(tmpl.data())) return {};
  return tmpl;
}

std::string native_path(const std::filesystem::path& p) { return p.string(); }

Running start(const std::vector<std::string>& command, const std::vector<std::string>& env,
              const std::filesystem::path& log, const std::filesystem::path& dir,
              std::string& why) {
  Running r;
  r.dir = dir;
  // The environment is built here: after fork() only async-signal-safe calls are allowed.
  // `env` wins over a variable of the same name.
  std::vector<std::string> env_strings = env;
  for (char** e = environ; *e; ++e) {
    std::string_view var(*e);
    bool replaced = std::any_of(env.begin(), env.end(), [&](const auto& o) {
      return o.substr(0, o.find('=') + 1) == var.substr(0, var.find('=') + 1);
    });
    if (!replaced) env_strings.emplace_back(var);
  }
  std::vector<char*> envp;
  for (auto& e : env_strings) envp.push_back(e.data());
  envp.push_back(nullptr);
  std::vector<std::string> args = command;
  std::vector<char*> argv;
  for (auto& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);
  int log_fd = ::open(log.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
  pid_t parent = ::getpid();
  pid_t pid = ::fork();
  if (pid == 0) {
    // The relay dies with the test process, whatever happens to it.
    ::prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (::getppid() != parent) ::_exit(127);
    if (log_fd >= 0) {
      ::dup2(log_fd, STDOUT_FILENO);
      ::dup2(log_fd, STDERR_FILENO);
    }
    ::close_range(3, ~0U, 0);
    ::execvpe(argv[0], argv.data(), envp.data());
    ::_exit(127);
  }
  if (log_fd >= 0) ::close(log_fd);
  if (pid < 0) {
    why = "fork failed";
    return r;
  }
  r.pid = pid;
  return r;
}

std::optional<int> exited(Running& r) {
  if (r.pid <= 0) return std::nullopt;
  int status = 0;
  if (::waitpid(static_cast<pid_t>(r.pid), &status, WNOHANG) != r.pid) return std::nullopt;
  r.pid = -1;
  if (WIFEXITED(status)) return WEXITSTATUS(status);
  if (WIFSIGNALED(status)) return 128 + WTERMSIG(status);
  return -1;
}

void signal(const Running& r, int sig) {
  if (r.pid > 0) ::kill(static_cast<pid_t>(r.pid), sig);
}

std::pair<int, std::string> run(const std::vector<std::string>& command) {
  std::string cmd;
  for (const auto& a : command) cmd += " '" + a + "'";
  cmd += " 2>&1";
  std::pair<int, std::string> out{-1, {}};
  FILE* f = ::popen(cmd.c_str(), "r");
  if (!f) return out;
  char buf[4096];
  while (size_t n = std::fread(buf, 1, sizeof buf, f)) out.second.append(buf, n);
  int status = ::pclose(f);
  out.first = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  return out;
}

bool can_connect(uint16_t port) {
  int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return false;
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(port);
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  bool ok = ::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0;
  ::close(fd);
  return ok;
}

}  // namespace sotto::test::spawn
