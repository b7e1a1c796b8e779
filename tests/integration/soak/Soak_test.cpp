// The soak test: four users (one of them with two linked devices) chat without pause through
// a real relay, in 1:1 conversations and two groups, while the controller kill -9s devices at
// random, kills or stops the relay, and cuts or stalls the network (a proxy between the
// devices and the relay). At the end every device connects once more and dumps
// its history, and the test checks what the product promises.
//
// The truth is the controller's own record, not any device's history: a device prints a line
// for every send_text() that returned a message id, at once, and the controller keeps these
// lines across kills. Every recorded message (by message id, number and text) must be in its
// author's history and on every device of every member of its conversation exactly once, in
// the order its author sent it; nothing appears that nobody sent; nothing is left pending;
// every message reached at least one recipient ("delivered"); no conversation shows a notice
// of a message that could not be decrypted or sent. A restarted device numbers its messages on
// from the record, so a message lost from history cannot have its number taken by the next.
//
// In the second group, "churn", alice keeps removing dave and adding him back, and renames
// it: the others' messages there must meet the same rules on the others' devices, dave's
// device must show what it got of them once and in order, and every device must end with the
// same members and name. Every message carries the group revision it went at, and its
// author's history says which (alice.1 says which revisions have dave): dave's device must
// show exactly the others' messages sent at a revision that had him as a member, no more and
// no less. His own messages there may reach nobody: a member drops what comes from someone
// who is not a member at its revision.
//
// In cluster mode (SoakCluster) the same users chat through three relay nodes that share a
// throwaway PostgreSQL store, a redis-server bus and one data dir. Each device reaches "the
// cluster" through a proxy of its own that plays the load balancer: one address, each new
// connection to the next node in turn, skipping a node that refuses. On top of the device
// kills, cuts and stalls, one node at a time is killed (kill -9, now and then SIGTERM) and
// started again on the same node id a while later, redis-server is killed and started again
// (empty), and PostgreSQL is stopped at once and started again. The checks are the same, and
// one more: every device that was on a node when it went down is online again (connected to a
// live node and up to date) within 5 s; the worst is reported. No stall and no PostgreSQL
// restart overlaps those 5 s (they would hold any device back, by design); a device killed in
// them is not timed. Every fault is printed as it happens, with its time into the run.
//
// ctest runs each for SOTTO_SOAK_SECONDS (default 40) of chaos; `./run soak [--cluster]
// MINUTES` runs it longer. SOTTO_SOAK_SEED replays a run's schedule of faults (each run prints
// its seed); the devices' timing is their own, so a replay is close, not identical.
#include <gtest/gtest.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <optional>
#include <random>
#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "ChildProcess.h"
#include "FaultyProxy.h"
#include "PostgresServer.h"
#include "RedisServer.h"
#include "RelayProcess.h"
#include "TestSupport.h"

namespace sotto::test {
namespace {

namespace fs = std::filesystem;
using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;

uint64_t env_number(const char* name, uint64_t fallback) {
  const char* v = std::getenv(name);
  return v && *v ? std::stoull(v) : fallback;
}

std::string random_key_hex(std::mt19937_64& rng) {
  static const char* digits = "0123456789abcdef";
  std::string hex;
  for (int i = 0; i < 64; ++i) hex += digits[rng() % 16];
  return hex;
}

// The user whom alice keeps removing from the group "churn" and adding back.
const std::string kChurned = "dave";

// Cluster mode: the nodes, and how soon the devices of a node that went down must be online
// again on another.
constexpr size_t kNodes = 3;
constexpr auto kBackWithin = 5s;
// When Redis or PostgreSQL was down too during those 5 s (or had just come back: the nodes
// reconnect to it with a backoff), the devices wait for it as well: then they must be back
// within this instead, and the time is not counted as the cluster's.
constexpr auto kBackWithinCompounded = 30s;
constexpr auto kInfraSettle = 3s;

// The SDK's connection states as soak_user prints them (sotto::ConnectionState).
constexpr int kStateOffline = 0, kStateConnecting = 1, kStateOnline = 3;

int64_t steady_ns(Clock::time_point t) {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(t.time_since_epoch()).count();
}

// A child that died and was not reaped yet (RelayProcess reaps only when told to stop).
bool exited(pid_t pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/stat");
  std::string text;
  std::getline(in, text);
  auto paren = text.rfind(')');
  return paren == std::string::npos || (paren + 2 < text.size() && text[paren + 2] == 'Z');
}

// A connection state change as a device printed it.
struct StateChange {
  int state = 0;
  int64_t ns = 0;  // the device's steady clock, the same as the controller's
  std::string detail;
};

// One message a device said it sent, in the order it said so: the controller's record.
struct Sent {
  std::string tag;
  uint64_t n = 0;
  std::string id;  // empty: in flight when the device was killed (SENDING without SENT)
  // churn: the group revision it went at, from its author's history (0: not there).
  uint32_t revision = 0;
  std::string text() const { return tag + " " + std::to_string(n); }
};

struct Device {
  std::string name;  // "alice.1"
  std::string user;  // "alice"
  fs::path dir;
  std::string key_hex;
  bool creator = false;
  FaultyProxy* proxy = nullptr;  // the device's way to the relay (or to the cluster)
  std::unique_ptr<ChildProcess> process;
  std::optional<Clock::time_point> restart_at;  // set while killed
  int starts = 0;
  std::vector<Sent> sent;  // every send_text() that returned, over all runs, in order
  // The current run's SENDING line not yet followed by SENT.
  std::optional<Sent> sending;
  std::map<std::string, uint64_t> next;  // tag -> one past every number this device announced
  std::vector<StateChange> states;       // the current run's connection states
};

// One message as a device's dump shows it.
struct Entry {
  int status = 0;
  bool outgoing = false;
  uint32_t revision = 0;  // the group revision it went at; 0 outside groups
  std::string id;
  std::string author;  // device name from the text
  std::string tag;     // conversation tag from the text
  uint64_t n = 0;
  std::string text;
};

// A node, or a single relay, that went down, and the devices that were on it then.
struct Outage {
  size_t node = 0;
  std::string how;  // "killed", "stopped"
  Clock::time_point at;
  std::vector<std::pair<size_t, int>> devices;  // index in devices_, its `starts` then
  bool checked = false;
  bool compounded = false;  // Redis or PostgreSQL was down in its window too
};

class Soak {
 public:
  explicit Soak(bool cluster)
      : seed_(env_number("SOTTO_SOAK_SEED", std::random_device{}())),
        seconds_(env_number("SOTTO_SOAK_SECONDS", 40)),
        cluster_(cluster),
        rng_(seed_) {
    std::printf("soak%s: seed %llu, %llu s of faults (SOTTO_SOAK_SEED, SOTTO_SOAK_SECONDS)\n",
                cluster_ ? " (cluster)" : "", static_cast<unsigned long long>(seed_),
                static_cast<unsigned long long>(seconds_));
    std::fflush(stdout);  // the seed shows at once, even when the output goes to a file
    for (const auto& [user, count] : std::vector<std::pair<std::string, int>>{
             {"alice", 2}, {"bob", 1}, {"carol", 1}, {"dave", 1}}) {
      users_.push_back(user);
      for (int i = 1; i <= count; ++i) {
        Device d;
        d.name = user + "." + std::to_string(i);
        d.user = user;
        d.dir = root_ / d.name;
        d.key_hex = random_key_hex(rng_);
        d.creator = d.name == "alice.1";
        devices_.push_back(std::move(d));
      }
    }
  }

  void run() {
    start_relays();
    if (!::testing::Test::HasFatalFailure()) set_up_accounts();
    // The errors gathered so far are reported whatever happens next.
    if (!::testing::Test::HasFatalFailure() && errors_.empty()) {
      start_chatting();
      if (cluster_)
        cluster_faults();
      else
        faults();
      settle_and_dump();
      check();
      chaos_ran_ = true;
    }
    report();
  }

 private:
  // One relay and a proxy in front of it for every device; or the cluster, and a proxy for
  // each device that spreads its connections over the nodes.
  void start_relays() {
    if (!cluster_) {
      relay_ = std::make_unique<RelayProcess>();
      ASSERT_FALSE(::testing::Test::HasFailure());
      proxies_.push_back(std::make_unique<FaultyProxy>(relay_->port()));
      for (auto& d : devices_) d.proxy = proxies_.back().get();
      return;
    }
    auto pg = PostgresServer::start();
    ASSERT_TRUE(pg.ok()) << "no PostgreSQL for cluster mode: " << pg.error().message;
    postgres_ = std::move(*pg);
    auto db = postgres_->create_database("soak");
    ASSERT_TRUE(db.ok()) << db.error().message;
    auto redis = RedisServer::start();
    ASSERT_TRUE(redis.ok()) << "no redis-server for cluster mode: " << redis.error().message;
    redis_ = std::move(*redis);
    fs::create_directories(root_ / "shared");
    std::vector<uint16_t> ports;
    for (size_t i = 0; i < kNodes; ++i) {
      RelayProcess::Options o;
      o.data_dir = root_ / "shared";
      o.extra_args = {"--store",   postgres_->url(*db), "--bus", redis_->address(),
                      "--node-id", node_name(i),        "--cluster-claim-ttl-ms", "3000"};
      nodes_.push_back(std::make_unique<RelayProcess>(o));
      ASSERT_FALSE(::testing::Test::HasFailure());
      ports.push_back(nodes_.back()->port());
    }
    for (size_t i = 0; i < devices_.size(); ++i) {
      proxies_.push_back(std::make_unique<FaultyProxy>(ports, i));
      devices_[i].proxy = proxies_.back().get();
    }
    std::printf("soak (cluster): nodes n0, n1, n2 on 127.0.0.1:%u, %u, %u; a proxy per device\n",
                ports[0], ports[1], ports[2]);
    std::fflush(stdout);
  }

  static std::string node_name(size_t i) { return "n" + std::to_string(i); }

  std::vector<std::string> base(const Device& d) const {
    return {SOTTO_SOAK_USER, d.dir.string(), d.key_hex,
            "ws://127.0.0.1:" + std::to_string(d.proxy->port()) + "/v1/ws"};
  }
  std::vector<std::string> with(std::vector<std::string> v, std::vector<std::string> more) {
    v.insert(v.end(), more.begin(), more.end());
    return v;
  }

  // Waits for a line starting with `prefix`; records any ERROR line.
  std::optional<std::string> expect_line(ChildProcess& p, const std::string& who,
                                         const std::string& prefix,
                                         std::chrono::milliseconds timeout) {
    auto deadline = Clock::now() + timeout;
    while (Clock::now() < deadline) {
      auto line = p.read_line(
          std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now()));
      if (!line) break;
      if (line->rfind(prefix, 0) == 0) return line->substr(prefix.size());
      if (line->rfind("ERROR ", 0) == 0) errors_.push_back(who + ": " + line->substr(6));
    }
    errors_.push_back(who + ": no '" + prefix + "' line within " + std::to_string(timeout.count()) +
                      " ms");
    return std::nullopt;
  }

  void set_up_accounts() {
    for (auto& d : devices_) {
      if (d.name.back() != '1') continue;
      ChildProcess p(with(base(d), {"register", d.user}));
      ASSERT_TRUE(expect_line(p, d.name, "ACCOUNT ", 30s)) << errors_.back();
      ASSERT_EQ(p.wait(), 0) << d.name << ": register failed";
    }
    // alice.2 joins alice's account: it shows an invite, alice.1 approves it.
    Device& fresh = device("alice.2");
    ChildProcess link(with(base(fresh), {"link"}));
    auto invite = expect_line(link, fresh.name, "INVITE ", 30s);
    ASSERT_TRUE(invite) << errors_.back();
    ChildProcess approve(with(base(device("alice.1")), {"approve", *invite}));
    ASSERT_EQ(approve.wait(), 0) << "alice.1 could not approve the new device";
    ASSERT_TRUE(expect_line(link, fresh.name, "ACCOUNT ", 30s)) << errors_.back();
    ASSERT_EQ(link.wait(), 0);
  }

  void start(Device& d) {
    size_t index = static_cast<size_t>(&d - devices_.data());
    std::string peers;
    for (const auto& u : users_)
      if (u != d.user) peers += (peers.empty() ? "" : ",") + u;
    // The numbers go on from the record, past every one the device ever announced.
    std::string next;
    for (const auto& [tag, n] : d.next)
      next += (next.empty() ? "" : ",") + tag + ":" + std::to_string(n);
    std::vector<std::string> args =
        with(base(d), {"chat", d.name, std::to_string(seed_ + 1000 * d.starts + index), peers,
                       next.empty() ? "-" : next});
    if (d.creator) args.push_back("creator");
    d.process = std::make_unique<ChildProcess>(args);
    d.restart_at.reset();
    d.sending.reset();
    d.states.clear();
    ++d.starts;
  }

  // One line of a chatting device: what it sent goes into the record.
  void take(Device& d, const std::string& line) {
    std::istringstream in(line);
    std::string kind;
    in >> kind;
    if (kind == "ERROR") {
      errors_.push_back(d.name + ": " + line.substr(6));
    } else if (kind == "SENDING") {
      Sent s;
      in >> s.tag >> s.n;
      if (!in) {
        errors_.push_back(d.name + " printed '" + line + "'");
        return;
      }
      d.next[s.tag] = std::max(d.next[s.tag], s.n + 1);
      d.sending = s;  // a SENDING before it without SENT was refused: nothing was sent
    } else if (kind == "SENT") {
      std::string tag, id;
      uint64_t n = 0;
      in >> tag >> n >> id;
      if (!in || !d.sending || d.sending->tag != tag || d.sending->n != n) {
        errors_.push_back(d.name + " printed '" + line + "' without SENDING " + tag + " " +
                          std::to_string(n) + " before it");
        return;
      }
      d.sending->id = id;
      d.sent.push_back(*d.sending);
      d.sending.reset();
    } else if (kind == "STATE") {
      StateChange c;
      if (!(in >> c.state >> c.ns)) {
        errors_.push_back(d.name + " printed '" + line + "'");
        return;
      }
      std::getline(in >> std::ws, c.detail);
      d.states.push_back(std::move(c));
    } else if (kind == "CHURN") {
      uint32_t revision = 0;
      int in_group = 0;
      in >> revision >> in_group;
      auto [it, fresh] = dave_in_at_.try_emplace(revision, in_group != 0);
      if (!fresh && it->second != (in_group != 0))
        errors_.push_back("alice.1 says both that dave is and is not in churn at revision " +
                          std::to_string(revision));
    }
  }

  // Everything a device printed before it died, up to the end of its output, then the message
  // it was about to send if it had not said it was sent: it may be in history or not.
  void end_run(Device& d) {
    for (auto deadline = Clock::now() + 10s; Clock::now() < deadline;) {
      auto line = d.process->read_line(1s);
      if (!line) break;
      take(d, *line);
    }
    if (d.sending) d.sent.push_back(*d.sending);
    d.sending.reset();
  }

  void kill_device(Device& d) {
    d.process->kill9();
    end_run(d);
  }

  void start_chatting() {
    for (auto& d : devices_) start(d);
    for (auto& d : devices_) expect_line(*d.process, d.name, "READY", 60s);
  }

  // Reads what the chatting devices printed; a device that exits by itself is an error.
  void drain() {
    for (auto& d : devices_) {
      if (!d.process || d.restart_at) continue;
      while (auto line = d.process->read_line(0ms)) take(d, *line);
      if (auto st = d.process->exit_status()) {
        end_run(d);
        errors_.push_back(d.name + " exited by itself with status " + std::to_string(*st));
        d.restart_at = Clock::now();
      }
    }
  }

  std::chrono::milliseconds random_ms(int lo, int hi) {
    return std::chrono::milliseconds(std::uniform_int_distribution<int>(lo, hi)(rng_));
  }

  void faults() {
    auto end = Clock::now() + std::chrono::seconds(seconds_);
    auto next_fault = Clock::now() + random_ms(1000, 3000);
    while (Clock::now() < end) {
      drain();
      for (auto& d : devices_)
        if (d.restart_at && Clock::now() >= *d.restart_at) start(d);
      if (Clock::now() >= next_fault) {
        int roll = std::uniform_int_distribution<int>(0, 99)(rng_);
        if (roll < 45) {
          Device& d = devices_[rng_() % devices_.size()];
          if (!d.restart_at) {
            kill_device(d);
            d.restart_at = Clock::now() + random_ms(0, 3000);
            ++device_kills_;
          }
        } else if (roll < 58) {
          relay_->kill9();
          std::this_thread::sleep_for(random_ms(0, 1000));
          relay_->restart();
          ++relay_kills_;
        } else if (roll < 66) {
          int status = relay_->terminate();
          if (status != 0)
            errors_.push_back("the relay exited with status " + std::to_string(status) +
                              " after SIGTERM");
          std::this_thread::sleep_for(random_ms(0, 500));
          relay_->restart();
          ++relay_stops_;
        } else if (roll < 80) {
          cut_all();
          ++network_cuts_;
        } else if (roll < 86) {
          // Longer than the devices' idle timeout (6 s) at times: they must notice by
          // themselves that the connection is dead.
          stall_all(random_ms(1000, 8000));
          ++network_stalls_;
        }
        next_fault = Clock::now() + random_ms(500, 3000);
      }
      std::this_thread::sleep_for(50ms);
    }
    stall_all(0ms);
    drain();
    // The last fault: every device dies at once, in the middle of whatever it was doing.
    for (auto& d : devices_)
      if (d.process && !d.restart_at) kill_device(d);
  }

  // ---- cluster mode ----

  // A line of the run's timeline.
  void note(const std::string& what) {
    double at = std::chrono::duration<double>(Clock::now() - chaos_started_).count();
    std::printf("soak: +%.1f s %s\n", at, what.c_str());
    std::fflush(stdout);
  }

  std::string since_chaos(Clock::time_point t) const {
    char buf[32];
    std::snprintf(buf, sizeof buf, "+%.2f s",
                  std::chrono::duration<double>(t - chaos_started_).count());
    return buf;
  }

  // The devices connected to node `i` now, as their proxies see it.
  std::vector<std::pair<size_t, int>> devices_on(size_t i) const {
    std::vector<std::pair<size_t, int>> on;
    for (size_t k = 0; k < devices_.size(); ++k) {
      const Device& d = devices_[k];
      if (d.process && !d.restart_at && d.proxy->current_upstream() == i)
        on.emplace_back(k, d.starts);
    }
    return on;
  }

  // Kills (or, now and then, stops) node `i` with its devices' connections.
  void take_node_down(size_t i) {
    Outage o;
    o.node = i;
    o.devices = devices_on(i);
    o.at = Clock::now();
    if (std::uniform_int_distribution<int>(0, 99)(rng_) < 80) {
      o.how = "killed (kill -9)";
      nodes_[i]->kill9();
      ++node_kills_;
    } else {
      o.how = "stopped (SIGTERM)";
      int status = nodes_[i]->terminate();
      if (status != 0)
        errors_.push_back("node " + node_name(i) + " exited with status " +
                          std::to_string(status) + " after SIGTERM");
      ++node_stops_;
    }
    std::string on;
    for (const auto& [k, starts] : o.devices) on += " " + devices_[k].name;
    note("node " + node_name(i) + " " + o.how + "; on it:" + (on.empty() ? " no device" : on));
    outages_.push_back(std::move(o));
  }

  // The first time after `since` (ns) that the device went online again after losing its
  // connection: offline or connecting, then online (connected to a node that answered, and
  // up to date). nullopt: not yet.
  static std::optional<int64_t> back_online(const Device& d, int64_t since) {
    bool lost = false;
    for (const auto& c : d.states) {
      if (c.ns < since) continue;
      if (c.state == kStateOffline || c.state == kStateConnecting) lost = true;
      if (lost && c.state == kStateOnline) return c.ns;
    }
    return std::nullopt;
  }

  // Each outage once its window is over (or at once with `all`): were its devices online
  // again in time?
  void check_outages(bool all) {
    for (auto& o : outages_) {
      if (o.checked || (!all && Clock::now() < o.at + kBackWithin + 500ms)) continue;
      if (!o.compounded)
        for (const auto& [from, to] : infra_outages_)
          if (from < o.at + kBackWithin && to + kInfraSettle > o.at) o.compounded = true;
      if (o.compounded && !all && Clock::now() < o.at + kBackWithinCompounded + 500ms) continue;
      o.checked = true;
      auto within = o.compounded ? kBackWithinCompounded : kBackWithin;
      int64_t at = steady_ns(o.at);
      int64_t limit = at + std::chrono::nanoseconds(within).count();
      std::string line;
      for (const auto& [k, starts] : o.devices) {
        const Device& d = devices_[k];
        line += " " + d.name;
        if (d.starts != starts || d.restart_at) {
          line += " killed meanwhile;";
          continue;
        }
        auto back = back_online(d, at);
        if (!back || *back > limit) {
          std::string states;
          for (const auto& c : d.states)
            if (c.ns >= at)
              states += "\n      " + since_chaos(Clock::time_point(Clock::duration(c.ns))) +
                        " state " + std::to_string(c.state) + " (" + c.detail + ")";
          errors_.push_back(
              d.name + " was on node " + node_name(o.node) + " when it was " + o.how + " at " +
              since_chaos(o.at) + " and was not online again " + "within " +
              std::to_string(within.count()) + " s" +
              (o.compounded ? " (Redis or PostgreSQL was down too)" : "") +
              "; its connection states since:" + (states.empty() ? std::string(" none") : states));
          line += " NOT back;";
          continue;
        }
        double took = static_cast<double>(*back - at) / 1e9;
        char buf[64];
        std::snprintf(buf, sizeof buf, " back in %.2f s%s;", took,
                      o.compounded ? " (Redis or PostgreSQL down too)" : "");
        line += buf;
        ++back_measured_;
        if (o.compounded) {
          ++back_compounded_;
        } else if (took > worst_back_) {
          worst_back_ = took;
          worst_back_what_ = d.name + " after " + node_name(o.node) + " was " + o.how + " at " +
                             since_chaos(o.at);
        }
      }
      if (!line.empty()) note("node " + node_name(o.node) + "'s devices:" + line);
    }
  }

  // An outage whose devices are being timed against kBackWithin: no PostgreSQL restart then.
  // One found compounded is already waiting for Redis or PostgreSQL: another restart changes
  // nothing for it.
  bool timing_outage() const {
    for (const auto& o : outages_)
      if (!o.checked && !o.compounded) return true;
    return false;
  }
  bool outage_unchecked() const {
    for (const auto& o : outages_)
      if (!o.checked) return true;
    return false;
  }

  void cut_all() {
    for (auto& p : proxies_) p->cut_all();
  }
  void stall_all(std::chrono::milliseconds duration) {
    for (auto& p : proxies_) p->stall(duration);
  }

  // The single relay's faults become the cluster's: device kills, cuts and stalls as there; a
  // node down now and then, one at a time, back a while later under the same node id; Redis
  // and PostgreSQL restarts.
  void cluster_faults() {
    chaos_started_ = Clock::now();
    auto end = chaos_started_ + std::chrono::seconds(seconds_);
    auto next_fault = Clock::now() + random_ms(1000, 3000);
    auto next_node_fault = Clock::now() + random_ms(2000, 6000);
    auto next_redis = Clock::now() + random_ms(4000, 15000);
    auto next_postgres = Clock::now() + random_ms(4000, 15000);
    Clock::time_point stalled_until;
    std::optional<size_t> down;
    Clock::time_point back_at;
    auto bring_back = [&] {
      nodes_[*down]->restart();
      note("node " + node_name(*down) + " started again");
      down.reset();
    };
    for (;;) {
      drain();
      check_outages(false);
      if (Clock::now() >= end && !outage_unchecked()) break;
      for (auto& d : devices_)
        if (d.restart_at && Clock::now() >= *d.restart_at) start(d);
      for (size_t i = 0; i < nodes_.size(); ++i)
        if (down != i && nodes_[i]->running() && exited(nodes_[i]->pid()) && !node_died_[i]) {
          node_died_[i] = true;
          errors_.push_back("node " + node_name(i) + " exited by itself; its log ends:\n" +
                            tail(nodes_[i]->log(), 3000));
        }
      if (down && Clock::now() >= back_at) {
        bring_back();
        next_node_fault = Clock::now() + random_ms(2000, 6000);
      }
      if (Clock::now() >= end) {
        std::this_thread::sleep_for(50ms);
        continue;  // no new faults: the last windows close
      }
      bool timing = timing_outage();
      if (Clock::now() >= next_fault) {
        int roll = std::uniform_int_distribution<int>(0, 99)(rng_);
        if (roll < 45) {
          Device& d = devices_[rng_() % devices_.size()];
          if (!d.restart_at) {
            kill_device(d);
            d.restart_at = Clock::now() + random_ms(0, 3000);
            ++device_kills_;
            note(d.name + " killed (kill -9)");
          }
        } else if (roll < 65) {
          cut_all();
          ++network_cuts_;
          note("network cut");
        } else if (roll < 73 && !timing && Clock::now() < next_postgres) {
          // As with one relay, longer than the devices' idle timeout at times. No node goes
          // down during a stall: its devices could not come back before it ends.
          auto duration = random_ms(1000, 8000);
          stall_all(duration);
          stalled_until = Clock::now() + duration;
          ++network_stalls_;
          note("network stalled for " + std::to_string(duration.count()) + " ms");
        }
        next_fault = Clock::now() + random_ms(500, 3000);
      }
      // A restart of PostgreSQL that is due waits for no new node to go down.
      if (!down && Clock::now() >= next_node_fault && Clock::now() >= stalled_until &&
          Clock::now() < next_postgres) {
        // A node with devices on it when there is one: an outage nobody was on checks nothing
        // (and a run of only those would fail for want of a timed device).
        std::vector<size_t> busy;
        for (size_t n = 0; n < nodes_.size(); ++n)
          if (!devices_on(n).empty()) busy.push_back(n);
        size_t i = busy.empty() ? rng_() % nodes_.size() : busy[rng_() % busy.size()];
        take_node_down(i);
        down = i;
        back_at = Clock::now() + random_ms(500, 5000);
      }
      // Nor a Redis restart: it would hold the devices back as well.
      if (Clock::now() >= next_redis && !timing_outage()) {
        // Killed, and back empty: the nodes must claim their devices again.
        auto redis_down = Clock::now();
        redis_->kill9();
        auto pause = random_ms(0, 2000);
        note("redis-server killed (kill -9), back in " + std::to_string(pause.count()) + " ms");
        std::this_thread::sleep_for(pause);
        if (auto st = redis_->restart(); !st.ok())
          errors_.push_back("redis-server did not start again: " + st.error().message);
        infra_outages_.emplace_back(redis_down, Clock::now());
        next_node_fault = std::max(next_node_fault, Clock::now() + kInfraSettle);
        ++redis_restarts_;
        next_redis = Clock::now() + random_ms(6000, 15000);
      }
      // Asked again, not `timing`: a node may have gone down just above, and a restart of
      // PostgreSQL in its devices' 5 s would hold them back (a refusal with 503 makes a client
      // wait), which the check would blame on the cluster.
      if (Clock::now() >= next_postgres && !timing_outage()) {
        // Stopped at once (a crash, for the server) and started again: what it acknowledged
        // is kept (synchronous_commit).
        auto began = Clock::now();
        Status st = postgres_->stop();
        std::this_thread::sleep_for(random_ms(0, 500));
        if (st.ok()) st = postgres_->restart();
        if (!st.ok()) errors_.push_back("PostgreSQL restart failed: " + st.error().message);
        infra_outages_.emplace_back(began, Clock::now());
        next_node_fault = std::max(next_node_fault, Clock::now() + kInfraSettle);
        ++postgres_restarts_;
        note("PostgreSQL stopped at once and started again (" +
             std::to_string(std::chrono::duration_cast<std::chrono::milliseconds>(
                                Clock::now() - began)
                                .count()) +
             " ms)");
        next_postgres = Clock::now() + random_ms(6000, 15000);
      }
      std::this_thread::sleep_for(50ms);
    }
    if (down) bring_back();
    stall_all(0ms);
    drain();
    note("every device killed (kill -9); the final dump follows");
    for (auto& d : devices_)
      if (d.process && !d.restart_at) kill_device(d);
  }

  static std::string tail(const std::string& text, size_t n) {
    return text.size() > n ? text.substr(text.size() - n) : text;
  }

  void settle_and_dump() {
    auto go = root_ / "go";
    std::vector<std::unique_ptr<ChildProcess>> dumps;
    for (auto& d : devices_)
      dumps.push_back(std::make_unique<ChildProcess>(
          with(base(d), {"dump", d.name, (root_ / ("flushed-" + d.name)).string(), go.string()})));
    auto started = Clock::now();
    for (auto& d : devices_) {
      auto flushed = root_ / ("flushed-" + d.name);
      while (!fs::exists(flushed) && Clock::now() - started < 120s)
        std::this_thread::sleep_for(50ms);
      if (!fs::exists(flushed)) errors_.push_back(d.name + ": its outbox never emptied");
    }
    std::ofstream(go.string()) << "go\n";
    for (size_t i = 0; i < devices_.size(); ++i) {
      auto& dump = *dumps[i];
      const std::string& name = devices_[i].name;
      bool ended = false;
      auto deadline = Clock::now() + 150s;
      while (Clock::now() < deadline) {
        auto line = dump.read_line(
            std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now()));
        if (!line) break;
        if (*line == "END") {
          ended = true;
          break;
        }
        parse(name, *line);
      }
      if (!ended) errors_.push_back(name + ": the history dump did not finish");
    }
    settle_seconds_ = std::chrono::duration<double>(Clock::now() - started).count();
  }

  void parse(const std::string& device, const std::string& line) {
    std::istringstream in(line);
    std::string kind, tag;
    in >> kind >> tag;
    if (kind == "ERROR") {
      errors_.push_back(device + ": " + line.substr(6));
      return;
    }
    if (kind == "NOTICE") {
      std::string rest;
      std::getline(in >> std::ws, rest);
      notices_.push_back({device, tag, rest});
      return;
    }
    if (kind == "GROUP") {
      std::string rest;
      std::getline(in >> std::ws, rest);
      groups_[device] = rest;
      return;
    }
    if (kind != "MSG") return;
    Entry e;
    int outgoing = 0;
    in >> e.status >> outgoing >> e.revision >> e.id;
    e.outgoing = outgoing != 0;
    std::getline(in >> std::ws, e.text);
    std::istringstream text(e.text);
    std::string word;
    text >> word >> e.author >> e.tag >> e.n;
    if (word != "soak" || !text) {
      errors_.push_back(device + " shows a message nobody in this test wrote: '" + e.text + "'");
      return;
    }
    history_[device][tag].push_back(e);
  }

  bool is_member(const Device& d, const std::string& tag) const {
    return tag == "group" || tag == "churn" || tag.rfind(d.user + "-", 0) == 0 ||
           (tag.size() > d.user.size() &&
            tag.compare(tag.size() - d.user.size() - 1, std::string::npos, "-" + d.user) == 0);
  }

  // What `reader` must show of a recorded message: it must, it must not, or it may.
  enum class Due { kMust, kMustNot, kMay };

  Due due(const Device& author, const Sent& s, const Device& reader) const {
    if (!is_member(reader, s.tag)) return Due::kMustNot;
    if (s.tag != "churn" || &author == &reader) return Due::kMust;
    // dave's messages in churn may reach nobody: a member that has applied his removal drops
    // them whatever revision they went at, and one queued when he was removed is not sent.
    if (author.user == kChurned) return Due::kMay;
    if (reader.user != kChurned) return Due::kMust;
    // dave gets exactly what was sent at a revision that had him as a member.
    auto at = dave_in_at_.find(s.revision);
    if (s.revision == 0 || at == dave_in_at_.end()) return Due::kMay;
    return at->second ? Due::kMust : Due::kMustNot;
  }

  void check() {
    // Each author's record, by conversation and number (numbers are never used twice).
    std::map<std::string, std::map<std::string, std::map<uint64_t, size_t>>> index;
    for (const auto& a : devices_)
      for (size_t i = 0; i < a.sent.size(); ++i) {
        const Sent& s = a.sent[i];
        if (!index[a.name][s.tag].emplace(s.n, i).second)
          errors_.push_back(a.name + " announced " + s.text() + " twice: a number used again");
        if (s.id.empty()) {
          ++in_flight_;
        } else {
          ++recorded_;
          if (s.tag == "group") ++group_sent_[a.name];
        }
      }
    // In-flight messages count as sent when their author's history has them; that history
    // says which group revision each went at.
    std::map<std::string, std::set<size_t>> committed;  // author -> indexes in its record
    for (auto& a : devices_)
      for (const auto& [tag, entries] : history_[a.name])
        for (const auto& e : entries)
          if (e.author == a.name) {
            auto it = index[a.name][tag].find(e.n);
            if (it == index[a.name][tag].end()) continue;
            committed[a.name].insert(it->second);
            a.sent[it->second].revision = e.revision;
          }
    for (const auto& a : devices_)
      for (size_t i : committed[a.name]) in_flight_committed_ += a.sent[i].id.empty();

    for (const auto& reader : devices_) {
      for (const auto& author : devices_) {
        // What `reader` shows of `author`, conversation by conversation, as record indexes.
        std::map<std::string, std::vector<size_t>> shown;
        std::set<size_t> shown_any;
        for (const auto& [tag, entries] : history_[reader.name]) {
          std::set<std::string> ids;
          for (const auto& e : entries) {
            if (e.author != author.name) continue;
            if (e.tag != tag) errors_.push_back(reader.name + " shows '" + e.text + "' in " + tag);
            auto it = index[author.name][e.tag].find(e.n);
            if (it == index[author.name][e.tag].end()) {
              errors_.push_back(reader.name + " shows '" + e.text + "', which " + author.name +
                                " never said it sent");
              continue;
            }
            const Sent& s = author.sent[it->second];
            if (!s.id.empty() && e.id != s.id) {
              errors_.push_back(reader.name + " shows '" + e.text + "' with message id " + e.id +
                                ", but " + author.name + " sent it as " + s.id);
              continue;
            }
            if (!ids.insert(e.id).second)
              errors_.push_back(reader.name + " shows '" + e.text + "' twice");
            if (&reader == &author) check_own(author, e);
            shown[tag].push_back(it->second);
            shown_any.insert(it->second);
          }
        }
        // ...against what it must show: every recorded message once, in the author's order.
        std::map<std::string, std::vector<size_t>> must;
        for (size_t i = 0; i < author.sent.size(); ++i) {
          const Sent& s = author.sent[i];
          Due d = due(author, s, reader);
          bool sent = !s.id.empty() || committed[author.name].count(i);
          if (d == Due::kMust && sent) must[s.tag].push_back(i);
          bool has = shown_any.count(i) > 0;
          if (has && d == Due::kMustNot) {
            std::string why = s.tag != "churn" ? ", not being in " + s.tag
                                               : " sent at revision " + std::to_string(s.revision) +
                                                     ", when dave was not in churn";
            errors_.push_back(reader.name + " shows " + author.name + "'s '" + s.text() + "'" +
                              why);
          }
          if (has && !sent)
            errors_.push_back(reader.name + " shows " + author.name + "'s '" + s.text() +
                              "', which " + author.name + "'s own history does not have");
        }
        for (const auto& [tag, want] : must) {
          const auto& got = shown[tag];
          if (!in_order(got)) {
            size_t k = 1;
            while (k < got.size() && got[k] >= got[k - 1]) ++k;
            errors_.push_back(reader.name + " in " + tag + ": " + author.name +
                              "'s messages out of order: '" + author.sent[got[k - 1]].text() +
                              "' before '" + author.sent[got[k]].text() + "'");
          }
          std::set<size_t> got_set(got.begin(), got.end());
          std::vector<std::string> lost;
          for (size_t i : want) {
            const Sent& s = author.sent[i];
            if (!got_set.count(i))
              lost.push_back(s.text() + (s.tag == "churn" && s.revision
                                             ? " (revision " + std::to_string(s.revision) + ")"
                                             : ""));
          }
          if (!lost.empty()) {
            std::string first;
            for (size_t k = 0; k < lost.size() && k < 5; ++k) first += " '" + lost[k] + "'";
            errors_.push_back(reader.name + " in " + tag + ": " + std::to_string(lost.size()) +
                              " of " + std::to_string(want.size()) + " messages " + author.name +
                              " sent are missing:" + first);
          }
        }
        for (const auto& [tag, got] : shown)
          if (!must.count(tag) && !in_order(got))
            errors_.push_back(reader.name + " in " + tag + ": " + author.name +
                              "'s messages out of order");
      }
    }
    for (const auto& [rev, in] : dave_in_at_) churn_revisions_ = std::max(churn_revisions_, rev);
    for (const auto& a : devices_)
      for (const auto& s : a.sent) {
        if (s.tag != "churn" || a.user == kChurned || s.id.empty()) continue;
        auto at = dave_in_at_.find(s.revision);
        if (s.revision == 0 || at == dave_in_at_.end())
          ++churn_unknown_;
        else
          ++(at->second ? churn_for_dave_ : churn_not_for_dave_);
      }
    // The groups' changes are the only events a conversation should show: a notice of a
    // message that could not be decrypted or sent means the faults cost a message. dave's
    // messages in churn that were queued when he was removed cannot be sent.
    for (const auto& n : notices_)
      if (!expected(n))
        errors_.push_back("unexpected notice: " + n.device + " in " + n.tag + ": " + n.text);
    // A run that hardly changed the group proves little.
    for (const auto& n : notices_)
      if (n.device == "bob.1" && n.tag == "churn" &&
          (n.text.find("removed @" + kChurned) != std::string::npos ||
           n.text.find("added @" + kChurned) != std::string::npos))
        ++churn_changes_;
    if (churn_changes_ < 2)
      errors_.push_back("bob.1 saw dave removed or added only " + std::to_string(churn_changes_) +
                        " times");
    // Every device ends with the group as alice.1 left it; dave's knows whether he is in it.
    const std::string& final_state = groups_["alice.1"];
    if (final_state.empty()) errors_.push_back("alice.1 did not show the churn group");
    bool dave_in = final_state.find(kChurned + ",") != std::string::npos;
    for (const auto& d : devices_) {
      const std::string& state = groups_[d.name];
      if (d.user == kChurned && !dave_in) {
        if (state.rfind("0 ", 0) != 0)
          errors_.push_back(d.name + " is not in churn but shows itself a member: " + state);
      } else if (state != final_state) {
        errors_.push_back(d.name + " ends with churn as '" + state + "', alice.1 with '" +
                          final_state + "'");
      }
    }
    // A run that sent little proves little.
    for (const auto& d : devices_)
      if (group_sent_[d.name] < 5)
        errors_.push_back(d.name + " sent only " + std::to_string(group_sent_[d.name]) +
                          " messages in the group");
    // Nor does a cluster run in which nothing of the cluster failed.
    if (cluster_) {
      if (back_measured_ == 0)
        errors_.push_back("no device was timed back online after its node went down (" +
                          std::to_string(node_kills_ + node_stops_) + " nodes went down)");
      if (redis_restarts_ == 0) errors_.push_back("redis-server was never restarted");
      if (postgres_restarts_ == 0) errors_.push_back("PostgreSQL was never restarted");
    }
  }

  // In the author's order (a message shown twice is reported as such, not here).
  static bool in_order(const std::vector<size_t>& got) {
    for (size_t k = 1; k < got.size(); ++k)
      if (got[k] < got[k - 1]) return false;
    return true;
  }

  // A message in its author's own history: outgoing, and it reached someone.
  void check_own(const Device& author, const Entry& e) {
    if (!e.outgoing) errors_.push_back(author.name + " shows its own " + e.text + " as incoming");
    // dave's messages in churn may reach nobody: he was removed before they left.
    bool may_fail = e.tag == "churn" && author.user == kChurned;
    if (!may_fail && (e.status == 0 || e.status == 1 || e.status == 4))
      errors_.push_back(author.name + "'s '" + e.text + "' ended with status " +
                        std::to_string(e.status) + " (expected delivered or read)");
  }

  struct Notice {
    std::string device, tag, text;
  };

  // Outside churn only the creation of the group "soak" is news. In churn the membership
  // changes are too, and dave's own "could not be sent" for a message queued while he was out.
  static bool expected(const Notice& n) {
    auto has = [&](const char* what) { return n.text.find(what) != std::string::npos; };
    if (n.tag != "churn") return has(" the group \"soak\"");
    if (has("could not be decrypted") || has("safety number")) return false;
    return !has("could not be sent") ||
           (n.device.rfind(kChurned + ".", 0) == 0 && has("no longer"));
  }

  void report() {
    std::printf(
        "soak: %llu s of faults, %zu devices, %llu messages recorded as sent and %llu in flight "
        "at a kill (%llu of them in history); %d device kills, %d relay kills, %d relay stops, %d "
        "network cuts (%llu connections), %d network stalls; dave removed or added %d times "
        "(revision %u), the others sent %llu messages in churn while he was in, %llu while he "
        "was out, %llu at a revision alice.1 did not report; final dump after %.1f s\n",
        static_cast<unsigned long long>(seconds_), devices_.size(),
        static_cast<unsigned long long>(recorded_), static_cast<unsigned long long>(in_flight_),
        static_cast<unsigned long long>(in_flight_committed_), device_kills_, relay_kills_,
        relay_stops_, network_cuts_, static_cast<unsigned long long>(cut_count()), network_stalls_,
        churn_changes_, churn_revisions_, static_cast<unsigned long long>(churn_for_dave_),
        static_cast<unsigned long long>(churn_not_for_dave_),
        static_cast<unsigned long long>(churn_unknown_), settle_seconds_);
    if (cluster_) {
      uint64_t to[kNodes] = {};
      for (const auto& p : proxies_)
        for (size_t i = 0; i < kNodes; ++i) to[i] += p->connections_to(i);
      std::printf(
          "soak (cluster): %d node kills, %d node stops, %d redis-server restarts, %d PostgreSQL "
          "restarts; connections to n0/n1/n2: %llu/%llu/%llu; %d devices timed back online "
          "after their node went down, the slowest in %.2f s%s%s (at most %lld s); %d more while "
          "Redis or PostgreSQL was down too (at most %lld s)\n",
          node_kills_, node_stops_, redis_restarts_, postgres_restarts_,
          static_cast<unsigned long long>(to[0]), static_cast<unsigned long long>(to[1]),
          static_cast<unsigned long long>(to[2]), back_measured_ - back_compounded_, worst_back_,
          worst_back_what_.empty() ? "" : ": ", worst_back_what_.c_str(),
          static_cast<long long>(kBackWithin.count()), back_compounded_,
          static_cast<long long>(kBackWithinCompounded.count()));
      if (!errors_.empty())
        for (size_t i = 0; i < nodes_.size(); ++i)
          std::printf("soak (cluster): node %s's warnings:\n%s", node_name(i).c_str(),
                      warnings(nodes_[i]->log()).c_str());
    }
    std::string first;
    for (size_t i = 0; i < errors_.size() && i < 40; ++i) first += "  " + errors_[i] + "\n";
    EXPECT_TRUE(errors_.empty()) << errors_.size() << " problems (seed " << seed_ << "):\n"
                                 << first;
    if (chaos_ran_) {
      EXPECT_GT(device_kills_ + relay_kills_ + relay_stops_ + network_cuts_ + network_stalls_, 0)
          << "no fault was injected";
    }
  }

  uint64_t cut_count() const {
    uint64_t n = 0;
    for (const auto& p : proxies_) n += p->cut_count();
    return n;
  }

  // The warning and error lines of a node's log (the last 20).
  static std::string warnings(const std::string& log) {
    std::vector<std::string> lines;
    std::istringstream in(log);
    for (std::string line; std::getline(in, line);)
      if (line.find("level=warn") != std::string::npos ||
          line.find("level=error") != std::string::npos)
        lines.push_back(line);
    std::string out;
    for (size_t i = lines.size() > 20 ? lines.size() - 20 : 0; i < lines.size(); ++i)
      out += "  " + lines[i] + "\n";
    return out;
  }

  Device& device(const std::string& name) {
    for (auto& d : devices_)
      if (d.name == name) return d;
    throw std::logic_error("no device " + name);
  }

  uint64_t seed_;
  uint64_t seconds_;
  bool cluster_;
  std::mt19937_64 rng_;
  TempDir root_;
  // Declared before the relays, which need them until they stop.
  std::unique_ptr<PostgresServer> postgres_;
  std::unique_ptr<RedisServer> redis_;
  std::unique_ptr<RelayProcess> relay_;               // one relay...
  std::vector<std::unique_ptr<RelayProcess>> nodes_;  // ...or the cluster's nodes
  // The devices reach the relay through them: one for all, or one per device in a cluster.
  std::vector<std::unique_ptr<FaultyProxy>> proxies_;
  std::vector<std::string> users_;
  std::vector<Device> devices_;
  std::vector<std::string> errors_;
  std::vector<Notice> notices_;
  std::map<std::string, std::string> groups_;  // device -> its GROUP line for churn
  std::map<std::string, std::map<std::string, std::vector<Entry>>> history_;
  std::map<uint32_t, bool> dave_in_at_;  // churn's revision -> dave a member, as alice.1 said
  std::map<std::string, uint64_t> group_sent_;
  bool chaos_ran_ = false;
  uint64_t recorded_ = 0, in_flight_ = 0, in_flight_committed_ = 0;
  uint64_t churn_for_dave_ = 0, churn_not_for_dave_ = 0, churn_unknown_ = 0;
  uint32_t churn_revisions_ = 0;
  int churn_changes_ = 0;  // dave removed or added, as bob.1 saw it
  int device_kills_ = 0, relay_kills_ = 0, relay_stops_ = 0, network_cuts_ = 0, network_stalls_ = 0;
  double settle_seconds_ = 0;
  // Cluster mode.
  Clock::time_point chaos_started_;
  std::vector<Outage> outages_;
  bool node_died_[kNodes] = {};
  int node_kills_ = 0, node_stops_ = 0, redis_restarts_ = 0, postgres_restarts_ = 0;
  int back_measured_ = 0, back_compounded_ = 0;  // the second: not in worst_back_
  // When Redis or PostgreSQL went down and when it was back.
  std::vector<std::pair<Clock::time_point, Clock::time_point>> infra_outages_;
  double worst_back_ = 0;
  std::string worst_back_what_;
};

TEST(Soak, NothingLostDuplicatedOrReorderedThroughCrashesAndNetworkFaults) {
  Soak soak(false);
  soak.run();
}

TEST(SoakCluster, NothingLostAndDevicesBackOnALiveNodeThroughNodeRedisAndPostgresFailures) {
  Soak soak(true);
  soak.run();
}

}  // namespace
}  // namespace sotto::test
