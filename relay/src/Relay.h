// The relay's protocol logic (protocol.md sections 3 to 10), free of any network code: the
// Server hands it parsed requests and connection events, and it answers through the
// Connection interface. State that must survive a restart goes through the StoreExecutor;
// connections, presence subscriptions and link channels live in memory.
//
// Threading: every call about one connection happens on that connection's strand (see
// Connection::post); what the node knows about its connections is in the Registry, under its
// own lock; storage jobs run on the writer thread and post their results back to the strand.
//
// Sources: Relay.cpp (construction, answers, upgrade, connections) and one file per section
// of the protocol in relay/: Accounts, Linking, Prekeys, Send, Presence, Push, Attachments,
// Cluster and Housekeeping.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <unordered_map>
#include <vector>

#include "Bus.h"
#include "Config.h"
#include "Metrics.h"
#include "RateLimiter.h"
#include "Registry.h"
#include "StoreExecutor.h"
#include "Validate.h"
#include "sotto/keys/Signal.h"
#include "sotto/proto/wire.pb.h"

namespace sotto::relay {

// One WebSocket as the logic sees it; implemented by the Server.
class Connection {
 public:
  virtual ~Connection() = default;
  // Runs `fn` on this connection's strand. Thread-safe.
  virtual void post(std::function<void()> fn) = 0;
  // NB: on the strand. Queues one serialized Frame for sending.
  virtual void write(std::shared_ptr<const std::string> frame) = 0;
  // NB: on the strand. Sends a close frame with `code` after what is queued, then ends.
  virtual void close(uint16_t code) = 0;
  // NB: on the strand. Request `id` has been answered (pipelining window).
  virtual void request_done(uint64_t id) = 0;
  // NB: on the strand. Moves the deadline of an unauthenticated socket (link channels).
  virtual void set_deadline(uint64_t at_ms) = 0;
  // NB: on the strand. Bytes queued for sending and not yet written.
  virtual uint64_t queued_bytes() const = 0;
  // NB: on the strand. Runs `fn` (on the strand) once the queue falls below `bytes`.
  virtual void when_below(uint64_t bytes, std::function<void()> fn) = 0;
};

// What the relay knows about one connection. Fields after the first block are touched only
// on the connection's strand.
struct Peer {
  std::weak_ptr<Connection> conn;
  std::string ip;
  bool authenticated = false;
  Bytes account;
  uint32_t device = 0;
  Bytes identity_key;
  std::string key;  // account + device, the registry key

  std::atomic<bool> closed{false};

  // Delivery (protocol.md 3.5 and 7.3).
  uint64_t last_pushed = 0;
  // Pushed and not yet acknowledged, ascending (pushes go out in sequence order): 8 bytes an
  // envelope, where a std::set node took 48, for up to max-unacked-envelopes per connection.
  std::vector<uint64_t> unacked;
  bool caught_up = false;
  bool fetching = false;
  bool missed_live = false;
  bool queue_empty_sent = false;
  bool prekeys_low_sent = false;
  bool waiting_drain = false;  // backlog held back until the write queue drains

  // Presence subscriptions of this connection.
  std::vector<Bytes> subscriptions;
  // Link channel opened by this (unauthenticated) socket.
  std::string link_code;
  // Per-connection frame bucket.
  double frame_tokens = -1;
  uint64_t frame_tokens_ms = 0;
};

// Sends wake-up pushes; implemented by the Server (HTTP client). `done` gets the final HTTP
// status, or 0 when every attempt failed.
class Pusher {
 public:
  virtual ~Pusher() = default;
  virtual void wake(const std::string& url, std::function<void(int status)> done) = 0;
};

// OP_SEND and OP_SEND_MULTI between their steps (relay/Send.cpp).
struct ParsedSend;
struct SendOutcome;

class Relay {
 public:
  using Clock = std::function<uint64_t()>;
  Relay(const Config& config, StoreExecutor& store, Metrics& metrics,
        std::shared_ptr<keys::Context> ctx, Clock clock = {});
  ~Relay();

  void set_pusher(Pusher* pusher) { pusher_ = pusher; }
  // Cluster mode: the bus between relay nodes (nullptr: a single relay). NB: set before serving;
  // the bus must outlive every call into this relay.
  void set_bus(Bus* bus) { bus_ = bus; }
  // What this relay does with what the bus brings: pass to Bus::start.
  Bus::Handlers bus_handlers();
  StoreExecutor& store() { return store_; }
  const Config& config() const { return config_; }
  uint64_t now_ms() const { return clock_(); }

  // ---- upgrade ----
  struct Auth {
    // kSuspended: valid credentials of an account the operator suspended (`reason`).
    enum Kind { kOk, kUnauthorized, kUnavailable, kSuspended } kind = kUnauthorized;
    std::string reason;
    Bytes account;
    uint32_t device = 0;
    Bytes identity_key;
    bool hidden = false;
  };
  // Checks credentials; `done` runs on the writer thread.
  void authenticate(std::string_view authorization, std::function<void(Auth)> done);
  // Per-address upgrade limit: 0 when allowed, else milliseconds to wait.
  uint64_t admit_upgrade(const std::string& ip);
  // Concurrent unauthenticated sockets per address.
  bool admit_unauthenticated(const std::string& ip);
  void release_unauthenticated(const std::string& ip);

  // ---- connections (on the connection's strand) ----
  std::shared_ptr<Peer> open(std::shared_ptr<Connection> conn, std::string ip, const Auth* auth);
  void on_request(const std::shared_ptr<Peer>& peer, wire::Request request);
  void on_closed(const std::shared_ptr<Peer>& peer);

  // ---- HTTP helpers ----
  uint64_t admit_download(const Bytes& account, uint32_t device);

  // Periodic housekeeping: link channel expiry, rate limiter sweep, storage expiry (every
  // minute). Thread-safe.
  void tick();
  // Stop accepting requests that need storage (they are answered UNAVAILABLE).
  void begin_shutdown() { shutting_down_ = true; }
  // Closes every registered connection with `code` (shutdown: 1001).
  void close_all(uint16_t code);
  std::filesystem::path attachment_path(const std::string& id) const;
  // Where uploads are written until complete: beside the blobs (a rename moves them in), and
  // in a cluster one folder per node, since a node clears its own at start.
  std::filesystem::path upload_tmp_dir() const;

 private:
  void answer(const std::shared_ptr<Peer>& peer, wire::Response response, int op);
  void refuse(const std::shared_ptr<Peer>& peer, uint64_t id, int op, const Refusal& r);
  void rate_limited(const std::shared_ptr<Peer>& peer, uint64_t id, int op, uint64_t retry_ms,
                    const char* which);
  // `cause`: the storage error, when there was one (a full disk gets its own message).
  void unavailable(const std::shared_ptr<Peer>& peer, uint64_t id, int op,
                   const Status* cause = nullptr);
  bool submit(const std::shared_ptr<Peer>& peer, uint64_t id, int op,
              std::function<Status(Store&)> work, std::function<void()> on_commit);
  bool frame_allowed(Peer& peer);

  void op_register(const std::shared_ptr<Peer>& p, wire::Request& r);
  void op_provision_open(const std::shared_ptr<Peer>& p, wire::Request& r);
  void op_provision_lookup(const std::shared_ptr<Peer>& p, wire::Request& r);
  void op_provision_approve(const std::shared_ptr<Peer>& p, wire::Request& r);
  void op_link_device(const std::shared_ptr<Peer>& p, wire::Request& r);
  void op_list_devices(const std::shared_ptr<Peer>& p, wire::Request& r);
  void op_remove_device(const std::shared_ptr<Peer>& p, wire::Request& r);
  void op_delete_account(const std::shared_ptr<Peer>& p, wire::Request& r);
  void op_lookup_account(const std::shared_ptr<Peer>& p, wire::Request& r);
  void op_upload_prekeys(const std::shared_ptr<Peer>& p, wire::Request& r);
  void op_get_prekey_count(const std::shared_ptr<Peer>& p, wire::Request& r);
  void op_get_bundles(const std::shared_ptr<Peer>& p, wire::Request& r);
  // Parses and checks the request, then one storage job checks the recipients' devices and
  // queues and enqueues; after the commit, route_sent takes the envelopes to their devices.
  void op_send(const std::shared_ptr<Peer>& p, wire::Request& r, bool multi);
  void forward_ephemeral(const std::shared_ptr<Peer>& p, uint64_t id, int op,
                         const ParsedSend& req);
  void route_sent(const std::shared_ptr<ParsedSend>& req, const std::shared_ptr<SendOutcome>& st);
  void op_ack(const std::shared_ptr<Peer>& p, wire::Request& r);
  void op_presence_subscribe(const std::shared_ptr<Peer>& p, wire::Request& r);
  void op_presence_visibility(const std::shared_ptr<Peer>& p, wire::Request& r);
  void op_set_push_endpoint(const std::shared_ptr<Peer>& p, wire::Request& r);
  void op_attachment_upload(const std::shared_ptr<Peer>& p, wire::Request& r);

  // Delivery.
  void deliver(const std::string& device_key, std::shared_ptr<const wire::Envelope> envelope);
  void push_envelope(Peer& peer, Connection& conn, const wire::Envelope& envelope);
  // NB: on the strand. Forwards an ephemeral envelope, or drops it when the socket is backed up.
  void push_ephemeral(Connection& conn, std::shared_ptr<const std::string> frame);
  void pump(const std::shared_ptr<Peer>& peer);
  // NB: on the strand. True when the write queue is too full for more envelopes: the peer
  // falls back to the stored queue and resumes when the socket drains.
  bool hold_back(const std::shared_ptr<Peer>& peer, Connection& conn);
  void maybe_prekeys_low(const std::shared_ptr<Peer>& peer, uint32_t remaining);
  void wake(const Bytes& account, uint32_t device, const std::string& url);

  // Presence and device lists.
  void presence_changed(const Bytes& account, wire::PresenceUpdate update);
  void push_to_account(const Bytes& account, std::shared_ptr<const std::string> frame,
                       uint32_t except_device = 0);
  void close_device(const std::string& device_key, uint16_t code);

  // Cluster mode. route() sends a NodeMessage to the node that holds `device_key`; `absent` runs
  // instead when no node does (true) or the bus cannot tell (false).
  void route(const std::string& device_key, std::string message,
             std::function<void(bool known)> absent = nullptr);
  // The envelopes (one per key) to the nodes that hold their devices; `offline` gets the keys
  // no node holds, or all when the bus cannot tell.
  void send_to_nodes(std::vector<std::string> keys,
                     std::vector<std::shared_ptr<const wire::Envelope>> envelopes,
                     std::function<void(const std::string& key)> offline);
  void on_bus_message(const std::string& message);
  void on_bus_state(bool up);
  void on_claim_expired(const std::string& device_key);
  // A presence update to this node's subscribers of `account`.
  void presence_to_subscribers(const std::string& account,
                               std::shared_ptr<const std::string> frame);
  // Every local device reads its queue from the store (the bus was lost, or is back).
  void pump_all_local();
  // Closes this node's connections of accounts an operator suspended (4003) or deleted (4001)
  // since the last look (Store::actions_since).
  void apply_operator_actions();
  void devices_changed(const Bytes& account);
  // Reads the total of queued envelopes into the queue-depth metric (a storage job).
  void refresh_queue_depth();
  std::shared_ptr<Peer> find_peer(const std::string& device_key);
  void end_link(const std::string& code, uint16_t close_code);

  const Config& config_;
  StoreExecutor& store_;
  Metrics& metrics_;
  std::shared_ptr<keys::Context> ctx_;
  Clock clock_;
  std::atomic<Pusher*> pusher_{nullptr};
  Bus* bus_ = nullptr;
  std::atomic<bool> shutting_down_{false};
  std::atomic<uint64_t> last_poll_ms_{0};  // while the bus is down: the last poll of all queues
  // Operator actions: the last applied, and the last look (tick() only).
  std::atomic<uint64_t> actions_seq_{0};
  uint64_t last_actions_ms_ = 0;
  std::atomic<bool> actions_polling_{false};

  // Rate-limit refusals not logged yet, per limit (rate_limited()); a leaf lock.
  struct Refusals {
    uint64_t count = 0;
    uint64_t next_log_ms = 0;
  };
  std::mutex refusals_mu_;
  std::unordered_map<std::string, Refusals> refusals_;

  // Lock order in the relay process, outermost first:
  //   The SqliteStore checkpointer's running_ -> SQLite's own locks and the log's. It is held
  //     for a whole WAL checkpoint, disk I/O included, by the checkpoint thread or, once the
  //     WAL is over its limit, by the writer thread, which then waits for a checkpoint under
  //     way: nothing else is taken or waited for under it.
  //   RedisBus's state_mu_ -> Registry::mu_, Asio's strand locks and the log's: the bus
  //     calls Handlers::state (on_bus_state) under it.
  //   No Bus call is made under any lock of the Relay or its Registry: RedisBus's sub_mu_ is
  //     held while writing to the subscriber socket (listen_presence), and a bus that is down
  //     runs `done` at once, in the caller's thread.
  // Every other lock is a leaf, held for a few operations and never while taking another or
  // waiting on storage, the network or another strand: Registry::mu_ (nothing is posted,
  // answered or sent under it: it hands back copies), StoreExecutor::mu_, RateLimiter::mu_,
  // ConcurrencyLimiter::mu_, refusals_mu_, the checkpointer's mu_, keys::Context's, the log's
  // (held for one write to stderr), RedisBus's other locks, and the Server's tracked_mu_,
  // uploads_mu_ and tls_mu_. A connection's destructor takes tracked_mu_, so no reference to
  // a connection is released under it; and no lock is held across a co_await (the coroutine
  // may resume on another thread).
  Registry registry_;
  std::atomic<uint64_t> last_expiry_ms_{0};  // tick()

  RateLimiter upgrade_ip_, register_ip_, provision_ip_, provision_lookup_account_, lookup_device_,
      bundles_device_, bundles_target_, send_device_, presence_device_, attachment_account_,
      attachment_bytes_, download_device_;
  ConcurrencyLimiter unauth_ip_;
};

std::string device_key(ByteView account, uint32_t device);

}  // namespace sotto::relay
