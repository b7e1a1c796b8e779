// The SDK through a cluster: real Clients, each on its own relay node of three that share
// PostgreSQL and Redis, do what they do on one relay: 1:1 with delivered and read receipts,
// typing and presence, a group spread over every node, and a device linked through another
// node than its account's first device.
#include <gtest/gtest.h>

#include <algorithm>

#include "ClientHarness.h"
#include "RelayCluster.h"

namespace sotto::test {
namespace {

TEST(ClusterClients, OneToOneGroupsTypingPresenceAndLinkingAcrossNodes) {
  RelayCluster cluster;
  ASSERT_TRUE(cluster.ready());
  TestClient alice(cluster[0].ws_url(), "alice", "alice's phone");
  TestClient bob(cluster[1].ws_url(), "bob", "bob's phone");
  TestClient carol(cluster[2].ws_url(), "carol", "carol's phone");
  alice.register_account();
  bob.register_account();
  carol.register_account();

  // 1:1 from node 0 to node 1, with receipts back.
  ConversationId ab = alice.conversation_with(bob);
  auto id = alice->send_text(ab, "hello across nodes");
  ASSERT_TRUE(id.ok()) << id.error().message;
  ASSERT_TRUE(eventually([&] { return bob.events().texts().size() == 1; }));
  ConversationId ba = bob.events().messages().front().conversation;
  ASSERT_TRUE(bob->mark_read(ba, *id).ok());
  ASSERT_TRUE(eventually([&] {
    auto m = alice.find(ab, *id);
    return m && m->status == MessageStatus::kRead;
  }));

  // Presence and typing cross nodes too.
  ASSERT_TRUE(alice->watch_presence({ab}).ok());
  ASSERT_TRUE(eventually([&] {
    auto p = alice.events().presence();
    return std::any_of(p.begin(), p.end(), [&](const Recorder::Presence& e) {
      return e.account == bob.info().account && e.online;
    });
  }));
  ASSERT_TRUE(bob->set_typing(ba, true).ok());
  ASSERT_TRUE(eventually([&] {
    auto t = alice.events().typing();
    return std::any_of(t.begin(), t.end(), [&](const Recorder::TypingEvent& e) {
      return e.conversation == ab && e.account == bob.info().account && e.typing;
    });
  }));

  // A group with a member on every node; a reply from the third node reaches both others.
  ASSERT_TRUE(alice->add_contact(carol.handle()).ok());
  auto group = alice->create_group("three nodes", {bob.info().account, carol.info().account});
  ASSERT_TRUE(group.ok()) << group.error().message;
  ASSERT_TRUE(alice->send_text(*group, "to everyone").ok());
  ASSERT_TRUE(eventually([&] {
    return bob.events().texts().size() == 2 && carol.events().texts().size() == 1;
  }));
  ConversationId carol_group = carol.events().messages().back().conversation;
  ASSERT_TRUE(carol->send_text(carol_group, "from node 2").ok());
  ASSERT_TRUE(eventually([&] {
    auto a = alice.events().texts();
    return bob.events().texts().size() == 3 && std::count(a.begin(), a.end(), "from node 2") == 1;
  }));

  // alice's laptop joins through node 2 while her phone is on node 0, and gets what follows.
  TestClient laptop(cluster[2].ws_url(), "alice_laptop", "alice's laptop");
  link_device(alice, laptop);
  ASSERT_TRUE(eventually([&] { return laptop->conversations()->size() >= 1; }));
  ASSERT_TRUE(bob->send_text(ba, "do both your devices get this?").ok());
  ASSERT_TRUE(eventually([&] {
    auto l = laptop.events().texts();
    return std::count(l.begin(), l.end(), "do both your devices get this?") == 1;
  }));
  ASSERT_TRUE(eventually([&] {
    auto a = alice.events().texts();
    return std::count(a.begin(), a.end(), "do both your devices get this?") == 1;
  }));
}

}  // namespace
}  // namespace sotto::test
