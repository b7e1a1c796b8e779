// A SQLCipher connection: opened with a raw 32-byte key, verified before use, WAL,
// prepared statements cached, nested transactions (all or nothing).
//
// Thread rule: a Database is not thread-safe; its owner serialises every call.
#pragma once

#include <cstdint>
#include <filesystem>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>

#include "sotto/Bytes.h"
#include "sotto/Result.h"
#include "sotto/SecureBytes.h"

struct sqlite3;
struct sqlite3_stmt;

namespace sotto::db {

enum class Durability {
  kFull,    // fsync the WAL on every commit: a commit survives power loss
  kNormal,  // fsync at checkpoints: a commit survives a process crash, maybe not power loss
};

class Database;

// A prepared statement in use. Binds are 1-based. Resets itself when it goes out of scope so
// read locks are never held by an idle cached statement.
class Query {
 public:
  Query(Database* db, sqlite3_stmt* stmt) : db_(db), stmt_(stmt) {}
  Query(Query&& o) noexcept : db_(o.db_), stmt_(std::exchange(o.stmt_, nullptr)) {}
  Query(const Query&) = delete;
  Query& operator=(const Query&) = delete;
  Query& operator=(Query&&) = delete;
  ~Query();

  Query& bind(int index, int64_t value);
  Query& bind(int index, ByteView blob);
  Query& bind_text(int index, std::string_view text);
  Query& bind_null(int index);

  // true: a row is ready; false: done.
  Result<bool> step();
  // Runs a statement that returns no rows.
  Status run();

  int64_t column_int(int index) const;
  ByteView column_blob(int index) const;
  std::string_view column_text(int index) const;
  bool column_is_null(int index) const;

 private:
  Database* db_;
  sqlite3_stmt* stmt_;
};

class Database {
 public:
  struct Options {
    bool create = true;  // create the file when missing; otherwise kNotFound
    Durability durability = Durability::kFull;
    // WARNING: no encryption, the key is ignored. Only for benchmarks that measure what
    // SQLCipher costs; never for a profile.
    bool unencrypted = false;
    // Page cache limit (SQLite allocates pages as they are used, up to this).
    uint32_t cache_kib = 64 * 1024;
  };

  // NB: key is exactly 32 bytes. kWrongKey when the key does not open an existing file; the
  // file is not written in that case.
  static Result<std::unique_ptr<Database>> open(const std::filesystem::path& path,
                                                const SecureBytes& key, const Options& options);
  ~Database();
  Database(const Database&) = delete;
  Database& operator=(const Database&) = delete;

  Status exec(std::string_view sql);
  // A cached prepared statement.
  Result<Query> query(const char* sql);

  // Transactions nest: the outermost is BEGIN IMMEDIATE ... COMMIT; inner levels are counted.
  // Rolling back an inner level dooms the whole transaction: its outermost commit rolls back
  // and fails. All or nothing, never a partial commit.
  Status begin();
  Status commit();
  void rollback() noexcept;
  int depth() const noexcept { return depth_; }
  // Runs inside every outermost transaction just before COMMIT; an error rolls it back. The
  // search index uses it to index the messages the transaction wrote, once per transaction.
  void set_before_commit(std::function<Status()> hook) { before_commit_ = std::move(hook); }

  // Re-encrypts the whole file with a new 32-byte key.
  Status rekey(const SecureBytes& key);

  int64_t user_version();
  Status set_user_version(int64_t v);

  // A typed error for an SQLite result code; `what` names the operation.
  Error error(int rc, std::string_view what) const;
  const std::filesystem::path& path() const { return path_; }
  sqlite3* handle() const { return db_; }

 private:
  Database() = default;

  sqlite3* db_ = nullptr;
  std::filesystem::path path_;
  int depth_ = 0;
  bool doomed_ = false;
  std::function<Status()> before_commit_;
  std::unordered_map<const char*, sqlite3_stmt*> cache_;
};

// The raw-key literal SQLCipher expects: x'<64 hex digits>'.
SecureBytes raw_key_literal(const SecureBytes& key);

}  // namespace sotto::db
