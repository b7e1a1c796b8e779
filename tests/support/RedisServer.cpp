#include "RedisServer.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <cstring>
#include <thread>
#include <vector>

namespace sotto::test {
namespace {

const char* kBinary = "/usr/bin/redis-server";

// True once the server answers PING on its socket.
bool answers(const std::filesystem::path& socket) {
  int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  std::strncpy(addr.sun_path, socket.c_str(), sizeof addr.sun_path - 1);
  bool ok = ::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0;
  if (ok) {
    const char ping[] = "PING\r\n";
    ok = ::write(fd, ping, sizeof ping - 1) == static_cast<ssize_t>(sizeof ping - 1);
    char buf[16] = {};
    timeval tv{1, 0};
    ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    ok = ok && ::read(fd, buf, sizeof buf - 1) > 0 && std::strncmp(buf, "+PONG", 5) == 0;
  }
  ::close(fd);
  return ok;
}

}  // namespace

Result<std::unique_ptr<RedisServer>> RedisServer::start() {
  if (::access(kBinary, X_OK) != 0)
    return make_error(ErrorCode::kNotFound,
                      std::string(kBinary) + " is missing: install redis-server (./run deps)");
  std::unique_ptr<RedisServer> self(new RedisServer());
  char tmpl[] = "/tmp/sotto-redis-XXXXXX";
  if (!::mkdtemp(tmpl)) return make_error(ErrorCode::kStorageIo, "cannot make a temp directory");
  self->dir_ = tmpl;
  self->socket_ = self->dir_ / "redis.sock";
  SOTTO_TRY(self->launch());
  return self;
}

Status RedisServer::launch() {
  std::vector<std::string> args = {kBinary,
                                   "--port",
                                   "0",
                                   "--unixsocket",
                                   socket_.string(),
                                   "--unixsocketperm",
                                   "700",
                                   "--save",
                                   "",
                                   "--appendonly",
                                   "no",
                                   "--notify-keyspace-events",
                                   "Ex",
                                   "--dir",
                                   dir_.string(),
                                   "--logfile",
                                   (dir_ / "redis.log").string()};
  pid_t parent = ::getpid();
  pid_t pid = ::fork();
  if (pid == 0) {
    ::prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (::getppid() != parent) ::_exit(127);
    std::vector<char*> argv;
    for (auto& a : args) argv.push_back(a.data());
    argv.push_back(nullptr);
    ::execv(kBinary, argv.data());
    ::_exit(127);
  }
  if (pid < 0) return make_error(ErrorCode::kStorageIo, "cannot fork redis-server");
  pid_ = pid;
  for (int i = 0; i < 200; ++i) {
    if (answers(socket_)) return {};
    int status = 0;
    if (::waitpid(pid_, &status, WNOHANG) == pid_) {
      pid_ = -1;
      return make_error(ErrorCode::kStorageIo, "redis-server exited at start (see " +
                                                   (dir_ / "redis.log").string() + ")");
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(25));
  }
  return make_error(ErrorCode::kStorageIo, "redis-server did not answer within 5 s");
}

void RedisServer::kill9() {
  if (pid_ <= 0) return;
  ::kill(pid_, SIGKILL);
  ::waitpid(pid_, nullptr, 0);
  pid_ = -1;
  std::error_code ec;
  std::filesystem::remove(socket_, ec);
}

Status RedisServer::restart() {
  kill9();
  return launch();
}

RedisServer::~RedisServer() {
  kill9();
  std::error_code ec;
  if (!dir_.empty()) std::filesystem::remove_all(dir_, ec);
}

}  // namespace sotto::test
