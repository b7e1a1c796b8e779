// Presence and last-seen reach subscribers only; hidden presence; liveness.
#include "RelayMetrics.h"
#include "RelayTestUtil.h"

namespace sotto::test {
namespace {

wire::Request subscribe(const std::vector<const TestDevice*>& accounts) {
  wire::Request r = make_request(wire::OP_PRESENCE_SUBSCRIBE);
  r.mutable_presence_subscribe();
  for (auto* a : accounts) r.mutable_presence_subscribe()->add_account_ids(str(a->account_id));
  return r;
}

std::optional<wire::PresenceUpdate> next_presence(WireClient& c, std::chrono::milliseconds t = 5s) {
  auto deadline = std::chrono::steady_clock::now() + t;
  while (std::chrono::steady_clock::now() < deadline) {
    auto p = c.next_push(std::chrono::duration_cast<std::chrono::milliseconds>(
        deadline - std::chrono::steady_clock::now()));
    if (!p) break;
    if (p->has_presence()) return p->presence();
  }
  return std::nullopt;
}

// The presence updates `c` received up to the answer to a ping sent now. Whatever the relay
// announced before it read the ping was written to `c`'s socket ahead of that answer.
std::vector<wire::PresenceUpdate> presence_until_ping(WireClient& c) {
  expect_ok(c, make_request(wire::OP_PING));
  std::vector<wire::PresenceUpdate> out;
  for (const auto& p : c.pushes())
    if (p.has_presence()) out.push_back(p.presence());
  c.pushes().clear();
  return out;
}

// Waits until the relay counts `n` authenticated connections: a connection it counts no more
// was announced as gone before.
void wait_authenticated(const RelayProcess& relay, int n) {
  ASSERT_TRUE(wait_for_metric(relay.port(), "sotto_connections{kind=\"ws_authenticated\"}",
                              [n](double v) { return v == n; }))
      << "the relay never counted " << n << " authenticated connections";
}

TEST(RelayPresence, OnlineAndLastSeenReachSubscribersOnly) {
  RelayProcess relay;
  TestDevice alice = must_register(relay, "alice", 0);
  TestDevice carol = must_register(relay, "carol", 0);
  TestDevice dave = must_register(relay, "dave", 0);
  auto c = must_connect(relay, carol);
  auto d = must_connect(relay, dave);
  auto now = expect_ok(*c, subscribe({&alice}));
  ASSERT_EQ(now.presence_subscribe().current_size(), 1);
  EXPECT_FALSE(now.presence_subscribe().current(0).online());
  EXPECT_EQ(now.presence_subscribe().current(0).last_seen_ms(), 0u);

  uint64_t before = unix_ms();
  auto a = must_connect(relay, alice);
  auto on = next_presence(*c);
  ASSERT_TRUE(on);
  EXPECT_EQ(on->account_id(), str(alice.account_id));
  EXPECT_TRUE(on->online());
  a->close();
  auto off = next_presence(*c);
  ASSERT_TRUE(off);
  EXPECT_FALSE(off->online());
  EXPECT_EQ(off->last_seen_ms() % 60'000, 0u);
  EXPECT_LE(off->last_seen_ms(), unix_ms());
  EXPECT_GE(off->last_seen_ms() + 60'000, before);
  ASSERT_NO_FATAL_FAILURE(wait_authenticated(relay, 2));  // carol and dave
  EXPECT_TRUE(presence_until_ping(*d).empty()) << "dave never subscribed";
  // A new subscription reports the stored last-seen time.
  auto again = expect_ok(*d, subscribe({&alice}));
  EXPECT_EQ(again.presence_subscribe().current(0).last_seen_ms(), off->last_seen_ms());
  // An empty list unsubscribes.
  expect_ok(*c, subscribe({}));
  a = must_connect(relay, alice);
  expect_ok(*a, make_request(wire::OP_PING));  // answered once the relay announced alice
  EXPECT_TRUE(presence_until_ping(*c).empty());
  auto on_d = next_presence(*d);
  ASSERT_TRUE(on_d);
  EXPECT_TRUE(on_d->online());
}

TEST(RelayPresence, HiddenPresenceLooksLikeNeverOnline) {
  RelayProcess relay;
  TestDevice alice = must_register(relay, "alice", 0);
  TestDevice carol = must_register(relay, "carol", 0);
  auto c = must_connect(relay, carol);
  expect_ok(*c, subscribe({&alice}));
  auto a = must_connect(relay, alice);
  ASSERT_TRUE(next_presence(*c));
  wire::Request hide = make_request(wire::OP_PRESENCE_VISIBILITY);
  hide.mutable_presence_visibility()->set_hidden(true);
  expect_ok(*a, hide);
  auto update = next_presence(*c);
  ASSERT_TRUE(update);
  EXPECT_FALSE(update->online());
  EXPECT_EQ(update->last_seen_ms(), 0u);
  auto now = expect_ok(*c, subscribe({&alice}));
  EXPECT_FALSE(now.presence_subscribe().current(0).online());
  a->close();
  ASSERT_NO_FATAL_FAILURE(wait_authenticated(relay, 1));  // carol
  EXPECT_TRUE(presence_until_ping(*c).empty());
  a = must_connect(relay, alice);
  expect_ok(*a, make_request(wire::OP_PING));  // answered once the relay announced alice
  EXPECT_TRUE(presence_until_ping(*c).empty());
  hide.mutable_presence_visibility()->set_hidden(false);
  expect_ok(*a, hide);
  auto shown = next_presence(*c);
  ASSERT_TRUE(shown);
  EXPECT_TRUE(shown->online());
}

TEST(RelayPresence, SilentConnectionsAreDroppedAndPingsKeepThemAlive) {
  RelayProcess::Options o;
  o.extra_args = {"--idle-timeout-ms", "1500"};
  RelayProcess relay(o);
  TestDevice alice = must_register(relay, "alice", 0);
  TestDevice bob = must_register(relay, "bob", 0);
  auto a = must_connect(relay, alice);
  auto b = must_connect(relay, bob);
  for (int i = 0; i < 8; ++i) {
    b->ping();
    std::this_thread::sleep_for(400ms);
    b->next_push(1ms);  // lets the client read the pongs
  }
  auto code = a->wait_closed(3s);
  ASSERT_TRUE(code);
  EXPECT_EQ(*code, 1006) << "dropped without a close handshake";
  EXPECT_TRUE(b->is_open());
  expect_ok(*b, make_request(wire::OP_PING));
}

TEST(RelayPresence, SubscriptionListsAreCapped) {
  RelayProcess relay;
  TestDevice alice = must_register(relay, "alice", 0);
  auto a = must_connect(relay, alice);
  wire::Request r = make_request(wire::OP_PRESENCE_SUBSCRIBE);
  for (int i = 0; i < 257; ++i)
    r.mutable_presence_subscribe()->add_account_ids(std::string(16, static_cast<char>(i)));
  auto resp = expect_status(*a, r, wire::TOO_LARGE);
  EXPECT_EQ(resp.too_large().max_items(), 256u);
  r.mutable_presence_subscribe()->clear_account_ids();
  r.mutable_presence_subscribe()->add_account_ids("short");
  expect_status(*a, r, wire::BAD_REQUEST);
}

}  // namespace
}  // namespace sotto::test
