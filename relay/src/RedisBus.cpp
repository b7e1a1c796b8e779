// Bus over Redis 7 with hiredis's synchronous API on two threads of its own:
//  - the command thread pipelines every queued operation (claims, lookups, publishes, link
//    channels) in one round trip per wake-up, and renews this node's claims;
//  - the subscriber thread reads this node's channel, the presence channels it listens to and
//    Redis's key-expiry events. Subscriptions change by writing the command to its socket
//    (the thread only reads from it).
// Keys: sotto:dev:<device hex> = node id (a claim, with a TTL); sotto:link:<code> = a hash of
// the link channel (node, key, exp, approved), expiring with the channel. Channels:
// sotto:node:<id>, sotto:presence:<account hex>, __keyevent@0__:expired.
#include <hiredis/hiredis.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstring>
#include <deque>
#include <mutex>
#include <thread>
#include <unordered_map>
#include <unordered_set>

#include "Bus.h"
#include "Log.h"
#include "sotto/Bytes.h"
#include "sotto/ThreadName.h"

namespace sotto::relay {
namespace {

using Clock = std::chrono::steady_clock;
constexpr const char* kDevicePrefix = "sotto:dev:";
constexpr const char* kPresencePrefix = "sotto:presence:";
constexpr const char* kExpiredChannel = "__keyevent@0__:expired";

// Claims: KEYS[1] the claim (sotto:dev:<device hex>), KEYS[2] the account's connected
// devices (sotto:on:<account hex>, a set of device hex), ARGV[1] this node.
// {node before or '', 1 when the account had no device connected}.
constexpr const char* kClaim =
    "local before = redis.call('GET', KEYS[1]) "
    "redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2]) "
    "local added = redis.call('SADD', KEYS[2], ARGV[3]) "
    "if added == 1 and redis.call('SCARD', KEYS[2]) == 1 then return {before or '', 1} end "
    "return {before or '', 0}";
// Renews a claim unless another node holds the device now (also after Redis lost its data).
constexpr const char* kRenew =
    "local v = redis.call('GET', KEYS[1]) "
    "if v == false or v == ARGV[1] then "
    "  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2]) "
    "  redis.call('SADD', KEYS[2], ARGV[3]) return 1 end "
    "return 0";
// Forgets a claim if it is still the caller's: 1 when the account has no device left.
constexpr const char* kRelease =
    "if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end "
    "redis.call('DEL', KEYS[1]) "
    "if redis.call('SREM', KEYS[2], ARGV[2]) == 1 and redis.call('SCARD', KEYS[2]) == 0 "
    "then return 1 end "
    "return 0";
// After a claim expired (its node died): the same, unless the device was claimed again.
constexpr const char* kForget =
    "if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end "
    "if redis.call('SREM', KEYS[2], ARGV[1]) == 1 and redis.call('SCARD', KEYS[2]) == 0 "
    "then return 1 end "
    "return 0";
constexpr const char* kOnline =
    "local out = {} for i, k in ipairs(KEYS) do out[i] = redis.call('SCARD', k) end return out";
constexpr const char* kLinkOpen =
    "if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end "
    "redis.call('HSET', KEYS[1], 'node', ARGV[1], 'key', ARGV[2], 'exp', ARGV[3], "
    "'approved', '0') "
    "redis.call('PEXPIREAT', KEYS[1], ARGV[3]) return 1";
// {0, node}: approved now; {1, node}: approved before; {2}: no live channel.
constexpr const char* kLinkApprove =
    "local n = redis.call('HGET', KEYS[1], 'node') "
    "if not n then return {2} end "
    "if tonumber(redis.call('HGET', KEYS[1], 'exp')) < tonumber(ARGV[1]) then return {2} end "
    "if redis.call('HGET', KEYS[1], 'approved') == '1' then return {1, n} end "
    "redis.call('HSET', KEYS[1], 'approved', '1') return {0, n}";

struct Address {
  std::string host;
  int port = 6379;
  std::string unix_path;
};

Result<Address> parse_address(const std::string& text) {
  Address a;
  if (text.starts_with("unix:")) {
    a.unix_path = text.substr(5);
    if (a.unix_path.empty()) return make_error(ErrorCode::kInvalidArgument, "--bus unix: needs a path");
    return a;
  }
  if (!text.starts_with("redis://"))
    return make_error(ErrorCode::kInvalidArgument,
                      "--bus must be redis://host:port or unix:/path/to/redis.sock, got '" + text +
                          "'");
  std::string rest = text.substr(8);
  if (auto slash = rest.find('/'); slash != std::string::npos) rest.resize(slash);
  auto colon = rest.rfind(':');
  a.host = colon == std::string::npos ? rest : rest.substr(0, colon);
  if (colon != std::string::npos) {
    try {
      a.port = std::stoi(rest.substr(colon + 1));
    } catch (...) {
      a.port = 0;
    }
  }
  if (a.host.empty() || a.port <= 0 || a.port > 65535)
    return make_error(ErrorCode::kInvalidArgument, "--bus: cannot read host:port in '" + text + "'");
  return a;
}

redisContext* connect_to(const Address& a) {
  timeval tv{1, 0};
  redisContext* c = a.unix_path.empty() ? redisConnectWithTimeout(a.host.c_str(), a.port, tv)
                                        : redisConnectUnixWithTimeout(a.unix_path.c_str(), tv);
  if (c && c->err) {
    redisFree(c);
    return nullptr;
  }
  if (c) {
    redisSetTimeout(c, timeval{5, 0});
    if (a.unix_path.empty()) redisEnableKeepAlive(c);
  }
  return c;
}

std::string reply_text(const redisReply* r) {
  return r && (r->type == REDIS_REPLY_STRING || r->type == REDIS_REPLY_STATUS)
             ? std::string(r->str, r->len)
             : std::string();
}

class RedisBus final : public Bus {
 public:
  RedisBus(Address address, std::string node, const Config& config)
      : address_(std::move(address)),
        node_(std::move(node)),
        claim_ttl_ms_(config.cluster_claim_ttl_ms),
        wake_fd_(::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK)) {}
  ~RedisBus() override {
    stop();
    if (wake_fd_ >= 0) ::close(wake_fd_);
  }

  const std::string& node() const override { return node_; }
  bool up() const override { return cmd_up_ && sub_up_; }

  void start(Handlers handlers) override {
    handlers_ = std::move(handlers);
    cmd_thread_ = std::thread([this] {
      name_this_thread("sotto-bus-cmd");
      command_loop();
    });
    sub_thread_ = std::thread([this] {
      name_this_thread("sotto-bus-sub");
      subscriber_loop();
    });
  }

  void stop() override {
    if (stop_.exchange(true)) return;
    wake();
    if (cmd_thread_.joinable()) cmd_thread_.join();
    if (sub_thread_.joinable()) sub_thread_.join();
  }

  void claim(const std::string& device_key,
             std::function<void(std::optional<Claim>)> done) override {
    {
      std::lock_guard lock(claims_mu_);
      claims_.insert(device_key);
    }
    queue({"EVAL", kClaim, "2", key_of(device_key), set_of(device_key), node_,
           std::to_string(claim_ttl_ms_), member_of(device_key)},
          [done = std::move(done)](const redisReply* r) {
            if (!r || r->type != REDIS_REPLY_ARRAY || r->elements != 2) return done(std::nullopt);
            done(Claim{reply_text(r->element[0]), r->element[1]->integer == 1});
          });
  }

  void release(const std::string& device_key,
               std::function<void(std::optional<bool>)> done) override {
    {
      std::lock_guard lock(claims_mu_);
      claims_.erase(device_key);
    }
    queue({"EVAL", kRelease, "2", key_of(device_key), set_of(device_key), node_,
           member_of(device_key)},
          integer_is_one(std::move(done)));
  }

  void forget(const std::string& device_key, std::function<void(std::optional<bool>)> done) override {
    queue({"EVAL", kForget, "2", key_of(device_key), set_of(device_key), member_of(device_key)},
          integer_is_one(std::move(done)));
  }

  void online(std::vector<std::string> accounts,
              std::function<void(std::optional<std::vector<bool>>)> done) override {
    if (accounts.empty()) return done(std::vector<bool>());
    std::vector<std::string> argv{"EVAL", kOnline, std::to_string(accounts.size())};
    for (const auto& a : accounts) argv.push_back("sotto:on:" + to_hex(as_bytes(a)));
    queue(std::move(argv), [n = accounts.size(), done = std::move(done)](const redisReply* r) {
      if (!r || r->type != REDIS_REPLY_ARRAY || r->elements != n) return done(std::nullopt);
      std::vector<bool> out;
      for (size_t i = 0; i < n; ++i) out.push_back(r->element[i]->integer > 0);
      done(std::move(out));
    });
  }

  void locate(std::vector<std::string> device_keys,
              std::function<void(std::optional<std::vector<std::string>>)> done) override {
    if (device_keys.empty()) return done(std::vector<std::string>());
    std::vector<std::string> argv{"MGET"};
    for (const auto& k : device_keys) argv.push_back(key_of(k));
    queue(std::move(argv), [n = device_keys.size(), done = std::move(done)](const redisReply* r) {
      if (!r || r->type != REDIS_REPLY_ARRAY || r->elements != n) return done(std::nullopt);
      std::vector<std::string> nodes;
      for (size_t i = 0; i < n; ++i) nodes.push_back(reply_text(r->element[i]));
      done(std::move(nodes));
    });
  }

  void send(const std::string& node, std::string message) override {
    queue({"PUBLISH", "sotto:node:" + node, std::move(message)}, nullptr);
  }

  void publish_presence(const std::string& account, std::string update) override {
    queue({"PUBLISH", kPresencePrefix + to_hex(as_bytes(account)), std::move(update)}, nullptr);
  }

  void listen_presence(const std::string& account, bool listen) override {
    std::string channel = kPresencePrefix + to_hex(as_bytes(account));
    std::lock_guard lock(sub_mu_);
    int& n = listening_[channel];
    n += listen ? 1 : -1;
    if (listen && n == 1) {
      subscribe_locked({"SUBSCRIBE", channel});
    } else if (!listen && n <= 0) {
      listening_.erase(channel);
      subscribe_locked({"UNSUBSCRIBE", channel});
    }
  }

  void link_open(const std::string& code, const std::string& ephemeral_key, uint64_t expires_at_ms,
                 std::function<void(std::optional<bool>)> done) override {
    queue({"EVAL", kLinkOpen, "1", "sotto:link:" + code, node_, ephemeral_key,
           std::to_string(expires_at_ms)},
          [done = std::move(done)](const redisReply* r) {
            if (!r || r->type != REDIS_REPLY_INTEGER) return done(std::nullopt);
            done(r->integer == 1);
          });
  }

  void link_find(const std::string& code,
                 std::function<void(std::optional<LinkInfo>)> done) override {
    queue({"HGETALL", "sotto:link:" + code}, [done = std::move(done)](const redisReply* r) {
      if (!r || r->type != REDIS_REPLY_ARRAY) return done(std::nullopt);
      LinkInfo info;
      for (size_t i = 0; i + 1 < r->elements; i += 2) {
        std::string field = reply_text(r->element[i]), value = reply_text(r->element[i + 1]);
        if (field == "node") info.node = value;
        if (field == "key") info.ephemeral_key = value;
        if (field == "exp") info.expires_at_ms = std::strtoull(value.c_str(), nullptr, 10);
        if (field == "approved") info.approved = value == "1";
      }
      done(std::move(info));
    });
  }

  void link_approve(const std::string& code, uint64_t now_ms,
                    std::function<void(std::optional<std::pair<Approval, std::string>>)> done)
      override {
    queue({"EVAL", kLinkApprove, "1", "sotto:link:" + code, std::to_string(now_ms)},
          [done = std::move(done)](const redisReply* r) {
            if (!r || r->type != REDIS_REPLY_ARRAY || r->elements < 1 ||
                r->element[0]->type != REDIS_REPLY_INTEGER)
              return done(std::nullopt);
            long long kind = r->element[0]->integer;
            std::string node = r->elements > 1 ? reply_text(r->element[1]) : std::string();
            done(std::pair{kind == 0   ? Approval::kApproved
                           : kind == 1 ? Approval::kAlreadyApproved
                                       : Approval::kNotFound,
                           node});
          });
  }

  void link_close(const std::string& code) override {
    queue({"DEL", "sotto:link:" + code}, nullptr);
  }

 private:
  struct Op {
    std::vector<std::string> argv;
    std::function<void(const redisReply*)> done;  // nullptr reply: the bus is down
  };

  static std::string key_of(const std::string& device_key) {
    return kDevicePrefix + to_hex(as_bytes(device_key));
  }
  static std::string member_of(const std::string& device_key) {
    return to_hex(as_bytes(device_key));
  }
  // The account's set: the device key's first 16 bytes are the account id.
  static std::string set_of(const std::string& device_key) {
    return "sotto:on:" + to_hex(as_bytes(std::string_view(device_key).substr(0, 16)));
  }
  static std::function<void(const redisReply*)> integer_is_one(
      std::function<void(std::optional<bool>)> done) {
    return [done = std::move(done)](const redisReply* r) {
      if (!done) return;
      if (!r || r->type != REDIS_REPLY_INTEGER) return done(std::nullopt);
      done(r->integer == 1);
    };
  }

  void wake() {
    uint64_t one = 1;
    [[maybe_unused]] auto n = ::write(wake_fd_, &one, sizeof one);
  }

  void queue(std::vector<std::string> argv, std::function<void(const redisReply*)> done) {
    if (!cmd_up_) {  // answered at once: nothing waits for a bus that is down
      if (done) done(nullptr);
      return;
    }
    {
      std::lock_guard lock(ops_mu_);
      ops_.push_back(Op{std::move(argv), std::move(done)});
    }
    wake();
  }

  // NB: takes state_mu_, so that the relay hears every change once and in order.
  void set_up(std::atomic<bool>& flag, bool value) {
    std::lock_guard lock(state_mu_);
    bool before = up();
    flag = value;
    bool after = up();
    if (before == after) return;
    if (after) {
      log_info("bus_up", {{"node", node_}});
    } else {
      log_warn("bus_down", {{"node", node_},
                            {"action", "polling this node's device queues until it is back"}});
    }
    if (handlers_.state) handlers_.state(after);
  }

  // ---- command thread ----

  void command_loop() {
    redisContext* c = nullptr;
    auto next_renewal = Clock::now();
    while (!stop_) {
      if (!c) {
        c = connect_to(address_);
        if (!c) {
          fail_queued();
          wait_for_wake(1000);
          continue;
        }
        // Expired claims tell other nodes that a node died (the subscriber listens).
        redisReply* r = static_cast<redisReply*>(
            redisCommand(c, "CONFIG SET notify-keyspace-events Ex"));
        if (r && r->type == REDIS_REPLY_ERROR)
          log_warn("bus_keyspace_events_refused",
                   {{"error", reply_text(r)},
                    {"action", "set notify-keyspace-events Ex in redis.conf: without it, presence "
                               "of a dead node's devices stays online until they reconnect"}});
        if (r) freeReplyObject(r);
        set_up(cmd_up_, true);
        next_renewal = Clock::now();  // the claims again, as soon as the bus is back
      }
      int timeout = static_cast<int>(std::max<int64_t>(
          0, std::chrono::duration_cast<std::chrono::milliseconds>(next_renewal - Clock::now())
                 .count()));
      wait_for_wake(std::min(timeout, 1000));
      std::deque<Op> batch;
      {
        std::lock_guard lock(ops_mu_);
        batch.swap(ops_);
      }
      if (Clock::now() >= next_renewal) {
        next_renewal = Clock::now() + std::chrono::milliseconds(claim_ttl_ms_ / 3);
        std::lock_guard lock(claims_mu_);
        for (const auto& d : claims_)
          batch.push_back(Op{{"EVAL", kRenew, "2", key_of(d), set_of(d), node_,
                              std::to_string(claim_ttl_ms_), member_of(d)},
                             nullptr});
      }
      if (batch.empty()) continue;
      if (!pipeline(c, batch)) {
        redisFree(c);
        c = nullptr;
        set_up(cmd_up_, false);
      }
    }
    if (c) redisFree(c);
    fail_queued();
  }

  // Every command of `batch` in one round trip. false when the connection failed (the ops
  // not answered yet get nullptr).
  bool pipeline(redisContext* c, std::deque<Op>& batch) {
    for (const Op& op : batch) {
      std::vector<const char*> argv;
      std::vector<size_t> lens;
      for (const auto& a : op.argv) {
        argv.push_back(a.data());
        lens.push_back(a.size());
      }
      redisAppendCommandArgv(c, static_cast<int>(argv.size()), argv.data(), lens.data());
    }
    size_t answered = 0;
    for (; answered < batch.size(); ++answered) {
      void* raw = nullptr;
      if (redisGetReply(c, &raw) != REDIS_OK) break;
      auto* r = static_cast<redisReply*>(raw);
      if (r->type == REDIS_REPLY_ERROR && !batch[answered].done)
        log_warn("bus_command_failed", {{"command", batch[answered].argv[0]}, {"error", reply_text(r)}});
      if (batch[answered].done) batch[answered].done(r);
      freeReplyObject(r);
    }
    for (size_t i = answered; i < batch.size(); ++i)
      if (batch[i].done) batch[i].done(nullptr);
    return answered == batch.size();
  }

  void fail_queued() {
    std::deque<Op> batch;
    {
      std::lock_guard lock(ops_mu_);
      batch.swap(ops_);
    }
    for (auto& op : batch)
      if (op.done) op.done(nullptr);
  }

  void wait_for_wake(int timeout_ms) {
    pollfd p{wake_fd_, POLLIN, 0};
    if (::poll(&p, 1, timeout_ms) > 0) {
      uint64_t n;
      [[maybe_unused]] auto got = ::read(wake_fd_, &n, sizeof n);
    }
  }

  // ---- subscriber thread ----

  void subscribe_locked(std::vector<std::string> argv) {
    if (!sub_) return;  // subscribed to everything in listening_ when it connects
    std::vector<const char*> args;
    std::vector<size_t> lens;
    for (const auto& a : argv) {
      args.push_back(a.data());
      lens.push_back(a.size());
    }
    char* cmd = nullptr;
    int n = redisFormatCommandArgv(&cmd, static_cast<int>(args.size()), args.data(), lens.data());
    if (n > 0) {
      size_t off = 0;
      while (off < static_cast<size_t>(n)) {
        ssize_t w = ::send(sub_->fd, cmd + off, static_cast<size_t>(n) - off, MSG_NOSIGNAL);
        if (w <= 0) break;  // the read side notices the broken connection
        off += static_cast<size_t>(w);
      }
    }
    redisFreeCommand(cmd);
  }

  void subscriber_loop() {
    while (!stop_) {
      redisContext* c = nullptr;
      {
        std::lock_guard lock(sub_mu_);
        if (!sub_) {
          c = connect_to(address_);
          if (c) {
            sub_ = c;
            subscribe_locked({"SUBSCRIBE", "sotto:node:" + node_, kExpiredChannel});
            for (const auto& [channel, n] : listening_) subscribe_locked({"SUBSCRIBE", channel});
          }
        }
        c = sub_;
      }
      if (!c) {
        set_up(sub_up_, false);
        wait_for_wake(1000);
        continue;
      }
      pollfd p{c->fd, POLLIN, 0};
      int ready = ::poll(&p, 1, 250);
      bool broken = ready < 0 && errno != EINTR;
      if (ready > 0) {
        if (redisBufferRead(c) != REDIS_OK) {
          broken = true;
        } else {
          void* raw = nullptr;
          while (redisGetReplyFromReader(c, &raw) == REDIS_OK && raw) {
            on_pushed(static_cast<redisReply*>(raw));
            freeReplyObject(raw);
            raw = nullptr;
          }
          if (c->err) broken = true;
        }
      }
      if (broken) {
        {
          std::lock_guard lock(sub_mu_);
          redisFree(sub_);
          sub_ = nullptr;
        }
        set_up(sub_up_, false);
      }
    }
    std::lock_guard lock(sub_mu_);
    if (sub_) redisFree(sub_);
    sub_ = nullptr;
  }

  void on_pushed(redisReply* r) {
    if (r->type != REDIS_REPLY_ARRAY || r->elements < 3) return;
    std::string kind = reply_text(r->element[0]);
    if (kind == "subscribe") {
      // Our own channel's confirmation: the subscriber is ready.
      if (reply_text(r->element[1]) == "sotto:node:" + node_) set_up(sub_up_, true);
      return;
    }
    if (kind != "message") return;
    std::string channel = reply_text(r->element[1]);
    std::string payload(r->element[2]->str, r->element[2]->len);
    if (channel == "sotto:node:" + node_) {
      if (handlers_.message) handlers_.message(payload);
    } else if (channel.starts_with(kPresencePrefix)) {
      Bytes account;
      if (from_hex(channel.substr(std::strlen(kPresencePrefix)), account) && handlers_.presence)
        handlers_.presence(std::string(as_chars(account)), payload);
    } else if (channel == kExpiredChannel && payload.starts_with(kDevicePrefix)) {
      Bytes key;
      if (from_hex(payload.substr(std::strlen(kDevicePrefix)), key) && handlers_.expired)
        handlers_.expired(std::string(as_chars(key)));
    }
  }

  const Address address_;
  const std::string node_;
  const uint64_t claim_ttl_ms_;
  int wake_fd_;
  Handlers handlers_;
  std::atomic<bool> stop_{false};
  std::mutex state_mu_;  // a leaf: held only to turn cmd_up_/sub_up_ into one state change
  std::atomic<bool> cmd_up_{false};
  std::atomic<bool> sub_up_{false};
  std::thread cmd_thread_, sub_thread_;
  std::mutex ops_mu_;
  std::deque<Op> ops_;
  std::mutex claims_mu_;
  std::unordered_set<std::string> claims_;
  std::mutex sub_mu_;  // sub_ and listening_; held while writing to sub_'s socket
  redisContext* sub_ = nullptr;
  std::unordered_map<std::string, int> listening_;  // presence channel -> listeners
};

}  // namespace

Result<std::unique_ptr<Bus>> make_redis_bus(const std::string& address, const std::string& node,
                                            const Config& config) {
  SOTTO_TRY_ASSIGN(Address a, parse_address(address));
  if (node.empty())
    return make_error(ErrorCode::kInvalidArgument,
                      "--node-id is required with --bus: a name unique in the cluster");
  return std::unique_ptr<Bus>(new RedisBus(std::move(a), node, config));
}

}  // namespace sotto::relay
