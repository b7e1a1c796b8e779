// sotto-relay: parse the configuration, open the store, serve until SIGINT/SIGTERM, exit 0;
// SIGHUP reloads the TLS certificate and key. `sotto-relay backup DEST` and `sotto-relay
// restore SRC` copy a data dir out and make a new one from such a copy (Backup.h); `sotto-relay
// admin ...` is the operator's tool (Admin.h); --check-config validates and exits.
#include <google/protobuf/stubs/logging.h>
#include <sys/stat.h>

#include <chrono>
#include <csignal>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "Admin.h"
#include "Backup.h"
#include "Config.h"
#include "Bus.h"
#include "Listener.h"
#include "Log.h"
#include "Metrics.h"
#include "PostgresStore.h"
#include "Relay.h"
#include "Server.h"
#include "SqliteStore.h"
#include "StoreExecutor.h"
#include "sotto/keys/Signal.h"

namespace {

using namespace sotto;
using namespace sotto::relay;

int fail(const std::string& what, const Error& e) {
  log_error(what, {{"error", e.message}, {"code", std::string(error_code_name(e.code))}});
  return 1;
}

Result<SecureBytes> read_key_file(const std::filesystem::path& path) {
  std::ifstream in(path);
  if (!in) return make_error(ErrorCode::kNotFound, "cannot read --db-key-file " + path.string());
  std::string text;
  in >> text;
  Bytes key;
  bool ok = text.size() == 64 && from_hex(text, key);
  std::fill(text.begin(), text.end(), '\0');
  if (!ok)
    return make_error(ErrorCode::kInvalidArgument,
                      "--db-key-file must hold 64 hex digits (a 32-byte key), e.g. from "
                      "`openssl rand -hex 32`");
  SecureBytes out(key.data(), key.size());
  std::fill(key.begin(), key.end(), 0);
  return out;
}

// libprotobuf writes its own lines to stderr, e.g. one for every frame whose string field is
// not UTF-8: a client could put unstructured lines in the log at will. They become debug
// events (a refused frame is already counted and answered); a fatal one stays an error.
void protobuf_log(google::protobuf::LogLevel level, const char* file, int line,
                  const std::string& message) {
  std::initializer_list<LogField> fields = {
      {"message", message}, {"source", std::string(file ? file : "") + ":" + std::to_string(line)}};
  if (level == google::protobuf::LOGLEVEL_FATAL)
    log(LogLevel::kError, "protobuf", fields);
  else if (log_enabled(LogLevel::kDebug))
    log(LogLevel::kDebug, "protobuf", fields);
}

Result<SecureBytes> read_key(const Config& config) {
  if (config.db_key_file.empty()) return SecureBytes();
  return read_key_file(config.db_key_file);
}

int backup(const Config& config, const std::filesystem::path& dest) {
  auto key = read_key(config);
  if (!key.ok()) return fail("db_key_unusable", key.error());
  log_info("backup_started", {{"data_dir", config.data_dir.string()}, {"dest", dest.string()}});
  auto done = backup_data_dir(config.data_dir, *key, dest);
  if (!done.ok()) return fail("backup_failed", done.error());
  log_info("backup_done", {{"dest", dest.string()},
                           {"pages", done->pages},
                           {"attachments", done->attachments},
                           {"attachments_expired", done->attachments_gone},
                           {"encrypted", key->empty() ? "no" : "yes"}});
  return 0;
}

int restore(const Config& config, const std::filesystem::path& source, bool keep_prekeys) {
  auto key = read_key(config);
  if (!key.ok()) return fail("db_key_unusable", key.error());
  log_info("restore_started",
           {{"backup", source.string()}, {"data_dir", config.data_dir.string()}});
  auto done = restore_data_dir(source, *key, config.data_dir, keep_prekeys);
  if (!done.ok()) return fail("restore_failed", done.error());
  log_info("restore_done", {{"data_dir", config.data_dir.string()},
                            {"attachments", done->attachments},
                            {"one_time_prekeys_dropped", done->one_time_prekeys_dropped}});
  return 0;
}

// Opens the embedded store in --data-dir, or the cluster's PostgreSQL store (--store): 0, or
// the exit status after logging why not.
int open_store(const Config& config, std::unique_ptr<Store>& store) {
  if (config.store.empty()) {
    SqliteStore::Options store_options;
    store_options.sync_full = config.db_sync_full;
    {
      auto key = read_key(config);
      if (!key.ok()) return fail("db_key_unusable", key.error());
      store_options.key = std::move(*key);
    }
    auto sqlite = SqliteStore::open(config.data_dir / "relay.db", store_options);
    if (!sqlite.ok()) return fail("store_open_failed", sqlite.error());
    auto settings = (*sqlite)->settings();
    if (!settings.ok()) return fail("store_open_failed", settings.error());
    log_info("store_opened", {{"cipher_version", (*sqlite)->cipher_version()},
                              {"encrypted", store_options.key.empty() ? "no" : "yes"},
                              {"journal_mode", settings->journal_mode},
                              {"synchronous", settings->synchronous == 2 ? "full" : "normal"}});
    store_options.key.wipe();
    store = std::move(*sqlite);
  } else {
    auto pg = PostgresStore::open({config.store, config.db_sync_full});
    if (!pg.ok()) return fail("store_open_failed", pg.error());
    log_info("store_opened",
             {{"backend", "postgresql"}, {"server_version", (*pg)->server_version()}});
    store = std::move(*pg);
  }
  return 0;
}

uint64_t now_ms() {
  return static_cast<uint64_t>(std::chrono::duration_cast<std::chrono::milliseconds>(
                                   std::chrono::system_clock::now().time_since_epoch())
                                   .count());
}

// sotto-relay admin: on an existing store only (a mistyped --data-dir must not make a new,
// empty one), with only warnings and errors logged so that its output reads as a table.
int admin(const Config& config, const std::vector<std::string>& args) {
  if (args.empty() || args[0] == "help") {
    std::fputs(kAdminUsage, stdout);
    return 0;
  }
  if (config.store.empty() && !std::filesystem::exists(config.data_dir / "relay.db")) {
    std::fprintf(stderr,
                 "sotto-relay admin: %s has no relay database (relay.db); give the --data-dir "
                 "(or --config) the relay runs with\n",
                 config.data_dir.c_str());
    return 1;
  }
  if (config.log_level == "info") set_log_level(LogLevel::kWarn);
  std::unique_ptr<Store> store;
  if (int failed = open_store(config, store)) return failed;
  std::ostringstream out, err;
  int status = run_admin(*store, args, now_ms(), out, err);
  std::fputs(out.str().c_str(), stdout);
  std::fputs(err.str().c_str(), stderr);
  return status;
}

// --check-config: what parse_command_line() checked, and the files the options name.
int check_config(const Config& config) {
  std::vector<std::string> problems;
  auto readable = [&](const std::filesystem::path& p, const char* option) {
    if (p.empty()) return;
    std::ifstream in(p);
    if (!in) problems.push_back(std::string(option) + " " + p.string() + ": cannot be read");
  };
  readable(config.tls_cert, "--tls-cert");
  readable(config.tls_key, "--tls-key");
  if (!config.db_key_file.empty()) {
    auto key = read_key(config);
    if (!key.ok()) problems.push_back(key.error().message);
  }
  std::error_code ec;
  if (!std::filesystem::is_directory(config.data_dir, ec) && !config.init)
    problems.push_back("--data-dir " + config.data_dir.string() +
                       ": not a directory (--init makes a new, empty one)");
  if (!problems.empty()) {
    for (const auto& p : problems) std::fprintf(stderr, "sotto-relay: %s\n", p.c_str());
    return 2;
  }
  std::printf(
      "the configuration is valid: listen %s:%u, %s, data dir %s, registration %s, %s\n",
      config.listen_host.c_str(), config.listen_port,
      config.store.empty() ? "embedded store" : "PostgreSQL store (cluster mode)",
      config.data_dir.c_str(), config.registration_open ? "open" : "by invite",
      config.tls_cert.empty() ? "no TLS (behind a TLS proxy)" : "TLS");
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  auto parsed = parse_command_line(argc, argv);
  if (!parsed.ok()) {
    std::fprintf(stderr, "sotto-relay: %s\n", parsed.error().message.c_str());
    return 2;
  }
  if (parsed->exit_now) {
    std::fputs(parsed->output.c_str(), stdout);
    return 0;
  }
  const Config config = std::move(parsed->config);
  LogLevel level;
  if (!parse_log_level(config.log_level, level)) {
    std::fprintf(stderr, "sotto-relay: --log-level is debug, info, warn or error\n");
    return 2;
  }
  set_log_level(level);
  if (parsed->command == ParsedCommandLine::Command::kBackup)
    return backup(config, parsed->command_path);
  if (parsed->command == ParsedCommandLine::Command::kRestore)
    return restore(config, parsed->command_path, parsed->keep_one_time_prekeys);
  if (parsed->check_config) return check_config(config);
  if (parsed->command == ParsedCommandLine::Command::kAdmin)
    return admin(config, parsed->admin_args);
  google::protobuf::SetLogHandler(&protobuf_log);
  // SIGHUP reloads the TLS files once the server runs (Server::run); until then, a reload
  // sent as soon as the port file appears must not end the process (SIGHUP's default).
  std::signal(SIGHUP, SIG_IGN);
  // A write to a peer that is gone (the bus's socket to a Redis that died) must be an error
  // for the writer, not the end of the process. Asio's own writes never raise it.
  std::signal(SIGPIPE, SIG_IGN);

  // The port first: a port in use or an address this machine lacks is reported before
  // anything is opened or created.
  auto listener = open_listener(config.listen_host, config.listen_port, config.reuse_port);
  if (!listener.ok()) return fail("listen_failed", listener.error());

  std::error_code ec;
  if (!std::filesystem::is_directory(config.data_dir, ec)) {
    if (std::filesystem::exists(config.data_dir, ec))
      return fail("data_dir_unusable",
                  make_error(ErrorCode::kInvalidArgument,
                             "--data-dir " + config.data_dir.string() + " is not a directory"));
    if (!config.init)
      return fail("data_dir_missing",
                  make_error(ErrorCode::kNotFound,
                             "--data-dir " + config.data_dir.string() +
                                 " does not exist: check the path (and the config file's "
                                 "data-dir line), or add --init to make a new relay there"));
    std::filesystem::create_directories(config.data_dir, ec);
    if (ec)
      return fail("data_dir_unusable",
                  make_error(ErrorCode::kStorageIo, "cannot create --data-dir " +
                                                        config.data_dir.string() + ": " +
                                                        ec.message()));
    log_info("data_dir_created", {{"data_dir", config.data_dir.string()}});
  }
  // Uploads in progress: a folder of this node's own in a cluster, whose nodes share the data
  // dir (Relay::upload_tmp_dir).
  const auto tmp_dir = config.node_id.empty()
                           ? config.data_dir / "attachments" / "tmp"
                           : config.data_dir / "attachments" / "tmp" / config.node_id;
  std::filesystem::create_directories(tmp_dir, ec);
  if (ec)
    return fail("data_dir_unusable",
                make_error(ErrorCode::kStorageIo, tmp_dir.string() + ": " + ec.message()));
  ::chmod(config.data_dir.c_str(), 0700);
  // Partial uploads from a previous run of this node are never completed: drop them.
  for (const auto& e : std::filesystem::directory_iterator(tmp_dir, ec))
    if (e.is_regular_file()) std::filesystem::remove(e.path(), ec);

  std::unique_ptr<Store> store;
  if (int failed = open_store(config, store)) return failed;

  auto ctx = keys::Context::create();
  if (!ctx.ok()) return fail("crypto_init_failed", ctx.error());

  std::unique_ptr<Bus> bus;
  if (!config.bus.empty()) {
    auto made = make_redis_bus(config.bus, config.node_id, config);
    if (!made.ok()) return fail("bus_unusable", made.error());
    bus = std::move(*made);
  }

  Metrics metrics;
  StoreExecutor executor(std::move(store), metrics, config.store_batch_max);
  {
    Relay relay(config, executor, metrics, *ctx);
    if (bus) {
      relay.set_bus(bus.get());
      bus->start(relay.bus_handlers());
      log_info("cluster_node", {{"node", config.node_id}, {"bus", config.bus}});
    }
    Server server(config, relay, metrics);
    if (auto s = server.start(*listener); !s.ok()) return fail("listen_failed", s.error());
    server.run();
    // The bus first: its handlers post to connections, which go with the server.
    if (bus) bus->stop();
    // Commit whatever is still queued before the io_context and its handlers go away.
    executor.stop();
  }
  log_info("exited");
  return 0;
}
