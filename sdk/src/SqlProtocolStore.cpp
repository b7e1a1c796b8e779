#include "SqlProtocolStore.h"

#include <sqlcipher/sqlite3.h>

#include <algorithm>

namespace sotto {
namespace {

template <class T>
Result<std::optional<T>> one_blob(Result<db::Query> q) {
  if (!q.ok()) return std::move(q).error();
  SOTTO_TRY_ASSIGN(bool row, q->step());
  if (!row) return std::optional<T>();
  ByteView b = q->column_blob(0);
  return std::optional<T>(T(b.begin(), b.end()));
}

Result<std::optional<SecureBytes>> one_secret(Result<db::Query> q) {
  if (!q.ok()) return std::move(q).error();
  SOTTO_TRY_ASSIGN(bool row, q->step());
  if (!row) return std::optional<SecureBytes>();
  return std::optional<SecureBytes>(SecureBytes(q->column_blob(0)));
}

}  // namespace

Status SqlProtocolStore::commit() {
  Status s = db_.commit();
  if (!s.ok()) sessions_.clear();  // a failed commit rolled back
  return s;
}

void SqlProtocolStore::rollback() noexcept {
  db_.rollback();
  // Even an inner rollback dooms the transaction, so the cache may hold what will be undone.
  sessions_.clear();
}

Result<std::optional<LocalIdentityRecord>> SqlProtocolStore::local_identity() {
  SOTTO_TRY_ASSIGN(auto q, db_.query("SELECT account, device_id, registration_id, public_key, "
                                     "key_pair FROM local_identity WHERE id = 1"));
  SOTTO_TRY_ASSIGN(bool row, q.step());
  if (!row) return std::optional<LocalIdentityRecord>();
  LocalIdentityRecord r;
  r.account = std::string(q.column_text(0));
  r.device_id = static_cast<uint32_t>(q.column_int(1));
  r.registration_id = static_cast<uint32_t>(q.column_int(2));
  ByteView pub = q.column_blob(3);
  r.public_key.assign(pub.begin(), pub.end());
  r.key_pair = SecureBytes(q.column_blob(4));
  return std::optional<LocalIdentityRecord>(std::move(r));
}

Status SqlProtocolStore::set_local_identity(const LocalIdentityRecord& r) {
  SOTTO_TRY_ASSIGN(auto q, db_.query("INSERT OR REPLACE INTO local_identity (id, account, "
                                     "device_id, registration_id, public_key, key_pair) "
                                     "VALUES (1, ?, ?, ?, ?, ?)"));
  return q.bind_text(1, r.account)
      .bind(2, r.device_id)
      .bind(3, r.registration_id)
      .bind(4, r.public_key)
      .bind(5, r.key_pair.span())
      .run();
}

Result<std::optional<Bytes>> SqlProtocolStore::identity(const std::string& name) {
  auto q = db_.query("SELECT key FROM identities WHERE name = ?");
  if (q.ok()) q->bind_text(1, name);
  return one_blob<Bytes>(std::move(q));
}

Status SqlProtocolStore::save_identity(const std::string& name, ByteView key) {
  if (key.empty()) {
    SOTTO_TRY_ASSIGN(auto q, db_.query("DELETE FROM identities WHERE name = ?"));
    return q.bind_text(1, name).run();
  }
  {
    // libsignal saves the sender's identity with every message it decrypts: write only a
    // change (a REPLACE would also keep a statement journal, encrypted page by page).
    SOTTO_TRY_ASSIGN(auto q, db_.query("SELECT key FROM identities WHERE name = ?"));
    q.bind_text(1, name);
    SOTTO_TRY_ASSIGN(bool row, q.step());
    if (row) {
      ByteView stored = q.column_blob(0);
      if (std::equal(stored.begin(), stored.end(), key.begin(), key.end())) return {};
    }
  }
  SOTTO_TRY_ASSIGN(auto q,
                   db_.query("INSERT OR REPLACE INTO identities (name, key) VALUES (?, ?)"));
  return q.bind_text(1, name).bind(2, key).run();
}

Result<std::optional<Bytes>> SqlProtocolStore::session(const std::string& name, int32_t device) {
  auto key = std::make_pair(name, device);
  if (auto it = sessions_.find(key); it != sessions_.end()) return std::optional<Bytes>(it->second);
  auto q = db_.query("SELECT record FROM sessions WHERE name = ? AND device = ?");
  if (q.ok()) q->bind_text(1, name).bind(2, device);
  SOTTO_TRY_ASSIGN(auto record, one_blob<Bytes>(std::move(q)));
  if (record) sessions_.emplace(std::move(key), *record);
  return record;
}

Result<std::vector<int32_t>> SqlProtocolStore::session_devices(const std::string& name) {
  SOTTO_TRY_ASSIGN(auto q, db_.query("SELECT device FROM sessions WHERE name = ? ORDER BY device"));
  q.bind_text(1, name);
  std::vector<int32_t> out;
  for (;;) {
    SOTTO_TRY_ASSIGN(bool row, q.step());
    if (!row) break;
    out.push_back(static_cast<int32_t>(q.column_int(0)));
  }
  return out;
}

Status SqlProtocolStore::store_session(const std::string& name, int32_t device, ByteView record) {
  // Update in place (the hot path: every message); insert only for a new session.
  {
    // OR FAIL: a one-row update needs no statement journal, which SQLCipher would fill with an
    // encrypted copy of the page on every message.
    SOTTO_TRY_ASSIGN(auto q, db_.query("UPDATE OR FAIL sessions SET record = ? WHERE name = ? "
                                       "AND device = ?"));
    SOTTO_TRY(q.bind(1, record).bind_text(2, name).bind(3, device).run());
  }
  if (sqlite3_changes(db_.handle()) == 0) {
    SOTTO_TRY_ASSIGN(auto q, db_.query("INSERT INTO sessions (name, device, record) "
                                       "VALUES (?, ?, ?)"));
    SOTTO_TRY(q.bind_text(1, name).bind(2, device).bind(3, record).run());
  }
  sessions_[{name, device}] = Bytes(record.begin(), record.end());
  return {};
}

Result<bool> SqlProtocolStore::delete_session(const std::string& name, int32_t device) {
  sessions_.erase({name, device});
  SOTTO_TRY_ASSIGN(auto q, db_.query("DELETE FROM sessions WHERE name = ? AND device = ?"));
  SOTTO_TRY(q.bind_text(1, name).bind(2, device).run());
  return sqlite3_changes(db_.handle()) > 0;
}

Result<int> SqlProtocolStore::delete_sessions(const std::string& name) {
  std::erase_if(sessions_, [&](const auto& entry) { return entry.first.first == name; });
  SOTTO_TRY_ASSIGN(auto q, db_.query("DELETE FROM sessions WHERE name = ?"));
  SOTTO_TRY(q.bind_text(1, name).run());
  return sqlite3_changes(db_.handle());
}

Result<std::optional<SecureBytes>> SqlProtocolStore::prekey(uint32_t id) {
  auto q = db_.query("SELECT record FROM prekeys WHERE id = ?");
  if (q.ok()) q->bind(1, id);
  return one_secret(std::move(q));
}

Status SqlProtocolStore::store_prekey(uint32_t id, ByteView record) {
  SOTTO_TRY_ASSIGN(auto q, db_.query("INSERT OR REPLACE INTO prekeys (id, record) VALUES (?, ?)"));
  return q.bind(1, id).bind(2, record).run();
}

Status SqlProtocolStore::remove_prekey(uint32_t id) {
  SOTTO_TRY_ASSIGN(auto q, db_.query("DELETE FROM prekeys WHERE id = ?"));
  return q.bind(1, id).run();
}

Result<uint32_t> SqlProtocolStore::prekey_count() {
  // The last-resort key (id 0xFFFFFF) is not part of the one-time pool.
  SOTTO_TRY_ASSIGN(auto q, db_.query("SELECT count(*) FROM prekeys WHERE id != 16777215"));
  SOTTO_TRY(q.step());
  return static_cast<uint32_t>(q.column_int(0));
}

Result<std::optional<SecureBytes>> SqlProtocolStore::signed_prekey(uint32_t id) {
  auto q = db_.query("SELECT record FROM signed_prekeys WHERE id = ?");
  if (q.ok()) q->bind(1, id);
  return one_secret(std::move(q));
}

Status SqlProtocolStore::store_signed_prekey(uint32_t id, ByteView record) {
  SOTTO_TRY_ASSIGN(auto q, db_.query("INSERT OR REPLACE INTO signed_prekeys (id, record) "
                                     "VALUES (?, ?)"));
  return q.bind(1, id).bind(2, record).run();
}

Status SqlProtocolStore::remove_signed_prekey(uint32_t id) {
  SOTTO_TRY_ASSIGN(auto q, db_.query("DELETE FROM signed_prekeys WHERE id = ?"));
  return q.bind(1, id).run();
}

Result<std::optional<Bytes>> SqlProtocolStore::sender_key(ByteView group, const std::string& name,
                                                          int32_t device) {
  auto q = db_.query(
      "SELECT record FROM sender_keys WHERE group_id = ? AND name = ? AND "
      "device = ?");
  if (q.ok()) q->bind(1, group).bind_text(2, name).bind(3, device);
  return one_blob<Bytes>(std::move(q));
}

Status SqlProtocolStore::store_sender_key(ByteView group, const std::string& name, int32_t device,
                                          ByteView record) {
  {
    SOTTO_TRY_ASSIGN(auto q, db_.query("UPDATE OR FAIL sender_keys SET record = ? WHERE "
                                       "group_id = ? AND name = ? AND device = ?"));
    SOTTO_TRY(q.bind(1, record).bind(2, group).bind_text(3, name).bind(4, device).run());
  }
  if (sqlite3_changes(db_.handle()) > 0) return {};
  SOTTO_TRY_ASSIGN(auto q, db_.query("INSERT INTO sender_keys (group_id, name, device, record) "
                                     "VALUES (?, ?, ?, ?)"));
  return q.bind(1, group).bind_text(2, name).bind(3, device).bind(4, record).run();
}

Status SqlProtocolStore::delete_sender_key(ByteView group, const std::string& name,
                                           int32_t device) {
  SOTTO_TRY_ASSIGN(auto q, db_.query("DELETE FROM sender_keys WHERE group_id = ? AND name = ? "
                                     "AND device = ?"));
  return q.bind(1, group).bind_text(2, name).bind(3, device).run();
}

Result<std::optional<int64_t>> SqlProtocolStore::counter(const std::string& name) {
  SOTTO_TRY_ASSIGN(auto q, db_.query("SELECT value FROM counters WHERE name = ?"));
  q.bind_text(1, name);
  SOTTO_TRY_ASSIGN(bool row, q.step());
  if (!row) return std::optional<int64_t>();
  return std::optional<int64_t>(q.column_int(0));
}

Status SqlProtocolStore::set_counter(const std::string& name, int64_t value) {
  SOTTO_TRY_ASSIGN(auto q,
                   db_.query("INSERT OR REPLACE INTO counters (name, value) VALUES (?, ?)"));
  return q.bind_text(1, name).bind(2, value).run();
}

}  // namespace sotto
