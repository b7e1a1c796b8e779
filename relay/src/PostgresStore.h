// The clustered Store: PostgreSQL (15), shared by every relay node of a cluster. Passes the
// same conformance suite as the embedded SqliteStore (tests/unit/relay/StoreConformance_test).
//
// Several nodes write at once, so what the embedded store gets from being the only writer
// comes from PostgreSQL's row locks here:
//  - a device's queue counters (last sequence, length, bytes) live in its `devices` row. A
//    transaction changes them only at commit: it locks every device row it touches in one
//    sorted order, assigns the sequences of the copies it queued, and writes the copies, the
//    counters, the idempotency records and COMMIT in one pipelined round trip. Sequences of
//    one queue therefore commit in order, and a reader on any node never sees a later one
//    before an earlier one. A transaction that reads or acks a queue it queued to does that
//    earlier for the rows it has touched so far, so two nodes' transactions can still lock
//    rows in opposite orders: PostgreSQL then rolls one back (kBusy) and the StoreExecutor
//    runs it again;
//  - one-time prekeys are taken with DELETE ... RETURNING on a row locked with SKIP LOCKED,
//    so each is handed out once whichever node takes it;
//  - accounts, handles and nonces rely on unique keys (INSERT ... ON CONFLICT);
//  - a shared ciphertext (send_multi) is not reference-counted: expire() deletes blobs no
//    queue row refers to any more, so acks on many nodes never contend for one row.
// Threading: one thread at a time (the StoreExecutor's writer thread), like every Store.
#pragma once

#include <map>
#include <memory>
#include <optional>
#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

#include "Store.h"

struct pg_conn;
struct pg_result;

namespace sotto::relay {

class PostgresStore final : public Store {
 public:
  struct Options {
    // A libpq connection string: "postgresql://user@host:port/db" or "host=... dbname=...".
    std::string conninfo;
    // synchronous_commit for this relay's sessions, whatever the server's default: on, an OK
    // means the commit is on disk (--db-sync full); off, it may be lost with the server.
    bool sync_full = true;
  };
  // Connects, creates or migrates the schema (under an advisory lock, so nodes starting
  // together do not race) and checks its version. kStorageIo with libpq's reason when the
  // server cannot be reached; kIncompatibleVersion for a schema from a newer relay.
  static Result<std::unique_ptr<PostgresStore>> open(const Options& options);
  ~PostgresStore() override;
  // The server's version, e.g. "15.18".
  const std::string& server_version() const { return server_version_; }

  Status begin() override;
  Status commit() override;
  void rollback() override;
  Status ping() override;

  Result<bool> create_account(const AccountRecord& account, const NewDevice& device) override;
  Result<std::optional<AccountRecord>> find_account(ByteView id) override;
  Result<std::optional<AccountRecord>> find_account_by_handle(std::string_view handle) override;
  Status delete_account(ByteView id) override;
  Status set_presence_hidden(ByteView id, bool hidden) override;
  Status set_last_seen(ByteView id, uint64_t account_last_seen_ms, uint32_t device_id,
                       uint64_t device_last_seen_ms) override;
  Result<bool> use_nonce(ByteView nonce, uint64_t now_ms, uint64_t keep_until_ms) override;

  Result<std::vector<DeviceRecord>> list_devices(ByteView account) override;
  Result<std::optional<DeviceRecord>> find_device(ByteView account, uint32_t device) override;
  Result<uint32_t> add_device(ByteView account, const NewDevice& device,
                              uint32_t max_devices) override;
  Result<bool> remove_device(ByteView account, uint32_t device) override;
  Status set_push_url(ByteView account, uint32_t device, std::string_view url) override;

  Result<std::optional<uint32_t>> upload_prekeys(ByteView account, uint32_t device,
                                                 const wire::SignedPreKey* signed_prekey,
                                                 const std::vector<wire::OneTimePreKey>& one_time,
                                                 const wire::OneTimePreKey* last_resort,
                                                 uint32_t max_pool) override;
  Result<PreKeyCounts> prekey_counts(ByteView account, uint32_t device) override;
  Result<TakenPreKey> take_prekey(ByteView account, uint32_t device) override;

  Result<std::optional<SendRecord>> find_send(ByteView sender_account, uint32_t sender_device,
                                              ByteView message_id, uint32_t batch) override;
  Status enqueue(const NewSend& send, std::vector<uint64_t>* sequences) override;
  Result<std::vector<wire::Envelope>> load_queue(ByteView account, uint32_t device,
                                                 uint64_t after_sequence,
                                                 uint32_t limit) override;
  Result<uint64_t> ack(ByteView account, uint32_t device,
                       const std::vector<uint64_t>& sequences) override;
  Result<uint64_t> total_queued() override;

  Status create_attachment(const AttachmentRecord& slot) override;
  Result<std::optional<AttachmentRecord>> find_attachment(std::string_view id) override;
  Status mark_attachment_uploaded(std::string_view id, uint64_t uploaded_at_ms,
                                  uint64_t expires_at_ms) override;

  Result<ExpiryResult> expire(uint64_t now_ms) override;

  Result<std::vector<AccountSummary>> list_accounts(std::string_view handle_prefix,
                                                    uint32_t limit) override;
  Result<StoreTotals> totals(uint64_t now_ms) override;
  Result<bool> set_suspended(ByteView account, bool suspended, std::string_view reason,
                             uint64_t now_ms) override;
  Status record_action(ByteView account, OperatorAction::Kind kind, uint64_t now_ms) override;
  Result<std::vector<OperatorAction>> actions_since(uint64_t after_seq) override;
  Status add_invite(const Invite& invite) override;
  Result<std::vector<Invite>> list_invites() override;
  Result<bool> revoke_invite(ByteView token_hash) override;
  Result<bool> use_invite(ByteView token_hash, uint64_t now_ms) override;
  Status return_invite(ByteView token_hash) override;

  class Query;

 private:
  PostgresStore() = default;
  using DeviceKey = std::pair<Bytes, uint32_t>;
  // A send queued in this transaction: its copies are written at commit, with sequences.
  struct PendingSend {
    std::shared_ptr<const NewSend> send;  // a copy: the caller's may be gone by commit
    std::vector<uint64_t>* sequences = nullptr;
    int64_t blob_id = 0;  // its shared ciphertext, stored at once
  };
  struct PendingCopy {
    DeviceKey device;
    size_t send = 0;   // index in pending_sends_
    size_t index = 0;  // which copy of that send
    int64_t bytes = 0;
  };
  // What this transaction changes in a device's row, written at commit.
  struct Delta {
    int64_t length = 0;
    int64_t bytes = 0;
    int64_t queued = 0;  // copies queued (sequences to assign at commit)
    int64_t pool = 0;    // one-time prekeys added or taken
    std::optional<int64_t> last_seen_ms;
    std::optional<std::string> push_url;
  };

  Status connect();
  Status migrate();
  // Runs `sql` (prepared once per connection) with the query's parameters.
  Result<Query> run(const char* sql, Query& params);
  Status run_plain(const char* sql);
  Status prepare(const char* sql);
  Error error(const std::string& what, pg_result* result = nullptr) const;
  // Assigns the sequences of the copies queued so far and writes them with the counters and
  // the idempotency records; with `and_commit`, COMMIT goes in the same round trip.
  Status flush(bool and_commit);
  // The device row of a new device `id` and its one-time prekeys (create_account, add_device).
  Status insert_device(ByteView account, uint32_t id, const NewDevice& device);
  Status flush_device(const DeviceKey& device);
  void overlay(DeviceRecord& d) const;
  Result<DeviceRecord> read_device(const Query& q, int row) const;
  Status drop_queue(ByteView account, const uint32_t* device);

  pg_conn* conn_ = nullptr;
  Options options_;
  std::string server_version_;
  std::unordered_map<const char*, std::string> prepared_;  // SQL text -> statement name
  bool in_transaction_ = false;
  std::vector<PendingSend> pending_sends_;
  std::vector<PendingCopy> pending_copies_;
  std::map<DeviceKey, Delta> deltas_;  // sorted: the order device rows are locked in
};

}  // namespace sotto::relay
