// Full-text search over a profile's message history, on the device, inside the encrypted
// database. Plain value types: the C API maps them field by field.
//
// Query language (SearchQuery::text), case- and accent-insensitive:
//   word            messages containing the word (all words must match)
//   "two words"     the exact phrase
//   prefix*         words starting with "prefix" (at least 3 letters before the *)
//   -word -"a b"    leave out messages containing the word or phrase
// Chinese, Japanese and Korean text needs no spaces: "北京" finds 我在北京工作.
//
// Thread rule: see sotto::Profile (the search methods live there).
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

namespace sotto {

enum class SearchOrder : int {
  kNewest = 0,     // by message time (sort_ms), newest first
  kRelevance = 1,  // by BM25 score, best first (see SearchQuery::order)
};

// What Profile::purge_search_index() erases now.
enum class SearchPurge : int {
  // The old text in the recent part of the index (the newest 5,000-20,000 messages) at once;
  // in the archive part (the rest), once enough of it is pending that rewriting the archive
  // costs no more per message than a purge of the recent part, or a day after the first purge
  // that left it pending. Until then it is unreachable by search, but still in the files.
  kDue = 0,
  // All of it, whatever the archive's rewrite costs (seconds for a million messages).
  kEverything = 1,
};

struct SearchQuery {
  std::string text;  // see the query language above; at most 1,000 bytes and 16 terms
  // Filters; an empty list or 0 means "no filter".
  std::vector<int64_t> conversations;  // local conversation ids (up to 100)
  std::vector<std::string> senders;    // author account ids, 32 hex digits (up to 100)
  uint64_t since_ms = 0;               // sort_ms >= since_ms
  uint64_t until_ms = 0;               // sort_ms < until_ms
  bool with_attachments_only = false;  // only messages that carry attachments
  // kRelevance ranks the newest 500 matches by BM25, then the next 500, and so on: exact for
  // searches with up to 500 matches, and a bounded cost for words in half the history.
  SearchOrder order = SearchOrder::kNewest;
  uint32_t limit = 20;           // hits per page, 1..200
  std::string cursor;            // empty for the first page, else SearchPage::next_cursor
  uint32_t snippet_bytes = 160;  // longest snippet (UTF-8 bytes, 32..1024); "…" marks cuts
};

// A highlighted part of a snippet: bytes [begin, end) of SearchHit::snippet.
struct SearchHighlight {
  uint32_t begin = 0;
  uint32_t end = 0;
};

struct SearchHit {
  int64_t row = 0;           // the message's local row (messages.id)
  std::string message_id;    // 32 hex digits (the author's 16-byte id), as sotto::Message::id
  int64_t conversation = 0;  // local conversation id
  std::string sender;        // the author's account id
  uint64_t sort_ms = 0;      // the message's time
  std::string snippet;       // from the original text (or the matching attachment name)
  std::vector<SearchHighlight> highlights;  // in snippet order, not overlapping
  bool snippet_from_attachment = false;     // the match is in an attachment's file name
  double score = 0;                         // BM25; higher is better
};

struct SearchPage {
  std::vector<SearchHit> hits;
  // Pass as SearchQuery::cursor (with the same query) for the next page; empty at the end.
  // Pages never repeat or skip a match, even while new messages arrive.
  std::string next_cursor;
  // false while the index is being rebuilt: some messages cannot be found yet
  // (Profile::rebuild_search_index() finishes the rebuild).
  bool index_complete = true;
};

// Progress of a rebuild, in messages. Return false to pause it: what is done is kept and
// the next rebuild_search_index() carries on from there (as it does after a crash).
struct SearchProgress {
  uint64_t done = 0;
  uint64_t total = 0;
};
using SearchProgressHandler = std::function<bool(const SearchProgress&)>;

struct SearchIndexStatus {
  uint64_t indexed_messages = 0;  // messages that search can find
  bool rebuilding = false;        // a rebuild is under way or was interrupted
  SearchProgress rebuild;         // its progress
  // Edits and deletions (including expired messages the history removed) whose old text is
  // still in the index's files; Profile::purge_search_index() erases it.
  uint64_t pending_purge = 0;
  // How much of that is in the archive part of the index, whose erasure rewrites the whole
  // archive (about 60 MB for a million messages), so a purge defers it (SearchPurge::kDue).
  uint64_t pending_purge_archive = 0;
  uint64_t index_bytes = 0;  // bytes of index data (postings and document sizes)
};

struct SearchIndexCheck {
  bool damaged = false;  // the index did not match the history
  bool rebuilt = false;  // and was rebuilt (check_search_index() does that by itself)
  std::string problem;   // what was wrong, for a log; empty when nothing was
};

}  // namespace sotto
