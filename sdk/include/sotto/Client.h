// sotto::Client: one device of one account, chatting through a sotto relay. It owns a Profile
// (the encrypted local state) and keeps a connection to the relay in the background:
// registration or linking, contacts, 1:1 messages with sent / delivered / read, history, and
// the events that tell an app what changed.
//
// Delivery: send_text() records the message in history and in the outbox in one transaction
// and returns; the SDK then sends it, retrying with the same message id until the relay has
// committed it, across reconnects and restarts. Received messages are decrypted, stored with
// the new ratchet state in one transaction, de-duplicated, and only then acknowledged, so a
// crash at any point loses nothing and shows nothing twice.
//
// Thread rule: every method may be called from any thread. Methods that talk to the relay
// (register_account, add_contact, start_link, finish_link, approve_link, devices,
// remove_device, unlink_this_device, delete_account) block until it answers or the timeout
// passes: call them off a GUI thread.
// The others only touch the local database and return quickly. Listener callbacks run on the
// executor given in ClientOptions, one at a time and in order; they may call back into the
// Client.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "sotto/Profile.h"
#include "sotto/Result.h"
#include "sotto/Search.h"
#include "sotto/Types.h"
#include "sotto/export.h"

namespace sotto {

using ConversationId = int64_t;  // local to this profile

enum class ConversationKind : int { kDirect = 1, kGroup = 2 };

// Outgoing messages move kPending -> kSent -> kDelivered -> kRead and never back; kFailed
// when the relay refused them for good. Incoming messages are kUnread until mark_read().
enum class MessageStatus : int {
  kPending = 0,    // in the outbox, not yet committed by the relay
  kSent = 1,       // the relay committed it
  kDelivered = 2,  // a recipient device stored it (for groups: at least one recipient)
  kRead = 3,       // a recipient read it
  kFailed = 4,     // could not be sent; see the notice in the conversation
  kUnread = 10,    // incoming, not yet read
  kSeen = 11,      // incoming, read
};

enum class MessageKind : int {
  kText = 1,    // something a person wrote
  kNotice = 2,  // an event shown in the conversation (safety number changed, session reset...)
};

// A file sent with a message. The relay holds only its encrypted blob; the key and digest
// travel inside the end-to-end encrypted message.
struct Attachment {
  std::string file_name;     // without directories; may be empty
  std::string content_type;  // MIME type, e.g. "image/png"
  uint64_t size = 0;         // plaintext bytes
  uint32_t width = 0;        // pixels, for images; 0 when unknown
  uint32_t height = 0;
  Bytes thumbnail;  // a small preview image (JPEG/PNG), at most 8 KiB; may be empty
  // This device has the file (sent from here, or downloaded), kept encrypted in the profile:
  // save_attachment() and read_attachment() work without the relay.
  bool stored = false;
};

struct Message {
  std::string id;  // 32 hex digits, chosen by the author; unique per author
  ConversationId conversation = 0;
  std::string sender;  // the author's account id (32 hex digits)
  uint32_t sender_device = 0;
  bool outgoing = false;
  MessageKind kind = MessageKind::kText;
  std::string text;      // for notices, a sentence describing the event
  uint64_t sent_ms = 0;  // the author's clock
  uint64_t sort_ms = 0;  // position in the conversation (relay time)
  MessageStatus status = MessageStatus::kPending;
  uint32_t recipients = 0;    // outgoing: how many accounts it went to
  uint32_t delivered_to = 0;  // outgoing: how many of them have it (groups: "delivered to X of Y")
  uint32_t read_by = 0;       // outgoing: how many of them read it
  std::vector<Attachment> attachments;
  uint64_t edited_ms = 0;       // last edit; 0 if never edited
  bool deleted = false;         // deleted for everyone: text and attachments are gone
  uint32_t expire_timer_s = 0;  // disappearing timer the message was sent with; 0 = off
  uint64_t expires_ms = 0;      // when it disappears; 0 = never, or not yet read
  // Group messages: the group's revision (GroupInfo::revision) the author sent it at, so the
  // members it went to were that revision's. Outgoing: set when it leaves this device (the
  // group may change while it waits). 0 for direct messages and notices.
  uint32_t group_revision = 0;
};

struct Conversation {
  ConversationId id = 0;
  ConversationKind kind = ConversationKind::kDirect;
  std::string peer;   // direct: the other account's id
  std::string title;  // direct: the peer's handle (e.g. "@bob"); group: its name
  uint32_t unread = 0;
  std::optional<Message> last_message;
  uint64_t last_activity_ms = 0;
  uint32_t expire_timer_s = 0;  // disappearing-message timer; 0 = off
};

struct GroupMember {
  std::string account;
  std::string handle;
  bool admin = false;
};

struct GroupInfo {
  ConversationId conversation = 0;
  std::string group_id;  // 64 hex digits; known only to members, never to the relay
  std::string name;
  uint32_t revision = 0;
  std::vector<GroupMember> members;  // including this account while it is a member
  bool is_member = true;             // false after leaving or being removed
  bool is_admin = false;             // this account may change the group
};

// What goes with a file. The SDK reads PNG and JPEG dimensions itself when width/height are 0;
// a thumbnail, if any, comes from the app (it can decode images, the SDK does not).
struct FileOptions {
  std::string caption;       // text shown with the file; may be empty
  std::string content_type;  // empty: guessed from the file name
  std::string file_name;     // empty: the file's own name
  uint32_t width = 0;
  uint32_t height = 0;
  Bytes thumbnail;  // at most 8 KiB
};

// Bytes done and total; called from the thread that runs the transfer.
using TransferProgress = std::function<void(uint64_t done, uint64_t total)>;

struct MessagePage {
  std::vector<Message> messages;  // newest first
  std::string next_cursor;        // pass to messages() for the next (older) page; empty at the end
};

// One recipient's receipt for an outgoing message.
struct Receipt {
  std::string account;
  MessageStatus status = MessageStatus::kDelivered;  // kDelivered or kRead
  uint64_t at_ms = 0;
};

struct Contact {
  std::string account;  // 32 hex digits
  std::string handle;   // without '@'
};

struct AccountInfo {
  std::string account;  // 32 hex digits
  uint32_t device_id = 0;
  std::string handle;
};

struct DeviceInfo {
  uint32_t device_id = 0;
  std::string name;  // decrypted; empty when unknown
  uint64_t created_ms = 0;
  uint64_t last_seen_ms = 0;  // rounded down to the day
  bool connected = false;
  bool this_device = false;
};

// What a device that wants to join an account shows its user.
struct LinkInvite {
  std::string code;  // the 8-character link code
  // Type this on the existing device: the code and a fingerprint of this device's one-time key,
  // XXXX-XXXX-FFFF-FFFF-FFFF-FFFF-FFFF-FFFF.
  std::string text;
  std::string uri;  // for a QR code: sotto://link?code=...&key=...
  uint64_t expires_ms = 0;
};

enum class ConnectionState : int {
  kOffline = 0,     // not connected; retrying in the background
  kConnecting = 1,  // dialing the relay
  kSyncing = 2,     // connected, receiving what was queued while offline
  kOnline = 3,      // connected and up to date
  kLoggedOut = 4,   // the relay refused this device (removed from its account): no retries
};

struct IdentityChange {
  std::string account;
  std::string handle;
  SafetyNumber safety_number;  // with the new key
};

// Receives what happens. Every method has an empty default. Called through the executor of
// ClientOptions, one call at a time, in order.
class ClientListener {
 public:
  virtual ~ClientListener() = default;
  // A message arrived (or was sent from another device of this account).
  virtual void on_message(const Message& message) { (void)message; }
  // An outgoing message's status moved on (pending -> sent -> delivered -> read, or failed).
  virtual void on_message_status(ConversationId conversation, const std::string& message_id,
                                 MessageStatus status) {
    (void)conversation, (void)message_id, (void)status;
  }
  // A recipient's receipt for an outgoing message.
  virtual void on_receipt(ConversationId conversation, const std::string& message_id,
                          const Receipt& receipt) {
    (void)conversation, (void)message_id, (void)receipt;
  }
  virtual void on_connection_state(ConnectionState state, const std::string& detail) {
    (void)state, (void)detail;
  }
  // A contact's identity key changed. Sending to them waits until accept_identity().
  virtual void on_identity_changed(const IdentityChange& change) { (void)change; }
  // The account's device list changed (a device was linked or removed).
  virtual void on_devices_changed() {}
  // A message changed in place: edited, deleted for everyone, its disappearing countdown
  // started, or (groups) more recipients delivered or read it.
  virtual void on_message_changed(const Message& message) { (void)message; }
  // A message is gone from history (it disappeared when its timer ran out).
  virtual void on_message_removed(ConversationId conversation, const std::string& message_id) {
    (void)conversation, (void)message_id;
  }
  // A conversation's settings changed: a group's name or members, a disappearing timer.
  virtual void on_conversation_changed(ConversationId conversation) { (void)conversation; }
  // Someone started or stopped typing in a conversation. Stops by itself after 15 s without
  // a renewal.
  virtual void on_typing(ConversationId conversation, const std::string& account, bool typing) {
    (void)conversation, (void)account, (void)typing;
  }
  // A watched account went online or offline (last_seen_ms: when, rounded to the minute; 0
  // when unknown or hidden).
  virtual void on_presence(const std::string& account, bool online, uint64_t last_seen_ms) {
    (void)account, (void)online, (void)last_seen_ms;
  }
};

struct ClientOptions {
  // e.g. wss://relay.example.org/v1/ws. Plain ws:// (or http://) only to this machine:
  // localhost, 127.0.0.0/8 or [::1]; Client::create() refuses it for any other host.
  std::string relay_url;
  // DEVELOPMENT ONLY: lets relay_url be plain ws:// to another machine. Everything the client
  // and the relay exchange then crosses the network without TLS: this device's relay password
  // (whoever sees it can act as this device at the relay), who talks to whom and when, and
  // every blob and ciphertext. Content stays end-to-end encrypted. Never set it in a release.
  bool dangerously_allow_plaintext_relay = false;
  // Where listener calls run. Empty: a thread of the Client's own. A Qt app passes a function
  // that posts to its GUI thread (e.g. QMetaObject::invokeMethod with Qt::QueuedConnection).
  std::function<void(std::function<void()>)> executor;
  std::string device_name;  // shown in the account's device list (stored encrypted)
  // Delivered receipts are batched for this long before they go out.
  std::chrono::milliseconds receipt_delay{250};
  // Connection timing (protocol.md 3.3, 3.4); tests shorten them.
  std::chrono::milliseconds ping_interval{30'000};
  std::chrono::milliseconds idle_timeout{90'000};
  // Reconnecting: the first wait, doubling (with jitter over its upper half) up to the last;
  // back to the first once a connection has had a request answered.
  std::chrono::milliseconds backoff_initial{1'000};
  std::chrono::milliseconds backoff_max{30'000};
  std::chrono::milliseconds request_timeout{30'000};
  std::chrono::hours signed_prekey_rotation{24 * 7};
  // How long after sending a message its author may still delete it for everyone.
  std::chrono::hours delete_window{48};
  uint32_t prekey_batch = 100;  // one-time prekeys uploaded at registration and on refill
  // Diagnostic lines for a log (retries, failures, reconnects). Never message content, keys
  // or secrets. Called from the client's internal threads; keep it quick.
  std::function<void(const std::string& line)> log;
};

class SOTTO_API Client {
 public:
  // Takes the profile. Nothing talks to the relay until register_account(), finish_link() or
  // connect().
  static Result<std::unique_ptr<Client>> create(std::unique_ptr<Profile> profile,
                                                ClientOptions options);
  ~Client();  // disconnects; everything already accepted stays in the profile
  Client(const Client&) = delete;
  Client& operator=(const Client&) = delete;

  void set_listener(std::shared_ptr<ClientListener> listener);

  // ---- account ----
  // Creates an account with `handle` (3..32 of a-z 0-9 _ . starting with a letter; a leading
  // '@' and capitals are accepted) and this device as its first device, then connects.
  // kConflict when the handle is taken, kInvalidArgument for a bad handle. `invite`: a token
  // from the relay's operator, needed when the relay's registration is closed (kForbidden
  // without one, or with one that is unknown, used up or expired).
  Result<AccountInfo> register_account(const std::string& handle, const std::string& invite = {});
  // A new device joining an existing account, step 1: opens a link channel at the relay and
  // returns what to show the user. Step 2: finish_link() waits until an existing device of the
  // account approved it, then creates this device and connects.
  Result<LinkInvite> start_link();
  Result<AccountInfo> finish_link(std::chrono::milliseconds timeout);
  // On an existing device: approve a joining device from its invite text (typed) or URI
  // (scanned). The text form is checked against the key the relay returns; a mismatch is
  // kInvalidSignature and nothing is sent.
  Status approve_link(const std::string& invite_text_or_uri);
  // kInvalidState before registration or linking.
  Result<AccountInfo> account() const;
  Result<std::vector<DeviceInfo>> devices();
  // Unlinks a device of this account: the relay forgets its credentials and queue and closes
  // its connection, and it reports kLoggedOut. This device's own id is unlink_this_device().
  Status remove_device(uint32_t device_id);
  // Takes this device out of its account (as "Log out" / "Unlink" in a messenger's settings).
  // The relay forgets its credentials and queue; the state turns kLoggedOut and stays so, and
  // the profile keeps its history, readable but never connected again (to chat again, open a
  // new profile and link it). The app may then close the Client and erase the profile with
  // Profile::erase(). kForbidden when this is the account's only device: delete_account().
  Status unlink_this_device();
  // Deletes the account at the relay: every device (each of them turns kLoggedOut), their
  // queues and prekeys, and the handle, which anyone may register again. Messages already
  // sent stay with their recipients. Cannot be undone. Afterwards as unlink_this_device().
  Status delete_account();

  // ---- connection ----
  // Starts the background connection of a registered device. Nothing to do while it is
  // connected or connecting (register_account() and finish_link() connect by themselves);
  // while it waits to try again after a failure, it tries at once (an app back from the
  // background calls it).
  Status connect();
  // Stops it; the outbox keeps what was not sent yet.
  void disconnect();
  ConnectionState connection_state() const;
  // Waits until the state is kOnline (connected and up to date) or the timeout passes.
  bool wait_online(std::chrono::milliseconds timeout) const;

  // ---- contacts and conversations ----
  // Looks the handle up at the relay and remembers the contact.
  Result<Contact> add_contact(const std::string& handle);
  Result<std::vector<Contact>> contacts() const;
  // The 1:1 conversation with an account (created when missing).
  Result<ConversationId> direct_conversation(const std::string& account);
  Result<std::vector<Conversation>> conversations() const;  // most recent activity first
  Result<Conversation> conversation(ConversationId id) const;

  // ---- messages ----
  // Queues a text message and returns its id. It is in history (kPending) when this returns.
  // `text` is UTF-8 (kInvalidArgument otherwise, and nothing is stored), at most 16 KiB.
  Result<std::string> send_text(ConversationId conversation, const std::string& text);
  // A page of history, newest first. `cursor` empty for the newest page.
  Result<MessagePage> messages(ConversationId conversation, const std::string& cursor = {},
                               uint32_t limit = 50) const;
  Result<Message> message(ConversationId conversation, const std::string& message_id) const;
  // Delivered / read receipts of an outgoing message, one per recipient account.
  Result<std::vector<Receipt>> receipts(ConversationId conversation,
                                        const std::string& message_id) const;
  // Marks incoming messages up to and including `up_to_message_id` read, tells this account's
  // other devices, and sends read receipts to the authors (unless turned off).
  Status mark_read(ConversationId conversation, const std::string& up_to_message_id);
  // Read receipts on or off (on by default). Delivered receipts are always sent.
  Status set_read_receipts(bool enabled);

  // Edits an own text message (within 24 hours of sending it); every device of every member
  // shows the new text, and the old one is gone from history and from the search index.
  Status edit_message(ConversationId conversation, const std::string& message_id,
                      const std::string& new_text);
  // Deletes an own message for everyone (within ClientOptions::delete_window): every device
  // of every member removes its text and attachments and shows that it was deleted.
  Status delete_for_everyone(ConversationId conversation, const std::string& message_id);
  // Messages in this conversation disappear `seconds` after they were read (on the sender's
  // devices, after they were sent); 0 turns it off. Applies to every member's devices.
  Status set_disappearing_timer(ConversationId conversation, uint32_t seconds);

  // ---- files ----
  // Encrypts the file, uploads it to the relay and queues the message that carries its key.
  // Blocks during the upload (call it off the GUI thread). kTooLarge before anything is sent
  // when the file is over the relay's limit; kCancelled when `cancel` turned true.
  Result<std::string> send_file(ConversationId conversation, const std::filesystem::path& file,
                                const FileOptions& options = {},
                                const TransferProgress& progress = {},
                                const std::atomic<bool>* cancel = nullptr);
  // Downloads attachment `index` of a message (resuming a download that was interrupted) and
  // keeps it, still encrypted, in the profile once the whole blob matched its digest and
  // decrypted: Attachment::stored turns true (on_message_changed). Nothing to do when it is
  // stored already. kInvalidMessage when the blob was altered (nothing is kept). Blocks; call
  // it off the GUI thread.
  Status download_attachment(ConversationId conversation, const std::string& message_id,
                             uint32_t index, const TransferProgress& progress = {},
                             const std::atomic<bool>* cancel = nullptr);
  // Decrypts a stored attachment into `destination`, a file the app chose (where the user
  // saves it, or a temporary file the app removes after use): the only way a file's plaintext
  // reaches a disk. Written beside it and renamed into place, so `destination` ends up whole
  // or untouched; an existing file there is replaced. kInvalidState when the attachment is
  // not stored yet (download_attachment() first), kInvalidArgument for a destination inside
  // the profile directory, kNotFound when its folder does not exist.
  Status save_attachment(ConversationId conversation, const std::string& message_id, uint32_t index,
                         const std::filesystem::path& destination,
                         const TransferProgress& progress = {},
                         const std::atomic<bool>* cancel = nullptr);
  // The plaintext of a stored attachment in memory (an image to show, say), for a file of at
  // most `max_bytes` (kTooLarge otherwise: save it instead).
  Result<Bytes> read_attachment(ConversationId conversation, const std::string& message_id,
                                uint32_t index, uint64_t max_bytes = 64ull << 20);

  // ---- groups ----
  // A new group with this account as its admin and `member_accounts` (found with
  // add_contact) as members; up to 1,000 members. The relay never learns who is in it.
  Result<ConversationId> create_group(const std::string& name,
                                      const std::vector<std::string>& member_accounts);
  Result<GroupInfo> group(ConversationId conversation) const;
  // Admins only (kForbidden otherwise). Added members read what is sent after they joined;
  // removed members cannot read anything sent after they left.
  Status add_group_members(ConversationId conversation, const std::vector<std::string>& accounts);
  Status remove_group_members(ConversationId conversation,
                              const std::vector<std::string>& accounts);
  Status rename_group(ConversationId conversation, const std::string& name);
  Status set_group_admin(ConversationId conversation, const std::string& account, bool admin);
  // Any member may leave.
  Status leave_group(ConversationId conversation);

  // ---- typing and presence ----
  // Tells the conversation's members who are online right now; never stored or queued.
  // Call with true on keystrokes (it is throttled) and false when the user stops or sends.
  Status set_typing(ConversationId conversation, bool typing);
  // The conversations open on screen: their members' presence is reported through
  // on_presence until the next call (an empty list stops it).
  Status watch_presence(const std::vector<ConversationId>& conversations);
  // Others see this account offline with no last-seen time while hidden.
  Status set_presence_hidden(bool hidden);

  // ---- wake-ups ----
  // Where the relay wakes this device when a message (not a receipt or typing) is queued for
  // it while it is offline: the URL the platform's push service or a UnifiedPush distributor
  // gave the app (APNs and FCM through a gateway of that shape). The relay POSTs
  // {"sotto":"wake"} there, nothing else (several messages in a row wake once); the app then
  // opens its Client and connects. Call it whenever the platform hands out a new URL; the
  // relay keeps it until clear_push_endpoint(), a new one, or the device's removal. Asks the
  // relay: kUnavailable while offline (call it again once online); kRelayRejected for a URL
  // that is not absolute https (plain http only where the relay's operator allows it) or is
  // longer than 2048 bytes; kForbidden when the operator does not allow that host.
  Status set_push_endpoint(const std::string& url);
  Status clear_push_endpoint();

  // ---- search (sotto/Search.h) ----
  Result<SearchPage> search(const SearchQuery& query) const;

  // ---- safety ----
  Result<SafetyNumber> safety_number(const std::string& account) const;
  // Accepts a contact's changed identity key: messages waiting for it are sent, held incoming
  // messages are decrypted.
  Status accept_identity(const std::string& account);
  // The user compared the safety number with `account` (in person, or by scanning its code,
  // Profile::verify_scanned()) and marks it verified, or takes that back. A verification
  // holds for that number only: when the contact's identity key changes, verified() is
  // false again until the user compares the new number.
  Status set_verified(const std::string& account, bool verified);
  Result<bool> verified(const std::string& account) const;

  // The profile underneath (for search, passphrase changes and the like).
  Profile& profile();

 private:
  friend struct ClientAccess;  // the SDK's own tests reach the inside (sdk/src/ClientImpl.h)
  struct Impl;
  explicit Client(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace sotto
