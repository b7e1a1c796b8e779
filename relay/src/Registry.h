// What this relay node holds in memory about its connections: the connection of each device
// connected here, which devices of each account are connected here (and whether the account
// hides its presence), who here listens to each account's presence, the link channels opened
// here, and when each device was last woken.
//
// Threading: every call is thread-safe. One mutex guards it all, and it is a leaf: held for a
// few map operations, never while calling out (no Connection::post, no Bus call, no store
// job). Calls hand back copies (peers as shared_ptrs, channels and flags by value), which the
// caller acts on once the lock is released.
//
// One class serves a single relay and a cluster node alike. In a cluster, the Bus is the
// cluster-wide counterpart of this registry (claims say which node holds a device and
// whether an account is online anywhere; link codes are reserved there), and the Relay asks
// it beside this one (relay/Cluster.cpp, and `if (bus_)` where a flow differs). A local and a
// cluster implementation behind one interface were the other choice; they would have hidden
// that the bus answers later, on its own threads, while these answers are immediate and
// consistent under one lock, and the flows would have had to move into the registry.
#pragma once

#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <unordered_map>
#include <vector>

#include "sotto/Bytes.h"

namespace sotto::relay {

struct Peer;

class Registry {
 public:
  struct LinkChannel {
    std::weak_ptr<Peer> peer;  // the new device's unauthenticated socket
    Bytes ephemeral_key;
    uint64_t expires_at_ms = 0;
    bool approved = false;
    Bytes approved_by;
  };

  // ---- connections ----
  void add_unauthenticated(std::shared_ptr<Peer> peer);
  struct Attached {
    std::shared_ptr<Peer> replaced;  // the device's older connection here, to close
    bool came_online = false;        // no other device of the account was connected here
  };
  // An authenticated connection becomes its device's here, and the account's visibility is
  // `hidden`; forgets the device's last wake-up.
  Attached attach(const std::shared_ptr<Peer>& peer, bool hidden);
  struct Detached {
    // The accounts whose presence `peer` no longer listens to.
    std::vector<std::string> unsubscribed;
    bool went_offline = false;  // it was the account's last device connected here
    bool hidden = false;        // the account hid its presence
    bool still_here = false;    // a newer connection of the device took over here
  };
  // A closed connection leaves: its presence subscriptions, its link channel (`link_code`) if
  // unauthenticated, else its device. NB: on the peer's strand (`subscriptions` and
  // `link_code` are its Peer fields).
  Detached detach(const std::shared_ptr<Peer>& peer, const std::vector<Bytes>& subscriptions,
                  const std::string& link_code);
  // The device's connection here, or nullptr.
  std::shared_ptr<Peer> find(const std::string& device_key) const;
  bool connected(const std::string& device_key) const { return find(device_key) != nullptr; }
  // The account's connections here, but `except_device`'s.
  std::vector<std::shared_ptr<Peer>> account_peers(const Bytes& account,
                                                   uint32_t except_device = 0) const;
  // The account's devices connected here.
  std::vector<uint32_t> account_devices(const Bytes& account) const;
  // Every authenticated connection; with `unauthenticated`, every connection.
  std::vector<std::shared_ptr<Peer>> peers(bool unauthenticated = false) const;

  // ---- presence ----
  // What this node knows of an account's presence: `known` when a device of it is connected
  // here, `online` when it is and the account does not hide its presence.
  struct Seen {
    bool known = false;
    bool online = false;
  };
  // Replaces `peer`'s subscriptions `before` with `wanted`; returns what this node knows of
  // each wanted account, and the accounts it no longer listens to (in `unsubscribed`).
  std::vector<Seen> resubscribe(const std::shared_ptr<Peer>& peer, const std::vector<Bytes>& before,
                                const std::vector<Bytes>& wanted,
                                std::vector<std::string>& unsubscribed);
  std::vector<std::shared_ptr<Peer>> subscribers(const std::string& account) const;
  // The account's visibility, when a device of it is connected here; returns whether one is.
  bool set_hidden(const Bytes& account, bool hidden);
  // Hides the account from now on (it is deleted); returns whether it hid itself already.
  bool hide_for_good(const Bytes& account);

  // ---- link channels ----
  // A code no channel here has.
  std::string fresh_link_code() const;
  void open_link(const std::string& code, LinkChannel channel);
  std::optional<LinkChannel> find_link(const std::string& code) const;
  // Marks the channel approved by `by`; nullopt when there is none, else its socket (nullptr
  // when gone).
  std::optional<std::shared_ptr<Peer>> approve_link(const std::string& code, const Bytes& by);
  // Forgets the channel if `peer` still holds it.
  void close_link(const std::string& code, const std::shared_ptr<Peer>& peer);
  // Forgets the channel; nullopt when there is none, else its socket (nullptr when gone).
  std::optional<std::shared_ptr<Peer>> take_link(const std::string& code);
  // The codes of the channels expired at `now_ms`.
  std::vector<std::string> expired_links(uint64_t now_ms) const;

  // ---- wake-ups ----
  // Whether to wake the device now: false within `coalesce_ms` of its last wake-up.
  bool wake_due(const std::string& device_key, uint64_t now_ms, uint64_t coalesce_ms);
  // Forgets the wake-ups older than `coalesce_ms`.
  void sweep_wakes(uint64_t now_ms, uint64_t coalesce_ms);

 private:
  struct Online {
    std::set<uint32_t> devices;
    bool hidden = false;
  };

  mutable std::mutex mu_;                                           // guards everything below
  std::unordered_map<std::string, std::shared_ptr<Peer>> devices_;  // device key -> peer
  std::unordered_map<std::string, Online> online_;                  // account -> devices
  std::unordered_map<std::string, std::set<std::shared_ptr<Peer>>> subscribers_;
  std::unordered_map<std::string, LinkChannel> links_;
  std::unordered_map<std::string, uint64_t> last_wake_;  // device key -> ms
  std::set<std::shared_ptr<Peer>> unauthenticated_;
};

}  // namespace sotto::relay
