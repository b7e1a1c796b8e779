// The relay's storage interface. Every backend (the embedded SQLCipher one, PostgreSQL for a
// cluster of relay nodes) passes tests/unit/relay/StoreConformance_test.cpp.
//
// Threading: a Store is used by one thread at a time (the StoreExecutor's writer thread).
// Every call between begin() and commit() belongs to one transaction; the executor puts many
// jobs in one transaction, so a method never commits on its own. A method that refuses
// (handle taken, device cap) returns that as a value and changes nothing.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "sotto/Bytes.h"
#include "sotto/Result.h"
#include "sotto/proto/wire.pb.h"

namespace sotto::relay {

using AccountId = Bytes;  // 16 bytes

struct AccountRecord {
  AccountId id;
  std::string handle;
  Bytes identity_key;
  bool presence_hidden = false;
  uint64_t last_seen_ms = 0;  // when its last device disconnected (minute precision)
  uint64_t created_at_ms = 0;
  // Suspended by the operator (sotto-relay admin suspend): its devices are refused with the
  // reason until the operator lifts it.
  bool suspended = false;
  std::string suspended_reason;
};

// What an operator sees of an account (sotto-relay admin accounts).
struct AccountSummary {
  AccountRecord account;
  uint32_t devices = 0;
  uint64_t queued_envelopes = 0;
  uint64_t queued_bytes = 0;
  uint64_t device_last_seen_ms = 0;  // the most recent of its devices' (day precision)
};

struct StoreTotals {
  uint64_t accounts = 0;
  uint64_t suspended = 0;
  uint64_t devices = 0;
  uint64_t queued_envelopes = 0;
  uint64_t queued_bytes = 0;
  uint64_t attachments = 0;  // uploaded blobs
  uint64_t attachment_bytes = 0;
  uint64_t invites = 0;  // live ones
};

// What an operator did to an account (sotto-relay admin), for every relay using the store to
// apply to its connections: a relay may run while the admin command writes.
struct OperatorAction {
  enum Kind { kSuspended = 1, kUnsuspended = 2, kDeleted = 3 };
  uint64_t seq = 0;
  Bytes account;
  Kind kind = kSuspended;
  uint64_t at_ms = 0;
};

// An invite token for a relay with closed registration: only its hash is stored.
struct Invite {
  Bytes token_hash;
  uint32_t uses_left = 0;
  uint64_t expires_at_ms = 0;
  uint64_t created_at_ms = 0;
  std::string note;
};

// What a new device brings (OP_REGISTER, OP_LINK_DEVICE).
struct NewDevice {
  uint32_t registration_id = 0;
  Bytes auth_hash;  // hash of the auth secret; the secret itself is never stored
  Bytes encrypted_name;
  wire::SignedPreKey signed_prekey;
  std::vector<wire::OneTimePreKey> one_time_prekeys;
  wire::OneTimePreKey last_resort;
  uint64_t created_at_ms = 0;
};

struct DeviceRecord {
  AccountId account_id;
  uint32_t device_id = 0;
  uint32_t registration_id = 0;
  Bytes auth_hash;
  Bytes encrypted_name;
  uint64_t created_at_ms = 0;
  uint64_t last_seen_ms = 0;
  wire::SignedPreKey signed_prekey;
  std::string push_url;
  uint64_t queue_length = 0;
  uint64_t queue_bytes = 0;    // ciphertext and header bytes of the queued envelopes
  uint64_t last_sequence = 0;  // highest sequence ever assigned in its queue
};

struct PreKeyCounts {
  uint32_t one_time = 0;
  bool has_last_resort = false;
  uint32_t signed_prekey_id = 0;
  uint64_t signed_prekey_timestamp_ms = 0;
};

// The result of an atomic prekey take for one device.
struct TakenPreKey {
  std::optional<wire::OneTimePreKey> key;  // absent: no one-time and no last-resort key
  bool last_resort = false;
  uint32_t remaining = 0;  // one-time keys left after the take
};

// One copy of a send, for one recipient device.
struct QueuedCopy {
  AccountId account_id;
  uint32_t device_id = 0;
  Bytes ciphertext;  // empty when the copy uses the send's shared ciphertext
  Bytes header;
};

// A whole send: all copies are committed together with the idempotency record.
struct NewSend {
  AccountId sender_account;
  uint32_t sender_device = 0;
  Bytes message_id;
  uint32_t batch = 0;
  wire::Envelope::Type type = wire::Envelope::TYPE_UNSPECIFIED;  // for the shared ciphertext
  std::vector<wire::Envelope::Type> copy_types;  // per copy (OP_SEND); empty: `type` for all
  Bytes shared_ciphertext;  // OP_SEND_MULTI: stored once, referenced by every copy
  std::vector<QueuedCopy> copies;
  bool urgent = false;
  uint64_t server_timestamp_ms = 0;
  uint64_t expires_at_ms = 0;
};

struct SendRecord {
  uint64_t server_timestamp_ms = 0;
};

struct AttachmentRecord {
  std::string id;
  AccountId account_id;
  uint32_t device_id = 0;
  uint64_t size_bytes = 0;
  uint64_t upload_expires_at_ms = 0;
  uint64_t uploaded_at_ms = 0;  // 0: not uploaded yet
  uint64_t expires_at_ms = 0;   // for uploaded blobs
};

struct ExpiryResult {
  uint64_t envelopes = 0;
  std::vector<std::string> attachments;  // ids whose files the caller deletes
};

class Store {
 public:
  virtual ~Store() = default;

  virtual Status begin() = 0;
  virtual Status commit() = 0;
  virtual void rollback() = 0;
  // A cheap read that fails when storage does not answer (for /healthz).
  virtual Status ping() = 0;

  // Accounts. create_account returns false (and stores nothing) when the handle is taken.
  virtual Result<bool> create_account(const AccountRecord& account, const NewDevice& device) = 0;
  virtual Result<std::optional<AccountRecord>> find_account(ByteView id) = 0;
  virtual Result<std::optional<AccountRecord>> find_account_by_handle(std::string_view handle) = 0;
  // Deletes the account, its devices, queues, prekeys and unfinished attachment slots.
  virtual Status delete_account(ByteView id) = 0;
  virtual Status set_presence_hidden(ByteView id, bool hidden) = 0;
  virtual Status set_last_seen(ByteView id, uint64_t account_last_seen_ms, uint32_t device_id,
                               uint64_t device_last_seen_ms) = 0;
  // false when the nonce was already used within its window; records it otherwise.
  virtual Result<bool> use_nonce(ByteView nonce, uint64_t now_ms, uint64_t keep_until_ms) = 0;

  // Devices. add_device gives the next id (one more than the highest ever used) or 0 when the
  // account already has `max_devices`.
  virtual Result<std::vector<DeviceRecord>> list_devices(ByteView account) = 0;
  virtual Result<std::optional<DeviceRecord>> find_device(ByteView account, uint32_t device) = 0;
  virtual Result<uint32_t> add_device(ByteView account, const NewDevice& device,
                                      uint32_t max_devices) = 0;
  virtual Result<bool> remove_device(ByteView account, uint32_t device) = 0;
  virtual Status set_push_url(ByteView account, uint32_t device, std::string_view url) = 0;

  // Prekeys. upload_prekeys returns the pool size afterwards, or nullopt when the pool would
  // hold more than `max_pool` (nothing stored then).
  virtual Result<std::optional<uint32_t>> upload_prekeys(
      ByteView account, uint32_t device, const wire::SignedPreKey* signed_prekey,
      const std::vector<wire::OneTimePreKey>& one_time, const wire::OneTimePreKey* last_resort,
      uint32_t max_pool) = 0;
  virtual Result<PreKeyCounts> prekey_counts(ByteView account, uint32_t device) = 0;
  // Takes one one-time prekey out of the pool (each is handed out at most once, ever), or
  // returns the last-resort key when the pool is empty.
  virtual Result<TakenPreKey> take_prekey(ByteView account, uint32_t device) = 0;

  // Queues.
  virtual Result<std::optional<SendRecord>> find_send(ByteView sender_account,
                                                      uint32_t sender_device, ByteView message_id,
                                                      uint32_t batch) = 0;
  // Appends every copy to its queue and records the send. `sequences` gets each copy's
  // sequence by the time commit() succeeds: a backend may assign them only at commit (one
  // shared by several writers does, to lock queues in an order that cannot deadlock).
  // NB: `sequences` must stay valid until then.
  virtual Status enqueue(const NewSend& send, std::vector<uint64_t>* sequences) = 0;
  // Envelopes with sequence > after_sequence, in order, at most `limit`.
  virtual Result<std::vector<wire::Envelope>> load_queue(ByteView account, uint32_t device,
                                                         uint64_t after_sequence,
                                                         uint32_t limit) = 0;
  // Deletes the named envelopes of the device's own queue; returns how many existed.
  virtual Result<uint64_t> ack(ByteView account, uint32_t device,
                               const std::vector<uint64_t>& sequences) = 0;
  virtual Result<uint64_t> total_queued() = 0;

  // Attachments.
  virtual Status create_attachment(const AttachmentRecord& slot) = 0;
  virtual Result<std::optional<AttachmentRecord>> find_attachment(std::string_view id) = 0;
  virtual Status mark_attachment_uploaded(std::string_view id, uint64_t uploaded_at_ms,
                                          uint64_t expires_at_ms) = 0;

  // Deletes expired envelopes, idempotency records, nonces and attachments (slots never
  // uploaded in time and blobs past retention).
  virtual Result<ExpiryResult> expire(uint64_t now_ms) = 0;

  // Operators (sotto-relay admin), never on a client's request path.
  // Accounts whose handle starts with `handle_prefix` (all when empty), by handle, at most
  // `limit`.
  virtual Result<std::vector<AccountSummary>> list_accounts(std::string_view handle_prefix,
                                                            uint32_t limit) = 0;
  virtual Result<StoreTotals> totals(uint64_t now_ms) = 0;
  // Suspends (or lifts the suspension of) an account and records the action; false when there
  // is no such account.
  virtual Result<bool> set_suspended(ByteView account, bool suspended, std::string_view reason,
                                     uint64_t now_ms) = 0;
  virtual Status record_action(ByteView account, OperatorAction::Kind kind, uint64_t now_ms) = 0;
  // Actions recorded after `after_seq`, oldest first. The store forgets what it had cached of
  // their accounts (another process changed them). Actions older than a week expire.
  virtual Result<std::vector<OperatorAction>> actions_since(uint64_t after_seq) = 0;
  virtual Status add_invite(const Invite& invite) = 0;
  virtual Result<std::vector<Invite>> list_invites() = 0;
  // false when there is no such invite.
  virtual Result<bool> revoke_invite(ByteView token_hash) = 0;
  // Takes one use of a live invite: false when it has none left, expired or does not exist.
  virtual Result<bool> use_invite(ByteView token_hash, uint64_t now_ms) = 0;
  // Gives back a use taken by use_invite() in the same transaction (the registration failed).
  virtual Status return_invite(ByteView token_hash) = 0;
};

}  // namespace sotto::relay
