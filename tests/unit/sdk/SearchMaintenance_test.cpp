// Keeping the index honest: no trace of old text after a purge (checked on the decrypted
// pages of the database and its WAL), damage detected and repaired, rebuilds that resume.
#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <memory>

#include "Schema.h"
#include "SearchFixture.h"
#include "SearchIndex.h"

namespace sotto {
namespace {

namespace fs = std::filesystem;
using R = std::vector<int64_t>;

using test::anywhere;
using test::decrypted_pages;

class SearchMaintenance : public test::SearchFixture {
 protected:
  void filler(int64_t conv, int count, uint64_t t0) {
    ASSERT_TRUE(profile
                    ->transaction([&]() -> Status {
                      for (int i = 0; i < count; ++i)
                        add(conv,
                            "ordinary chatter about lunch and the weather " + std::to_string(i),
                            t0 + static_cast<uint64_t>(i));
                      return {};
                    })
                    .ok());
  }
  SearchIndexStatus status() {
    auto s = profile->search_index_status();
    EXPECT_TRUE(s.ok()) << s.error().message;
    return s.ok() ? *s : SearchIndexStatus{};
  }
  // The archive's FTS segments, as (level, idx, first block, last block): a rewrite of the
  // archive ('optimize') replaces every one of them with a single new segment.
  std::vector<std::vector<int64_t>> archive_segments() {
    std::vector<std::vector<int64_t>> out;
    auto q = db().query(
        "SELECT level, idx, start_block, end_block FROM search_archive_segdir ORDER BY 1, 2");
    EXPECT_TRUE(q.ok());
    if (!q.ok()) return out;
    while (q->step().value())
      out.push_back({q->column_int(0), q->column_int(1), q->column_int(2), q->column_int(3)});
    return out;
  }
  // Ids of `count` filler messages, oldest first.
  std::vector<int64_t> oldest_filler(int count) {
    std::vector<int64_t> out;
    auto q = db().query(
        "SELECT id FROM messages WHERE body LIKE 'ordinary chatter%' ORDER BY id "
        "LIMIT ?");
    EXPECT_TRUE(q.ok());
    if (!q.ok()) return out;
    q->bind(1, int64_t{count});
    while (q->step().value()) out.push_back(q->column_int(0));
    return out;
  }
  void expect_healthy() {
    auto check = profile->check_search_index();
    ASSERT_TRUE(check.ok()) << check.error().message;
    EXPECT_FALSE(check->damaged) << check->problem;
  }
  // An archive of 6,001 messages (one about `word`) and a recent part of one. A purge then
  // defers the archive's first deletion (5,000 per deletion of the recent part's minimum size
  // is less than the archive's 6,000) and erases it with the second.
  int64_t large_archive(const std::string& word) {
    int64_t c = conversation(std::string(32, 'a'));
    int64_t old = add(c, "an old message about " + word, 1);
    filler(c, 6000, 2);
    EXPECT_TRUE(profile->rebuild_search_index().ok());  // files everything under the archive
    add(c, "a new message", 100000);
    return old;
  }
};

TEST_F(SearchMaintenance, PurgeLeavesNoTraceOfEditedDeletedOrExpiredText) {
  int64_t c = conversation(std::string(32, 'a'));
  filler(c, 300, 1);
  int64_t edited = add(c, "the code word is zanzibarquux", 1000);
  test::NewRow with_file;
  with_file.body = "burn after reading: xylophonequest";
  with_file.attachment_names = "plans-marmaladeorbit.pdf";
  with_file.sort_ms = 1001;
  int64_t deleted = add(c, with_file);
  test::NewRow vanishing;
  vanishing.body = "this one disappears: kumquatvortex";
  vanishing.sort_ms = 1002;
  vanishing.expires_ms = now + 1000;
  add(c, vanishing);
  filler(c, 300, 2000);

  edit(edited, "the code word is now pelicanfjord");
  delete_for_everyone(deleted);
  now += 1000;
  sweep_expired();
  EXPECT_EQ(rows("zanzibarquux"), R{});
  EXPECT_EQ(status().pending_purge, 3u);

  const std::vector<std::string> gone = {"zanzibarquux", "xylophonequest", "marmaladeorbit",
                                         "kumquatvortex"};
  // Before the purge the words are still in the files (this is what the purge is for, and it
  // shows that the scan sees through the encryption).
  auto before = decrypted_pages(dir.path(), key);
  EXPECT_TRUE(anywhere(before, "zanzibarquux"));
  EXPECT_TRUE(anywhere(before, "kumquatvortex"));

  ASSERT_TRUE(profile->purge_search_index().ok());
  EXPECT_EQ(status().pending_purge, 0u);
  auto after = decrypted_pages(dir.path(), key);
  for (const auto& word : gone) EXPECT_FALSE(anywhere(after, word)) << word << " survived";
  EXPECT_TRUE(anywhere(after, "pelicanfjord"));  // the current text is still there
  EXPECT_EQ(rows("pelicanfjord"), (R{edited}));
  EXPECT_EQ(rows("chatter").size(), 600u);

  // Closed and reopened, the files still hold none of it.
  close();
  auto closed = decrypted_pages(dir.path(), key);
  for (const auto& word : gone) EXPECT_FALSE(anywhere(closed, word)) << word;
}

TEST_F(SearchMaintenance, PurgeReachesOldMessagesInTheArchive) {
  int64_t c = conversation(std::string(32, 'a'));
  int64_t old = add(c, "an old message about quetzalbrine", 1);
  filler(c, 200, 2);
  // A rebuild files every existing message under the archive.
  ASSERT_TRUE(profile->rebuild_search_index().ok());
  add(c, "a new message", 5000);
  delete_for_everyone(old);
  SearchIndexStatus s = status();
  EXPECT_EQ(s.pending_purge, 1u);
  EXPECT_EQ(s.pending_purge_archive, 1u);
  EXPECT_TRUE(anywhere(decrypted_pages(dir.path(), key), "quetzalbrine"));
  ASSERT_TRUE(profile->purge_search_index().ok());
  EXPECT_FALSE(anywhere(decrypted_pages(dir.path(), key), "quetzalbrine"));
  EXPECT_EQ(status().pending_purge_archive, 0u);
}

// A deletion in a large archive costs its purge no rewrite of the archive: the old text stays
// in the files, unreachable, until enough deletions make the rewrite as cheap per deletion as a
// purge of the recent part.
TEST_F(SearchMaintenance, ADeletionInALargeArchiveWaitsForTheRewriteToBeDue) {
  int64_t old = large_archive("quetzalbrine");
  auto segments = archive_segments();
  ASSERT_FALSE(segments.empty());

  delete_for_everyone(old);
  ASSERT_TRUE(profile->purge_search_index().ok());
  // Not rewritten: every segment the archive had is still there.
  auto after = archive_segments();
  for (const auto& segment : segments)
    EXPECT_TRUE(std::find(after.begin(), after.end(), segment) != after.end())
        << "segment at level " << segment[0] << ", idx " << segment[1] << " was rewritten";
  SearchIndexStatus s = status();
  EXPECT_EQ(s.pending_purge, 1u);
  EXPECT_EQ(s.pending_purge_archive, 1u);
  EXPECT_EQ(s.indexed_messages, 6001u);
  // Unreachable: no search finds it, and the index matches the history.
  EXPECT_EQ(rows("quetzalbrine"), R{});
  EXPECT_EQ(rows("\"old message\""), R{});
  ASSERT_NO_FATAL_FAILURE(expect_healthy());
  EXPECT_TRUE(anywhere(decrypted_pages(dir.path(), key), "quetzalbrine"));

  // The second deletion makes the rewrite due: both are erased.
  int64_t second = oldest_filler(1).at(0);
  delete_for_everyone(second);
  ASSERT_TRUE(profile->purge_search_index().ok());
  EXPECT_EQ(archive_segments().size(), 1u);
  s = status();
  EXPECT_EQ(s.pending_purge, 0u);
  EXPECT_EQ(s.pending_purge_archive, 0u);
  EXPECT_FALSE(anywhere(decrypted_pages(dir.path(), key), "quetzalbrine"));
  EXPECT_EQ(rows("chatter").size(), 5999u);
  ASSERT_NO_FATAL_FAILURE(expect_healthy());
}

// However few deletions follow, the first purge a day after the one that deferred a deletion
// erases it; SearchPurge::kEverything erases at once.
TEST_F(SearchMaintenance, AnArchiveDeletionWaitsADayAtMostOrNotAtAll) {
  int64_t old = large_archive("quetzalbrine");
  delete_for_everyone(old);
  ASSERT_TRUE(profile->purge_search_index().ok());
  now += search::kArchiveEraseWithinMs - 1;
  ASSERT_TRUE(profile->purge_search_index().ok());
  EXPECT_EQ(status().pending_purge_archive, 1u);
  EXPECT_TRUE(anywhere(decrypted_pages(dir.path(), key), "quetzalbrine"));
  now += 1;
  ASSERT_TRUE(profile->purge_search_index().ok());
  EXPECT_EQ(status().pending_purge_archive, 0u);
  EXPECT_FALSE(anywhere(decrypted_pages(dir.path(), key), "quetzalbrine"));

  // After the rewrite a new deletion waits again, unless the purge is told to erase it all.
  delete_for_everyone(oldest_filler(1).at(0));
  ASSERT_TRUE(profile->purge_search_index().ok());
  EXPECT_EQ(status().pending_purge_archive, 1u);
  ASSERT_TRUE(profile->purge_search_index(SearchPurge::kEverything).ok());
  EXPECT_EQ(status().pending_purge_archive, 0u);
  EXPECT_EQ(rows("chatter").size(), 5999u);
  ASSERT_NO_FATAL_FAILURE(expect_healthy());
}

TEST_F(SearchMaintenance, PurgeMovesOlderRecentMessagesToTheArchive) {
  int64_t c = conversation(std::string(32, 'a'));
  filler(c, 20500, 1);
  int64_t recent_from_before = 0;
  {
    auto q = db().query("SELECT recent_from FROM search_state");
    ASSERT_TRUE(q.ok() && q->step().value());
    recent_from_before = q->column_int(0);
  }
  ASSERT_TRUE(profile->purge_search_index().ok());
  auto q = db().query("SELECT recent_from, (SELECT max(id) FROM messages) FROM search_state");
  ASSERT_TRUE(q.ok() && q->step().value());
  // All but the newest 5,000 moved.
  EXPECT_GT(q->column_int(0), recent_from_before);
  EXPECT_EQ(q->column_int(1) - q->column_int(0) + 1, 5000);
  EXPECT_EQ(status().indexed_messages, 20500u);
  SearchQuery all;
  all.text = "weather";
  all.limit = 200;
  EXPECT_EQ(rows(all).size(), 20500u);
  auto check = profile->check_search_index();
  ASSERT_TRUE(check.ok()) << check.error().message;
  EXPECT_FALSE(check->damaged) << check->problem;
}

TEST_F(SearchMaintenance, IntegrityCheckPassesOnAHealthyIndex) {
  int64_t c = conversation(std::string(32, 'a'));
  filler(c, 50, 1);
  int64_t id = add(c, "to be edited", 100);
  edit(id, "edited text");
  auto check = profile->check_search_index();
  ASSERT_TRUE(check.ok()) << check.error().message;
  EXPECT_FALSE(check->damaged) << check->problem;
  EXPECT_FALSE(check->rebuilt);
}

TEST_F(SearchMaintenance, AReceivedTextWithANulByteLeavesTheIndexHealthy) {
  // A peer may send one; the index ends the text there, and the check must read it alike.
  int64_t c = conversation(std::string(32, 'a'));
  add(c, std::string("seen\0hidden", 11), 100);
  auto check = profile->check_search_index();
  ASSERT_TRUE(check.ok()) << check.error().message;
  EXPECT_FALSE(check->damaged) << check->problem;
  EXPECT_FALSE(check->rebuilt);
}

TEST_F(SearchMaintenance, AnIndexThatLostTrackOfTheHistoryIsDetectedAndRebuilt) {
  int64_t c = conversation(std::string(32, 'a'));
  filler(c, 100, 1);
  int64_t id = add(c, "a message deleted behind the index's back", 500);
  // Delete the row without the trigger that takes it out of the index.
  std::string trigger;
  {
    auto q = db().query("SELECT sql FROM sqlite_master WHERE name = 'search_delete_recent'");
    ASSERT_TRUE(q.ok() && q->step().value());
    trigger = std::string(q->column_text(0));
  }
  exec("DROP TRIGGER search_delete_recent");
  exec("DELETE FROM messages WHERE id = " + std::to_string(id));
  exec(trigger);

  std::vector<SearchProgress> progress;
  auto check = profile->check_search_index([&](const SearchProgress& p) {
    progress.push_back(p);
    return true;
  });
  ASSERT_TRUE(check.ok()) << check.error().message;
  EXPECT_TRUE(check->damaged);
  EXPECT_TRUE(check->rebuilt);
  EXPECT_FALSE(check->problem.empty());
  ASSERT_FALSE(progress.empty());
  EXPECT_EQ(progress.back().done, 100u);
  EXPECT_EQ(progress.back().total, 100u);
  auto again = profile->check_search_index();
  ASSERT_TRUE(again.ok());
  EXPECT_FALSE(again->damaged) << again->problem;
  EXPECT_EQ(rows("chatter").size(), 100u);
  EXPECT_EQ(rows("deleted"), R{});
}

TEST_F(SearchMaintenance, DamagedSegmentsAreDetectedByCheckAndBySearch) {
  int64_t c = conversation(std::string(32, 'a'));
  filler(c, 3000, 1);  // one transaction: segments large enough to have leaf blocks
  ASSERT_GT(status().index_bytes, 0u);
  // Lose the leaf blocks the segment directory points to.
  exec("DELETE FROM search_recent_segments");
  SearchQuery q;
  q.text = "weather";
  auto found = profile->search(q);
  ASSERT_TRUE(found.ok()) << found.error().message;
  EXPECT_FALSE(found->index_complete);  // the search noticed, and a rebuild is due
  EXPECT_TRUE(status().rebuilding);
  ASSERT_TRUE(profile->rebuild_search_index().ok());
  q.limit = 200;
  EXPECT_EQ(rows(q).size(), 3000u);
  EXPECT_TRUE(page(q).index_complete);

  // After the rebuild everything is in the archive; break its segments' interior nodes.
  exec("UPDATE search_archive_segdir SET root = x'0100' WHERE start_block != 0");
  auto check = profile->check_search_index();
  ASSERT_TRUE(check.ok()) << check.error().message;
  EXPECT_TRUE(check->damaged);
  EXPECT_TRUE(check->rebuilt);
  EXPECT_EQ(rows(q).size(), 3000u);
}

TEST_F(SearchMaintenance, APausedRebuildCarriesOnWhereItStopped) {
  int64_t c = conversation(std::string(32, 'a'));
  filler(c, 12000, 1);
  std::vector<uint64_t> done;
  auto paused = profile->rebuild_search_index([&](const SearchProgress& p) {
    done.push_back(p.done);
    return false;  // pause after the first batch
  });
  EXPECT_EQ(paused.code(), ErrorCode::kCancelled);
  ASSERT_EQ(done.size(), 1u);
  EXPECT_EQ(done[0], 5000u);
  SearchIndexStatus s = status();
  EXPECT_TRUE(s.rebuilding);
  EXPECT_EQ(s.rebuild.done, 5000u);
  EXPECT_EQ(s.rebuild.total, 12000u);
  // Meanwhile search works on what is indexed and says it is incomplete; new messages wait.
  SearchQuery q;
  q.text = "weather";
  q.limit = 200;
  EXPECT_FALSE(page(q).index_complete);
  EXPECT_EQ(rows(q).size(), 5000u);
  add(c, "weather update during the rebuild", 99999);
  done.clear();
  ASSERT_TRUE(profile
                  ->rebuild_search_index([&](const SearchProgress& p) {
                    done.push_back(p.done);
                    return true;
                  })
                  .ok());
  EXPECT_EQ(done, (std::vector<uint64_t>{10000, 12001}));
  EXPECT_TRUE(page(q).index_complete);
  EXPECT_EQ(rows(q).size(), 12001u);
}

TEST_F(SearchMaintenance, ARebuildKilledHalfWayResumesAfterReopening) {
  int64_t c = conversation(std::string(32, 'a'));
  filler(c, 12000, 1);
  close();
  pid_t pid = fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    // The child dies in the middle of the second batch's progress report.
    open();
    int batches = 0;
    (void)profile->rebuild_search_index([&](const SearchProgress&) {
      if (++batches == 2) _exit(0);
      return true;
    });
    _exit(1);
  }
  int wstatus = 0;
  ASSERT_EQ(waitpid(pid, &wstatus, 0), pid);
  ASSERT_TRUE(WIFEXITED(wstatus));
  ASSERT_EQ(WEXITSTATUS(wstatus), 0);
  ASSERT_NO_FATAL_FAILURE(open());
  SearchIndexStatus s = status();
  EXPECT_TRUE(s.rebuilding);
  EXPECT_EQ(s.rebuild.done, 10000u);
  std::vector<uint64_t> done;
  ASSERT_TRUE(profile
                  ->rebuild_search_index([&](const SearchProgress& p) {
                    done.push_back(p.done);
                    return true;
                  })
                  .ok());
  EXPECT_EQ(done, (std::vector<uint64_t>{12000}));
  SearchQuery q;
  q.text = "weather";
  q.limit = 200;
  EXPECT_EQ(rows(q).size(), 12000u);
  auto check = profile->check_search_index();
  ASSERT_TRUE(check.ok());
  EXPECT_FALSE(check->damaged) << check->problem;
}

TEST_F(SearchMaintenance, HistoryTheIndexNeverSawIsFoundAfterACheck) {
  // Rows written without the triggers (history from before search, or written over another
  // connection): the check sees documents missing and rebuilds.
  int64_t c = conversation(std::string(32, 'a'));
  add(c, "indexed history 1", 1);
  std::vector<std::string> triggers;
  {
    auto q = db().query(
        "SELECT sql FROM sqlite_master WHERE type = 'trigger' AND name LIKE "
        "'search%'");
    ASSERT_TRUE(q.ok());
    while (q->step().value()) triggers.emplace_back(q->column_text(0));
  }
  ASSERT_EQ(triggers.size(), 9u);
  {
    auto q = db().query(
        "SELECT name FROM sqlite_master WHERE type = 'trigger' AND name LIKE "
        "'search%'");
    std::vector<std::string> names;
    while (q->step().value()) names.emplace_back(q->column_text(0));
    for (const auto& n : names) exec("DROP TRIGGER " + n);
  }
  for (int i = 0; i < 30; ++i)
    add(c, "unseen history " + std::to_string(i), 10 + static_cast<uint64_t>(i));
  for (const auto& t : triggers) exec(t);
  SearchQuery q;
  q.text = "history";
  q.limit = 100;
  EXPECT_EQ(rows(q).size(), 1u);
  auto check = profile->check_search_index();
  ASSERT_TRUE(check.ok()) << check.error().message;
  EXPECT_TRUE(check->damaged);
  EXPECT_TRUE(check->rebuilt);
  EXPECT_TRUE(page(q).index_complete);
  EXPECT_EQ(rows(q).size(), 31u);
}

// Schema 5 kept FTS4's prefix index and found a single CJK character as a prefix of bigrams.
// The upgrade empties the index and rebuilds it from the history.
TEST_F(SearchMaintenance, UpgradeFromSchema5RebuildsTheIndexWithoutPrefixes) {
  int64_t c = conversation(std::string(32, 'a'));
  int64_t cjk = add(c, "明天我们在北京大学门口见面", 1);
  filler(c, 50, 10);
  for (const char* part : {"search_recent", "search_archive"}) {
    exec(std::string("DROP TABLE ") + part);
    exec(std::string("CREATE VIRTUAL TABLE ") + part + " USING fts4(content=\"" + part +
         "_docs\", body, attachment_names, meta, tokenize=sotto, order=desc, prefix=\"3\")");
    exec(std::string("INSERT INTO ") + part + " (" + part + ") VALUES ('rebuild')");
  }
  ASSERT_TRUE(db().set_user_version(5).ok());
  close();
  ASSERT_NO_FATAL_FAILURE(open());

  EXPECT_EQ(db().user_version(), db::kSchemaVersion);
  auto q = db().query(
      "SELECT sql FROM sqlite_master WHERE name LIKE 'search_%' AND sql LIKE "
      "'%fts4%'");
  ASSERT_TRUE(q.ok());
  int tables = 0;
  while (q->step().value()) {
    ++tables;
    EXPECT_EQ(std::string(q->column_text(0)).find("prefix"), std::string::npos);
  }
  EXPECT_EQ(tables, 2);
  SearchIndexStatus s = status();
  EXPECT_TRUE(s.rebuilding);
  EXPECT_EQ(s.indexed_messages, 0u);
  SearchQuery one;
  one.text = "京";
  SearchPage before = page(one);
  EXPECT_FALSE(before.index_complete);
  EXPECT_TRUE(before.hits.empty());

  ASSERT_TRUE(profile->rebuild_search_index().ok());
  EXPECT_EQ(rows(one), (R{cjk}));
  one.text = "面";  // the last character of its run
  EXPECT_EQ(rows(one), (R{cjk}));
  one.text = "weather";
  EXPECT_EQ(rows(one).size(), 50u);
  auto check = profile->check_search_index();
  ASSERT_TRUE(check.ok());
  EXPECT_FALSE(check->damaged) << check->problem;
}

// Schema 10 rewrote the archive at every purge that followed a deletion in it. The upgrade adds
// the clock of deferred deletions; those a schema-10 profile left pending wait for the first
// purge after it, and the day starts there.
TEST_F(SearchMaintenance, UpgradeFromSchema10KeepsArchiveDeletionsPendingForTheNextPurge) {
  int64_t old = large_archive("quetzalbrine");
  delete_for_everyone(old);
  // search_state as schema 10 declared it, without purge_archive_since_ms (SQLite 3.15 cannot
  // drop a column).
  exec(
      "CREATE TABLE old_state AS SELECT id, recent_from, rebuild_next, rebuild_total, "
      "purge_recent, purge_archive FROM search_state");
  exec("DROP TABLE search_state");
  exec(
      "CREATE TABLE search_state (id INTEGER PRIMARY KEY CHECK (id = 1), recent_from INTEGER NOT "
      "NULL, rebuild_next INTEGER, rebuild_total INTEGER NOT NULL DEFAULT 0, purge_recent INTEGER "
      "NOT NULL DEFAULT 0, purge_archive INTEGER NOT NULL DEFAULT 0)");
  exec("INSERT INTO search_state SELECT * FROM old_state");
  exec("DROP TABLE old_state");
  ASSERT_TRUE(db().set_user_version(10).ok());
  close();
  ASSERT_NO_FATAL_FAILURE(open());

  EXPECT_EQ(db().user_version(), db::kSchemaVersion);
  {
    auto q = db().query("SELECT purge_archive, purge_archive_since_ms FROM search_state");
    ASSERT_TRUE(q.ok()) << q.error().message;
    ASSERT_TRUE(q->step().value());
    EXPECT_EQ(q->column_int(0), 1);
    EXPECT_TRUE(q->column_is_null(1));
  }
  EXPECT_EQ(status().pending_purge_archive, 1u);
  EXPECT_EQ(rows("quetzalbrine"), R{});
  // The first purge defers it and starts the day; a purge a day later erases it.
  ASSERT_TRUE(profile->purge_search_index().ok());
  EXPECT_EQ(status().pending_purge_archive, 1u);
  now += search::kArchiveEraseWithinMs;
  ASSERT_TRUE(profile->purge_search_index().ok());
  EXPECT_EQ(status().pending_purge_archive, 0u);
  EXPECT_FALSE(anywhere(decrypted_pages(dir.path(), key), "quetzalbrine"));
  ASSERT_NO_FATAL_FAILURE(expect_healthy());
  // Opened again, the upgrade does not run twice.
  close();
  ASSERT_NO_FATAL_FAILURE(open());
  EXPECT_EQ(db().user_version(), db::kSchemaVersion);
}

}  // namespace
}  // namespace sotto
