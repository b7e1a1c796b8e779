// The profile against power loss. bob's profile lives on a directory the crash-test VFS
// (tests/support/CrashVfs.h) watches; alice's does not. They talk as the relay would carry
// their messages: a message bob decrypted and stored (the call returned) was acknowledged, one
// whose call failed is delivered again after the restart. After a cut right after a commit or
// at a random write or sync, bob's profile must open with its key, pass SQLite's integrity
// check, hold every message it stored and sent, and both ratchets must still agree.
#include <gtest/gtest.h>
#include <sqlcipher/sqlite3.h>

#include <deque>
#include <random>
#include <set>

#include "CrashVfs.h"
#include "Devices.h"
#include "History.h"
#include "ProfileAccess.h"
#include "TestSupport.h"

namespace sotto {
namespace {

using test::CrashVfs;
using Loss = CrashVfs::Loss;

const std::string kAliceAccount(32, 'a');
const Address kAlice{"alice", 1}, kBob{"bob", 1};

Bytes message_id(uint32_t n, uint8_t from) {
  Bytes id(16, from);
  for (int i = 0; i < 4; ++i) id[12 + i] = static_cast<uint8_t>(n >> (8 * (3 - i)));
  return id;
}

class ProfilePowerLoss : public ::testing::Test {
 protected:
  void SetUp() override {
    vfs_ = &CrashVfs::install();
    vfs_->watch(bob_dir_.path());
    open_bob();
    ASSERT_TRUE(bob_);
    ASSERT_TRUE(bob_->create_identity("bob", 1).ok());
    auto bundle = bob_->issue_bundle();
    ASSERT_TRUE(bundle.ok()) << bundle.error().message;
    ASSERT_TRUE(alice_->start_session(kBob, *bundle).ok());
  }
  void TearDown() override {
    bob_.reset();
    if (vfs_->powered_off()) vfs_->revive();
    vfs_->forget(bob_dir_.path());
  }

  void open_bob() {
    ProfileOptions o = test::Device::small_pool();
    o.sync_every_commit = sync_every_commit_;
    auto p = Profile::open_with_key(bob_dir_.path(), key_, o);
    ASSERT_TRUE(p.ok()) << p.error().message;
    bob_ = std::move(*p);
    // Checkpoints every few commits, so that cuts land in them too.
    ASSERT_TRUE(ProfileAccess::parts(*bob_)
                    .db.exec("PRAGMA wal_autocheckpoint = " + std::to_string(checkpoint_pages_))
                    .ok());
  }

  // One exchange: alice writes, bob decrypts and stores it in one transaction; bob answers and
  // stores his answer in the transaction of its ratchet step; alice reads the answer.
  void exchange() {
    uint32_t n = next_++;
    auto ct = alice_->encrypt(kBob, as_bytes("from alice " + std::to_string(n)));
    ASSERT_TRUE(ct.ok()) << ct.error().message;
    undelivered_.emplace_back(n, *ct);
    deliver_to_bob();
    if (vfs_->powered_off()) return;

    auto reply = bob_->encrypt(kAlice, as_bytes("from bob " + std::to_string(n)),
                               [&](const Ciphertext&) { return store(n, true); });
    if (!reply.ok()) {
      ASSERT_TRUE(vfs_->powered_off()) << reply.error().message;
      return;
    }
    sent_.insert(n);
    auto read = alice_->decrypt(kBob, *reply);
    ASSERT_TRUE(read.ok()) << "alice cannot read bob's answer " << n << ": "
                           << read.error().message;
  }

  // Bob decrypts what is waiting for him, oldest first, as after a reconnect.
  void deliver_to_bob() {
    while (!undelivered_.empty() && !vfs_->powered_off()) {
      auto [n, ct] = undelivered_.front();
      // An explicit capture: clang 14 cannot capture a structured binding.
      auto got = bob_->decrypt(kAlice, ct, [&, id = n](ByteView) { return store(id, false); });
      if (got.ok() || got.code() == ErrorCode::kDuplicateMessage) {
        // A duplicate: the commit of an earlier try reached the disk though the call failed.
        undelivered_.pop_front();
        stored_.insert(n);
        continue;
      }
      ASSERT_TRUE(vfs_->powered_off()) << "bob cannot decrypt " << n << ": " << got.error().message;
    }
  }

  Status store(uint32_t n, bool outgoing) {
    History history(ProfileAccess::parts(*bob_).db);
    SOTTO_TRY_ASSIGN(auto conv, history.direct_conversation(kAliceAccount, 1000));
    NewMessage m;
    m.conversation = conv;
    m.message_id = message_id(n, outgoing ? 'b' : 'a');
    m.sender = outgoing ? std::string(32, 'b') : kAliceAccount;
    m.sender_device = 1;
    m.outgoing = outgoing;
    m.body = (outgoing ? "from bob " : "from alice ") + std::to_string(n);
    m.sent_ms = m.sort_ms = 1000 + n;
    m.status = outgoing ? MessageStatus::kPending : MessageStatus::kUnread;
    SOTTO_TRY_ASSIGN(auto row, history.insert_message(m));
    (void)row;
    return {};
  }

  bool has(uint32_t n, bool outgoing) {
    History history(ProfileAccess::parts(*bob_).db);
    auto m = history.find_message(outgoing ? std::string(32, 'b') : kAliceAccount,
                                  message_id(n, outgoing ? 'b' : 'a'));
    EXPECT_TRUE(m.ok());
    return m.ok() && m->has_value();
  }

  // Every connection closes, the power comes back, bob's profile opens again.
  void restart_and_check() {
    bob_.reset();
    ASSERT_TRUE(vfs_->revive()) << "a connection of the profile was still open";
    {
      auto db =
          db::Database::open(bob_dir_.path() / "profile.db", key_, {false, db::Durability::kFull});
      ASSERT_TRUE(db.ok()) << "the key no longer opens the profile: " << db.error().message;
      auto q = (*db)->query("PRAGMA integrity_check");
      ASSERT_TRUE(q.ok());
      auto row = q->step();
      ASSERT_TRUE(row.ok() && *row);
      EXPECT_EQ(q->column_text(0), "ok");
    }
    open_bob();
    ASSERT_TRUE(bob_);
    for (uint32_t n : stored_) EXPECT_TRUE(has(n, false)) << "stored message " << n << " lost";
    for (uint32_t n : sent_) EXPECT_TRUE(has(n, true)) << "sent message " << n << " lost";
    deliver_to_bob();  // what bob had not stored comes again
    ASSERT_TRUE(undelivered_.empty());
    for (uint32_t n : stored_) EXPECT_TRUE(has(n, false));
  }

  test::TempDir bob_dir_;
  SecureBytes key_ = test::test_key("bob-powerloss");
  bool sync_every_commit_ = true;
  int checkpoint_pages_ = 50;
  CrashVfs* vfs_ = nullptr;
  test::Device alice_{"alice", 1};
  std::unique_ptr<Profile> bob_;
  uint32_t next_ = 0;
  std::deque<std::pair<uint32_t, Ciphertext>> undelivered_;
  std::set<uint32_t> stored_, sent_;
};

TEST_F(ProfilePowerLoss, EveryStoredMessageSurvivesACutRightAfterItsCommit) {
  for (int cycle = 0; cycle < 8; ++cycle) {
    for (int i = 0; i <= cycle % 3; ++i) exchange();
    ASSERT_FALSE(vfs_->powered_off());
    vfs_->lose_power(cycle % 2 ? Loss::kUnsyncedSectorsAtRandom : Loss::kEveryUnsyncedWrite,
                     static_cast<uint64_t>(cycle));
    restart_and_check();
    if (HasFatalFailure()) return;
  }
  exchange();
  EXPECT_FALSE(vfs_->powered_off());
}

TEST_F(ProfilePowerLoss, EveryStoredMessageSurvivesACutAtARandomWriteOrSync) {
  std::mt19937_64 rng(20241207);  // fixed: a failure replays
  int cut_inside = 0;
  for (int cycle = 0; cycle < 16; ++cycle) {
    Loss loss = rng() % 2 ? Loss::kUnsyncedSectorsAtRandom : Loss::kEveryUnsyncedWrite;
    vfs_->arm(rng() % 150 + 1, loss, rng());
    for (int i = 0; i < 20 && !vfs_->powered_off(); ++i) exchange();
    if (HasFatalFailure()) return;
    if (vfs_->powered_off())
      ++cut_inside;
    else
      vfs_->lose_power(loss, rng());
    restart_and_check();
    if (HasFatalFailure()) return;
  }
  EXPECT_GT(cut_inside, 10) << "most cuts should land inside a write or sync";
  exchange();
  EXPECT_FALSE(vfs_->powered_off());
}

// The negative control: without a sync at every commit (sync_every_commit = false, NORMAL)
// the same cut loses messages bob had stored. If this passed, the VFS would not model a power
// cut and the tests above would prove nothing.
TEST_F(ProfilePowerLoss, WithoutASyncPerCommitStoredMessagesAreLostAndTheTestsSeeIt) {
  sync_every_commit_ = false;
  checkpoint_pages_ = 100'000;  // NORMAL syncs the WAL at a checkpoint: none here
  bob_.reset();
  open_bob();
  for (int i = 0; i < 3; ++i) exchange();
  vfs_->lose_power(Loss::kEveryUnsyncedWrite, 1);
  bob_.reset();
  ASSERT_TRUE(vfs_->revive());
  open_bob();
  int lost = 0;
  for (uint32_t n : stored_) lost += has(n, false) ? 0 : 1;
  EXPECT_GT(lost, 0);
}

// WAL: one sequential append per commit, and readers never wait for the writer. FULL (the
// default, sync_every_commit): the WAL is synced at every commit, so a message stored, a
// message sent and the ratchet step that goes with it survive power loss; NORMAL syncs only at
// checkpoints, and a ratchet state that goes back in time breaks the session.
TEST(ProfileSettings, WalWithASyncAtEveryCommitUnlessTheAppAsksOtherwise) {
  for (bool every_commit : {true, false}) {
    test::TempDir dir;
    ProfileOptions o;
    o.sync_every_commit = every_commit;
    auto p = Profile::open_with_key(dir.path(), test::test_key("settings"), o);
    ASSERT_TRUE(p.ok()) << p.error().message;
    auto& db = ProfileAccess::parts(**p).db;
    auto mode = db.query("PRAGMA journal_mode");
    auto mode_row = mode.ok() ? mode->step() : Result<bool>(false);
    ASSERT_TRUE(mode_row.ok() && *mode_row);
    EXPECT_EQ(mode->column_text(0), "wal");
    auto sync = db.query("PRAGMA synchronous");
    auto sync_row = sync.ok() ? sync->step() : Result<bool>(false);
    ASSERT_TRUE(sync_row.ok() && *sync_row);
    EXPECT_EQ(sync->column_int(0), every_commit ? 2 : 1);  // FULL : NORMAL
  }
  EXPECT_TRUE(ProfileOptions{}.sync_every_commit);
}

}  // namespace
}  // namespace sotto
