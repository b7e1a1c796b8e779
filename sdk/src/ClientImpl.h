// The inside of sotto::Client, shared by its source files: Client.cpp (the public API,
// connection, registration and linking), ClientInbound.cpp (received envelopes, receipts,
// session repair) and ClientOutbox.cpp (sending, retries, device lists).
//
// Thread rule: see the lock order at the top of Client::Impl and the comments on each group of
// members.
#pragma once

#include <sodium.h>

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <deque>
#include <functional>
#include <future>
#include <map>
#include <mutex>
#include <optional>
#include <set>
#include <thread>

#include "History.h"
#include "PeerContent.h"
#include "ProfileAccess.h"
#include "Provisioning.h"
#include "RelayConnection.h"
#include "SendMulti.h"
#include "Transport.h"
#include "Utf8.h"
#include "sotto/Client.h"
#include "sotto/ThreadName.h"
#include "sotto/keys/Bundle.h"
#include "sotto/keys/SafetyNumber.h"
#include "sotto/proto/content.pb.h"
#include "sotto/proto/wire.pb.h"

namespace sotto {

constexpr uint32_t kMaxSendMessages = 100;  // protocol.md 12
constexpr uint32_t kMaxAckSequences = 1000;
constexpr size_t kInboundBatch = 256;
constexpr uint64_t kInboundRetryFirstMs = 500;
// Handles are asked for this long after someone new shows up (so one batch of messages
// makes one round of lookups), at most kNamesPerRound per round; a round the relay could not
// answer is tried again after kNamesRetryMs.
constexpr uint64_t kNamesDelayMs = 200;
constexpr uint32_t kNamesPerRound = 50;
constexpr uint64_t kNamesRetryMs = 60'000;
constexpr uint64_t kInboundRetryMaxMs = 15'000;
constexpr uint64_t kAckRetryFirstMs = 500;
constexpr uint64_t kAckRetryMaxMs = 15'000;
constexpr uint32_t kPreKeyLowWater = 10;
constexpr uint64_t kResetInterval = 3600'000;  // one session reset per peer device per hour
constexpr uint64_t kResendWindow = 24 * 3600'000;
constexpr uint32_t kMaxText = 16 * 1024;
constexpr const char* kUnregistered = "unregistered";

inline Bytes bytes_of(const std::string& s) { return Bytes(s.begin(), s.end()); }
inline std::string str_of(ByteView b) { return std::string(b.begin(), b.end()); }
inline ByteView view_of(const std::string& s) { return as_bytes(s); }

inline Result<Bytes> parse_message_id(const std::string& hex) {
  Bytes out;
  if (hex.size() != 32 || !from_hex(hex, out))
    return make_error(ErrorCode::kInvalidArgument,
                      "a message id is 32 hex digits, as returned by send_text() or messages()");
  return out;
}

inline Result<Bytes> parse_account(const std::string& hex) {
  Bytes out;
  if (hex.size() != 32 || !from_hex(hex, out))
    return make_error(ErrorCode::kInvalidArgument,
                      "an account id is 32 hex digits (use add_contact() to find one by handle)");
  return out;
}

// protocol.md 2: 3..32 of a-z 0-9 _ . ; starts with a letter; no trailing '.', no "..".
inline Result<std::string> normalise_handle(std::string h) {
  if (!h.empty() && h.front() == '@') h.erase(0, 1);
  std::transform(h.begin(), h.end(), h.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  auto bad = [&](const std::string& why) {
    return make_error(ErrorCode::kInvalidArgument,
                      "'" + h + "' is not a valid handle: " + why +
                          " (3 to 32 of a-z, 0-9, '_' and '.', starting with a letter)");
  };
  if (h.size() < 3 || h.size() > 32) return bad("wrong length");
  if (h.front() < 'a' || h.front() > 'z') return bad("it must start with a letter");
  for (char c : h)
    if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_' || c == '.'))
      return bad("it has a character that is not allowed");
  if (h.back() == '.') return bad("it ends with '.'");
  if (h.find("..") != std::string::npos) return bad("it has '..'");
  return h;
}

// The profile could not write (a full disk, say): worth trying again later, unlike a message
// that can never be stored.
inline bool is_storage_trouble(ErrorCode c) {
  return c == ErrorCode::kStorageFull || c == ErrorCode::kStorageIo;
}

inline bool is_crypto_failure(ErrorCode c) {
  switch (c) {
    case ErrorCode::kInvalidMessage:
    case ErrorCode::kDuplicateMessage:
    case ErrorCode::kInvalidSignature:
    case ErrorCode::kUnknownKeyId:
    case ErrorCode::kNoSession:
    case ErrorCode::kUntrustedIdentity:
    case ErrorCode::kInvalidKey:
    case ErrorCode::kMalformedBundle:
    case ErrorCode::kLegacyMessage:
      return true;
    default:
      return false;
  }
}

inline Bytes serialize(const google::protobuf::MessageLite& m) {
  Bytes out(m.ByteSizeLong());
  m.SerializeToArray(out.data(), static_cast<int>(out.size()));
  return out;
}

inline void fill_keys(wire::SignedPreKey* out, const keys::SignedPreKey& spk) {
  out->set_id(spk.id);
  out->set_public_key(str_of(spk.public_key));
  out->set_signature(str_of(spk.signature));
  out->set_timestamp_ms(spk.timestamp_ms);
}

inline void fill_key(wire::OneTimePreKey* out, const keys::OneTimePreKey& k) {
  out->set_id(k.id);
  out->set_public_key(str_of(k.public_key));
}

// A request for `op` with its body field (number 100 + op) present, even when the body has no
// fields: the relay requires exactly that one body to be set.
inline wire::Request make_request(wire::Op op) {
  wire::Request r;
  r.set_op(op);
  const auto* field = wire::Request::descriptor()->FindFieldByNumber(100 + static_cast<int>(op));
  if (field) r.GetReflection()->MutableMessage(&r, field);
  return r;
}

// Events run after the transaction that caused them has committed.
using Event = std::function<void(ClientListener&)>;

struct Effects {
  std::vector<Event> events;
  bool kick_outbox = false;
  bool receipts_owed = false;
  bool purge = false;  // deleted or edited text: erase it from the search index soon
  // Attachments of messages deleted or gone: their files go once the transaction committed.
  std::vector<StoredAttachment> removed_files;
  // Group messages whose delivered/read counts moved: one on_message_changed each, with the
  // counts after the whole batch (see Impl::changed_counts).
  std::set<int64_t> counts_moved;
};

// A single thread that runs listener calls in order, when the app gave no executor.
class EventThread {
 public:
  EventThread() : thread_([this] { run(); }) {}
  ~EventThread() {
    {
      std::lock_guard lock(mu_);
      stop_ = true;
    }
    cv_.notify_all();
    thread_.join();
  }
  void post(std::function<void()> fn) {
    {
      std::lock_guard lock(mu_);
      queue_.push_back(std::move(fn));
    }
    cv_.notify_one();
  }

 private:
  void run() {
    name_this_thread("sotto-events");
    std::unique_lock lock(mu_);
    for (;;) {
      cv_.wait(lock, [&] { return stop_ || !queue_.empty(); });
      if (queue_.empty()) return;  // stopping and drained
      auto fn = std::move(queue_.front());
      queue_.pop_front();
      lock.unlock();
      fn();
      lock.lock();
    }
  }
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<std::function<void()>> queue_;
  bool stop_ = false;
  std::thread thread_;
};

// The Sync.sent transcript of a 1:1 message `dm` sent at `sent_ms` in `conv`: what this
// account's other devices get of a message one of its devices sent.
content::Content sent_transcript(const Conversation& conv, content::DataMessage dm,
                                 uint64_t sent_ms);

struct Client::Impl {
  // Threads: the app's (any public method), the loop thread `sotto-net` (RelayConnection's
  // callbacks: on_push, on_link_event, start_link's provision callback), the worker
  // `sotto-client` (worker_main and its tasks) and the event thread `sotto-events` or the app's
  // executor (listener calls).
  //
  // Locks and their order:
  //   parts.mu     the profile: every use of `history`, parts.db, parts.crypto and the search
  //                index, held for a whole transaction (txn(), locked()). Recursive, so a
  //                transaction may open another inside it. Under it only the profile's own
  //                locks are taken (keys::Context's, SQLite's), never one of the five below.
  //   listener_mu  `listener`.
  //   conn_mu      `conn`.
  //   mu           the worker's queues and due times (and the worker's waits on cv).
  //   state_mu     `state` and `state_detail` (and waits on state_cv).
  //   link_mu      the linking state of a new device (and waits on link_cv).
  // These five are leaves: nothing is taken while one is held (not parts.mu, not another of
  // them, not EventThread's or RelayConnection's locks), and each is held only for a few
  // operations on what it guards. So no thread ever holds two of the six. The loop thread
  // takes mu, state_mu, listener_mu and link_mu, and never parts.mu.
  //
  // None of the six may be held while
  //   - calling into the app: the listener and the executor (emit() copies the listener out of
  //     listener_mu and hands the events over with nothing held; a transaction collects its
  //     events in Effects and they are emitted after it committed), the log callback, and the
  //     release of the app's last reference to a listener;
  //   - waiting on the network or the loop thread: RelayConnection::call(), call_encoded() and
  //     stop() block until the loop thread has run, and its callbacks take the leaves above
  //     (so waiting under one of them can deadlock), and holding parts.mu across a round trip
  //     would stall every app call for up to request_timeout. Take what is needed under the
  //     lock, release it, then talk to the relay (ensure_sessions(), finish_link()).
  // Waiting on a condition variable releases its own lock, so state_cv and link_cv waits are
  // fine. The profile's clock (now()) is called under mu and parts.mu: it must not call into
  // the Client.
  std::unique_ptr<Profile> profile;
  ProfileParts parts;
  ClientOptions options;
  LibraryLogRoute library_log{options.log};  // libprotobuf's lines into options.log
  Clock clock;
  History history;

  // Declared before everything that posts to it and after what its callbacks use.
  std::unique_ptr<EventThread> event_thread;
  std::mutex listener_mu;
  std::shared_ptr<ClientListener> listener;

  net::EventLoop loop;
  std::mutex conn_mu;
  std::shared_ptr<RelayConnection> conn;  // the authenticated connection, once connected

  // Worker thread: inbound envelopes, the outbox, receipts and housekeeping.
  std::thread worker;
  std::mutex mu;
  std::condition_variable cv;
  std::deque<wire::Envelope> inbound;
  std::deque<std::function<void()>> tasks;
  std::atomic<bool> outbox_kick{false};  // also read without `mu` to cut a batch short
  bool stopping = false;
  uint64_t receipts_due_ms = 0;  // 0: none owed
  uint64_t outbox_due_ms = 0;    // 0: nothing waiting on a timer

  // Connection state for the app.
  mutable std::mutex state_mu;
  mutable std::condition_variable state_cv;
  ConnectionState state = ConnectionState::kOffline;
  std::string state_detail;

  // Worker-only state.
  std::set<uint32_t> own_devices;  // this account's other devices, as the relay last said
  bool own_devices_known = false;
  uint64_t purge_due_ms = 0;    // 0: no search purge pending
  uint64_t purge_mark = 0;      // history.inserted() when the worker last asked for a purge
  uint64_t rebuild_due_ms = 0;  // 0: no search index rebuild to carry on
  // Handles to ask the relay for (resolve_names()): when (0: none), and accounts it does not
  // know (deleted), not asked again until the next start.
  uint64_t names_due_ms = 0;
  uint64_t names_mark = 0;  // history.shown_changes() when last looked at
  std::set<std::string> names_unknown;
  // A received envelope could not be stored: it and every later one wait in `inbound`, in
  // order, until then (0: not waiting); the wait doubles up to kInboundRetryMaxMs.
  uint64_t inbound_retry_ms = 0;
  uint64_t inbound_backoff_ms = 0;
  // Acks the relay refused (its storage was down) or did not answer: sent again at
  // ack_retry_ms (0: none waiting), the wait doubling up to kAckRetryMaxMs, and on the next
  // connection. Under `mu` (the loop thread adds to them).
  std::set<uint64_t> acks_unconfirmed;
  // The relay sequences of the last kDoneSequences envelopes this process stored (worker
  // thread only). One that comes again because its ack was lost is acked again and not
  // decrypted a second time: by then the session may have moved on past what libsignal still
  // tells from a broken one, and decrypting it would reset a healthy session.
  static constexpr size_t kDoneSequences = 8192;
  std::set<uint64_t> done_sequences;
  std::deque<uint64_t> done_order;
  uint64_t ack_retry_ms = 0;
  uint64_t ack_backoff_ms = 0;
  std::map<ConversationId, uint64_t> typing_sent_ms;   // when STARTED last went out
  std::map<ConversationId, uint64_t> typing_until_ms;  // auto-stop of our own typing
  std::map<std::pair<ConversationId, std::string>, uint64_t> typing_seen_until_ms;
  std::vector<std::string> presence_watch;  // accounts watched
  // Group messages that did not decrypt are asked for again in one request per sender device
  // (failed_envelopes), at most every 2 s each: when each device was last asked, and
  // when the next round is due (0: none). Worker thread only.
  std::map<std::pair<std::string, uint32_t>, uint64_t> group_resend_asked_ms;
  uint64_t resend_asks_due_ms = 0;

  // Linking (new device side).
  std::mutex link_mu;
  std::condition_variable link_cv;
  std::shared_ptr<RelayConnection> link_conn;
  std::optional<LinkKeys> link_keys;
  std::string link_code;
  std::optional<wire::ProvisionPush> link_push;
  bool link_closed = false;

  Impl(std::unique_ptr<Profile> p, ClientOptions o);

  ~Impl();

  uint64_t now() const { return clock(); }
  void diagnose(const std::string& line) const {
    if (options.log) options.log(line);
  }
  // A Status nobody can act on where it arises (a step after the real work is done, a best
  // effort): never dropped silently, it goes to the diagnostics.
  void log_failure(const Status& s, const char* what) const {
    if (!s.ok()) diagnose(std::string(what) + ": " + s.error().message);
  }

  // ---------------------------------------------------------------------------------------
  // Plumbing
  // ---------------------------------------------------------------------------------------

  template <class F>
  auto locked(F&& f) {
    std::lock_guard lock(parts.mu);
    return f();
  }

  // One transaction on the profile database, mutex held throughout.
  Status txn(const std::function<Status()>& body);

  void emit(std::vector<Event> events);
  void emit(Event e);

  void post_task(std::function<void()> fn);

  void kick_outbox();

  void owe_receipts();

  Result<AccountRow> registered_account();

  std::string self_account();
  uint32_t self_device();

  std::shared_ptr<RelayConnection> connection();

  ConnectionTiming timing() const;

  // A blocking request on the authenticated connection.
  Result<wire::Response> call(wire::Request r);

  void set_state(ConnectionState s, const std::string& detail);

  // ---------------------------------------------------------------------------------------
  // Connection
  // ---------------------------------------------------------------------------------------

  Status connect();

  void disconnect();

  // Loop thread.
  void on_link_event(const LinkEvent& e);

  // Loop thread: hand everything to the worker.
  void on_push(wire::Push p);

  // Worker thread, after each (re)connect.
  void on_connected();

  Status refresh_own_devices();

  Status apply_own_devices(const std::set<uint32_t>& ids);

  void on_devices_changed(const wire::DevicesChanged& dc);

  // ---------------------------------------------------------------------------------------
  // Prekeys
  // ---------------------------------------------------------------------------------------

  Status maintain_prekeys();

  Status refill_prekeys();

  // DeviceKeys for registration and linking: a new auth secret, the current signed prekey,
  // a fresh batch of one-time prekeys and the last-resort key. Caller holds the mutex.
  Result<wire::DeviceKeys> device_keys(const Bytes& auth_secret);

  // ---------------------------------------------------------------------------------------
  // Registration and linking
  // ---------------------------------------------------------------------------------------

  // An unauthenticated socket for registration or linking: one attempt, no reconnects.
  Result<std::shared_ptr<RelayConnection>> open_anonymous(RelayConnection::PushCallback on_push);

  // The relay's clock, so signed timestamps are inside its window even if ours is off.
  Result<uint64_t> relay_time(RelayConnection& c);

  Result<AccountInfo> register_account(const std::string& wanted, const std::string& invite);

  Result<LinkInvite> start_link();

  Result<AccountInfo> finish_link(std::chrono::milliseconds timeout);

  Status approve_link(const std::string& invite_text);

  Result<std::vector<DeviceInfo>> devices();

  Status remove_device(uint32_t device_id);

  // Removes this device from its account at the relay (kForbidden when it is the last one).
  Status unlink_this_device();

  // Deletes the account at the relay: every device, queue, prekey and the handle.
  Status delete_account();

  // After the relay removed this device or its account: marks the profile removed (it keeps
  // its history but never connects again), stops the connection and reports kLoggedOut.
  void logged_out(const std::string& detail);
  // OP_SET_PUSH_ENDPOINT: `url`, or clears it when empty.
  Status push_endpoint(const std::string& url);

  // ---------------------------------------------------------------------------------------
  // Contacts and sending
  // ---------------------------------------------------------------------------------------

  Result<Contact> add_contact(const std::string& wanted);

  // ---------------------------------------------------------------------------------------
  // Messages: sending, edits, deletes, timers, reading (ClientMessages.cpp)
  // ---------------------------------------------------------------------------------------

  struct Outgoing {
    content::DataMessage dm;  // message_id and timestamp are filled in when empty
    bool history = true;      // record it as a message (edits, deletes and timers are not)
    // Each file's pointer, and the encrypted copy this device keeps of it, if any.
    std::vector<std::pair<content::AttachmentPointer, std::optional<StoredBlob>>> files;
  };
  // Records `out` in history and the outbox in one transaction; the id of the message.
  Result<std::string> queue_data(ConversationId conversation, Outgoing out);
  // Caller holds the transaction.
  Status queue_data_locked(ConversationId conversation, Outgoing& out, const AccountRow& me,
                           int64_t* row_out);

  Result<std::string> send_text(ConversationId conversation, const std::string& text);

  Status mark_read(ConversationId conversation, const std::string& up_to);

  Status edit_message(ConversationId conversation, const std::string& message_id,
                      const std::string& text);
  Status delete_for_everyone(ConversationId conversation, const std::string& message_id);
  Status set_disappearing_timer(ConversationId conversation, uint32_t seconds);

  // Caller holds the transaction.
  Status enqueue_own_sync(const content::Content& c, uint64_t t);

  // A DataMessage in conversation `conv` from `author`: a new message, an edit, a delete or
  // a timer change. Inside the transaction.
  Status apply_message(ConversationId conv, const Address& author, bool outgoing,
                       const content::DataMessage& dm, uint64_t sort_ms, uint32_t recipients,
                       Effects& fx);
  Status apply_edit(ConversationId conv, const Address& author, const content::DataMessage& dm,
                    Effects& fx);
  Status apply_delete(ConversationId conv, const Address& author, const content::DataMessage& dm,
                      Effects& fx);
  void emit_changed(int64_t row, Effects& fx);

  // Removes messages whose timer ran out; worker thread.
  void sweep_expired();
  // Erases deleted text from the search index's pages once the app has been quiet a moment.
  void schedule_purge();
  // A search index rebuild (after an upgrade that changed the index, or found damage) goes on
  // one batch at a time while the worker is idle.
  void schedule_rebuild(uint64_t delay_ms);
  void continue_rebuild();

  // ---- typing (worker thread) ----
  Status set_typing(ConversationId conversation, bool typing);
  void send_typing(ConversationId conversation, bool started);
  void apply_typing(const Address& from, const content::Typing& t, Effects& fx);
  void expire_typing();

  // ---- names (worker thread) ----
  // Asks the relay for the handle of each account shown without one (someone who wrote
  // first, a group member someone else added) and records it as a contact, so people are
  // shown by name and never by account id; on_conversation_changed for what shows them.
  void resolve_names();

  // ---- presence ----
  Status watch_presence(const std::vector<ConversationId>& conversations);
  Status set_presence_hidden(bool hidden);
  void subscribe_presence();        // worker thread
  void send_presence_visibility();  // worker thread

  // ---------------------------------------------------------------------------------------
  // Groups (ClientGroups.cpp)
  // ---------------------------------------------------------------------------------------

  Result<ConversationId> create_group(const std::string& name,
                                      const std::vector<std::string>& accounts);
  Result<GroupInfo> group_info(ConversationId conversation);
  // Makes the next revision of a group with `change`, applies it here and queues it for every
  // member, old and new. `leaving`: this account removes itself (allowed to any member).
  Status change_group(ConversationId conversation,
                      const std::function<Status(content::GroupUpdate&)>& change, bool leaving);
  // Inside the transaction.
  Status apply_group_update(const Address& from, const content::GroupUpdate& u, ByteView raw,
                            uint64_t sort_ms, Effects& fx);
  Status apply_sender_key_distribution(const Address& from, const content::SenderKeyDistribution& d,
                                       Effects& fx);
  Status decrypt_group_and_apply(const Address& from, const wire::Envelope& env, Effects& fx);
  // Sessions with every device of each account that has none yet, fetched in parallel. An
  // account whose identity key changed gets none (the user must accept the new safety number
  // first) and is added to `in_doubt` when given.
  Status ensure_sessions(const std::vector<std::string>& accounts,
                         std::vector<std::string>* in_doubt = nullptr);
  // Records that `item` (a group send) reached none of `accounts`' devices because their
  // safety numbers are in doubt: accept_identity() sends it to them again.
  Status owe_group_send(const OutboxItem& item, const std::vector<std::string>& accounts);
  // This account's other devices, with sessions (fetched when missing).
  Result<std::vector<Address>> own_other_devices();
  // kConflict when the devices changed meanwhile (send again); accounts found in doubt then
  // are added to `in_doubt`.
  Status distribute_sender_key(ConversationId conversation, ByteView group_id,
                               const std::vector<Address>& devices,
                               std::vector<std::string>* in_doubt);

  // ---------------------------------------------------------------------------------------
  // Files (ClientFiles.cpp)
  // ---------------------------------------------------------------------------------------

  Result<std::string> send_file(ConversationId conversation, const std::filesystem::path& file,
                                const FileOptions& file_options, const TransferProgress& progress,
                                const std::atomic<bool>* cancel);
  Status download_attachment(ConversationId conversation, const std::string& message_id,
                             uint32_t index, const TransferProgress& progress,
                             const std::atomic<bool>* cancel);
  Status save_attachment(ConversationId conversation, const std::string& message_id, uint32_t index,
                         const std::filesystem::path& destination, const TransferProgress& progress,
                         const std::atomic<bool>* cancel);
  Result<Bytes> read_attachment(ConversationId conversation, const std::string& message_id,
                                uint32_t index, uint64_t max_bytes);
  Result<uint64_t> attachment_limit();  // from the relay's ServerInfo
  net::Headers auth_headers();
  std::filesystem::path attachments_dir() const;
  std::filesystem::path blobs_dir() const;  // the encrypted files this device keeps
  std::filesystem::path plain_copy_path(const std::string& stored) const;
  Result<StoredAttachment> find_attachment(ConversationId conversation,
                                           const std::string& message_id, uint32_t index);
  // The encrypted copy of an attachment (its `name` a full path), once it is stored.
  Result<StoredBlob> stored_blob(ConversationId conversation, const std::string& message_id,
                                 uint32_t index);
  Status forget_damaged(ConversationId conversation, const std::string& message_id, uint32_t index,
                        Error error);
  // Removes the files of attachments whose rows are gone; after the commit that removed them.
  void remove_files(const std::vector<StoredAttachment>& files);
  // Before the worker starts, so nothing is in flight: removes unfinished uploads and the
  // encrypted files no row names.
  void sweep_attachment_files();
  // Encrypts the plain copy an earlier version kept of one attachment, records it, then
  // overwrites and removes the plain copy. Any thread; one at a time (plain_copy_mu).
  Status encrypt_plain_copy(int64_t row, uint32_t index);
  // Worker, while idle: one plain copy per call. true when more may wait.
  bool continue_plain_copies();
  std::mutex plain_copy_mu;
  std::set<std::pair<int64_t, uint32_t>> plain_copy_failed;  // worker only; retried next start
  uint64_t plain_copies_due_ms = 0;                          // under `mu`; 0: none

  // ---------------------------------------------------------------------------------------
  // Worker
  // ---------------------------------------------------------------------------------------

  void worker_main();

  // ---------------------------------------------------------------------------------------
  // Inbound
  // ---------------------------------------------------------------------------------------

  void process_inbound(std::vector<wire::Envelope>& envs);
  // After a wait for storage (inbound_retry_ms): a received envelope was stored again.
  void inbound_stored_again();

  // Acks are sent until the relay confirms them: an envelope whose ack is lost while the
  // connection stays up comes again only on the next connection, perhaps after more of the
  // conversation than the session's ratchet can still recognise as a duplicate.
  void send_acks(const std::vector<uint64_t>& acks);
  // The relay refused or did not answer an ack of `sequences`: try again later.
  void ack_unconfirmed(const std::vector<uint64_t>& sequences);

  // Inside a transaction, mutex held. Errors: crypto failures of the envelope (the caller
  // handles them outside the transaction) or storage errors.
  Status decrypt_and_apply(const wire::Envelope& env, Effects& fx);

  Status apply_content(const Address& from, const wire::Envelope& env, const content::Content& c,
                       Effects& fx);

  Status apply_data(const Address& from, const wire::Envelope& env, const content::DataMessage& dm,
                    Effects& fx);

  Status decrypt_pairwise_and_apply(const Address& from, const wire::Envelope& env, Effects& fx);

  Status apply_receipt(const Address& from, const content::Receipt& r, Effects& fx);

  Status apply_sync(const Address& from, const wire::Envelope& env, const content::Sync& s,
                    Effects& fx);

  Status apply_session_reset(const Address& from, const content::SessionReset& r, Effects& fx);

  // Outside any transaction: what to do with an envelope that did not decrypt.
  Status handle_failure(const wire::Envelope& env, const Error& err, Effects& fx);

  Status add_notice(ConversationId conv, const std::string& text, uint64_t sort_ms, Effects& fx);

  Status hold_untrusted(const Address& from, const wire::Envelope& env, Effects& fx);
  // Worker: asks each device owing group messages for them again (see group_resend_asked_ms).
  void ask_resends();

  // Mutex held.
  void identity_changed_event(const std::string& account, const Bytes& new_key, Effects& fx);

  // ---------------------------------------------------------------------------------------
  // Receipts owed
  // ---------------------------------------------------------------------------------------

  void flush_receipts();

  // ---------------------------------------------------------------------------------------
  // Outbox
  // ---------------------------------------------------------------------------------------

  enum class Outcome { kDone, kRetry, kStop };

  void run_outbox();

  struct Target {
    Address address;
    const Bytes* content;
  };

  Outcome retry_later(const OutboxItem& item, const Error& e, uint64_t delay_ms);

  Outcome fail_item(const OutboxItem& item, const Error& e);

  // Starts sessions from the relay's bundles for `account` (all devices when `devices` is
  // empty). kUntrustedIdentity when the account's identity key changed.
  Status fetch_sessions(const std::string& account, const std::vector<uint32_t>& devices);

  Outcome send_item(const OutboxItem& item);

  Outcome on_send_error(const OutboxItem& item, const Error& e);

  // With `in_doubt`, an account whose identity key changed is added to it instead of failing
  // the whole send with kUntrustedIdentity (group sends go on without that member).
  Status apply_mismatch(const wire::DeviceMismatch& mismatch, const std::string& me,
                        std::vector<std::string>* in_doubt = nullptr);
  // Turns fx.counts_moved into on_message_changed events. Inside the batch's transaction.
  void changed_counts(Effects& fx);

  // The registration id a device's session was built for. A device keeps its id for life
  // (device ids are never reused), so it is cached; STALE_DEVICES drops an entry. Mutex held.
  Result<uint32_t> registration_id(const Address& device);
  std::map<std::pair<std::string, uint32_t>, uint32_t> registration_ids;  // under parts.mu
  uint64_t registration_epoch = 0;  // changes whenever an entry is dropped; under parts.mu

  Outcome item_sent(const OutboxItem& item, uint64_t server_ms);

  // The encoded recipients of a group's last SEND_MULTI, kept for up to
  // kRecipientCacheGroups groups (the first one cached goes first). Worker thread only.
  GroupRecipients& group_recipients(ConversationId group);
  std::map<ConversationId, GroupRecipients> recipient_cache;
  std::deque<ConversationId> recipient_cache_order;

  // Group sends (ClientGroups.cpp).
  // Queues a Sync answer for one of this account's own devices. In a transaction.
  Status enqueue_sync_reply(const Address& device, const content::Content& reply, Effects& fx);
  // Saves a group's snapshot `raw` (of `u`) and its members. When members left, this
  // device's sender key is replaced and theirs forgotten; when this account is no longer in
  // it, nobody holds this device's key any more. `left_revision`: the stored row's (0 for a
  // new group); it becomes u's revision when u removes this account. Returns who left. In a
  // transaction.
  Result<std::vector<std::string>> store_group_state(ConversationId conv,
                                                     const content::GroupUpdate& u, ByteView raw,
                                                     const std::set<std::string>& old_members,
                                                     uint32_t left_revision);
  // A linked device's SyncRequest GROUPS: every group this account is in, as snapshots, in
  // as many Sync messages as they need (the last one says `complete`). In a transaction.
  Status reply_groups(const Address& device, Effects& fx);
  // Queues this account's latest change of each group `account` is in, to `account` alone: a
  // group update skips a member whose safety number changed, so once the user accepts it,
  // the member catches up. In a transaction.
  Status resend_group_states(const std::string& account);
  // One snapshot from this account's own device (Sync.groups): a group this device did not
  // know is taken as it is; a known one moves to a higher revision. In a transaction.
  Status apply_group_sync(const content::GroupUpdate& u, Effects& fx);
  // Group messages that arrived before their group was known here (History's held group
  // messages), applied now that it is: the sender's membership is checked as for any. In a
  // transaction.
  Status apply_held_group_messages(ByteView group_id, Effects& fx);
  Outcome send_group_update(const OutboxItem& item);
  Outcome send_group_data(const OutboxItem& item);
  // Sends one SEND in batches of at most 100 device messages (an account's devices are never
  // split). The relay's answer to the first batch that is not OK, or OK.
  Result<wire::Response> send_batched(const Bytes& message_id,
                                      std::vector<wire::OutgoingMessage> messages, bool urgent,
                                      bool targeted);

  // ---------------------------------------------------------------------------------------
  // Identity
  // ---------------------------------------------------------------------------------------

  Status accept_identity(const std::string& account);

  // Declared last: callbacks from the loop check it before touching anything.
  std::shared_ptr<int> alive_ = std::make_shared<int>(0);
};

// For the SDK's own tests and fuzz targets, as ProfileAccess is for a Profile: they hand a
// Client received envelopes without a relay, through the worker thread that receives them from
// one (see tests/fuzz/ContentWorld.h).
struct ClientAccess {
  static Client::Impl& impl(Client& client) { return *client.impl_; }
};

}  // namespace sotto
