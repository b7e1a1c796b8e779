// One account on several devices: linking, fan-out to every device, transcripts of what one
// device sent, and a recipient's new device picked up without the app noticing.
#include <gtest/gtest.h>

#include "ClientHarness.h"

namespace sotto::test {
namespace {

TEST(MultiDevice, LinkedDeviceReceivesAndSeesWhatTheOtherSent) {
  RelayProcess relay;
  TestClient alice(relay, "alice"), laptop(relay, "alice-laptop"), bob(relay, "bob");
  alice.register_account();
  bob.register_account();
  ConversationId ab = alice.conversation_with(bob);  // alice knows bob before the link
  link_device(alice, laptop, /*typed=*/true);

  auto devices = alice->devices().value();
  ASSERT_EQ(devices.size(), 2u);
  EXPECT_TRUE(devices[0].this_device);
  // The laptop asked for the contacts; alice's phone answered.
  ASSERT_TRUE(eventually([&] {
    auto c = laptop->contacts();
    return c.ok() && c->size() == 1 && (*c)[0].handle == bob.handle();
  }));

  ConversationId ba = bob.conversation_with(alice);
  ASSERT_TRUE(bob->send_text(ba, "to both of your devices").ok());
  ASSERT_TRUE(eventually([&] { return alice.events().texts().size() == 1; }));
  ASSERT_TRUE(eventually([&] { return laptop.events().texts().size() == 1; }));
  EXPECT_EQ(laptop.events().texts()[0], "to both of your devices");

  auto sent = alice->send_text(ab, "sent from the phone").value();
  ASSERT_TRUE(eventually([&] { return bob.events().texts().size() == 1; }));
  // The laptop shows it in the same conversation, as sent by this account.
  ASSERT_TRUE(eventually([&] {
    auto convs = laptop->conversations();
    if (!convs.ok() || convs->empty()) return false;
    auto m = laptop.find((*convs)[0].id, sent);
    return m && m->outgoing && m->status >= MessageStatus::kSent;
  }));
  ConversationId laptop_conv = laptop->conversations().value()[0].id;
  auto h = laptop.history(laptop_conv);
  ASSERT_EQ(h.size(), 2u);
  EXPECT_EQ(h[0].text, "to both of your devices");
  EXPECT_EQ(h[1].text, "sent from the phone");
  EXPECT_EQ(h[1].sender, alice.info().account);

  // And the laptop can write too; the phone gets the transcript.
  auto from_laptop = laptop->send_text(laptop_conv, "and from the laptop").value();
  ASSERT_TRUE(eventually([&] { return bob.events().texts().size() == 2; }));
  ASSERT_TRUE(eventually([&] { return alice.find(ab, from_laptop).has_value(); }));
}

// A message the other device of the account could not decrypt (its session with the sender
// broke) is sent to it again once the session is reset: as the transcript it missed, since a
// device ignores data messages from its own account.
TEST(MultiDevice, AMessageTheOtherDeviceCouldNotDecryptReachesItAgainAsATranscript) {
  RelayProcess relay;
  TestClient alice(relay, "alice"), laptop(relay, "alice-laptop"), bob(relay, "bob");
  alice.register_account();
  bob.register_account();
  ConversationId ab = alice.conversation_with(bob);
  link_device(alice, laptop, /*typed=*/false);
  auto laptop_sees = [&](const std::string& id) {
    auto convs = laptop->conversations();
    if (!convs.ok()) return false;
    for (const auto& c : *convs)
      if (c.peer == bob.info().account && laptop.find(c.id, id)) return true;
    return false;
  };
  auto first = alice->send_text(ab, "first").value();
  ASSERT_TRUE(eventually([&] { return laptop_sees(first); }));

  // The laptop's record of its session with the phone is destroyed on disk.
  laptop.close();
  poke(laptop, "UPDATE sessions SET record = randomblob(length(record)) WHERE name = '" +
                   alice.info().account + "'");
  laptop.reopen();
  auto after = alice->send_text(ab, "after the damage").value();
  ASSERT_TRUE(eventually([&] { return laptop_sees(after); }, 30s))
      << "the laptop never got the transcript it could not decrypt at first";
}

TEST(MultiDevice, ATamperedLinkKeyIsRefusedBeforeAnythingIsSent) {
  RelayProcess relay;
  TestClient alice(relay, "alice"), fresh(relay, "fresh");
  alice.register_account();
  auto invite = fresh->start_link().value();
  std::string text = invite.text;
  text.back() = text.back() == 'A' ? 'B' : 'A';  // a fingerprint that does not match
  auto r = alice->approve_link(text);
  EXPECT_EQ(r.code(), ErrorCode::kInvalidSignature);
  EXPECT_EQ(fresh->finish_link(500ms).code(), ErrorCode::kTimeout);
  EXPECT_EQ(alice->devices().value().size(), 1u);
}

TEST(MultiDevice, RecipientsNewDeviceIsPickedUpWithoutTheAppNoticing) {
  RelayProcess relay;
  TestClient alice(relay, "alice"), bob(relay, "bob"), tablet(relay, "bob-tablet");
  alice.register_account();
  bob.register_account();
  ConversationId ab = alice.conversation_with(bob);
  ASSERT_TRUE(alice->send_text(ab, "before").ok());
  ASSERT_TRUE(eventually([&] { return bob.events().texts().size() == 1; }));

  link_device(bob, tablet, /*typed=*/false);
  // Alice's sessions cover only bob's first device: the relay answers STALE_DEVICES and the
  // SDK fetches the tablet's bundle and sends again, by itself.
  auto id = alice->send_text(ab, "after the tablet joined").value();
  ASSERT_TRUE(eventually([&] { return tablet.events().texts().size() == 1; }));
  EXPECT_EQ(tablet.events().texts()[0], "after the tablet joined");
  ASSERT_TRUE(eventually([&] { return bob.events().texts().size() == 2; }));
  auto m = alice.find(ab, id);
  ASSERT_TRUE(m);
  EXPECT_NE(m->status, MessageStatus::kFailed);
  ASSERT_TRUE(alice->send_text(ab, "and the next").ok());
  ASSERT_TRUE(eventually([&] { return tablet.events().texts().size() == 2; }));
}

}  // namespace
}  // namespace sotto::test
