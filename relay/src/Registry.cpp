#include "Registry.h"

#include <utility>

#include "Relay.h"
#include "Validate.h"

namespace sotto::relay {
namespace {

std::string account_key(ByteView account) { return std::string(as_chars(account)); }

}  // namespace

// ---- connections ----

void Registry::add_unauthenticated(std::shared_ptr<Peer> peer) {
  std::lock_guard lock(mu_);
  unauthenticated_.insert(std::move(peer));
}

Registry::Attached Registry::attach(const std::shared_ptr<Peer>& peer, bool hidden) {
  Attached a;
  std::lock_guard lock(mu_);
  auto& slot = devices_[peer->key];
  a.replaced = std::move(slot);
  slot = peer;
  Online& on = online_[account_key(peer->account)];
  a.came_online = on.devices.empty();
  on.devices.insert(peer->device);
  on.hidden = hidden;
  last_wake_.erase(peer->key);
  return a;
}

Registry::Detached Registry::detach(const std::shared_ptr<Peer>& peer,
                                    const std::vector<Bytes>& subscriptions,
                                    const std::string& link_code) {
  Detached d;
  std::lock_guard lock(mu_);
  for (const auto& a : subscriptions) {
    auto it = subscribers_.find(account_key(a));
    if (it == subscribers_.end()) continue;
    it->second.erase(peer);
    if (it->second.empty()) subscribers_.erase(it);
    d.unsubscribed.push_back(account_key(a));
  }
  if (!peer->authenticated) {
    unauthenticated_.erase(peer);
    if (!link_code.empty()) links_.erase(link_code);
    return d;
  }
  auto it = devices_.find(peer->key);
  if (it != devices_.end() && it->second == peer) {
    devices_.erase(it);
    auto on = online_.find(account_key(peer->account));
    if (on != online_.end()) {
      d.hidden = on->second.hidden;
      on->second.devices.erase(peer->device);
      if (on->second.devices.empty()) {
        d.went_offline = true;
        online_.erase(on);
      }
    }
  } else {
    d.still_here = it != devices_.end();
  }
  return d;
}

std::shared_ptr<Peer> Registry::find(const std::string& device_key) const {
  std::lock_guard lock(mu_);
  auto it = devices_.find(device_key);
  return it == devices_.end() ? nullptr : it->second;
}

std::vector<std::shared_ptr<Peer>> Registry::account_peers(const Bytes& account,
                                                           uint32_t except_device) const {
  std::vector<std::shared_ptr<Peer>> peers;
  std::lock_guard lock(mu_);
  auto on = online_.find(account_key(account));
  if (on == online_.end()) return peers;
  for (uint32_t d : on->second.devices) {
    if (d == except_device) continue;
    auto it = devices_.find(device_key(account, d));
    if (it != devices_.end()) peers.push_back(it->second);
  }
  return peers;
}

std::vector<uint32_t> Registry::account_devices(const Bytes& account) const {
  std::lock_guard lock(mu_);
  auto on = online_.find(account_key(account));
  if (on == online_.end()) return {};
  return {on->second.devices.begin(), on->second.devices.end()};
}

std::vector<std::shared_ptr<Peer>> Registry::peers(bool unauthenticated) const {
  std::vector<std::shared_ptr<Peer>> peers;
  std::lock_guard lock(mu_);
  peers.reserve(devices_.size() + (unauthenticated ? unauthenticated_.size() : 0));
  for (const auto& [k, p] : devices_) peers.push_back(p);
  if (unauthenticated) peers.insert(peers.end(), unauthenticated_.begin(), unauthenticated_.end());
  return peers;
}

// ---- presence ----

std::vector<Registry::Seen> Registry::resubscribe(const std::shared_ptr<Peer>& peer,
                                                  const std::vector<Bytes>& before,
                                                  const std::vector<Bytes>& wanted,
                                                  std::vector<std::string>& unsubscribed) {
  std::vector<Seen> seen;
  seen.reserve(wanted.size());
  std::lock_guard lock(mu_);
  for (const auto& a : before) {
    auto it = subscribers_.find(account_key(a));
    if (it == subscribers_.end()) continue;
    it->second.erase(peer);
    if (it->second.empty()) subscribers_.erase(it);
    unsubscribed.push_back(account_key(a));
  }
  for (const auto& a : wanted) {
    subscribers_[account_key(a)].insert(peer);
    Seen s;
    auto on = online_.find(account_key(a));
    if (on != online_.end()) {
      s.known = true;
      s.online = !on->second.hidden;
    }
    seen.push_back(s);
  }
  return seen;
}

std::vector<std::shared_ptr<Peer>> Registry::subscribers(const std::string& account) const {
  std::lock_guard lock(mu_);
  auto it = subscribers_.find(account);
  if (it == subscribers_.end()) return {};
  return {it->second.begin(), it->second.end()};
}

bool Registry::set_hidden(const Bytes& account, bool hidden) {
  std::lock_guard lock(mu_);
  auto on = online_.find(account_key(account));
  if (on == online_.end()) return false;
  on->second.hidden = hidden;
  return true;
}

bool Registry::hide_for_good(const Bytes& account) {
  std::lock_guard lock(mu_);
  auto on = online_.find(account_key(account));
  if (on == online_.end()) return false;
  return std::exchange(on->second.hidden, true);
}

// ---- link channels ----

std::string Registry::fresh_link_code() const {
  std::lock_guard lock(mu_);
  std::string code;
  do code = make_link_code();
  while (links_.count(code));
  return code;
}

void Registry::open_link(const std::string& code, LinkChannel channel) {
  std::lock_guard lock(mu_);
  links_.emplace(code, std::move(channel));
}

std::optional<Registry::LinkChannel> Registry::find_link(const std::string& code) const {
  std::lock_guard lock(mu_);
  auto it = links_.find(code);
  if (it == links_.end()) return std::nullopt;
  return it->second;
}

std::optional<std::shared_ptr<Peer>> Registry::approve_link(const std::string& code,
                                                            const Bytes& by) {
  std::lock_guard lock(mu_);
  auto it = links_.find(code);
  if (it == links_.end()) return std::nullopt;
  it->second.approved = true;
  it->second.approved_by = by;
  return it->second.peer.lock();
}

void Registry::close_link(const std::string& code, const std::shared_ptr<Peer>& peer) {
  std::lock_guard lock(mu_);
  auto it = links_.find(code);
  if (it != links_.end() && it->second.peer.lock() == peer) links_.erase(it);
}

std::optional<std::shared_ptr<Peer>> Registry::take_link(const std::string& code) {
  std::lock_guard lock(mu_);
  auto it = links_.find(code);
  if (it == links_.end()) return std::nullopt;
  auto peer = it->second.peer.lock();
  links_.erase(it);
  return peer;
}

std::vector<std::string> Registry::expired_links(uint64_t now_ms) const {
  std::vector<std::string> expired;
  std::lock_guard lock(mu_);
  for (const auto& [code, ch] : links_)
    if (ch.expires_at_ms <= now_ms) expired.push_back(code);
  return expired;
}

// ---- wake-ups ----

bool Registry::wake_due(const std::string& device_key, uint64_t now_ms, uint64_t coalesce_ms) {
  std::lock_guard lock(mu_);
  auto [it, fresh] = last_wake_.try_emplace(device_key, now_ms);
  if (fresh) return true;
  if (now_ms < it->second + coalesce_ms) return false;
  it->second = now_ms;
  return true;
}

void Registry::sweep_wakes(uint64_t now_ms, uint64_t coalesce_ms) {
  std::lock_guard lock(mu_);
  for (auto it = last_wake_.begin(); it != last_wake_.end();)
    it = now_ms >= it->second + coalesce_ms ? last_wake_.erase(it) : std::next(it);
}

}  // namespace sotto::relay
