// Typing and presence reach the people looking at the conversation, and nothing of them is
// queued or stored.
#include <gtest/gtest.h>

#include "ClientHarness.h"

namespace sotto::test {
namespace {

size_t typing_events(TestClient& c, const std::string& account, bool typing) {
  size_t n = 0;
  for (const auto& t : c.events().typing())
    if (t.account == account && t.typing == typing) ++n;
  return n;
}

std::optional<Recorder::Presence> last_presence(TestClient& c, const std::string& account) {
  std::optional<Recorder::Presence> out;
  for (const auto& p : c.events().presence())
    if (p.account == account) out = p;
  return out;
}

TEST(Live, TypingReachesOnlineMembersAndIsNeverQueued) {
  RelayProcess relay;
  TestClient alice(relay, "alice"), bob(relay, "bob"), carol(relay, "carol");
  alice.register_account();
  bob.register_account();
  carol.register_account();
  ConversationId ab = alice.conversation_with(bob);
  ASSERT_TRUE(alice->send_text(ab, "hi").ok());  // sessions both ways
  ASSERT_TRUE(eventually([&] { return bob.events().texts().size() == 1; }));

  ASSERT_TRUE(alice->set_typing(ab, true).ok());
  ASSERT_TRUE(eventually([&] { return typing_events(bob, alice.info().account, true) == 1; }));
  ASSERT_TRUE(alice->set_typing(ab, true).ok());  // a keystroke soon after: throttled
  ASSERT_TRUE(alice->set_typing(ab, false).ok());
  ASSERT_TRUE(eventually([&] { return typing_events(bob, alice.info().account, false) == 1; }));
  EXPECT_EQ(typing_events(bob, alice.info().account, true), 1u);
  EXPECT_TRUE(carol.events().typing().empty());

  // Bob offline: typing goes nowhere and is not waiting for him when he is back.
  bob->disconnect();
  ASSERT_TRUE(alice->set_typing(ab, true).ok());
  ASSERT_TRUE(alice->set_typing(ab, false).ok());
  // Then a text, which the relay keeps for bob: alice's client sends it after the typing, so
  // typing kept for bob would reach him before it.
  auto after = alice->send_text(ab, "after the typing");
  ASSERT_TRUE(after.ok()) << after.error().message;
  ASSERT_TRUE(eventually([&] {
    auto m = alice.find(ab, *after);
    return m && m->status == MessageStatus::kSent;
  }));
  ASSERT_TRUE(bob->connect().ok());
  ASSERT_TRUE(bob->wait_online(20s));
  ASSERT_TRUE(eventually([&] { return bob.events().texts().size() == 2; }));
  EXPECT_EQ(typing_events(bob, alice.info().account, true), 1u);
  EXPECT_EQ(bob.events().count(), 2u);  // only the text from the start and the one after typing

  // A group: members online see it.
  ASSERT_TRUE(alice->add_contact(carol.handle()).ok());
  auto group = alice->create_group("Trio", {bob.info().account, carol.info().account}).value();
  ASSERT_TRUE(alice->send_text(group, "group hello").ok());  // hands out the sender key
  ASSERT_TRUE(eventually([&] { return carol.events().texts().size() == 1; }));
  ASSERT_TRUE(alice->set_typing(group, true).ok());
  ASSERT_TRUE(eventually([&] { return typing_events(carol, alice.info().account, true) == 1; }));
  ASSERT_TRUE(eventually([&] { return typing_events(bob, alice.info().account, true) == 2; }));
}

TEST(Live, PresenceReachesWatchersOnlyAndCanBeHidden) {
  RelayProcess relay;
  TestClient alice(relay, "alice"), bob(relay, "bob"), carol(relay, "carol");
  alice.register_account();
  bob.register_account();
  carol.register_account();
  ConversationId ba = bob.conversation_with(alice);
  carol.conversation_with(alice);  // carol has the chat but does not look at it

  ASSERT_TRUE(bob->watch_presence({ba}).ok());
  ASSERT_TRUE(eventually([&] {
    auto p = last_presence(bob, alice.info().account);
    return p && p->online;
  }));
  alice->disconnect();
  ASSERT_TRUE(eventually(
      [&] {
        auto p = last_presence(bob, alice.info().account);
        return p && !p->online && p->last_seen_ms > 0;
      },
      30s));
  ASSERT_TRUE(alice->connect().ok());
  ASSERT_TRUE(eventually([&] {
    auto p = last_presence(bob, alice.info().account);
    return p && p->online;
  }));
  EXPECT_FALSE(last_presence(carol, alice.info().account).has_value());

  // Hidden: offline with no last-seen time, to everyone.
  ASSERT_TRUE(alice->set_presence_hidden(true).ok());
  ASSERT_TRUE(eventually([&] {
    auto p = last_presence(bob, alice.info().account);
    return p && !p->online && p->last_seen_ms == 0;
  }));
  // And it stays hidden across a reconnect: once alice is online again, a text from her
  // reaches bob after anything the relay told him about her coming back.
  alice.reopen();
  ASSERT_TRUE(alice->wait_online(20s));
  ConversationId ab = alice.conversation_with(bob);
  ASSERT_TRUE(alice->send_text(ab, "back, and hidden").ok());
  ASSERT_TRUE(eventually([&] { return bob.events().texts().size() == 1; }));
  auto p = last_presence(bob, alice.info().account);
  ASSERT_TRUE(p);
  EXPECT_FALSE(p->online);
}

}  // namespace
}  // namespace sotto::test
