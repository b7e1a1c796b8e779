#include "PostgresStore.h"

#include <endian.h>
#include <libpq-fe.h>

#include <algorithm>
#include <cstring>

#include "Log.h"

namespace sotto::relay {
namespace {

// 2: suspended accounts (accounts.suspended_at, suspended_reason), invites and
// operator_actions.
constexpr int kSchemaVersion = 2;
// pg_advisory_xact_lock key of schema changes: nodes that start together take turns.
constexpr const char* kSchemaLock = "SELECT pg_advisory_xact_lock(7318402221)";

// Row shapes follow the embedded store's (SqliteStore.cpp); what differs is said there.
// queue.size: the bytes of the copy (its ciphertext, or the shared one, and its header), so
// an ack knows what it frees without reading the blob. blobs has no reference count.
constexpr const char* kSchema = R"sql(
CREATE TABLE IF NOT EXISTS meta(key TEXT PRIMARY KEY, value BIGINT NOT NULL);
CREATE TABLE IF NOT EXISTS accounts(
  id BYTEA PRIMARY KEY, handle TEXT NOT NULL UNIQUE, identity_key BYTEA NOT NULL,
  hidden BOOLEAN NOT NULL DEFAULT false, last_seen_ms BIGINT NOT NULL DEFAULT 0,
  created_at_ms BIGINT NOT NULL, max_device_id INTEGER NOT NULL);
ALTER TABLE accounts ADD COLUMN IF NOT EXISTS suspended_at BIGINT NOT NULL DEFAULT 0;
ALTER TABLE accounts ADD COLUMN IF NOT EXISTS suspended_reason TEXT NOT NULL DEFAULT '';
CREATE INDEX IF NOT EXISTS accounts_suspended ON accounts(suspended_at) WHERE suspended_at > 0;
CREATE TABLE IF NOT EXISTS invites(
  token_hash BYTEA PRIMARY KEY, uses_left INTEGER NOT NULL, expires_at BIGINT NOT NULL,
  created_at BIGINT NOT NULL, note TEXT NOT NULL DEFAULT '');
CREATE TABLE IF NOT EXISTS operator_actions(
  seq BIGSERIAL PRIMARY KEY, account BYTEA NOT NULL, kind INTEGER NOT NULL, at BIGINT NOT NULL);
CREATE TABLE IF NOT EXISTS devices(
  account BYTEA NOT NULL, device INTEGER NOT NULL, registration_id INTEGER NOT NULL,
  auth_hash BYTEA NOT NULL, encrypted_name BYTEA NOT NULL, created_at_ms BIGINT NOT NULL,
  last_seen_ms BIGINT NOT NULL DEFAULT 0, spk_id BIGINT NOT NULL, spk_public BYTEA NOT NULL,
  spk_signature BYTEA NOT NULL, spk_timestamp_ms BIGINT NOT NULL, lr_public BYTEA,
  push_url TEXT NOT NULL DEFAULT '', queue_len BIGINT NOT NULL DEFAULT 0,
  queue_bytes BIGINT NOT NULL DEFAULT 0, last_seq BIGINT NOT NULL DEFAULT 0,
  pool INTEGER NOT NULL DEFAULT 0, PRIMARY KEY(account, device));
CREATE TABLE IF NOT EXISTS prekeys(
  account BYTEA NOT NULL, device INTEGER NOT NULL, id BIGINT NOT NULL,
  public_key BYTEA NOT NULL, PRIMARY KEY(account, device, id));
CREATE TABLE IF NOT EXISTS blobs(id BIGSERIAL PRIMARY KEY, ciphertext BYTEA NOT NULL);
CREATE TABLE IF NOT EXISTS queue(
  account BYTEA NOT NULL, device INTEGER NOT NULL, seq BIGINT NOT NULL, type INTEGER NOT NULL,
  sender BYTEA NOT NULL, sender_device INTEGER NOT NULL, message_id BYTEA NOT NULL,
  ts BIGINT NOT NULL, expires_at BIGINT NOT NULL, urgent BOOLEAN NOT NULL, header BYTEA,
  ciphertext BYTEA, blob_id BIGINT, size INTEGER NOT NULL, PRIMARY KEY(account, device, seq));
CREATE INDEX IF NOT EXISTS queue_expiry ON queue(expires_at);
CREATE INDEX IF NOT EXISTS queue_blob ON queue(blob_id) WHERE blob_id IS NOT NULL;
CREATE TABLE IF NOT EXISTS sends(
  message_id BYTEA NOT NULL, sender BYTEA NOT NULL, sender_device INTEGER NOT NULL,
  batch INTEGER NOT NULL, ts BIGINT NOT NULL, expires_at BIGINT NOT NULL,
  PRIMARY KEY(message_id, sender, sender_device, batch));
CREATE INDEX IF NOT EXISTS sends_expiry ON sends(expires_at);
CREATE TABLE IF NOT EXISTS nonces(nonce BYTEA PRIMARY KEY, expires_at BIGINT NOT NULL);
CREATE TABLE IF NOT EXISTS attachments(
  id TEXT PRIMARY KEY, account BYTEA NOT NULL, device INTEGER NOT NULL, size BIGINT NOT NULL,
  upload_expires_at BIGINT NOT NULL, uploaded_at BIGINT NOT NULL DEFAULT 0,
  expires_at BIGINT NOT NULL DEFAULT 0);
)sql";

constexpr const char* kDeviceColumns =
    "account, device, registration_id, auth_hash, encrypted_name, created_at_ms, last_seen_ms, "
    "spk_id, spk_public, spk_signature, spk_timestamp_ms, push_url, queue_len, last_seq, "
    "queue_bytes";

// PostgreSQL type oids of the columns read in binary form.
constexpr unsigned kBool = 16, kInt8 = 20, kInt2 = 21, kInt4 = 23;

std::string to_text(int64_t v) { return std::to_string(v); }

// A bigint[] literal in PostgreSQL's text form.
std::string int_array(const std::vector<uint64_t>& values) {
  std::string out = "{";
  for (size_t i = 0; i < values.size(); ++i) {
    if (i) out += ',';
    out += std::to_string(values[i]);
  }
  return out + "}";
}

}  // namespace

// Parameters of one statement (bytea in binary form, everything else as text), then its result
// (read in binary form).
class PostgresStore::Query {
 public:
  Query& param(int64_t v) {
    values_.push_back(to_text(v));
    formats_.push_back(0);
    nulls_.push_back(false);
    return *this;
  }
  Query& param(ByteView v) {
    values_.emplace_back(reinterpret_cast<const char*>(v.data()), v.size());
    formats_.push_back(1);
    nulls_.push_back(false);
    return *this;
  }
  Query& text(std::string_view v) {
    values_.emplace_back(v);
    formats_.push_back(0);
    nulls_.push_back(false);
    return *this;
  }
  Query& null() {
    values_.emplace_back();
    formats_.push_back(0);
    nulls_.push_back(true);
    return *this;
  }

  int rows() const { return result_ ? PQntuples(result_.get()) : 0; }
  int64_t affected() const {
    const char* n = result_ ? PQcmdTuples(result_.get()) : "";
    return *n ? std::stoll(n) : 0;
  }
  bool is_null(int row, int col) const { return PQgetisnull(result_.get(), row, col); }
  int64_t i64(int row, int col) const {
    if (is_null(row, col)) return 0;
    const char* v = PQgetvalue(result_.get(), row, col);
    switch (PQftype(result_.get(), col)) {
      case kInt8: {
        uint64_t x;
        std::memcpy(&x, v, 8);
        return static_cast<int64_t>(be64toh(x));
      }
      case kInt4: {
        uint32_t x;
        std::memcpy(&x, v, 4);
        return static_cast<int32_t>(be32toh(x));
      }
      case kInt2: {
        uint16_t x;
        std::memcpy(&x, v, 2);
        return static_cast<int16_t>(be16toh(x));
      }
      case kBool:
        return v[0] != 0;
      default:
        return 0;  // a bug in a query: every integer column is one of the above
    }
  }
  ByteView view(int row, int col) const {
    return ByteView(reinterpret_cast<const uint8_t*>(PQgetvalue(result_.get(), row, col)),
                    static_cast<size_t>(PQgetlength(result_.get(), row, col)));
  }
  Bytes bytes(int row, int col) const {
    ByteView v = view(row, col);
    return Bytes(v.begin(), v.end());
  }
  std::string text(int row, int col) const {
    return std::string(PQgetvalue(result_.get(), row, col),
                       static_cast<size_t>(PQgetlength(result_.get(), row, col)));
  }

 private:
  friend class PostgresStore;
  // Pointers into values_: valid until the next param().
  void arrays(std::vector<const char*>& values, std::vector<int>& lengths) const {
    for (size_t i = 0; i < values_.size(); ++i) {
      values.push_back(nulls_[i] ? nullptr : values_[i].data());
      lengths.push_back(static_cast<int>(values_[i].size()));
    }
  }
  std::vector<std::string> values_;
  std::vector<int> formats_;
  std::vector<bool> nulls_;
  std::shared_ptr<PGresult> result_;
};

namespace {

// Runs `f` inside a transaction: the caller's, or one of its own when there is none (a Store
// used outside the StoreExecutor, as in tests).
template <class Store, class F>
auto in_transaction(Store& store, bool open, F&& f) -> decltype(f()) {
  if (open) return f();
  SOTTO_TRY(store.begin());
  auto r = f();
  if (!r.ok()) {
    store.rollback();
    return r;
  }
  SOTTO_TRY(store.commit());
  return r;
}

}  // namespace

// ---- connection ----

Result<std::unique_ptr<PostgresStore>> PostgresStore::open(const Options& options) {
  std::unique_ptr<PostgresStore> self(new PostgresStore());
  self->options_ = options;
  SOTTO_TRY(self->connect());
  SOTTO_TRY(self->migrate());
  return self;
}

PostgresStore::~PostgresStore() {
  if (conn_) PQfinish(conn_);
}

Status PostgresStore::connect() {
  if (conn_) PQfinish(conn_);
  prepared_.clear();
  in_transaction_ = false;
  conn_ = PQconnectdb(options_.conninfo.c_str());
  if (!conn_ || PQstatus(conn_) != CONNECTION_OK) {
    std::string why = conn_ ? PQerrorMessage(conn_) : "out of memory";
    while (!why.empty() && (why.back() == '\n' || why.back() == ' ')) why.pop_back();
    return make_error(ErrorCode::kStorageIo,
                      "cannot connect to PostgreSQL (" + why +
                          "); check --store and that the server runs and accepts this user");
  }
  int v = PQserverVersion(conn_);
  server_version_ = std::to_string(v / 10000) + "." + std::to_string(v % 10000);
  SOTTO_TRY(run_plain("SET client_min_messages = warning"));
  return run_plain(options_.sync_full ? "SET synchronous_commit = on"
                                      : "SET synchronous_commit = off");
}

Status PostgresStore::migrate() {
  SOTTO_TRY(run_plain("BEGIN"));
  Status s = run_plain(kSchemaLock);
  // The schema's version first: a store already at this one gets no DDL at all. ALTER TABLE
  // takes its table's strongest lock even when there is nothing to add, and a node that
  // starts while others serve would deadlock with their transactions.
  int64_t version = 0;  // a new store
  bool has_meta = false;
  if (s.ok()) {
    Query q;
    auto r = run("SELECT to_regclass('meta') IS NOT NULL", q);
    if (!r.ok())
      s = std::move(r).error();
    else
      has_meta = r->rows() && r->i64(0, 0) != 0;
  }
  if (s.ok() && has_meta) {
    Query q;
    auto r = run("SELECT value FROM meta WHERE key = 'schema_version'", q);
    if (!r.ok())
      s = std::move(r).error();
    else if (r->rows())
      version = r->i64(0, 0);
  }
  if (s.ok() && version == kSchemaVersion) {
    s = run_plain("COMMIT");
    if (!s.ok()) (void)run_plain("ROLLBACK");
    return s;
  }
  if (s.ok() && version < kSchemaVersion) s = run_plain(kSchema);
  if (s.ok() && version > kSchemaVersion) {
    (void)run_plain("ROLLBACK");
    return make_error(ErrorCode::kIncompatibleVersion,
                      "the PostgreSQL schema was written by a newer sotto-relay (schema " +
                          std::to_string(version) + ", this one knows up to " +
                          std::to_string(kSchemaVersion) +
                          "): run that release or a later one on every node");
  }
  if (s.ok()) {
    Query q;
    q.param(kSchemaVersion);
    auto r = run(
        "INSERT INTO meta(key, value) VALUES('schema_version', $1) "
        "ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value",
        q);
    if (!r.ok()) s = std::move(r).error();
  }
  if (s.ok()) s = run_plain("COMMIT");
  if (!s.ok()) (void)run_plain("ROLLBACK");
  return s;
}

Error PostgresStore::error(const std::string& what, PGresult* result) const {
  std::string detail = result ? PQresultErrorMessage(result) : "";
  if (detail.empty() && conn_) detail = PQerrorMessage(conn_);
  while (!detail.empty() && (detail.back() == '\n' || detail.back() == ' ')) detail.pop_back();
  const char* code = result ? PQresultErrorField(result, PG_DIAG_SQLSTATE) : nullptr;
  std::string state = code ? code : "";
  std::string w = what + " failed (PostgreSQL): " + detail;
  if (!conn_ || PQstatus(conn_) != CONNECTION_OK || state.starts_with("08") ||
      state.starts_with("57") || state.starts_with("58"))
    return make_error(ErrorCode::kStorageIo, w);
  if (state == "53100") return make_error(ErrorCode::kStorageFull, w);
  if (state.starts_with("53")) return make_error(ErrorCode::kStorageIo, w);
  if (state.starts_with("40") || state == "55P03") return make_error(ErrorCode::kBusy, w);
  if (state.starts_with("23")) return make_error(ErrorCode::kAlreadyExists, w);
  return make_error(ErrorCode::kInternal, w);
}

Status PostgresStore::run_plain(const char* sql) {
  std::shared_ptr<PGresult> r(PQexec(conn_, sql), PQclear);
  auto st = r ? PQresultStatus(r.get()) : PGRES_FATAL_ERROR;
  if (st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK)
    return error(std::string("\"") + std::string(sql).substr(0, 40) + "\"", r.get());
  return {};
}

Status PostgresStore::prepare(const char* sql) {
  if (prepared_.count(sql)) return {};
  std::string name = "s" + std::to_string(prepared_.size());
  std::shared_ptr<PGresult> r(PQprepare(conn_, name.c_str(), sql, 0, nullptr), PQclear);
  if (!r || PQresultStatus(r.get()) != PGRES_COMMAND_OK)
    return error(std::string("preparing \"") + std::string(sql).substr(0, 60) + "\"", r.get());
  prepared_.emplace(sql, std::move(name));
  return {};
}

Result<PostgresStore::Query> PostgresStore::run(const char* sql, Query& q) {
  SOTTO_TRY(prepare(sql));
  std::vector<const char*> values;
  std::vector<int> lengths;
  q.arrays(values, lengths);
  q.result_.reset(PQexecPrepared(conn_, prepared_[sql].c_str(), static_cast<int>(values.size()),
                                 values.data(), lengths.data(), q.formats_.data(), 1),
                  PQclear);
  auto st = q.result_ ? PQresultStatus(q.result_.get()) : PGRES_FATAL_ERROR;
  if (st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK)
    return error(std::string("\"") + std::string(sql).substr(0, 60) + "\"", q.result_.get());
  return std::move(q);
}

// ---- transactions ----

Status PostgresStore::begin() {
  // A connection lost since the last transaction (a restart of PostgreSQL, a network cut) is
  // made again here; the transaction that saw it fail was rolled back by the server. One the
  // server closed while it was idle still reads as open until a command fails on it, so a
  // failed BEGIN (nothing of a transaction to lose yet) connects again whatever the status
  // says: else the first transaction after every restart of the server fails.
  if (!conn_ || PQstatus(conn_) != CONNECTION_OK) SOTTO_TRY(connect());
  Status s = run_plain("BEGIN");
  if (!s.ok()) {
    SOTTO_TRY(connect());
    s = run_plain("BEGIN");
  }
  if (s.ok()) in_transaction_ = true;
  return s;
}

Status PostgresStore::commit() {
  Status s = flush(/*and_commit=*/true);
  in_transaction_ = false;
  pending_sends_.clear();
  pending_copies_.clear();
  deltas_.clear();
  if (!s.ok() && conn_ && PQstatus(conn_) == CONNECTION_OK) (void)run_plain("ROLLBACK");
  return s;
}

void PostgresStore::rollback() {
  if (in_transaction_ && conn_ && PQstatus(conn_) == CONNECTION_OK) (void)run_plain("ROLLBACK");
  in_transaction_ = false;
  pending_sends_.clear();
  pending_copies_.clear();
  deltas_.clear();
}

Status PostgresStore::ping() {
  Query q;
  SOTTO_TRY(run("SELECT 1", q));
  return {};
}

// Sends the statements in one round trip (libpq's pipeline mode) and checks each result.
namespace {
struct Piped {
  const char* name;  // prepared statement name
  std::vector<std::string> values;
  std::vector<int> formats;
  std::vector<bool> nulls;
};
}  // namespace

Status PostgresStore::flush(bool and_commit) {
  if (deltas_.empty()) return and_commit ? run_plain("COMMIT") : Status{};
  static constexpr const char* kLock =
      "SELECT last_seq FROM devices WHERE account = $1 AND device = $2 FOR UPDATE";
  static constexpr const char* kInsertCopy =
      "INSERT INTO queue(account, device, seq, type, sender, sender_device, message_id, ts, "
      "expires_at, urgent, header, ciphertext, blob_id, size) "
      "VALUES($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)";
  static constexpr const char* kCounters =
      "UPDATE devices SET last_seq = $3, queue_len = queue_len + $4, "
      "queue_bytes = queue_bytes + $5, pool = pool + $6, "
      "last_seen_ms = coalesce($7::bigint, last_seen_ms), push_url = coalesce($8, push_url) "
      "WHERE account = $1 AND device = $2";
  static constexpr const char* kInsertSend =
      "INSERT INTO sends(sender, sender_device, message_id, batch, ts, expires_at) "
      "VALUES($1, $2, $3, $4, $5, $6)";
  static constexpr const char* kCommit = "COMMIT";
  for (const char* sql : {kLock, kInsertCopy, kCounters, kInsertSend, kCommit})
    SOTTO_TRY(prepare(sql));

  auto pipeline = [this](std::vector<Query>& queries,
                         const std::vector<const char*>& sqls) -> Status {
    if (PQenterPipelineMode(conn_) != 1) return error("entering pipeline mode");
    for (size_t i = 0; i < queries.size(); ++i) {
      std::vector<const char*> values;
      std::vector<int> lengths;
      queries[i].arrays(values, lengths);
      if (PQsendQueryPrepared(conn_, prepared_[sqls[i]].c_str(), static_cast<int>(values.size()),
                              values.data(), lengths.data(), queries[i].formats_.data(),
                              1) != 1) {
        PQexitPipelineMode(conn_);
        return error("sending a pipelined statement");
      }
    }
    PQpipelineSync(conn_);
    Status first;
    for (size_t i = 0; i < queries.size(); ++i) {
      PGresult* r = PQgetResult(conn_);
      if (!r) {
        first = error("reading a pipelined result");
        break;
      }
      queries[i].result_.reset(r, PQclear);
      auto st = PQresultStatus(r);
      if (st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK && first.ok())
        first = error(std::string("\"") + std::string(sqls[i]).substr(0, 60) + "\"", r);
      while (PGresult* extra = PQgetResult(conn_)) PQclear(extra);  // the NULL after each
    }
    // Up to the sync point.
    while (PGresult* r = PQgetResult(conn_)) {
      bool sync = PQresultStatus(r) == PGRES_PIPELINE_SYNC;
      PQclear(r);
      if (sync) break;
    }
    PQexitPipelineMode(conn_);
    return first;
  };

  // 1. Lock the device rows in one sorted order (deltas_ is a sorted map): two nodes whose
  //    transactions flush once each wait for each other instead of deadlocking.
  std::vector<Query> locks(deltas_.size());
  std::vector<const char*> sqls(deltas_.size(), kLock);
  size_t i = 0;
  for (const auto& [key, delta] : deltas_) locks[i++].param(key.first).param(key.second);
  SOTTO_TRY(pipeline(locks, sqls));
  std::map<DeviceKey, int64_t> last_seq;
  i = 0;
  for (auto it = deltas_.begin(); it != deltas_.end(); ++i) {
    if (locks[i].rows() == 1) {
      last_seq[it->first] = locks[i].i64(0, 0);
      ++it;
      continue;
    }
    // The device is gone (removed by another node meanwhile). What this transaction would
    // write to its row is moot, unless it queued copies for it: then the send must fail.
    if (it->second.queued)
      return make_error(ErrorCode::kNotFound, "a recipient device does not exist");
    it = deltas_.erase(it);
  }

  // 2. Sequences in the order the copies were queued, then every write and COMMIT at once.
  std::vector<Query> writes;
  std::vector<const char*> write_sqls;
  for (const PendingCopy& c : pending_copies_) {
    const PendingSend& ps = pending_sends_[c.send];
    const NewSend& s = *ps.send;
    const QueuedCopy& copy = s.copies[c.index];
    int64_t seq = ++last_seq[c.device];
    (*ps.sequences)[c.index] = static_cast<uint64_t>(seq);
    Query q;
    q.param(copy.account_id).param(copy.device_id).param(seq);
    q.param(static_cast<int64_t>(s.copy_types.empty() ? s.type : s.copy_types[c.index]));
    q.param(s.sender_account).param(s.sender_device).param(s.message_id);
    q.param(static_cast<int64_t>(s.server_timestamp_ms)).param(static_cast<int64_t>(s.expires_at_ms));
    q.text(s.urgent ? "true" : "false");
    if (copy.header.empty())
      q.null();
    else
      q.param(copy.header);
    if (ps.blob_id) {
      q.null().param(ps.blob_id);
    } else {
      q.param(copy.ciphertext).null();
    }
    q.param(c.bytes);
    writes.push_back(std::move(q));
    write_sqls.push_back(kInsertCopy);
  }
  for (const auto& [key, d] : deltas_) {
    Query q;
    q.param(key.first).param(key.second).param(last_seq[key]).param(d.length).param(d.bytes);
    q.param(d.pool);
    if (d.last_seen_ms)
      q.param(*d.last_seen_ms);
    else
      q.null();
    if (d.push_url)
      q.text(*d.push_url);
    else
      q.null();
    writes.push_back(std::move(q));
    write_sqls.push_back(kCounters);
  }
  for (const PendingSend& ps : pending_sends_) {
    const NewSend& s = *ps.send;
    Query q;
    q.param(s.sender_account).param(s.sender_device).param(s.message_id).param(s.batch);
    q.param(static_cast<int64_t>(s.server_timestamp_ms)).param(static_cast<int64_t>(s.expires_at_ms));
    writes.push_back(std::move(q));
    write_sqls.push_back(kInsertSend);
  }
  if (and_commit) {
    writes.emplace_back();
    write_sqls.push_back(kCommit);
  }
  SOTTO_TRY(pipeline(writes, write_sqls));
  pending_sends_.clear();
  pending_copies_.clear();
  deltas_.clear();
  return {};
}

// ---- accounts ----

Status PostgresStore::insert_device(ByteView account, uint32_t id, const NewDevice& device) {
  Query d;
  d.param(account).param(id).param(device.registration_id).param(device.auth_hash);
  d.param(device.encrypted_name).param(static_cast<int64_t>(device.created_at_ms));
  d.param(device.signed_prekey.id()).param(as_bytes(device.signed_prekey.public_key()));
  d.param(as_bytes(device.signed_prekey.signature()));
  d.param(static_cast<int64_t>(device.signed_prekey.timestamp_ms()));
  d.param(as_bytes(device.last_resort.public_key()));
  SOTTO_TRY(run("INSERT INTO devices(account, device, registration_id, auth_hash, "
                "encrypted_name, created_at_ms, spk_id, spk_public, spk_signature, "
                "spk_timestamp_ms, lr_public) VALUES($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
                d));
  if (!device.one_time_prekeys.empty())
    SOTTO_TRY(upload_prekeys(account, id, nullptr, device.one_time_prekeys, nullptr, 0xFFFFFFFF));
  return {};
}

Result<bool> PostgresStore::create_account(const AccountRecord& a, const NewDevice& device) {
  return in_transaction(*this, in_transaction_, [&]() -> Result<bool> {
    Query q;
    q.param(a.id).text(a.handle).param(a.identity_key).param(static_cast<int64_t>(a.created_at_ms));
    SOTTO_TRY_ASSIGN(Query r, run("INSERT INTO accounts(id, handle, identity_key, hidden, "
                                  "last_seen_ms, created_at_ms, max_device_id) "
                                  "VALUES($1, $2, $3, false, 0, $4, 1) ON CONFLICT DO NOTHING",
                                  q));
    if (r.affected() == 0) return false;
    SOTTO_TRY(insert_device(a.id, 1, device));
    return true;
  });
}

static AccountRecord read_account(const PostgresStore::Query& q, int row = 0) {
  AccountRecord a;
  a.id = q.bytes(row, 0);
  a.handle = q.text(row, 1);
  a.identity_key = q.bytes(row, 2);
  a.presence_hidden = q.i64(row, 3) != 0;
  a.last_seen_ms = static_cast<uint64_t>(q.i64(row, 4));
  a.created_at_ms = static_cast<uint64_t>(q.i64(row, 5));
  a.suspended = q.i64(row, 6) > 0;
  a.suspended_reason = q.text(row, 7);
  return a;
}

Result<std::optional<AccountRecord>> PostgresStore::find_account(ByteView id) {
  Query q;
  q.param(id);
  SOTTO_TRY_ASSIGN(Query r, run("SELECT id, handle, identity_key, hidden, last_seen_ms, "
                                "created_at_ms, suspended_at, suspended_reason FROM accounts "
                                "WHERE id = $1",
                                q));
  if (!r.rows()) return std::optional<AccountRecord>();
  return std::optional<AccountRecord>(read_account(r));
}

Result<std::optional<AccountRecord>> PostgresStore::find_account_by_handle(std::string_view h) {
  Query q;
  q.text(h);
  SOTTO_TRY_ASSIGN(Query r, run("SELECT id, handle, identity_key, hidden, last_seen_ms, "
                                "created_at_ms, suspended_at, suspended_reason FROM accounts "
                                "WHERE handle = $1",
                                q));
  if (!r.rows()) return std::optional<AccountRecord>();
  return std::optional<AccountRecord>(read_account(r));
}

Status PostgresStore::drop_queue(ByteView account, const uint32_t* device) {
  // Shared ciphertexts are not counted: the next expiry deletes those nothing refers to.
  Query q;
  q.param(account);
  if (device) {
    q.param(*device);
    SOTTO_TRY(run("DELETE FROM queue WHERE account = $1 AND device = $2", q));
  } else {
    SOTTO_TRY(run("DELETE FROM queue WHERE account = $1", q));
  }
  return {};
}

Status PostgresStore::delete_account(ByteView id) {
  return in_transaction(*this, in_transaction_, [&]() -> Status {
    SOTTO_TRY(flush(false));  // what this transaction queued for it goes with it
    SOTTO_TRY(drop_queue(id, nullptr));
    for (const char* sql : {"DELETE FROM prekeys WHERE account = $1",
                            "DELETE FROM devices WHERE account = $1",
                            "DELETE FROM attachments WHERE account = $1 AND uploaded_at = 0",
                            "DELETE FROM accounts WHERE id = $1"}) {
      Query q;
      q.param(id);
      SOTTO_TRY(run(sql, q));
    }
    return {};
  });
}

Status PostgresStore::set_presence_hidden(ByteView id, bool hidden) {
  Query q;
  q.text(hidden ? "true" : "false").param(id);
  SOTTO_TRY(run("UPDATE accounts SET hidden = $1 WHERE id = $2", q));
  return {};
}

Status PostgresStore::set_last_seen(ByteView id, uint64_t account_last_seen_ms,
                                    uint32_t device_id, uint64_t device_last_seen_ms) {
  return in_transaction(*this, in_transaction_, [&]() -> Status {
    if (account_last_seen_ms) {
      Query q;
      q.param(static_cast<int64_t>(account_last_seen_ms)).param(id);
      SOTTO_TRY(run("UPDATE accounts SET last_seen_ms = $1 WHERE id = $2", q));
    }
    // The device row is written at commit, in the sorted order of device locks.
    if (device_id)
      deltas_[{Bytes(id.begin(), id.end()), device_id}].last_seen_ms =
          static_cast<int64_t>(device_last_seen_ms);
    return {};
  });
}

Result<bool> PostgresStore::use_nonce(ByteView nonce, uint64_t now_ms, uint64_t keep_until_ms) {
  Query q;
  q.param(nonce).param(static_cast<int64_t>(keep_until_ms)).param(static_cast<int64_t>(now_ms));
  SOTTO_TRY_ASSIGN(Query r, run("INSERT INTO nonces(nonce, expires_at) VALUES($1, $2) "
                                "ON CONFLICT (nonce) DO UPDATE SET expires_at = EXCLUDED.expires_at "
                                "WHERE nonces.expires_at < $3",
                                q));
  return r.affected() == 1;
}

// ---- devices ----

Result<DeviceRecord> PostgresStore::read_device(const Query& q, int row) const {
  DeviceRecord d;
  d.account_id = q.bytes(row, 0);
  d.device_id = static_cast<uint32_t>(q.i64(row, 1));
  d.registration_id = static_cast<uint32_t>(q.i64(row, 2));
  d.auth_hash = q.bytes(row, 3);
  d.encrypted_name = q.bytes(row, 4);
  d.created_at_ms = static_cast<uint64_t>(q.i64(row, 5));
  d.last_seen_ms = static_cast<uint64_t>(q.i64(row, 6));
  d.signed_prekey.set_id(static_cast<uint32_t>(q.i64(row, 7)));
  ByteView spk = q.view(row, 8), sig = q.view(row, 9);
  d.signed_prekey.set_public_key(spk.data(), spk.size());
  d.signed_prekey.set_signature(sig.data(), sig.size());
  d.signed_prekey.set_timestamp_ms(static_cast<uint64_t>(q.i64(row, 10)));
  d.push_url = q.text(row, 11);
  d.queue_length = static_cast<uint64_t>(q.i64(row, 12));
  d.last_sequence = static_cast<uint64_t>(q.i64(row, 13));
  d.queue_bytes = static_cast<uint64_t>(q.i64(row, 14));
  overlay(d);
  return d;
}

// What this transaction changed and has not written yet.
void PostgresStore::overlay(DeviceRecord& d) const {
  auto it = deltas_.find({d.account_id, d.device_id});
  if (it == deltas_.end()) return;
  const Delta& delta = it->second;
  d.queue_length = static_cast<uint64_t>(static_cast<int64_t>(d.queue_length) + delta.length);
  d.queue_bytes = static_cast<uint64_t>(static_cast<int64_t>(d.queue_bytes) + delta.bytes);
  d.last_sequence += static_cast<uint64_t>(delta.queued);
  if (delta.last_seen_ms) d.last_seen_ms = static_cast<uint64_t>(*delta.last_seen_ms);
  if (delta.push_url) d.push_url = *delta.push_url;
}

Result<std::vector<DeviceRecord>> PostgresStore::list_devices(ByteView account) {
  static const std::string sql =
      std::string("SELECT ") + kDeviceColumns + " FROM devices WHERE account = $1 ORDER BY device";
  Query q;
  q.param(account);
  SOTTO_TRY_ASSIGN(Query r, run(sql.c_str(), q));
  std::vector<DeviceRecord> out;
  for (int i = 0; i < r.rows(); ++i) {
    SOTTO_TRY_ASSIGN(DeviceRecord d, read_device(r, i));
    out.push_back(std::move(d));
  }
  return out;
}

Result<std::optional<DeviceRecord>> PostgresStore::find_device(ByteView account,
                                                               uint32_t device) {
  static const std::string sql = std::string("SELECT ") + kDeviceColumns +
                                 " FROM devices WHERE account = $1 AND device = $2";
  Query q;
  q.param(account).param(device);
  SOTTO_TRY_ASSIGN(Query r, run(sql.c_str(), q));
  if (!r.rows()) return std::optional<DeviceRecord>();
  SOTTO_TRY_ASSIGN(DeviceRecord d, read_device(r, 0));
  return std::optional<DeviceRecord>(std::move(d));
}

Result<uint32_t> PostgresStore::add_device(ByteView account, const NewDevice& device,
                                           uint32_t max_devices) {
  return in_transaction(*this, in_transaction_, [&]() -> Result<uint32_t> {
    // The account row serializes device changes of one account across nodes.
    Query lock;
    lock.param(account);
    SOTTO_TRY_ASSIGN(Query a,
                     run("SELECT max_device_id FROM accounts WHERE id = $1 FOR UPDATE", lock));
    if (!a.rows()) return make_error(ErrorCode::kNotFound, "no such account");
    int64_t max_id = a.i64(0, 0);
    Query count;
    count.param(account);
    SOTTO_TRY_ASSIGN(Query c, run("SELECT count(*) FROM devices WHERE account = $1", count));
    if (c.i64(0, 0) >= static_cast<int64_t>(max_devices)) return uint32_t{0};
    uint32_t id = static_cast<uint32_t>(max_id + 1);
    Query up;
    up.param(id).param(account);
    SOTTO_TRY(run("UPDATE accounts SET max_device_id = $1 WHERE id = $2", up));
    SOTTO_TRY(insert_device(account, id, device));
    return id;
  });
}

Result<bool> PostgresStore::remove_device(ByteView account, uint32_t device) {
  return in_transaction(*this, in_transaction_, [&]() -> Result<bool> {
    SOTTO_TRY(flush(false));
    Query q;
    q.param(account).param(device);
    SOTTO_TRY_ASSIGN(Query r, run("DELETE FROM devices WHERE account = $1 AND device = $2", q));
    if (r.affected() == 0) return false;
    SOTTO_TRY(drop_queue(account, &device));
    Query p;
    p.param(account).param(device);
    SOTTO_TRY(run("DELETE FROM prekeys WHERE account = $1 AND device = $2", p));
    return true;
  });
}

Status PostgresStore::set_push_url(ByteView account, uint32_t device, std::string_view url) {
  return in_transaction(*this, in_transaction_, [&]() -> Status {
    deltas_[{Bytes(account.begin(), account.end()), device}].push_url = std::string(url);
    return {};
  });
}

// ---- prekeys ----

Result<std::optional<uint32_t>> PostgresStore::upload_prekeys(
    ByteView account, uint32_t device, const wire::SignedPreKey* spk,
    const std::vector<wire::OneTimePreKey>& one_time, const wire::OneTimePreKey* last_resort,
    uint32_t max_pool) {
  return in_transaction(*this, in_transaction_, [&]() -> Result<std::optional<uint32_t>> {
    Query p;
    p.param(account).param(device);
    SOTTO_TRY_ASSIGN(Query pool_row,
                     run("SELECT pool FROM devices WHERE account = $1 AND device = $2", p));
    if (!pool_row.rows()) return make_error(ErrorCode::kNotFound, "no such device");
    DeviceKey key{Bytes(account.begin(), account.end()), device};
    auto pending = deltas_.find(key);
    int64_t pool = pool_row.i64(0, 0) + (pending == deltas_.end() ? 0 : pending->second.pool);
    // Ids already in the pool are replaced, so they do not grow it.
    int64_t added = static_cast<int64_t>(one_time.size());
    if (!one_time.empty()) {
      std::vector<uint64_t> ids;
      for (const auto& k : one_time) ids.push_back(k.id());
      Query e;
      e.param(account).param(device).text(int_array(ids));
      SOTTO_TRY_ASSIGN(Query existing,
                       run("SELECT count(*) FROM prekeys WHERE account = $1 AND device = $2 "
                           "AND id = ANY($3::bigint[])",
                           e));
      added -= existing.i64(0, 0);
    }
    if (pool + added > static_cast<int64_t>(max_pool)) return std::optional<uint32_t>();
    for (const auto& k : one_time) {
      Query q;
      q.param(account).param(device).param(k.id()).param(as_bytes(k.public_key()));
      SOTTO_TRY(run("INSERT INTO prekeys(account, device, id, public_key) VALUES($1, $2, $3, $4) "
                    "ON CONFLICT (account, device, id) DO UPDATE SET public_key = "
                    "EXCLUDED.public_key",
                    q));
    }
    if (spk) {
      Query q;
      q.param(spk->id()).param(as_bytes(spk->public_key())).param(as_bytes(spk->signature()));
      q.param(static_cast<int64_t>(spk->timestamp_ms())).param(account).param(device);
      SOTTO_TRY(run("UPDATE devices SET spk_id = $1, spk_public = $2, spk_signature = $3, "
                    "spk_timestamp_ms = $4 WHERE account = $5 AND device = $6",
                    q));
    }
    if (last_resort) {
      Query q;
      q.param(as_bytes(last_resort->public_key())).param(account).param(device);
      SOTTO_TRY(run("UPDATE devices SET lr_public = $1 WHERE account = $2 AND device = $3", q));
    }
    deltas_[key].pool += added;
    return std::optional<uint32_t>(static_cast<uint32_t>(pool + added));
  });
}

Result<PreKeyCounts> PostgresStore::prekey_counts(ByteView account, uint32_t device) {
  Query q;
  q.param(account).param(device);
  SOTTO_TRY_ASSIGN(Query r, run("SELECT pool, lr_public IS NOT NULL AND length(lr_public) > 0, "
                                "spk_id, spk_timestamp_ms FROM devices "
                                "WHERE account = $1 AND device = $2",
                                q));
  if (!r.rows()) return make_error(ErrorCode::kNotFound, "no such device");
  auto pending = deltas_.find({Bytes(account.begin(), account.end()), device});
  PreKeyCounts c;
  c.one_time = static_cast<uint32_t>(r.i64(0, 0) +
                                     (pending == deltas_.end() ? 0 : pending->second.pool));
  c.has_last_resort = r.i64(0, 1) != 0;
  c.signed_prekey_id = static_cast<uint32_t>(r.i64(0, 2));
  c.signed_prekey_timestamp_ms = static_cast<uint64_t>(r.i64(0, 3));
  return c;
}

Result<TakenPreKey> PostgresStore::take_prekey(ByteView account, uint32_t device) {
  return in_transaction(*this, in_transaction_, [&]() -> Result<TakenPreKey> {
    TakenPreKey out;
    Query q;
    q.param(account).param(device);
    // SKIP LOCKED: a key another node is taking right now is not waited for, and never taken
    // twice; that node's transaction deletes it or gives it back.
    SOTTO_TRY_ASSIGN(Query taken,
                     run("DELETE FROM prekeys WHERE (account, device, id) IN ("
                         "SELECT account, device, id FROM prekeys WHERE account = $1 AND "
                         "device = $2 ORDER BY id LIMIT 1 FOR UPDATE SKIP LOCKED) "
                         "RETURNING id, public_key",
                         q));
    DeviceKey key{Bytes(account.begin(), account.end()), device};
    if (taken.rows()) {
      wire::OneTimePreKey k;
      k.set_id(static_cast<uint32_t>(taken.i64(0, 0)));
      ByteView pk = taken.view(0, 1);
      k.set_public_key(pk.data(), pk.size());
      out.key = std::move(k);
      deltas_[key].pool -= 1;
    }
    Query d;
    d.param(account).param(device);
    SOTTO_TRY_ASSIGN(Query row,
                     run("SELECT pool, lr_public FROM devices WHERE account = $1 AND device = $2",
                         d));
    if (!row.rows()) return make_error(ErrorCode::kNotFound, "no such device");
    auto pending = deltas_.find(key);
    out.remaining = static_cast<uint32_t>(
        std::max<int64_t>(0, row.i64(0, 0) + (pending == deltas_.end() ? 0 : pending->second.pool)));
    if (!out.key && !row.is_null(0, 1) && !row.view(0, 1).empty()) {
      wire::OneTimePreKey k;
      k.set_id(0xFFFFFF);
      ByteView pk = row.view(0, 1);
      k.set_public_key(pk.data(), pk.size());
      out.key = std::move(k);
      out.last_resort = true;
    }
    return out;
  });
}

// ---- queues ----

Result<std::optional<SendRecord>> PostgresStore::find_send(ByteView sender,
                                                           uint32_t sender_device,
                                                           ByteView message_id, uint32_t batch) {
  // A send queued earlier in this transaction counts, as it would once committed.
  for (const PendingSend& ps : pending_sends_) {
    const NewSend& s = *ps.send;
    if (s.batch == batch && s.sender_device == sender_device &&
        std::equal(s.message_id.begin(), s.message_id.end(), message_id.begin(),
                   message_id.end()) &&
        std::equal(s.sender_account.begin(), s.sender_account.end(), sender.begin(),
                   sender.end()))
      return std::optional<SendRecord>(SendRecord{s.server_timestamp_ms});
  }
  Query q;
  q.param(message_id).param(sender).param(sender_device).param(batch);
  SOTTO_TRY_ASSIGN(Query r, run("SELECT ts FROM sends WHERE message_id = $1 AND sender = $2 AND "
                                "sender_device = $3 AND batch = $4",
                                q));
  if (!r.rows()) return std::optional<SendRecord>();
  return std::optional<SendRecord>(SendRecord{static_cast<uint64_t>(r.i64(0, 0))});
}

Status PostgresStore::enqueue(const NewSend& send, std::vector<uint64_t>* sequences) {
  return in_transaction(*this, in_transaction_, [&]() -> Status {
    PendingSend ps;
    ps.send = std::make_shared<const NewSend>(send);
    ps.sequences = sequences;
    sequences->assign(send.copies.size(), 0);
    if (!send.shared_ciphertext.empty()) {
      Query q;
      q.param(send.shared_ciphertext);
      SOTTO_TRY_ASSIGN(Query r, run("INSERT INTO blobs(ciphertext) VALUES($1) RETURNING id", q));
      ps.blob_id = r.i64(0, 0);
    }
    size_t index = pending_sends_.size();
    pending_sends_.push_back(std::move(ps));
    for (size_t i = 0; i < send.copies.size(); ++i) {
      const QueuedCopy& c = send.copies[i];
      int64_t bytes = static_cast<int64_t>(
          (send.shared_ciphertext.empty() ? c.ciphertext.size() : send.shared_ciphertext.size()) +
          c.header.size());
      DeviceKey key{c.account_id, c.device_id};
      Delta& d = deltas_[key];
      d.length += 1;
      d.bytes += bytes;
      d.queued += 1;
      pending_copies_.push_back(PendingCopy{std::move(key), index, i, bytes});
    }
    return {};
  });
}

Result<std::vector<wire::Envelope>> PostgresStore::load_queue(ByteView account, uint32_t device,
                                                              uint64_t after, uint32_t limit) {
  if (deltas_.count({Bytes(account.begin(), account.end()), device})) SOTTO_TRY(flush(false));
  Query q;
  q.param(account).param(device).param(static_cast<int64_t>(after)).param(limit);
  SOTTO_TRY_ASSIGN(Query r,
                   run("SELECT q.seq, q.type, q.sender, q.sender_device, q.message_id, q.ts, "
                       "q.urgent, q.header, coalesce(q.ciphertext, b.ciphertext) FROM queue q "
                       "LEFT JOIN blobs b ON b.id = q.blob_id WHERE q.account = $1 AND "
                       "q.device = $2 AND q.seq > $3 ORDER BY q.seq LIMIT $4",
                       q));
  std::vector<wire::Envelope> out;
  out.reserve(static_cast<size_t>(r.rows()));
  for (int i = 0; i < r.rows(); ++i) {
    wire::Envelope e;
    e.set_sequence(static_cast<uint64_t>(r.i64(i, 0)));
    e.set_type(static_cast<wire::Envelope::Type>(r.i64(i, 1)));
    ByteView v = r.view(i, 2);
    e.set_sender_account_id(v.data(), v.size());
    e.set_sender_device_id(static_cast<uint32_t>(r.i64(i, 3)));
    v = r.view(i, 4);
    e.set_message_id(v.data(), v.size());
    e.set_server_timestamp_ms(static_cast<uint64_t>(r.i64(i, 5)));
    e.set_urgent(r.i64(i, 6) != 0);
    if (!r.is_null(i, 7)) {
      v = r.view(i, 7);
      e.set_header(v.data(), v.size());
    }
    v = r.view(i, 8);
    e.set_ciphertext(v.data(), v.size());
    e.set_recipient_device_id(device);
    out.push_back(std::move(e));
  }
  return out;
}

Result<uint64_t> PostgresStore::ack(ByteView account, uint32_t device,
                                    const std::vector<uint64_t>& sequences) {
  return in_transaction(*this, in_transaction_, [&]() -> Result<uint64_t> {
    DeviceKey key{Bytes(account.begin(), account.end()), device};
    auto pending = deltas_.find(key);
    if (pending != deltas_.end() && pending->second.queued) SOTTO_TRY(flush(false));
    Query q;
    q.param(account).param(device).text(int_array(sequences));
    SOTTO_TRY_ASSIGN(Query r, run("DELETE FROM queue WHERE account = $1 AND device = $2 AND "
                                  "seq = ANY($3::bigint[]) RETURNING size",
                                  q));
    if (r.rows() == 0) return uint64_t{0};
    Delta& d = deltas_[key];
    for (int i = 0; i < r.rows(); ++i) {
      d.length -= 1;
      d.bytes -= r.i64(i, 0);
    }
    return static_cast<uint64_t>(r.rows());
  });
}

Result<uint64_t> PostgresStore::total_queued() {
  SOTTO_TRY(flush(false));
  Query q;
  SOTTO_TRY_ASSIGN(Query r, run("SELECT coalesce(sum(queue_len), 0)::bigint FROM devices", q));
  return static_cast<uint64_t>(r.i64(0, 0));
}

// ---- attachments ----

Status PostgresStore::create_attachment(const AttachmentRecord& a) {
  Query q;
  q.text(a.id).param(a.account_id).param(a.device_id).param(static_cast<int64_t>(a.size_bytes));
  q.param(static_cast<int64_t>(a.upload_expires_at_ms));
  SOTTO_TRY(run("INSERT INTO attachments(id, account, device, size, upload_expires_at) "
                "VALUES($1, $2, $3, $4, $5)",
                q));
  return {};
}

Result<std::optional<AttachmentRecord>> PostgresStore::find_attachment(std::string_view id) {
  Query q;
  q.text(id);
  SOTTO_TRY_ASSIGN(Query r, run("SELECT id, account, device, size, upload_expires_at, "
                                "uploaded_at, expires_at FROM attachments WHERE id = $1",
                                q));
  if (!r.rows()) return std::optional<AttachmentRecord>();
  AttachmentRecord a;
  a.id = r.text(0, 0);
  a.account_id = r.bytes(0, 1);
  a.device_id = static_cast<uint32_t>(r.i64(0, 2));
  a.size_bytes = static_cast<uint64_t>(r.i64(0, 3));
  a.upload_expires_at_ms = static_cast<uint64_t>(r.i64(0, 4));
  a.uploaded_at_ms = static_cast<uint64_t>(r.i64(0, 5));
  a.expires_at_ms = static_cast<uint64_t>(r.i64(0, 6));
  return std::optional<AttachmentRecord>(std::move(a));
}

Status PostgresStore::mark_attachment_uploaded(std::string_view id, uint64_t uploaded_at_ms,
                                               uint64_t expires_at_ms) {
  Query q;
  q.param(static_cast<int64_t>(uploaded_at_ms)).param(static_cast<int64_t>(expires_at_ms)).text(id);
  SOTTO_TRY(run("UPDATE attachments SET uploaded_at = $1, expires_at = $2 WHERE id = $3", q));
  return {};
}

// ---- expiry ----

Result<ExpiryResult> PostgresStore::expire(uint64_t now_ms) {
  return in_transaction(*this, in_transaction_, [&]() -> Result<ExpiryResult> {
    // Blobs are collected below by who refers to them: copies still waiting for commit count.
    SOTTO_TRY(flush(false));
    ExpiryResult out;
    auto now = static_cast<int64_t>(now_ms);
    {
      Query q;
      q.param(now);
      SOTTO_TRY_ASSIGN(Query r, run("DELETE FROM queue WHERE expires_at <= $1 "
                                    "RETURNING account, device, size",
                                    q));
      for (int i = 0; i < r.rows(); ++i) {
        Delta& d = deltas_[{r.bytes(i, 0), static_cast<uint32_t>(r.i64(i, 1))}];
        d.length -= 1;
        d.bytes -= r.i64(i, 2);
      }
      out.envelopes = static_cast<uint64_t>(r.rows());
    }
    {
      Query q;
      SOTTO_TRY(run("DELETE FROM blobs b WHERE NOT EXISTS "
                    "(SELECT 1 FROM queue q WHERE q.blob_id = b.id)",
                    q));
    }
    for (const char* sql : {"DELETE FROM sends WHERE expires_at <= $1",
                            "DELETE FROM nonces WHERE expires_at < $1",
                            "DELETE FROM operator_actions WHERE at < $1::bigint - 604800000"}) {
      Query q;
      q.param(now);
      SOTTO_TRY(run(sql, q));
    }
    Query q;
    q.param(now);
    SOTTO_TRY_ASSIGN(Query r, run("DELETE FROM attachments WHERE (uploaded_at = 0 AND "
                                  "upload_expires_at < $1) OR (uploaded_at > 0 AND "
                                  "expires_at < $1) RETURNING id",
                                  q));
    for (int i = 0; i < r.rows(); ++i) out.attachments.push_back(r.text(i, 0));
    return out;
  });
}

// ---- operators ----

Result<std::vector<AccountSummary>> PostgresStore::list_accounts(std::string_view prefix,
                                                                 uint32_t limit) {
  SOTTO_TRY(flush(false));
  Query q;
  // Handles are [a-z0-9_.]: '~' sorts after every one of them (in the C collation).
  q.text(prefix).text(std::string(prefix) + "~").param(limit);
  SOTTO_TRY_ASSIGN(Query r,
                   run("SELECT a.id, a.handle, a.identity_key, a.hidden, a.last_seen_ms, "
                       "a.created_at_ms, a.suspended_at, a.suspended_reason, count(d.device), "
                       "coalesce(sum(d.queue_len), 0)::bigint, "
                       "coalesce(sum(d.queue_bytes), 0)::bigint, "
                       "coalesce(max(d.last_seen_ms), 0)::bigint "
                       "FROM accounts a LEFT JOIN devices d ON d.account = a.id "
                       "WHERE a.handle COLLATE \"C\" >= $1 AND a.handle COLLATE \"C\" < $2 "
                       "GROUP BY a.id ORDER BY a.handle COLLATE \"C\" LIMIT $3",
                       q));
  std::vector<AccountSummary> out;
  for (int i = 0; i < r.rows(); ++i) {
    AccountSummary a;
    a.account = read_account(r, i);
    a.devices = static_cast<uint32_t>(r.i64(i, 8));
    a.queued_envelopes = static_cast<uint64_t>(r.i64(i, 9));
    a.queued_bytes = static_cast<uint64_t>(r.i64(i, 10));
    a.device_last_seen_ms = static_cast<uint64_t>(r.i64(i, 11));
    out.push_back(std::move(a));
  }
  return out;
}

Result<StoreTotals> PostgresStore::totals(uint64_t now_ms) {
  SOTTO_TRY(flush(false));
  Query q;
  q.param(static_cast<int64_t>(now_ms));
  SOTTO_TRY_ASSIGN(
      Query r,
      run("SELECT (SELECT count(*) FROM accounts), "
          "(SELECT count(*) FROM accounts WHERE suspended_at > 0), "
          "(SELECT count(*) FROM devices), "
          "(SELECT coalesce(sum(queue_len), 0)::bigint FROM devices), "
          "(SELECT coalesce(sum(queue_bytes), 0)::bigint FROM devices), "
          "(SELECT count(*) FROM attachments WHERE uploaded_at > 0), "
          "(SELECT coalesce(sum(size), 0)::bigint FROM attachments WHERE uploaded_at > 0), "
          "(SELECT count(*) FROM invites WHERE uses_left > 0 AND expires_at > $1)",
          q));
  StoreTotals t;
  t.accounts = static_cast<uint64_t>(r.i64(0, 0));
  t.suspended = static_cast<uint64_t>(r.i64(0, 1));
  t.devices = static_cast<uint64_t>(r.i64(0, 2));
  t.queued_envelopes = static_cast<uint64_t>(r.i64(0, 3));
  t.queued_bytes = static_cast<uint64_t>(r.i64(0, 4));
  t.attachments = static_cast<uint64_t>(r.i64(0, 5));
  t.attachment_bytes = static_cast<uint64_t>(r.i64(0, 6));
  t.invites = static_cast<uint64_t>(r.i64(0, 7));
  return t;
}

Result<bool> PostgresStore::set_suspended(ByteView account, bool suspended,
                                          std::string_view reason, uint64_t now_ms) {
  Query q;
  q.param(suspended ? static_cast<int64_t>(std::max<uint64_t>(now_ms, 1)) : 0);
  q.text(suspended ? reason : std::string_view()).param(account);
  SOTTO_TRY_ASSIGN(Query r, run("UPDATE accounts SET suspended_at = $1, suspended_reason = $2 "
                                "WHERE id = $3",
                                q));
  if (r.affected() == 0) return false;
  SOTTO_TRY(record_action(
      account, suspended ? OperatorAction::kSuspended : OperatorAction::kUnsuspended, now_ms));
  return true;
}

Status PostgresStore::record_action(ByteView account, OperatorAction::Kind kind,
                                    uint64_t now_ms) {
  Query q;
  q.param(account).param(static_cast<int64_t>(kind)).param(static_cast<int64_t>(now_ms));
  SOTTO_TRY(run("INSERT INTO operator_actions(account, kind, at) VALUES($1, $2, $3)", q));
  return {};
}

Result<std::vector<OperatorAction>> PostgresStore::actions_since(uint64_t after_seq) {
  Query q;
  q.param(static_cast<int64_t>(after_seq));
  SOTTO_TRY_ASSIGN(Query r, run("SELECT seq, account, kind, at FROM operator_actions "
                                "WHERE seq > $1 ORDER BY seq",
                                q));
  std::vector<OperatorAction> out;
  for (int i = 0; i < r.rows(); ++i) {
    OperatorAction a;
    a.seq = static_cast<uint64_t>(r.i64(i, 0));
    a.account = r.bytes(i, 1);
    a.kind = static_cast<OperatorAction::Kind>(r.i64(i, 2));
    a.at_ms = static_cast<uint64_t>(r.i64(i, 3));
    out.push_back(std::move(a));
  }
  return out;
}

Status PostgresStore::add_invite(const Invite& i) {
  Query q;
  q.param(i.token_hash).param(i.uses_left).param(static_cast<int64_t>(i.expires_at_ms));
  q.param(static_cast<int64_t>(i.created_at_ms)).text(i.note);
  SOTTO_TRY(run("INSERT INTO invites(token_hash, uses_left, expires_at, created_at, note) "
                "VALUES($1, $2, $3, $4, $5)",
                q));
  return {};
}

Result<std::vector<Invite>> PostgresStore::list_invites() {
  Query q;
  SOTTO_TRY_ASSIGN(Query r, run("SELECT token_hash, uses_left, expires_at, created_at, note "
                                "FROM invites ORDER BY created_at",
                                q));
  std::vector<Invite> out;
  for (int i = 0; i < r.rows(); ++i) {
    Invite v;
    v.token_hash = r.bytes(i, 0);
    v.uses_left = static_cast<uint32_t>(r.i64(i, 1));
    v.expires_at_ms = static_cast<uint64_t>(r.i64(i, 2));
    v.created_at_ms = static_cast<uint64_t>(r.i64(i, 3));
    v.note = r.text(i, 4);
    out.push_back(std::move(v));
  }
  return out;
}

Result<bool> PostgresStore::revoke_invite(ByteView token_hash) {
  Query q;
  q.param(token_hash);
  SOTTO_TRY_ASSIGN(Query r, run("DELETE FROM invites WHERE token_hash = $1", q));
  return r.affected() > 0;
}

Result<bool> PostgresStore::use_invite(ByteView token_hash, uint64_t now_ms) {
  Query q;
  q.param(token_hash).param(static_cast<int64_t>(now_ms));
  SOTTO_TRY_ASSIGN(Query r, run("UPDATE invites SET uses_left = uses_left - 1 WHERE "
                                "token_hash = $1 AND uses_left > 0 AND expires_at > $2",
                                q));
  return r.affected() > 0;
}

Status PostgresStore::return_invite(ByteView token_hash) {
  Query q;
  q.param(token_hash);
  SOTTO_TRY(run("UPDATE invites SET uses_left = uses_left + 1 WHERE token_hash = $1", q));
  return {};
}

}  // namespace sotto::relay
