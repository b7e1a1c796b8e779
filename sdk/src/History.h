// The Client's tables in the profile database (schema step 1 -> 2): account, contacts,
// conversations, messages, receipts, the outbox, receipts owed, held envelopes and session
// resets. Plain SQL, no I/O of its own and no crypto, so the callers can put a ratchet step
// and the rows it belongs to in one transaction.
//
// Thread rule: not thread-safe. Hold the profile's mutex (ProfileParts::mu) around every call.
#pragma once

#include <atomic>
#include <cstdint>
#include <optional>
#include <set>
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
  kGroupData = 7,     // a group DataMessage: Sender Key, fanned out with SEND_MULTI
  kGroupUpdate = 8,   // a GroupUpdate, pairwise to `accounts` and own other devices
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
  std::optional<ConversationId> group_conv;  // kGroupData, kGroupUpdate: the group's lane
  std::vector<std::string> accounts;         // kGroupUpdate recipients
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
  std::string attachment_names;  // one per line, for search
  bool has_attachment = false;
  uint32_t expire_timer_s = 0;
  uint64_t expires_ms = 0;  // 0: not counting down (yet)
  uint32_t group_revision = 0;  // group messages: the revision the author sent it at
};

struct GroupRow {
  ConversationId conversation = 0;
  Bytes group_id;
  uint32_t revision = 0;
  Bytes snapshot;
  std::string name;
  bool member = true;
  // The revision that last removed this account; 0 if it never was. Messages sent at a
  // revision before it were sent to this account as a member, and are shown when they come.
  uint32_t left_revision = 0;
};

// A file kept encrypted in the profile (table attachment_blobs).
struct StoredBlob {
  std::string name;   // under attachments/blobs/
  Bytes key;          // 32 bytes
  Bytes digest;       // SHA-256 of the encrypted file
  uint64_t size = 0;  // plaintext bytes
};

struct StoredAttachment {
  int64_t row = 0;  // messages.id
  uint32_t index = 0;
  Bytes pointer;  // serialized content.AttachmentPointer
  // A plain copy an earlier version kept; the Client encrypts it into `blob` and removes it.
  std::string local_path;
  std::optional<StoredBlob> blob;
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

// A group message for a group this device does not know yet.
struct HeldGroupMessage {
  std::string sender;
  uint32_t device = 0;
  uint64_t sort_ms = 0;
  Bytes message;  // serialized content.DataMessage
};

struct OwedGroupSend {
  ConversationId group = 0;
  Bytes content;  // serialized content.Content: a group DataMessage or GroupUpdate
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
  // Accounts this profile shows (a direct conversation's peer, a group member) whose handle
  // the relay has not told it yet, except `self` and `skip`; at most `limit`.
  Result<std::vector<std::string>> accounts_without_handle(const std::string& self,
                                                           const std::set<std::string>& skip,
                                                           uint32_t limit);
  // The safety number the user verified with `account` ("" when none).
  Result<std::string> verified_number(const std::string& account);
  // Records `digits` as verified with `account`, or (empty) forgets the verification.
  Status set_verified_number(const std::string& account, const std::string& digits,
                             uint64_t now_ms);
  // The conversations that show `account`: its direct one and the groups it is in.
  Result<std::vector<ConversationId>> conversations_showing(const std::string& account);
  Result<std::vector<Contact>> contacts();
  // The identity key the relay's lookup gave for `account`; empty when none is known.
  Result<Bytes> contact_identity_key(const std::string& account);

  // ---- conversations ----
  Result<ConversationId> direct_conversation(const std::string& peer, uint64_t now_ms);
  Result<std::optional<ConversationId>> find_direct_conversation(const std::string& peer);
  Result<std::optional<Conversation>> conversation(ConversationId id);
  Result<std::vector<Conversation>> conversations();

  // ---- messages ----
  // The new row id, or nullopt when (sender, message_id) is already there (a duplicate).
  Result<std::optional<int64_t>> insert_message(const NewMessage& m);
  // Rows insert_message() has written since this History was made (rolled-back ones too).
  uint64_t inserted() const { return inserted_.load(std::memory_order_relaxed); }
  // Counts new direct conversations and group member lists written: the accounts shown may
  // include one without a handle (accounts_without_handle()).
  uint64_t shown_changes() const { return shown_changes_.load(std::memory_order_relaxed); }
  // Counts group states written (save_group(), rolled-back ones too): a send that read a
  // group's members compares it again before it encrypts, to send at one revision.
  uint64_t group_saves() const { return group_saves_.load(std::memory_order_relaxed); }
  Result<std::optional<StoredMessage>> message(int64_t row);
  Result<std::optional<StoredMessage>> find_message(const std::string& sender, ByteView id);
  // Whether a message from `sender` with that id is stored.
  Result<bool> has_message(const std::string& sender, ByteView id);
  Result<std::optional<StoredMessage>> find_in_conversation(ConversationId conversation,
                                                            ByteView id);
  // Moves an outgoing message's status forward (never back). True when it changed.
  Result<bool> raise_status(int64_t row, MessageStatus status);
  // An outgoing message the relay refused for good: kFailed, whatever it was.
  Status mark_failed(int64_t row);
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

  // Replaces a message's text (an edit); `extra` the new DataMessage for resends.
  Status edit_message(int64_t row, const std::string& text, uint64_t edited_ms, ByteView extra);
  // An outgoing group message leaves at the group's revision then: `revision`, and `extra`
  // the DataMessage that says so. A message deleted meanwhile (no extra) stays as it is.
  Status set_group_revision(int64_t row, uint32_t revision, ByteView extra);
  // Deletes a message for everyone: text, attachments and resend copy gone, a tombstone
  // stays. Returns its attachments (the caller removes their files after the commit).
  Result<std::vector<StoredAttachment>> delete_message_content(int64_t row);
  // Removes a message completely (it expired). Returns its attachments, as above.
  Result<std::vector<StoredAttachment>> remove_message(int64_t row);
  Status set_expiry(int64_t row, uint64_t expires_ms);
  // Messages whose time ran out (expires_ms <= now), oldest first.
  Result<std::vector<StoredMessage>> expired(uint64_t now_ms, size_t limit);
  Result<std::optional<uint64_t>> next_expiry();
  Status set_expire_timer(ConversationId conversation, uint32_t seconds);

  // ---- attachments ----
  Status add_attachment(int64_t row, uint32_t index, ByteView pointer);
  Result<std::vector<StoredAttachment>> attachments(int64_t row);
  // Records the encrypted file of an attachment; false (and nothing changes) when it has one.
  Result<bool> add_attachment_blob(int64_t row, uint32_t index, const StoredBlob& blob);
  Status remove_attachment_blob(int64_t row, uint32_t index);
  // Forgets the plain copy an earlier version kept.
  Status clear_attachment_path(int64_t row, uint32_t index);
  // Attachments that still have a plain copy from an earlier version, oldest first.
  Result<std::vector<StoredAttachment>> plain_attachments(size_t limit);
  // Every name in attachment_blobs.
  Result<std::vector<std::string>> blob_names();

  // ---- groups ----
  Result<ConversationId> group_conversation(ByteView group_id, uint64_t now_ms);
  Result<std::optional<GroupRow>> group(ConversationId conversation);
  Result<std::optional<GroupRow>> group_by_id(ByteView group_id);
  // Every group this account is a member of, oldest conversation first.
  Result<std::vector<GroupRow>> member_groups();
  Status save_group(const GroupRow& row);
  Status set_group_members(ConversationId conversation, const std::vector<GroupMember>& members);
  Result<std::vector<GroupMember>> group_members(ConversationId conversation);
  // One row's lookup and a count of the members other than `except`: what receiving a
  // message in a 1,000-member group needs, without reading every member.
  Result<bool> is_group_member(ConversationId conversation, const std::string& account);
  Result<uint32_t> group_member_count(ConversationId conversation, const std::string& except);
  // Every member account but `except` with the devices this device has sessions with (none:
  // an empty list), in one query: a 1,000-member group's send reads it for every message.
  Result<std::vector<std::pair<std::string, std::vector<uint32_t>>>> group_session_devices(
      ConversationId conversation, const std::string& except);
  Result<std::vector<std::pair<std::string, uint32_t>>> sender_key_holders(
      ConversationId conversation);
  Status add_sender_key_holder(ConversationId conversation, const std::string& account,
                               uint32_t device);
  Status clear_sender_key_holders(ConversationId conversation);
  Status record_sender_key_id(const std::string& account, uint32_t device, uint32_t key_id,
                              ByteView group_id);
  Result<std::optional<Bytes>> group_for_sender_key(const std::string& account, uint32_t device,
                                                    uint32_t key_id);

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

  // ---- group messages for a group not known yet ----
  // At most kMaxHeldGroupMessages rows, none older than kHeldGroupMessageTtlMs: a group that
  // never becomes known (a sender naming a made-up group) costs bounded space. false when
  // the message was not kept because the limit is reached.
  static constexpr int64_t kMaxHeldGroupMessages = 1000;
  static constexpr uint64_t kHeldGroupMessageTtlMs = 3ull * 24 * 3600 * 1000;
  Result<bool> hold_group_message(ByteView group_id, const HeldGroupMessage& m, uint64_t now_ms);
  // Removes and returns the messages held for a group, in the order they arrived.
  Result<std::vector<HeldGroupMessage>> take_held_group_messages(ByteView group_id);

  // ---- group sends owed to a member whose safety number is in doubt ----
  // Once per (account, send): a send retried records nothing new. Rows older than `keep_ms`
  // before now are dropped here, so the table holds at most a resend window's worth.
  Status owe_group_send(const std::string& account, ByteView message_id, ConversationId group,
                        ByteView content, uint64_t now_ms, uint64_t keep_ms);
  // Removes and returns what is owed to `account` since `since_ms`, oldest first.
  Result<std::vector<OwedGroupSend>> take_owed_group_sends(const std::string& account,
                                                           uint64_t since_ms);

  // ---- envelopes that did not decrypt, asked for again ----
  // Once per (sender, message id); rows older than `keep_ms` before now are dropped here.
  Status record_failed_envelope(const std::string& sender, uint32_t device, ByteView message_id,
                                uint64_t server_ms, bool asked, uint64_t now_ms, uint64_t keep_ms);
  // The devices with ids not asked for yet.
  Result<std::vector<std::pair<std::string, uint32_t>>> devices_owing_asks();
  // Up to `limit` ids not asked for yet from that device, oldest first, now marked asked.
  Result<std::vector<Bytes>> take_unasked(const std::string& sender, uint32_t device, size_t limit);
  // The relay time of the original of a message that comes back (0 when it never failed);
  // its row goes.
  Result<uint64_t> take_failed_position(const std::string& sender, ByteView message_id);

  // ---- session resets ----
  Result<std::optional<uint64_t>> last_reset(const std::string& account, uint32_t device);
  Status record_reset(const std::string& account, uint32_t device, uint64_t now_ms);

 private:
  Status drop_older_rows(const char* delete_sql, uint64_t now_ms, uint64_t keep_ms);
  Result<Message> read_message(db::Query& q, int first_column, StoredMessage* stored);
  Status touch_conversation(ConversationId id, int64_t row, uint64_t activity_ms);

  db::Database& db_;
  std::atomic<uint64_t> inserted_{0};
  std::atomic<uint64_t> shown_changes_{0};
  std::atomic<uint64_t> group_saves_{0};
};

}  // namespace sotto
