#include "SqliteStore.h"

#include <sqlcipher/sqlite3.h>

#include <algorithm>
#include <condition_variable>
#include <cstring>
#include <fstream>
#include <mutex>
#include <string>
#include <thread>
#include <utility>

#include "Log.h"
#include "sotto/ThreadName.h"

namespace sotto::relay {
namespace {

// 2: `sends` is unique on (message_id, sender, sender_device, batch), message id first.
// 3: `devices.queue_bytes`, the bytes of each device's queue (bounded by max-queue-bytes).
// 4: suspended accounts (`accounts.suspended_at`, `suspended_reason`), `invites` and
// `operator_actions`.
constexpr int kSchemaVersion = 4;
constexpr int64_t kActionRetentionMs = 7 * 86'400'000LL;

// rowid tables with UNIQUE keys: envelopes are often larger than a quarter page and would
// spill into overflow pages in a WITHOUT ROWID b-tree (see ARCHITECTURE.md, pitfalls).
constexpr const char* kSchema = R"sql(
CREATE TABLE IF NOT EXISTS meta(key TEXT PRIMARY KEY, value INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS accounts(
  id BLOB PRIMARY KEY, handle TEXT NOT NULL UNIQUE, identity_key BLOB NOT NULL,
  hidden INTEGER NOT NULL DEFAULT 0, last_seen_ms INTEGER NOT NULL DEFAULT 0,
  created_at_ms INTEGER NOT NULL, max_device_id INTEGER NOT NULL,
  suspended_at INTEGER NOT NULL DEFAULT 0, suspended_reason TEXT NOT NULL DEFAULT '');
CREATE INDEX IF NOT EXISTS accounts_suspended ON accounts(suspended_at) WHERE suspended_at > 0;
CREATE TABLE IF NOT EXISTS invites(
  token_hash BLOB PRIMARY KEY, uses_left INTEGER NOT NULL, expires_at INTEGER NOT NULL,
  created_at INTEGER NOT NULL, note TEXT NOT NULL DEFAULT '') WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS operator_actions(
  seq INTEGER PRIMARY KEY AUTOINCREMENT, account BLOB NOT NULL, kind INTEGER NOT NULL,
  at INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS devices(
  account BLOB NOT NULL, device INTEGER NOT NULL, registration_id INTEGER NOT NULL,
  auth_hash BLOB NOT NULL, encrypted_name BLOB NOT NULL, created_at_ms INTEGER NOT NULL,
  last_seen_ms INTEGER NOT NULL DEFAULT 0,
  spk_id INTEGER NOT NULL, spk_public BLOB NOT NULL, spk_signature BLOB NOT NULL,
  spk_timestamp_ms INTEGER NOT NULL,
  lr_public BLOB, push_url TEXT NOT NULL DEFAULT '',
  queue_len INTEGER NOT NULL DEFAULT 0, last_seq INTEGER NOT NULL DEFAULT 0,
  pool INTEGER NOT NULL DEFAULT 0, queue_bytes INTEGER NOT NULL DEFAULT 0,
  PRIMARY KEY(account, device));
CREATE TABLE IF NOT EXISTS prekeys(
  account BLOB NOT NULL, device INTEGER NOT NULL, id INTEGER NOT NULL, public_key BLOB NOT NULL,
  PRIMARY KEY(account, device, id)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS blobs(id INTEGER PRIMARY KEY, ciphertext BLOB NOT NULL,
  refs INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS queue(
  account BLOB NOT NULL, device INTEGER NOT NULL, seq INTEGER NOT NULL, type INTEGER NOT NULL,
  sender BLOB NOT NULL, sender_device INTEGER NOT NULL, message_id BLOB NOT NULL,
  ts INTEGER NOT NULL, expires_at INTEGER NOT NULL, urgent INTEGER NOT NULL,
  header BLOB, ciphertext BLOB, blob_id INTEGER,
  UNIQUE(account, device, seq));
CREATE TABLE IF NOT EXISTS sends(
  sender BLOB NOT NULL, sender_device INTEGER NOT NULL, message_id BLOB NOT NULL,
  batch INTEGER NOT NULL, ts INTEGER NOT NULL, expires_at INTEGER NOT NULL,
  UNIQUE(message_id, sender, sender_device, batch));
CREATE TABLE IF NOT EXISTS nonces(nonce BLOB PRIMARY KEY, expires_at INTEGER NOT NULL)
  WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS attachments(
  id TEXT PRIMARY KEY, account BLOB NOT NULL, device INTEGER NOT NULL, size INTEGER NOT NULL,
  upload_expires_at INTEGER NOT NULL, uploaded_at INTEGER NOT NULL DEFAULT 0,
  expires_at INTEGER NOT NULL DEFAULT 0);
)sql";

// Schema 1 keyed `sends` by sender first. Message ids begin with their time (protocol.md
// section 2), so keyed by message id every commit appends to the last pages of the index;
// keyed by sender, each commit wrote one page per sending device (8.6 KiB per envelope at
// half of relay_bench's load, 2.1 KiB after). Rowids are kept: expiry walks them in order.
constexpr const char* kMigrateSendsToV2 = R"sql(
CREATE TABLE sends_v2(
  sender BLOB NOT NULL, sender_device INTEGER NOT NULL, message_id BLOB NOT NULL,
  batch INTEGER NOT NULL, ts INTEGER NOT NULL, expires_at INTEGER NOT NULL,
  UNIQUE(message_id, sender, sender_device, batch));
INSERT INTO sends_v2(rowid, sender, sender_device, message_id, batch, ts, expires_at)
  SELECT rowid, sender, sender_device, message_id, batch, ts, expires_at FROM sends
  ORDER BY rowid;
DROP TABLE sends;
ALTER TABLE sends_v2 RENAME TO sends;
)sql";

// The bytes one queued copy holds: its ciphertext (its own, or the shared one of a send_multi,
// counted for every copy that refers to it) and its header.
// Schema 4: the columns of a suspension (the index and `invites` come with kSchema). The index
// needs its column: it is made again after them.
constexpr const char* kAddSuspension = R"sql(
ALTER TABLE accounts ADD COLUMN suspended_at INTEGER NOT NULL DEFAULT 0;
ALTER TABLE accounts ADD COLUMN suspended_reason TEXT NOT NULL DEFAULT '';
CREATE INDEX IF NOT EXISTS accounts_suspended ON accounts(suspended_at) WHERE suspended_at > 0;
)sql";

constexpr const char* kAddQueueBytes =
    "ALTER TABLE devices ADD COLUMN queue_bytes INTEGER NOT NULL DEFAULT 0";
constexpr const char* kMigrateQueueBytesToV3 = R"sql(
UPDATE devices SET queue_bytes = (
  SELECT coalesce(sum(coalesce(length(q.ciphertext), length(b.ciphertext), 0) +
                      coalesce(length(q.header), 0)), 0)
  FROM queue q LEFT JOIN blobs b ON b.id = q.blob_id
  WHERE q.account = devices.account AND q.device = devices.device);
)sql";

std::string cache_key(ByteView account) { return std::string(as_chars(account)); }
std::string cache_key(ByteView account, uint32_t device) {
  std::string k(as_chars(account));
  k.append(reinterpret_cast<const char*>(&device), sizeof device);
  return k;
}
// The inverse of cache_key(account, device).
std::pair<ByteView, uint32_t> split_key(const std::string& key) {
  uint32_t device = 0;
  std::memcpy(&device, key.data() + key.size() - sizeof device, sizeof device);
  return {as_bytes(std::string_view(key).substr(0, key.size() - sizeof device)), device};
}
constexpr size_t kMaxCached = 200'000;

std::string key_literal(const SecureBytes& key) {
  static constexpr char kHex[] = "0123456789abcdef";
  std::string out = "x'";
  for (size_t i = 0; i < key.size(); ++i) {
    out += kHex[key.data()[i] >> 4];
    out += kHex[key.data()[i] & 0xf];
  }
  out += '\'';
  return out;
}

// Keys a connection just opened, when there is a key: SQLCipher's raw-key form, 4 KiB pages.
int key_connection(sqlite3* db, const SecureBytes& key) {
  if (key.empty()) return SQLITE_OK;
  std::string literal = key_literal(key);
  int rc = sqlite3_key(db, literal.data(), static_cast<int>(literal.size()));
  for (auto& ch : literal) ch = 0;  // the hex form of the key is as secret as the key
  if (rc != SQLITE_OK) return rc;
  return sqlite3_exec(db, "PRAGMA cipher_page_size = 4096", nullptr, nullptr, nullptr);
}

// PRAGMA cipher_version: empty when the SQLite in the process is not SQLCipher.
std::string cipher_version_of(sqlite3* db) {
  sqlite3_stmt* q = nullptr;
  std::string version;
  if (sqlite3_prepare_v2(db, "PRAGMA cipher_version", -1, &q, nullptr) == SQLITE_OK &&
      sqlite3_step(q) == SQLITE_ROW && sqlite3_column_text(q, 0))
    version = reinterpret_cast<const char*>(sqlite3_column_text(q, 0));
  sqlite3_finalize(q);
  return version;
}

Error not_sqlcipher() {
  return make_error(ErrorCode::kEncryptionUnavailable,
                    "the SQLite library in this process is not SQLCipher; rebuild sotto-relay "
                    "linked against SQLCipher only (never libsqlite3)");
}

// Pages copied per backup step (4 MiB): each step takes a bounded time, and a step the source
// answers BUSY is retried alone.
constexpr int kBackupStepPages = 1024;

// A typed error for an SQLite result code on the database at `path`.
Error storage_error(sqlite3* db, int rc, const std::filesystem::path& path, std::string_view what) {
  std::string detail = db ? sqlite3_errmsg(db) : sqlite3_errstr(rc);
  std::string w = std::string(what) + " failed (" + path.string() + "): ";
  switch (rc & 0xff) {
    case SQLITE_NOTADB:
      return make_error(ErrorCode::kWrongKey,
                        w + "the key does not open this database; check --db-key-file");
    case SQLITE_CORRUPT:
      return make_error(ErrorCode::kStorageCorrupt, w + "the database is damaged: " + detail);
    case SQLITE_FULL:
      return make_error(ErrorCode::kStorageFull, w + "the disk is full");
    case SQLITE_BUSY:
    case SQLITE_LOCKED:
      return make_error(ErrorCode::kBusy, w + "the database is locked: " + detail);
    case SQLITE_IOERR:
    case SQLITE_CANTOPEN:
    case SQLITE_READONLY:
    case SQLITE_PERM:
      return make_error(ErrorCode::kStorageIo, w + detail);
    default:
      return make_error(ErrorCode::kInternal, w + detail);
  }
}

// SQLITE_NOTADB at the first read after keying: which of the two mistakes it is. A plain
// database begins with SQLite's header in clear; an encrypted one with random-looking bytes.
Error key_mismatch(const std::filesystem::path& path, bool key_given) {
  std::ifstream in(path, std::ios::binary);
  char head[16] = {};
  in.read(head, sizeof head);
  const bool plain = in.gcount() == sizeof head && std::memcmp(head, "SQLite format 3", 16) == 0;
  if (plain && key_given)
    return make_error(ErrorCode::kWrongKey,
                      path.string() + " is not encrypted, but --db-key-file gives a key: leave "
                                      "the key out to open it (docs/operating-the-relay.md, "
                                      "\"Encryption at rest\", says how to encrypt it)");
  if (!key_given)
    return make_error(ErrorCode::kWrongKey,
                      path.string() + " is encrypted (or not a relay database): give its key "
                                      "with --db-key-file");
  return make_error(ErrorCode::kWrongKey, "the key in --db-key-file does not open " +
                                              path.string() + ": check that it is this "
                                                              "database's key");
}

// A connection of its own, outside a store (backups, checks), closed with it.
class Connection {
 public:
  Connection() = default;
  ~Connection() { close(); }
  Connection(const Connection&) = delete;
  Connection& operator=(const Connection&) = delete;

  // Opens `path` (creating it when `create`), refuses a SQLite that is not SQLCipher, keys the
  // connection and reads once, so that a wrong key shows here.
  Status open(const std::filesystem::path& path, const SecureBytes& key, bool create) {
    path_ = path;
    int flags = SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX | (create ? SQLITE_OPEN_CREATE : 0);
    int rc = sqlite3_open_v2(path.c_str(), &db_, flags, nullptr);
    if (rc != SQLITE_OK) return error(rc, "opening the database");
    sqlite3_extended_result_codes(db_, 1);
    sqlite3_busy_timeout(db_, 10'000);
    if (cipher_version_of(db_).empty()) return not_sqlcipher();
    rc = key_connection(db_, key);
    if (rc != SQLITE_OK) return error(rc, "keying the database");
    rc = sqlite3_exec(db_, "SELECT count(*) FROM sqlite_master", nullptr, nullptr, nullptr);
    if ((rc & 0xff) == SQLITE_NOTADB) return key_mismatch(path, !key.empty());
    if (rc != SQLITE_OK) return error(rc, "opening the database");
    return {};
  }
  Status exec(const char* sql, std::string_view what) {
    int rc = sqlite3_exec(db_, sql, nullptr, nullptr, nullptr);
    if (rc != SQLITE_OK) return error(rc, what);
    return {};
  }
  Error error(int rc, std::string_view what) const { return storage_error(db_, rc, path_, what); }
  sqlite3* get() const { return db_; }
  void close() {
    if (db_) sqlite3_close_v2(db_);
    db_ = nullptr;
  }

 private:
  sqlite3* db_ = nullptr;
  std::filesystem::path path_;
};

}  // namespace

// A cached prepared statement, reset when it goes out of scope.
class SqliteStore::Stmt {
 public:
  Stmt(const SqliteStore* store, sqlite3_stmt* stmt) : store_(store), stmt_(stmt) {}
  Stmt(Stmt&& o) noexcept : store_(o.store_), stmt_(std::exchange(o.stmt_, nullptr)) {}
  Stmt(const Stmt&) = delete;
  Stmt& operator=(const Stmt&) = delete;
  Stmt& operator=(Stmt&&) = delete;
  ~Stmt() {
    if (stmt_) {
      sqlite3_reset(stmt_);
      sqlite3_clear_bindings(stmt_);
    }
  }
  Stmt& bind(int i, int64_t v) {
    sqlite3_bind_int64(stmt_, i, v);
    return *this;
  }
  Stmt& bind(int i, ByteView b) {
    static const uint8_t kEmpty = 0;  // a zero-length blob stays a blob, not NULL
    sqlite3_bind_blob(stmt_, i, b.empty() ? &kEmpty : b.data(), static_cast<int>(b.size()),
                      SQLITE_STATIC);
    return *this;
  }
  Stmt& bind_text(int i, std::string_view t) {
    sqlite3_bind_text(stmt_, i, t.data(), static_cast<int>(t.size()), SQLITE_STATIC);
    return *this;
  }
  Stmt& bind_null(int i) {
    sqlite3_bind_null(stmt_, i);
    return *this;
  }
  Result<bool> step() {
    int rc = sqlite3_step(stmt_);
    if (rc == SQLITE_ROW) return true;
    if (rc == SQLITE_DONE) return false;
    return store_->error(rc, "running a statement");
  }
  Status run() {
    auto r = step();
    if (!r.ok()) return std::move(r).error();
    return {};
  }
  int64_t i64(int c) const { return sqlite3_column_int64(stmt_, c); }
  ByteView blob(int c) const {
    const void* p = sqlite3_column_blob(stmt_, c);
    int n = sqlite3_column_bytes(stmt_, c);
    return p ? ByteView(static_cast<const uint8_t*>(p), static_cast<size_t>(n)) : ByteView();
  }
  Bytes bytes(int c) const {
    ByteView v = blob(c);
    return Bytes(v.begin(), v.end());
  }
  std::string text(int c) const {
    const unsigned char* p = sqlite3_column_text(stmt_, c);
    int n = sqlite3_column_bytes(stmt_, c);
    return p ? std::string(reinterpret_cast<const char*>(p), static_cast<size_t>(n))
             : std::string();
  }
  bool null(int c) const { return sqlite3_column_type(stmt_, c) == SQLITE_NULL; }
  sqlite3_stmt* get() const { return stmt_; }

 private:
  const SqliteStore* store_;
  sqlite3_stmt* stmt_;
};

#define STMT(var, sql)                                     \
  SOTTO_TRY_ASSIGN(sqlite3_stmt* var##_raw, prepare(sql)); \
  Stmt var(this, var##_raw)

Error SqliteStore::error(int rc, std::string_view what) const {
  return storage_error(db_, rc, path_, what);
}

// WAL checkpoints off the send path. SQLite's automatic checkpoint runs inside the commit that
// takes the WAL past 1,000 pages: it copies them into the database file and syncs both while
// every send queued behind that commit waits (tens of ms on a slow disk, the relay's p99). A
// second connection on its own thread does it instead, PASSIVE, which never blocks the writer,
// and less often (Options::checkpoint_pages), so a page rewritten by many commits is copied
// once. Under continuous writes a background checkpoint never catches up with the last frame,
// and only a checkpoint between two transactions lets the WAL start over from its beginning,
// so past Options::wal_limit_pages the writer checkpoints itself; by then the background has
// copied almost everything and little is left to do.
class SqliteStore::Checkpointer {
 public:
  static Result<std::unique_ptr<Checkpointer>> start(const std::filesystem::path& path,
                                                     const Options& options) {
    std::unique_ptr<Checkpointer> c(new Checkpointer());
    int rc = sqlite3_open_v2(path.c_str(), &c->db_, SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX,
                             nullptr);
    // No synchronous setting: a checkpoint syncs the WAL and the database file under FULL and
    // NORMAL alike, and this connection never commits.
    if (rc == SQLITE_OK) rc = sqlite3_busy_timeout(c->db_, 1000);
    if (rc == SQLITE_OK) rc = key_connection(c->db_, options.key);
    if (rc == SQLITE_OK)
      rc = sqlite3_exec(c->db_, "SELECT count(*) FROM sqlite_master", nullptr, nullptr, nullptr);
    if (rc != SQLITE_OK)
      return make_error(ErrorCode::kStorageIo,
                        std::string("opening the database for checkpoints: ") +
                            (c->db_ ? sqlite3_errmsg(c->db_) : sqlite3_errstr(rc)));
    c->thread_ = std::thread([raw = c.get()] {
      name_this_thread("sotto-checkpt");
      raw->run();
    });
    return c;
  }

  ~Checkpointer() {
    {
      std::lock_guard lock(mu_);
      stop_ = true;
    }
    cv_.notify_one();
    if (thread_.joinable()) thread_.join();
    if (db_) sqlite3_close_v2(db_);
  }

  // Held while a background checkpoint runs: SQLite lets one checkpoint run at a time and
  // answers a second PASSIVE one with BUSY at once, so the writer waits here instead.
  std::mutex& running() { return running_; }

  // From the writer's hook; never waits for a checkpoint.
  void want() {
    {
      std::lock_guard lock(mu_);
      if (wanted_) return;
      wanted_ = true;
    }
    cv_.notify_one();
  }

 private:
  Checkpointer() = default;

  void run() {
    std::unique_lock lock(mu_);
    for (;;) {
      cv_.wait(lock, [&] { return stop_ || wanted_; });
      if (stop_) return;
      wanted_ = false;
      lock.unlock();
      {
        std::lock_guard running(running_);
        int rc =
            sqlite3_wal_checkpoint_v2(db_, "main", SQLITE_CHECKPOINT_PASSIVE, nullptr, nullptr);
        if (rc != SQLITE_OK) log_warn("checkpoint_failed", {{"error", sqlite3_errstr(rc)}});
      }
      lock.lock();
    }
  }

  sqlite3* db_ = nullptr;
  std::thread thread_;
  std::mutex mu_;
  std::mutex running_;
  std::condition_variable cv_;
  bool wanted_ = false;
  bool stop_ = false;
};

Result<std::unique_ptr<SqliteStore>> SqliteStore::open(const std::filesystem::path& path,
                                                       const Options& options) {
  std::unique_ptr<SqliteStore> self(new SqliteStore());
  self->path_ = path;
  int rc =
      sqlite3_open_v2(path.c_str(), &self->db_,
                      SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX, nullptr);
  if (rc != SQLITE_OK) return self->error(rc, "opening the database");
  sqlite3_extended_result_codes(self->db_, 1);
  sqlite3_busy_timeout(self->db_, 10'000);

  // WARNING: a plain libsqlite3 ignores PRAGMA key and writes plaintext. Refuse to run unless
  // SQLCipher answers.
  self->cipher_version_ = cipher_version_of(self->db_);
  if (self->cipher_version_.empty()) return not_sqlcipher();
  if (!options.key.empty()) {
    if (options.key.size() != 32)
      return make_error(ErrorCode::kInvalidArgument, "the database key must be 32 bytes");
    rc = key_connection(self->db_, options.key);
    if (rc != SQLITE_OK) return self->error(rc, "keying the database");
  }
  // A wrong key shows only at the first read: probe before anything writes.
  rc = sqlite3_exec(self->db_, "SELECT count(*) FROM sqlite_master", nullptr, nullptr, nullptr);
  if ((rc & 0xff) == SQLITE_NOTADB) return key_mismatch(path, !options.key.empty());
  if (rc != SQLITE_OK) return self->error(rc, "opening the database");

  SOTTO_TRY(self->exec("PRAGMA journal_mode = WAL"));
  SOTTO_TRY(
      self->exec(options.sync_full ? "PRAGMA synchronous = FULL" : "PRAGMA synchronous = NORMAL"));
  SOTTO_TRY(self->exec("PRAGMA temp_store = MEMORY"));
  SOTTO_TRY(self->exec("PRAGMA cache_size = -32768"));  // 32 MiB
  SOTTO_TRY(self->exec("BEGIN IMMEDIATE"));
  Status s = self->exec(kSchema);
  int64_t version = kSchemaVersion;  // a new database is created at the current schema
  if (s.ok()) {
    SOTTO_TRY_ASSIGN(sqlite3_stmt * raw,
                     self->prepare("SELECT value FROM meta WHERE key = 'schema_version'"));
    Stmt q(self.get(), raw);
    SOTTO_TRY_ASSIGN(bool row, q.step());
    if (row) version = q.i64(0);
    if (version > kSchemaVersion) {
      self->rollback();
      return make_error(ErrorCode::kIncompatibleVersion,
                        "the database was written by a newer sotto-relay (schema " +
                            std::to_string(version) + ", this one knows up to " +
                            std::to_string(kSchemaVersion) +
                            "): run that release or a later one, or restore a backup taken "
                            "before the upgrade");
    }
  }
  if (s.ok() && version < 2) {
    log_info("store_migration", {{"from_schema", version}, {"to_schema", 2}, {"table", "sends"}});
    s = self->exec(kMigrateSendsToV2);
  }
  if (s.ok() && version < 3) {
    log_info("store_migration", {{"from_schema", version}, {"to_schema", 3}, {"table", "devices"}});
    SOTTO_TRY_ASSIGN(bool has_column,
                     self->table_has_column("PRAGMA table_info(devices)", "queue_bytes"));
    if (!has_column) s = self->exec(kAddQueueBytes);
    if (s.ok()) s = self->exec(kMigrateQueueBytesToV3);
  }
  if (s.ok() && version < 4) {
    log_info("store_migration", {{"from_schema", version}, {"to_schema", 4}, {"table", "accounts"}});
    SOTTO_TRY_ASSIGN(bool has_column,
                     self->table_has_column("PRAGMA table_info(accounts)", "suspended_at"));
    if (!has_column) s = self->exec(kAddSuspension);
  }
  if (s.ok()) {
    SOTTO_TRY_ASSIGN(sqlite3_stmt * raw, self->prepare("INSERT OR REPLACE INTO meta(key, value) "
                                                       "VALUES('schema_version', ?)"));
    Stmt q(self.get(), raw);
    s = q.bind(1, static_cast<int64_t>(kSchemaVersion)).run();
  }
  if (!s.ok()) {
    self->rollback();
    return std::move(s).error();
  }
  SOTTO_TRY(self->exec("COMMIT"));
  // Checkpoints from now on run on a connection of their own; the hook replaces SQLite's
  // automatic checkpoint on this one.
  SOTTO_TRY_ASSIGN(self->checkpointer_, Checkpointer::start(path, options));
  self->checkpoint_pages_ = static_cast<int>(std::max<uint32_t>(options.checkpoint_pages, 1));
  self->wal_limit_pages_ =
      static_cast<int>(std::max<uint32_t>(options.wal_limit_pages, options.checkpoint_pages + 1));
  sqlite3_wal_hook(self->db_, &SqliteStore::on_wal_commit, self.get());
  return self;
}

SqliteStore::SqliteStore() = default;

int SqliteStore::on_wal_commit(void* self, sqlite3* db, const char* schema, int pages) {
  auto* store = static_cast<SqliteStore*>(self);
  if (pages >= store->wal_limit_pages_) {
    std::unique_lock<std::mutex> running;
    if (store->checkpointer_) running = std::unique_lock(store->checkpointer_->running());
    int rc = sqlite3_wal_checkpoint_v2(db, schema, SQLITE_CHECKPOINT_PASSIVE, nullptr, nullptr);
    if (rc != SQLITE_OK && rc != SQLITE_BUSY)
      log_warn("checkpoint_failed", {{"error", sqlite3_errstr(rc)}});
  } else if (pages >= store->checkpoint_pages_ && store->checkpointer_) {
    store->checkpointer_->want();
  }
  return SQLITE_OK;
}

SqliteStore::~SqliteStore() {
  checkpointer_.reset();
  for (auto& [sql, stmt] : cache_) sqlite3_finalize(stmt);
  if (db_) sqlite3_close_v2(db_);
}

Result<bool> SqliteStore::table_has_column(const char* table_info, std::string_view column) {
  SOTTO_TRY_ASSIGN(sqlite3_stmt * raw, prepare(table_info));
  Stmt q(this, raw);
  for (;;) {
    SOTTO_TRY_ASSIGN(bool row, q.step());
    if (!row) return false;
    if (q.text(1) == column) return true;
  }
}

Result<SqliteStore::Settings> SqliteStore::settings() {
  Settings out;
  {
    STMT(q, "PRAGMA journal_mode");
    SOTTO_TRY_ASSIGN(bool row, q.step());
    if (row) out.journal_mode = q.text(0);
  }
  STMT(q, "PRAGMA synchronous");
  SOTTO_TRY_ASSIGN(bool row, q.step());
  if (row) out.synchronous = static_cast<int>(q.i64(0));
  return out;
}

Result<uint64_t> SqliteStore::drop_one_time_prekeys() {
  SOTTO_TRY(begin());
  uint64_t dropped = 0;
  Status s = [&]() -> Status {
    {
      STMT(q, "SELECT count(*) FROM prekeys");
      SOTTO_TRY_ASSIGN(bool row, q.step());
      if (row) dropped = static_cast<uint64_t>(q.i64(0));
    }
    {
      STMT(q, "DELETE FROM prekeys");
      SOTTO_TRY(q.run());
    }
    STMT(q, "UPDATE devices SET pool = 0");
    return q.run();
  }();
  if (!s.ok()) {
    rollback();
    return std::move(s).error();
  }
  SOTTO_TRY(commit());
  return dropped;
}

Result<SqliteStore::BackupResult> SqliteStore::backup(
    const std::filesystem::path& path, const SecureBytes& key, const std::filesystem::path& dest,
    const std::function<Result<bool>(const std::string&)>& copy_blob) {
  if (!key.empty() && key.size() != 32)
    return make_error(ErrorCode::kInvalidArgument, "the database key must be 32 bytes");
  std::error_code ec;
  if (!std::filesystem::exists(path, ec))
    return make_error(ErrorCode::kNotFound,
                      "no relay database at " + path.string() + "; check --data-dir");
  if (std::filesystem::exists(dest, ec))
    return make_error(ErrorCode::kAlreadyExists,
                      dest.string() + " already exists; a backup is written to a new file");

  Connection src;
  SOTTO_TRY(src.open(path, key, false));
  // The snapshot: one read transaction, held until the last page is copied. The relay's
  // commits meanwhile go to the WAL beyond it.
  SOTTO_TRY(src.exec("BEGIN", "starting the backup's snapshot"));
  std::vector<std::string> uploaded;
  {
    sqlite3_stmt* q = nullptr;
    int rc = sqlite3_prepare_v2(src.get(), "SELECT id FROM attachments WHERE uploaded_at > 0", -1,
                                &q, nullptr);
    if (rc == SQLITE_OK) {
      while ((rc = sqlite3_step(q)) == SQLITE_ROW)
        uploaded.emplace_back(reinterpret_cast<const char*>(sqlite3_column_text(q, 0)));
    }
    sqlite3_finalize(q);
    if (rc != SQLITE_DONE) return src.error(rc, "reading the snapshot's attachments");
  }

  Connection out;
  SOTTO_TRY(out.open(dest, key, true));
  SOTTO_TRY(out.exec("PRAGMA synchronous = FULL", "setting up the copy"));
  sqlite3_backup* b = sqlite3_backup_init(out.get(), "main", src.get(), "main");
  if (!b) return out.error(sqlite3_extended_errcode(out.get()), "starting the backup");
  int rc = SQLITE_OK;
  for (int busy = 0; rc != SQLITE_DONE;) {
    rc = sqlite3_backup_step(b, kBackupStepPages);
    if ((rc == SQLITE_BUSY || rc == SQLITE_LOCKED) && ++busy < 1000) {
      sqlite3_sleep(10);
      continue;
    }
    if (rc != SQLITE_OK && rc != SQLITE_DONE) break;
  }
  BackupResult result;
  result.pages = static_cast<uint64_t>(sqlite3_backup_pagecount(b));
  int finished = sqlite3_backup_finish(b);
  if (rc != SQLITE_DONE) return storage_error(nullptr, rc, dest, "copying the database");
  if (finished != SQLITE_OK) return out.error(finished, "finishing the copy");
  SOTTO_TRY(src.exec("COMMIT", "ending the backup's snapshot"));
  src.close();
  // The header copied from the relay's database says WAL; the copy is better as one file.
  SOTTO_TRY(out.exec("PRAGMA journal_mode = DELETE", "setting up the copy"));

  for (const auto& id : uploaded) {
    SOTTO_TRY_ASSIGN(bool copied, copy_blob(id));
    if (copied) {
      ++result.attachments;
      continue;
    }
    ++result.attachments_gone;
    sqlite3_stmt* q = nullptr;
    rc = sqlite3_prepare_v2(out.get(), "DELETE FROM attachments WHERE id = ?", -1, &q, nullptr);
    if (rc == SQLITE_OK) {
      sqlite3_bind_text(q, 1, id.data(), static_cast<int>(id.size()), SQLITE_STATIC);
      rc = sqlite3_step(q);
    }
    sqlite3_finalize(q);
    if (rc != SQLITE_DONE) return out.error(rc, "forgetting an expired attachment in the copy");
  }
  out.close();
  SOTTO_TRY(check(dest, key));
  return result;
}

Status SqliteStore::check(const std::filesystem::path& path, const SecureBytes& key) {
  Connection c;
  SOTTO_TRY(c.open(path, key, false));
  sqlite3_stmt* q = nullptr;
  int rc = sqlite3_prepare_v2(c.get(), "PRAGMA integrity_check", -1, &q, nullptr);
  std::string first;
  if (rc == SQLITE_OK && (rc = sqlite3_step(q)) == SQLITE_ROW && sqlite3_column_text(q, 0))
    first = reinterpret_cast<const char*>(sqlite3_column_text(q, 0));
  sqlite3_finalize(q);
  if (rc != SQLITE_ROW) return c.error(rc, "checking the database");
  if (first != "ok")
    return make_error(ErrorCode::kStorageCorrupt, "the database at " + path.string() +
                                                      " fails its integrity check (" + first +
                                                      "); use another copy");
  return {};
}

Status SqliteStore::exec(const char* sql) {
  int rc = sqlite3_exec(db_, sql, nullptr, nullptr, nullptr);
  if (rc != SQLITE_OK)
    return error(rc, std::string("running \"") + std::string(sql).substr(0, 40) + "\"");
  return {};
}

Result<sqlite3_stmt*> SqliteStore::prepare(const char* sql) {
  auto it = cache_.find(sql);
  if (it != cache_.end()) return it->second;
  sqlite3_stmt* stmt = nullptr;
  int rc = sqlite3_prepare_v2(db_, sql, -1, &stmt, nullptr);
  if (rc != SQLITE_OK) return error(rc, std::string("preparing \"") + sql + "\"");
  cache_.emplace(sql, stmt);
  return stmt;
}

Status SqliteStore::begin() { return exec("BEGIN IMMEDIATE"); }
Status SqliteStore::commit() {
  SOTTO_TRY(flush_counters());
  return exec("COMMIT");
}
void SqliteStore::rollback() {
  if (!sqlite3_get_autocommit(db_)) sqlite3_exec(db_, "ROLLBACK", nullptr, nullptr, nullptr);
  dirty_counters_.clear();  // undone with the rest of the transaction
  drop_caches();            // they may hold writes that were just undone
}

void SqliteStore::drop_caches() {
  account_cache_.clear();
  device_cache_.clear();
  counters_.clear();
}

Status SqliteStore::forget_account(ByteView account) {
  SOTTO_TRY(flush_counters());  // the counters forgotten below must reach the table first
  std::string k = cache_key(account);
  account_cache_.erase(k);
  auto it = device_cache_.find(k);
  if (it != device_cache_.end()) {
    for (const auto& d : it->second) counters_.erase(cache_key(account, d.device_id));
    device_cache_.erase(it);
  }
  return {};
}

Result<SqliteStore::Counters*> SqliteStore::counters(const std::string& key) {
  auto it = counters_.find(key);
  if (it != counters_.end()) return &it->second;
  STMT(q,
       "SELECT last_seq, queue_len, queue_bytes FROM devices WHERE account = ? AND device = ?");
  auto [account, device] = split_key(key);
  q.bind(1, account).bind(2, device);
  SOTTO_TRY_ASSIGN(bool row, q.step());
  if (!row) return make_error(ErrorCode::kNotFound, "a recipient device does not exist");
  Counters fresh{q.i64(0), q.i64(1), q.i64(2)};
  if (counters_.size() > kMaxCached) {
    SOTTO_TRY(flush_counters());
    counters_.clear();
  }
  return &counters_.emplace(key, fresh).first->second;
}

void SqliteStore::mark_dirty(const std::string& key, Counters& c) {
  if (c.dirty) return;
  c.dirty = true;
  dirty_counters_.push_back(key);
}

Status SqliteStore::flush_counters() {
  for (const std::string& key : dirty_counters_) {
    auto it = counters_.find(key);
    if (it == counters_.end() || !it->second.dirty) continue;
    auto [account, device] = split_key(key);
    STMT(q,
         "UPDATE devices SET last_seq = ?, queue_len = ?, queue_bytes = ? "
         "WHERE account = ? AND device = ?");
    SOTTO_TRY(q.bind(1, it->second.last_seq)
                  .bind(2, it->second.queue_len)
                  .bind(3, it->second.queue_bytes)
                  .bind(4, account)
                  .bind(5, device)
                  .run());
    it->second.dirty = false;
  }
  dirty_counters_.clear();
  return {};
}

Status SqliteStore::flush_if_autocommit() {
  return sqlite3_get_autocommit(db_) ? flush_counters() : Status{};
}

Status SqliteStore::ping() {
  STMT(q, "SELECT count(*) FROM meta");
  return q.run();
}

// ---- accounts ----

Result<bool> SqliteStore::create_account(const AccountRecord& a, const NewDevice& device) {
  {
    STMT(q, "SELECT 1 FROM accounts WHERE handle = ? OR id = ?");
    q.bind_text(1, a.handle).bind(2, a.id);
    SOTTO_TRY_ASSIGN(bool taken, q.step());
    if (taken) return false;
  }
  {
    STMT(q,
         "INSERT INTO accounts(id, handle, identity_key, hidden, last_seen_ms, created_at_ms, "
         "max_device_id) VALUES(?, ?, ?, 0, 0, ?, 1)");
    q.bind(1, a.id).bind_text(2, a.handle).bind(3, a.identity_key);
    q.bind(4, static_cast<int64_t>(a.created_at_ms));
    SOTTO_TRY(q.run());
  }
  SOTTO_TRY(insert_device(a.id, 1, device));
  return true;
}

static AccountRecord read_account(const SqliteStore::Stmt& q) {
  AccountRecord a;
  a.id = q.bytes(0);
  a.handle = q.text(1);
  a.identity_key = q.bytes(2);
  a.presence_hidden = q.i64(3) != 0;
  a.last_seen_ms = static_cast<uint64_t>(q.i64(4));
  a.created_at_ms = static_cast<uint64_t>(q.i64(5));
  a.suspended = q.i64(6) > 0;
  a.suspended_reason = q.text(7);
  return a;
}

Result<std::optional<AccountRecord>> SqliteStore::find_account(ByteView id) {
  if (auto it = account_cache_.find(cache_key(id)); it != account_cache_.end())
    return std::optional<AccountRecord>(it->second);
  STMT(q,
       "SELECT id, handle, identity_key, hidden, last_seen_ms, created_at_ms, suspended_at, "
       "suspended_reason FROM accounts "
       "WHERE id = ?");
  q.bind(1, id);
  SOTTO_TRY_ASSIGN(bool row, q.step());
  if (!row) return std::optional<AccountRecord>();
  AccountRecord a = read_account(q);
  if (account_cache_.size() > kMaxCached) account_cache_.clear();
  account_cache_.emplace(cache_key(id), a);
  return std::optional<AccountRecord>(std::move(a));
}

Result<std::optional<AccountRecord>> SqliteStore::find_account_by_handle(std::string_view h) {
  STMT(q,
       "SELECT id, handle, identity_key, hidden, last_seen_ms, created_at_ms, suspended_at, "
       "suspended_reason FROM accounts "
       "WHERE handle = ?");
  q.bind_text(1, h);
  SOTTO_TRY_ASSIGN(bool row, q.step());
  if (!row) return std::optional<AccountRecord>();
  return std::optional<AccountRecord>(read_account(q));
}

Status SqliteStore::drop_queue_rows(const char* where_sql, ByteView account, uint32_t device) {
  // Shared ciphertexts lose one reference per dropped copy; unreferenced ones go.
  std::string refs = std::string(
                         "UPDATE blobs SET refs = refs - (SELECT count(*) FROM queue WHERE "
                         "queue.blob_id = blobs.id AND ") +
                     where_sql +
                     ") WHERE id IN (SELECT blob_id FROM queue WHERE blob_id IS NOT NULL AND " +
                     where_sql + ")";
  std::string del = std::string("DELETE FROM queue WHERE ") + where_sql;
  // These statements are rare (device removal, account deletion): no need to cache them.
  for (const std::string* sql : {&refs, &del}) {
    sqlite3_stmt* st = nullptr;
    int rc = sqlite3_prepare_v2(db_, sql->c_str(), -1, &st, nullptr);
    if (rc != SQLITE_OK) return error(rc, "preparing a queue cleanup");
    int n = sqlite3_bind_parameter_count(st);
    for (int i = 1; i <= n; ++i) {
      // Parameters alternate account, device in the order they appear.
      if (i % 2 == 1)
        sqlite3_bind_blob(st, i, account.data(), static_cast<int>(account.size()), SQLITE_STATIC);
      else
        sqlite3_bind_int64(st, i, device);
    }
    rc = sqlite3_step(st);
    sqlite3_finalize(st);
    if (rc != SQLITE_DONE) return error(rc, "cleaning a queue");
  }
  return exec("DELETE FROM blobs WHERE refs <= 0");
}

Status SqliteStore::delete_account(ByteView id) {
  SOTTO_TRY(forget_account(id));
  SOTTO_TRY(drop_queue_rows("queue.account = ? AND queue.device >= ?", id, 0));
  {
    STMT(q, "DELETE FROM prekeys WHERE account = ?");
    SOTTO_TRY(q.bind(1, id).run());
  }
  {
    STMT(q, "DELETE FROM devices WHERE account = ?");
    SOTTO_TRY(q.bind(1, id).run());
  }
  {
    STMT(q, "DELETE FROM attachments WHERE account = ? AND uploaded_at = 0");
    SOTTO_TRY(q.bind(1, id).run());
  }
  STMT(q, "DELETE FROM accounts WHERE id = ?");
  return q.bind(1, id).run();
}

Status SqliteStore::set_presence_hidden(ByteView id, bool hidden) {
  account_cache_.erase(cache_key(id));
  STMT(q, "UPDATE accounts SET hidden = ? WHERE id = ?");
  return q.bind(1, hidden ? 1 : 0).bind(2, id).run();
}

Status SqliteStore::set_last_seen(ByteView id, uint64_t account_last_seen_ms, uint32_t device_id,
                                  uint64_t device_last_seen_ms) {
  account_cache_.erase(cache_key(id));
  device_cache_.erase(cache_key(id));
  if (account_last_seen_ms) {
    STMT(q, "UPDATE accounts SET last_seen_ms = ? WHERE id = ?");
    SOTTO_TRY(q.bind(1, static_cast<int64_t>(account_last_seen_ms)).bind(2, id).run());
  }
  if (device_id) {
    STMT(q, "UPDATE devices SET last_seen_ms = ? WHERE account = ? AND device = ?");
    SOTTO_TRY(
        q.bind(1, static_cast<int64_t>(device_last_seen_ms)).bind(2, id).bind(3, device_id).run());
  }
  return {};
}

Result<bool> SqliteStore::use_nonce(ByteView nonce, uint64_t now_ms, uint64_t keep_until_ms) {
  {
    STMT(q, "SELECT expires_at FROM nonces WHERE nonce = ?");
    q.bind(1, nonce);
    SOTTO_TRY_ASSIGN(bool row, q.step());
    if (row && static_cast<uint64_t>(q.i64(0)) >= now_ms) return false;
  }
  STMT(q, "INSERT OR REPLACE INTO nonces(nonce, expires_at) VALUES(?, ?)");
  SOTTO_TRY(q.bind(1, nonce).bind(2, static_cast<int64_t>(keep_until_ms)).run());
  return true;
}

// ---- devices ----

Status SqliteStore::insert_device(ByteView account, uint32_t device_id, const NewDevice& d) {
  device_cache_.erase(cache_key(account));
  {
    STMT(q,
         "INSERT INTO devices(account, device, registration_id, auth_hash, encrypted_name, "
         "created_at_ms, spk_id, spk_public, spk_signature, spk_timestamp_ms, lr_public) "
         "VALUES(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)");
    q.bind(1, account).bind(2, device_id).bind(3, d.registration_id).bind(4, d.auth_hash);
    q.bind(5, d.encrypted_name).bind(6, static_cast<int64_t>(d.created_at_ms));
    q.bind(7, d.signed_prekey.id()).bind(8, as_bytes(d.signed_prekey.public_key()));
    q.bind(9, as_bytes(d.signed_prekey.signature()));
    q.bind(10, static_cast<int64_t>(d.signed_prekey.timestamp_ms()));
    q.bind(11, as_bytes(d.last_resort.public_key()));
    SOTTO_TRY(q.run());
  }
  if (!d.one_time_prekeys.empty()) {
    SOTTO_TRY_ASSIGN(auto pool, upload_prekeys(account, device_id, nullptr, d.one_time_prekeys,
                                               nullptr, 0xFFFFFFFF));
    (void)pool;
  }
  return {};
}

Result<DeviceRecord> SqliteStore::read_device(sqlite3_stmt* raw) {
  DeviceRecord d;
  auto blob = [&](int c) {
    const void* p = sqlite3_column_blob(raw, c);
    int n = sqlite3_column_bytes(raw, c);
    return p ? Bytes(static_cast<const uint8_t*>(p), static_cast<const uint8_t*>(p) + n) : Bytes();
  };
  auto i64 = [&](int c) { return sqlite3_column_int64(raw, c); };
  d.account_id = blob(0);
  d.device_id = static_cast<uint32_t>(i64(1));
  d.registration_id = static_cast<uint32_t>(i64(2));
  d.auth_hash = blob(3);
  d.encrypted_name = blob(4);
  d.created_at_ms = static_cast<uint64_t>(i64(5));
  d.last_seen_ms = static_cast<uint64_t>(i64(6));
  d.signed_prekey.set_id(static_cast<uint32_t>(i64(7)));
  Bytes spk = blob(8), sig = blob(9);
  d.signed_prekey.set_public_key(spk.data(), spk.size());
  d.signed_prekey.set_signature(sig.data(), sig.size());
  d.signed_prekey.set_timestamp_ms(static_cast<uint64_t>(i64(10)));
  const unsigned char* url = sqlite3_column_text(raw, 11);
  if (url) d.push_url = reinterpret_cast<const char*>(url);
  d.queue_length = static_cast<uint64_t>(i64(12));
  d.last_sequence = static_cast<uint64_t>(i64(13));
  d.queue_bytes = static_cast<uint64_t>(i64(14));
  overlay_counters(d);  // the row's may be older than this transaction's
  return d;
}

void SqliteStore::overlay_counters(DeviceRecord& d) const {
  auto c = counters_.find(cache_key(d.account_id, d.device_id));
  if (c == counters_.end()) return;
  d.last_sequence = static_cast<uint64_t>(c->second.last_seq);
  d.queue_length = static_cast<uint64_t>(c->second.queue_len);
  d.queue_bytes = static_cast<uint64_t>(c->second.queue_bytes);
}

#define DEVICE_COLUMNS                                                                         \
  "account, device, registration_id, auth_hash, encrypted_name, created_at_ms, last_seen_ms, " \
  "spk_id, spk_public, spk_signature, spk_timestamp_ms, push_url, queue_len, last_seq, queue_bytes"

Result<std::vector<DeviceRecord>> SqliteStore::list_devices(ByteView account) {
  std::string k = cache_key(account);
  if (auto it = device_cache_.find(k); it != device_cache_.end()) {
    std::vector<DeviceRecord> out = it->second;
    for (auto& d : out) overlay_counters(d);
    return out;
  }
  SOTTO_TRY_ASSIGN(std::vector<DeviceRecord> out, list_devices_uncached(account));
  if (device_cache_.size() > kMaxCached) device_cache_.clear();
  for (const auto& d : out)
    counters_.try_emplace(
        cache_key(account, d.device_id),
        Counters{static_cast<int64_t>(d.last_sequence), static_cast<int64_t>(d.queue_length),
                 static_cast<int64_t>(d.queue_bytes)});
  device_cache_.emplace(k, out);
  return out;
}

Result<std::vector<DeviceRecord>> SqliteStore::list_devices_uncached(ByteView account) {
  STMT(q, "SELECT " DEVICE_COLUMNS " FROM devices WHERE account = ? ORDER BY device");
  q.bind(1, account);
  std::vector<DeviceRecord> out;
  for (;;) {
    SOTTO_TRY_ASSIGN(bool row, q.step());
    if (!row) break;
    SOTTO_TRY_ASSIGN(DeviceRecord d, read_device(q.get()));
    out.push_back(std::move(d));
  }
  return out;
}

Result<std::optional<DeviceRecord>> SqliteStore::find_device(ByteView account, uint32_t device) {
  STMT(q, "SELECT " DEVICE_COLUMNS " FROM devices WHERE account = ? AND device = ?");
  q.bind(1, account).bind(2, device);
  SOTTO_TRY_ASSIGN(bool row, q.step());
  if (!row) return std::optional<DeviceRecord>();
  SOTTO_TRY_ASSIGN(DeviceRecord d, read_device(q.get()));
  return std::optional<DeviceRecord>(std::move(d));
}

Result<uint32_t> SqliteStore::add_device(ByteView account, const NewDevice& device,
                                         uint32_t max_devices) {
  int64_t count = 0, max_id = 0;
  {
    STMT(q, "SELECT count(*) FROM devices WHERE account = ?");
    q.bind(1, account);
    SOTTO_TRY(q.run());
    count = q.i64(0);
  }
  {
    STMT(q, "SELECT max_device_id FROM accounts WHERE id = ?");
    q.bind(1, account);
    SOTTO_TRY_ASSIGN(bool row, q.step());
    if (!row) return make_error(ErrorCode::kNotFound, "no such account");
    max_id = q.i64(0);
  }
  if (count >= static_cast<int64_t>(max_devices)) return uint32_t{0};
  uint32_t id = static_cast<uint32_t>(max_id + 1);
  {
    STMT(q, "UPDATE accounts SET max_device_id = ? WHERE id = ?");
    SOTTO_TRY(q.bind(1, id).bind(2, account).run());
  }
  SOTTO_TRY(insert_device(account, id, device));
  return id;
}

Result<bool> SqliteStore::remove_device(ByteView account, uint32_t device) {
  SOTTO_TRY(forget_account(account));
  counters_.erase(cache_key(account, device));
  {
    STMT(q, "SELECT 1 FROM devices WHERE account = ? AND device = ?");
    q.bind(1, account).bind(2, device);
    SOTTO_TRY_ASSIGN(bool row, q.step());
    if (!row) return false;
  }
  SOTTO_TRY(drop_queue_rows("queue.account = ? AND queue.device = ?", account, device));
  {
    STMT(q, "DELETE FROM prekeys WHERE account = ? AND device = ?");
    SOTTO_TRY(q.bind(1, account).bind(2, device).run());
  }
  STMT(q, "DELETE FROM devices WHERE account = ? AND device = ?");
  SOTTO_TRY(q.bind(1, account).bind(2, device).run());
  return true;
}

Status SqliteStore::set_push_url(ByteView account, uint32_t device, std::string_view url) {
  device_cache_.erase(cache_key(account));
  STMT(q, "UPDATE devices SET push_url = ? WHERE account = ? AND device = ?");
  return q.bind_text(1, url).bind(2, account).bind(3, device).run();
}

// ---- prekeys ----

Result<std::optional<uint32_t>> SqliteStore::upload_prekeys(
    ByteView account, uint32_t device, const wire::SignedPreKey* spk,
    const std::vector<wire::OneTimePreKey>& one_time, const wire::OneTimePreKey* last_resort,
    uint32_t max_pool) {
  int64_t pool = 0;
  {
    STMT(q, "SELECT pool FROM devices WHERE account = ? AND device = ?");
    q.bind(1, account).bind(2, device);
    SOTTO_TRY_ASSIGN(bool row, q.step());
    if (!row) return make_error(ErrorCode::kNotFound, "no such device");
    pool = q.i64(0);
  }
  // Ids already in the pool are replaced, so they do not grow it.
  int64_t added = 0;
  for (const auto& k : one_time) {
    STMT(q, "SELECT 1 FROM prekeys WHERE account = ? AND device = ? AND id = ?");
    q.bind(1, account).bind(2, device).bind(3, k.id());
    SOTTO_TRY_ASSIGN(bool exists, q.step());
    if (!exists) ++added;
  }
  if (pool + added > static_cast<int64_t>(max_pool)) return std::optional<uint32_t>();
  for (const auto& k : one_time) {
    STMT(q, "INSERT OR REPLACE INTO prekeys(account, device, id, public_key) VALUES(?, ?, ?, ?)");
    q.bind(1, account).bind(2, device).bind(3, k.id()).bind(4, as_bytes(k.public_key()));
    SOTTO_TRY(q.run());
  }
  if (spk) {
    device_cache_.erase(cache_key(account));
    STMT(q,
         "UPDATE devices SET spk_id = ?, spk_public = ?, spk_signature = ?, spk_timestamp_ms = ? "
         "WHERE account = ? AND device = ?");
    q.bind(1, spk->id()).bind(2, as_bytes(spk->public_key())).bind(3, as_bytes(spk->signature()));
    q.bind(4, static_cast<int64_t>(spk->timestamp_ms())).bind(5, account).bind(6, device);
    SOTTO_TRY(q.run());
  }
  if (last_resort) {
    STMT(q, "UPDATE devices SET lr_public = ? WHERE account = ? AND device = ?");
    SOTTO_TRY(
        q.bind(1, as_bytes(last_resort->public_key())).bind(2, account).bind(3, device).run());
  }
  {
    STMT(q, "UPDATE devices SET pool = ? WHERE account = ? AND device = ?");
    SOTTO_TRY(q.bind(1, pool + added).bind(2, account).bind(3, device).run());
  }
  return std::optional<uint32_t>(static_cast<uint32_t>(pool + added));
}

Result<PreKeyCounts> SqliteStore::prekey_counts(ByteView account, uint32_t device) {
  STMT(q,
       "SELECT pool, lr_public IS NOT NULL AND length(lr_public) > 0, spk_id, spk_timestamp_ms "
       "FROM devices WHERE account = ? AND device = ?");
  q.bind(1, account).bind(2, device);
  SOTTO_TRY_ASSIGN(bool row, q.step());
  if (!row) return make_error(ErrorCode::kNotFound, "no such device");
  PreKeyCounts c;
  c.one_time = static_cast<uint32_t>(q.i64(0));
  c.has_last_resort = q.i64(1) != 0;
  c.signed_prekey_id = static_cast<uint32_t>(q.i64(2));
  c.signed_prekey_timestamp_ms = static_cast<uint64_t>(q.i64(3));
  return c;
}

Result<TakenPreKey> SqliteStore::take_prekey(ByteView account, uint32_t device) {
  TakenPreKey out;
  {
    STMT(q,
         "SELECT id, public_key FROM prekeys WHERE account = ? AND device = ? ORDER BY id "
         "LIMIT 1");
    q.bind(1, account).bind(2, device);
    SOTTO_TRY_ASSIGN(bool row, q.step());
    if (row) {
      wire::OneTimePreKey k;
      k.set_id(static_cast<uint32_t>(q.i64(0)));
      ByteView pk = q.blob(1);
      k.set_public_key(pk.data(), pk.size());
      out.key = std::move(k);
    }
  }
  if (out.key) {
    {
      STMT(q, "DELETE FROM prekeys WHERE account = ? AND device = ? AND id = ?");
      SOTTO_TRY(q.bind(1, account).bind(2, device).bind(3, out.key->id()).run());
    }
    STMT(q, "UPDATE devices SET pool = pool - 1 WHERE account = ? AND device = ?");
    SOTTO_TRY(q.bind(1, account).bind(2, device).run());
  }
  STMT(q, "SELECT pool, lr_public FROM devices WHERE account = ? AND device = ?");
  q.bind(1, account).bind(2, device);
  SOTTO_TRY_ASSIGN(bool row, q.step());
  if (!row) return make_error(ErrorCode::kNotFound, "no such device");
  out.remaining = static_cast<uint32_t>(q.i64(0));
  if (!out.key && !q.null(1) && !q.blob(1).empty()) {
    wire::OneTimePreKey k;
    k.set_id(0xFFFFFF);
    ByteView pk = q.blob(1);
    k.set_public_key(pk.data(), pk.size());
    out.key = std::move(k);
    out.last_resort = true;
  }
  return out;
}

// ---- queues ----

Result<std::optional<SendRecord>> SqliteStore::find_send(ByteView sender, uint32_t sender_device,
                                                         ByteView message_id, uint32_t batch) {
  STMT(q,
       "SELECT ts FROM sends WHERE sender = ? AND sender_device = ? AND message_id = ? AND "
       "batch = ?");
  q.bind(1, sender).bind(2, sender_device).bind(3, message_id).bind(4, batch);
  SOTTO_TRY_ASSIGN(bool row, q.step());
  if (!row) return std::optional<SendRecord>();
  return std::optional<SendRecord>(SendRecord{static_cast<uint64_t>(q.i64(0))});
}

Status SqliteStore::enqueue(const NewSend& s, std::vector<uint64_t>* sequences) {
  int64_t blob_id = 0;
  if (!s.shared_ciphertext.empty()) {
    STMT(q, "INSERT INTO blobs(ciphertext, refs) VALUES(?, ?)");
    SOTTO_TRY(q.bind(1, s.shared_ciphertext).bind(2, static_cast<int64_t>(s.copies.size())).run());
    blob_id = sqlite3_last_insert_rowid(db_);
  }
  std::vector<uint64_t> seqs;
  seqs.reserve(s.copies.size());
  for (size_t i = 0; i < s.copies.size(); ++i) {
    const QueuedCopy& c = s.copies[i];
    std::string key = cache_key(c.account_id, c.device_id);
    SOTTO_TRY_ASSIGN(Counters * counter, counters(key));
    int64_t seq = counter->last_seq + 1;
    // Written to the devices row by flush_counters(), once per commit.
    counter->last_seq = seq;
    counter->queue_len += 1;
    counter->queue_bytes += static_cast<int64_t>(
        (blob_id ? s.shared_ciphertext.size() : c.ciphertext.size()) + c.header.size());
    mark_dirty(key, *counter);
    STMT(q,
         "INSERT INTO queue(account, device, seq, type, sender, sender_device, message_id, ts, "
         "expires_at, urgent, header, ciphertext, blob_id) "
         "VALUES(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)");
    int type = s.copy_types.empty() ? s.type : s.copy_types[i];
    q.bind(1, c.account_id).bind(2, c.device_id).bind(3, seq).bind(4, type);
    q.bind(5, s.sender_account).bind(6, s.sender_device).bind(7, s.message_id);
    q.bind(8, static_cast<int64_t>(s.server_timestamp_ms));
    q.bind(9, static_cast<int64_t>(s.expires_at_ms)).bind(10, s.urgent ? 1 : 0);
    if (c.header.empty())
      q.bind_null(11);
    else
      q.bind(11, c.header);
    if (blob_id) {
      q.bind_null(12).bind(13, blob_id);
    } else {
      q.bind(12, c.ciphertext).bind_null(13);
    }
    SOTTO_TRY(q.run());
    seqs.push_back(static_cast<uint64_t>(seq));
  }
  STMT(q,
       "INSERT INTO sends(sender, sender_device, message_id, batch, ts, expires_at) "
       "VALUES(?, ?, ?, ?, ?, ?)");
  q.bind(1, s.sender_account).bind(2, s.sender_device).bind(3, s.message_id).bind(4, s.batch);
  q.bind(5, static_cast<int64_t>(s.server_timestamp_ms));
  q.bind(6, static_cast<int64_t>(s.expires_at_ms));
  SOTTO_TRY(q.run());
  SOTTO_TRY(flush_if_autocommit());
  *sequences = std::move(seqs);
  return {};
}

Result<std::vector<wire::Envelope>> SqliteStore::load_queue(ByteView account, uint32_t device,
                                                            uint64_t after, uint32_t limit) {
  STMT(q,
       "SELECT q.seq, q.type, q.sender, q.sender_device, q.message_id, q.ts, q.urgent, q.header, "
       "coalesce(q.ciphertext, b.ciphertext) FROM queue q LEFT JOIN blobs b ON b.id = q.blob_id "
       "WHERE q.account = ? AND q.device = ? AND q.seq > ? ORDER BY q.seq LIMIT ?");
  q.bind(1, account).bind(2, device).bind(3, static_cast<int64_t>(after)).bind(4, limit);
  std::vector<wire::Envelope> out;
  for (;;) {
    SOTTO_TRY_ASSIGN(bool row, q.step());
    if (!row) break;
    wire::Envelope e;
    e.set_sequence(static_cast<uint64_t>(q.i64(0)));
    e.set_type(static_cast<wire::Envelope::Type>(q.i64(1)));
    ByteView v = q.blob(2);
    e.set_sender_account_id(v.data(), v.size());
    e.set_sender_device_id(static_cast<uint32_t>(q.i64(3)));
    v = q.blob(4);
    e.set_message_id(v.data(), v.size());
    e.set_server_timestamp_ms(static_cast<uint64_t>(q.i64(5)));
    e.set_urgent(q.i64(6) != 0);
    v = q.blob(7);
    if (!v.empty()) e.set_header(v.data(), v.size());
    v = q.blob(8);
    e.set_ciphertext(v.data(), v.size());
    e.set_recipient_device_id(device);
    out.push_back(std::move(e));
  }
  return out;
}

Result<uint64_t> SqliteStore::ack(ByteView account, uint32_t device,
                                  const std::vector<uint64_t>& sequences) {
  uint64_t deleted = 0;
  int64_t bytes = 0;
  for (uint64_t seq : sequences) {
    int64_t blob_id = 0;
    {
      STMT(q,
           "SELECT coalesce(blob_id, 0), coalesce(length(ciphertext), 0) + "
           "coalesce(length(header), 0) FROM queue WHERE account = ? AND device = ? AND seq = ?");
      q.bind(1, account).bind(2, device).bind(3, static_cast<int64_t>(seq));
      SOTTO_TRY_ASSIGN(bool row, q.step());
      if (!row) continue;
      blob_id = q.i64(0);
      bytes += q.i64(1);
    }
    if (blob_id) {
      STMT(q, "SELECT length(ciphertext) FROM blobs WHERE id = ?");
      SOTTO_TRY_ASSIGN(bool row, q.bind(1, blob_id).step());
      if (row) bytes += q.i64(0);
    }
    {
      STMT(q, "DELETE FROM queue WHERE account = ? AND device = ? AND seq = ?");
      SOTTO_TRY(q.bind(1, account).bind(2, device).bind(3, static_cast<int64_t>(seq)).run());
    }
    if (blob_id) {
      {
        STMT(q, "UPDATE blobs SET refs = refs - 1 WHERE id = ?");
        SOTTO_TRY(q.bind(1, blob_id).run());
      }
      STMT(q, "DELETE FROM blobs WHERE id = ? AND refs <= 0");
      SOTTO_TRY(q.bind(1, blob_id).run());
    }
    ++deleted;
  }
  if (deleted) {
    std::string key = cache_key(account, device);
    SOTTO_TRY_ASSIGN(Counters * counter, counters(key));
    counter->queue_len -= static_cast<int64_t>(deleted);
    counter->queue_bytes -= bytes;
    mark_dirty(key, *counter);
    SOTTO_TRY(flush_if_autocommit());
  }
  return deleted;
}

Result<uint64_t> SqliteStore::total_queued() {
  SOTTO_TRY(flush_counters());  // summed from the table below
  STMT(q, "SELECT coalesce(sum(queue_len), 0) FROM devices");
  SOTTO_TRY(q.run());
  return static_cast<uint64_t>(q.i64(0));
}

// ---- attachments ----

Status SqliteStore::create_attachment(const AttachmentRecord& a) {
  STMT(q,
       "INSERT INTO attachments(id, account, device, size, upload_expires_at) "
       "VALUES(?, ?, ?, ?, ?)");
  q.bind_text(1, a.id).bind(2, a.account_id).bind(3, a.device_id);
  q.bind(4, static_cast<int64_t>(a.size_bytes))
      .bind(5, static_cast<int64_t>(a.upload_expires_at_ms));
  return q.run();
}

Result<std::optional<AttachmentRecord>> SqliteStore::find_attachment(std::string_view id) {
  STMT(q,
       "SELECT id, account, device, size, upload_expires_at, uploaded_at, expires_at "
       "FROM attachments WHERE id = ?");
  q.bind_text(1, id);
  SOTTO_TRY_ASSIGN(bool row, q.step());
  if (!row) return std::optional<AttachmentRecord>();
  AttachmentRecord a;
  a.id = q.text(0);
  a.account_id = q.bytes(1);
  a.device_id = static_cast<uint32_t>(q.i64(2));
  a.size_bytes = static_cast<uint64_t>(q.i64(3));
  a.upload_expires_at_ms = static_cast<uint64_t>(q.i64(4));
  a.uploaded_at_ms = static_cast<uint64_t>(q.i64(5));
  a.expires_at_ms = static_cast<uint64_t>(q.i64(6));
  return std::optional<AttachmentRecord>(std::move(a));
}

Status SqliteStore::mark_attachment_uploaded(std::string_view id, uint64_t uploaded_at_ms,
                                             uint64_t expires_at_ms) {
  STMT(q, "UPDATE attachments SET uploaded_at = ?, expires_at = ? WHERE id = ?");
  return q.bind(1, static_cast<int64_t>(uploaded_at_ms))
      .bind(2, static_cast<int64_t>(expires_at_ms))
      .bind_text(3, id)
      .run();
}

// ---- expiry ----

Result<ExpiryResult> SqliteStore::expire(uint64_t now_ms) {
  SOTTO_TRY(flush_counters());  // queue counters change below, in the table
  drop_caches();
  ExpiryResult out;
  auto now = static_cast<int64_t>(now_ms);
  // Rows are appended in commit order and every row gets the same TTL, so the oldest rowids
  // expire first: walk from the front and stop at the first live row instead of indexing
  // expires_at (one index less on the hot insert path).
  for (;;) {
    struct Doomed {
      int64_t rowid;
      Bytes account;
      int64_t device, blob_id, bytes;
    };
    std::vector<Doomed> doomed;
    {
      STMT(q,
           "SELECT q.rowid, q.account, q.device, coalesce(q.blob_id, 0), q.expires_at, "
           "coalesce(length(q.ciphertext), length(b.ciphertext), 0) + "
           "coalesce(length(q.header), 0) "
           "FROM queue q LEFT JOIN blobs b ON b.id = q.blob_id ORDER BY q.rowid LIMIT 1000");
      for (;;) {
        SOTTO_TRY_ASSIGN(bool row, q.step());
        if (!row || q.i64(4) > now) break;
        doomed.push_back({q.i64(0), q.bytes(1), q.i64(2), q.i64(3), q.i64(5)});
      }
    }
    if (doomed.empty()) break;
    for (auto& [rowid, account, device, blob_id, bytes] : doomed) {
      {
        STMT(q, "DELETE FROM queue WHERE rowid = ?");
        SOTTO_TRY(q.bind(1, rowid).run());
      }
      {
        STMT(q,
             "UPDATE devices SET queue_len = queue_len - 1, queue_bytes = queue_bytes - ? "
             "WHERE account = ? AND device = ?");
        SOTTO_TRY(q.bind(1, bytes).bind(2, account).bind(3, device).run());
      }
      if (blob_id) {
        STMT(q, "UPDATE blobs SET refs = refs - 1 WHERE id = ?");
        SOTTO_TRY(q.bind(1, blob_id).run());
      }
    }
    out.envelopes += doomed.size();
    if (doomed.size() < 1000) break;
  }
  if (out.envelopes) SOTTO_TRY(exec("DELETE FROM blobs WHERE refs <= 0"));
  for (;;) {
    std::vector<int64_t> doomed;
    {
      STMT(q, "SELECT rowid, expires_at FROM sends ORDER BY rowid LIMIT 1000");
      for (;;) {
        SOTTO_TRY_ASSIGN(bool row, q.step());
        if (!row || q.i64(1) > now) break;
        doomed.push_back(q.i64(0));
      }
    }
    for (int64_t rowid : doomed) {
      STMT(q, "DELETE FROM sends WHERE rowid = ?");
      SOTTO_TRY(q.bind(1, rowid).run());
    }
    if (doomed.size() < 1000) break;
  }
  {
    STMT(q, "DELETE FROM nonces WHERE expires_at < ?");
    SOTTO_TRY(q.bind(1, now).run());
  }
  {
    STMT(q, "DELETE FROM operator_actions WHERE at < ?");
    SOTTO_TRY(q.bind(1, now - kActionRetentionMs).run());
  }
  {
    STMT(q,
         "SELECT id FROM attachments WHERE (uploaded_at = 0 AND upload_expires_at < ?) OR "
         "(uploaded_at > 0 AND expires_at < ?)");
    q.bind(1, now).bind(2, now);
    for (;;) {
      SOTTO_TRY_ASSIGN(bool row, q.step());
      if (!row) break;
      out.attachments.push_back(q.text(0));
    }
  }
  for (const auto& id : out.attachments) {
    STMT(q, "DELETE FROM attachments WHERE id = ?");
    SOTTO_TRY(q.bind_text(1, id).run());
  }
  return out;
}

// ---- operators ----

Result<std::vector<AccountSummary>> SqliteStore::list_accounts(std::string_view prefix,
                                                               uint32_t limit) {
  SOTTO_TRY(flush_counters());  // summed from the table below
  STMT(q,
       "SELECT a.id, a.handle, a.identity_key, a.hidden, a.last_seen_ms, a.created_at_ms, "
       "a.suspended_at, a.suspended_reason, count(d.device), coalesce(sum(d.queue_len), 0), "
       "coalesce(sum(d.queue_bytes), 0), coalesce(max(d.last_seen_ms), 0) "
       "FROM accounts a LEFT JOIN devices d ON d.account = a.id "
       "WHERE a.handle >= ? AND a.handle < ? GROUP BY a.id ORDER BY a.handle LIMIT ?");
  // Handles are [a-z0-9_.]: '~' sorts after every one of them.
  std::string end = std::string(prefix) + "~";
  q.bind_text(1, prefix).bind_text(2, end).bind(3, limit);
  std::vector<AccountSummary> out;
  for (;;) {
    SOTTO_TRY_ASSIGN(bool row, q.step());
    if (!row) break;
    AccountSummary a;
    a.account = read_account(q);
    a.devices = static_cast<uint32_t>(q.i64(8));
    a.queued_envelopes = static_cast<uint64_t>(q.i64(9));
    a.queued_bytes = static_cast<uint64_t>(q.i64(10));
    a.device_last_seen_ms = static_cast<uint64_t>(q.i64(11));
    out.push_back(std::move(a));
  }
  return out;
}

Result<StoreTotals> SqliteStore::totals(uint64_t now_ms) {
  SOTTO_TRY(flush_counters());
  StoreTotals t;
  {
    STMT(q, "SELECT count(*), coalesce(sum(suspended_at > 0), 0) FROM accounts");
    SOTTO_TRY(q.run());
    t.accounts = static_cast<uint64_t>(q.i64(0));
    t.suspended = static_cast<uint64_t>(q.i64(1));
  }
  {
    STMT(q, "SELECT count(*), coalesce(sum(queue_len), 0), coalesce(sum(queue_bytes), 0) "
            "FROM devices");
    SOTTO_TRY(q.run());
    t.devices = static_cast<uint64_t>(q.i64(0));
    t.queued_envelopes = static_cast<uint64_t>(q.i64(1));
    t.queued_bytes = static_cast<uint64_t>(q.i64(2));
  }
  {
    STMT(q, "SELECT count(*), coalesce(sum(size), 0) FROM attachments WHERE uploaded_at > 0");
    SOTTO_TRY(q.run());
    t.attachments = static_cast<uint64_t>(q.i64(0));
    t.attachment_bytes = static_cast<uint64_t>(q.i64(1));
  }
  STMT(q, "SELECT count(*) FROM invites WHERE uses_left > 0 AND expires_at > ?");
  SOTTO_TRY(q.bind(1, static_cast<int64_t>(now_ms)).run());
  t.invites = static_cast<uint64_t>(q.i64(0));
  return t;
}

Result<bool> SqliteStore::set_suspended(ByteView account, bool suspended, std::string_view reason,
                                        uint64_t now_ms) {
  account_cache_.erase(cache_key(account));
  {
    STMT(q, "UPDATE accounts SET suspended_at = ?, suspended_reason = ? WHERE id = ?");
    q.bind(1, suspended ? static_cast<int64_t>(std::max<uint64_t>(now_ms, 1)) : 0);
    // An empty view with a null pointer would bind NULL: the column is NOT NULL.
    q.bind_text(2, suspended ? reason : std::string_view("")).bind(3, account);
    SOTTO_TRY(q.run());
  }
  if (sqlite3_changes(db_) == 0) return false;
  SOTTO_TRY(record_action(
      account, suspended ? OperatorAction::kSuspended : OperatorAction::kUnsuspended, now_ms));
  return true;
}

Status SqliteStore::record_action(ByteView account, OperatorAction::Kind kind, uint64_t now_ms) {
  STMT(q, "INSERT INTO operator_actions(account, kind, at) VALUES(?, ?, ?)");
  return q.bind(1, account).bind(2, static_cast<int64_t>(kind))
      .bind(3, static_cast<int64_t>(now_ms))
      .run();
}

Result<std::vector<OperatorAction>> SqliteStore::actions_since(uint64_t after_seq) {
  STMT(q, "SELECT seq, account, kind, at FROM operator_actions WHERE seq > ? ORDER BY seq");
  q.bind(1, static_cast<int64_t>(after_seq));
  std::vector<OperatorAction> out;
  for (;;) {
    SOTTO_TRY_ASSIGN(bool row, q.step());
    if (!row) break;
    OperatorAction a;
    a.seq = static_cast<uint64_t>(q.i64(0));
    a.account = q.bytes(1);
    a.kind = static_cast<OperatorAction::Kind>(q.i64(2));
    a.at_ms = static_cast<uint64_t>(q.i64(3));
    out.push_back(std::move(a));
  }
  // Another process changed these accounts: what this one cached of them is stale.
  for (const auto& a : out) SOTTO_TRY(forget_account(a.account));
  return out;
}

Status SqliteStore::add_invite(const Invite& i) {
  STMT(q,
       "INSERT INTO invites(token_hash, uses_left, expires_at, created_at, note) "
       "VALUES(?, ?, ?, ?, ?)");
  q.bind(1, i.token_hash).bind(2, i.uses_left).bind(3, static_cast<int64_t>(i.expires_at_ms));
  q.bind(4, static_cast<int64_t>(i.created_at_ms)).bind_text(5, i.note);
  return q.run();
}

Result<std::vector<Invite>> SqliteStore::list_invites() {
  STMT(q,
       "SELECT token_hash, uses_left, expires_at, created_at, note FROM invites "
       "ORDER BY created_at");
  std::vector<Invite> out;
  for (;;) {
    SOTTO_TRY_ASSIGN(bool row, q.step());
    if (!row) break;
    Invite i;
    i.token_hash = q.bytes(0);
    i.uses_left = static_cast<uint32_t>(q.i64(1));
    i.expires_at_ms = static_cast<uint64_t>(q.i64(2));
    i.created_at_ms = static_cast<uint64_t>(q.i64(3));
    i.note = q.text(4);
    out.push_back(std::move(i));
  }
  return out;
}

Result<bool> SqliteStore::revoke_invite(ByteView token_hash) {
  STMT(q, "DELETE FROM invites WHERE token_hash = ?");
  SOTTO_TRY(q.bind(1, token_hash).run());
  return sqlite3_changes(db_) > 0;
}

Result<bool> SqliteStore::use_invite(ByteView token_hash, uint64_t now_ms) {
  STMT(q,
       "UPDATE invites SET uses_left = uses_left - 1 "
       "WHERE token_hash = ? AND uses_left > 0 AND expires_at > ?");
  SOTTO_TRY(q.bind(1, token_hash).bind(2, static_cast<int64_t>(now_ms)).run());
  return sqlite3_changes(db_) > 0;
}

Status SqliteStore::return_invite(ByteView token_hash) {
  STMT(q, "UPDATE invites SET uses_left = uses_left + 1 WHERE token_hash = ?");
  return q.bind(1, token_hash).run();
}

}  // namespace sotto::relay
