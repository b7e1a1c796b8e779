// 1:1 messaging between real clients through a real relay process.
#include <gtest/gtest.h>

#include <atomic>
#include <thread>

#include "ClientHarness.h"

namespace sotto::test {
namespace {

MessageStatus status_of(TestClient& c, ConversationId conv, const std::string& id) {
  auto m = c.find(conv, id);
  return m ? m->status : MessageStatus::kFailed;
}

TEST(Messaging, OneToOneBothWaysWithSentDeliveredAndRead) {
  RelayProcess relay;
  TestClient alice(relay, "alice"), bob(relay, "bob");
  alice.register_account();
  bob.register_account();

  ConversationId ab = alice.conversation_with(bob);
  // The safety number can be compared as soon as the contact is added, before any message,
  // and both sides get the same digits.
  auto early = alice->safety_number(bob.info().account);
  ASSERT_TRUE(early.ok()) << early.error().message;
  auto id = alice->send_text(ab, "hello bob");
  ASSERT_TRUE(id.ok()) << id.error().message;
  // In history at once, before any network I/O finished.
  auto pending = alice.find(ab, *id);
  ASSERT_TRUE(pending);
  EXPECT_TRUE(pending->outgoing);
  EXPECT_EQ(pending->text, "hello bob");

  ASSERT_TRUE(eventually([&] { return bob.events().texts().size() == 1; }));
  EXPECT_EQ(bob.events().texts()[0], "hello bob");
  ASSERT_TRUE(eventually([&] { return status_of(alice, ab, *id) == MessageStatus::kDelivered; }));

  auto convs = bob->conversations().value();
  ASSERT_EQ(convs.size(), 1u);
  ConversationId ba = convs[0].id;
  EXPECT_EQ(convs[0].peer, alice.info().account);
  EXPECT_EQ(convs[0].unread, 1u);
  ASSERT_TRUE(convs[0].last_message);
  EXPECT_EQ(convs[0].last_message->text, "hello bob");
  EXPECT_EQ(convs[0].last_message->status, MessageStatus::kUnread);

  ASSERT_TRUE(bob->mark_read(ba, *id).ok());
  EXPECT_EQ(bob->conversation(ba)->unread, 0u);
  ASSERT_TRUE(eventually([&] { return status_of(alice, ab, *id) == MessageStatus::kRead; }));
  auto receipts = alice->receipts(ab, *id).value();
  ASSERT_EQ(receipts.size(), 1u);
  EXPECT_EQ(receipts[0].account, bob.info().account);
  EXPECT_EQ(receipts[0].status, MessageStatus::kRead);

  auto theirs = bob->safety_number(alice.info().account);
  ASSERT_TRUE(theirs.ok()) << theirs.error().message;
  EXPECT_EQ(theirs->digits, early->digits);
  EXPECT_EQ(alice->safety_number(bob.info().account)->digits, early->digits);
  auto reply = bob->send_text(ba, "hi alice");
  ASSERT_TRUE(reply.ok());
  ASSERT_TRUE(eventually([&] { return alice.events().texts().size() == 1; }));
  EXPECT_EQ(alice.events().texts()[0], "hi alice");
  ASSERT_TRUE(eventually([&] { return status_of(bob, ba, *reply) == MessageStatus::kDelivered; }));
  // Status never goes back: a late delivered receipt after read changes nothing.
  EXPECT_EQ(status_of(alice, ab, *id), MessageStatus::kRead);

  auto history = alice.history(ab);
  ASSERT_EQ(history.size(), 2u);
  EXPECT_EQ(history[0].text, "hello bob");
  EXPECT_EQ(history[1].text, "hi alice");
}

TEST(Messaging, OfflineRecipientGetsEverythingInOrderAfterReconnect) {
  RelayProcess relay;
  TestClient alice(relay, "alice"), bob(relay, "bob");
  alice.register_account();
  bob.register_account();
  ConversationId ab = alice.conversation_with(bob);
  bob->disconnect();

  std::vector<std::string> ids;
  for (int i = 0; i < 40; ++i) ids.push_back(alice->send_text(ab, "m" + std::to_string(i)).value());
  // The relay committed every one while bob was away.
  ASSERT_TRUE(eventually([&] {
    for (const auto& id : ids)
      if (status_of(alice, ab, id) != MessageStatus::kSent) return false;
    return true;
  }));
  EXPECT_TRUE(bob.events().texts().empty());

  ASSERT_TRUE(bob->connect().ok());
  ASSERT_TRUE(eventually([&] { return bob.events().texts().size() == 40; }));
  auto texts = bob.events().texts();
  for (int i = 0; i < 40; ++i) EXPECT_EQ(texts[static_cast<size_t>(i)], "m" + std::to_string(i));
  ConversationId ba = bob->conversations().value().at(0).id;
  auto history = bob.history(ba);
  ASSERT_EQ(history.size(), 40u);
  for (int i = 0; i < 40; ++i)
    EXPECT_EQ(history[static_cast<size_t>(i)].text, "m" + std::to_string(i));
  EXPECT_TRUE(eventually([&] {
    for (const auto& id : ids)
      if (status_of(alice, ab, id) != MessageStatus::kDelivered) return false;
    return true;
  }));
}

// App calls while a queue drains cut the worker's batches short (the rest of a batch goes back
// to the front of its queue): the order and the count must not change.
TEST(Messaging, AppCallsDuringADrainKeepOrderAndShowNothingTwice) {
  RelayProcess relay;
  TestClient alice(relay, "alice"), bob(relay, "bob");
  alice.register_account();
  bob.register_account();
  ConversationId ab = alice.conversation_with(bob);
  bob->disconnect();
  constexpr int kCount = 300;
  std::vector<std::string> ids;
  for (int i = 0; i < kCount; ++i)
    ids.push_back(alice->send_text(ab, "m" + std::to_string(i)).value());
  ASSERT_TRUE(eventually([&] { return status_of(alice, ab, ids.back()) == MessageStatus::kSent; }));

  std::atomic<bool> done{false};
  std::atomic<int> calls{0};
  std::thread app([&] {
    while (!done) {
      auto convs = bob->conversations();
      if (convs.ok() && !convs->empty()) (void)bob->messages(convs->front().id, "", 20);
      ++calls;
    }
  });
  ASSERT_TRUE(bob->connect().ok());
  bool all = eventually([&] { return bob.events().texts().size() >= kCount; });
  done = true;
  app.join();
  ASSERT_TRUE(all);
  EXPECT_GT(calls.load(), 0);
  auto texts = bob.events().texts();
  ASSERT_EQ(texts.size(), static_cast<size_t>(kCount));
  for (int i = 0; i < kCount; ++i)
    EXPECT_EQ(texts[static_cast<size_t>(i)], "m" + std::to_string(i));
  auto history = bob.history(bob->conversations().value().at(0).id);
  ASSERT_EQ(history.size(), static_cast<size_t>(kCount));
  for (int i = 0; i < kCount; ++i)
    EXPECT_EQ(history[static_cast<size_t>(i)].text, "m" + std::to_string(i));
}

TEST(Messaging, BadInputIsAClearErrorAndNothingIsLost) {
  RelayProcess relay;
  TestClient alice(relay, "alice"), bob(relay, "bob"), mallory(relay, "mallory");
  // Nothing works before registration, and says why.
  EXPECT_EQ(alice->send_text(1, "x").code(), ErrorCode::kInvalidState);
  EXPECT_EQ(alice->connect().code(), ErrorCode::kInvalidState);
  EXPECT_EQ(alice->register_account("9starts_with_digit").code(), ErrorCode::kInvalidArgument);
  EXPECT_EQ(alice->register_account("ab").code(), ErrorCode::kInvalidArgument);
  alice.register_account();
  bob.register_account();
  EXPECT_EQ(alice->register_account("another").code(), ErrorCode::kAlreadyExists);
  auto taken = mallory->register_account(bob.handle());
  EXPECT_EQ(taken.code(), ErrorCode::kConflict);
  if (!taken.ok()) {
    EXPECT_NE(taken.error().message.find("taken"), std::string::npos);
  }

  ConversationId ab = alice.conversation_with(bob);
  auto ok = alice->send_text(ab, "kept");
  ASSERT_TRUE(ok.ok());
  EXPECT_EQ(alice->send_text(ab, "").code(), ErrorCode::kInvalidArgument);
  EXPECT_EQ(alice->send_text(ab, std::string(17 * 1024, 'x')).code(), ErrorCode::kTooLarge);
  EXPECT_EQ(alice->send_text(ab + 1000, "nowhere").code(), ErrorCode::kNotFound);
  EXPECT_EQ(alice->add_contact("@nobody_here").code(), ErrorCode::kNotFound);
  EXPECT_EQ(alice->add_contact("@x").code(), ErrorCode::kInvalidArgument);
  EXPECT_EQ(alice->direct_conversation("not hex").code(), ErrorCode::kInvalidArgument);
  EXPECT_EQ(alice->direct_conversation(alice.info().account).code(), ErrorCode::kInvalidArgument);
  EXPECT_EQ(alice->mark_read(ab, "zz").code(), ErrorCode::kInvalidArgument);
  EXPECT_EQ(alice->messages(ab, "bad cursor").code(), ErrorCode::kInvalidArgument);
  // Text that is not UTF-8 would be dropped by every receiver (protobuf refuses to parse it):
  // refused here instead, before anything is stored.
  auto latin1 = alice->send_text(ab, "caf\xE9");
  EXPECT_EQ(latin1.code(), ErrorCode::kInvalidArgument);
  if (!latin1.ok()) {
    EXPECT_NE(latin1.error().message.find("UTF-8"), std::string::npos);
  }
  EXPECT_EQ(alice->send_text(ab, "cut short \xE2\x82").code(), ErrorCode::kInvalidArgument);
  EXPECT_EQ(alice->edit_message(ab, *ok, "caf\xE9").code(), ErrorCode::kInvalidArgument);
  EXPECT_EQ(alice->create_group("caf\xE9", {bob.info().account}).code(),
            ErrorCode::kInvalidArgument);

  ASSERT_TRUE(eventually([&] { return bob.events().texts().size() == 1; }));
  EXPECT_EQ(bob.events().texts()[0], "kept");
  EXPECT_EQ(alice.history(ab).size(), 1u);
  EXPECT_EQ(alice.history(ab)[0].text, "kept");
}

TEST(Messaging, HistoryAndOutboxSurviveARestart) {
  RelayProcess relay;
  TestClient alice(relay, "alice"), bob(relay, "bob");
  alice.register_account();
  bob.register_account();
  ConversationId ab = alice.conversation_with(bob);
  bob->disconnect();
  alice->disconnect();
  // Queued while offline, then the app quits before anything was sent.
  auto id = alice->send_text(ab, "written offline").value();
  alice.reopen();
  EXPECT_EQ(alice->account()->handle, alice.handle());
  ASSERT_TRUE(eventually([&] { return status_of(alice, ab, id) == MessageStatus::kSent; }));
  bob.reopen();
  ASSERT_TRUE(eventually([&] { return bob.events().texts().size() == 1; }));
  EXPECT_EQ(bob.events().texts()[0], "written offline");
  ASSERT_TRUE(eventually([&] { return status_of(alice, ab, id) == MessageStatus::kDelivered; }));
}

// Someone bob never looked up writes first: bob's client asks the relay for the handle behind
// the account id, so the conversation, its sender and bob's contacts show @alice, not 32 hex
// digits; one the relay no longer knows (a deleted account) is not asked for again and again.
TEST(Messaging, ASenderNobodyAddedIsShownByTheHandleTheRelayKnows) {
  RelayProcess relay;
  TestClient alice(relay, "alice"), bob(relay, "bob"), carol(relay, "carol");
  alice.register_account();
  bob.register_account();
  carol.register_account();
  auto to_bob = alice.conversation_with(bob);
  ASSERT_TRUE(alice->send_text(to_bob, "hi, you don't know me yet").ok());
  ASSERT_TRUE(eventually([&] { return bob.events().count() == 1; }));
  ConversationId from_alice = bob.events().messages().front().conversation;
  ASSERT_TRUE(eventually([&] {
    auto c = bob->conversation(from_alice);
    return c.ok() && c->title == "@" + alice.handle();
  })) << bob->conversation(from_alice)->title;
  auto contacts = bob->contacts();
  ASSERT_TRUE(contacts.ok());
  ASSERT_EQ(contacts->size(), 1u);
  EXPECT_EQ(contacts->front().account, alice.info().account);
  EXPECT_EQ(contacts->front().handle, alice.handle());

  // carol writes, then deletes her account before bob's client asks: it stays unnamed, and
  // bob's client goes on working without asking for it at every message.
  bob.close();
  auto to_bob_c = carol.conversation_with(bob);
  ASSERT_TRUE(carol->send_text(to_bob_c, "bye").ok());
  ASSERT_TRUE(eventually([&] {
    auto m = carol.find(to_bob_c, carol.history(to_bob_c).back().id);
    return m && m->status == MessageStatus::kSent;
  }));
  ASSERT_TRUE(carol->delete_account().ok());
  size_t before = bob.events().count();
  bob.reopen();
  ASSERT_TRUE(eventually([&] { return bob.events().count() == before + 1; }));
  ASSERT_TRUE(alice->send_text(to_bob, "still there?").ok());
  ASSERT_TRUE(eventually([&] { return bob.events().count() == before + 2; }));
  auto after = bob->contacts();
  ASSERT_TRUE(after.ok());
  for (const auto& c : *after) {
    if (c.account == carol.info().account) {
      EXPECT_EQ(c.handle, "") << "a deleted account";
    }
  }
}

}  // namespace
}  // namespace sotto::test
