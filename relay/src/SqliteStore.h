// The embedded Store: one SQLCipher database (WAL) in the data directory, optionally
// encrypted at rest with a 32-byte key. Linked against SQLCipher only, never libsqlite3.
#pragma once

#include <filesystem>
#include <functional>
#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

#include "Store.h"
#include "sotto/SecureBytes.h"

struct sqlite3;
struct sqlite3_stmt;

namespace sotto::relay {

class SqliteStore final : public Store {
 public:
  struct Options {
    SecureBytes key;        // empty: not encrypted at rest
    bool sync_full = true;  // synchronous=FULL (else NORMAL)
    // WAL checkpoints: a background connection copies the WAL into the database once it
    // holds this many pages; the writer does it itself only past the limit.
    uint32_t checkpoint_pages = 4000;  // 16 MiB
    uint32_t wal_limit_pages = 32000;  // 128 MiB
  };
  // Opens (creating if needed) `path`. kEncryptionUnavailable when the SQLite in the process
  // is not SQLCipher, kWrongKey when the key does not open an existing database.
  static Result<std::unique_ptr<SqliteStore>> open(const std::filesystem::path& path,
                                                   const Options& options);
  ~SqliteStore() override;
  // The SQLCipher version string (PRAGMA cipher_version).
  const std::string& cipher_version() const { return cipher_version_; }

  // How the connection writes: WAL, and synchronous FULL (2) or NORMAL (1) from Options.
  struct Settings {
    std::string journal_mode;
    int synchronous = 0;
  };
  Result<Settings> settings();

  // Deletes every one-time prekey not handed out yet and returns how many. A restored backup's
  // pools still hold the keys handed out after it was taken; without them each device is told
  // its pool is low when it connects and uploads fresh keys (peers get the last-resort key
  // until then).
  Result<uint64_t> drop_one_time_prekeys();

  // An online backup of the database at `path`, which a running relay may be writing, into
  // the new file `dest`, encrypted with the same key. SQLite's backup API copies every page of
  // one read snapshot, a few MiB per step; a WAL reader never blocks the relay's writer, and
  // holding the snapshot keeps the backup from starting over at each of its commits. Then
  // `copy_blob` copies the file of each attachment the snapshot has as uploaded; when it
  // returns false (the blob expired since), the copy forgets that attachment. The copy is
  // checked (PRAGMA integrity_check) before this returns.
  struct BackupResult {
    uint64_t pages = 0;
    uint64_t attachments = 0;       // blobs copied
    uint64_t attachments_gone = 0;  // expired between the snapshot and their copy
  };
  static Result<BackupResult> backup(
      const std::filesystem::path& path, const SecureBytes& key, const std::filesystem::path& dest,
      const std::function<Result<bool>(const std::string&)>& copy_blob);
  // Opens the database at `path` with `key` and runs PRAGMA integrity_check: kWrongKey,
  // kStorageCorrupt with SQLite's first complaint, or ok.
  static Status check(const std::filesystem::path& path, const SecureBytes& key);

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
                                                 uint64_t after_sequence, uint32_t limit) override;
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

  class Stmt;

 private:
  class Checkpointer;
  SqliteStore();
  // The writer's WAL hook: after every commit, with the WAL's length in pages.
  static int on_wal_commit(void* self, sqlite3* db, const char* schema, int pages);
  // For migrations: a column added by ALTER TABLE may already be there. `table_info` is the
  // statement that lists the table's columns ("PRAGMA table_info(devices)").
  Result<bool> table_has_column(const char* table_info, std::string_view column);
  Status exec(const char* sql);
  Result<sqlite3_stmt*> prepare(const char* sql);
  Error error(int rc, std::string_view what) const;
  Status insert_device(ByteView account, uint32_t device_id, const NewDevice& device);
  Status drop_queue_rows(const char* where_sql, ByteView account, uint32_t device);
  Result<DeviceRecord> read_device(sqlite3_stmt* stmt);
  Result<std::vector<DeviceRecord>> list_devices_uncached(ByteView account);

  // Read caches for the send path (accounts, device lists, queue counters), dropped on
  // rollback. Accounts and device lists are written through. A device's queue counters are
  // written behind: enqueue and ack change them in memory and mark them dirty, and
  // flush_counters() writes each dirty device's row once, before the transaction commits
  // (and before a query sums the column or the cached value is forgotten); device records
  // read from the table take the cached counters over the row's (overlay_counters).
  // A commit batch then updates a device row once, not once per envelope and ack.
  void drop_caches();
  Status forget_account(ByteView account);
  struct Counters {
    int64_t last_seq = 0;
    int64_t queue_len = 0;
    int64_t queue_bytes = 0;
    bool dirty = false;
  };
  Result<Counters*> counters(const std::string& key);
  void mark_dirty(const std::string& key, Counters& c);
  void overlay_counters(DeviceRecord& d) const;
  Status flush_counters();
  // Outside a transaction a write-behind counter would wait for the next commit: write it now.
  Status flush_if_autocommit();
  std::vector<std::string> dirty_counters_;  // keys in counters_
  std::unordered_map<std::string, AccountRecord> account_cache_;
  std::unordered_map<std::string, std::vector<DeviceRecord>> device_cache_;
  std::unordered_map<std::string, Counters> counters_;  // account + device

  sqlite3* db_ = nullptr;
  std::unique_ptr<Checkpointer> checkpointer_;  // stopped before db_ closes
  int checkpoint_pages_ = 0;
  int wal_limit_pages_ = 0;
  std::filesystem::path path_;
  std::string cipher_version_;
  std::unordered_map<const char*, sqlite3_stmt*> cache_;
};

}  // namespace sotto::relay
