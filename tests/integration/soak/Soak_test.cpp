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
// same members and name. Every message carries the group revision it was sent at, and the
// record says which (and alice.1 says which revisions have dave): with
// SOTTO_SOAK_CHURN_EXACT=1, dave's device must show exactly the others' messages sent at a
// revision that had him as a member. The SDK does not keep to that yet: a group message goes
// to the members at the time it leaves the outbox, not to those of the revision it carries,
// and a device that has applied its removal drops messages sent at a revision that had it.
//
// ctest runs it for SOTTO_SOAK_SECONDS (default 40) of chaos; `./run soak MINUTES` runs it
// longer. SOTTO_SOAK_SEED replays a run's schedule of faults (each run prints its seed).
#include <gtest/gtest.h>

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

// One message a device said it sent, in the order it said so: the controller's record.
struct Sent {
  std::string tag;
  uint64_t n = 0;
  std::string id;  // empty: in flight when the device was killed (SENDING without SENT)
  // churn: the group's revision the author sent it at, 0 when the author's revision changed
  // during the send (or the device was killed before it said which it was).
  uint32_t revision = 0;
  std::string text() const { return tag + " " + std::to_string(n); }
};

struct Device {
  std::string name;  // "alice.1"
  std::string user;  // "alice"
  fs::path dir;
  std::string key_hex;
  bool creator = false;
  std::unique_ptr<ChildProcess> process;
  std::optional<Clock::time_point> restart_at;  // set while killed
  int starts = 0;
  std::vector<Sent> sent;  // every send_text() that returned, over all runs, in order
  // The current run's SENDING line not yet followed by SENT, and churn's revision before it.
  std::optional<Sent> sending;
  uint32_t churn_before = 0;
  std::map<std::string, uint64_t> next;  // tag -> one past every number this device announced
};

// One message as a device's dump shows it.
struct Entry {
  int status = 0;
  bool outgoing = false;
  std::string id;
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
        exact_churn_(env_number("SOTTO_SOAK_CHURN_EXACT", 0) != 0),
        rng_(seed_) {
    std::printf(
        "soak: seed %llu, %llu s of faults, churn checked %s (SOTTO_SOAK_SEED, SOTTO_SOAK_SECONDS, "
        "SOTTO_SOAK_CHURN_EXACT)\n",
        static_cast<unsigned long long>(seed_), static_cast<unsigned long long>(seconds_),
        exact_churn_ ? "exactly by revision" : "for order and duplicates at dave's");
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
    // The errors gathered so far are reported whatever happens next.
    if (!::testing::Test::HasFatalFailure() && errors_.empty()) {
      start_chatting();
      faults();
      settle_and_dump();
      check();
      chaos_ran_ = true;
    }
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
      uint32_t before = 0;
      in >> tag >> n >> id >> before;
      if (!in || !d.sending || d.sending->tag != tag || d.sending->n != n) {
        errors_.push_back(d.name + " printed '" + line + "' without SENDING " + tag + " " +
                          std::to_string(n) + " before it");
        return;
      }
      d.sending->id = id;
      d.churn_before = before;
      d.sent.push_back(*d.sending);
      d.sending.reset();
    } else if (kind == "AFTER") {
      std::string tag;
      uint64_t n = 0;
      uint32_t after = 0;
      in >> tag >> n >> after;
      if (!in || d.sent.empty() || d.sent.back().tag != tag || d.sent.back().n != n) {
        errors_.push_back(d.name + " printed '" + line + "' after another message");
        return;
      }
      if (d.churn_before == after) d.sent.back().revision = after;
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
      if (d.process && !d.restart_at) kill_device(d);
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
    in >> e.status >> outgoing >> e.id;
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
    // dave's messages in churn may reach nobody: he was removed before they left.
    if (author.user == kChurned) return Due::kMay;
    if (reader.user != kChurned) return Due::kMust;
    if (!exact_churn_) return Due::kMay;
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
    // In-flight messages count as sent when their author's history has them.
    std::map<std::string, std::set<size_t>> committed;  // author -> indexes in its record
    for (const auto& a : devices_)
      for (const auto& [tag, entries] : history_[a.name])
        for (const auto& e : entries)
          if (e.author == a.name) {
            auto it = index[a.name][tag].find(e.n);
            if (it != index[a.name][tag].end()) committed[a.name].insert(it->second);
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
        "was out, %llu at a revision that changed during the send; final dump after %.1f s\n",
        static_cast<unsigned long long>(seconds_), devices_.size(),
        static_cast<unsigned long long>(recorded_), static_cast<unsigned long long>(in_flight_),
        static_cast<unsigned long long>(in_flight_committed_), device_kills_, relay_kills_,
        relay_stops_, network_cuts_, static_cast<unsigned long long>(proxy_.cut_count()),
        network_stalls_, churn_changes_, churn_revisions_,
        static_cast<unsigned long long>(churn_for_dave_),
        static_cast<unsigned long long>(churn_not_for_dave_),
        static_cast<unsigned long long>(churn_unknown_), settle_seconds_);
    std::string first;
    for (size_t i = 0; i < errors_.size() && i < 40; ++i) first += "  " + errors_[i] + "\n";
    EXPECT_TRUE(errors_.empty()) << errors_.size() << " problems (seed " << seed_ << "):\n"
                                 << first;
    if (chaos_ran_) {
      EXPECT_GT(device_kills_ + relay_kills_ + relay_stops_ + network_cuts_ + network_stalls_, 0)
          << "no fault was injected";
    }
  }

  Device& device(const std::string& name) {
    for (auto& d : devices_)
      if (d.name == name) return d;
    throw std::logic_error("no device " + name);
  }

  uint64_t seed_;
  uint64_t seconds_;
  bool exact_churn_;  // dave's device shows exactly what was sent while he was in churn
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
  std::map<uint32_t, bool> dave_in_at_;  // churn's revision -> dave a member, as alice.1 said
  std::map<std::string, uint64_t> group_sent_;
  bool chaos_ran_ = false;
  uint64_t recorded_ = 0, in_flight_ = 0, in_flight_committed_ = 0;
  uint64_t churn_for_dave_ = 0, churn_not_for_dave_ = 0, churn_unknown_ = 0;
  uint32_t churn_revisions_ = 0;
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
