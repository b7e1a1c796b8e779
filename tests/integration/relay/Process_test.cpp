// The relay as a process: readiness, restart on the same port, crash and shutdown safety.
#include <signal.h>
#include <sys/wait.h>

#include <set>

#include "CrashVfs.h"
#include "RelayTestUtil.h"

#ifndef SOTTO_TEST_VFS_PRELOAD
#error "SOTTO_TEST_VFS_PRELOAD must name libsotto_test_vfs_preload.so"
#endif

namespace sotto::test {
namespace {

std::string run_binary(const std::vector<std::string>& args, int& status) {
  Outcome o = run_relay(args);
  status = o.status;
  return o.output;
}

// The environment that loads the crash-test VFS into the relay, watching `data_dir`, with its
// disk budget in the file `budget`.
std::vector<std::string> crash_vfs_env(const std::filesystem::path& data_dir,
                                       const std::filesystem::path& budget) {
  // A sanitizer runtime wants to come first; the preload does not use it.
  std::string asan = "verify_asan_link_order=0";
  if (const char* a = std::getenv("ASAN_OPTIONS")) asan = std::string(a) + ":" + asan;
  return {std::string("LD_PRELOAD=") + SOTTO_TEST_VFS_PRELOAD,
          std::string(CrashVfs::kWatchEnv) + "=" + data_dir.string(),
          std::string(CrashVfs::kBudgetEnv) + "=" + budget.string(), "ASAN_OPTIONS=" + asan};
}

TEST(RelayProcess, StartsOnAnEphemeralPortAndAnswersHealthAndMetrics) {
  RelayProcess relay;
  ASSERT_GT(relay.port(), 0);
  EXPECT_EQ(relay.ws_url(), "ws://127.0.0.1:" + std::to_string(relay.port()) + "/v1/ws");
  EXPECT_EQ(relay.http_base(), "http://127.0.0.1:" + std::to_string(relay.port()));
  auto health = http_request(relay.port(), "GET", "/healthz");
  EXPECT_EQ(health.status, 200);
  EXPECT_EQ(health.body, "ok\n");
  auto metrics = http_request(relay.port(), "GET", "/metrics");
  EXPECT_EQ(metrics.status, 200);
  EXPECT_NE(metrics.body.find("sotto_connections{kind=\"ws_authenticated\"}"), std::string::npos);
  EXPECT_NE(metrics.body.find("sotto_store_commit_seconds_bucket"), std::string::npos);
  EXPECT_NE(relay.log().find("event=listening"), std::string::npos);
  EXPECT_TRUE(std::filesystem::exists(relay.data_dir() / "relay.db"));
}

TEST(RelayProcess, HelpListsTheOptionsAndBadFlagsExitNonZero) {
  int status = -1;
  std::string help = run_binary({"--help"}, status);
  EXPECT_EQ(status, 0);
  for (const char* flag :
       {"--data-dir", "--listen", "--tls-cert", "--db-key-file", "--max-frame-bytes",
        "--rate-send-device", "--ip-rate-limits", "--reuse-port", "--metrics-access"})
    EXPECT_NE(help.find(flag), std::string::npos) << flag;
  std::string bad = run_binary({"--data-dir", "/tmp/x", "--no-such-flag"}, status);
  EXPECT_EQ(status, 2);
  EXPECT_NE(bad.find("no-such-flag"), std::string::npos) << bad;
  std::string no_dir = run_binary({}, status);
  EXPECT_EQ(status, 2);
  EXPECT_NE(no_dir.find("--data-dir"), std::string::npos) << no_dir;
}

// A mistyped data dir, a port in use and a host name each stop the relay with what to fix,
// before it creates or opens anything.
TEST(RelayProcess, StartUpErrorsSayWhatToFixBeforeAnythingIsCreated) {
  Scratch dir;
  const auto typo = dir.path / "sotto-relya";
  Outcome missing = run_relay({"--data-dir", typo.string(), "--listen", "127.0.0.1:0"});
  EXPECT_EQ(missing.status, 1) << missing.output;
  EXPECT_NE(missing.output.find("does not exist"), std::string::npos) << missing.output;
  EXPECT_NE(missing.output.find("--init"), std::string::npos) << missing.output;
  EXPECT_FALSE(std::filesystem::exists(typo));

  RelayProcess relay;
  const auto fresh = dir.path / "fresh";
  Outcome in_use = run_relay({"--data-dir", fresh.string(), "--init", "--listen",
                              "127.0.0.1:" + std::to_string(relay.port())});
  EXPECT_EQ(in_use.status, 1) << in_use.output;
  EXPECT_NE(in_use.output.find("--listen 127.0.0.1:" + std::to_string(relay.port()) +
                               ": the port is in use"),
            std::string::npos)
      << in_use.output;
  EXPECT_EQ(in_use.output.find("store_opened"), std::string::npos) << in_use.output;
  EXPECT_FALSE(std::filesystem::exists(fresh)) << "the port is checked first";

  Outcome named = run_relay({"--data-dir", dir.path.string(), "--listen", "localhost:0"});
  EXPECT_EQ(named.status, 2) << named.output;
  EXPECT_NE(named.output.find("names such as localhost are not looked up"), std::string::npos)
      << named.output;
}

TEST(RelayProcess, RestartKeepsThePortAndTheData) {
  RelayProcess relay;
  uint16_t port = relay.port();
  TestDevice alice = must_register(relay, "alice");
  relay.restart();
  EXPECT_EQ(relay.port(), port);
  auto c = must_connect(relay, alice);
  ASSERT_TRUE(c);
  expect_ok(*c, make_request(wire::OP_PING));
}

TEST(RelayProcess, ConfigFileSetsOptionsAndFlagsWin) {
  auto dir = std::filesystem::temp_directory_path() / ("sotto-cfg-" + std::to_string(::getpid()));
  std::filesystem::create_directories(dir);
  {
    std::ofstream cfg(dir / "relay.conf");
    cfg << "# test config\nmax-devices-per-account = 3\nprekey-low-threshold = 7\n";
  }
  RelayProcess::Options o;
  o.extra_args = {"--config", (dir / "relay.conf").string(), "--prekey-low-threshold", "9"};
  RelayProcess relay(o);
  auto c = WireClient::connect(relay.host(), relay.port());
  ASSERT_TRUE(c.ok());
  auto info = expect_ok(**c, make_request(wire::OP_SERVER_INFO));
  EXPECT_EQ(info.server_info().max_devices_per_account(), 3u);
  EXPECT_EQ(info.server_info().prekey_low_threshold(), 9u);
  EXPECT_EQ(info.server_info().max_frame_bytes(), 262144u);
  std::filesystem::remove_all(dir);
}

// kill -9 after N acknowledged sends, restart on the same data dir: all N arrive, none twice.
TEST(RelayDurability, KillNineAfterAcknowledgedSendsLosesNothing) {
  RelayProcess relay;
  TestDevice alice = must_register(relay, "alice", 0);
  TestDevice bob = must_register(relay, "bob", 0);
  constexpr int kSends = 300;
  std::set<std::string> sent;
  {
    auto a = must_connect(relay, alice);
    ASSERT_TRUE(a);
    std::vector<uint64_t> ids;
    std::vector<std::string> mids;
    for (int i = 0; i < kSends; ++i) {
      Bytes mid = random_message_id();
      mids.push_back(str(mid));
      ids.push_back(a->send(send_request(mid, {{&bob, "ct-" + std::to_string(i)}})));
    }
    for (size_t i = 0; i < ids.size(); ++i) {
      auto r = a->wait_response(ids[i]);
      ASSERT_TRUE(r.ok()) << r.error().message;
      ASSERT_EQ(r->status(), wire::OK) << r->message();
      sent.insert(mids[i]);
    }
  }
  relay.kill9();
  relay.restart();
  auto b = must_connect(relay, bob);
  ASSERT_TRUE(b);
  std::set<std::string> got;
  uint64_t last_seq = 0;
  int ordered_text = 0;
  while (got.size() < sent.size()) {
    auto e = next_envelope(*b, 10s);
    ASSERT_TRUE(e) << "only " << got.size() << " of " << sent.size() << " arrived";
    EXPECT_GT(e->sequence(), last_seq);
    last_seq = e->sequence();
    EXPECT_TRUE(got.insert(e->message_id()).second) << "delivered twice";
    EXPECT_EQ(e->ciphertext(), "ct-" + std::to_string(ordered_text++));
    ack(*b, {e->sequence()});
  }
  EXPECT_EQ(got, sent);
}

// The data dir's file system fills up: sends are refused with a status that says so, the
// relay keeps running, and once there is room again it accepts sends and delivers every one
// it acknowledged, in order, and none it refused. The disk is the crash-test VFS, preloaded
// into the real relay: it refuses the database's files more room once the test fills it, as a
// full file system would, and needs no privilege (a send writes nothing but SQLite's files).
TEST(RelayDurability, AFullDiskRefusesSendsAndLosesNothingAccepted) {
  std::string tmpl = (std::filesystem::temp_directory_path() / "sotto-full-XXXXXX").string();
  ASSERT_TRUE(::mkdtemp(tmpl.data()));
  const std::filesystem::path dir = tmpl;
  struct Remove {  // declared first: goes last, after the relay
    std::filesystem::path at;
    ~Remove() {
      std::error_code ec;
      std::filesystem::remove_all(at, ec);
    }
  } remove{dir};
  SharedDiskBudget disk(dir / "disk-budget");
  RelayProcess::Options o;
  o.data_dir = dir / "data";
  RelayProcess relay(o, crash_vfs_env(o.data_dir, disk.file()));
  TestDevice alice = must_register(relay, "alice", 0);
  TestDevice bob = must_register(relay, "bob", 0);
  auto a = must_connect(relay, alice);
  ASSERT_TRUE(a);

  std::vector<std::string> accepted;  // ciphertexts answered OK, in order
  auto send = [&](const std::string& ct) {
    auto r = a->wait_response(a->send(send_request(random_message_id(), {{&bob, ct}})));
    EXPECT_TRUE(r.ok()) << r.error().message;
    if (r.ok() && r->status() == wire::OK) accepted.push_back(ct);
    return r.ok() ? *r : wire::Response{};
  };
  for (int i = 0; i < 20; ++i) ASSERT_EQ(send("before-" + std::to_string(i)).status(), wire::OK);

  // Fill the file system but for 1 MiB, so that the disk fills up between two sends.
  fill(disk.get(), 1 << 20);
  const size_t before_full = accepted.size();
  const std::string pad(60 * 1024, 'x');
  wire::Response refused;
  for (int i = 0; i < 2000; ++i) {
    refused = send("full-" + std::to_string(i) + pad);
    if (refused.status() != wire::OK) break;
  }
  ASSERT_NE(refused.status(), wire::OK) << "the file system never filled up";
  EXPECT_GT(accepted.size(), before_full) << "the disk was full before the first large send";
  EXPECT_EQ(refused.status(), wire::UNAVAILABLE);
  EXPECT_NE(refused.message().find("storage is full"), std::string::npos) << refused.message();
  EXPECT_NE(relay.log().find("storage_full"), std::string::npos) << relay.log();

  // Room again: the relay takes sends without a restart.
  make_room(disk.get());
  bool ok_again = false;
  for (int i = 0; i < 50 && !ok_again; ++i) {
    ok_again = send("after-" + std::to_string(i)).status() == wire::OK;
    if (!ok_again) std::this_thread::sleep_for(100ms);
  }
  ASSERT_TRUE(ok_again) << relay.log();

  auto b = must_connect(relay, bob);
  ASSERT_TRUE(b);
  // Everything queued for bob when he connected comes before QueueEmpty: what was accepted, in
  // order, and nothing else.
  std::vector<std::string> got;
  for (;;) {
    auto p = b->next_push(10s);
    ASSERT_TRUE(p) << "no QueueEmpty after " << got.size() << " of " << accepted.size()
                   << " envelopes";
    if (p->has_queue_empty()) break;
    if (!p->has_envelope()) continue;
    got.push_back(p->envelope().ciphertext());
    ack(*b, {p->envelope().sequence()});
  }
  ASSERT_GE(got.size(), accepted.size())
      << "only " << got.size() << " of " << accepted.size() << " arrived";
  for (size_t i = 0; i < accepted.size(); ++i) ASSERT_EQ(got[i], accepted[i]) << "envelope " << i;
  EXPECT_EQ(got.size(), accepted.size()) << "an envelope that was refused arrived";
  a.reset();
  b.reset();
  EXPECT_EQ(relay.terminate(), 0) << relay.log();
}

// SIGTERM while sends are in flight: every send answered OK is delivered after a restart, the
// process exits 0, and connections get close code 1001.
TEST(RelayDurability, SigtermUnderLoadLosesNothingAcknowledged) {
  RelayProcess relay;
  TestDevice alice = must_register(relay, "alice", 0);
  TestDevice bob = must_register(relay, "bob", 0);
  auto a = must_connect(relay, alice);
  ASSERT_TRUE(a);
  std::map<uint64_t, std::string> pending;
  for (int i = 0; i < 400; ++i) {
    Bytes mid = random_message_id();
    pending[a->send(send_request(mid, {{&bob, "load"}}))] = str(mid);
  }
  // The signal lands once the first send is answered (so that some are acknowledged, however
  // the machine schedules the relay) and while the rest are still in flight.
  std::set<std::string> acknowledged;
  {
    auto first = a->wait_response(pending.begin()->first, 10s);
    ASSERT_TRUE(first.ok()) << first.error().message;
    ASSERT_EQ(first->status(), wire::OK) << first->message();
    acknowledged.insert(pending.begin()->second);
    pending.erase(pending.begin());
  }
  ASSERT_EQ(::kill(relay.pid(), SIGTERM), 0);
  for (auto& [id, mid] : pending) {
    auto r = a->wait_response(id, 5s);
    if (!r.ok()) break;  // the connection closed: later requests got no answer
    if (r->status() == wire::OK)
      acknowledged.insert(mid);
    else
      EXPECT_EQ(r->status(), wire::UNAVAILABLE) << r->message();
  }
  auto code = a->wait_closed(10s);
  ASSERT_TRUE(code);
  EXPECT_EQ(*code, 1001);
  EXPECT_EQ(relay.await_exit(), 0) << relay.log();
  relay.restart();
  auto b = must_connect(relay, bob);
  ASSERT_TRUE(b);
  std::set<std::string> got;
  for (;;) {
    auto p = b->next_push(10s);
    ASSERT_TRUE(p);
    if (p->has_queue_empty()) break;
    if (!p->has_envelope()) continue;
    got.insert(p->envelope().message_id());
    ack(*b, {p->envelope().sequence()});
  }
  for (const auto& mid : acknowledged) EXPECT_TRUE(got.count(mid)) << "acknowledged but lost";
  EXPECT_GT(acknowledged.size(), 0u);
}

}  // namespace
}  // namespace sotto::test
