// Prekey upload, bundles, the atomic one-time take, last resort, PreKeysLow.
#include <set>

#include "RelayTestUtil.h"
#include "sotto/keys/Bundle.h"

namespace sotto::test {
namespace {

wire::Request bundles_request(const TestDevice& of, std::vector<uint32_t> devices = {}) {
  wire::Request r = make_request(wire::OP_GET_BUNDLES);
  r.mutable_get_bundles()->set_account_id(str(of.account_id));
  for (uint32_t d : devices) r.mutable_get_bundles()->add_device_ids(d);
  return r;
}

wire::Request upload_request(const std::vector<keys::OneTimePreKey>& keys) {
  wire::Request r = make_request(wire::OP_UPLOAD_PREKEYS);
  for (const auto& k : keys) {
    auto* o = r.mutable_upload_prekeys()->add_one_time_prekeys();
    o->set_id(k.id);
    o->set_public_key(str(k.public_key));
  }
  return r;
}

uint32_t pool_size(WireClient& c) {
  return expect_ok(c, make_request(wire::OP_GET_PREKEY_COUNT))
      .get_prekey_count()
      .one_time_prekeys();
}

TEST(RelayPrekeys, BundlesVerifyAndTakeOneTimePrekeys) {
  RelayProcess relay;
  TestDevice alice = must_register(relay, "alice");
  TestDevice bob = must_register(relay, "bob", 3);
  auto a = must_connect(relay, alice);
  auto b = must_connect(relay, bob);
  EXPECT_EQ(pool_size(*b), 3u);
  auto resp = expect_ok(*a, bundles_request(bob));
  ASSERT_EQ(resp.get_bundles().bundles_size(), 1);
  const auto& bundle = resp.get_bundles().bundles(0);
  EXPECT_TRUE(keys::verify_bundle(test_context(), bundle).ok());
  EXPECT_EQ(bundle.device_id(), 1u);
  EXPECT_EQ(bundle.registration_id(), bob.registration_id);
  EXPECT_EQ(bundle.one_time_prekey().id(), bob.one_time_prekeys[0].id);
  EXPECT_FALSE(bundle.last_resort());
  EXPECT_EQ(pool_size(*b), 2u);
  auto count = expect_ok(*b, make_request(wire::OP_GET_PREKEY_COUNT)).get_prekey_count();
  EXPECT_TRUE(count.has_last_resort());
  EXPECT_EQ(count.signed_prekey_id(), bob.signed_prekey.id);
  expect_status(*a, bundles_request(bob, {5}), wire::NOT_FOUND);
  expect_status(*a, bundles_request(bob, {1, 1}), wire::BAD_REQUEST);
  expect_status(*a, bundles_request(alice, {1}), wire::BAD_REQUEST);  // own device
}

// Eight devices fetch one pool at the same time: no one-time prekey is handed out twice, and
// an empty pool serves the last-resort key.
TEST(RelayPrekeys, ConcurrentFetchersNeverGetTheSameOneTimePrekey) {
  RelayProcess relay;
  constexpr int kFetchers = 8, kEach = 6, kPool = 40;
  TestDevice bob = must_register(relay, "bob", kPool);
  std::vector<TestDevice> fetchers;
  for (int i = 0; i < kFetchers; ++i)
    fetchers.push_back(must_register(relay, "fetcher" + std::to_string(i), 0));
  std::mutex mu;
  std::vector<uint32_t> ids;
  int last_resort = 0;
  std::vector<std::thread> threads;
  for (int i = 0; i < kFetchers; ++i) {
    threads.emplace_back([&, i] {
      auto c = connect_device(relay.host(), relay.port(), fetchers[i]);
      ASSERT_TRUE(c.ok());
      std::vector<uint64_t> pending;
      for (int k = 0; k < kEach; ++k) pending.push_back((*c)->send(bundles_request(bob)));
      for (uint64_t id : pending) {
        auto r = (*c)->wait_response(id);
        ASSERT_TRUE(r.ok());
        ASSERT_EQ(r->status(), wire::OK) << r->message();
        const auto& b = r->get_bundles().bundles(0);
        std::lock_guard lock(mu);
        if (b.last_resort()) {
          EXPECT_EQ(b.one_time_prekey().id(), 0xFFFFFFu);
          ++last_resort;
        } else {
          ids.push_back(b.one_time_prekey().id());
        }
      }
    });
  }
  for (auto& t : threads) t.join();
  std::set<uint32_t> unique(ids.begin(), ids.end());
  EXPECT_EQ(unique.size(), ids.size()) << "a one-time prekey was handed out twice";
  EXPECT_EQ(ids.size(), static_cast<size_t>(kPool));
  EXPECT_EQ(last_resort, kFetchers * kEach - kPool);
}

TEST(RelayPrekeys, PreKeysLowIsPushedOnceBelowTheThreshold) {
  RelayProcess relay;
  TestDevice alice = must_register(relay, "alice");
  TestDevice bob = must_register(relay, "bob", 12);
  auto b = must_connect(relay, bob);
  ASSERT_TRUE(drain_backlog(*b).empty());
  auto a = must_connect(relay, alice);
  for (int i = 0; i < 4; ++i) expect_ok(*a, bundles_request(bob));
  std::optional<wire::Push> low;
  while ((low = b->next_push(3s)) && !low->has_prekeys_low()) {
  }
  ASSERT_TRUE(low);
  EXPECT_EQ(low->prekeys_low().remaining(), 9u);
  EXPECT_EQ(low->prekeys_low().threshold(), 10u);
  // Once per connection until an upload raises the count.
  expect_ok(*a, bundles_request(bob));
  // Answered from the storage thread, whose completions run in order: a push the last fetch
  // made is written to bob's socket before this answer.
  expect_ok(*b, make_request(wire::OP_LIST_DEVICES));
  EXPECT_TRUE(b->pushes().empty()) << "a second PrekeysLow";
  auto more = keys::generate_one_time_prekeys(test_context(), 500, 20);
  ASSERT_TRUE(more.ok());
  auto up = expect_ok(*b, upload_request(*more));
  EXPECT_EQ(up.upload_prekeys().one_time_prekeys(), 27u);  // 12 - 5 taken + 20
  // A device that connects with a low pool hears about it at once.
  TestDevice carol = must_register(relay, "carol", 2);
  auto c = must_connect(relay, carol);
  std::optional<wire::Push> p;
  while ((p = c->next_push(3s)) && !p->has_prekeys_low()) {
  }
  ASSERT_TRUE(p);
  EXPECT_EQ(p->prekeys_low().remaining(), 2u);
}

TEST(RelayPrekeys, UploadsAreVerifiedAndCapped) {
  RelayProcess::Options o;
  o.extra_args = {"--max-prekeys-stored", "30"};
  RelayProcess relay(o);
  TestDevice alice = must_register(relay, "alice", 10);
  TestDevice bob = must_register(relay, "bob", 10);
  auto a = must_connect(relay, alice);
  auto b = must_connect(relay, bob);
  expect_status(*a, make_request(wire::OP_UPLOAD_PREKEYS), wire::BAD_REQUEST);
  // A signed prekey whose signature was made by someone else's identity: refused.
  auto forged = keys::generate_signed_prekey(test_context(), bob.identity, 2, unix_ms());
  wire::Request r = make_request(wire::OP_UPLOAD_PREKEYS);
  auto* spk = r.mutable_upload_prekeys()->mutable_signed_prekey();
  spk->set_id(2);
  spk->set_public_key(str(forged->public_key));
  spk->set_signature(str(forged->signature));
  spk->set_timestamp_ms(forged->timestamp_ms);
  expect_status(*a, r, wire::BAD_REQUEST);
  // The genuine one is accepted and served.
  auto good = keys::generate_signed_prekey(test_context(), alice.identity, 2, unix_ms());
  spk->set_public_key(str(good->public_key));
  spk->set_signature(str(good->signature));
  expect_ok(*a, r);
  auto bundle = expect_ok(*b, bundles_request(alice)).get_bundles().bundles(0);
  EXPECT_EQ(bundle.signed_prekey().id(), 2u);
  EXPECT_TRUE(keys::verify_bundle(test_context(), bundle).ok());
  // Uploads only ever change the caller's own pool.
  auto keys21 = keys::generate_one_time_prekeys(test_context(), 100, 22);
  expect_status(*a, upload_request(*keys21), wire::LIMIT_REACHED);  // 9 + 22 > 30
  EXPECT_EQ(pool_size(*a), 9u);
  EXPECT_EQ(pool_size(*b), 10u);
  keys21->resize(21);
  EXPECT_EQ(expect_ok(*a, upload_request(*keys21)).upload_prekeys().one_time_prekeys(), 30u);
  // Duplicate ids and a bad last-resort id.
  auto dup = *keys21;
  dup.resize(2);
  dup[1].id = dup[0].id;
  expect_status(*a, upload_request(dup), wire::BAD_REQUEST);
  wire::Request lr = make_request(wire::OP_UPLOAD_PREKEYS);
  lr.mutable_upload_prekeys()->mutable_last_resort_prekey()->set_id(7);
  lr.mutable_upload_prekeys()->mutable_last_resort_prekey()->set_public_key(
      str((*keys21)[0].public_key));
  expect_status(*a, lr, wire::BAD_REQUEST);
  // A key that does not decode.
  auto junk = *keys21;
  junk.resize(1);
  junk[0].public_key = Bytes(33, 0x07);
  expect_status(*a, upload_request(junk), wire::BAD_REQUEST);
}

}  // namespace
}  // namespace sotto::test
