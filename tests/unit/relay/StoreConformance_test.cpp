// One conformance suite for every Store backend (as matrix-rust-sdk tests its stores): the
// embedded SQLCipher store, plain and encrypted, and PostgreSQL on a throwaway server. A new
// backend adds a factory to StoreBackends and must pass every test here.
#include <gtest/gtest.h>
#include <sodium.h>
#include <sqlcipher/sqlite3.h>
#include <unistd.h>

#include <chrono>
#include <deque>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <set>
#include <sstream>
#include <thread>

#include "PostgresServer.h"
#include "PostgresStore.h"
#include "SqliteStore.h"
#include "Store.h"

namespace sotto::relay {
namespace {

std::string s(const Bytes& b) { return std::string(as_chars(b)); }

std::string read_all(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// A backend under test: makes a store, and can reopen it to check durability.
class StoreFactory {
 public:
  virtual ~StoreFactory() = default;
  virtual std::unique_ptr<Store> open() = 0;
  virtual std::string name() const = 0;
};

class SqliteFactory : public StoreFactory {
 public:
  explicit SqliteFactory(bool encrypted) : encrypted_(encrypted) {
    dir_ = std::filesystem::temp_directory_path() /
           ("sotto-store-" + std::to_string(::getpid()) + "-" + std::to_string(counter_++));
    std::filesystem::create_directories(dir_);
  }
  ~SqliteFactory() override { std::filesystem::remove_all(dir_); }
  std::unique_ptr<Store> open() override {
    SqliteStore::Options o;
    if (encrypted_) o.key = SecureBytes(Bytes(32, 0x5a));
    auto st = SqliteStore::open(dir_ / "relay.db", o);
    EXPECT_TRUE(st.ok()) << st.error().message;
    return st.ok() ? std::move(*st) : nullptr;
  }
  std::string name() const override { return encrypted_ ? "sqlite-encrypted" : "sqlite"; }
  std::filesystem::path db() const { return dir_ / "relay.db"; }

 private:
  bool encrypted_;
  std::filesystem::path dir_;
  static inline int counter_ = 0;
};

// Each test gets a database of its own on the test process's throwaway server.
class PostgresFactory : public StoreFactory {
 public:
  PostgresFactory() {
    auto server = test::PostgresServer::shared();
    if (!server.ok()) {
      ADD_FAILURE() << "no PostgreSQL for the conformance suite: " << server.error().message;
      return;
    }
    auto db = (*server)->create_database("conformance");
    if (!db.ok()) {
      ADD_FAILURE() << db.error().message;
      return;
    }
    conninfo_ = (*server)->conninfo(*db);
  }
  std::unique_ptr<Store> open() override {
    if (conninfo_.empty()) return nullptr;
    auto st = PostgresStore::open({conninfo_, true});
    EXPECT_TRUE(st.ok()) << st.error().message;
    return st.ok() ? std::move(*st) : nullptr;
  }
  std::string name() const override { return "postgres"; }

 private:
  std::string conninfo_;
};

struct Backend {
  std::string name;
  std::function<std::unique_ptr<StoreFactory>()> make;
};

std::vector<Backend> StoreBackends() {
  return {{"Sqlite", [] { return std::make_unique<SqliteFactory>(false); }},
          {"SqliteEncrypted", [] { return std::make_unique<SqliteFactory>(true); }},
          {"Postgres", [] { return std::make_unique<PostgresFactory>(); }}};
}

class StoreConformance : public ::testing::TestWithParam<Backend> {
 protected:
  void SetUp() override {
    factory_ = GetParam().make();
    store_ = factory_->open();
    ASSERT_TRUE(store_);
  }
  // Runs `fn` in one committed transaction.
  template <class F>
  void tx(F fn) {
    ASSERT_TRUE(store_->begin().ok());
    fn(*store_);
    ASSERT_TRUE(store_->commit().ok());
  }
  void reopen() {
    store_.reset();
    store_ = factory_->open();
    ASSERT_TRUE(store_);
  }
  static wire::OneTimePreKey key(uint32_t id) {
    wire::OneTimePreKey k;
    k.set_id(id);
    k.set_public_key(std::string(33, static_cast<char>(id & 0x7f)));
    return k;
  }
  static NewDevice device(uint32_t registration_id, uint32_t prekeys = 0) {
    NewDevice d;
    d.registration_id = registration_id;
    d.auth_hash = Bytes(32, static_cast<uint8_t>(registration_id));
    d.signed_prekey.set_id(1);
    d.signed_prekey.set_public_key(std::string(33, 's'));
    d.signed_prekey.set_signature(std::string(64, 'g'));
    d.last_resort = key(0xFFFFFF);
    for (uint32_t i = 1; i <= prekeys; ++i) d.one_time_prekeys.push_back(key(i));
    d.created_at_ms = 1000;
    return d;
  }
  AccountRecord account(const std::string& handle) {
    AccountRecord a;
    a.id = Bytes(16);
    randombytes_buf(a.id.data(), 16);
    a.handle = handle;
    a.identity_key = Bytes(33, 5);
    a.created_at_ms = 1000;
    return a;
  }
  AccountRecord create(const std::string& handle, uint32_t prekeys = 0) {
    AccountRecord a = account(handle);
    tx([&](Store& st) {
      auto r = st.create_account(a, device(7, prekeys));
      ASSERT_TRUE(r.ok() && *r);
    });
    return a;
  }
  NewSend send(const AccountRecord& from,
               const std::vector<std::pair<const AccountRecord*, uint32_t>>& to,
               const std::string& text, uint64_t ts = 5000) {
    NewSend n;
    n.sender_account = from.id;
    n.sender_device = 1;
    n.message_id = Bytes(16);
    randombytes_buf(n.message_id.data(), 16);
    n.type = wire::Envelope::MESSAGE;
    for (auto [acct, dev] : to) {
      QueuedCopy c;
      c.account_id = acct->id;
      c.device_id = dev;
      c.ciphertext = Bytes(text.begin(), text.end());
      n.copies.push_back(c);
      n.copy_types.push_back(wire::Envelope::MESSAGE);
    }
    n.server_timestamp_ms = ts;
    n.expires_at_ms = ts + 10'000;
    return n;
  }
  std::vector<uint64_t> enqueue(const NewSend& n) {
    std::vector<uint64_t> seqs;
    tx([&](Store& st) {
      auto r = st.enqueue(n, &seqs);
      ASSERT_TRUE(r.ok()) << r.error().message;
    });
    return seqs;
  }
  // Where a test that does not read them puts a send's sequences: they must outlive commit().
  std::vector<uint64_t>* seqs() { return &sequences_.emplace_back(); }
  std::deque<std::vector<uint64_t>> sequences_;

  std::unique_ptr<StoreFactory> factory_;
  std::unique_ptr<Store> store_;
};

TEST_P(StoreConformance, AccountsHaveUniqueHandles) {
  AccountRecord a = create("alice");
  tx([&](Store& st) {
    auto again = st.create_account(account("alice"), device(8));
    ASSERT_TRUE(again.ok());
    EXPECT_FALSE(*again);
    auto by_handle = st.find_account_by_handle("alice");
    ASSERT_TRUE(by_handle.ok() && *by_handle);
    EXPECT_EQ((*by_handle)->id, a.id);
    auto by_id = st.find_account(a.id);
    ASSERT_TRUE(by_id.ok() && *by_id);
    EXPECT_EQ((*by_id)->handle, "alice");
    EXPECT_EQ((*by_id)->identity_key, a.identity_key);
    auto missing = st.find_account(Bytes(16, 1));
    ASSERT_TRUE(missing.ok());
    EXPECT_FALSE(*missing);
  });
}

TEST_P(StoreConformance, DeviceIdsGrowAndAreNeverReused) {
  AccountRecord a = create("alice");
  tx([&](Store& st) {
    EXPECT_EQ(*st.add_device(a.id, device(8), 3), 2u);
    EXPECT_EQ(*st.add_device(a.id, device(9), 3), 3u);
    EXPECT_EQ(*st.add_device(a.id, device(10), 3), 0u) << "cap of 3";
    EXPECT_TRUE(*st.remove_device(a.id, 3));
    EXPECT_FALSE(*st.remove_device(a.id, 3));
    EXPECT_EQ(*st.add_device(a.id, device(11), 3), 4u) << "3 is never reused";
    auto list = st.list_devices(a.id);
    ASSERT_TRUE(list.ok());
    std::vector<uint32_t> ids;
    for (auto& d : *list) ids.push_back(d.device_id);
    EXPECT_EQ(ids, (std::vector<uint32_t>{1, 2, 4}));
    EXPECT_EQ((*list)[2].registration_id, 11u);
    EXPECT_EQ((*list)[0].auth_hash, Bytes(32, 7));
  });
}

TEST_P(StoreConformance, EachOneTimePrekeyIsTakenExactlyOnce) {
  AccountRecord a = create("alice", 3);
  std::set<uint32_t> seen;
  tx([&](Store& st) {
    for (int i = 0; i < 3; ++i) {
      auto t = st.take_prekey(a.id, 1);
      ASSERT_TRUE(t.ok() && t->key);
      EXPECT_FALSE(t->last_resort);
      EXPECT_TRUE(seen.insert(t->key->id()).second);
      EXPECT_EQ(t->remaining, static_cast<uint32_t>(2 - i));
    }
  });
  reopen();
  tx([&](Store& st) {
    auto t = st.take_prekey(a.id, 1);
    ASSERT_TRUE(t.ok() && t->key);
    EXPECT_TRUE(t->last_resort);
    EXPECT_EQ(t->key->id(), 0xFFFFFFu);
    auto c = st.prekey_counts(a.id, 1);
    EXPECT_EQ(c->one_time, 0u);
    EXPECT_TRUE(c->has_last_resort);
  });
}

TEST_P(StoreConformance, RolledBackTakesHandOutNothing) {
  AccountRecord a = create("alice", 1);
  ASSERT_TRUE(store_->begin().ok());
  ASSERT_TRUE(store_->take_prekey(a.id, 1).ok());
  store_->rollback();
  tx([&](Store& st) {
    auto t = st.take_prekey(a.id, 1);
    ASSERT_TRUE(t.ok() && t->key);
    EXPECT_EQ(t->key->id(), 1u);
  });
}

TEST_P(StoreConformance, PrekeyUploadsReplaceByIdAndRespectTheCap) {
  AccountRecord a = create("alice", 2);
  tx([&](Store& st) {
    std::vector<wire::OneTimePreKey> keys = {key(2), key(3), key(4)};
    auto r = st.upload_prekeys(a.id, 1, nullptr, keys, nullptr, 4);
    ASSERT_TRUE(r.ok() && *r);
    EXPECT_EQ(**r, 4u) << "id 2 replaced, 3 and 4 added";
    std::vector<wire::OneTimePreKey> more = {key(5)};
    auto over = st.upload_prekeys(a.id, 1, nullptr, more, nullptr, 4);
    ASSERT_TRUE(over.ok());
    EXPECT_FALSE(*over);
    wire::SignedPreKey spk;
    spk.set_id(9);
    spk.set_public_key(std::string(33, 'n'));
    spk.set_signature(std::string(64, 'x'));
    spk.set_timestamp_ms(77);
    ASSERT_TRUE(st.upload_prekeys(a.id, 1, &spk, {}, nullptr, 4).ok());
    auto c = st.prekey_counts(a.id, 1);
    EXPECT_EQ(c->one_time, 4u);
    EXPECT_EQ(c->signed_prekey_id, 9u);
    EXPECT_EQ(c->signed_prekey_timestamp_ms, 77u);
    auto d = st.find_device(a.id, 1);
    EXPECT_EQ((*d)->signed_prekey.public_key(), std::string(33, 'n'));
  });
}

TEST_P(StoreConformance, QueuesAreFifoWithSequencesThatSurviveAcksAndReopens) {
  AccountRecord a = create("alice");
  AccountRecord b = create("bob");
  auto s1 = enqueue(send(a, {{&b, 1}}, "one"));
  auto s2 = enqueue(send(a, {{&b, 1}}, "two"));
  EXPECT_EQ(s1, std::vector<uint64_t>{1});
  EXPECT_EQ(s2, std::vector<uint64_t>{2});
  tx([&](Store& st) {
    auto q = st.load_queue(b.id, 1, 0, 10);
    ASSERT_TRUE(q.ok());
    ASSERT_EQ(q->size(), 2u);
    EXPECT_EQ((*q)[0].ciphertext(), "one");
    EXPECT_EQ((*q)[0].sender_account_id(), s(a.id));
    EXPECT_EQ((*q)[1].sequence(), 2u);
    auto after = st.load_queue(b.id, 1, 1, 10);
    EXPECT_EQ(after->size(), 1u);
    EXPECT_EQ(*st.ack(b.id, 1, {1, 1, 99}), 1u);
    EXPECT_EQ(*st.ack(b.id, 1, {2}), 1u);
    EXPECT_EQ(*st.total_queued(), 0u);
  });
  reopen();
  EXPECT_EQ(enqueue(send(a, {{&b, 1}}, "three")), std::vector<uint64_t>{3});
}

TEST_P(StoreConformance, AcksTouchOnlyTheNamedQueue) {
  AccountRecord a = create("alice");
  AccountRecord b = create("bob");
  AccountRecord c = create("carol");
  enqueue(send(a, {{&b, 1}, {&c, 1}}, "x"));
  tx([&](Store& st) {
    EXPECT_EQ(*st.ack(c.id, 1, {1}), 1u);
    EXPECT_EQ(st.load_queue(b.id, 1, 0, 10)->size(), 1u);
    EXPECT_EQ((*st.find_device(b.id, 1))->queue_length, 1u);
  });
}

// The counters of a device's queue (length, last sequence) after many enqueues and acks in
// one transaction, after a rolled-back one, and after a reopen.
TEST_P(StoreConformance, QueueCountersFollowEveryEnqueueAndAckOfATransaction) {
  AccountRecord a = create("alice");
  AccountRecord b = create("bob");
  AccountRecord c = create("carol");
  auto counters = [](Store& st, const AccountRecord& who) {
    auto d = st.find_device(who.id, 1);
    EXPECT_TRUE(d.ok() && *d);
    return (d.ok() && *d) ? std::pair{(*d)->queue_length, (*d)->last_sequence}
                          : std::pair<uint64_t, uint64_t>{};
  };
  using Pair = std::pair<uint64_t, uint64_t>;
  tx([&](Store& st) {
    for (int i = 0; i < 3; ++i)
      ASSERT_TRUE(st.enqueue(send(a, {{&b, 1}}, "to bob"), seqs()).ok());
    ASSERT_TRUE(st.enqueue(send(a, {{&b, 1}, {&c, 1}}, "to both"), seqs()).ok());
    EXPECT_EQ(*st.ack(b.id, 1, {1, 3}), 2u);
    EXPECT_EQ(counters(st, b), (Pair{2, 4}));
    auto listed = st.list_devices(b.id);
    ASSERT_TRUE(listed.ok() && listed->size() == 1);
    EXPECT_EQ((*listed)[0].queue_length, 2u);
    EXPECT_EQ((*listed)[0].last_sequence, 4u);
    EXPECT_EQ(*st.total_queued(), 3u);
    // Changes after the last read: only the commit writes them.
    ASSERT_TRUE(st.enqueue(send(a, {{&b, 1}}, "after the reads"), seqs()).ok());
    ASSERT_TRUE(st.enqueue(send(a, {{&c, 1}}, "to carol"), seqs()).ok());
    EXPECT_EQ(*st.ack(c.id, 1, {2}), 1u);
  });
  ASSERT_TRUE(store_->begin().ok());
  ASSERT_TRUE(store_->enqueue(send(a, {{&b, 1}, {&c, 1}}, "undone"), seqs()).ok());
  EXPECT_EQ(*store_->ack(c.id, 1, {1}), 1u);
  store_->rollback();
  reopen();
  tx([&](Store& st) {
    EXPECT_EQ(counters(st, b), (Pair{3, 5}));
    EXPECT_EQ(counters(st, c), (Pair{1, 2}));
    EXPECT_EQ(*st.total_queued(), 4u);
  });
  EXPECT_EQ(enqueue(send(a, {{&b, 1}, {&c, 1}}, "next")), (std::vector<uint64_t>{6, 3}));
}

TEST_P(StoreConformance, SharedCiphertextIsStoredOnceAndFreedAfterTheLastAck) {
  AccountRecord a = create("alice");
  std::vector<AccountRecord> members;
  for (int i = 0; i < 5; ++i) members.push_back(create("member" + std::to_string(i)));
  NewSend n = send(a, {}, "");
  n.type = wire::Envelope::SENDER_KEY;
  n.copy_types.clear();
  n.shared_ciphertext = Bytes(1000, 0x33);
  for (auto& m : members) {
    QueuedCopy c;
    c.account_id = m.id;
    c.device_id = 1;
    c.header = Bytes{1, 2};
    n.copies.push_back(c);
  }
  enqueue(n);
  tx([&](Store& st) {
    for (auto& m : members) {
      auto q = st.load_queue(m.id, 1, 0, 10);
      ASSERT_EQ(q->size(), 1u);
      EXPECT_EQ((*q)[0].ciphertext(), std::string(1000, 0x33));
      EXPECT_EQ((*q)[0].header(), std::string("\x01\x02"));
      EXPECT_EQ((*q)[0].type(), wire::Envelope::SENDER_KEY);
      EXPECT_EQ(*st.ack(m.id, 1, {1}), 1u);
    }
    EXPECT_EQ(*st.total_queued(), 0u);
  });
}

// A device's queue is bounded in bytes as well as envelopes (max-queue-bytes): the count
// follows every enqueue, ack, expiry and rollback, shared ciphertexts counted per copy.
TEST_P(StoreConformance, QueueBytesFollowEnqueueAckExpiryAndRollback) {
  AccountRecord a = create("alice");
  AccountRecord b = create("bob");
  AccountRecord c = create("carol");
  auto bytes = [&](const AccountRecord& who) -> uint64_t {
    auto d = store_->find_device(who.id, 1);
    EXPECT_TRUE(d.ok() && *d);
    return d.ok() && *d ? (*d)->queue_bytes : ~uint64_t{0};
  };
  enqueue(send(a, {{&b, 1}}, std::string(100, 'x')));
  enqueue(send(a, {{&b, 1}, {&c, 1}}, std::string(40, 'y')));
  NewSend multi = send(a, {}, "");
  multi.type = wire::Envelope::SENDER_KEY;
  multi.copy_types.clear();
  multi.shared_ciphertext = Bytes(1000, 0x33);
  for (const AccountRecord* m : {&b, &c}) {
    QueuedCopy copy;
    copy.account_id = m->id;
    copy.device_id = 1;
    copy.header = Bytes(7, 1);
    multi.copies.push_back(copy);
  }
  enqueue(multi);
  EXPECT_EQ(bytes(b), 100u + 40 + 1007);
  EXPECT_EQ(bytes(c), 40u + 1007);
  ASSERT_TRUE(store_->begin().ok());
  ASSERT_TRUE(store_->enqueue(send(a, {{&b, 1}}, std::string(500, 'u')), seqs()).ok());
  EXPECT_EQ(*store_->ack(b.id, 1, {1}), 1u);
  store_->rollback();
  EXPECT_EQ(bytes(b), 1147u) << "a rolled-back transaction changes nothing";
  tx([&](Store& st) { EXPECT_EQ(*st.ack(b.id, 1, {1, 3}), 2u); });
  EXPECT_EQ(bytes(b), 40u);
  reopen();
  EXPECT_EQ(bytes(b), 40u);
  EXPECT_EQ(bytes(c), 1047u);
  enqueue(send(a, {{&c, 1}}, std::string(9, 'z'), 90'000));
  tx([&](Store& st) {
    auto r = st.expire(60'000);  // the first three sends are at 5000 with a 10 s TTL
    ASSERT_TRUE(r.ok());
    EXPECT_EQ(r->envelopes, 3u);
  });
  EXPECT_EQ(bytes(b), 0u);
  EXPECT_EQ(bytes(c), 9u);
}

TEST_P(StoreConformance, OperatorsListAccountsWithTheirDevicesAndQueues) {
  AccountRecord alice = create("alice");
  AccountRecord bob = create("bob");
  AccountRecord bobby = create("bobby");
  tx([&](Store& st) { ASSERT_EQ(*st.add_device(bob.id, device(8), 6), 2u); });
  enqueue(send(alice, {{&bob, 1}, {&bob, 2}}, std::string(30, 'x')));
  tx([&](Store& st) {
    ASSERT_TRUE(st.set_last_seen(bob.id, 0, 2, 86'400'000).ok());
    auto all = st.list_accounts("", 100);
    ASSERT_TRUE(all.ok()) << all.error().message;
    ASSERT_EQ(all->size(), 3u);
    EXPECT_EQ((*all)[0].account.handle, "alice");
    EXPECT_EQ((*all)[1].account.handle, "bob");
    EXPECT_EQ((*all)[1].devices, 2u);
    EXPECT_EQ((*all)[1].queued_envelopes, 2u);
    EXPECT_EQ((*all)[1].queued_bytes, 60u);
    EXPECT_EQ((*all)[1].device_last_seen_ms, 86'400'000u);
    EXPECT_EQ((*all)[2].account.handle, "bobby");
    auto b = st.list_accounts("bob", 100);
    ASSERT_EQ(b->size(), 2u);
    EXPECT_EQ(st.list_accounts("bob", 1)->size(), 1u);
    EXPECT_TRUE(st.list_accounts("carol", 100)->empty());
    auto t = st.totals(1000);
    ASSERT_TRUE(t.ok()) << t.error().message;
    EXPECT_EQ(t->accounts, 3u);
    EXPECT_EQ(t->devices, 4u);
    EXPECT_EQ(t->queued_envelopes, 2u);
    EXPECT_EQ(t->queued_bytes, 60u);
    EXPECT_EQ(t->suspended, 0u);
  });
}

TEST_P(StoreConformance, ASuspensionIsKeptWithItsReasonUntilLifted) {
  AccountRecord alice = create("alice");
  AccountRecord bob = create("bob");
  tx([&](Store& st) {
    EXPECT_TRUE(*st.set_suspended(alice.id, true, "spam reports", 5000));
    EXPECT_FALSE(*st.set_suspended(Bytes(16, 0xee), true, "nobody", 5000));
  });
  reopen();
  tx([&](Store& st) {
    auto a = *st.find_account(alice.id);
    ASSERT_TRUE(a);
    EXPECT_TRUE(a->suspended);
    EXPECT_EQ(a->suspended_reason, "spam reports");
    EXPECT_FALSE((*st.find_account_by_handle("bob"))->suspended);
    auto actions = st.actions_since(0);
    ASSERT_TRUE(actions.ok()) << actions.error().message;
    ASSERT_EQ(actions->size(), 1u);
    EXPECT_EQ((*actions)[0].account, alice.id);
    EXPECT_EQ((*actions)[0].kind, OperatorAction::kSuspended);
    EXPECT_EQ((*actions)[0].at_ms, 5000u);
    EXPECT_TRUE(st.actions_since((*actions)[0].seq)->empty());
    EXPECT_EQ(st.totals(0)->suspended, 1u);
    EXPECT_TRUE(*st.set_suspended(alice.id, false, "", 6000));
    ASSERT_TRUE(st.record_action(bob.id, OperatorAction::kDeleted, 7000).ok());
  });
  tx([&](Store& st) {
    EXPECT_FALSE((*st.find_account(alice.id))->suspended);
    auto actions = st.actions_since(0);
    ASSERT_EQ(actions->size(), 3u);
    EXPECT_EQ((*actions)[1].kind, OperatorAction::kUnsuspended);
    EXPECT_EQ((*actions)[2].kind, OperatorAction::kDeleted);
    EXPECT_EQ((*actions)[2].account, bob.id);
    EXPECT_LT((*actions)[0].seq, (*actions)[1].seq);
    // A clock of today (past 2^31 ms): the expiry's arithmetic must not narrow it.
    auto expired = st.expire(1'796'600'000'000ull);
    ASSERT_TRUE(expired.ok()) << expired.error().message;
    EXPECT_TRUE(st.actions_since(0)->empty()) << "a week later they are gone";
  });
}


TEST_P(StoreConformance, InvitesAreUsedUpOneUseAtATime) {
  Invite i;
  i.token_hash = Bytes(32, 7);
  i.uses_left = 2;
  i.expires_at_ms = 10'000;
  i.created_at_ms = 1000;
  i.note = "for the team";
  tx([&](Store& st) { ASSERT_TRUE(st.add_invite(i).ok()); });
  tx([&](Store& st) {
    EXPECT_EQ(st.totals(5000)->invites, 1u);
    EXPECT_TRUE(*st.use_invite(i.token_hash, 5000));
    EXPECT_FALSE(*st.use_invite(Bytes(32, 8), 5000)) << "an unknown token";
  });
  // A use taken and given back in a rolled-back transaction is still there.
  ASSERT_TRUE(store_->begin().ok());
  EXPECT_TRUE(*store_->use_invite(i.token_hash, 5000));
  store_->rollback();
  tx([&](Store& st) {
    EXPECT_FALSE(*st.use_invite(i.token_hash, 10'000)) << "expired";
    EXPECT_TRUE(*st.use_invite(i.token_hash, 6000));
    EXPECT_FALSE(*st.use_invite(i.token_hash, 6000)) << "no use left";
    ASSERT_TRUE(st.return_invite(i.token_hash).ok());
  });
  tx([&](Store& st) {
    auto list = st.list_invites();
    ASSERT_EQ(list->size(), 1u);
    EXPECT_EQ((*list)[0].uses_left, 1u);
    EXPECT_EQ((*list)[0].note, "for the team");
    EXPECT_TRUE(*st.revoke_invite(i.token_hash));
    EXPECT_FALSE(*st.revoke_invite(i.token_hash));
    EXPECT_TRUE(st.list_invites()->empty());
  });
}

TEST_P(StoreConformance, SendsAreRecordedForIdempotency) {
  AccountRecord a = create("alice");
  AccountRecord b = create("bob");
  NewSend n = send(a, {{&b, 1}}, "x", 4242);
  enqueue(n);
  tx([&](Store& st) {
    auto found = st.find_send(a.id, 1, n.message_id, 0);
    ASSERT_TRUE(found.ok() && *found);
    EXPECT_EQ((*found)->server_timestamp_ms, 4242u);
    EXPECT_FALSE(*st.find_send(a.id, 1, n.message_id, 1));
    EXPECT_FALSE(*st.find_send(a.id, 2, n.message_id, 0));
  });
}

TEST_P(StoreConformance, ExpiryDeletesOldEnvelopesRecordsNoncesAndSlots) {
  AccountRecord a = create("alice");
  AccountRecord b = create("bob");
  NewSend old = send(a, {{&b, 1}}, "old", 1000);
  enqueue(old);
  enqueue(send(a, {{&b, 1}}, "new", 50'000));
  tx([&](Store& st) {
    EXPECT_TRUE(*st.use_nonce(Bytes(16, 9), 1000, 2000));
    EXPECT_FALSE(*st.use_nonce(Bytes(16, 9), 1500, 2500));
    AttachmentRecord slot;
    slot.id = "0123456789abcdef0123456789abcdef";
    slot.account_id = a.id;
    slot.device_id = 1;
    slot.size_bytes = 10;
    slot.upload_expires_at_ms = 3000;
    ASSERT_TRUE(st.create_attachment(slot).ok());
    auto r = st.expire(20'000);
    ASSERT_TRUE(r.ok());
    EXPECT_EQ(r->envelopes, 1u);
    EXPECT_EQ(r->attachments, std::vector<std::string>{slot.id});
    auto q = st.load_queue(b.id, 1, 0, 10);
    ASSERT_EQ(q->size(), 1u);
    EXPECT_EQ((*q)[0].ciphertext(), "new");
    EXPECT_FALSE(*st.find_send(a.id, 1, old.message_id, 0));
    EXPECT_TRUE(*st.use_nonce(Bytes(16, 9), 20'000, 21'000)) << "expired nonces are forgotten";
    EXPECT_EQ((*st.find_device(b.id, 1))->queue_length, 1u);
  });
}

TEST_P(StoreConformance, AttachmentSlotsBecomeBlobs) {
  AccountRecord a = create("alice");
  tx([&](Store& st) {
    AttachmentRecord slot;
    slot.id = "ffffffffffffffffffffffffffffffff";
    slot.account_id = a.id;
    slot.device_id = 1;
    slot.size_bytes = 123;
    slot.upload_expires_at_ms = 10'000;
    ASSERT_TRUE(st.create_attachment(slot).ok());
    ASSERT_TRUE(st.mark_attachment_uploaded(slot.id, 9000, 99'000).ok());
    auto found = st.find_attachment(slot.id);
    ASSERT_TRUE(found.ok() && *found);
    EXPECT_EQ((*found)->size_bytes, 123u);
    EXPECT_EQ((*found)->uploaded_at_ms, 9000u);
    EXPECT_TRUE(st.expire(50'000)->attachments.empty()) << "uploaded: kept until retention";
    EXPECT_EQ(st.expire(100'000)->attachments.size(), 1u);
  });
}

TEST_P(StoreConformance, DeletingAnAccountRemovesItsDevicesQueuesAndHandle) {
  AccountRecord a = create("alice", 5);
  AccountRecord b = create("bob");
  enqueue(send(b, {{&a, 1}}, "to alice"));
  enqueue(send(a, {{&b, 1}}, "from alice"));
  tx([&](Store& st) {
    ASSERT_TRUE(st.delete_account(a.id).ok());
    EXPECT_FALSE(*st.find_account(a.id));
    EXPECT_TRUE(st.list_devices(a.id)->empty());
    EXPECT_EQ(st.load_queue(b.id, 1, 0, 10)->size(), 1u) << "what alice sent stays";
    EXPECT_EQ(*st.total_queued(), 1u);
    auto again = st.create_account(account("alice"), device(3));
    EXPECT_TRUE(again.ok() && *again) << "the handle is free";
  });
}

TEST_P(StoreConformance, PresenceStateIsKept) {
  AccountRecord a = create("alice");
  tx([&](Store& st) {
    ASSERT_TRUE(st.set_presence_hidden(a.id, true).ok());
    ASSERT_TRUE(st.set_last_seen(a.id, 120'000, 1, 86'400'000).ok());
    ASSERT_TRUE(st.set_push_url(a.id, 1, "https://push.example/x").ok());
  });
  reopen();
  tx([&](Store& st) {
    auto found = st.find_account(a.id);
    EXPECT_TRUE((*found)->presence_hidden);
    EXPECT_EQ((*found)->last_seen_ms, 120'000u);
    auto d = st.find_device(a.id, 1);
    EXPECT_EQ((*d)->last_seen_ms, 86'400'000u);
    EXPECT_EQ((*d)->push_url, "https://push.example/x");
  });
}

INSTANTIATE_TEST_SUITE_P(Backends, StoreConformance, ::testing::ValuesIn(StoreBackends()),
                         [](const auto& p) { return p.param.name; });

// One account with one bare device, committed: for the SqliteStore-only tests below.
void add_account(Store& st, const std::string& handle, AccountRecord& a) {
  a.id = Bytes(16, 1);
  a.handle = handle;
  a.identity_key = Bytes(33, 5);
  NewDevice d;
  d.auth_hash = Bytes(32, 1);
  d.signed_prekey.set_public_key(std::string(33, 's'));
  d.signed_prekey.set_signature(std::string(64, 'g'));
  ASSERT_TRUE(st.begin().ok());
  ASSERT_TRUE(st.create_account(a, d).ok());
  ASSERT_TRUE(st.commit().ok());
}

// SQLCipher-specific: the database file is encrypted when a key is given, and a wrong key is
// refused before anything is written.
TEST(SqliteStore, EncryptedAtRestAndWrongKeyRefused) {
  auto dir = std::filesystem::temp_directory_path() / ("sotto-enc-" + std::to_string(::getpid()));
  std::filesystem::create_directories(dir);
  SqliteStore::Options o;
  o.key = SecureBytes(Bytes(32, 0x11));
  {
    auto st = SqliteStore::open(dir / "relay.db", o);
    ASSERT_TRUE(st.ok()) << st.error().message;
    EXPECT_FALSE((*st)->cipher_version().empty());
    AccountRecord a;
    ASSERT_NO_FATAL_FAILURE(add_account(**st, "findable_handle", a));
  }
  std::string bytes = read_all(dir / "relay.db") + read_all(dir / "relay.db-wal");
  EXPECT_EQ(bytes.find("findable_handle"), std::string::npos);
  EXPECT_EQ(bytes.find("SQLite format 3"), std::string::npos);
  o.key = SecureBytes(Bytes(32, 0x22));
  auto wrong = SqliteStore::open(dir / "relay.db", o);
  ASSERT_FALSE(wrong.ok());
  EXPECT_EQ(wrong.error().code, ErrorCode::kWrongKey);
  EXPECT_NE(wrong.error().message.find("the key in --db-key-file does not open"),
            std::string::npos)
      << wrong.error().message;
  // Each of the two other mistakes is named as what it is.
  auto no_key = SqliteStore::open(dir / "relay.db", SqliteStore::Options{});
  ASSERT_FALSE(no_key.ok());
  EXPECT_EQ(no_key.error().code, ErrorCode::kWrongKey);
  EXPECT_NE(no_key.error().message.find("is encrypted"), std::string::npos)
      << no_key.error().message;
  { ASSERT_TRUE(SqliteStore::open(dir / "plain.db", SqliteStore::Options{}).ok()); }
  auto keyed_plain = SqliteStore::open(dir / "plain.db", o);
  ASSERT_FALSE(keyed_plain.ok());
  EXPECT_EQ(keyed_plain.error().code, ErrorCode::kWrongKey);
  EXPECT_NE(keyed_plain.error().message.find("is not encrypted, but --db-key-file gives a key"),
            std::string::npos)
      << keyed_plain.error().message;
  std::filesystem::remove_all(dir);
}

// Runs `sql` on the database file at `path` with plain SQLite calls; returns the first column
// of the last row, as text.
std::string raw_sql(const std::filesystem::path& path, const std::string& sql) {
  sqlite3* db = nullptr;
  EXPECT_EQ(sqlite3_open(path.c_str(), &db), SQLITE_OK);
  std::string last;
  char* err = nullptr;
  auto keep = [](void* out, int, char** values, char**) {
    *static_cast<std::string*>(out) = values[0] ? values[0] : "";
    return 0;
  };
  EXPECT_EQ(sqlite3_exec(db, sql.c_str(), keep, &last, &err), SQLITE_OK) << (err ? err : "");
  sqlite3_free(err);
  sqlite3_close(db);
  return last;
}

// A data dir written by a relay of schema 1 opens, its idempotency records are kept and
// re-keyed by message id first, and it is not migrated twice.
TEST(SqliteStore, ASchemaOneDatabaseIsMigratedKeepingItsSendRecords) {
  auto dir =
      std::filesystem::temp_directory_path() / ("sotto-store-v1-" + std::to_string(::getpid()));
  std::filesystem::remove_all(dir);
  std::filesystem::create_directories(dir);
  auto db = dir / "relay.db";
  SqliteStore::Options o;
  ASSERT_TRUE(SqliteStore::open(db, o).ok());
  // What schema 1 had: `sends` unique on sender first.
  raw_sql(db,
          "DROP TABLE sends;"
          "CREATE TABLE sends(sender BLOB NOT NULL, sender_device INTEGER NOT NULL,"
          "  message_id BLOB NOT NULL, batch INTEGER NOT NULL, ts INTEGER NOT NULL,"
          "  expires_at INTEGER NOT NULL, UNIQUE(sender, sender_device, message_id, batch));"
          "INSERT INTO sends VALUES(x'0101', 1, x'00aa', 0, 4242, 9000000000000);"
          "INSERT INTO sends VALUES(x'0202', 2, x'00bb', 3, 4343, 9000000000000);"
          "UPDATE meta SET value = 1 WHERE key = 'schema_version';");
  for (int open = 0; open < 2; ++open) {
    auto st = SqliteStore::open(db, o);
    ASSERT_TRUE(st.ok()) << st.error().message;
    auto found = (*st)->find_send(Bytes{1, 1}, 1, Bytes{0, 0xaa}, 0);
    ASSERT_TRUE(found.ok() && *found);
    EXPECT_EQ((*found)->server_timestamp_ms, 4242u);
    found = (*st)->find_send(Bytes{2, 2}, 2, Bytes{0, 0xbb}, 3);
    ASSERT_TRUE(found.ok() && *found);
    EXPECT_EQ((*found)->server_timestamp_ms, 4343u);
    EXPECT_FALSE(*(*st)->find_send(Bytes{2, 2}, 2, Bytes{0, 0xaa}, 0));
  }
  EXPECT_EQ(raw_sql(db, "SELECT value FROM meta WHERE key = 'schema_version'"), "4");
  EXPECT_EQ(raw_sql(db, "SELECT count(*) FROM sends"), "2");
  EXPECT_NE(raw_sql(db, "SELECT sql FROM sqlite_master WHERE name = 'sends'")
                .find("UNIQUE(message_id, sender, sender_device, batch)"),
            std::string::npos);
  // A database from a later release is refused, untouched, with what to do.
  raw_sql(db, "UPDATE meta SET value = 99 WHERE key = 'schema_version'");
  auto newer = SqliteStore::open(db, o);
  ASSERT_FALSE(newer.ok());
  EXPECT_EQ(newer.error().code, ErrorCode::kIncompatibleVersion);
  EXPECT_NE(newer.error().message.find("newer sotto-relay (schema 99"), std::string::npos)
      << newer.error().message;
  EXPECT_EQ(raw_sql(db, "SELECT value FROM meta WHERE key = 'schema_version'"), "99");
  std::filesystem::remove_all(dir);
}

TEST(SqliteStore, ASchemaTwoDatabaseGetsTheBytesOfItsQueuesCounted) {
  auto dir =
      std::filesystem::temp_directory_path() / ("sotto-store-v2-" + std::to_string(::getpid()));
  std::filesystem::remove_all(dir);
  std::filesystem::create_directories(dir);
  auto db = dir / "relay.db";
  SqliteStore::Options o;
  AccountRecord bob;
  {
    auto st = SqliteStore::open(db, o);
    ASSERT_TRUE(st.ok()) << st.error().message;
    ASSERT_NO_FATAL_FAILURE(add_account(**st, "bob", bob));
    NewSend n;
    n.sender_account = Bytes(16, 1);
    n.sender_device = 1;
    n.message_id = Bytes(16, 2);
    n.type = wire::Envelope::SENDER_KEY;
    n.shared_ciphertext = Bytes(300, 3);
    n.copies.push_back(QueuedCopy{bob.id, 1, {}, Bytes(5, 4)});
    n.expires_at_ms = 9'000'000'000'000;
    std::vector<uint64_t> seqs;
    ASSERT_TRUE((*st)->enqueue(n, &seqs).ok());
    n.message_id = Bytes(16, 5);
    n.shared_ciphertext.clear();
    n.copies[0].ciphertext = Bytes(20, 6);
    n.copies[0].header.clear();
    n.copy_types = {wire::Envelope::MESSAGE};
    ASSERT_TRUE((*st)->enqueue(n, &seqs).ok());
  }
  // Schema 2 kept no byte count.
  raw_sql(db,
          "UPDATE devices SET queue_bytes = 0;"
          "UPDATE meta SET value = 2 WHERE key = 'schema_version';");
  auto st = SqliteStore::open(db, o);
  ASSERT_TRUE(st.ok()) << st.error().message;
  auto d = (*st)->find_device(bob.id, 1);
  ASSERT_TRUE(d.ok() && *d);
  EXPECT_EQ((*d)->queue_bytes, 305u + 20);
  EXPECT_EQ(raw_sql(db, "SELECT value FROM meta WHERE key = 'schema_version'"), "4");
  std::filesystem::remove_all(dir);
}

TEST(SqliteStore, CheckpointsRunBesideTheWriterAndTheWalStaysBounded) {
  auto dir =
      std::filesystem::temp_directory_path() / ("sotto-store-ckpt-" + std::to_string(::getpid()));
  std::filesystem::remove_all(dir);
  std::filesystem::create_directories(dir);
  SqliteStore::Options o;
  o.key = SecureBytes(Bytes(32, 0x33));
  o.checkpoint_pages = 64;
  o.wal_limit_pages = 400;
  auto st = SqliteStore::open(dir / "relay.db", o);
  ASSERT_TRUE(st.ok()) << st.error().message;
  Store& store = **st;
  AccountRecord a;
  ASSERT_NO_FATAL_FAILURE(add_account(store, "checkpoints", a));
  auto size_of = [&](const char* name) {
    std::error_code ec;
    auto n = std::filesystem::file_size(dir / name, ec);
    return ec ? uintmax_t{0} : n;
  };
  uint64_t next_id = 0;
  auto write = [&] {  // one commit of ~5 pages
    NewSend n;
    n.sender_account = a.id;
    n.sender_device = 1;
    n.message_id = Bytes(16, 0);
    std::memcpy(n.message_id.data(), &++next_id, sizeof next_id);
    n.type = wire::Envelope::MESSAGE;
    QueuedCopy c;
    c.account_id = a.id;
    c.device_id = 1;
    c.ciphertext = Bytes(16 * 1024, static_cast<uint8_t>(next_id));
    n.copies.push_back(c);
    n.server_timestamp_ms = 1000;
    n.expires_at_ms = 100'000;
    ASSERT_TRUE(store.begin().ok());
    std::vector<uint64_t> seqs;
    ASSERT_TRUE(store.enqueue(n, &seqs).ok());
    ASSERT_TRUE(store.commit().ok());
  };
  // Past checkpoint_pages, below the limit: the writer goes on while another connection
  // copies the WAL into the database file.
  uintmax_t db_before = size_of("relay.db");
  for (int i = 0; i < 30; ++i) write();
  bool copied = false;
  for (int i = 0; i < 500 && !copied; ++i) {
    copied = size_of("relay.db") > db_before + 64 * 4096;
    if (!copied) std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  EXPECT_TRUE(copied) << "no background checkpoint copied the WAL";
  // Continuous writes: the WAL never grows far past its limit (it starts over once a
  // checkpoint between two commits has copied everything).
  uintmax_t wal_max = 0;
  for (int i = 0; i < 600; ++i) {
    write();
    wal_max = std::max(wal_max, size_of("relay.db-wal"));
  }
  EXPECT_LT(wal_max, uintmax_t{(400 + 64) * (4096 + 24)});
  // Everything written is there after a reopen.
  st->reset();
  o.checkpoint_pages = 4000;
  auto again = SqliteStore::open(dir / "relay.db", o);
  ASSERT_TRUE(again.ok()) << again.error().message;
  auto queue = (*again)->load_queue(a.id, 1, 0, 1000);
  ASSERT_TRUE(queue.ok()) << queue.error().message;
  EXPECT_EQ(queue->size(), 630u);
  again->reset();
  std::filesystem::remove_all(dir);
}

// A relay's cached view of an account gives way to what an operator's process wrote.
TEST(SqliteStore, AnotherProcessesSuspensionReachesTheCachedAccountThroughItsAction) {
  auto dir = std::filesystem::temp_directory_path() /
             ("sotto-store-actions-" + std::to_string(::getpid()));
  std::filesystem::remove_all(dir);
  std::filesystem::create_directories(dir);
  auto relay = SqliteStore::open(dir / "relay.db", {});
  ASSERT_TRUE(relay.ok()) << relay.error().message;
  AccountRecord a;
  ASSERT_NO_FATAL_FAILURE(add_account(**relay, "alice", a));
  ASSERT_FALSE((*(*relay)->find_account(a.id))->suspended);  // now cached
  {
    auto admin = SqliteStore::open(dir / "relay.db", {});
    ASSERT_TRUE(admin.ok());
    ASSERT_TRUE(*(*admin)->set_suspended(a.id, true, "abuse", 5000));
  }
  EXPECT_FALSE((*(*relay)->find_account(a.id))->suspended) << "the cache answers until told";
  auto actions = (*relay)->actions_since(0);
  ASSERT_EQ(actions->size(), 1u);
  EXPECT_TRUE((*(*relay)->find_account(a.id))->suspended);
  std::filesystem::remove_all(dir);
}

// A restart of PostgreSQL breaks every node's idle connection without telling it. The next
// transaction connects again and succeeds; it used to fail (the node answered its requests
// UNAVAILABLE and refused connections with 503 although the server was back).
TEST(PostgresStore, TheFirstTransactionAfterTheServerRestartsSucceeds) {
  auto server = test::PostgresServer::start();  // its own: the test stops it
  ASSERT_TRUE(server.ok()) << "no PostgreSQL: " << server.error().message;
  auto db = (*server)->create_database("restart");
  ASSERT_TRUE(db.ok()) << db.error().message;
  auto opened = PostgresStore::open({(*server)->conninfo(*db), true});
  ASSERT_TRUE(opened.ok()) << opened.error().message;
  Store& store = **opened;
  ASSERT_TRUE(store.begin().ok());
  ASSERT_TRUE(store.commit().ok());

  ASSERT_TRUE((*server)->stop().ok());
  ASSERT_TRUE((*server)->restart().ok());
  Status began = store.begin();
  ASSERT_TRUE(began.ok()) << began.error().message;
  auto account = store.find_account(Bytes(16, 1));
  ASSERT_TRUE(account.ok()) << account.error().message;
  EXPECT_FALSE(account->has_value());
  Status committed = store.commit();
  EXPECT_TRUE(committed.ok()) << committed.error().message;
}

}  // namespace
}  // namespace sotto::relay
