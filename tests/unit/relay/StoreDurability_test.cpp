// The relay's store against power loss. The crash-test VFS (tests/support/CrashVfs.h) leaves
// the files as a power cut would, after an acknowledged batch or at a random write or sync,
// and the store opened again must hold every commit it acknowledged (an OK goes out only
// after that), pass SQLite's integrity check and still open with its key. Also the settings
// that make that true, and the online backup under a writer that keeps committing.
#include <gtest/gtest.h>
#include <sodium.h>
#include <sqlcipher/sqlite3.h>
#include <unistd.h>

#include <chrono>
#include <condition_variable>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <mutex>
#include <random>
#include <set>
#include <sstream>
#include <thread>

#include "CrashVfs.h"
#include "Metrics.h"
#include "SqliteStore.h"
#include "StoreExecutor.h"

namespace sotto::relay {
namespace {

using test::CrashVfs;
using Loss = CrashVfs::Loss;
namespace fs = std::filesystem;

SecureBytes store_key() { return SecureBytes(Bytes(32, 0x6b)); }

// The outcome of a store call whose value the test does not need.
template <class T>
Status status_of(Result<T> r) {
  if (!r.ok()) return std::move(r).error();
  return {};
}

fs::path fresh_dir(const char* name) {
  static int counter = 0;
  fs::path dir = fs::temp_directory_path() / (std::string(name) + "-" + std::to_string(::getpid()) +
                                              "-" + std::to_string(counter++));
  fs::remove_all(dir);
  fs::create_directories(dir);
  return dir;
}

AccountRecord account(const std::string& handle) {
  AccountRecord a;
  a.id = Bytes(16);
  randombytes_buf(a.id.data(), a.id.size());
  a.handle = handle;
  a.identity_key = Bytes(33, 5);
  a.created_at_ms = 1000;
  return a;
}

NewDevice device(uint32_t prekeys) {
  NewDevice d;
  d.registration_id = 7;
  d.auth_hash = Bytes(32, 7);
  d.signed_prekey.set_id(1);
  d.signed_prekey.set_public_key(std::string(33, 's'));
  d.signed_prekey.set_signature(std::string(64, 'g'));
  d.last_resort.set_id(0xFFFFFF);
  d.last_resort.set_public_key(std::string(33, 'l'));
  for (uint32_t i = 1; i <= prekeys; ++i) {
    wire::OneTimePreKey k;
    k.set_id(i);
    k.set_public_key(std::string(33, static_cast<char>(i & 0x7f)));
    d.one_time_prekeys.push_back(k);
  }
  d.created_at_ms = 1000;
  return d;
}

// A raw connection to a store's database, keyed as the store keys it.
class Raw {
 public:
  explicit Raw(const fs::path& db) {
    EXPECT_EQ(sqlite3_open_v2(db.c_str(), &db_, SQLITE_OPEN_READWRITE, nullptr), SQLITE_OK);
    std::string literal = "x'" + std::string(64, '\0') + "'";
    static constexpr char kHex[] = "0123456789abcdef";
    SecureBytes key = store_key();
    for (size_t i = 0; i < 32; ++i) {
      literal[2 + 2 * i] = kHex[key.data()[i] >> 4];
      literal[3 + 2 * i] = kHex[key.data()[i] & 0xf];
    }
    EXPECT_EQ(sqlite3_key(db_, literal.data(), static_cast<int>(literal.size())), SQLITE_OK);
    EXPECT_EQ(sqlite3_exec(db_, "PRAGMA cipher_page_size = 4096", nullptr, nullptr, nullptr),
              SQLITE_OK);
  }
  ~Raw() { sqlite3_close_v2(db_); }
  Raw(const Raw&) = delete;
  Raw& operator=(const Raw&) = delete;
  // The first column of every row of `sql`, as integers.
  std::vector<int64_t> ints(const char* sql, ByteView blob = {}) {
    std::vector<int64_t> out;
    sqlite3_stmt* q = nullptr;
    EXPECT_EQ(sqlite3_prepare_v2(db_, sql, -1, &q, nullptr), SQLITE_OK) << sqlite3_errmsg(db_);
    if (!blob.empty()) sqlite3_bind_blob(q, 1, blob.data(), static_cast<int>(blob.size()), nullptr);
    while (sqlite3_step(q) == SQLITE_ROW) out.push_back(sqlite3_column_int64(q, 0));
    sqlite3_finalize(q);
    return out;
  }

 private:
  sqlite3* db_ = nullptr;
};

// What the store acknowledged, and what it was asked: the model the reopened store is
// checked against.
struct Ledger {
  std::mutex mu;
  std::map<std::string, uint64_t> queued;  // message id -> sequence, commit acknowledged
  std::set<uint64_t> acked;                // acks acknowledged: gone for good
  std::set<uint64_t> ack_tried;            // acks whose commit was not acknowledged
  std::set<uint32_t> taken;                // one-time prekeys handed out, commit acknowledged
  std::set<std::string> handles;           // accounts created, commit acknowledged
  std::set<std::string> sent;              // every message id ever submitted
};

// Drives a relay store through the writer thread (StoreExecutor), as the relay does, on a
// database the crash-test VFS watches, and checks it after each power cut.
class PowerLoss : public ::testing::Test {
 protected:
  void SetUp() override {
    vfs_ = &CrashVfs::install();
    dir_ = fresh_dir("sotto-relay-powerloss");
    vfs_->watch(dir_);
    auto store = open();
    ASSERT_TRUE(store);
    ASSERT_TRUE(store->begin().ok());
    ASSERT_TRUE(store->create_account(alice_, device(0)).value());
    ASSERT_TRUE(store->create_account(bob_, device(400)).value());
    ASSERT_TRUE(store->commit().ok());
  }
  void TearDown() override {
    executor_.reset();
    if (vfs_->powered_off()) vfs_->revive();
    vfs_->forget(dir_);
    fs::remove_all(dir_);
  }

  std::unique_ptr<SqliteStore> open() {
    SqliteStore::Options o;
    o.key = store_key();
    o.sync_full = sync_full_;
    // Checkpoints and restarts of the WAL every few batches, so that cuts land in them too.
    o.checkpoint_pages = 40;
    o.wal_limit_pages = 100;
    auto store = SqliteStore::open(dir_ / "relay.db", o);
    EXPECT_TRUE(store.ok()) << store.error().message;
    return store.ok() ? std::move(*store) : nullptr;
  }

  void start() {
    auto store = open();
    ASSERT_TRUE(store);
    executor_ = std::make_unique<StoreExecutor>(std::move(store), metrics_, 64);
  }

  // Submits one round of work (eight sends to bob, an ack of four older ones, a prekey taken,
  // every fifth round an account) and waits for every job's outcome.
  void round() {
    struct Wait {
      std::mutex mu;
      std::condition_variable cv;
      int left = 0;
    };
    auto wait = std::make_shared<Wait>();
    auto submit = [&](std::function<Status(Store&)> work, std::function<void(bool)> done) {
      {
        std::lock_guard lock(wait->mu);
        ++wait->left;
      }
      bool queued = executor_->submit(std::move(work), [wait, done](const Status& s) {
        done(s.ok());
        std::lock_guard lock(wait->mu);
        if (--wait->left == 0) wait->cv.notify_all();
      });
      ASSERT_TRUE(queued);
    };
    for (int i = 0; i < 8; ++i) {
      NewSend n;
      n.sender_account = alice_.id;
      n.sender_device = 1;
      n.message_id = Bytes(16);
      randombytes_buf(n.message_id.data(), n.message_id.size());
      n.type = wire::Envelope::MESSAGE;
      QueuedCopy c;
      c.account_id = bob_.id;
      c.device_id = 1;
      c.ciphertext = Bytes(300, static_cast<uint8_t>(sent_count_++));
      n.copies.push_back(c);
      n.copy_types.push_back(wire::Envelope::MESSAGE);
      n.server_timestamp_ms = 5000;
      n.expires_at_ms = uint64_t{1} << 50;
      std::string mid(as_chars(n.message_id));
      {
        std::lock_guard lock(ledger_.mu);
        ledger_.sent.insert(mid);
      }
      auto seqs = std::make_shared<std::vector<uint64_t>>();
      submit([n, seqs](Store& s) -> Status { return s.enqueue(n, seqs.get()); },
             [this, mid, seqs](bool ok) {
               std::lock_guard lock(ledger_.mu);
               if (ok) ledger_.queued[mid] = seqs->at(0);
             });
    }
    std::vector<uint64_t> to_ack;
    {
      std::lock_guard lock(ledger_.mu);
      for (const auto& [mid, seq] : ledger_.queued) {
        if (to_ack.size() == 4) break;
        if (!ledger_.acked.count(seq) && !ledger_.ack_tried.count(seq)) to_ack.push_back(seq);
      }
      ledger_.ack_tried.insert(to_ack.begin(), to_ack.end());
    }
    if (!to_ack.empty())
      submit([this, to_ack](Store& s) -> Status { return status_of(s.ack(bob_.id, 1, to_ack)); },
             [this, to_ack](bool ok) {
               std::lock_guard lock(ledger_.mu);
               if (!ok) return;
               for (uint64_t seq : to_ack) {
                 ledger_.acked.insert(seq);
                 ledger_.ack_tried.erase(seq);
               }
             });
    auto taken = std::make_shared<std::optional<uint32_t>>();
    submit(
        [this, taken](Store& s) -> Status {
          SOTTO_TRY_ASSIGN(auto t, s.take_prekey(bob_.id, 1));
          *taken = t.key && !t.last_resort ? std::optional<uint32_t>(t.key->id()) : std::nullopt;
          return {};
        },
        [this, taken](bool ok) {
          std::lock_guard lock(ledger_.mu);
          if (ok && *taken) ledger_.taken.insert(**taken);
        });
    if (rounds_++ % 5 == 0) {
      AccountRecord a = account("user" + std::to_string(rounds_));
      submit([a](Store& s) -> Status { return status_of(s.create_account(a, device(2))); },
             [this, a](bool ok) {
               std::lock_guard lock(ledger_.mu);
               if (ok) ledger_.handles.insert(a.handle);
             });
    }
    std::unique_lock lock(wait->mu);
    ASSERT_TRUE(wait->cv.wait_for(lock, std::chrono::seconds(60), [&] { return wait->left == 0; }))
        << "the writer did not finish a round";
  }

  // The power is off: every connection closes, the power comes back, and the store must show
  // everything it acknowledged. What survived without an acknowledgement counts from now on.
  void restart_and_check() {
    executor_.reset();  // finishes the queued jobs (they fail: the disk is gone) and closes
    ASSERT_TRUE(vfs_->revive()) << "a connection of the store was still open";
    ++restarts_;
    Status check = SqliteStore::check(dir_ / "relay.db", store_key());
    ASSERT_TRUE(check.ok()) << check.error().message;
    auto store = open();
    ASSERT_TRUE(store) << "the key no longer opens the database";

    auto queue = store->load_queue(bob_.id, 1, 0, 1'000'000);
    ASSERT_TRUE(queue.ok()) << queue.error().message;
    std::map<std::string, uint64_t> present;
    for (const auto& e : *queue) {
      EXPECT_TRUE(ledger_.sent.count(e.message_id())) << "an envelope nobody sent";
      EXPECT_TRUE(present.emplace(e.message_id(), e.sequence()).second) << "stored twice";
    }
    uint64_t highest_acknowledged = 0;
    for (const auto& [mid, seq] : ledger_.queued) {
      highest_acknowledged = std::max(highest_acknowledged, seq);
      auto it = present.find(mid);
      if (ledger_.acked.count(seq)) {
        EXPECT_EQ(it, present.end()) << "an acknowledged ack was undone (sequence " << seq << ")";
      } else if (!ledger_.ack_tried.count(seq)) {
        ASSERT_NE(it, present.end()) << "an acknowledged send was lost (sequence " << seq
                                     << ", restart " << restarts_ << ")";
        EXPECT_EQ(it->second, seq);
      }
    }
    auto bob = store->find_device(bob_.id, 1);
    ASSERT_TRUE(bob.ok() && *bob);
    EXPECT_EQ((*bob)->queue_length, present.size()) << "the queue counter disagrees with the rows";
    EXPECT_GE((*bob)->last_sequence, highest_acknowledged) << "a sequence would be used twice";
    for (const auto& h : ledger_.handles) {
      auto a = store->find_account_by_handle(h);
      ASSERT_TRUE(a.ok());
      EXPECT_TRUE(a->has_value()) << "an acknowledged account was lost: " << h;
    }
    store.reset();
    {
      Raw raw(dir_ / "relay.db");
      auto pool = raw.ints("SELECT id FROM prekeys WHERE account = ? AND device = 1", bob_.id);
      for (int64_t id : pool)
        EXPECT_FALSE(ledger_.taken.count(static_cast<uint32_t>(id)))
            << "one-time prekey " << id << " was handed out and is back in the pool";
      auto counter = raw.ints("SELECT pool FROM devices WHERE account = ? AND device = 1", bob_.id);
      ASSERT_EQ(counter.size(), 1u);
      EXPECT_EQ(counter[0], static_cast<int64_t>(pool.size()));
    }
    ledger_.queued = std::move(present);
    ledger_.acked.clear();
    ledger_.ack_tried.clear();
  }

  // How many acknowledged sends the reopened store does not have (for the negative control).
  size_t lost_after_restart() {
    executor_.reset();
    EXPECT_TRUE(vfs_->revive());
    auto store = open();
    if (!store) return SIZE_MAX;
    auto queue = store->load_queue(bob_.id, 1, 0, 1'000'000);
    EXPECT_TRUE(queue.ok());
    std::set<std::string> present;
    for (const auto& e : *queue) present.insert(e.message_id());
    size_t lost = 0;
    for (const auto& [mid, seq] : ledger_.queued) lost += present.count(mid) ? 0 : 1;
    return lost;
  }

  CrashVfs* vfs_ = nullptr;
  fs::path dir_;
  bool sync_full_ = true;
  Metrics metrics_;
  std::unique_ptr<StoreExecutor> executor_;
  AccountRecord alice_ = account("alice");
  AccountRecord bob_ = account("bob");
  Ledger ledger_;
  int sent_count_ = 0;
  int rounds_ = 0;
  int restarts_ = 0;
};

TEST_F(PowerLoss, EveryAcknowledgedBatchSurvivesACutRightAfterIt) {
  // One to four batches, then the cut: every unsynced write lost, or a random part of them.
  for (int cycle = 0; cycle < 12; ++cycle) {
    start();
    for (int r = 0; r <= cycle % 4; ++r) round();
    vfs_->lose_power(cycle % 2 ? Loss::kUnsyncedSectorsAtRandom : Loss::kEveryUnsyncedWrite,
                     static_cast<uint64_t>(cycle));
    restart_and_check();
    if (HasFatalFailure()) return;
  }
  EXPECT_GT(vfs_->syncs(), 0u);
}

TEST_F(PowerLoss, EveryAcknowledgedBatchSurvivesACutAtARandomWriteOrSync) {
  std::mt19937_64 rng(20241207);  // fixed: a failure replays
  int cut_inside = 0;
  for (int cycle = 0; cycle < 30; ++cycle) {
    start();
    Loss loss = rng() % 2 ? Loss::kUnsyncedSectorsAtRandom : Loss::kEveryUnsyncedWrite;
    vfs_->arm(rng() % 300 + 1, loss, rng());
    for (int r = 0; r < 20 && !vfs_->powered_off(); ++r) round();
    if (vfs_->powered_off())
      ++cut_inside;
    else
      vfs_->lose_power(loss, rng());
    restart_and_check();
    if (HasFatalFailure()) return;
  }
  EXPECT_GT(cut_inside, 15) << "most cuts should land inside a write or sync";
}

// The negative control: with synchronous=NORMAL (--db-sync normal) a commit is acknowledged
// before the WAL reaches the disk, and the same cut loses it. If this passed, the VFS would
// not model a power cut and the tests above would prove nothing.
TEST_F(PowerLoss, NormalSyncLosesAcknowledgedBatchesAndTheTestsSeeIt) {
  sync_full_ = false;
  start();
  round();
  round();
  vfs_->lose_power(Loss::kEveryUnsyncedWrite, 1);
  EXPECT_GT(lost_after_restart(), 0u);
}

// WAL: the relay's readers (the checkpointer, a backup) never block its one writer, and a
// commit is one sequential append. synchronous=FULL: the WAL is synced at every commit, and
// the relay answers OK only after the commit, so an OK survives power loss. NORMAL syncs only
// at checkpoints: it survives a crash of the process, not a power cut (the test above), and is
// what --db-sync normal asks for.
TEST(RelayStoreSettings, WalWithASyncAtEveryCommitUnlessNormalIsAsked) {
  fs::path dir = fresh_dir("sotto-relay-settings");
  for (bool full : {true, false}) {
    SqliteStore::Options o;
    o.key = store_key();
    o.sync_full = full;
    auto store = SqliteStore::open(dir / "relay.db", o);
    ASSERT_TRUE(store.ok()) << store.error().message;
    auto settings = (*store)->settings();
    ASSERT_TRUE(settings.ok());
    EXPECT_EQ(settings->journal_mode, "wal");
    EXPECT_EQ(settings->synchronous, full ? 2 : 1);  // FULL : NORMAL
  }
  SqliteStore::Options defaults;
  EXPECT_TRUE(defaults.sync_full);
  fs::remove_all(dir);
}

// An online backup while a writer keeps committing (as the relay's does): the copy is one
// snapshot (every transaction in it whole), encrypted with the same key and unreadable
// without it, and it holds exactly the attachments the snapshot has as uploaded.
TEST(RelayBackup, ACopyTakenUnderCommitsIsOneEncryptedSnapshot) {
  fs::path dir = fresh_dir("sotto-relay-backup");
  SqliteStore::Options o;
  o.key = store_key();
  auto opened = SqliteStore::open(dir / "relay.db", o);
  ASSERT_TRUE(opened.ok()) << opened.error().message;
  std::unique_ptr<SqliteStore> store = std::move(*opened);
  AccountRecord alice = account("alice-backup-marker"), bob = account("bob"),
                carol = account("carol");
  ASSERT_TRUE(store->begin().ok());
  for (auto* a : {&alice, &bob, &carol}) ASSERT_TRUE(store->create_account(*a, device(5)).value());
  // One send to bob and carol per transaction: in a consistent copy their queues are equal.
  auto send = [&](int i, size_t size) {
    NewSend n;
    n.sender_account = alice.id;
    n.sender_device = 1;
    n.message_id = Bytes(16);
    randombytes_buf(n.message_id.data(), n.message_id.size());
    n.type = wire::Envelope::MESSAGE;
    std::string text = "envelope-marker-" + std::to_string(i);
    text.resize(size, 'p');
    n.shared_ciphertext = Bytes(text.begin(), text.end());
    for (auto* to : {&bob, &carol}) {
      QueuedCopy c;
      c.account_id = to->id;
      c.device_id = 1;
      c.header = Bytes(8, 1);
      n.copies.push_back(c);
    }
    n.server_timestamp_ms = 5000;
    n.expires_at_ms = uint64_t{1} << 50;
    std::vector<uint64_t> seqs;
    return store->enqueue(n, &seqs);
  };
  for (int i = 0; i < 1500; ++i) ASSERT_TRUE(send(i, 3000).ok());  // ~5 MiB: several steps
  for (const char* id : {"uploaded", "expired", "pending"}) {
    AttachmentRecord slot;
    slot.id = id;
    slot.account_id = alice.id;
    slot.device_id = 1;
    slot.size_bytes = 10;
    slot.upload_expires_at_ms = uint64_t{1} << 50;
    ASSERT_TRUE(store->create_attachment(slot).ok());
    if (std::string(id) != "pending") {
      ASSERT_TRUE(store->mark_attachment_uploaded(id, 6000, uint64_t{1} << 50).ok());
    }
  }
  ASSERT_TRUE(store->commit().ok());

  std::atomic<bool> stop{false};
  std::atomic<int> commits{0};
  std::thread writer([&] {
    for (int i = 0; i < 5000 && !stop; ++i) {
      ASSERT_TRUE(store->begin().ok());
      ASSERT_TRUE(send(10'000 + i, 200).ok());
      ASSERT_TRUE(store->commit().ok());
      ++commits;
    }
  });
  while (commits < 5) std::this_thread::sleep_for(std::chrono::milliseconds(1));
  std::vector<std::string> copied;
  auto result = SqliteStore::backup(dir / "relay.db", store_key(), dir / "copy.db",
                                    [&](const std::string& id) -> Result<bool> {
                                      copied.push_back(id);
                                      return id == "uploaded";  // "expired": its file is gone
                                    });
  stop = true;
  writer.join();
  ASSERT_TRUE(result.ok()) << result.error().message;
  EXPECT_GT(result->pages, 1024u) << "the copy took more than one step";
  EXPECT_EQ(result->attachments, 1u);
  EXPECT_EQ(result->attachments_gone, 1u);
  std::sort(copied.begin(), copied.end());
  EXPECT_EQ(copied, (std::vector<std::string>{"expired", "uploaded"}));
  EXPECT_FALSE(SqliteStore::backup(dir / "relay.db", store_key(), dir / "copy.db", nullptr).ok())
      << "a backup never writes over a file";

  // Encrypted: no SQLite header, no marker, and no key no read.
  std::ifstream in(dir / "copy.db", std::ios::binary);
  std::stringstream read;
  read << in.rdbuf();
  const std::string bytes = read.str();
  EXPECT_NE(bytes.substr(0, 16), std::string("SQLite format 3\0", 16));
  EXPECT_EQ(bytes.find("backup-marker"), std::string::npos);
  EXPECT_EQ(bytes.find("envelope-marker"), std::string::npos);
  EXPECT_EQ(SqliteStore::check(dir / "copy.db", SecureBytes()).code(), ErrorCode::kWrongKey);
  EXPECT_EQ(SqliteStore::check(dir / "copy.db", SecureBytes(Bytes(32, 1))).code(),
            ErrorCode::kWrongKey);
  EXPECT_TRUE(SqliteStore::check(dir / "copy.db", store_key()).ok());
  EXPECT_FALSE(fs::exists(dir / "copy.db-wal")) << "the copy is one file";

  SqliteStore::Options copy_options;
  copy_options.key = store_key();
  auto copy = SqliteStore::open(dir / "copy.db", copy_options);
  ASSERT_TRUE(copy.ok()) << copy.error().message;
  auto to_bob = (*copy)->load_queue(bob.id, 1, 0, 1'000'000);
  auto to_carol = (*copy)->load_queue(carol.id, 1, 0, 1'000'000);
  ASSERT_TRUE(to_bob.ok() && to_carol.ok());
  EXPECT_EQ(to_bob->size(), to_carol->size()) << "a transaction split by the copy";
  EXPECT_GE(to_bob->size(), 1505u);
  EXPECT_EQ((*copy)->find_device(bob.id, 1).value()->queue_length, to_bob->size());
  EXPECT_TRUE((*copy)->find_attachment("uploaded").value().has_value());
  EXPECT_FALSE((*copy)->find_attachment("expired").value().has_value());
  EXPECT_TRUE((*copy)->find_attachment("pending").value().has_value());
  copy->reset();
  store.reset();
  fs::remove_all(dir);
}

}  // namespace
}  // namespace sotto::relay
