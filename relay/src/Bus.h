// The message bus between relay nodes of a cluster (cluster mode: --bus). A single relay has
// none. The bus holds nothing that must survive: which node holds each device's connection
// (claims that expire unless their node renews them), link channels in flight, and messages
// between nodes. When it is lost, nodes poll their devices' queues in the store until it is
// back, and then announce their devices again; nothing stored is lost.
//
// Threading: every call is thread-safe and returns at once; callbacks and handlers run on the
// bus's own threads and must only post work elsewhere (to a connection's strand).
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "Config.h"
#include "sotto/Result.h"

namespace sotto::relay {

class Bus {
 public:
  struct Handlers {
    // A message for this node (cluster.proto's NodeMessage, serialized).
    std::function<void(const std::string& message)> message;
    // A presence update (wire.PresenceUpdate, serialized) about an account this node listens to.
    std::function<void(const std::string& account, const std::string& update)> presence;
    // The connection to the bus was lost (false) or is back (true). While it is lost, nothing
    // reaches other nodes: the relay polls its devices' queues instead.
    std::function<void(bool up)> state;
    // A device's claim ran out without its node releasing it (the node died): presence may
    // have changed.
    std::function<void(const std::string& device_key)> expired;
  };

  // A link channel as another node opened it.
  struct LinkInfo {
    std::string node;
    std::string ephemeral_key;
    uint64_t expires_at_ms = 0;
    bool approved = false;
  };

  virtual ~Bus() = default;

  // This node's id (--node-id): the name of its channel, and the owner of its claims.
  virtual const std::string& node() const = 0;
  virtual void start(Handlers handlers) = 0;
  virtual void stop() = 0;
  virtual bool up() const = 0;

  // Every `done` below gets nullopt when the bus could not answer (it is down): the caller
  // must then not conclude anything about other nodes. While the bus is down, `done` runs at
  // once, in the caller's thread.

  // Records that `device_key` (account id + device id) is connected here. Claims are renewed
  // while the node runs (and made again after the bus comes back) and expire a while after it
  // stops. The bus also keeps which devices of each account are connected anywhere, so that
  // an account's presence changes exactly once in the cluster.
  struct Claim {
    std::string before;          // the node that held the device ("" when none)
    bool account_online = false;  // the account had no device connected anywhere before
  };
  virtual void claim(const std::string& device_key, std::function<void(std::optional<Claim>)> done) = 0;
  // Forgets the claim, if it is still this node's; `done` gets whether that left the account
  // with no device connected anywhere.
  virtual void release(const std::string& device_key,
                       std::function<void(std::optional<bool> account_offline)> done) = 0;
  // After Handlers::expired: forgets the device as connected unless it was claimed again;
  // `done` as for release(). Every node hears an expiry; exactly one gets true.
  virtual void forget(const std::string& device_key,
                      std::function<void(std::optional<bool> account_offline)> done) = 0;
  // Whether each account has a device connected anywhere, in order.
  virtual void online(std::vector<std::string> accounts,
                      std::function<void(std::optional<std::vector<bool>>)> done) = 0;
  // The node that holds each device ("" when none), in order.
  virtual void locate(std::vector<std::string> device_keys,
                      std::function<void(std::optional<std::vector<std::string>> nodes)> done) = 0;
  // A NodeMessage to `node`'s channel.
  virtual void send(const std::string& node, std::string message) = 0;

  virtual void publish_presence(const std::string& account, std::string update) = 0;
  // Starts or stops listening to an account's presence (counted: as many stops as starts).
  virtual void listen_presence(const std::string& account, bool listen) = 0;

  // Link channels: a code unique in the cluster (`done(false)` when taken), looked up and
  // approved (at most once) from any node.
  virtual void link_open(const std::string& code, const std::string& ephemeral_key,
                         uint64_t expires_at_ms,
                         std::function<void(std::optional<bool> created)> done) = 0;
  // The channel, or a LinkInfo with an empty node when there is none.
  virtual void link_find(const std::string& code,
                         std::function<void(std::optional<LinkInfo>)> done) = 0;
  enum class Approval { kApproved, kAlreadyApproved, kNotFound };
  // Marks the channel approved unless it already was, is gone or expired; `done` gets the
  // outcome and the node that holds the channel.
  virtual void link_approve(
      const std::string& code, uint64_t now_ms,
      std::function<void(std::optional<std::pair<Approval, std::string>>)> done) = 0;
  virtual void link_close(const std::string& code) = 0;
};

// A bus over Redis 7 (hiredis): "redis://host:port" or "unix:/path/to/redis.sock".
// kInvalidArgument for an address it cannot read. Connecting happens in start(): a bus that
// cannot be reached yet starts as down and keeps trying.
Result<std::unique_ptr<Bus>> make_redis_bus(const std::string& address, const std::string& node,
                                            const Config& config);

}  // namespace sotto::relay
