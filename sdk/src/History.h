// The Client's tables in the profile database (schema step 1 -> 2): account, contacts,
// conversations, messages, receipts, the outbox, receipts owed, held envelopes and session
// resets. Plain SQL, no I/O of its own and no crypto, so the callers can put a ratchet step
// and the rows it belongs to in one transaction.
//
// Thread rule: not thread-safe. Hold the profile's mutex (ProfileParts::mu) around every call.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "Database.h"
#include "sotto/Client.h"

namespace sotto {

// What an outbox row sends (outbox.kind).
enum class OutboxKind : int {
  kData = 1,          // a DataMessage to `target`, with a transcript for own devices
  kReceipt = 2,       // a Receipt to `target`
  kOwnSync = 3,       // a Sync for own other devices only (target NULL)
  kSessionReset = 4,  // a SessionReset to one device (targeted)
  kResend = 5,        // a DataMessage resent to one device after its session was rebuilt
  kSyncReply = 6,     // an answer to a SyncRequest, to one own device (targeted)
};

struct OutboxItem {
  int64_t id = 0;
  Bytes message_id;  // 16 bytes
  OutboxKind kind = OutboxKind::kData;
  std::optional<std::string> target;
  std::optional<uint32_t> target_device;
  Bytes content;
  std::optional<Bytes> own_content;
  bool urgent = false;
  std::optional<int64_t> message;  // messages.id
  int attempts = 0;
  uint64_t not_before_ms = 0;
};

enum class AccountState : int { kRegistering = 0, kRegistered = 1, kRemoved = 2 };

struct AccountRow {
  std::string account;  // empty until assigned
  uint32_t device_id = 0;
  std::string handle;
  Bytes auth_secret;
  AccountState state = AccountState::kRegistering;
  bool presence_hidden = false;
  bool read_receipts = true;
};

struct NewMessage {
  ConversationId conversation = 0;
  Bytes message_id;
  std::string sender;
  uint32_t sender_device = 0;
  bool outgoing = false;
  MessageKind kind = MessageKind::kText;
  std::string body;
  uint64_t sent_ms = 0;
  uint64_t sort_ms = 0;
  MessageStatus status = MessageStatus::kPending;
  Bytes extra;  // outgoing: the serialized DataMessage, for resends
  uint32_t recipients = 0;
};

struct StoredMessage {
  int64_t row = 0;
  Message message;
  Bytes message_id;
  Bytes extra;
};

struct PendingReceipt {
  std::string author;
  int type = 0;  // content.Receipt.Type
  Bytes message_id;
  uint64_t at_ms = 0;
};

struct HeldEnvelope {
  int64_t id = 0;
  std::string sender;
  Bytes envelope;
};

class History {
 public:
  explicit History(db::Database& db) : db_(db) {}

  // ---- account ----
  Result<std::optional<AccountRow>> account();
  Status save_account(const AccountRow& row);

  // ---- contacts ----
  Status upsert_contact(const std::string& account, const std::string& handle,
                        ByteView identity_key, uint64_t now_ms);
  Result<std::optional<Contact>> contact(const std::string& account);
  Result<std::vector<Contact>> contacts();

  // ---- conversations ----
  Result<ConversationId> direct_conversation(const std::string& peer, uint64_t now_ms);
  Result<std::optional<ConversationId>> find_direct_conversation(const std::string& peer);
  Result<std::optional<Conversation>> conversation(ConversationId id);
  Result<std::vector<Conversation>> conversations();

  // ---- messages ----
  // The new row id, or nullopt when (sender, message_id) is already there (a duplicate).
  Result<std::optional<int64_t>> insert_message(const NewMessage& m);
  Result<std::optional<StoredMessage>> message(int64_t row);
  Result<std::optional<StoredMessage>> find_message(const std::string& sender, ByteView id);
  Result<std::optional<StoredMessage>> find_in_conversation(ConversationId conversation,
                                                            ByteView id);
  // Moves an outgoing message's status forward (never back). True when it changed.
  Result<bool> raise_status(int64_t row, MessageStatus status);
  Status set_sort_ms(int64_t row, uint64_t sort_ms);
  // Records a recipient's receipt (never back from read to delivered). True when it changed.
  Result<bool> record_receipt(int64_t row, const std::string& account, MessageStatus status,
                              uint64_t at_ms);
  Result<std::vector<Receipt>> receipts(int64_t row);
  Result<MessagePage> page(ConversationId conversation, const std::string& cursor, uint32_t limit);
  // Marks incoming messages of `conversation` up to `up_to_row` (by position) read. Returns
  // the newly read ones.
  Result<std::vector<StoredMessage>> mark_read(ConversationId conversation, int64_t up_to_row);
  // Marks one incoming message read (a Sync.read from another own device). True if changed.
  Result<bool> mark_one_read(int64_t row);

  // ---- outbox ----
  Result<int64_t> enqueue(const OutboxItem& item, uint64_t now_ms);
  // The oldest row that may go now: not held, not_before <= now.
  Result<std::optional<OutboxItem>> next_outbox(uint64_t now_ms);
  // Earliest not_before_ms among rows that are waiting (not held), if any.
  Result<std::optional<uint64_t>> next_outbox_due();
  Status outbox_done(int64_t id);
  Status outbox_retry(int64_t id, uint64_t not_before_ms, const std::string& error);
  Status hold_outbox(const std::string& target, bool held);
  Result<int64_t> outbox_size();

  // ---- receipts owed ----
  Status add_pending_receipt(const PendingReceipt& r);
  Result<std::vector<PendingReceipt>> pending_receipts(size_t limit);
  Status remove_pending_receipt(const PendingReceipt& r);

  // ---- held envelopes ----
  Status hold_envelope(const std::string& sender, ByteView envelope, uint64_t now_ms);
  Result<std::vector<HeldEnvelope>> held_envelopes(const std::string& sender);
  Status remove_held(int64_t id);

  // ---- session resets ----
  Result<std::optional<uint64_t>> last_reset(const std::string& account, uint32_t device);
  Status record_reset(const std::string& account, uint32_t device, uint64_t now_ms);

 private:
  Result<Message> read_message(db::Query& q, int first_column, StoredMessage* stored);
  Status touch_conversation(ConversationId id, int64_t row, uint64_t activity_ms);

  db::Database& db_;
};

}  // namespace sotto
