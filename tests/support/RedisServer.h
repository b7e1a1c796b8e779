// A throwaway redis-server for cluster-mode tests: a Unix socket in a temporary directory (no
// TCP port), nothing saved to disk, key-expiry events on. Started as a child process, killed
// and removed with the object; restart() brings it back empty, as a real restart without
// persistence would.
#pragma once

#include <sys/types.h>

#include <filesystem>
#include <memory>
#include <string>

#include "sotto/Result.h"

namespace sotto::test {

class RedisServer {
 public:
  // kNotFound when redis-server is not installed (./run deps installs it).
  static Result<std::unique_ptr<RedisServer>> start();
  ~RedisServer();
  RedisServer(const RedisServer&) = delete;
  RedisServer& operator=(const RedisServer&) = delete;

  // The relay's --bus value.
  std::string address() const { return "unix:" + socket_.string(); }
  pid_t pid() const { return pid_; }  // -1 when it is not running
  void kill9();                       // SIGKILL, reap
  Status restart();                   // start again on the same socket (after kill9)

 private:
  RedisServer() = default;
  Status launch();

  std::filesystem::path dir_;
  std::filesystem::path socket_;
  pid_t pid_ = -1;
};

}  // namespace sotto::test
