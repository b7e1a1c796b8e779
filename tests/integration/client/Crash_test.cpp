// kill -9 at the worst moments, and a full disk: nothing accepted is lost, nothing is shown
// twice, order kept.
#include <gtest/gtest.h>

#include <algorithm>
#include <set>

#include "ChildProcess.h"
#include "ClientHarness.h"
#ifndef _WIN32
#include "CrashVfs.h"  // a SQLite VFS over POSIX files
#endif

#ifndef SOTTO_CLIENT_DRIVER
#error "SOTTO_CLIENT_DRIVER must name the client_driver executable"
#endif

namespace sotto::test {
namespace {

bool has_text(TestClient& c, const std::string& text) {
  auto t = c.events().texts();
  return std::count(t.begin(), t.end(), text) == 1;
}

std::vector<std::string> driver_args(TestClient& c, std::vector<std::string> rest) {
  std::vector<std::string> args = {SOTTO_CLIENT_DRIVER, c.dir().string(), to_hex(c.key().span()),
                                   c.relay_url()};
  args.insert(args.end(), rest.begin(), rest.end());
  return args;
}

// A receiver killed after it stored a message but before its delivered receipt went out
// sends the receipt when it starts again, even if nothing new arrives.
TEST(Crash, AReceiptOwedAtACrashGoesOutAfterTheRestart) {
  RelayProcess relay;
  TestClient alice(relay, "alice"), bob(relay, "bob");
  alice.register_account();
  bob.register_account();
  ConversationId ab = alice.conversation_with(bob);
  bob.close();  // the driver process takes the profile over
  std::string id;
  {
    // Receipts held back for ten minutes: the kill always comes first.
    ChildProcess receiver(driver_args(bob, {"receive", "600000"}));
    auto sent = alice->send_text(ab, "delivered, eventually");
    ASSERT_TRUE(sent.ok()) << sent.error().message;
    id = *sent;
    auto line = receiver.read_line(30s);
    ASSERT_TRUE(line) << "bob never received the message";
    EXPECT_EQ(*line, "GOT delivered, eventually");
    receiver.kill9();
  }
  auto status = [&] { return alice.find(ab, id).value_or(Message{}).status; };
  EXPECT_EQ(status(), MessageStatus::kSent);
  bob.reopen();
  ASSERT_TRUE(eventually([&] { return status() == MessageStatus::kDelivered; }, 20s))
      << "alice's message stayed " << static_cast<int>(status());
  // A text after it: a second copy of the first would reach bob before this one.
  ASSERT_TRUE(alice->send_text(ab, "after the restart").ok());
  ASSERT_TRUE(eventually([&] { return !bob.events().texts().empty(); }));
  EXPECT_EQ(bob.events().texts(), std::vector<std::string>{"after the restart"})
      << "bob was shown the message a second time";
}

TEST(Crash, SenderKilledRightAfterSendIsDeliveredExactlyOnce) {
  RelayProcess relay;
  TestClient alice(relay, "alice"), bob(relay, "bob");
  alice.register_account();
  bob.register_account();
  ConversationId ab = alice.conversation_with(bob);
  alice.close();  // the driver process takes the profile over

  std::vector<std::string> ids;
  {
    ChildProcess sender(driver_args(alice, {"send", bob.info().account, "5", "crash-"}));
    while (ids.size() < 5) {
      auto line = sender.read_line(30s);
      ASSERT_TRUE(line) << "the sender never queued its messages";
      if (line->rfind("QUEUED ", 0) == 0) ids.push_back(line->substr(7));
    }
    sender.kill9();  // right after the last send() returned
  }
  alice.reopen();
  for (const auto& id : ids) {
    auto m = alice.find(ab, id);
    ASSERT_TRUE(m) << "a message send() had accepted is gone from history";
  }
  ASSERT_TRUE(eventually([&] { return bob.events().texts().size() >= 5; }, 30s));
  // A text after them, which alice's client sends only after the five: a second copy of any
  // of them would reach bob before it.
  ASSERT_TRUE(alice->send_text(ab, "after the crash").ok());
  ASSERT_TRUE(eventually([&] { return has_text(bob, "after the crash"); }, 30s));
  auto texts = bob.events().texts();
  ASSERT_EQ(texts.size(), 6u);
  for (int i = 0; i < 5; ++i)
    EXPECT_EQ(texts[static_cast<size_t>(i)], "crash-" + std::to_string(i));
  EXPECT_EQ(texts[5], "after the crash");
  ConversationId ba = bob->conversations().value().at(0).id;
  EXPECT_EQ(bob.history(ba).size(), 6u);
}

TEST(Crash, ReceiverKilledWhileDrainingAThousandMessagesLosesNothing) {
  constexpr int kCount = 1000;
  RelayProcess relay;
  TestClient alice(relay, "alice"), bob(relay, "bob");
  alice.register_account();
  bob.register_account();
  ConversationId ab = alice.conversation_with(bob);
  bob.close();

  std::vector<std::string> ids;
  for (int i = 0; i < kCount; ++i)
    ids.push_back(alice->send_text(ab, "q" + std::to_string(i)).value());
  ASSERT_TRUE(eventually(
      [&] {
        auto m = alice.find(ab, ids.back());
        return m && m->status == MessageStatus::kSent;
      },
      120s));

  size_t seen_before_kill = 0;
  {
    ChildProcess receiver(driver_args(bob, {"receive"}));
    while (seen_before_kill < 300) {
      auto line = receiver.read_line(60s);
      ASSERT_TRUE(line) << "the receiver stalled after " << seen_before_kill << " messages";
      if (line->rfind("GOT ", 0) == 0) ++seen_before_kill;
    }
    receiver.kill9();  // in the middle of the queue
  }
  bob.reopen();
  ConversationId ba = 0;
  ASSERT_TRUE(eventually(
      [&] {
        auto convs = bob->conversations();
        if (!convs.ok() || convs->empty()) return false;
        ba = (*convs)[0].id;
        auto h = bob.history(ba);
        return h.size() >= static_cast<size_t>(kCount);
      },
      120s));
  auto history = bob.history(ba);
  ASSERT_EQ(history.size(), static_cast<size_t>(kCount)) << "something was stored twice";
  for (int i = 0; i < kCount; ++i)
    ASSERT_EQ(history[static_cast<size_t>(i)].text, "q" + std::to_string(i)) << "order at " << i;
  // The restarted client only reported what the killed one had not stored.
  auto after = bob.events().texts();
  EXPECT_LE(after.size(), static_cast<size_t>(kCount) - 300);
  std::set<std::string> unique(after.begin(), after.end());
  EXPECT_EQ(unique.size(), after.size());
}

#ifndef _WIN32  // not on Windows: the crash-test VFS works on POSIX files
// The profile's file system fills up. A send is refused with kStorageFull before anything
// goes out; received messages wait unacknowledged (the relay keeps them) and are stored, in
// order and once each, as soon as there is room again, without a reconnect. The disk is the
// crash-test VFS in this process: once filled it gives the profile's database no more room, as
// a full file system would, and needs no privilege (receiving and sending text writes nothing
// but the database).
TEST(FullDisk, AClientWhoseDiskFillsUpLosesNothingAndCatchesUpByItself) {
  RelayProcess relay;
  TestClient alice(relay, "alice"), bob(relay, "bob");
  alice.register_account();
  bob.register_account();
  ConversationId ab = alice.conversation_with(bob);
  ASSERT_TRUE(alice->send_text(ab, "hello").ok());
  ASSERT_TRUE(eventually([&] { return bob.events().texts().size() == 1; }));
  ConversationId ba = bob->conversations().value().at(0).id;

  // alice's profile goes through the crash-test VFS from its next opening on.
  alice.close();
  CrashVfs& disk = CrashVfs::install();
  disk.watch(alice.dir());
  alice.reopen();
  ASSERT_TRUE(eventually([&] { return alice->connection_state() == ConnectionState::kOnline; }));

  fill(disk.budget());
  auto refused = alice->send_text(ab, "while the disk is full");
  ASSERT_FALSE(refused.ok());
  EXPECT_EQ(refused.error().code, ErrorCode::kStorageFull) << refused.error().message;

  constexpr int kCount = 5;
  for (int i = 0; i < kCount; ++i)
    ASSERT_TRUE(bob->send_text(ba, "full " + std::to_string(i)).ok());
  // The client tried to store the first and could not: it says so (syncing, without a
  // reconnect) until it can.
  ASSERT_TRUE(
      eventually([&] { return alice->connection_state() == ConnectionState::kSyncing; }, 30s))
      << "alice's client never tried to store what bob sent";
  EXPECT_TRUE(alice.events().texts().empty()) << "stored on a full disk?";

  make_room(disk.budget());
  ASSERT_TRUE(eventually([&] { return alice.events().texts().size() == kCount; }, 30s))
      << alice.events().texts().size() << " of " << kCount;
  // A text after them: a second copy of any would reach alice before it.
  ASSERT_TRUE(bob->send_text(ba, "after the room").ok());
  ASSERT_TRUE(eventually([&] { return alice.events().texts().size() > kCount; }, 30s));
  auto texts = alice.events().texts();
  ASSERT_EQ(texts.size(), static_cast<size_t>(kCount + 1)) << "shown twice";
  for (int i = 0; i < kCount; ++i)
    EXPECT_EQ(texts[static_cast<size_t>(i)], "full " + std::to_string(i));
  EXPECT_EQ(texts[kCount], "after the room");
  auto page = alice->messages(ab);
  ASSERT_TRUE(page.ok());
  EXPECT_EQ(page->messages.size(), static_cast<size_t>(2 + kCount))
      << "hello, the five and the one after";
  EXPECT_EQ(alice->connection_state(), ConnectionState::kOnline);

  ASSERT_TRUE(alice->send_text(ab, "room again").ok());
  ASSERT_TRUE(eventually([&] { return bob.events().texts().size() == 2; }));
  EXPECT_EQ(bob.events().texts()[1], "room again");
  alice.close();
  disk.forget(alice.dir());
}
#endif

}  // namespace
}  // namespace sotto::test
