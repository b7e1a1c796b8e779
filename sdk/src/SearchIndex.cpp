#include "SearchIndex.h"

#include <sqlcipher/sqlite3.h>

#include <algorithm>
#include <cctype>
#include <cmath>
#include <cstring>
#include <limits>
#include <optional>
#include <string_view>

#include "ScopedTransaction.h"
#include "SearchIntegrity.h"
#include "SearchSnippet.h"

namespace sotto::search {

// The two parts of the index. Recent first: it holds the higher row ids.
enum Part { kRecent = 0, kArchive = 1 };
constexpr int kParts = 2;

struct SearchIndex::State {
  int64_t recent_from = 1;
  std::optional<int64_t> rebuild_next;
  int64_t rebuild_total = 0;
  int64_t purge[kParts] = {0, 0};
  // When a purge first left the archive's deletions pending (none pending, or none seen by a
  // purge yet: empty).
  std::optional<int64_t> purge_archive_since_ms;
};

// Corpus statistics BM25 needs; computed on a search's first page and carried in its cursor,
// so every page scores with the same numbers.
struct SearchIndex::Stats {
  double documents = 0;
  double average_length[2] = {0, 0};  // tokens in body, attachment names
  // Per included term: the sum of its words' inverse document frequencies (as Lucene weighs a
  // phrase), so no phrase has to be counted, which for two common words is a long scan.
  std::vector<double> idf;
};

namespace {

using State = SearchIndex::State;
using Stats = SearchIndex::Stats;

constexpr int kBlockShift = 10;  // search_time_blocks.block = id >> kBlockShift
constexpr size_t kRankWindow = 500;
constexpr size_t kMaxSpans = 8;          // row id ranges a time-filtered scan reads, one query each
constexpr int64_t kFrequencyCap = 1000;  // documents counted per word before estimating
constexpr int64_t kRebuildBatch = 5000;
constexpr int64_t kRecentKeep = 5000;  // a fold (see kRecentFoldAt) keeps this many in recent
constexpr uint32_t kMaxLimit = 200;
constexpr size_t kMaxFilterValues = 100;
constexpr double kK1 = 1.2;
constexpr double kB = 0.75;
constexpr double kColumnWeight[2] = {1.0, 0.5};  // a word in the text counts more than in a name
constexpr int kTextColumns = 2;                  // body, attachment_names (then meta)
constexpr int kColumns = 3;

constexpr const char* kCreatePart[kParts] = {
    "CREATE VIRTUAL TABLE search_recent USING fts4(content=\"search_recent_docs\", body,\n"
    "  attachment_names, meta, tokenize=sotto, order=desc)",
    "CREATE VIRTUAL TABLE search_archive USING fts4(content=\"search_archive_docs\", body,\n"
    "  attachment_names, meta, tokenize=sotto, order=desc)"};
constexpr const char* kDropPart[kParts] = {"DROP TABLE search_recent", "DROP TABLE search_archive"};
constexpr const char* kOptimize[kParts] = {
    "INSERT INTO search_recent (search_recent) VALUES ('optimize')",
    "INSERT INTO search_archive (search_archive) VALUES ('optimize')"};
constexpr PartNames kPartNames[kParts] = {{"search_recent", "search_recent_docs", 0},
                                          {"search_archive", "search_archive_docs", 0}};
constexpr const char* kFlush[kParts] = {
    "INSERT INTO search_recent (docid, body, attachment_names, meta) SELECT s.docid, s.body, "
    "s.attachment_names, s.meta FROM search_queue q JOIN search_source s ON s.docid = q.id "
    "WHERE q.id >= (SELECT recent_from FROM search_state) ORDER BY q.id",
    "INSERT INTO search_archive (docid, body, attachment_names, meta) SELECT s.docid, s.body, "
    "s.attachment_names, s.meta FROM search_queue q JOIN search_source s ON s.docid = q.id "
    "WHERE q.id < (SELECT recent_from FROM search_state) ORDER BY q.id"};
// Rebuild: the searchable messages with ids in [?1, ?2) (?2 NULL: no end) of one part. Both
// bounds must be plain comparisons on the row id for SQLite to seek to ?1 and stop at ?2
// ("?2 IS NULL OR id < ?2" made every batch read to the end of the table).
constexpr const char* kIndexRange[kParts] = {
    "INSERT INTO search_recent (docid, body, attachment_names, meta) SELECT docid, body, "
    "attachment_names, meta FROM search_source WHERE docid >= ?1 AND docid < coalesce(?2, "
    "9223372036854775807) "
    "AND docid >= (SELECT recent_from FROM search_state) ORDER BY docid",
    "INSERT INTO search_archive (docid, body, attachment_names, meta) SELECT docid, body, "
    "attachment_names, meta FROM search_source WHERE docid >= ?1 AND docid < coalesce(?2, "
    "9223372036854775807) "
    "AND docid < (SELECT recent_from FROM search_state) ORDER BY docid"};
constexpr const char* kScan[kParts] = {
    "SELECT docid FROM search_recent WHERE search_recent MATCH ?1 AND docid BETWEEN ?2 AND ?3 "
    "ORDER BY docid DESC",
    "SELECT docid FROM search_archive WHERE search_archive MATCH ?1 AND docid BETWEEN ?2 AND ?3 "
    "ORDER BY docid DESC"};
// matchinfo 'yl': hits per phrase and column in this row, then tokens per column.
constexpr const char* kScanRanked[kParts] = {
    "SELECT docid, matchinfo(search_recent, 'yl') FROM search_recent WHERE search_recent MATCH "
    "?1 AND docid BETWEEN ?2 AND ?3 ORDER BY docid DESC",
    "SELECT docid, matchinfo(search_archive, 'yl') FROM search_archive WHERE search_archive "
    "MATCH ?1 AND docid BETWEEN ?2 AND ?3 ORDER BY docid DESC"};
constexpr const char* kCountCapped[kParts] = {
    "SELECT count(*), min(docid) FROM (SELECT docid FROM search_recent WHERE search_recent "
    "MATCH ?1 ORDER BY docid DESC LIMIT ?2)",
    "SELECT count(*), min(docid) FROM (SELECT docid FROM search_archive WHERE search_archive "
    "MATCH ?1 ORDER BY docid DESC LIMIT ?2)"};
constexpr const char* kPartStats[kParts] = {"SELECT value FROM search_recent_stat WHERE id = 0",
                                            "SELECT value FROM search_archive_stat WHERE id = 0"};
constexpr const char* kPartBytes[kParts] = {
    "SELECT (SELECT coalesce(sum(length(block)), 0) FROM search_recent_segments) + (SELECT "
    "coalesce(sum(length(root)), 0) FROM search_recent_segdir) + (SELECT "
    "coalesce(sum(length(size)), 0) FROM search_recent_docsize)",
    "SELECT (SELECT coalesce(sum(length(block)), 0) FROM search_archive_segments) + (SELECT "
    "coalesce(sum(length(root)), 0) FROM search_archive_segdir) + (SELECT "
    "coalesce(sum(length(size)), 0) FROM search_archive_docsize)"};
constexpr const char* kMessage =
    "SELECT message_id, conversation_id, sender, sort_ms, expires_ms, has_attachment, body, "
    "attachment_names, kind, deleted FROM messages WHERE id = ?";

Error invalid(std::string message) {
  return make_error(ErrorCode::kInvalidArgument, std::move(message));
}

bool is_hex_account(std::string_view s) {
  if (s.size() != 32) return false;
  for (char c : s)
    if (!std::isxdigit(static_cast<unsigned char>(c))) return false;
  return true;
}

std::string lower(std::string s) {
  for (char& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return s;
}

uint64_t fnv1a(std::string_view s) {
  uint64_t h = 1469598103934665603ull;
  for (unsigned char c : s) {
    h ^= c;
    h *= 1099511628211ull;
  }
  return h;
}

// One indexed word as FTS phrase text that matches exactly that token: a CJK bigram with the
// marker that stops the tokenizer from adding its single characters.
std::string word_phrase(const Token& t) {
  size_t len = 0;
  bool cjk = !t.text.empty() && is_cjk(decode_utf8(t.text.data(), t.text.size(), len));
  if (cjk) return len == t.text.size() ? t.text : t.text + kNoUnigrams;
  return t.prefix ? t.text + "*" : t.text;
}

double bm25(const Stats& stats, size_t phrase, const uint32_t* hits_per_column,
            const uint32_t* length_per_column) {
  double idf = stats.idf[phrase];
  double score = 0;
  for (int c = 0; c < kTextColumns; ++c) {
    double tf = hits_per_column[c];
    if (tf == 0) continue;
    double average = stats.average_length[c] > 0 ? stats.average_length[c] : 1.0;
    double norm = kK1 * (1 - kB + kB * length_per_column[c] / average);
    score += kColumnWeight[c] * idf * tf * (kK1 + 1) / (tf + norm);
  }
  return score;
}

// ---- cursors: opaque hex of a little binary record ----

class Writer {
 public:
  template <class T>
  void put(T v) {
    uint8_t b[sizeof(T)];
    std::memcpy(b, &v, sizeof(T));
    bytes_.insert(bytes_.end(), b, b + sizeof(T));
  }
  std::string hex() const { return to_hex(bytes_); }

 private:
  Bytes bytes_;
};

class Reader {
 public:
  explicit Reader(Bytes b) : bytes_(std::move(b)) {}
  template <class T>
  bool get(T& v) {
    if (bytes_.size() - pos_ < sizeof(T)) return false;
    std::memcpy(&v, bytes_.data() + pos_, sizeof(T));
    pos_ += sizeof(T);
    return true;
  }
  bool done() const { return pos_ == bytes_.size(); }

 private:
  Bytes bytes_;
  size_t pos_ = 0;
};

constexpr uint8_t kCursorVersion = 1;

struct Cursor {
  uint64_t fingerprint = 0;
  Stats stats;
  // kNewest: the last hit's (sort_ms, row).
  int64_t sort_ms = 0;
  int64_t row = 0;
  // kRelevance: the window of row ids ranked together, the last hit's score, whether the
  // window is the last one.
  int64_t snapshot = 0;
  int64_t window_hi = 0, window_lo = 0;
  uint8_t last_window = 0;
  double score = 0;
};

std::string encode_cursor(SearchOrder order, const Cursor& c) {
  Writer w;
  w.put(kCursorVersion);
  w.put(static_cast<uint8_t>(order));
  w.put(c.fingerprint);
  w.put(c.stats.documents);
  w.put(c.stats.average_length[0]);
  w.put(c.stats.average_length[1]);
  w.put(static_cast<uint8_t>(c.stats.idf.size()));
  for (double idf : c.stats.idf) w.put(idf);
  w.put(c.sort_ms);
  w.put(c.row);
  if (order == SearchOrder::kRelevance) {
    w.put(c.snapshot);
    w.put(c.window_hi);
    w.put(c.window_lo);
    w.put(c.last_window);
    w.put(c.score);
  }
  return w.hex();
}

Result<Cursor> decode_cursor(const std::string& text, SearchOrder order, uint64_t fingerprint,
                             size_t phrases) {
  Bytes bytes;
  Error wrong = invalid("the cursor is not one this search returned; start again without it");
  if (!from_hex(text, bytes)) return wrong;
  Reader r(std::move(bytes));
  Cursor c;
  uint8_t version = 0, stored_order = 0, count = 0;
  if (!r.get(version) || version != kCursorVersion || !r.get(stored_order) ||
      stored_order != static_cast<uint8_t>(order) || !r.get(c.fingerprint))
    return wrong;
  if (c.fingerprint != fingerprint)
    return invalid(
        "the cursor belongs to a different search (text, filters or order changed); "
        "start again without it");
  if (!r.get(c.stats.documents) || !r.get(c.stats.average_length[0]) ||
      !r.get(c.stats.average_length[1]) || !r.get(count) || count != phrases)
    return wrong;
  c.stats.idf.resize(count);
  for (double& idf : c.stats.idf)
    if (!r.get(idf)) return wrong;
  if (!r.get(c.sort_ms) || !r.get(c.row)) return wrong;
  if (order == SearchOrder::kRelevance &&
      (!r.get(c.snapshot) || !r.get(c.window_hi) || !r.get(c.window_lo) || !r.get(c.last_window) ||
       !r.get(c.score)))
    return wrong;
  if (!r.done()) return wrong;
  return c;
}

// A message row as search reads it.
struct Row {
  int64_t id = 0;
  Bytes message_id;
  int64_t conversation = 0;
  std::string sender;
  int64_t sort_ms = 0;
  std::optional<int64_t> expires_ms;
  bool has_attachment = false;
  std::string body;
  std::string attachment_names;
  bool searchable = false;
};

// The filters of a search, checked on every row it returns (the index already applied the
// conversation, sender and attachment filters; this also keeps a damaged index honest).
struct Filters {
  std::vector<int64_t> conversations;  // sorted
  std::vector<std::string> senders;    // sorted, lower case
  int64_t since_ms = std::numeric_limits<int64_t>::min();
  int64_t until_ms = std::numeric_limits<int64_t>::max();
  bool attachments = false;
  int64_t now_ms = 0;

  bool accept(const Row& r) const {
    if (!r.searchable) return false;
    if (r.expires_ms && *r.expires_ms <= now_ms) return false;
    if (r.sort_ms < since_ms || r.sort_ms >= until_ms) return false;
    if (attachments && !r.has_attachment) return false;
    if (!conversations.empty() &&
        !std::binary_search(conversations.begin(), conversations.end(), r.conversation))
      return false;
    if (!senders.empty() && !std::binary_search(senders.begin(), senders.end(), lower(r.sender)))
      return false;
    return true;
  }
};

// An inclusive range of row ids.
struct Span {
  int64_t lo, hi;
};

// The time bounds per block of 1,024 row ids, with their running maximum.
struct Blocks {
  std::vector<int64_t> block, min_sort, max_sort, max_so_far;

  // Upper bound of sort_ms over every row with an id <= `id`: no row below can be newer.
  int64_t newest_at_or_below(int64_t id) const {
    auto it = std::upper_bound(block.begin(), block.end(), id >> kBlockShift);
    if (it == block.begin()) return std::numeric_limits<int64_t>::min();
    return max_so_far[static_cast<size_t>(it - block.begin() - 1)];
  }
  // Whether the row `id` may have a sort_ms in [from, to]: false only when its block says no,
  // so a scan skips the row without reading it.
  bool may_hold(int64_t id, int64_t from, int64_t to) const {
    auto it = std::lower_bound(block.begin(), block.end(), id >> kBlockShift);
    if (it == block.end() || *it != (id >> kBlockShift)) return true;
    return overlaps(static_cast<size_t>(it - block.begin()), from, to);
  }
  // Whether block i's bounds meet [from, to].
  bool overlaps(size_t i, int64_t from, int64_t to) const {
    return max_sort[i] >= from && min_sort[i] <= to;
  }
  // Row id ranges, newest first, that cover every row within [lo, hi] that may have a sort_ms
  // in [from, to]: [lo, hi] less the runs of blocks that say no. A scan per range never reads
  // (or, ranked, scores) the matches in those runs. Each range costs a query of its own, so
  // there are at most kMaxSpans: the narrowest gaps stay in, and may_hold() skips their rows.
  std::vector<Span> spans_may_hold(int64_t lo, int64_t hi, int64_t from, int64_t to) const {
    std::vector<Span> out;
    int64_t top = hi;
    for (size_t i = block.size(); i-- > 0 && top >= lo;) {
      if (overlaps(i, from, to)) continue;
      int64_t first = block[i] << kBlockShift, last = ((block[i] + 1) << kBlockShift) - 1;
      if (first > top) continue;
      if (last < top) out.push_back({std::max(lo, last + 1), top});
      top = first - 1;
    }
    if (top >= lo) out.push_back({lo, top});
    while (out.size() > kMaxSpans) {
      size_t narrowest = 0;
      for (size_t i = 1; i + 1 < out.size(); ++i)
        if (out[i].lo - out[i + 1].hi < out[narrowest].lo - out[narrowest + 1].hi) narrowest = i;
      out[narrowest].lo = out[narrowest + 1].lo;
      out.erase(out.begin() + static_cast<std::ptrdiff_t>(narrowest) + 1);
    }
    return out;
  }
};

}  // namespace

SearchIndex::SearchIndex(db::Database& db, std::function<uint64_t()> now_ms)
    : db_(db), now_ms_(std::move(now_ms)) {}

SearchIndex::~SearchIndex() {
  for (auto& [key, stmt] : statements_) sqlite3_finalize(stmt);
}

Result<db::Query> SearchIndex::statement(const char* sql, int slot) {
  auto key = std::make_pair(sql, slot);
  auto it = statements_.find(key);
  if (it == statements_.end()) {
    sqlite3_stmt* stmt = nullptr;
    int rc = sqlite3_prepare_v2(db_.handle(), sql, -1, &stmt, nullptr);
    if (rc != SQLITE_OK) return db_.error(rc, "preparing a search statement");
    it = statements_.emplace(key, stmt).first;
  }
  return db::Query(&db_, it->second);
}

Result<SearchIndex::State> SearchIndex::load_state() {
  SOTTO_TRY_ASSIGN(auto q, db_.query("SELECT recent_from, rebuild_next, rebuild_total, "
                                     "purge_recent, purge_archive, purge_archive_since_ms FROM "
                                     "search_state WHERE id = 1"));
  SOTTO_TRY_ASSIGN(bool row, q.step());
  if (!row)
    return make_error(ErrorCode::kStorageCorrupt,
                      "the search index's state is missing (" + db_.path().string() + ")");
  State s;
  s.recent_from = q.column_int(0);
  if (!q.column_is_null(1)) s.rebuild_next = q.column_int(1);
  s.rebuild_total = q.column_int(2);
  s.purge[kRecent] = q.column_int(3);
  s.purge[kArchive] = q.column_int(4);
  if (!q.column_is_null(5)) s.purge_archive_since_ms = q.column_int(5);
  return s;
}

Result<bool> SearchIndex::queue_empty() {
  SOTTO_TRY_ASSIGN(auto q, db_.query("SELECT EXISTS (SELECT 1 FROM search_queue)"));
  SOTTO_TRY_ASSIGN(bool row, q.step());
  return !row || q.column_int(0) == 0;
}

Status SearchIndex::flush_queue() {
  SOTTO_TRY_ASSIGN(bool empty, queue_empty());
  if (empty) return {};
  for (int part = 0; part < kParts; ++part) {
    SOTTO_TRY_ASSIGN(auto q, db_.query(kFlush[part]));
    SOTTO_TRY(q.run());
  }
  SOTTO_TRY_ASSIGN(auto q, db_.query("DELETE FROM search_queue"));
  return q.run();
}

// Indexes what is queued now, in a transaction of its own unless one is open (whose commit
// would do it anyway, but search must see it before).
Status SearchIndex::flush_now() {
  if (db_.depth() > 0) return flush_queue();
  SOTTO_TRY_ASSIGN(bool empty, queue_empty());
  if (empty) return {};
  ScopedTransaction txn(db_);
  SOTTO_TRY(txn.begin());
  SOTTO_TRY(flush_queue());
  return txn.commit();
}

namespace {

// FTS4's %_stat row: varints, documents then tokens per column.
struct PartStats {
  int64_t documents = 0;
  int64_t tokens[kColumns] = {0, 0, 0};
};

Result<PartStats> part_stats(db::Database& db, int part) {
  SOTTO_TRY_ASSIGN(auto q, db.query(kPartStats[part]));
  SOTTO_TRY_ASSIGN(bool row, q.step());
  PartStats s;
  if (!row) return s;
  ByteView b = q.column_blob(0);
  size_t pos = 0;
  auto varint = [&](int64_t& out) {
    uint64_t v = 0;
    for (int shift = 0; pos < b.size() && shift < 64; shift += 7) {
      uint8_t byte = b[pos++];
      v |= uint64_t{byte & 0x7Fu} << shift;
      if (!(byte & 0x80)) break;
    }
    out = static_cast<int64_t>(v);
  };
  varint(s.documents);
  for (int64_t& t : s.tokens) varint(t);
  return s;
}

// Row ids held by a part (an upper bound for the archive, a lower one for recent).
Span part_span(int part, const State& st, int64_t lo, int64_t hi) {
  if (part == kRecent) return {std::max(lo, st.recent_from), hi};
  return {lo, std::min(hi, st.recent_from - 1)};
}

// The matches of a MATCH expression in descending row id, over both parts, with the rows that
// match any excluded term left out (a merge of descending streams).
class MatchStream {
 public:
  // `spans`: the row id ranges to read, newest first.
  MatchStream(std::function<Result<db::Query>(const char*, int)> statement, const State& st,
              std::string match, std::vector<std::string> excluded, std::vector<Span> spans,
              bool ranked)
      : statement_(std::move(statement)),
        state_(st),
        match_(std::move(match)),
        excluded_(std::move(excluded)),
        spans_(std::move(spans)),
        ranked_(ranked) {}

  Result<bool> next() {
    for (;;) {
      if (!main_) {
        // Parts newest first (recent holds the higher ids), then each part's spans.
        if (++span_ >= spans_.size()) {
          span_ = 0;
          ++part_;
        }
        if (part_ >= kParts || spans_.empty()) return false;
        SOTTO_TRY(open(part_, spans_[span_]));
        continue;
      }
      SOTTO_TRY_ASSIGN(bool row, main_->step());
      if (!row) {
        main_.reset();
        continue;
      }
      docid_ = main_->column_int(0);
      if (ranked_) info_ = main_->column_blob(1);
      SOTTO_TRY_ASSIGN(bool out, is_excluded(docid_));
      if (!out) return true;
    }
  }
  int64_t docid() const { return docid_; }
  // matchinfo 'yl' of the current row (ranked streams).
  ByteView info() const { return info_; }

 private:
  struct Exclusion {
    std::optional<db::Query> q;
    int64_t current = std::numeric_limits<int64_t>::max();
    bool done = false;
  };

  Status open(int part, Span range) {
    Span span = part_span(part, state_, range.lo, range.hi);
    exclusions_.clear();
    if (span.lo > span.hi) return {};
    SOTTO_TRY_ASSIGN(auto q, statement_(ranked_ ? kScanRanked[part] : kScan[part], 0));
    q.bind_text(1, match_).bind(2, span.lo).bind(3, span.hi);
    main_.emplace(std::move(q));
    for (size_t i = 0; i < excluded_.size(); ++i) {
      SOTTO_TRY_ASSIGN(auto e, statement_(kScan[part], static_cast<int>(i) + 1));
      e.bind_text(1, excluded_[i]).bind(2, span.lo).bind(3, span.hi);
      Exclusion x;
      x.q.emplace(std::move(e));
      exclusions_.push_back(std::move(x));
    }
    return {};
  }

  Result<bool> is_excluded(int64_t docid) {
    for (Exclusion& x : exclusions_) {
      while (!x.done && x.current > docid) {
        SOTTO_TRY_ASSIGN(bool row, x.q->step());
        if (!row) {
          x.done = true;
          break;
        }
        x.current = x.q->column_int(0);
      }
      if (!x.done && x.current == docid) return true;
    }
    return false;
  }

  std::function<Result<db::Query>(const char*, int)> statement_;
  const State& state_;
  std::string match_;
  std::vector<std::string> excluded_;
  std::vector<Span> spans_;
  bool ranked_;
  int part_ = 0;
  size_t span_ = static_cast<size_t>(-1);
  std::optional<db::Query> main_;
  std::vector<Exclusion> exclusions_;
  int64_t docid_ = 0;
  ByteView info_;
};

Result<std::optional<Row>> load_row(db::Database& db, int64_t id) {
  SOTTO_TRY_ASSIGN(auto q, db.query(kMessage));
  q.bind(1, id);
  SOTTO_TRY_ASSIGN(bool found, q.step());
  if (!found) return std::optional<Row>();
  Row r;
  r.id = id;
  ByteView mid = q.column_blob(0);
  r.message_id.assign(mid.begin(), mid.end());
  r.conversation = q.column_int(1);
  r.sender = std::string(q.column_text(2));
  r.sort_ms = q.column_int(3);
  if (!q.column_is_null(4)) r.expires_ms = q.column_int(4);
  r.has_attachment = q.column_int(5) != 0;
  r.body = std::string(q.column_text(6));
  r.attachment_names = std::string(q.column_text(7));
  r.searchable =
      q.column_int(8) == 1 && q.column_int(9) == 0 && !(q.column_is_null(6) && q.column_is_null(7));
  return std::optional<Row>(std::move(r));
}

Result<Blocks> load_blocks(db::Database& db) {
  SOTTO_TRY_ASSIGN(auto q, db.query("SELECT block, min_sort_ms, max_sort_ms FROM "
                                    "search_time_blocks ORDER BY block"));
  Blocks b;
  int64_t running = std::numeric_limits<int64_t>::min();
  for (;;) {
    SOTTO_TRY_ASSIGN(bool row, q.step());
    if (!row) break;
    b.block.push_back(q.column_int(0));
    b.min_sort.push_back(q.column_int(1));
    b.max_sort.push_back(q.column_int(2));
    running = std::max(running, q.column_int(2));
    b.max_so_far.push_back(running);
  }
  return b;
}

// The hit for a row: snippet, highlights and (unless given) the BM25 score from the row's own
// text, which the index tokenizes the same way.
Result<SearchHit> make_hit(const Row& r, const std::vector<QueryTerm>& terms, const Stats& stats,
                           size_t snippet_bytes, std::optional<double> score) {
  SOTTO_TRY_ASSIGN(auto body, find_phrases(r.body, terms));
  SearchHit hit;
  hit.row = r.id;
  hit.message_id = to_hex(r.message_id);
  hit.conversation = r.conversation;
  hit.sender = r.sender;
  hit.sort_ms = static_cast<uint64_t>(r.sort_ms);
  // Attachment names: one per line; a match there shows the name it is in.
  std::optional<PhraseMatches> names_all;
  std::string_view best_line;
  std::optional<PhraseMatches> best_matches;
  if (!r.attachment_names.empty()) {
    SOTTO_TRY_ASSIGN(names_all, find_phrases(r.attachment_names, terms));
    if (body.ranges.empty() && !names_all->ranges.empty()) {
      std::string_view names = r.attachment_names;
      for (size_t start = 0; start <= names.size();) {
        size_t nl = names.find('\n', start);
        std::string_view line = names.substr(start, nl == std::string_view::npos ? nl : nl - start);
        SOTTO_TRY_ASSIGN(auto m, find_phrases(line, terms));
        if (!m.ranges.empty()) {
          best_line = line;
          best_matches = std::move(m);
          break;
        }
        if (nl == std::string_view::npos) break;
        start = nl + 1;
      }
    }
  }
  Snippet snippet;
  if (best_matches) {
    snippet = make_snippet(best_line, best_matches->ranges, snippet_bytes);
    hit.snippet_from_attachment = true;
  } else {
    snippet = make_snippet(r.body, body.ranges, snippet_bytes);
  }
  hit.snippet = std::move(snippet.text);
  hit.highlights = std::move(snippet.highlights);
  if (score) {
    hit.score = *score;
  } else {
    uint32_t length[kTextColumns] = {body.length, names_all ? names_all->length : 0};
    for (size_t p = 0; p < terms.size(); ++p) {
      uint32_t hits[kTextColumns] = {body.hits[p], names_all ? names_all->hits[p] : 0};
      hit.score += bm25(stats, p, hits, length);
    }
  }
  return hit;
}

// Everything a page needs, prepared by SearchIndex::run for either order.
struct PageContext {
  db::Database& db;
  std::function<Result<db::Query>(const char*, int)> statement;
  const SearchQuery& query;
  const ParsedQuery& parsed;
  const Filters& filters;
  const std::string& match;
  const std::vector<std::string>& excluded;
  const std::optional<Cursor>& cursor;
  const State& st;
  const Stats& stats;
};

// Newest first: walk matches in descending row id, keep the newest limit+1 by (sort_ms, id),
// and stop once no row below can be newer than all of them (search_time_blocks says so).
Result<SearchPage> newest_page(const PageContext& ctx, Cursor next, SearchPage page) {
  const size_t limit = ctx.query.limit;
  SOTTO_TRY_ASSIGN(Blocks blocks, load_blocks(ctx.db));
  int64_t lo = std::numeric_limits<int64_t>::min(), hi = std::numeric_limits<int64_t>::max();
  auto upper_block_end = [&](auto qualifies) -> std::optional<int64_t> {
    for (size_t i = blocks.block.size(); i-- > 0;)
      if (qualifies(i)) return ((blocks.block[i] + 1) << kBlockShift) - 1;
    return std::nullopt;
  };
  bool empty = false;
  if (ctx.cursor) {
    // Blocks whose every row is newer than the cursor hold nothing for this page.
    auto end = upper_block_end([&](size_t i) { return blocks.min_sort[i] <= ctx.cursor->sort_ms; });
    if (end)
      hi = std::min(hi, *end);
    else
      empty = true;
  }
  if (ctx.query.until_ms) {
    auto end = upper_block_end([&](size_t i) { return blocks.min_sort[i] < ctx.filters.until_ms; });
    if (end)
      hi = std::min(hi, *end);
    else
      empty = true;
  }
  if (ctx.query.since_ms) {
    bool found = false;
    for (size_t i = 0; i < blocks.block.size() && !found; ++i) {
      if (blocks.max_sort[i] >= ctx.filters.since_ms) {
        lo = blocks.block[i] << kBlockShift;
        found = true;
      }
    }
    empty |= !found;
  }
  using Key = std::pair<int64_t, int64_t>;  // (sort_ms, id)
  std::vector<std::pair<Key, Row>> best;    // a min-heap on Key
  auto later = [](const std::pair<Key, Row>& a, const std::pair<Key, Row>& b) {
    return a.first > b.first;
  };
  std::optional<Key> after;
  if (ctx.cursor) after = Key{ctx.cursor->sort_ms, ctx.cursor->row};
  // The times a row on this page can have.
  int64_t window_from = ctx.filters.since_ms;
  int64_t window_to = ctx.filters.until_ms == std::numeric_limits<int64_t>::max()
                          ? ctx.filters.until_ms
                          : ctx.filters.until_ms - 1;
  if (ctx.cursor) window_to = std::min(window_to, ctx.cursor->sort_ms);
  if (!empty) {
    // One range: skipping a row costs next to nothing here, a query per range does not.
    MatchStream stream(ctx.statement, ctx.st, ctx.match, ctx.excluded, {{lo, hi}}, false);
    for (;;) {
      SOTTO_TRY_ASSIGN(bool more, stream.next());
      if (!more) break;
      int64_t id = stream.docid();
      if (best.size() == limit + 1 && best.front().first.first > blocks.newest_at_or_below(id))
        break;
      // Once the page is full, a block whose rows are all older than its oldest holds nothing
      // for it: its rows are skipped unread.
      int64_t from =
          best.size() == limit + 1 ? std::max(window_from, best.front().first.first) : window_from;
      if (!blocks.may_hold(id, from, window_to)) continue;
      SOTTO_TRY_ASSIGN(auto row, load_row(ctx.db, id));
      if (!row || !ctx.filters.accept(*row)) continue;
      Key key{row->sort_ms, row->id};
      if (after && !(key < *after)) continue;
      if (best.size() == limit + 1) {
        if (!(best.front().first < key)) continue;
        std::pop_heap(best.begin(), best.end(), later);
        best.pop_back();
      }
      best.emplace_back(key, std::move(*row));
      std::push_heap(best.begin(), best.end(), later);
    }
  }
  std::sort(best.begin(), best.end(),
            [](const auto& a, const auto& b) { return a.first > b.first; });
  for (size_t i = 0; i < best.size() && i < limit; ++i) {
    SOTTO_TRY_ASSIGN(auto hit, make_hit(best[i].second, ctx.parsed.include, ctx.stats,
                                        ctx.query.snippet_bytes, std::nullopt));
    page.hits.push_back(std::move(hit));
  }
  if (best.size() > limit) {
    next.sort_ms = best[limit - 1].first.first;
    next.row = best[limit - 1].first.second;
    page.next_cursor = encode_cursor(ctx.query.order, next);
  }
  return page;
}

// By relevance: rank a window of the newest kRankWindow matches at a time. The first page fixes
// the newest row id it ranks (`snapshot`), so messages that arrive later never reshuffle the
// pages; each window is rescored alike on every page, so no match is repeated or skipped.
Result<SearchPage> relevance_page(const PageContext& ctx, Cursor next, SearchPage page) {
  const size_t limit = ctx.query.limit;
  int64_t lo = std::numeric_limits<int64_t>::min();
  Blocks blocks;
  const bool timed = ctx.query.since_ms || ctx.query.until_ms;
  if (timed) {
    SOTTO_TRY_ASSIGN(blocks, load_blocks(ctx.db));
    if (ctx.query.since_ms) {
      lo = std::numeric_limits<int64_t>::max();
      for (size_t i = 0; i < blocks.block.size(); ++i)
        if (blocks.max_sort[i] >= ctx.filters.since_ms) {
          lo = blocks.block[i] << kBlockShift;
          break;
        }
    }
  }
  const int64_t until_last =
      ctx.query.until_ms ? ctx.filters.until_ms - 1 : std::numeric_limits<int64_t>::max();
  if (ctx.cursor) {
    next.snapshot = ctx.cursor->snapshot;
  } else {
    SOTTO_TRY_ASSIGN(auto q, ctx.db.query("SELECT coalesce((SELECT max(id) FROM messages), 0)"));
    SOTTO_TRY_ASSIGN(bool row, q.step());
    next.snapshot = row ? q.column_int(0) : 0;
  }
  // The window being ranked: [window_lo, window_hi], window_lo unknown until its
  // kRankWindow-th match is found (`window_known`).
  int64_t window_hi = ctx.cursor ? ctx.cursor->window_hi : next.snapshot;
  if (ctx.query.until_ms) {
    // Rows in blocks wholly at or after until_ms are not candidates: start below them (the
    // windows are computed alike on every page, so this is part of their definition).
    int64_t top = std::numeric_limits<int64_t>::min();
    for (size_t i = blocks.block.size(); i-- > 0;)
      if (blocks.min_sort[i] < ctx.filters.until_ms) {
        top = ((blocks.block[i] + 1) << kBlockShift) - 1;
        break;
      }
    window_hi = std::min(window_hi, top);
  }
  int64_t window_lo = ctx.cursor ? ctx.cursor->window_lo : 0;
  bool window_known = ctx.cursor.has_value();
  bool last_window = ctx.cursor && ctx.cursor->last_window != 0;
  // Within the cursor's window, only what ranks after the cursor's hit: (score, id) below.
  bool skip_to_cursor = ctx.cursor.has_value();
  double after_score = ctx.cursor ? ctx.cursor->score : 0;
  int64_t after_row = ctx.cursor ? ctx.cursor->row : 0;
  const size_t phrases = ctx.parsed.include.size();
  struct Ranked {
    double score;
    int64_t id;
  };
  struct Found {
    SearchHit hit;
    int64_t window_hi, window_lo;
    bool last_window;
  };
  std::vector<Found> found;
  while (found.size() <= limit && window_hi >= lo) {
    std::vector<Ranked> ranked;
    {
      int64_t scan_lo = window_known ? std::max(window_lo, lo) : lo;
      std::vector<Span> spans{{scan_lo, window_hi}};
      if (timed)
        spans = blocks.spans_may_hold(scan_lo, window_hi, ctx.filters.since_ms, until_last);
      MatchStream stream(ctx.statement, ctx.st, ctx.match, ctx.excluded, std::move(spans), true);
      for (;;) {
        if (!window_known && ranked.size() == kRankWindow) break;
        SOTTO_TRY_ASSIGN(bool more, stream.next());
        if (!more) {
          if (!window_known) last_window = true;
          break;
        }
        // Rows whose block lies outside the time filter are not candidates at all.
        if (timed && !blocks.may_hold(stream.docid(), ctx.filters.since_ms, until_last)) continue;
        ByteView info = stream.info();
        size_t words = phrases * kColumns + kColumns;  // 'y' for every phrase, then 'l'
        // Filter tokens are phrases too: 'y' has a slot per phrase of the whole expression.
        size_t all_phrases = (info.size() / 4 - kColumns) / kColumns;
        if (info.size() % 4 != 0 || info.size() / 4 < words || all_phrases < phrases)
          return make_error(ErrorCode::kStorageCorrupt,
                            "the search index returned malformed "
                            "match information");
        std::vector<uint32_t> v(info.size() / 4);
        std::memcpy(v.data(), info.data(), info.size());
        const uint32_t* length = v.data() + all_phrases * kColumns;
        double score = 0;
        for (size_t p = 0; p < phrases; ++p)
          score += bm25(ctx.stats, p, v.data() + p * kColumns, length);
        ranked.push_back({score, stream.docid()});
      }
    }
    if (!window_known) {
      window_lo = ranked.empty() ? lo : ranked.back().id;
      window_known = true;
    }
    std::sort(ranked.begin(), ranked.end(), [](const Ranked& a, const Ranked& b) {
      return a.score != b.score ? a.score > b.score : a.id > b.id;
    });
    for (const Ranked& c : ranked) {
      if (skip_to_cursor &&
          !(c.score < after_score || (c.score == after_score && c.id < after_row)))
        continue;
      SOTTO_TRY_ASSIGN(auto row, load_row(ctx.db, c.id));
      if (!row || !ctx.filters.accept(*row)) continue;
      SOTTO_TRY_ASSIGN(auto hit, make_hit(*row, ctx.parsed.include, ctx.stats,
                                          ctx.query.snippet_bytes, c.score));
      found.push_back({std::move(hit), window_hi, window_lo, last_window});
      if (found.size() > limit) break;
    }
    if (found.size() > limit || last_window) break;
    window_hi = window_lo - 1;
    window_known = false;
    skip_to_cursor = false;
  }
  for (size_t i = 0; i < found.size() && i < limit; ++i) page.hits.push_back(found[i].hit);
  if (found.size() > limit) {
    const Found& f = found[limit - 1];
    next.window_hi = f.window_hi;
    next.window_lo = f.window_lo;
    next.last_window = f.last_window ? 1 : 0;
    next.score = f.hit.score;
    next.row = f.hit.row;
    page.next_cursor = encode_cursor(ctx.query.order, next);
  }
  return page;
}

}  // namespace

Result<SearchPage> SearchIndex::search(const SearchQuery& query) {
  auto page = run(query);
  if (page.ok() || db_.depth() > 0) return page;
  if (page.code() != ErrorCode::kStorageCorrupt && page.code() != ErrorCode::kInternal) return page;
  // FTS failed reading the index (SQLite 3.15 reports a missing segment block as a plain
  // error): if the index is damaged, start over. Until the rebuild has run, searches say that
  // they are incomplete instead of failing.
  SOTTO_TRY_ASSIGN(std::string problem, find_damage());
  if (problem.empty()) return page;
  SOTTO_TRY(start_rebuild());
  return run(query);
}

Result<std::string> SearchIndex::find_damage() {
  std::string problems;
  auto note = [&](const std::string& problem) {
    if (!problems.empty()) problems += "; ";
    problems += problem;
  };
  auto st = load_state();
  if (!st.ok()) {
    note(st.error().message);
    return problems;
  }
  for (int part = 0; part < kParts; ++part) {
    // A read error inside the index is damage too; other failures (full disk, I/O) are not.
    auto r = verify_part(db_, kPartNames[part]);
    std::string where = part == kRecent ? "recent index: " : "archive index: ";
    if (!r.ok() && r.code() != ErrorCode::kStorageCorrupt && r.code() != ErrorCode::kInternal)
      return std::move(r).error();
    if (!r.ok())
      note(where + r.error().message);
    else if (!r->empty())
      note(where + *r);
  }
  // Every message inside its block's time bounds (newest-first pages rely on them).
  SOTTO_TRY_ASSIGN(auto q, db_.query("SELECT count(*) FROM messages m LEFT JOIN "
                                     "search_time_blocks b ON b.block = m.id >> 10 WHERE b.block "
                                     "IS NULL OR m.sort_ms < b.min_sort_ms OR m.sort_ms > "
                                     "b.max_sort_ms"));
  SOTTO_TRY_ASSIGN(bool row, q.step());
  if (row && q.column_int(0) > 0)
    note(std::to_string(q.column_int(0)) + " messages outside their time bounds");
  return problems;
}

Result<SearchPage> SearchIndex::run(const SearchQuery& query) {
  if (query.limit == 0 || query.limit > kMaxLimit)
    return invalid("ask for 1.." + std::to_string(kMaxLimit) + " hits per page");
  if (query.snippet_bytes < 32 || query.snippet_bytes > 1024)
    return invalid("snippet_bytes must be 32..1024");
  if (query.conversations.size() > kMaxFilterValues || query.senders.size() > kMaxFilterValues)
    return invalid("filter on at most " + std::to_string(kMaxFilterValues) +
                   " conversations and senders");
  if (query.since_ms && query.until_ms && query.since_ms >= query.until_ms)
    return invalid("since_ms must be earlier than until_ms");
  if (query.order != SearchOrder::kNewest && query.order != SearchOrder::kRelevance)
    return invalid("unknown search order");
  SOTTO_TRY_ASSIGN(auto parsed, parse_query(query.text));

  for (int64_t c : query.conversations)
    if (c <= 0) return invalid("conversation ids are positive; got " + std::to_string(c));
  Filters filters;
  filters.conversations = query.conversations;
  std::sort(filters.conversations.begin(), filters.conversations.end());
  for (const std::string& s : query.senders) {
    if (!is_hex_account(s))
      return invalid("\"" + s.substr(0, 40) + "\" is not an account id (32 hex digits)");
    filters.senders.push_back(lower(s));
  }
  std::sort(filters.senders.begin(), filters.senders.end());
  auto to_ms = [](uint64_t v) {
    return static_cast<int64_t>(std::min<uint64_t>(v, std::numeric_limits<int64_t>::max()));
  };
  if (query.since_ms) filters.since_ms = to_ms(query.since_ms);
  if (query.until_ms) filters.until_ms = to_ms(query.until_ms);
  filters.attachments = query.with_attachments_only;
  filters.now_ms = to_ms(now_ms_());

  // The MATCH expression: the included phrases, then the filters as tokens of the meta column
  // (a column filter only applies to a bare token, hence no quotes there).
  std::string match = match_all(parsed.include);
  auto any_of = [&](const std::vector<std::string>& tokens) {
    match += ' ';
    for (size_t i = 0; i < tokens.size(); ++i) {
      if (i) match += " OR ";
      match += "meta:";
      match += kFilterMark;
      match += tokens[i];
    }
  };
  std::vector<std::string> tokens;
  for (int64_t c : filters.conversations) tokens.push_back("c" + std::to_string(c));
  if (!tokens.empty()) any_of(tokens);
  tokens.clear();
  for (const std::string& s : filters.senders) tokens.push_back("s" + s);
  if (!tokens.empty()) any_of(tokens);
  if (filters.attachments) any_of({"a"});
  std::vector<std::string> excluded;
  for (const QueryTerm& t : parsed.exclude) excluded.push_back(match_phrase(t));

  std::string fingerprint_text =
      std::to_string(static_cast<int>(query.order)) + "|" + parsed.canonical + "|" + match + "|" +
      std::to_string(filters.since_ms) + "|" + std::to_string(filters.until_ms);
  uint64_t fingerprint = fnv1a(fingerprint_text);
  std::optional<Cursor> cursor;
  if (!query.cursor.empty()) {
    SOTTO_TRY_ASSIGN(cursor,
                     decode_cursor(query.cursor, query.order, fingerprint, parsed.include.size()));
  }

  SOTTO_TRY(flush_now());
  SOTTO_TRY_ASSIGN(State st, load_state());
  SearchPage page;
  page.index_complete = !st.rebuild_next.has_value();

  Stats stats;
  if (cursor) {
    stats = cursor->stats;
  } else {
    PartStats parts[kParts];
    for (int part = 0; part < kParts; ++part) {
      SOTTO_TRY_ASSIGN(parts[part], part_stats(db_, part));
    }
    stats.documents = static_cast<double>(parts[kRecent].documents + parts[kArchive].documents);
    for (int c = 0; c < kTextColumns; ++c)
      stats.average_length[c] =
          stats.documents > 0
              ? static_cast<double>(parts[kRecent].tokens[c] + parts[kArchive].tokens[c]) /
                    stats.documents
              : 0;
    // Document frequency per word, counted up to a cap in each part and estimated beyond it
    // from the share of the part's row ids that the counted matches covered.
    int64_t max_id = 0, min_id = 0;
    {
      // One aggregate per SELECT: SQLite answers a lone min() or max() from the b-tree's edge,
      // but scans the whole table for both at once.
      SOTTO_TRY_ASSIGN(auto q, db_.query("SELECT coalesce((SELECT max(id) FROM messages), 0), "
                                         "coalesce((SELECT min(id) FROM messages), 0)"));
      SOTTO_TRY_ASSIGN(bool any, q.step());
      if (any) {
        max_id = q.column_int(0);
        min_id = q.column_int(1);
      }
    }
    std::map<std::string, double> idf_of;  // by word phrase, for words used twice
    for (const QueryTerm& t : parsed.include) {
      double idf = 0;
      for (const Token& token : t.tokens) {
        const std::string phrase = "\"" + word_phrase(token) + "\"";
        auto known = idf_of.find(phrase);
        if (known != idf_of.end()) {
          idf += known->second;
          continue;
        }
        double df = 0;
        for (int part = 0; part < kParts; ++part) {
          SOTTO_TRY_ASSIGN(auto q, statement(kCountCapped[part], 0));
          q.bind_text(1, phrase).bind(2, kFrequencyCap);
          SOTTO_TRY_ASSIGN(bool row, q.step());
          if (!row) continue;
          int64_t n = q.column_int(0);
          if (n < kFrequencyCap) {
            df += static_cast<double>(n);
            continue;
          }
          Span span = part_span(part, st, min_id, max_id);
          double covered = static_cast<double>(span.hi - q.column_int(1) + 1);
          double whole = static_cast<double>(span.hi - span.lo + 1);
          df += std::min(static_cast<double>(parts[part].documents),
                         static_cast<double>(n) * whole / std::max(covered, 1.0));
        }
        double word_idf = std::log(1.0 + (stats.documents - df + 0.5) / (df + 0.5));
        idf_of.emplace(phrase, word_idf);
        idf += word_idf;
      }
      stats.idf.push_back(idf);
    }
  }

  auto statements = [this](const char* sql, int slot) { return statement(sql, slot); };
  PageContext ctx{db_, statements, query, parsed, filters, match, excluded, cursor, st, stats};
  Cursor next;
  next.fingerprint = fingerprint;
  next.stats = stats;
  return query.order == SearchOrder::kNewest
             ? newest_page(ctx, std::move(next), std::move(page))
             : relevance_page(ctx, std::move(next), std::move(page));
}

Result<SearchIndexStatus> SearchIndex::status() {
  SOTTO_TRY(flush_now());
  SOTTO_TRY_ASSIGN(State st, load_state());
  SearchIndexStatus s;
  for (int part = 0; part < kParts; ++part) {
    SOTTO_TRY_ASSIGN(auto ps, part_stats(db_, part));
    s.indexed_messages += static_cast<uint64_t>(ps.documents);
    SOTTO_TRY_ASSIGN(auto q, db_.query(kPartBytes[part]));
    SOTTO_TRY_ASSIGN(bool row, q.step());
    if (row) s.index_bytes += static_cast<uint64_t>(q.column_int(0));
  }
  s.pending_purge = static_cast<uint64_t>(st.purge[kRecent] + st.purge[kArchive]);
  s.pending_purge_archive = static_cast<uint64_t>(st.purge[kArchive]);
  if (st.rebuild_next) {
    s.rebuilding = true;
    SOTTO_TRY_ASSIGN(auto q, db_.query("SELECT count(*) FROM messages WHERE id < ?"));
    q.bind(1, *st.rebuild_next);
    SOTTO_TRY_ASSIGN(bool row, q.step());
    s.rebuild.done = row ? static_cast<uint64_t>(q.column_int(0)) : 0;
    s.rebuild.total = std::max(static_cast<uint64_t>(st.rebuild_total), s.rebuild.done);
  }
  return s;
}

// Empties the index and marks every message as waiting for the rebuild, in one transaction.
Status SearchIndex::start_rebuild() {
  if (db_.depth() != 0)
    return make_error(ErrorCode::kInvalidState,
                      "cannot rebuild the search index inside a "
                      "transaction");
  ScopedTransaction txn(db_);
  SOTTO_TRY(txn.begin());
  SOTTO_TRY(db_.exec("DELETE FROM search_queue"));
  // Dropping the tables frees their pages, which secure_delete overwrites: a damaged index
  // leaves nothing behind, and no segment has to be readable to go.
  for (int part = 0; part < kParts; ++part) {
    SOTTO_TRY(db_.exec(kDropPart[part]));
    SOTTO_TRY(db_.exec(kCreatePart[part]));
  }
  SOTTO_TRY(db_.exec(
      "UPDATE search_state SET recent_from = coalesce((SELECT max(id) FROM messages), 0) + 1, "
      "rebuild_next = (SELECT min(id) FROM messages), rebuild_total = (SELECT count(*) FROM "
      "messages), purge_recent = 0, purge_archive = 0, purge_archive_since_ms = NULL WHERE id = "
      "1"));
  // The time bounds are rebuilt too: cheap, and they may be what was damaged.
  SOTTO_TRY(db_.exec("DELETE FROM search_time_blocks"));
  SOTTO_TRY(
      db_.exec("INSERT INTO search_time_blocks SELECT id >> 10, min(sort_ms), "
               "max(sort_ms) FROM messages GROUP BY id >> 10"));
  return txn.commit();
}

Status SearchIndex::continue_rebuild(const SearchProgressHandler& progress) {
  SOTTO_TRY_ASSIGN(State st, load_state());
  if (!st.rebuild_next) return {};
  SearchProgress p;
  {
    SOTTO_TRY_ASSIGN(auto q, db_.query("SELECT count(*) FROM messages WHERE id < ?"));
    q.bind(1, *st.rebuild_next);
    SOTTO_TRY_ASSIGN(bool row, q.step());
    p.done = row ? static_cast<uint64_t>(q.column_int(0)) : 0;
  }
  while (st.rebuild_next) {
    int64_t from = *st.rebuild_next;
    std::optional<int64_t> to;
    uint64_t batch = 0;
    {
      ScopedTransaction txn(db_);
      SOTTO_TRY(txn.begin());
      {
        SOTTO_TRY_ASSIGN(auto q, db_.query("SELECT id FROM messages WHERE id >= ? ORDER BY id "
                                           "LIMIT 1 OFFSET ?"));
        q.bind(1, from).bind(2, kRebuildBatch);
        SOTTO_TRY_ASSIGN(bool row, q.step());
        if (row) to = q.column_int(0);
      }
      {
        SOTTO_TRY_ASSIGN(auto q, db_.query("SELECT count(*) FROM messages WHERE id >= ?1 AND "
                                           "id < coalesce(?2, 9223372036854775807)"));
        q.bind(1, from);
        if (to)
          q.bind(2, *to);
        else
          q.bind_null(2);
        SOTTO_TRY_ASSIGN(bool row, q.step());
        batch = row ? static_cast<uint64_t>(q.column_int(0)) : 0;
      }
      for (int part = 0; part < kParts; ++part) {
        SOTTO_TRY_ASSIGN(auto q, db_.query(kIndexRange[part]));
        q.bind(1, from);
        if (to)
          q.bind(2, *to);
        else
          q.bind_null(2);
        SOTTO_TRY(q.run());
      }
      {
        SOTTO_TRY_ASSIGN(auto q,
                         db_.query("UPDATE search_state SET rebuild_next = ? WHERE id = 1"));
        if (to)
          q.bind(1, *to);
        else
          q.bind_null(1);
        SOTTO_TRY(q.run());
      }
      SOTTO_TRY(txn.commit());
    }
    st.rebuild_next = to;
    p.done += batch;
    p.total = std::max<uint64_t>(p.done, static_cast<uint64_t>(st.rebuild_total));
    if (progress && !progress(p) && to)
      return make_error(ErrorCode::kCancelled,
                        "the search index rebuild was paused; call rebuild_search_index() again "
                        "to carry on from here");
  }
  return {};
}

Status SearchIndex::rebuild(const SearchProgressHandler& progress) {
  if (db_.depth() != 0)
    return make_error(ErrorCode::kInvalidState,
                      "cannot rebuild the search index inside a "
                      "transaction");
  SOTTO_TRY_ASSIGN(State st, load_state());
  if (!st.rebuild_next) SOTTO_TRY(start_rebuild());
  return continue_rebuild(progress);
}

Result<SearchIndexCheck> SearchIndex::check(const SearchProgressHandler& progress) {
  if (db_.depth() != 0)
    return make_error(ErrorCode::kInvalidState,
                      "cannot check the search index inside a "
                      "transaction");
  SearchIndexCheck out;
  Status flushed = flush_now();
  if (!flushed.ok())
    out.problem = "queued messages could not be indexed: " + flushed.error().message;
  SOTTO_TRY_ASSIGN(std::string problem, find_damage());
  if (!problem.empty()) out.problem += (out.problem.empty() ? "" : "; ") + problem;
  out.damaged = !out.problem.empty();
  if (out.damaged) {
    SOTTO_TRY(start_rebuild());
    out.rebuilt = true;
  }
  // A rebuild that was under way (or just started) goes on.
  SOTTO_TRY(continue_rebuild(progress));
  return out;
}

Status SearchIndex::purge(SearchPurge what) {
  if (db_.depth() != 0)
    return make_error(ErrorCode::kInvalidState,
                      "cannot purge the search index inside a "
                      "transaction");
  SOTTO_TRY(flush_now());
  SOTTO_TRY_ASSIGN(State st, load_state());
  SOTTO_TRY_ASSIGN(auto recent, part_stats(db_, kRecent));
  SOTTO_TRY_ASSIGN(auto archive, part_stats(db_, kArchive));
  const int64_t now =
      static_cast<int64_t>(std::min<uint64_t>(now_ms_(), std::numeric_limits<int64_t>::max()));
  // A rewrite of a part costs about the same per document in either part, and a purge of the
  // recent part rewrites 5,000-20,000 of them. Rewriting the archive (n documents) once every
  // n / that many deletions costs each deletion no more; until then its words stay, hidden by
  // FTS4's delete markers from every search.
  const int64_t recent_size = std::clamp(recent.documents, kRecentKeep, kRecentFoldAt);
  const bool archive_due =
      st.purge[kArchive] > 0 &&
      (what == SearchPurge::kEverything || st.purge[kArchive] * recent_size >= archive.documents ||
       (st.purge_archive_since_ms && now - *st.purge_archive_since_ms >= kArchiveEraseWithinMs));
  {
    ScopedTransaction txn(db_);
    SOTTO_TRY(txn.begin());
    if (recent.documents > kRecentFoldAt && !st.rebuild_next) {
      // Move all but the newest kRecentKeep documents to the archive, and write the recent
      // part anew: a purge of it stays cheap however long the profile lives.
      // The queue is empty (flushed above) and no rebuild runs, so the recent part holds
      // exactly search_source's rows from recent_from on. Read them by row-id range: through
      // the part's view (a join with search_state and search_queue) SQLite scanned every
      // message, and a fold took seconds on a long history.
      int64_t keep_from = st.recent_from;
      {
        SOTTO_TRY_ASSIGN(auto q, db_.query("SELECT docid FROM search_source WHERE docid >= ? "
                                           "ORDER BY docid DESC LIMIT 1 OFFSET ?"));
        q.bind(1, st.recent_from).bind(2, kRecentKeep - 1);
        SOTTO_TRY_ASSIGN(bool row, q.step());
        if (row) keep_from = q.column_int(0);
      }
      {
        SOTTO_TRY_ASSIGN(
            auto q,
            db_.query(
                "INSERT INTO search_archive (docid, body, attachment_names, meta) SELECT docid, "
                "body, attachment_names, meta FROM search_source WHERE docid >= ? AND docid < ? "
                "ORDER BY docid"));
        q.bind(1, st.recent_from).bind(2, keep_from);
        SOTTO_TRY(q.run());
      }
      SOTTO_TRY(db_.exec(kDropPart[kRecent]));
      SOTTO_TRY(db_.exec(kCreatePart[kRecent]));
      {
        SOTTO_TRY_ASSIGN(auto q, db_.query("UPDATE search_state SET recent_from = ? WHERE id = 1"));
        q.bind(1, keep_from);
        SOTTO_TRY(q.run());
      }
      {
        SOTTO_TRY_ASSIGN(auto q, db_.query("INSERT INTO search_recent (docid, body, "
                                           "attachment_names, meta) SELECT docid, body, "
                                           "attachment_names, meta FROM search_source WHERE "
                                           "docid >= ? ORDER BY docid"));
        q.bind(1, keep_from);
        SOTTO_TRY(q.run());
      }
    } else if (st.purge[kRecent] > 0) {
      SOTTO_TRY(db_.exec(kOptimize[kRecent]));
    }
    if (archive_due) {
      SOTTO_TRY(db_.exec(kOptimize[kArchive]));
      SOTTO_TRY(db_.exec(
          "UPDATE search_state SET purge_archive = 0, purge_archive_since_ms = NULL WHERE id = 1"));
    } else if (st.purge[kArchive] > 0 && !st.purge_archive_since_ms) {
      SOTTO_TRY_ASSIGN(auto q, db_.query("UPDATE search_state SET purge_archive_since_ms = ? "
                                         "WHERE id = 1"));
      q.bind(1, now);
      SOTTO_TRY(q.run());
    }
    SOTTO_TRY(db_.exec("UPDATE search_state SET purge_recent = 0 WHERE id = 1"));
    SOTTO_TRY(txn.commit());
  }
  // Old page images stay in the WAL file until it is reset: copy everything into the database
  // and cut the WAL to zero bytes.
  SOTTO_TRY_ASSIGN(auto q, db_.query("PRAGMA wal_checkpoint(TRUNCATE)"));
  SOTTO_TRY_ASSIGN(bool row, q.step());
  if (row && q.column_int(0) != 0)
    return make_error(ErrorCode::kBusy,
                      "the purge could not reset the database's write-ahead "
                      "log because another connection is reading it; retry");
  return {};
}

}  // namespace sotto::search
