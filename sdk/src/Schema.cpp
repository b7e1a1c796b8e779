#include "Schema.h"

#include <string>

#include "ScopedTransaction.h"

namespace sotto::db {
namespace {

// Each entry takes the schema from version i to i+1. Append only; never edit a shipped step.
constexpr const char* kMigrations[] = {
    // 0 -> 1: libsignal's five stores and the local identity.
    R"sql(
CREATE TABLE local_identity (
  id              INTEGER PRIMARY KEY CHECK (id = 1),
  account         TEXT    NOT NULL,
  device_id       INTEGER NOT NULL,
  registration_id INTEGER NOT NULL,
  public_key      BLOB    NOT NULL,
  key_pair        BLOB    NOT NULL
);
CREATE TABLE identities (
  name TEXT PRIMARY KEY,
  key  BLOB NOT NULL
) WITHOUT ROWID;
-- A rowid table, not WITHOUT ROWID: a session record is 1-3 KiB, above what an index b-tree
-- keeps on the leaf page, so it would spill to overflow pages rewritten on every message.
CREATE TABLE sessions (
  id     INTEGER PRIMARY KEY,
  name   TEXT    NOT NULL,
  device INTEGER NOT NULL,
  record BLOB    NOT NULL,
  UNIQUE (name, device)
);
CREATE TABLE prekeys (
  id     INTEGER PRIMARY KEY,
  record BLOB NOT NULL
);
CREATE TABLE signed_prekeys (
  id     INTEGER PRIMARY KEY,
  record BLOB NOT NULL
);
CREATE TABLE sender_keys (
  id       INTEGER PRIMARY KEY,
  group_id BLOB    NOT NULL,
  name     TEXT    NOT NULL,
  device   INTEGER NOT NULL,
  record   BLOB    NOT NULL,
  UNIQUE (group_id, name, device)
);
CREATE TABLE counters (
  name  TEXT PRIMARY KEY,
  value INTEGER NOT NULL
) WITHOUT ROWID;
)sql",
};
static_assert(std::size(kMigrations) == kSchemaVersion);

}  // namespace

Status migrate(Database& db) {
  int64_t version = db.user_version();
  if (version < 0)
    return make_error(ErrorCode::kStorageCorrupt,
                      "cannot read the schema version of " + db.path().string());
  if (version > kSchemaVersion)
    return make_error(ErrorCode::kIncompatibleVersion,
                      "the profile was written by a newer sotto (schema " +
                          std::to_string(version) + ", this build knows " +
                          std::to_string(kSchemaVersion) + "); upgrade the app");
  if (version == kSchemaVersion) return {};
  ScopedTransaction txn(db);
  SOTTO_TRY(txn.begin());
  for (int64_t v = version; v < kSchemaVersion; ++v) SOTTO_TRY(db.exec(kMigrations[v]));
  SOTTO_TRY(db.set_user_version(kSchemaVersion));
  return txn.commit();
}

}  // namespace sotto::db
