// Full-text search over `messages` (schema step 2 -> 3): FTS4 external-content indexes kept in
// step with the history by triggers, queried with filters, ranking and stable cursors.
//
// How the index follows the history, without the history's writer calling it:
//  - An inserted (or edited) searchable message is queued in `search_queue` by a trigger and
//    indexed by flush_queue(), which the Database runs just before every outermost COMMIT: one
//    FTS write per transaction instead of one per statement (FTS4 flushes its pending terms at
//    every statement boundary inside a transaction, which made batched inserts 5x slower).
//  - An edit, delete-for-everyone or DELETE takes the old text out of the index immediately,
//    in a BEFORE trigger (an external-content index reads the old text back from the row).
//  - The index has two parts: `search_recent` for the newest messages, `search_archive` for
//    the rest. FTS4 takes a document out with delete markers that hide its postings from every
//    query at once, but it only forgets the words when the segments holding them are merged
//    into one: erasing them means rewriting the whole part. purge() rewrites the recent part
//    whenever it had deletions (5,000-20,000 documents: cheap), then truncates the WAL. The
//    archive's rewrite costs in proportion to the archive (1.6 s for a million messages), so
//    purge() defers it until it is due: when the pending deletions times the recent part's
//    size reach the archive's size (a rewrite then costs per deletion what a purge of the
//    recent part costs), or a day after the first purge that left one pending
//    (kArchiveEraseWithinMs). Until then the dead postings and their markers stay, hidden;
//    at most archive / 5,000 deletions' worth. SearchPurge::kEverything rewrites it anyway.
//    Afterwards no page of the files holds the old text. Above 20,000 documents in the recent
//    part, purge() also moves all but the newest 5,000 to the archive; the Client asks for a
//    purge every 20,000 stored messages for that alone.
//  - `search_time_blocks` bounds sort_ms per 1,024 row ids, so newest-first pages walk the
//    index in row order and stop as soon as no older row can be newer than what they hold.
//
// Thread rule: not thread-safe; the owner (Profile) serialises every call and holds the
// database for the whole call.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <utility>

#include "Database.h"
#include "SearchQueryParser.h"
#include "sotto/Search.h"

struct sqlite3_stmt;

namespace sotto::search {

// purge() moves older documents out of the recent part once it holds more than this.
inline constexpr int64_t kRecentFoldAt = 20000;
// A deletion in the archive is erased from the files by the first purge this long after the
// first purge that left it pending, if enough deletions have not made the rewrite due before.
inline constexpr int64_t kArchiveEraseWithinMs = 24 * 3600 * 1000;

class SearchIndex {
 public:
  // `now_ms`: the clock that decides which messages have expired.
  SearchIndex(db::Database& db, std::function<uint64_t()> now_ms);
  ~SearchIndex();
  SearchIndex(const SearchIndex&) = delete;
  SearchIndex& operator=(const SearchIndex&) = delete;

  // Indexes what the triggers queued. NB: inside a transaction (it is the Database's
  // before-commit hook).
  Status flush_queue();

  Result<SearchPage> search(const SearchQuery& query);
  Result<SearchIndexStatus> status();
  // Verifies the index against the history and rebuilds it when they differ.
  Result<SearchIndexCheck> check(const SearchProgressHandler& progress);
  // Starts a rebuild, or carries on with one that was paused or interrupted.
  Status rebuild(const SearchProgressHandler& progress);
  // Erases the text of edited and deleted messages from the index and the WAL: from the recent
  // part always, from the archive when its rewrite is due or `what` is kEverything.
  Status purge(SearchPurge what = SearchPurge::kDue);

  struct State;
  struct Stats;

 private:
  // A prepared statement of our own, for statements that are open side by side.
  Result<db::Query> statement(const char* sql, int slot);
  Result<bool> queue_empty();
  Status flush_now();
  // What is wrong with the index, or an empty string.
  Result<std::string> find_damage();
  Result<State> load_state();
  Status start_rebuild();
  Status continue_rebuild(const SearchProgressHandler& progress);
  Result<SearchPage> run(const SearchQuery& query);

  db::Database& db_;
  std::function<uint64_t()> now_ms_;
  std::map<std::pair<const char*, int>, sqlite3_stmt*> statements_;
};

}  // namespace sotto::search
