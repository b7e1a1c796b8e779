#include "PostgresServer.h"

#include <libpq-fe.h>
#include <pwd.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>
#include <fstream>
#include <sstream>

namespace sotto::test {
namespace {

const std::filesystem::path kBin = "/usr/lib/postgresql/15/bin";

std::string tail_of(const std::filesystem::path& log) {
  std::ifstream in(log);
  std::stringstream ss;
  ss << in.rdbuf();
  std::string text = ss.str();
  return text.size() > 1500 ? text.substr(text.size() - 1500) : text;
}

}  // namespace

Result<std::unique_ptr<PostgresServer>> PostgresServer::start(bool fsync) {
  if (!std::filesystem::exists(kBin / "initdb"))
    return make_error(ErrorCode::kNotFound,
                      "PostgreSQL 15 is not installed (" + (kBin / "initdb").string() +
                          " is missing): run ./run deps");
  std::unique_ptr<PostgresServer> self(new PostgresServer());
  // Short: the server's Unix socket path (this directory + "/.s.PGSQL.5432") must fit 107 bytes.
  char tmpl[] = "/tmp/sotto-pg-XXXXXX";
  if (!::mkdtemp(tmpl)) return make_error(ErrorCode::kStorageIo, "cannot make a temp directory");
  self->dir_ = tmpl;
  self->fsync_ = fsync;
  if (::geteuid() == 0) {
    passwd* pw = ::getpwnam("postgres");
    if (!pw)
      return make_error(ErrorCode::kNotFound,
                        "PostgreSQL refuses to run as root and there is no 'postgres' user; "
                        "install the postgresql package (./run deps) or run as another user");
    if (::chown(self->dir_.c_str(), pw->pw_uid, pw->pw_gid) != 0)
      return make_error(ErrorCode::kStorageIo, "cannot hand " + self->dir_.string() +
                                                   " to the postgres user");
    self->as_postgres_ = true;
  }
  std::string d = self->dir_.string();
  SOTTO_TRY(self->run_as_owner((kBin / "initdb").string() + " -D " + d + "/data -U sotto -A trust" +
                               " --no-sync -E UTF8 --locale=C > " + d + "/initdb.log 2>&1"));
  SOTTO_TRY(self->restart());
  return self;
}

PostgresServer::~PostgresServer() {
  if (running_) (void)stop();
  std::error_code ec;
  if (!dir_.empty()) std::filesystem::remove_all(dir_, ec);
}

Status PostgresServer::run_as_owner(const std::string& command) const {
  std::string full = as_postgres_ ? "runuser -u postgres -- sh -c '" + command + "'" : command;
  int rc = std::system(full.c_str());
  if (rc != 0 || !WIFEXITED(rc) || WEXITSTATUS(rc) != 0)
    return make_error(ErrorCode::kStorageIo, "PostgreSQL command failed: " + command + "\n" +
                                                 tail_of(dir_ / "initdb.log") + "\n" +
                                                 tail_of(dir_ / "server.log"));
  return {};
}

Status PostgresServer::restart() {
  std::string d = dir_.string();
  SOTTO_TRY(run_as_owner((kBin / "pg_ctl").string() + " -D " + d + "/data -l " + d +
                         "/server.log -w -t 60 -o \"-k " + d + " -c listen_addresses= -p 5432" +
                         (fsync_ ? "" : " -c fsync=off -c full_page_writes=off") +
                         " -c max_connections=300\" start > /dev/null"));
  running_ = true;
  return {};
}

Status PostgresServer::stop() {
  std::string d = dir_.string();
  running_ = false;
  return run_as_owner((kBin / "pg_ctl").string() + " -D " + d +
                      "/data -m immediate -w stop > /dev/null 2>&1");
}

pid_t PostgresServer::postmaster_pid() const {
  if (!running_) return -1;
  std::ifstream in(dir_ / "data" / "postmaster.pid");  // its first line is the pid
  long pid = -1;
  return in >> pid && pid > 0 ? static_cast<pid_t>(pid) : -1;
}

std::string PostgresServer::conninfo(const std::string& dbname) const {
  return "host=" + dir_.string() + " port=5432 user=sotto dbname=" + dbname;
}

std::string PostgresServer::url(const std::string& dbname) const {
  return "postgresql:///" + dbname + "?host=" + dir_.string() + "&port=5432&user=sotto";
}

Status PostgresServer::exec(const std::string& sql, const std::string& dbname) const {
  PGconn* c = PQconnectdb(conninfo(dbname).c_str());
  if (PQstatus(c) != CONNECTION_OK) {
    std::string why = PQerrorMessage(c);
    PQfinish(c);
    return make_error(ErrorCode::kStorageIo, "cannot connect to the test PostgreSQL: " + why);
  }
  PGresult* r = PQexec(c, sql.c_str());
  auto st = PQresultStatus(r);
  std::string why = PQresultErrorMessage(r);
  PQclear(r);
  PQfinish(c);
  if (st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK)
    return make_error(ErrorCode::kStorageIo, "\"" + sql + "\" failed: " + why);
  return {};
}

Result<std::string> PostgresServer::create_database(const std::string& prefix) {
  std::string name = prefix + std::to_string(++databases_);
  SOTTO_TRY(exec("CREATE DATABASE " + name));
  return name;
}

Result<PostgresServer*> PostgresServer::shared() {
  static Result<std::unique_ptr<PostgresServer>> server = start();
  if (!server.ok()) return server.error();
  return server->get();
}

}  // namespace sotto::test
