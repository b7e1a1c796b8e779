// A throwaway PostgreSQL 15 server for tests: initdb in a temporary directory, a server that
// listens only on a Unix socket in that directory, stopped and removed with the object. No
// test depends on a server the machine already runs.
//
// PostgreSQL refuses to run as root: as root the server runs as the `postgres` user that the
// Debian package creates (through runuser), otherwise as the current user. fsync is off unless
// asked for: tests kill the server (stop() is a crash for it) but never pull the machine's
// plug, and what a commit wrote is then still in the page cache. A benchmark asks for it, so
// that a commit costs what it costs in production. It starts in about a second.
#pragma once

#include <sys/types.h>

#include <filesystem>
#include <memory>
#include <string>

#include "sotto/Result.h"

namespace sotto::test {

class PostgresServer {
 public:
  // kNotFound when PostgreSQL's binaries are missing (./run deps installs them). `fsync`:
  // every commit is made durable (PostgreSQL's default), as a production server would.
  static Result<std::unique_ptr<PostgresServer>> start(bool fsync = false);
  ~PostgresServer();
  PostgresServer(const PostgresServer&) = delete;
  PostgresServer& operator=(const PostgresServer&) = delete;

  // A libpq connection string for database `dbname` (created with create_database).
  std::string conninfo(const std::string& dbname = "postgres") const;
  // The same as a postgresql:// URL (the relay's --store).
  std::string url(const std::string& dbname) const;
  // Creates a fresh database and returns its name.
  Result<std::string> create_database(const std::string& prefix = "t");
  // Runs SQL as the superuser in `dbname`.
  Status exec(const std::string& sql, const std::string& dbname = "postgres") const;

  // Stops the server at once (as a crash would: no checkpoint), and starts it again on the
  // same directory and socket. Connections made before are broken.
  Status stop();
  Status restart();

  const std::filesystem::path& directory() const { return dir_; }
  // The postmaster's process id (from its postmaster.pid), -1 when it is not running. Every
  // other process of the server (backends, WAL writer, checkpointer...) is its child.
  pid_t postmaster_pid() const;

  // One server for the whole test process, started on first use (and stopped at exit).
  static Result<PostgresServer*> shared();

 private:
  PostgresServer() = default;
  Status run_as_owner(const std::string& command) const;

  std::filesystem::path dir_;
  bool as_postgres_ = false;
  bool fsync_ = false;
  bool running_ = false;
  int databases_ = 0;
};

}  // namespace sotto::test
