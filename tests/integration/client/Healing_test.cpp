// Sessions repair themselves, and a changed identity key waits for the user.
#include <gtest/gtest.h>

#include <unistd.h>

#include <algorithm>
#include <thread>

#include "ClientHarness.h"
#include "FaultyProxy.h"
#ifdef SOTTO_TEST_SERVICES
#include "PostgresServer.h"  // a throwaway PostgreSQL: a build with the relay only
#endif

namespace sotto::test {
namespace {

TEST(Healing, ACorruptSessionRecordHealsByItself) {
  RelayProcess relay;
  TestClient alice(relay, "alice"), bob(relay, "bob");
  alice.register_account();
  bob.register_account();
  ConversationId ab = alice.conversation_with(bob);
  ConversationId ba = bob.conversation_with(alice);
  for (int i = 0; i < 3; ++i) {
    ASSERT_TRUE(alice->send_text(ab, "a" + std::to_string(i)).ok());
    ASSERT_TRUE(bob->send_text(ba, "b" + std::to_string(i)).ok());
  }
  ASSERT_TRUE(eventually(
      [&] { return bob.events().texts().size() == 3 && alice.events().texts().size() == 3; }));

  // Bob's record of the session with alice is destroyed on disk.
  bob.close();
  poke(bob, "UPDATE sessions SET record = randomblob(length(record)) WHERE name = '" +
                alice.info().account + "'");
  bob.reopen();

  auto id = alice->send_text(ab, "after the damage").value();
  ASSERT_TRUE(eventually(
      [&] {
        auto t = bob.events().texts();
        return std::count(t.begin(), t.end(), "after the damage") == 1;
      },
      30s))
      << "bob never got the message that could not be decrypted at first";
  // Bob's conversation shows what happened.
  auto h = bob.history(ba);
  EXPECT_TRUE(std::any_of(h.begin(), h.end(),
                          [](const Message& m) { return m.kind == MessageKind::kNotice; }));
  // And the conversation goes on both ways.
  ASSERT_TRUE(alice->send_text(ab, "next").ok());
  ASSERT_TRUE(bob->send_text(ba, "reply").ok());
  ASSERT_TRUE(eventually([&] {
    auto t = bob.events().texts();
    return std::count(t.begin(), t.end(), "next") == 1;
  }));
  ASSERT_TRUE(eventually([&] {
    auto t = alice.events().texts();
    return std::count(t.begin(), t.end(), "reply") == 1;
  }));
  // Nothing was shown twice.
  auto t = bob.events().texts();
  EXPECT_EQ(std::count(t.begin(), t.end(), "after the damage"), 1);
  ASSERT_TRUE(eventually([&] {
    auto m = alice.find(ab, id);
    return m && m->status == MessageStatus::kDelivered;
  }));
}

TEST(Healing, TheSendersCorruptSessionIsRebuiltToo) {
  RelayProcess relay;
  TestClient alice(relay, "alice"), bob(relay, "bob");
  alice.register_account();
  bob.register_account();
  ConversationId ab = alice.conversation_with(bob);
  ASSERT_TRUE(alice->send_text(ab, "first").ok());
  ASSERT_TRUE(eventually([&] { return bob.events().texts().size() == 1; }));
  alice.close();
  poke(alice, "UPDATE sessions SET record = x'00' WHERE name = '" + bob.info().account + "'");
  alice.reopen();
  ASSERT_TRUE(alice->send_text(ab, "second").ok());
  ASSERT_TRUE(eventually([&] { return bob.events().texts().size() == 2; }));
  EXPECT_EQ(bob.events().texts()[1], "second");
}

#ifdef SOTTO_TEST_SERVICES  // not in the cross builds: they have no throwaway PostgreSQL
// An ack the relay refuses (its PostgreSQL store is down for a moment) is sent again. Left in
// the queue, the envelope would come again only on the device's next connection, after more
// of the conversation than the session can still tell a duplicate from a message it cannot
// decrypt: the receiver would reset a healthy session and show that it lost a message.
TEST(Healing, AnAckTheRelayRefusedIsSentAgainAndTheSessionLives) {
  auto pg = PostgresServer::start();
  ASSERT_TRUE(pg.ok()) << "no PostgreSQL: " << pg.error().message;
  auto db = (*pg)->create_database("acks");
  ASSERT_TRUE(db.ok()) << db.error().message;
  RelayProcess::Options o;
  o.extra_args = {"--store", (*pg)->url(*db)};
  RelayProcess relay(o);
  FaultyProxy proxy(relay.port());  // bob's network
  TestClient alice(relay, "alice");
  TestClient bob("ws://127.0.0.1:" + std::to_string(proxy.port()) + "/v1/ws", "bob", "phone");
  alice.register_account();
  bob.register_account();
  ConversationId ab = alice.conversation_with(bob);
  ConversationId ba = bob.conversation_with(alice);
  auto count = [](TestClient& c, const std::string& text) {
    auto t = c.events().texts();
    return std::count(t.begin(), t.end(), text);
  };
  ASSERT_TRUE(alice->send_text(ab, "hello").ok());
  ASSERT_TRUE(eventually([&] { return count(bob, "hello") == 1; }));
  ASSERT_TRUE(bob->send_text(ba, "hi").ok());
  ASSERT_TRUE(eventually([&] { return count(alice, "hi") == 1; }));

  // The relay stores the message and pushes it to bob, whose network holds it until the store
  // is down: bob stores it and his ack is refused.
  proxy.stall(2500ms);
  auto id = alice->send_text(ab, "acked while the store is down");
  ASSERT_TRUE(id.ok());
  ASSERT_TRUE(eventually([&] {
    auto m = alice.find(ab, *id);
    return m && m->status == MessageStatus::kSent;
  }));
  ASSERT_TRUE((*pg)->stop().ok());
  ASSERT_TRUE(eventually([&] { return count(bob, "acked while the store is down") == 1; }));
  std::this_thread::sleep_for(1s);
  ASSERT_TRUE((*pg)->restart().ok());

  // More of the conversation than the session keeps of old chains (5 ratchet steps)...
  for (int i = 0; i < 8; ++i) {
    std::string a = "a" + std::to_string(i), b = "b" + std::to_string(i);
    ASSERT_TRUE(alice->send_text(ab, a).ok());
    ASSERT_TRUE(eventually([&] { return count(bob, a) == 1; }, 30s)) << a;
    ASSERT_TRUE(bob->send_text(ba, b).ok());
    ASSERT_TRUE(eventually([&] { return count(alice, b) == 1; }, 30s)) << b;
  }
  // ...then a new connection: bob gets the rest of his queue, oldest first.
  bob->disconnect();
  ASSERT_TRUE(bob->connect().ok());
  ASSERT_TRUE(bob->wait_online(20s));
  ASSERT_TRUE(alice->send_text(ab, "last").ok());
  ASSERT_TRUE(eventually([&] { return count(bob, "last") == 1; }, 30s));
  for (const auto& m : bob.history(ba))
    EXPECT_NE(m.kind, MessageKind::kNotice) << "bob's conversation shows: " << m.text;
  EXPECT_EQ(count(bob, "acked while the store is down"), 1);
}
#endif

TEST(Identity, AChangedKeyRaisesAnEventAndSendingWaitsForTheUser) {
  RelayProcess relay;
  TestClient alice(relay, "alice"), bob(relay, "bob"), carol(relay, "carol");
  alice.register_account();
  bob.register_account();
  carol.register_account();
  ConversationId ab = alice.conversation_with(bob);
  ASSERT_TRUE(alice->send_text(ab, "first").ok());
  ASSERT_TRUE(eventually([&] { return bob.events().texts().size() == 1; }));
  auto before = alice->safety_number(bob.info().account).value();

  // As if the relay now served someone else's key for bob: alice's stored key differs.
  fake_changed_identity(alice, bob.info().account);

  auto id = alice->send_text(ab, "held back").value();
  ASSERT_TRUE(eventually([&] { return !alice.events().identity_changes().empty(); }));
  auto change = alice.events().identity_changes()[0];
  EXPECT_EQ(change.account, bob.info().account);
  EXPECT_EQ(change.safety_number.digits, before.digits);  // bob's real key again
  // Once carol has a text alice wrote after that, alice's client is past the send it held
  // back (one worker does both, in turn); a text from carol to bob then reaches him after
  // anything alice sent him.
  ConversationId ac = alice.conversation_with(carol);
  ASSERT_TRUE(alice->send_text(ac, "to carol").ok());
  ASSERT_TRUE(eventually([&] { return carol.events().texts().size() == 1; }));
  ConversationId cb = carol.conversation_with(bob);
  ASSERT_TRUE(carol->send_text(cb, "from carol").ok());
  ASSERT_TRUE(eventually([&] { return bob.events().texts().size() == 2; }));
  EXPECT_EQ(bob.events().texts(), (std::vector<std::string>{"first", "from carol"}));
  EXPECT_EQ(alice.find(ab, id)->status, MessageStatus::kPending);

  ASSERT_TRUE(alice->accept_identity(bob.info().account).ok());
  ASSERT_TRUE(eventually([&] { return bob.events().texts().size() == 3; }));
  EXPECT_EQ(bob.events().texts()[2], "held back");
}

// A safety number the user verified stays verified across restarts, for that number only:
// while another key stands for the contact it is not, and it is again once the key is the
// one the user compared.
TEST(Identity, AVerifiedNumberHoldsForThatNumberOnly) {
  RelayProcess relay;
  TestClient alice(relay, "alice"), bob(relay, "bob");
  alice.register_account();
  bob.register_account();
  ConversationId ab = alice.conversation_with(bob);
  ASSERT_TRUE(alice->send_text(ab, "first").ok());  // a session: bob's key is alice's now
  ASSERT_TRUE(eventually([&] { return bob.events().texts().size() == 1; }));
  const std::string b = bob.info().account;
  EXPECT_FALSE(alice->verified(b).value());
  ASSERT_TRUE(alice->set_verified(b, true).ok());
  EXPECT_TRUE(alice->verified(b).value());
  alice.close();
  alice.reopen();
  EXPECT_TRUE(alice->verified(b).value());

  fake_changed_identity(alice, b);
  EXPECT_FALSE(alice->verified(b).value()) << "another key stands for bob now";
  ASSERT_TRUE(alice->accept_identity(b).ok());
  auto back = alice->safety_number(b);
  ASSERT_TRUE(back.ok());
  EXPECT_TRUE(alice->verified(b).value()) << "bob's own key, the one alice compared";

  ASSERT_TRUE(alice->set_verified(b, false).ok());
  EXPECT_FALSE(alice->verified(b).value());
  EXPECT_EQ(alice->set_verified("not an account", true).code(), ErrorCode::kInvalidArgument);
}

// Clients with the default reconnect policy (not the tests' short one) are back within a few
// seconds of a relay restart however many restarts came before: a connection that had a
// request answered starts the wait over.
TEST(Reconnect, ClientsAreBackSoonAfterTheLastOfManyRelayRestarts) {
  RelayProcess relay;
  std::vector<std::unique_ptr<TestClient>> clients;
  for (const char* name : {"alice", "bob", "carol"}) {
    clients.push_back(std::make_unique<TestClient>(relay, name));
    clients.back()->register_account();
    clients.back()->tweak_options = [](ClientOptions& o) {
      ClientOptions defaults;
      o.backoff_initial = defaults.backoff_initial;
      o.backoff_max = defaults.backoff_max;
    };
    clients.back()->reopen();
  }
  auto all_online = [&](std::chrono::milliseconds timeout) {
    for (auto& c : clients)
      if (!(*c)->wait_online(timeout)) return false;
    return true;
  };
  // Each client has seen its connection drop before the relay is back.
  auto kill_relay = [&] {
    relay.kill9();
    for (auto& c : clients)
      ASSERT_TRUE(eventually([&] { return (*c)->connection_state() != ConnectionState::kOnline; },
                             10s));
  };
  ASSERT_TRUE(all_online(20s));
  for (int i = 0; i < 6; ++i) {
    ASSERT_NO_FATAL_FAILURE(kill_relay());
    relay.restart();
    ASSERT_TRUE(all_online(90s)) << "restart " << i;
  }
  ASSERT_NO_FATAL_FAILURE(kill_relay());
  relay.restart();
  auto restarted = std::chrono::steady_clock::now();
  EXPECT_TRUE(all_online(5s)) << "not every client was back within 5 s of the last restart";
  std::printf("all clients back %.2f s after the last of 7 restarts\n",
              std::chrono::duration<double>(std::chrono::steady_clock::now() - restarted).count());
}

// An app that calls connect() right after register_account() (which connects by itself), or
// that reconnects while a socket is still being authenticated, must end up online: the two
// sockets of one device must never leave it with none (the relay replaces the older with
// 4002, and that older one may be the socket this device just closed).
TEST(Reconnect, ConnectRightAfterRegisterOrDuringAReconnectLeavesEveryClientOnline) {
  RelayProcess relay;
  std::vector<std::unique_ptr<TestClient>> clients;
  for (int i = 0; i < 12; ++i) {
    auto c = std::make_unique<TestClient>(relay, "racer" + std::to_string(i));
    auto made = (*c)->register_account("racer_" + std::to_string(i) + "_" +
                                       std::to_string(::getpid() % 100000));
    ASSERT_TRUE(made.ok()) << made.error().message;
    ASSERT_TRUE((*c)->connect().ok());
    clients.push_back(std::move(c));
  }
  for (auto& c : clients) EXPECT_TRUE((*c)->wait_online(10s)) << c->handle();

  auto& c = *clients.front();
  for (int i = 0; i < 12; ++i) {
    c->disconnect();
    ASSERT_TRUE(c->connect().ok());
    if (i % 2) {
      ASSERT_TRUE(c->connect().ok());  // and again, while it dials
    }
    ASSERT_TRUE(c->wait_online(10s)) << "round " << i;
  }
  // Online means it works: a message reaches it.
  TestClient bob(relay, "bob");
  bob.register_account();
  auto to_c = bob->add_contact(c->account()->handle);
  ASSERT_TRUE(to_c.ok()) << to_c.error().message;
  auto conv = bob->direct_conversation(to_c->account);
  ASSERT_TRUE(bob->send_text(*conv, "are you there?").ok());
  EXPECT_TRUE(eventually([&] { return c.events().count() == 1; }));
  std::this_thread::sleep_for(1500ms);  // a late 4002 would show as a drop here
  EXPECT_EQ(c->connection_state(), ConnectionState::kOnline);
}

}  // namespace
}  // namespace sotto::test
