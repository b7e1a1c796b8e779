// Cluster mode: three real sotto-relay processes sharing a throwaway PostgreSQL (the store) and
// a throwaway redis-server (the bus), with devices spread over them. Everything a device does
// with a device on another node must work as on one relay, and the loss of a node, of Redis or
// of PostgreSQL loses nothing that was acknowledged.
#include <sys/wait.h>
#include <unistd.h>

#include <array>
#include <cstdio>
#include <set>

#include "RelayCluster.h"
#include "RelayTestUtil.h"
#include "sotto/keys/KeyGen.h"

namespace sotto::test {
namespace {

std::string str(ByteView b) { return std::string(as_chars(b)); }

using Cluster = RelayCluster;

// The next push of a kind, skipping others.
std::optional<wire::Push> next_of(WireClient& c, wire::Push::KindCase kind,
                                  std::chrono::milliseconds timeout) {
  auto until = std::chrono::steady_clock::now() + timeout;
  for (;;) {
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
        until - std::chrono::steady_clock::now());
    if (left.count() <= 0) return std::nullopt;
    auto p = c.next_push(left);
    if (!p) return std::nullopt;
    if (p->kind_case() == kind) return p;
  }
}

TEST(Cluster, DevicesOnDifferentNodesExchangeMessagesPresenceAndTyping) {
  Cluster cluster;
  ASSERT_TRUE(cluster.ready());
  TestDevice alice = must_register(cluster[0], "alice", 0);
  TestDevice bob = must_register(cluster[1], "bob", 0);
  auto b = must_connect(cluster[1], bob);
  drain_backlog(*b);
  wire::Request sub = make_request(wire::OP_PRESENCE_SUBSCRIBE);
  sub.mutable_presence_subscribe()->add_account_ids(str(alice.account_id));
  auto current = expect_ok(*b, sub);
  ASSERT_EQ(current.presence_subscribe().current_size(), 1);
  EXPECT_FALSE(current.presence_subscribe().current(0).online());

  auto a = must_connect(cluster[0], alice);
  auto online = next_of(*b, wire::Push::kPresence, 5s);
  ASSERT_TRUE(online) << "presence did not cross nodes\n" << cluster[0].log();
  EXPECT_TRUE(online->presence().online());

  // A stored message: pushed to bob's node at once (no node polls while the bus is up).
  expect_ok(*a, send_request(random_message_id(), {{&bob, "across nodes"}}));
  auto e = next_envelope(*b, 5s);
  ASSERT_TRUE(e) << cluster[0].log() << cluster[1].log();
  EXPECT_EQ(e->ciphertext(), "across nodes");
  EXPECT_EQ(e->sender_account_id(), str(alice.account_id));
  ack(*b, {e->sequence()});
  // Typing: ephemeral, forwarded to the node that holds bob.
  expect_ok(*a, send_request(random_message_id(), {{&bob, "typing"}}, false, true));
  auto t = next_envelope(*b, 5s);
  ASSERT_TRUE(t);
  EXPECT_TRUE(t->ephemeral());
  EXPECT_EQ(t->ciphertext(), "typing");

  // Bob's devices as alice's node sees them: connected, on another node.
  auto c2 = must_connect(cluster[2], bob);  // replaces b (4002): bob now on node 2
  EXPECT_EQ(b->wait_closed(5s), std::optional<uint16_t>(4002)) << "the older connection stayed";
  drain_backlog(*c2);
  // Alice goes away: bob (on node 2 now, subscribed again there) hears it.
  expect_ok(*c2, sub);
  a->close();
  auto offline = next_of(*c2, wire::Push::kPresence, 5s);
  ASSERT_TRUE(offline);
  EXPECT_FALSE(offline->presence().online());
}

TEST(Cluster, ADeviceIsLinkedThroughAnotherNode) {
  Cluster cluster;
  ASSERT_TRUE(cluster.ready());
  TestDevice alice = must_register(cluster[0], "alice", 0);
  auto a = must_connect(cluster[0], alice);
  auto fresh = WireClient::connect(cluster[1].host(), cluster[1].port());
  ASSERT_TRUE(fresh.ok());
  wire::Request open = make_request(wire::OP_PROVISION_OPEN);
  open.mutable_provision_open()->set_ephemeral_public_key(std::string(32, 'k'));
  auto opened = expect_ok(**fresh, open);
  std::string code = opened.provision_open().link_code();

  wire::Request lookup = make_request(wire::OP_PROVISION_LOOKUP);
  lookup.mutable_provision_lookup()->set_link_code(code);
  EXPECT_EQ(expect_ok(*a, lookup).provision_lookup().ephemeral_public_key(), std::string(32, 'k'));
  wire::Request approve = make_request(wire::OP_PROVISION_APPROVE);
  approve.mutable_provision_approve()->set_link_code(code);
  auto* env = approve.mutable_provision_approve()->mutable_envelope();
  env->set_ephemeral_public_key(std::string(32, 'e'));
  env->set_nonce(std::string(24, 'n'));
  env->set_ciphertext("sealed provision message");
  expect_ok(*a, approve);
  auto pushed = next_of(**fresh, wire::Push::kProvision, 5s);
  ASSERT_TRUE(pushed) << "the approval did not reach the new device's node";
  EXPECT_EQ(pushed->provision().envelope().ciphertext(), "sealed provision message");
  expect_status(*a, approve, wire::CONFLICT);

  auto second = make_device("alice", 0, 100, &alice.identity);
  ASSERT_TRUE(second.ok());
  wire::LinkPayload payload;
  payload.set_account_id(str(alice.account_id));
  payload.set_link_code(code);
  payload.set_identity_key(str(alice.identity.public_key));
  *payload.mutable_device() = device_keys(*second);
  payload.set_timestamp_ms(unix_ms());
  payload.set_nonce(std::string(16, 'x'));
  std::string bytes = payload.SerializeAsString();
  auto sig = keys::sign_payload(test_context(), alice.identity, keys::SignedPurpose::kLink,
                                as_bytes(bytes));
  ASSERT_TRUE(sig.ok());
  wire::Request link = make_request(wire::OP_LINK_DEVICE);
  link.mutable_link_device()->set_payload(bytes);
  link.mutable_link_device()->set_signature(str(*sig));
  EXPECT_EQ(expect_ok(**fresh, link).link_device().device_id(), 2u);
  second->account_id = alice.account_id;
  second->device_id = 2;
  auto s = must_connect(cluster[2], *second);
  // The other node's claim on the device reaches this one through the bus: soon, not at once.
  bool connected = false;
  for (auto until = std::chrono::steady_clock::now() + 10s;
       !connected && std::chrono::steady_clock::now() < until;) {
    auto list = expect_ok(*a, make_request(wire::OP_LIST_DEVICES));
    ASSERT_EQ(list.list_devices().devices_size(), 2);
    connected = list.list_devices().devices(1).connected();
    if (!connected) std::this_thread::sleep_for(50ms);
  }
  EXPECT_TRUE(connected) << "a device on another node";
}

TEST(Cluster, AGroupMessageReachesDevicesOnEveryNode) {
  Cluster cluster;
  ASSERT_TRUE(cluster.ready());
  TestDevice sender = must_register(cluster[0], "sender", 0);
  std::vector<TestDevice> members;
  std::vector<std::unique_ptr<WireClient>> conns;
  for (int i = 0; i < 6; ++i) {
    members.push_back(must_register(cluster[0], "member" + std::to_string(i), 0));
    conns.push_back(must_connect(cluster[i % 3], members.back()));
    drain_backlog(*conns.back());
  }
  auto s = must_connect(cluster[0], sender);
  wire::Request r = make_request(wire::OP_SEND_MULTI);
  auto* m = r.mutable_send_multi();
  m->set_message_id(str(random_message_id()));
  m->set_type(wire::Envelope::SENDER_KEY);
  m->set_ciphertext("to the group");
  m->set_urgent(true);
  for (const auto& d : members) {
    auto* to = m->add_recipients();
    to->set_account_id(str(d.account_id));
    to->set_device_id(d.device_id);
    to->set_registration_id(d.registration_id);
  }
  expect_ok(*s, r);
  for (size_t i = 0; i < conns.size(); ++i) {
    auto e = next_envelope(*conns[i], 5s);
    ASSERT_TRUE(e) << "member " << i << " on node " << i % 3;
    EXPECT_EQ(e->ciphertext(), "to the group");
  }
}

// Without its bus a cluster still delivers everything: each node reads its devices' queues
// every 2 s. Once Redis is back, delivery is live again.
TEST(Cluster, DeliveryGoesOnThroughARedisRestart) {
  Cluster cluster(2);
  ASSERT_TRUE(cluster.ready());
  TestDevice alice = must_register(cluster[0], "alice", 0);
  TestDevice bob = must_register(cluster[1], "bob", 0);
  auto a = must_connect(cluster[0], alice);
  auto b = must_connect(cluster[1], bob);
  drain_backlog(*b);
  cluster.redis->kill9();
  expect_ok(*a, send_request(random_message_id(), {{&bob, "while redis is down"}}));
  auto e = next_envelope(*b, 10s);
  ASSERT_TRUE(e) << "not delivered while the bus was down\n" << cluster[1].log();
  EXPECT_EQ(e->ciphertext(), "while redis is down");
  ack(*b, {e->sequence()});
  ASSERT_TRUE(cluster.redis->restart().ok());
  // The nodes reconnect and claim their devices again; then delivery is live.
  std::optional<wire::Envelope> live;
  for (int i = 0; i < 40 && !live; ++i) {
    expect_ok(*a, send_request(random_message_id(), {{&bob, "after " + std::to_string(i)}}));
    live = next_envelope(*b, 1500ms);
    if (live) ack(*b, {live->sequence()});
  }
  ASSERT_TRUE(live) << cluster[0].log();
  EXPECT_NE(cluster[1].log().find("bus_down"), std::string::npos);
  EXPECT_NE(cluster[1].log().find("bus_up"), std::string::npos);
}

// PostgreSQL gone: nothing is acknowledged that is not stored (UNAVAILABLE), /healthz says so,
// and once it is back the same request succeeds.
TEST(Cluster, RequestsWaitForPostgresAndNothingIsAcknowledgedWithoutIt) {
  Cluster cluster(1);
  ASSERT_TRUE(cluster.ready());
  TestDevice alice = must_register(cluster[0], "alice", 0);
  TestDevice bob = must_register(cluster[0], "bob", 0);
  auto a = must_connect(cluster[0], alice);
  ASSERT_TRUE(cluster.postgres->stop().ok());
  Bytes id = random_message_id();
  auto r = a->call(send_request(id, {{&bob, "kept"}}));
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->status(), wire::UNAVAILABLE) << r->message();
  EXPECT_EQ(http_request(cluster[0].port(), "GET", "/healthz").status, 503);
  ASSERT_TRUE(cluster.postgres->restart().ok());
  std::optional<wire::Response> ok;
  for (int i = 0; i < 50 && !ok; ++i) {
    auto again = a->call(send_request(id, {{&bob, "kept"}}));
    if (again.ok() && again->status() == wire::OK) ok = *again;
    else std::this_thread::sleep_for(200ms);
  }
  ASSERT_TRUE(ok) << cluster[0].log();
  EXPECT_EQ(http_request(cluster[0].port(), "GET", "/healthz").status, 200);
  auto b = must_connect(cluster[0], bob);
  auto got = drain_backlog(*b);
  ASSERT_EQ(got.size(), 1u);
  EXPECT_EQ(got[0].ciphertext(), "kept");
}

// A node killed with its devices' connections: they reconnect to another node and get every
// message, once, in order; their presence turns offline when the dead node's claims expire.
TEST(Cluster, ANodeKilledLosesNothing) {
  Cluster cluster;
  ASSERT_TRUE(cluster.ready());
  TestDevice alice = must_register(cluster[0], "alice", 0);
  TestDevice bob = must_register(cluster[0], "bob", 0);
  TestDevice carol = must_register(cluster[0], "carol", 0);
  auto a = must_connect(cluster[0], alice);
  auto c = must_connect(cluster[2], carol);
  wire::Request sub = make_request(wire::OP_PRESENCE_SUBSCRIBE);
  sub.mutable_presence_subscribe()->add_account_ids(str(bob.account_id));
  expect_ok(*c, sub);
  auto b = must_connect(cluster[1], bob);
  ASSERT_TRUE(next_of(*c, wire::Push::kPresence, 5s));  // bob online
  std::vector<std::string> sent;
  for (int i = 0; i < 20; ++i) {
    sent.push_back("m" + std::to_string(i));
    expect_ok(*a, send_request(random_message_id(), {{&bob, sent.back()}}));
    if (i == 9) cluster[1].kill9();
  }
  auto offline = next_of(*c, wire::Push::kPresence, 10s);
  ASSERT_TRUE(offline) << "bob's presence stayed online after his node died";
  EXPECT_FALSE(offline->presence().online());
  b.reset();
  auto again = must_connect(cluster[2], bob);
  std::vector<std::string> got;
  std::set<uint64_t> seqs;
  while (auto e = next_envelope(*again, 3s)) {
    EXPECT_TRUE(seqs.insert(e->sequence()).second) << "sequence twice: " << e->sequence();
    got.push_back(e->ciphertext());
    ack(*again, {e->sequence()});
  }
  EXPECT_EQ(got, sent);
}

TEST(Cluster, AStoreThatCannotBeReachedIsAClearErrorAtStart) {
  char tmpl[] = "/tmp/sotto-nostore-XXXXXX";
  ASSERT_TRUE(::mkdtemp(tmpl));
  std::string cmd = RelayProcess::binary() + " --data-dir " + tmpl +
                    " --listen 127.0.0.1:0 --store 'postgresql:///nothing?host=" + tmpl +
                    "&port=1' 2>&1";
  FILE* p = ::popen(cmd.c_str(), "r");
  ASSERT_TRUE(p);
  std::string out;
  char buf[512];
  while (size_t n = std::fread(buf, 1, sizeof buf, p)) out.append(buf, n);
  int status = ::pclose(p);
  std::filesystem::remove_all(tmpl);
  ASSERT_TRUE(WIFEXITED(status));
  EXPECT_NE(WEXITSTATUS(status), 0);
  EXPECT_NE(out.find("cannot connect to PostgreSQL"), std::string::npos) << out;
  EXPECT_NE(out.find("--store"), std::string::npos) << out;
}

}  // namespace
}  // namespace sotto::test
