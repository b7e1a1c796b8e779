// sotto-relay backup and restore, on the real binary: a backup taken while a client keeps
// sending, restored into a new data dir, serves the accounts, the queued envelopes and the
// attachment; the backup of an encrypted store is encrypted; and a restore drops the one-time
// prekeys that a backup may hold after they were handed out.
#include <sodium.h>

#include <atomic>
#include <fstream>
#include <set>

#include "RelayTestUtil.h"

namespace sotto::test {
namespace {

namespace fs = std::filesystem;

std::string read_all(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

wire::Request bundles_request(const TestDevice& of) {
  wire::Request r = make_request(wire::OP_GET_BUNDLES);
  r.mutable_get_bundles()->set_account_id(str(of.account_id));
  return r;
}

// The one-time prekey id the relay hands out for `of` (0: the last-resort key).
uint32_t take_prekey(WireClient& c, const TestDevice& of) {
  auto resp = expect_ok(c, bundles_request(of));
  if (resp.get_bundles().bundles_size() != 1) return UINT32_MAX;
  const auto& b = resp.get_bundles().bundles(0);
  return b.last_resort() ? 0 : b.one_time_prekey().id();
}

uint32_t pool_size(WireClient& c) {
  return expect_ok(c, make_request(wire::OP_GET_PREKEY_COUNT))
      .get_prekey_count()
      .one_time_prekeys();
}

// Every envelope waiting for the device, acknowledged as it comes, until QueueEmpty; other
// pushes go to `others`.
std::vector<wire::Envelope> drain(WireClient& c, std::vector<wire::Push>* others = nullptr) {
  std::vector<wire::Envelope> out;
  for (;;) {
    auto p = c.next_push(10s);
    if (!p) {
      ADD_FAILURE() << "no QueueEmpty after " << out.size() << " envelopes";
      return out;
    }
    if (p->has_queue_empty()) return out;
    if (!p->has_envelope()) {
      if (others) others->push_back(*p);
      continue;
    }
    out.push_back(p->envelope());
    ack(c, {p->envelope().sequence()});
  }
}

TEST(RelayBackup, ABackupTakenWhileClientsSendRestoresAccountsQueuesAndAttachments) {
  Scratch scratch;
  const fs::path key_file = scratch.path / "relay-db.key";
  { std::ofstream(key_file) << std::string(64, 'c') << "\n"; }
  RelayProcess::Options options;
  options.extra_args = {"--db-key-file", key_file.string()};
  options.data_dir = scratch.path / "live";
  RelayProcess relay(options);
  TestDevice alice = must_register(relay, "alicemarker");
  TestDevice bob = must_register(relay, "bobmarker", 10);
  TestDevice carol = must_register(relay, "carolmarker");
  auto a = must_connect(relay, alice);
  ASSERT_TRUE(a);

  // Queued for bob, who is away.
  std::vector<std::string> queued;
  for (int i = 0; i < 20; ++i) {
    queued.push_back("queued-marker-" + std::to_string(i));
    expect_ok(*a, send_request(random_message_id(), {{&bob, queued.back()}}));
  }
  EXPECT_EQ(take_prekey(*a, bob), 1u);
  // An attachment alice uploaded.
  std::string blob(100'000, '\0');
  randombytes_buf(blob.data(), blob.size());
  wire::Request reserve = make_request(wire::OP_ATTACHMENT_UPLOAD);
  reserve.mutable_attachment_upload()->set_size_bytes(blob.size());
  const std::string path = expect_ok(*a, reserve).attachment_upload().path();
  const std::map<std::string, std::string> alice_auth = {
      {"Authorization", alice.credentials().authorization()}};
  ASSERT_EQ(http_request(relay.port(), "PUT", path, alice_auth, blob).status, 201);

  // carol keeps sending to bob while the backup runs.
  std::atomic<bool> stop{false}, sender_done{false};
  std::atomic<int> answered{0};
  std::mutex mu;
  std::set<std::string> carol_sent;  // message ids answered OK
  std::vector<std::string> refused;
  std::thread sender([&] {
    auto c = must_connect(relay, carol);
    for (int i = 0; c && i < 1500 && !stop; ++i) {
      Bytes mid = random_message_id();
      auto r = c->call(send_request(mid, {{&bob, "during-marker-" + std::to_string(i)}}));
      std::lock_guard lock(mu);
      if (r.ok() && r->status() == wire::OK)
        carol_sent.insert(str(mid));
      else
        refused.push_back(r.ok() ? r->message() : r.error().message);
      ++answered;
    }
    sender_done = true;
  });
  // Waits (at most 30 s) until carol had `n` sends answered or stopped sending.
  auto wait_answered = [&](int n) {
    auto deadline = std::chrono::steady_clock::now() + 30s;
    while (answered < n && !sender_done && std::chrono::steady_clock::now() < deadline)
      std::this_thread::sleep_for(5ms);
  };
  wait_answered(5);
  if (answered < 5) {
    stop = true;
    sender.join();
    FAIL() << "carol could not send";
  }
  const fs::path backup = scratch.path / "backup";
  const std::vector<std::string> key_args = {"--db-key-file", key_file.string()};
  auto with = [&](std::vector<std::string> args, const std::vector<std::string>& more) {
    args.insert(args.end(), more.begin(), more.end());
    return args;
  };
  Outcome taken = run_relay(
      with({"backup", backup.string(), "--data-dir", relay.data_dir().string()}, key_args));
  wait_answered(answered + 5);
  stop = true;
  sender.join();
  ASSERT_EQ(taken.status, 0) << taken.output;
  EXPECT_NE(taken.output.find("event=backup_done"), std::string::npos) << taken.output;
  EXPECT_TRUE(refused.empty()) << "a send failed during the backup: " << refused.front();

  // A second backup never writes over the first.
  Outcome again = run_relay(
      with({"backup", backup.string(), "--data-dir", relay.data_dir().string()}, key_args));
  EXPECT_EQ(again.status, 1);
  EXPECT_NE(again.output.find("already exists"), std::string::npos) << again.output;

  // After the backup: bob reads (and acknowledges) everything, alice takes two more of bob's
  // prekeys, dave registers.
  {
    auto b = must_connect(relay, bob);
    ASSERT_TRUE(b);
    EXPECT_GE(drain(*b).size(), queued.size());
  }
  EXPECT_EQ(take_prekey(*a, bob), 2u);
  EXPECT_EQ(take_prekey(*a, bob), 3u);
  TestDevice dave = must_register(relay, "davemarker");
  a.reset();

  // The backup is encrypted: no SQLite header, none of the stored plaintext, and neither
  // without the key nor with another does it restore.
  EXPECT_NE(read_all(backup / "relay.db").substr(0, 16), std::string("SQLite format 3\0", 16));
  EXPECT_EQ(fs::file_size(backup / "attachments" / path.substr(16)), blob.size());
  for (const auto& e : fs::recursive_directory_iterator(backup)) {
    if (!e.is_regular_file()) continue;
    std::string bytes = read_all(e.path());
    for (const char* marker :
         {"alicemarker", "bobmarker", "carolmarker", "queued-marker", "during-marker"})
      EXPECT_EQ(bytes.find(marker), std::string::npos) << marker << " in " << e.path();
  }
  Outcome no_key =
      run_relay({"restore", backup.string(), "--data-dir", (scratch.path / "x").string()});
  EXPECT_EQ(no_key.status, 1);
  EXPECT_NE(no_key.output.find("code=wrong_key"), std::string::npos) << no_key.output;
  const fs::path other_key = scratch.path / "other.key";
  { std::ofstream(other_key) << std::string(64, 'd') << "\n"; }
  Outcome wrong_key =
      run_relay({"restore", backup.string(), "--data-dir", (scratch.path / "x").string(),
                 "--db-key-file", other_key.string()});
  EXPECT_EQ(wrong_key.status, 1);
  EXPECT_NE(wrong_key.output.find("code=wrong_key"), std::string::npos) << wrong_key.output;
  EXPECT_FALSE(fs::exists(scratch.path / "x")) << "a failed restore left a data dir behind";

  // A restore never writes into a data dir that holds something.
  fs::create_directories(scratch.path / "busy");
  std::ofstream(scratch.path / "busy" / "relay.db") << "not a backup";
  Outcome busy = run_relay(
      with({"restore", backup.string(), "--data-dir", (scratch.path / "busy").string()}, key_args));
  EXPECT_EQ(busy.status, 1);
  EXPECT_NE(busy.output.find("is not empty"), std::string::npos) << busy.output;
  EXPECT_EQ(read_all(scratch.path / "busy" / "relay.db"), "not a backup");

  const fs::path restored = scratch.path / "restored";
  Outcome done =
      run_relay(with({"restore", backup.string(), "--data-dir", restored.string()}, key_args));
  ASSERT_EQ(done.status, 0) << done.output;
  EXPECT_NE(done.output.find("one_time_prekeys_dropped="), std::string::npos) << done.output;
  relay.terminate();

  RelayProcess::Options from_backup = options;
  from_backup.data_dir = restored;
  RelayProcess back(from_backup);
  // The accounts of the backup are served; dave registered after it and is unknown.
  auto a2 = must_connect(back, alice);
  ASSERT_TRUE(a2);
  int status = 0;
  Credentials dave_credentials = dave.credentials();
  EXPECT_FALSE(WireClient::connect(back.host(), back.port(), &dave_credentials, &status).ok());
  EXPECT_EQ(status, 401);
  // bob gets the queue of the backup again, acknowledged since or not: the queued envelopes
  // in order, and the ones carol sent before the snapshot (each answered OK).
  auto b2 = must_connect(back, bob);
  ASSERT_TRUE(b2);
  std::vector<wire::Push> others;
  auto got = drain(*b2, &others);
  std::vector<std::string> texts;
  uint64_t last = 0;
  for (const auto& e : got) {
    EXPECT_GT(e.sequence(), last);
    last = e.sequence();
    if (e.ciphertext().rfind("queued-marker-", 0) == 0)
      texts.push_back(e.ciphertext());
    else
      EXPECT_TRUE(carol_sent.count(e.message_id())) << "an envelope nobody was told was sent";
  }
  EXPECT_EQ(texts, queued);
  // The restore dropped the pools: bob hears his is low and peers get his last-resort key
  // until he uploads more; the keys alice took after the backup are never handed out again.
  EXPECT_EQ(pool_size(*b2), 0u);
  bool told = false;
  for (const auto& p : others) told = told || p.has_prekeys_low();
  while (!told) {
    auto p = b2->next_push(5s);
    if (!p) break;
    told = p->has_prekeys_low();
  }
  EXPECT_TRUE(told) << "bob was not told that his pool is low";
  EXPECT_EQ(take_prekey(*a2, bob), 0u);
  // The attachment is served.
  auto download = http_request(back.port(), "GET", path,
                               {{"Authorization", bob.credentials().authorization()}});
  EXPECT_EQ(download.status, 200);
  EXPECT_TRUE(download.body == blob) << "the attachment came back different";
  back.terminate();

  // With --keep-one-time-prekeys the backup's pool comes back as it was, keys 2 and 3 that
  // were handed out after the backup included: the next peer gets key 2 a second time.
  const fs::path kept = scratch.path / "kept";
  Outcome keep = run_relay(
      with({"restore", backup.string(), "--data-dir", kept.string(), "--keep-one-time-prekeys"},
           key_args));
  ASSERT_EQ(keep.status, 0) << keep.output;
  RelayProcess::Options from_kept = options;
  from_kept.data_dir = kept;
  RelayProcess third(from_kept);
  auto a3 = must_connect(third, alice);
  ASSERT_TRUE(a3);
  EXPECT_EQ(take_prekey(*a3, bob), 2u);
}

}  // namespace
}  // namespace sotto::test
