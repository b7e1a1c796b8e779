// The soak test: four users (one of them with two linked devices) chat without pause through
// a real relay, in 1:1 conversations and two groups, while the controller kill -9s devices at
// random, kills or stops the relay, and cuts or stalls the network (a proxy between the
// devices and the relay). At the end every device connects once more and dumps
// its history, and the test checks what the product promises: every message a device wrote
// is on every device of every member of its conversation exactly once, in the order its
// author wrote it; nothing appears that nobody wrote; nothing is left pending; every message
// reached at least one recipient ("delivered"); no conversation shows a notice of a message
// that could not be decrypted or sent. In the second group, "churn", alice keeps removing dave
// and adding him back, and renames it: the others' messages there must meet the same rules
// on the others' devices, dave's device must show what it got once and in order, and every
// device must end with the same members and name.
//
// ctest runs it for SOTTO_SOAK_SECONDS (default 40) of chaos; `./run soak MINUTES` runs it
// longer. SOTTO_SOAK_SEED replays a run's schedule of faults (each run prints its seed).
#include <gtest/gtest.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <random>
#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "ChildProcess.h"
#include "FaultyProxy.h"
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

struct Device {
  std::string name;  // "alice.1"
  std::string user;  // "alice"
  fs::path dir;
  std::string key_hex;
  bool creator = false;
  std::unique_ptr<ChildProcess> process;
  std::optional<Clock::time_point> restart_at;  // set while killed
  int starts = 0;
};

// One message as a device's dump shows it.
struct Entry {
  int status = 0;
  bool outgoing = false;
  std::string author;  // device name from the text
  std::string tag;     // conversation tag from the text
  uint64_t n = 0;
  std::string text;
};

class Soak {
 public:
  Soak()
      : seed_(env_number("SOTTO_SOAK_SEED", std::random_device{}())),
        seconds_(env_number("SOTTO_SOAK_SECONDS", 40)),
        rng_(seed_) {
    std::printf("soak: seed %llu, %llu s of faults (SOTTO_SOAK_SEED, SOTTO_SOAK_SECONDS)\n",
                static_cast<unsigned long long>(seed_), static_cast<unsigned long long>(seconds_));
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
    set_up_accounts();
    if (::testing::Test::HasFatalFailure() || !errors_.empty()) return;
    start_chatting();
    faults();
    settle_and_dump();
    check();
    report();
  }

 private:
  std::vector<std::string> base(const Device& d) const {
    return {SOTTO_SOAK_USER, d.dir.string(), d.key_hex,
            "ws://127.0.0.1:" + std::to_string(proxy_.port()) + "/v1/ws"};
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
    std::vector<std::string> args =
        with(base(d), {"chat", d.name, std::to_string(seed_ + 1000 * d.starts + index), peers});
    if (d.creator) args.push_back("creator");
    d.process = std::make_unique<ChildProcess>(args);
    d.restart_at.reset();
    ++d.starts;
  }

  void start_chatting() {
    for (auto& d : devices_) start(d);
    for (auto& d : devices_) expect_line(*d.process, d.name, "READY", 60s);
  }

  // Reads what the chatting devices printed; a device that exits by itself is an error.
  void drain() {
    for (auto& d : devices_) {
      if (!d.process || d.restart_at) continue;
      while (auto line = d.process->read_line(0ms))
        if (line->rfind("ERROR ", 0) == 0) errors_.push_back(d.name + ": " + line->substr(6));
      if (auto st = d.process->exit_status()) {
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
            d.process->kill9();
            d.restart_at = Clock::now() + random_ms(0, 3000);
            ++device_kills_;
          }
        } else if (roll < 58) {
          relay_.kill9();
          std::this_thread::sleep_for(random_ms(0, 1000));
          relay_.restart();
          ++relay_kills_;
        } else if (roll < 66) {
          int status = relay_.terminate();
          if (status != 0)
            errors_.push_back("the relay exited with status " + std::to_string(status) +
                              " after SIGTERM");
          std::this_thread::sleep_for(random_ms(0, 500));
          relay_.restart();
          ++relay_stops_;
        } else if (roll < 80) {
          proxy_.cut_all();
          ++network_cuts_;
        } else if (roll < 86) {
          // Longer than the devices' idle timeout (6 s) at times: they must notice by
          // themselves that the connection is dead.
          proxy_.stall(random_ms(1000, 8000));
          ++network_stalls_;
        }
        next_fault = Clock::now() + random_ms(500, 3000);
      }
      std::this_thread::sleep_for(50ms);
    }
    proxy_.stall(0ms);
    drain();
    // The last fault: every device dies at once, in the middle of whatever it was doing.
    for (auto& d : devices_)
      if (d.process) d.process->kill9();
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
    in >> e.status >> outgoing;
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

  std::vector<std::string> members(const std::string& tag) const {
    std::vector<std::string> out;
    for (const auto& d : devices_) {
      bool member =
          tag == "group" || (tag == "churn" && d.user != kChurned) ||
          tag.rfind(d.user + "-", 0) == 0 ||
          (tag.size() > d.user.size() &&
           tag.compare(tag.size() - d.user.size() - 1, std::string::npos, "-" + d.user) == 0);
      if (member) out.push_back(d.name);
    }
    return out;
  }

  void check() {
    // What each device wrote: its own history is the record (send_text() returns only after
    // the message is in it), so its numbers must run 0, 1, 2... without a gap.
    std::map<std::string, std::map<std::string, uint64_t>> wrote;  // tag -> author -> count
    for (const auto& d : devices_) {
      for (const auto& [tag, entries] : history_[d.name]) {
        std::set<uint64_t> mine;
        for (const auto& e : entries) {
          if (e.author != d.name) continue;
          mine.insert(e.n);
          if (!e.outgoing) errors_.push_back(d.name + " shows its own " + e.text + " as incoming");
          // dave's messages in churn may reach nobody: he was removed before they left.
          bool may_fail = tag == "churn" && d.user == kChurned;
          if (!may_fail && (e.status == 0 || e.status == 1 || e.status == 4))
            errors_.push_back(d.name + "'s '" + e.text + "' ended with status " +
                              std::to_string(e.status) + " (expected delivered or read)");
        }
        if (!mine.empty() && *mine.rbegin() + 1 != mine.size())
          errors_.push_back(d.name + " wrote " + std::to_string(mine.size()) + " messages in " +
                            tag + " but numbered up to " + std::to_string(*mine.rbegin()));
        wrote[tag][d.name] = mine.size();
        total_ += mine.size();
      }
    }
    // Every member's device has each author's messages exactly once, in the author's order.
    for (const auto& [tag, authors] : wrote) {
      auto who = members(tag);
      for (const auto& device : who) {
        auto it = history_[device].find(tag);
        if (it == history_[device].end()) {
          errors_.push_back(device + " has no conversation " + tag);
          continue;
        }
        std::map<std::string, std::vector<uint64_t>> seen;
        std::set<std::string> texts;
        for (const auto& e : it->second) {
          if (!texts.insert(e.text).second)
            errors_.push_back(device + " shows '" + e.text + "' twice");
          if (e.tag != tag) errors_.push_back(device + " shows '" + e.text + "' in " + tag);
          seen[e.author].push_back(e.n);
        }
        for (const auto& [author, count] : authors) {
          const auto& got = seen[author];
          if (tag == "churn" && author.rfind(kChurned + ".", 0) == 0) {
            check_in_order(device, tag, author, got, count);
            continue;
          }
          std::vector<uint64_t> want(count);
          for (uint64_t i = 0; i < count; ++i) want[i] = i;
          if (got == want) continue;
          std::set<uint64_t> got_set(got.begin(), got.end());
          size_t lost = 0, extra = 0;
          for (uint64_t n : want) lost += !got_set.count(n);
          for (uint64_t n : got_set) extra += n >= count;
          std::ostringstream what;
          what << device << " in " << tag << ": " << author << "'s messages ";
          if (lost) what << lost << " of " << count << " missing; ";
          if (extra) what << extra << " that " << author << " never wrote; ";
          if (!lost && !extra) {
            size_t i = 0;
            while (i < got.size() && got[i] == want[i]) ++i;
            what << "out of order: ";
            for (size_t j = i >= 2 ? i - 2 : 0; j < got.size() && j < i + 4; ++j)
              what << (j == i ? "[" : "") << got[j] << (j == i ? "] " : " ");
          }
          errors_.push_back(what.str());
        }
        for (const auto& [author, ns] : seen)
          if (!authors.count(author))
            errors_.push_back(device + " in " + tag + ": messages from " + author +
                              ", who wrote none there");
      }
    }
    // dave's device shows what it got of the others' messages in churn: each author's once
    // and in order, though not all of them.
    for (const auto& d : devices_) {
      if (d.user != kChurned) continue;
      std::map<std::string, std::vector<uint64_t>> seen;
      for (const auto& e : history_[d.name]["churn"])
        if (e.author != d.name) seen[e.author].push_back(e.n);
      for (const auto& [author, got] : seen)
        check_in_order(d.name, "churn", author, got, wrote["churn"][author]);
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
      if (wrote["group"][d.name] < 5)
        errors_.push_back(d.name + " wrote only " + std::to_string(wrote["group"][d.name]) +
                          " messages in the group");
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

  // `got`, the numbers of `author`'s messages that `device` shows, is a part of what the
  // author wrote (`count` messages), in the author's order.
  void check_in_order(const std::string& device, const std::string& tag, const std::string& author,
                      const std::vector<uint64_t>& got, uint64_t count) {
    for (size_t i = 0; i < got.size(); ++i) {
      if (got[i] >= count) {
        errors_.push_back(device + " in " + tag + ": " + author + "'s message " +
                          std::to_string(got[i]) + ", which " + author + " never wrote");
        return;
      }
      if (i && got[i] <= got[i - 1]) {
        errors_.push_back(device + " in " + tag + ": " + author + "'s messages out of order: " +
                          std::to_string(got[i - 1]) + " before " + std::to_string(got[i]));
        return;
      }
    }
  }

  void report() {
    std::printf(
        "soak: %llu s of faults, %zu devices, %llu messages written; %d device kills, %d relay "
        "kills, %d relay stops, %d network cuts (%llu connections), %d network stalls; dave "
        "removed or added %d times; final dump after %.1f s\n",
        static_cast<unsigned long long>(seconds_), devices_.size(),
        static_cast<unsigned long long>(total_), device_kills_, relay_kills_, relay_stops_,
        network_cuts_, static_cast<unsigned long long>(proxy_.cut_count()), network_stalls_,
        churn_changes_, settle_seconds_);
    std::string first;
    for (size_t i = 0; i < errors_.size() && i < 40; ++i) first += "  " + errors_[i] + "\n";
    EXPECT_TRUE(errors_.empty()) << errors_.size() << " problems (seed " << seed_ << "):\n"
                                 << first;
    EXPECT_GT(device_kills_ + relay_kills_ + relay_stops_ + network_cuts_ + network_stalls_, 0)
        << "no fault was injected";
  }

  Device& device(const std::string& name) {
    for (auto& d : devices_)
      if (d.name == name) return d;
    throw std::logic_error("no device " + name);
  }

  uint64_t seed_;
  uint64_t seconds_;
  std::mt19937_64 rng_;
  TempDir root_;
  RelayProcess relay_;
  FaultyProxy proxy_{relay_.port()};  // every device reaches the relay through it
  std::vector<std::string> users_;
  std::vector<Device> devices_;
  std::vector<std::string> errors_;
  std::vector<Notice> notices_;
  std::map<std::string, std::string> groups_;  // device -> its GROUP line for churn
  std::map<std::string, std::map<std::string, std::vector<Entry>>> history_;
  uint64_t total_ = 0;
  int churn_changes_ = 0;  // dave removed or added, as bob.1 saw it
  int device_kills_ = 0, relay_kills_ = 0, relay_stops_ = 0, network_cuts_ = 0, network_stalls_ = 0;
  double settle_seconds_ = 0;
};

TEST(Soak, NothingLostDuplicatedOrReorderedThroughCrashesAndNetworkFaults) {
  Soak soak;
  soak.run();
}

}  // namespace
}  // namespace sotto::test
