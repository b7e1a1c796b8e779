// One conformance suite, run against every ProtocolStore backend.
#include <gtest/gtest.h>

#include <memory>

#include "Database.h"
#include "MemoryProtocolStore.h"
#include "Schema.h"
#include "SqlProtocolStore.h"
#include "TestSupport.h"

namespace sotto {
namespace {

struct Backend {
  std::unique_ptr<test::TempDir> dir;
  std::unique_ptr<db::Database> db;
  std::unique_ptr<ProtocolStore> store;
};

Backend make_backend(const std::string& name);

// The parameter is the backend's name, so test names and ctest's listing stay readable.
class ProtocolStoreConformance : public ::testing::TestWithParam<std::string> {
 protected:
  void SetUp() override {
    backend = make_backend(GetParam());
    ASSERT_TRUE(backend.store);
    s = backend.store.get();
  }
  Backend backend;
  ProtocolStore* s = nullptr;
};

Bytes B(std::initializer_list<uint8_t> v) { return Bytes(v); }

TEST_P(ProtocolStoreConformance, SessionsByNameAndDevice) {
  ASSERT_TRUE(s->store_session("bob", 1, B({1})).ok());
  ASSERT_TRUE(s->store_session("bob", 3, B({3})).ok());
  ASSERT_TRUE(s->store_session("bobby", 2, B({2})).ok());
  EXPECT_EQ(**s->session("bob", 3), B({3}));
  EXPECT_FALSE(s->session("bob", 2)->has_value());
  EXPECT_EQ(*s->session_devices("bob"), (std::vector<int32_t>{1, 3}));
  ASSERT_TRUE(s->store_session("bob", 1, B({9})).ok());
  EXPECT_EQ(**s->session("bob", 1), B({9}));
  EXPECT_TRUE(*s->delete_session("bob", 1));
  EXPECT_FALSE(*s->delete_session("bob", 1));
  EXPECT_EQ(*s->delete_sessions("bob"), 1);
  EXPECT_TRUE(s->session_devices("bob")->empty());
  EXPECT_EQ(*s->session_devices("bobby"), (std::vector<int32_t>{2}));
}

TEST_P(ProtocolStoreConformance, PreKeysAndSignedPreKeys) {
  ASSERT_TRUE(s->store_prekey(5, B({5, 5})).ok());
  ASSERT_TRUE(s->store_prekey(6, B({6})).ok());
  EXPECT_EQ(*s->prekey_count(), 2u);
  EXPECT_EQ((*s->prekey(5))->size(), 2u);
  ASSERT_TRUE(s->remove_prekey(5).ok());
  EXPECT_FALSE(s->prekey(5)->has_value());
  EXPECT_EQ(*s->prekey_count(), 1u);
  ASSERT_TRUE(s->store_signed_prekey(1, B({7})).ok());
  EXPECT_TRUE(s->signed_prekey(1)->has_value());
  ASSERT_TRUE(s->remove_signed_prekey(1).ok());
  EXPECT_FALSE(s->signed_prekey(1)->has_value());
}

TEST_P(ProtocolStoreConformance, IdentitiesSenderKeysCountersAndLocalIdentity) {
  EXPECT_FALSE(s->identity("bob")->has_value());
  ASSERT_TRUE(s->save_identity("bob", B({1, 2})).ok());
  EXPECT_EQ(**s->identity("bob"), B({1, 2}));
  ASSERT_TRUE(s->save_identity("bob", {}).ok());
  EXPECT_FALSE(s->identity("bob")->has_value());

  Bytes g1 = B({0xaa}), g2 = B({0xbb});
  ASSERT_TRUE(s->store_sender_key(g1, "bob", 1, B({1})).ok());
  ASSERT_TRUE(s->store_sender_key(g2, "bob", 1, B({2})).ok());
  EXPECT_EQ(**s->sender_key(g1, "bob", 1), B({1}));
  EXPECT_FALSE(s->sender_key(g1, "bob", 2)->has_value());
  ASSERT_TRUE(s->delete_sender_key(g1, "bob", 1).ok());
  EXPECT_FALSE(s->sender_key(g1, "bob", 1)->has_value());
  EXPECT_TRUE(s->sender_key(g2, "bob", 1)->has_value());

  EXPECT_FALSE(s->counter("x")->has_value());
  ASSERT_TRUE(s->set_counter("x", 1LL << 40).ok());
  EXPECT_EQ(**s->counter("x"), 1LL << 40);

  LocalIdentityRecord me{"alice", 2, 77, B({5, 1}), SecureBytes::from_string("pair")};
  ASSERT_TRUE(s->set_local_identity(me).ok());
  auto back = *s->local_identity();
  ASSERT_TRUE(back.has_value());
  EXPECT_EQ(back->account, "alice");
  EXPECT_EQ(back->device_id, 2u);
  EXPECT_EQ(back->registration_id, 77u);
  EXPECT_TRUE(back->key_pair == me.key_pair);
}

TEST_P(ProtocolStoreConformance, RollbackUndoesEverythingNestedCommitsJoinTheOuter) {
  ASSERT_TRUE(s->store_session("bob", 1, B({1})).ok());
  ASSERT_TRUE(s->begin().ok());
  ASSERT_TRUE(s->store_session("bob", 1, B({2})).ok());
  ASSERT_TRUE(s->store_prekey(9, B({9})).ok());
  ASSERT_TRUE(s->begin().ok());  // nested, committed into the outer one
  ASSERT_TRUE(s->save_identity("carol", B({3})).ok());
  ASSERT_TRUE(s->commit().ok());
  EXPECT_TRUE(s->identity("carol")->has_value());
  s->rollback();  // the outer one
  EXPECT_EQ(**s->session("bob", 1), B({1}));
  EXPECT_FALSE(s->prekey(9)->has_value());
  EXPECT_FALSE(s->identity("carol")->has_value());

  ASSERT_TRUE(s->begin().ok());
  ASSERT_TRUE(s->store_prekey(9, B({9})).ok());
  ASSERT_TRUE(s->commit().ok());
  EXPECT_TRUE(s->prekey(9)->has_value());
}

TEST_P(ProtocolStoreConformance, AFailedInnerLevelDoomsTheWholeTransaction) {
  ASSERT_TRUE(s->begin().ok());
  ASSERT_TRUE(s->store_prekey(1, B({1})).ok());
  ASSERT_TRUE(s->begin().ok());
  ASSERT_TRUE(s->set_counter("c", 5).ok());
  s->rollback();  // inner failure
  ASSERT_TRUE(s->store_prekey(2, B({2})).ok());
  auto committed = s->commit();
  EXPECT_EQ(committed.code(), ErrorCode::kInvalidState);
  EXPECT_FALSE(s->prekey(1)->has_value());
  EXPECT_FALSE(s->prekey(2)->has_value());
  EXPECT_FALSE(s->counter("c")->has_value());
  // The next transaction starts clean.
  ASSERT_TRUE(s->begin().ok());
  ASSERT_TRUE(s->store_prekey(3, B({3})).ok());
  ASSERT_TRUE(s->commit().ok());
  EXPECT_TRUE(s->prekey(3)->has_value());
}

Backend make_backend(const std::string& name) {
  Backend b;
  if (name == "Memory") {
    b.store = std::make_unique<MemoryProtocolStore>();
  } else if (name == "SqlCipher") {
    b.dir = std::make_unique<test::TempDir>();
    auto opened = db::Database::open(b.dir->path() / "p.db", test::test_key("conformance"), {});
    EXPECT_TRUE(opened.ok());
    if (!opened.ok()) return b;
    b.db = std::move(*opened);
    EXPECT_TRUE(db::migrate(*b.db).ok());
    b.store = std::make_unique<SqlProtocolStore>(*b.db);
  }
  return b;
}

INSTANTIATE_TEST_SUITE_P(Backends, ProtocolStoreConformance,
                         ::testing::Values("Memory", "SqlCipher"),
                         [](const auto& param_info) { return param_info.param; });

}  // namespace
}  // namespace sotto
