// Edits, deletes for everyone and disappearing messages reach every device of every member,
// and leave no trace of the old text in the profile database; the search index keeps up.
#include <gtest/gtest.h>

#include "ClientHarness.h"
#include "Database.h"

namespace sotto::test {
namespace {

std::optional<Message> by_id(TestClient& c, const std::string& id) {
  auto convs = c->conversations();
  if (!convs.ok()) return std::nullopt;
  for (const auto& conv : *convs)
    if (auto m = c.find(conv.id, id)) return m;
  return std::nullopt;
}

// Closes the client, checkpoints the database, and says whether `word` is anywhere in its
// decrypted pages (free pages and the WAL included).
bool trace_of(TestClient& c, const std::string& word) {
  c.close();
  {
    auto db = db::Database::open(c.dir() / "profile.db", c.key(), {false, db::Durability::kFull});
    EXPECT_TRUE(db.ok());
    if (db.ok()) {
      EXPECT_TRUE((*db)->exec("PRAGMA wal_checkpoint(TRUNCATE)").ok());
    }
  }
  bool found = anywhere(decrypted_pages(c.dir(), c.key()), word);
  c.reopen();
  return found;
}

TEST(Edits, EditDeleteAndTimersReachEveryDeviceAndLeaveNoTrace) {
  RelayProcess relay;
  TestClient alice(relay, "alice"), laptop(relay, "alice-laptop"), bob(relay, "bob");
  alice.register_account();
  bob.register_account();
  link_device(alice, laptop);
  ConversationId ab = alice.conversation_with(bob);

  auto id = alice->send_text(ab, "meet at the quarry zephyrquartz").value();
  ASSERT_TRUE(eventually([&] { return by_id(bob, id) && by_id(laptop, id); }));

  ASSERT_TRUE(alice->edit_message(ab, id, "meet at the harbour").ok());
  for (TestClient* c : {&alice, &laptop, &bob})
    ASSERT_TRUE(eventually([&] {
      auto m = by_id(*c, id);
      return m && m->text == "meet at the harbour" && m->edited_ms > 0;
    })) << "an edit did not arrive";
  SearchQuery q;
  q.text = "zephyrquartz";
  EXPECT_TRUE(bob->search(q)->hits.empty());
  q.text = "harbour";
  EXPECT_EQ(bob->search(q)->hits.size(), 1u);

  auto doomed = alice->send_text(ab, "burn this vermilionkestrel").value();
  ASSERT_TRUE(eventually([&] { return by_id(bob, doomed) && by_id(laptop, doomed); }));
  ASSERT_TRUE(alice->delete_for_everyone(ab, doomed).ok());
  for (TestClient* c : {&alice, &laptop, &bob})
    ASSERT_TRUE(eventually([&] {
      auto m = by_id(*c, doomed);
      return m && m->deleted && m->text.empty();
    })) << "a delete did not arrive";
  // Only the author may, and only own messages.
  ConversationId ba = bob->conversations().value().at(0).id;
  EXPECT_EQ(bob->delete_for_everyone(ba, id).code(), ErrorCode::kNotFound);
  EXPECT_EQ(bob->edit_message(ba, id, "forged").code(), ErrorCode::kNotFound);

  // Disappearing messages: the timer reaches everyone; a message read on bob's side is gone
  // two seconds later, everywhere.
  ASSERT_TRUE(alice->set_disappearing_timer(ab, 2).ok());
  ASSERT_TRUE(eventually([&] { return bob->conversation(ba)->expire_timer_s == 2; }));
  ASSERT_TRUE(eventually([&] {
    auto convs = laptop->conversations();
    return convs.ok() && !convs->empty() && (*convs)[0].expire_timer_s == 2;
  }));
  auto fleeting = alice->send_text(ab, "this will vanish ultramarinewalrus").value();
  ASSERT_TRUE(eventually([&] { return by_id(bob, fleeting).has_value(); }));
  EXPECT_EQ(by_id(bob, fleeting)->expire_timer_s, 2u);
  ASSERT_TRUE(bob->mark_read(ba, fleeting).ok());
  for (TestClient* c : {&alice, &laptop, &bob})
    ASSERT_TRUE(eventually([&] { return !by_id(*c, fleeting).has_value(); }, 20s))
        << "a disappearing message stayed";
  // The event follows the commit: history may show the message gone a moment before the
  // app's callback runs.
  ASSERT_TRUE(eventually([&] {
    auto removed = bob.events().removed();
    return std::count(removed.begin(), removed.end(), fleeting) == 1;
  })) << "on_message_removed did not arrive exactly once";
  // Two texts, the second sent once bob was shown the first: bob's client shows the second
  // only after it looked for expired messages once more since the removal, so a second event
  // for it would have come by then.
  for (const std::string marker : {"one more", "and another"}) {
    ASSERT_TRUE(alice->send_text(ab, marker).ok());
    ASSERT_TRUE(eventually([&] {
      auto texts = bob.events().texts();
      return std::count(texts.begin(), texts.end(), marker) == 1;
    }));
  }
  auto removed = bob.events().removed();
  EXPECT_EQ(std::count(removed.begin(), removed.end(), fleeting), 1);

  // Nothing of the old texts in any page of any profile (after the index purge has run).
  std::this_thread::sleep_for(3s);
  for (TestClient* c : {&alice, &laptop, &bob})
    for (const char* word : {"zephyrquartz", "vermilionkestrel", "ultramarinewalrus"})
      EXPECT_FALSE(trace_of(*c, word)) << word << " is still in a profile";
  // The text that stays is still there (the scan sees through the encryption).
  EXPECT_TRUE(trace_of(bob, "harbour"));
}

// A profile from before schema 6 (its index had FTS4's prefix index) is upgraded on open and
// its index rebuilt; the Client's worker carries the rebuild on by itself, between messages.
TEST(Edits, AnUpgradedProfileGetsItsSearchIndexRebuiltByTheClient) {
  RelayProcess relay;
  TestClient alice(relay, "alice"), bob(relay, "bob");
  alice.register_account();
  bob.register_account();
  ConversationId ab = alice.conversation_with(bob);
  auto id = alice->send_text(ab, "the rebuild finds ultramarinewalrus").value();
  ASSERT_TRUE(eventually([&] { return by_id(bob, id).has_value(); }));

  bob.close();
  {
    auto db =
        db::Database::open(bob.dir() / "profile.db", bob.key(), {false, db::Durability::kFull});
    ASSERT_TRUE(db.ok()) << db.error().message;
    for (const std::string part : {"search_recent", "search_archive"}) {
      ASSERT_TRUE((*db)->exec("DROP TABLE " + part).ok());
      ASSERT_TRUE((*db)
                      ->exec("CREATE VIRTUAL TABLE " + part + " USING fts4(content=\"" + part +
                             "_docs\", body, attachment_names, meta, tokenize=sotto, "
                             "order=desc, prefix=\"3\")")
                      .ok());
    }
    ASSERT_TRUE((*db)->set_user_version(5).ok());
  }
  bob.reopen();
  // Nobody searches: the worker starts on it by itself.
  EXPECT_TRUE(eventually([&] {
    auto status = bob->profile().search_index_status();
    return status.ok() && !status->rebuilding && status->indexed_messages > 0;
  }));
  SearchQuery q;
  q.text = "ultramarinewalrus";
  auto page = bob->search(q);
  ASSERT_TRUE(page.ok()) << page.error().message;
  EXPECT_TRUE(page->index_complete);
  EXPECT_EQ(page->hits.size(), 1u);
}

}  // namespace
}  // namespace sotto::test
