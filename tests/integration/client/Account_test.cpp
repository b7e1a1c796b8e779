// An account's life as its user ends it: a device unlinked by another or by itself, the last
// device that cannot be, the account deleted (every device logged out, the handle free again),
// and the profile erased. Through a real relay process; the profile stays a real file.
#include <gtest/gtest.h>

#include <fstream>

#include "ClientHarness.h"

namespace sotto::test {
namespace {

bool logged_out(TestClient& c) {
  return eventually([&] { return c->connection_state() == ConnectionState::kLoggedOut; });
}

TEST(Account, DevicesAreUnlinkedByAnotherOrByThemselvesButNeverTheLastOne) {
  RelayProcess relay;
  TestClient alice(relay, "alice");
  alice.register_account();
  TestClient laptop(relay, "alice_laptop");
  TestClient tablet(relay, "alice_tablet");
  link_device(alice, laptop);
  link_device(alice, tablet);
  ASSERT_EQ(alice->devices()->size(), 3u);

  // The phone unlinks the tablet.
  uint32_t tablet_id = tablet->account()->device_id;
  auto removed = alice->remove_device(tablet_id);
  ASSERT_TRUE(removed.ok()) << removed.error().message;
  EXPECT_TRUE(logged_out(tablet));
  auto again = tablet->connect();
  ASSERT_FALSE(again.ok());
  EXPECT_EQ(again.code(), ErrorCode::kInvalidState);
  EXPECT_NE(again.error().message.find("no longer part of its account"), std::string::npos)
      << again.error().message;

  // The laptop unlinks itself, and stays logged out when opened again.
  auto unlinked = laptop->unlink_this_device();
  ASSERT_TRUE(unlinked.ok()) << unlinked.error().message;
  EXPECT_EQ(laptop->connection_state(), ConnectionState::kLoggedOut);
  laptop.close();
  laptop.reopen(/*connect=*/false);
  EXPECT_EQ(laptop->connect().code(), ErrorCode::kInvalidState);

  auto left = alice->devices();
  ASSERT_TRUE(left.ok()) << left.error().message;
  ASSERT_EQ(left->size(), 1u);
  EXPECT_TRUE(left->front().this_device);

  // The last device cannot go; the answer names what can.
  auto last = alice->unlink_this_device();
  ASSERT_FALSE(last.ok());
  EXPECT_EQ(last.code(), ErrorCode::kForbidden);
  EXPECT_NE(last.error().message.find("delete_account()"), std::string::npos)
      << last.error().message;
  EXPECT_EQ(alice->remove_device(alice.info().device_id).code(), ErrorCode::kForbidden);
  EXPECT_TRUE(alice->wait_online(20s));
}

TEST(Account, DeletingTheAccountLogsOutEveryDeviceFreesTheHandleAndKeepsTheHistory) {
  RelayProcess relay;
  TestClient alice(relay, "alice");
  TestClient bob(relay, "bob");
  alice.register_account();
  bob.register_account();
  TestClient laptop(relay, "alice_laptop");
  link_device(alice, laptop);

  auto to_bob = alice.conversation_with(bob);
  auto sent = alice->send_text(to_bob, "before I go");
  ASSERT_TRUE(sent.ok()) << sent.error().message;
  ASSERT_TRUE(eventually([&] { return bob.events().count() == 1; }));

  auto deleted = alice->delete_account();
  ASSERT_TRUE(deleted.ok()) << deleted.error().message;
  EXPECT_EQ(alice->connection_state(), ConnectionState::kLoggedOut);
  EXPECT_TRUE(logged_out(laptop));

  // Nobody finds the account any more, and its handle is free for someone else.
  auto gone = bob->add_contact(alice.handle());
  EXPECT_EQ(gone.code(), ErrorCode::kNotFound) << (gone.ok() ? "" : gone.error().message);
  TestClient carol(relay, "carol");
  auto taken = carol->register_account(alice.handle());
  ASSERT_TRUE(taken.ok()) << taken.error().message;
  EXPECT_NE(taken->account, alice.info().account);

  // What was on the device stays readable there; nothing can be sent.
  std::vector<std::string> texts;
  for (const auto& m : alice.history(to_bob))
    if (m.kind == MessageKind::kText) texts.push_back(m.text);
  EXPECT_EQ(texts, std::vector<std::string>{"before I go"});
  EXPECT_EQ(alice->send_text(to_bob, "still here?").code(), ErrorCode::kInvalidState);
  EXPECT_EQ(alice->delete_account().code(), ErrorCode::kInvalidState);
}

TEST(Account, AClosedProfileIsErasedAndAnOpenOneIsNot) {
  RelayProcess relay;
  TestClient alice(relay, "alice");
  alice.register_account();
  auto dir = alice.dir();
  std::filesystem::create_directories(dir / "attachments" / "blobs");

  EXPECT_EQ(Profile::erase(dir).code(), ErrorCode::kBusy);
  ASSERT_TRUE(std::filesystem::exists(dir / "profile.db"));

  alice.close();
  auto erased = Profile::erase(dir);
  ASSERT_TRUE(erased.ok()) << erased.error().message;
  EXPECT_FALSE(std::filesystem::exists(dir));

  // A folder with no profile in it is left alone.
  TempDir other;
  std::ofstream(other.path() / "notes.txt") << "mine";
  auto refused = Profile::erase(other.path());
  EXPECT_EQ(refused.code(), ErrorCode::kNotFound);
  EXPECT_TRUE(std::filesystem::exists(other.path() / "notes.txt"));
}

}  // namespace
}  // namespace sotto::test
