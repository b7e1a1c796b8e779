// The Client's history tables on a real profile database.
#include "History.h"

#include <gtest/gtest.h>

#include <atomic>
#include <set>
#include <thread>

#include "ProfileAccess.h"
#include "Schema.h"
#include "TestSupport.h"

namespace sotto {
namespace {

class HistoryTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto p = Profile::open_with_key(dir.path(), test::test_key("history"));
    ASSERT_TRUE(p.ok()) << p.error().message;
    profile = std::move(*p);
    history = std::make_unique<History>(ProfileAccess::parts(*profile).db);
  }
  Bytes id(int n) {
    Bytes b(16, 0);
    b[15] = static_cast<uint8_t>(n);
    b[14] = static_cast<uint8_t>(n >> 8);
    return b;
  }
  int64_t add(ConversationId conv, int n, uint64_t sort, bool outgoing = false,
              const std::string& sender = std::string(32, 'b')) {
    NewMessage m;
    m.conversation = conv;
    m.message_id = id(n);
    m.sender = sender;
    m.sender_device = 1;
    m.outgoing = outgoing;
    m.body = "message " + std::to_string(n);
    m.sent_ms = sort;
    m.sort_ms = sort;
    m.status = outgoing ? MessageStatus::kPending : MessageStatus::kUnread;
    auto row = history->insert_message(m);
    EXPECT_TRUE(row.ok() && row->has_value());
    return row.ok() && *row ? **row : 0;
  }
  test::TempDir dir;
  std::unique_ptr<Profile> profile;
  std::unique_ptr<History> history;
};

TEST_F(HistoryTest, PagesReturnEveryMessageOnceNewestFirst) {
  auto conv = history->direct_conversation(std::string(32, 'b'), 1).value();
  for (int i = 0; i < 57; ++i) add(conv, i, 1000 + static_cast<uint64_t>(i / 3));  // ties in time
  std::vector<std::string> seen;
  std::string cursor;
  for (int pages = 0; pages < 10; ++pages) {
    auto page = history->page(conv, cursor, 10).value();
    for (const auto& m : page.messages) seen.push_back(m.text);
    if (page.next_cursor.empty()) break;
    cursor = page.next_cursor;
    // Messages added while paging (newer) do not disturb the older pages.
    add(conv, 100 + pages, 5000 + static_cast<uint64_t>(pages));
  }
  ASSERT_EQ(seen.size(), 57u);
  EXPECT_EQ(seen.front(), "message 56");
  EXPECT_EQ(seen.back(), "message 0");
  EXPECT_EQ(std::set<std::string>(seen.begin(), seen.end()).size(), 57u);
  EXPECT_EQ(history->page(conv, "garbage", 10).code(), ErrorCode::kInvalidArgument);
  EXPECT_EQ(history->page(conv, "", 0).code(), ErrorCode::kInvalidArgument);
}

TEST_F(HistoryTest, DuplicatesAreIgnoredAndStatusNeverGoesBack) {
  auto conv = history->direct_conversation(std::string(32, 'b'), 1).value();
  int64_t row = add(conv, 1, 10, true, std::string(32, 'a'));
  NewMessage again;
  again.conversation = conv;
  again.message_id = id(1);
  again.sender = std::string(32, 'a');
  again.body = "a replay";
  auto dup = history->insert_message(again);
  ASSERT_TRUE(dup.ok());
  EXPECT_FALSE(dup->has_value());

  EXPECT_TRUE(history->raise_status(row, MessageStatus::kSent).value());
  EXPECT_TRUE(history->raise_status(row, MessageStatus::kRead).value());
  EXPECT_FALSE(history->raise_status(row, MessageStatus::kDelivered).value());
  EXPECT_EQ(history->message(row).value()->message.status, MessageStatus::kRead);

  EXPECT_TRUE(history->record_receipt(row, "x", MessageStatus::kRead, 5).value());
  EXPECT_FALSE(history->record_receipt(row, "x", MessageStatus::kDelivered, 6).value());
  auto receipts = history->receipts(row).value();
  ASSERT_EQ(receipts.size(), 1u);
  EXPECT_EQ(receipts[0].status, MessageStatus::kRead);
}

TEST_F(HistoryTest, MarkReadCountsUnreadDownToZero) {
  auto conv = history->direct_conversation(std::string(32, 'b'), 1).value();
  std::vector<int64_t> rows;
  for (int i = 0; i < 5; ++i) rows.push_back(add(conv, i, 100 + static_cast<uint64_t>(i)));
  EXPECT_EQ(history->conversation(conv).value()->unread, 5u);
  auto read = history->mark_read(conv, rows[2]).value();
  EXPECT_EQ(read.size(), 3u);
  EXPECT_EQ(history->conversation(conv).value()->unread, 2u);
  EXPECT_TRUE(history->mark_read(conv, rows[2]).value().empty());
  EXPECT_TRUE(history->mark_one_read(rows[4]).value());
  EXPECT_FALSE(history->mark_one_read(rows[4]).value());
  EXPECT_EQ(history->conversation(conv).value()->unread, 1u);
  EXPECT_EQ(history->conversation(conv).value()->last_message->text, "message 4");
}

TEST_F(HistoryTest, OutboxKeepsOrderHoldsAndRetries) {
  auto item = [&](int n, const std::string& target) {
    OutboxItem i;
    i.message_id = id(n);
    i.kind = OutboxKind::kData;
    i.target = target;
    i.content = Bytes{1, 2, 3};
    return i;
  };
  ASSERT_TRUE(history->enqueue(item(1, "x"), 1).ok());
  ASSERT_TRUE(history->enqueue(item(2, "y"), 1).ok());
  ASSERT_TRUE(history->enqueue(item(3, "x"), 1).ok());
  EXPECT_EQ(history->next_outbox(10).value()->message_id, id(1));
  ASSERT_TRUE(history->hold_outbox("x", true).ok());
  EXPECT_EQ(history->next_outbox(10).value()->message_id, id(2));
  auto second = *history->next_outbox(10).value();
  ASSERT_TRUE(history->outbox_retry(second.id, 500, "later").ok());
  EXPECT_FALSE(history->next_outbox(10).value().has_value());
  EXPECT_EQ(history->next_outbox_due().value().value(), 500u);
  EXPECT_EQ(history->next_outbox(500).value()->attempts, 1);
  ASSERT_TRUE(history->hold_outbox("x", false).ok());
  EXPECT_EQ(history->next_outbox(10).value()->message_id, id(1));
  ASSERT_TRUE(history->outbox_done(history->next_outbox(10).value()->id).ok());
  EXPECT_EQ(history->next_outbox(10).value()->message_id, id(3));
  EXPECT_EQ(history->outbox_size().value(), 2);
  // The same envelope id twice is refused: a send is queued once.
  EXPECT_FALSE(history->enqueue(item(3, "x"), 1).ok());
}

// A postponed or held item holds back the later items of its lane (one recipient account, one
// group, own-device syncs), so they cannot overtake it, and nothing of another lane.
TEST_F(HistoryTest, OutboxItemsNeverOvertakeAnEarlierOneOfTheirLane) {
  auto item = [&](int n, std::optional<std::string> target, std::optional<ConversationId> group) {
    OutboxItem i;
    i.message_id = id(n);
    i.kind = group ? OutboxKind::kGroupData : OutboxKind::kData;
    i.target = std::move(target);
    i.group_conv = group;
    i.content = Bytes{1, 2, 3};
    return i;
  };
  ASSERT_TRUE(history->enqueue(item(1, "x", {}), 1).ok());
  ASSERT_TRUE(history->enqueue(item(2, "x", {}), 1).ok());
  ASSERT_TRUE(history->enqueue(item(3, "y", {}), 1).ok());
  ASSERT_TRUE(history->enqueue(item(4, {}, 5), 1).ok());
  ASSERT_TRUE(history->enqueue(item(5, {}, 5), 1).ok());
  ASSERT_TRUE(history->enqueue(item(6, {}, {}), 1).ok());
  auto next = [&](uint64_t now) -> std::optional<Bytes> {
    auto r = history->next_outbox(now);
    EXPECT_TRUE(r.ok());
    if (!r.ok() || !*r) return std::nullopt;
    return (*r)->message_id;
  };
  auto done = [&](uint64_t now) {
    ASSERT_TRUE(history->outbox_done((*history->next_outbox(now))->id).ok());
  };
  auto retry = [&](uint64_t now, uint64_t until) {
    ASSERT_TRUE(history->outbox_retry((*history->next_outbox(now))->id, until, "later").ok());
  };
  retry(10, 500);              // 1, to x
  EXPECT_EQ(next(10), id(3));  // not 2: it is behind 1
  done(10);
  EXPECT_EQ(next(10), id(4));
  retry(10, 700);  // 4, in group 5
  EXPECT_EQ(next(10), id(6));
  done(10);
  EXPECT_EQ(next(10), std::nullopt);
  // The next due time is that of a lane's first item, not of the items waiting behind it.
  EXPECT_EQ(history->next_outbox_due().value().value(), 500u);
  EXPECT_EQ(next(500), id(1));
  done(500);
  EXPECT_EQ(next(500), id(2));
  EXPECT_EQ(history->next_outbox_due().value().value(), 0u);
  // A held lane: a later item to the same account waits behind the held ones.
  ASSERT_TRUE(history->hold_outbox("x", true).ok());
  ASSERT_TRUE(history->enqueue(item(7, "x", {}), 1).ok());
  EXPECT_EQ(next(10), std::nullopt);
  EXPECT_EQ(next(700), id(4));
  ASSERT_TRUE(history->hold_outbox("x", false).ok());
  EXPECT_EQ(next(10), id(2));
}

// A message naming no conversation is refused when its transaction commits (the key is
// deferred, so that batched writes need no statement journal), and nothing of it is kept.
TEST_F(HistoryTest, AMessageWithoutItsConversationFailsTheWholeCommit) {
  auto& db = ProfileAccess::parts(*profile).db;
  auto conv = history->direct_conversation(std::string(32, 'b'), 1);
  ASSERT_TRUE(conv.ok());
  ASSERT_TRUE(db.begin().ok());
  add(*conv, 1, 10);
  NewMessage orphan;
  orphan.conversation = *conv + 1000;
  orphan.message_id = id(2);
  orphan.sender = std::string(32, 'b');
  orphan.sender_device = 1;
  orphan.body = "orphan";
  orphan.sort_ms = orphan.sent_ms = 20;
  orphan.status = MessageStatus::kUnread;
  EXPECT_TRUE(history->insert_message(orphan).ok());  // checked at COMMIT
  Status committed = db.commit();
  ASSERT_FALSE(committed.ok());
  EXPECT_NE(committed.error().message.find("FOREIGN KEY"), std::string::npos)
      << committed.error().message;
  auto q = db.query("SELECT count(*) FROM messages");
  ASSERT_TRUE(q.ok());
  ASSERT_TRUE(*q->step());
  EXPECT_EQ(q->column_int(0), 0);
  // The connection is usable and the next transaction commits.
  EXPECT_NE(add(*conv, 3, 30), 0);
}

// Profiles written before schema 5 declared the key immediate: the upgrade edits it in place.
TEST_F(HistoryTest, UpgradeDefersTheMessagesConversationKeyOnce) {
  auto& db = ProfileAccess::parts(*profile).db;
  auto conv = history->direct_conversation(std::string(32, 'b'), 1);
  ASSERT_TRUE(conv.ok());
  int64_t kept = add(*conv, 1, 10);
  auto declaration = [&] {
    auto q = db.query("SELECT sql FROM sqlite_master WHERE name = 'messages'");
    EXPECT_TRUE(q.ok() && *q->step());
    return std::string(q->column_text(0));
  };
  const std::string deferred = "REFERENCES conversations (id) DEFERRABLE INITIALLY DEFERRED,";
  ASSERT_NE(declaration().find(deferred), std::string::npos);
  // Back to what schema 4 declared.
  ASSERT_TRUE(db.exec("PRAGMA writable_schema = ON").ok());
  ASSERT_TRUE(db.exec("UPDATE sqlite_master SET sql = replace(sql, ' DEFERRABLE INITIALLY "
                      "DEFERRED,', ',') WHERE name = 'messages'")
                  .ok());
  ASSERT_TRUE(db.exec("PRAGMA writable_schema = OFF").ok());
  ASSERT_TRUE(db.set_user_version(4).ok());
  ASSERT_EQ(declaration().find(deferred), std::string::npos);

  ASSERT_TRUE(db::migrate(db).ok());
  std::string upgraded = declaration();
  EXPECT_NE(upgraded.find(deferred), std::string::npos);
  EXPECT_EQ(upgraded.find(deferred), upgraded.rfind(deferred));
  EXPECT_EQ(db.user_version(), db::kSchemaVersion);
  auto check = db.query("PRAGMA integrity_check");
  ASSERT_TRUE(check.ok() && *check->step());
  EXPECT_EQ(check->column_text(0), "ok");
  auto row = history->message(kept);
  ASSERT_TRUE(row.ok() && row->has_value());
  EXPECT_EQ((*row)->message.text, "message 1");
  // This connection goes by the new declaration at once: a missing conversation is only
  // noticed at COMMIT.
  ASSERT_TRUE(db.exec("BEGIN").ok());
  EXPECT_TRUE(db.exec("INSERT INTO messages (conversation_id, message_id, sender, "
                      "sender_device, outgoing, kind, sent_ms, sort_ms, status) VALUES (99999, "
                      "x'00', 'x', 1, 0, 2, 0, 0, 0)")
                  .ok());
  EXPECT_FALSE(db.exec("COMMIT").ok());
  ASSERT_TRUE(db.exec("ROLLBACK").ok());
}

TEST_F(HistoryTest, GroupLookupsReadOneMemberOrOneListOfSessions) {
  auto conv = history->group_conversation(Bytes(32, 9), 1).value();
  std::string me(32, 'e'), a(32, 'a'), b(32, 'b'), c(32, 'c'), stranger(32, 'd');
  ASSERT_TRUE(history
                  ->set_group_members(
                      conv, {{a, "", false}, {b, "", false}, {c, "", false}, {me, "", true}})
                  .ok());
  auto& db = ProfileAccess::parts(*profile).db;
  // Sessions: two devices of b, one of c, one of a non-member, one of this account.
  for (const auto& [name, device] :
       std::vector<std::pair<std::string, int>>{{b, 2}, {b, 1}, {c, 3}, {stranger, 1}, {me, 2}}) {
    auto q = db.query("INSERT INTO sessions (name, device, record) VALUES (?, ?, x'00')").value();
    q.bind_text(1, name);
    q.bind(2, int64_t{device});
    ASSERT_TRUE(q.run().ok());
  }
  auto devices = history->group_session_devices(conv, me).value();
  using List = std::vector<std::pair<std::string, std::vector<uint32_t>>>;
  EXPECT_EQ(devices, (List{{a, {}}, {b, {1, 2}}, {c, {3}}}));
  EXPECT_TRUE(history->is_group_member(conv, b).value());
  EXPECT_TRUE(history->is_group_member(conv, me).value());
  EXPECT_FALSE(history->is_group_member(conv, stranger).value());
  EXPECT_EQ(history->group_member_count(conv, me).value(), 3u);
  EXPECT_EQ(history->group_member_count(conv, stranger).value(), 4u);
  EXPECT_EQ(history->group_member_count(conv + 1, me).value(), 0u);
}

TEST_F(HistoryTest, HeldGroupMessagesComeBackInOrderOnceAndWithinBounds) {
  const Bytes group_a(32, 0xaa), group_b(32, 0xbb);
  auto held = [](int n) {
    return HeldGroupMessage{std::string(32, 'c'), 2, 1000 + static_cast<uint64_t>(n),
                            Bytes{static_cast<uint8_t>(n)}};
  };
  const uint64_t t = 10 * History::kHeldGroupMessageTtlMs;
  for (int n = 0; n < 3; ++n) {
    EXPECT_TRUE(history->hold_group_message(group_a, held(n), t).value());
    EXPECT_TRUE(history->hold_group_message(group_b, held(10 + n), t).value());
  }
  auto a = history->take_held_group_messages(group_a).value();
  ASSERT_EQ(a.size(), 3u);
  for (int n = 0; n < 3; ++n) {
    EXPECT_EQ(a[static_cast<size_t>(n)].message, held(n).message);
    EXPECT_EQ(a[static_cast<size_t>(n)].sort_ms, held(n).sort_ms);
    EXPECT_EQ(a[static_cast<size_t>(n)].sender, std::string(32, 'c'));
    EXPECT_EQ(a[static_cast<size_t>(n)].device, 2u);
  }
  EXPECT_TRUE(history->take_held_group_messages(group_a).value().empty());  // taken once

  // Full: the next one is refused, and nothing held before is lost.
  for (int64_t n = 3; n < History::kMaxHeldGroupMessages; ++n)
    ASSERT_TRUE(history->hold_group_message(group_a, held(0), t).value());
  EXPECT_FALSE(history->hold_group_message(group_a, held(1), t).value());
  EXPECT_EQ(history->take_held_group_messages(group_b).value().size(), 3u);
  // Past their age they go, and make room.
  EXPECT_TRUE(history->hold_group_message(group_b, held(2), t + History::kHeldGroupMessageTtlMs + 1)
                  .value());
  EXPECT_TRUE(history->take_held_group_messages(group_a).value().empty());
  EXPECT_EQ(history->take_held_group_messages(group_b).value().size(), 1u);
}

TEST(ProfileMutexTest, TellsItsHolderThatAnotherThreadWaits) {
  ProfileMutex mu;
  std::unique_lock held(mu);
  {
    std::lock_guard again(mu);  // recursive on the holding thread, and not a waiter
    EXPECT_FALSE(mu.others_waiting());
  }
  std::atomic<bool> got{false};
  std::thread other([&] {
    std::lock_guard lock(mu);
    got = true;
  });
  while (!mu.others_waiting()) std::this_thread::yield();
  EXPECT_FALSE(got);
  held.unlock();
  other.join();
  EXPECT_TRUE(got);
  EXPECT_FALSE(mu.others_waiting());
}

}  // namespace
}  // namespace sotto
