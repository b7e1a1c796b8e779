#include "Database.h"

#include <sqlcipher/sqlite3.h>

#include <cerrno>
#include <cstring>
#include <string>

#include "SearchTokenizer.h"
#include "platform/Platform.h"

namespace sotto::db {
namespace {

constexpr std::string_view kHex = "0123456789abcdef";

}  // namespace

SecureBytes raw_key_literal(const SecureBytes& key) {
  SecureBytes out(key.size() * 2 + 3);
  uint8_t* p = out.data();
  *p++ = 'x';
  *p++ = '\'';
  for (size_t i = 0; i < key.size(); ++i) {
    *p++ = static_cast<uint8_t>(kHex[key.data()[i] >> 4]);
    *p++ = static_cast<uint8_t>(kHex[key.data()[i] & 0xf]);
  }
  *p = '\'';
  return out;
}

// ---- Query ----

Query::~Query() {
  if (stmt_) {
    sqlite3_reset(stmt_);
    sqlite3_clear_bindings(stmt_);
  }
}

Query& Query::bind(int index, int64_t value) {
  sqlite3_bind_int64(stmt_, index, value);
  return *this;
}

Query& Query::bind(int index, ByteView blob) {
  // A zero-length blob must stay a blob, not NULL: give SQLite a valid pointer.
  static const uint8_t kEmpty = 0;
  sqlite3_bind_blob(stmt_, index, blob.empty() ? &kEmpty : blob.data(),
                    static_cast<int>(blob.size()), SQLITE_STATIC);
  return *this;
}

Query& Query::bind_text(int index, std::string_view text) {
  sqlite3_bind_text(stmt_, index, text.data(), static_cast<int>(text.size()), SQLITE_STATIC);
  return *this;
}

Query& Query::bind_null(int index) {
  sqlite3_bind_null(stmt_, index);
  return *this;
}

Result<bool> Query::step() {
  int rc = sqlite3_step(stmt_);
  if (rc == SQLITE_ROW) return true;
  if (rc == SQLITE_DONE) return false;
  return db_->error(rc, "running a query");
}

Status Query::run() {
  SOTTO_TRY_ASSIGN(bool row, step());
  (void)row;
  return {};
}

int64_t Query::column_int(int index) const { return sqlite3_column_int64(stmt_, index); }

ByteView Query::column_blob(int index) const {
  const void* p = sqlite3_column_blob(stmt_, index);
  int n = sqlite3_column_bytes(stmt_, index);
  return p ? ByteView(static_cast<const uint8_t*>(p), static_cast<size_t>(n)) : ByteView();
}

std::string_view Query::column_text(int index) const {
  const unsigned char* p = sqlite3_column_text(stmt_, index);
  int n = sqlite3_column_bytes(stmt_, index);
  return p ? std::string_view(reinterpret_cast<const char*>(p), static_cast<size_t>(n))
           : std::string_view();
}

bool Query::column_is_null(int index) const {
  return sqlite3_column_type(stmt_, index) == SQLITE_NULL;
}

// ---- Database ----

Error Database::error(int rc, std::string_view what) const {
  std::string where = " (" + path_.string() + ")";
  std::string detail = db_ ? sqlite3_errmsg(db_) : sqlite3_errstr(rc);
  std::string w(what);
  switch (rc & 0xff) {
    case SQLITE_NOTADB:
      return make_error(ErrorCode::kWrongKey, w + " failed: the key does not open this database" +
                                                  where + "; check the passphrase or key");
    case SQLITE_CORRUPT:
      return make_error(ErrorCode::kStorageCorrupt,
                        w + " failed: the database is damaged" + where + ": " + detail);
    case SQLITE_FULL:
      return make_error(ErrorCode::kStorageFull,
                        w + " failed: the disk is full" + where +
                            "; free some space and retry, nothing already saved was lost");
    case SQLITE_IOERR:
    case SQLITE_CANTOPEN:
    case SQLITE_READONLY:
    case SQLITE_PERM:
    case SQLITE_AUTH:
      return make_error(ErrorCode::kStorageIo,
                        w + " failed: the system refused a read or write" + where + ": " + detail);
    case SQLITE_BUSY:
    case SQLITE_LOCKED:
      return make_error(ErrorCode::kBusy,
                        w + " failed: the database is locked by another connection" + where);
    default:
      return make_error(ErrorCode::kInternal, w + " failed" + where + ": " + detail);
  }
}

Result<std::unique_ptr<Database>> Database::open(const std::filesystem::path& path,
                                                 const SecureBytes& key, const Options& options) {
  if (key.size() != 32 && !options.unencrypted)
    return make_error(ErrorCode::kInvalidArgument,
                      "a database key is 32 bytes, got " + std::to_string(key.size()));
  std::error_code ec;
  bool exists = std::filesystem::exists(path, ec);
  if (!exists && !options.create)
    return make_error(ErrorCode::kNotFound, "no database at " + path.string());

  std::unique_ptr<Database> self(new Database());
  self->path_ = path;
  int flags = SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX | (exists ? 0 : SQLITE_OPEN_CREATE);
  // SQLite takes UTF-8 file names on every platform.
  int rc = sqlite3_open_v2(platform::to_utf8(path).c_str(), &self->db_, flags, nullptr);
  if (rc != SQLITE_OK) return self->error(rc, "opening the database");
  sqlite3_extended_result_codes(self->db_, 1);

  // WARNING: a plain libsqlite3 ignores PRAGMA key and writes plaintext. Refuse to go on
  // unless SQLCipher answers.
  {
    SOTTO_TRY_ASSIGN(Query q, self->query("PRAGMA cipher_version"));
    SOTTO_TRY_ASSIGN(bool row, q.step());
    if (!row || q.column_text(0).empty())
      return make_error(ErrorCode::kEncryptionUnavailable,
                        "the SQLite library in this process is not SQLCipher, so the profile "
                        "would be written unencrypted; rebuild sotto linked against SQLCipher "
                        "only (never libsqlite3)");
  }
  if (!options.unencrypted) {
    SecureBytes literal = raw_key_literal(key);
    rc = sqlite3_key(self->db_, literal.data(), static_cast<int>(literal.size()));
    if (rc != SQLITE_OK) return self->error(rc, "keying the database");
    SOTTO_TRY(self->exec("PRAGMA cipher_page_size = 4096"));
  }

  // A wrong key is only noticed at the first read: probe now, before anything writes.
  rc = sqlite3_exec(self->db_, "SELECT count(*) FROM sqlite_master", nullptr, nullptr, nullptr);
  if (rc != SQLITE_OK) return self->error(rc, "opening the database");
  // The search index's tables name this tokenizer: every connection needs it before the first
  // statement that touches them (migrations included).
  SOTTO_TRY(search::register_tokenizer(self->db_));

  SOTTO_TRY(self->exec("PRAGMA journal_mode = WAL"));
  SOTTO_TRY(self->exec(options.durability == Durability::kFull ? "PRAGMA synchronous = FULL"
                                                               : "PRAGMA synchronous = NORMAL"));
  // Deleted key material and messages are overwritten, not left in free pages.
  SOTTO_TRY(self->exec("PRAGMA secure_delete = ON"));
  SOTTO_TRY(self->exec("PRAGMA foreign_keys = ON"));
  SOTTO_TRY(self->exec("PRAGMA temp_store = MEMORY"));
  // Decrypted pages kept in memory. SQLCipher decrypts and authenticates a page on every
  // cache miss (an unkeyed file gets the kernel's cache for free), so a small cache makes
  // searches over a long history pay the cipher again and again.
  SOTTO_TRY(self->exec("PRAGMA cache_size = -" + std::to_string(options.cache_kib)));
  sqlite3_busy_timeout(self->db_, 5000);
  return self;
}

Database::~Database() {
  for (auto& [sql, stmt] : cache_) sqlite3_finalize(stmt);
  if (db_) sqlite3_close_v2(db_);
}

Status Database::exec(std::string_view sql) {
  std::string s(sql);
  int rc = sqlite3_exec(db_, s.c_str(), nullptr, nullptr, nullptr);
  if (rc != SQLITE_OK) return error(rc, "running \"" + s.substr(0, 40) + "\"");
  return {};
}

Result<Query> Database::query(const char* sql) {
  auto it = cache_.find(sql);
  if (it == cache_.end()) {
    sqlite3_stmt* stmt = nullptr;
    int rc = sqlite3_prepare_v2(db_, sql, -1, &stmt, nullptr);
    if (rc != SQLITE_OK) return error(rc, std::string("preparing \"") + sql + "\"");
    it = cache_.emplace(sql, stmt).first;
  }
  return Query(this, it->second);
}

// Only the outermost level is an SQL transaction. Nested levels are counted, not savepoints:
// a savepoint makes SQLite copy every page it touches into a sub-journal, and SQLCipher
// encrypts each copy, which costs more than the ratchet step itself. A failed nested level
// instead dooms the whole transaction (see rollback()).
Status Database::begin() {
  if (depth_ == 0) {
    SOTTO_TRY(exec("BEGIN IMMEDIATE"));
    doomed_ = false;
  }
  ++depth_;
  return {};
}

Status Database::commit() {
  if (depth_ == 0) return make_error(ErrorCode::kInternal, "commit without a transaction");
  if (depth_ > 1) {
    --depth_;
    return {};
  }
  if (doomed_) {
    rollback();
    return make_error(ErrorCode::kInvalidState,
                      "the transaction was rolled back because an operation inside it failed; "
                      "nothing in it was saved");
  }
  if (before_commit_) {
    Status hook = before_commit_();
    if (!hook.ok()) {
      rollback();
      return hook;
    }
  }
  Status s = exec("COMMIT");
  if (!s.ok()) {
    rollback();
    return s;
  }
  depth_ = 0;
  return {};
}

void Database::rollback() noexcept {
  if (depth_ == 0) return;
  if (--depth_ > 0) {
    doomed_ = true;  // the outermost commit will roll everything back
    return;
  }
  if (!sqlite3_get_autocommit(db_)) sqlite3_exec(db_, "ROLLBACK", nullptr, nullptr, nullptr);
  doomed_ = false;
}

Status Database::rekey(const SecureBytes& key) {
  if (key.size() != 32)
    return make_error(ErrorCode::kInvalidArgument,
                      "a database key is 32 bytes, got " + std::to_string(key.size()));
  if (depth_ != 0) return make_error(ErrorCode::kInvalidState, "rekey inside a transaction");
  // SQLCipher 3.4 rewrites every page on rekey, and does not do that through a WAL: leave WAL
  // for the rewrite and come back after.
  SOTTO_TRY(exec("PRAGMA wal_checkpoint(TRUNCATE)"));
  SOTTO_TRY(exec("PRAGMA journal_mode = DELETE"));
  SecureBytes literal = raw_key_literal(key);
  int rc = sqlite3_rekey(db_, literal.data(), static_cast<int>(literal.size()));
  Status back = exec("PRAGMA journal_mode = WAL");
  if (rc != SQLITE_OK) return error(rc, "re-encrypting the database");
  return back;
}

int64_t Database::user_version() {
  auto q = query("PRAGMA user_version");
  if (!q.ok()) return -1;
  auto row = q->step();
  return row.ok() && *row ? q->column_int(0) : -1;
}

Status Database::set_user_version(int64_t v) {
  return exec("PRAGMA user_version = " + std::to_string(v));
}

}  // namespace sotto::db
