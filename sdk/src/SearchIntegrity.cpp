#include "SearchIntegrity.h"

#include <sqlcipher/sqlite3.h>

#include <algorithm>
#include <cstdlib>
#include <memory>
#include <vector>

#include "SearchTokenizer.h"

namespace sotto::search {
namespace {

constexpr int kIndexes = 2;  // the terms, then their prefix_bytes-byte prefixes
constexpr int kLevelsPerIndex = 1024;

// A statement of our own (the table names are not constants the Database could cache).
class Statement {
 public:
  Statement(db::Database& db, const std::string& sql) : db_(db) {
    rc_ = sqlite3_prepare_v2(db.handle(), sql.c_str(), -1, &stmt_, nullptr);
  }
  ~Statement() { sqlite3_finalize(stmt_); }
  Statement(const Statement&) = delete;
  Statement& operator=(const Statement&) = delete;

  Result<bool> step() {
    if (rc_ != SQLITE_OK) return db_.error(rc_, "preparing the index check");
    int rc = sqlite3_step(stmt_);
    if (rc == SQLITE_ROW) return true;
    if (rc == SQLITE_DONE) return false;
    return db_.error(rc, "checking the search index");
  }
  void reset() { sqlite3_reset(stmt_); }
  sqlite3_stmt* get() { return stmt_; }
  int64_t integer(int column) { return sqlite3_column_int64(stmt_, column); }
  ByteView blob(int column) {
    const void* p = sqlite3_column_blob(stmt_, column);
    int n = sqlite3_column_bytes(stmt_, column);
    return p ? ByteView(static_cast<const uint8_t*>(p), static_cast<size_t>(n)) : ByteView();
  }
  std::string_view text(int column) {
    const unsigned char* p = sqlite3_column_text(stmt_, column);
    int n = sqlite3_column_bytes(stmt_, column);
    return p ? std::string_view(reinterpret_cast<const char*>(p), static_cast<size_t>(n))
             : std::string_view();
  }
  bool is_null(int column) { return sqlite3_column_type(stmt_, column) == SQLITE_NULL; }

 private:
  db::Database& db_;
  sqlite3_stmt* stmt_ = nullptr;
  int rc_ = SQLITE_OK;
};

uint64_t entry_hash(std::string_view term, int64_t docid, int64_t column, int64_t position) {
  uint64_t h = 1469598103934665603ull;
  for (unsigned char c : term) h = (h ^ c) * 1099511628211ull;
  for (uint64_t v : {static_cast<uint64_t>(docid), static_cast<uint64_t>(column),
                     static_cast<uint64_t>(position)}) {
    h ^= v + 0x9E3779B97F4A7C15ull + (h << 6) + (h >> 2);
    h ^= h >> 31;
    h *= 0xBF58476D1CE4E5B9ull;
  }
  return h ^ (h >> 29);
}

// FTS varints: 7 bits a byte, least significant first. false when they run past `end`.
bool read_varint(ByteView data, size_t& pos, uint64_t& out) {
  out = 0;
  for (int shift = 0; shift < 64; shift += 7) {
    if (pos >= data.size()) return false;
    uint8_t b = data[pos++];
    out |= uint64_t{b & 0x7Fu} << shift;
    if (!(b & 0x80)) return true;
  }
  return false;
}

// The terms of one segment, in order, with their doclists.
class SegmentReader {
 public:
  SegmentReader(db::Database& db, const std::string& segments_table, Bytes root,
                int64_t start_block, int64_t leaves_end)
      : block_query_(db, "SELECT block FROM \"" + segments_table + "\" WHERE blockid = ?"),
        next_block_(start_block),
        end_block_(leaves_end) {
    if (start_block == 0) {
      node_ = std::move(root);  // a root-only segment: the root is its one leaf
      next_block_ = 1;
      end_block_ = 0;
    }
  }

  // false at the end, or when the segment does not parse (then `damage` says why).
  Result<bool> next(std::string& damage) {
    while (pos_ >= node_.size()) {
      if (next_block_ > end_block_ || next_block_ <= 0) return false;
      sqlite3_bind_int64(block_query_.get(), 1, next_block_);
      SOTTO_TRY_ASSIGN(bool row, block_query_.step());
      if (!row) {
        damage = "leaf block " + std::to_string(next_block_) + " is missing";
        return false;
      }
      ByteView b = block_query_.blob(0);
      node_.assign(b.begin(), b.end());
      block_query_.reset();
      pos_ = 0;
      ++next_block_;
      if (node_.empty() || node_[0] != 0) {
        damage = "a leaf block is not a leaf";
        return false;
      }
    }
    uint64_t prefix = 0, suffix = 0, size = 0;
    ByteView node(node_);
    if (!read_varint(node, pos_, prefix) || !read_varint(node, pos_, suffix) || suffix == 0 ||
        prefix > term_.size() || suffix > node.size() - pos_) {
      damage = "a term in a segment is malformed";
      return false;
    }
    term_.resize(prefix);
    term_.append(reinterpret_cast<const char*>(node_.data() + pos_), suffix);
    pos_ += suffix;
    if (!read_varint(node, pos_, size) || size == 0 || size > node.size() - pos_ ||
        node_[pos_ + size - 1] != 0) {
      damage = "a doclist in a segment is malformed";
      return false;
    }
    doclist_ = node.subspan(pos_, size);
    pos_ += size;
    return true;
  }
  const std::string& term() const { return term_; }
  ByteView doclist() const { return doclist_; }

 private:
  Statement block_query_;
  Bytes node_;
  size_t pos_ = 0;
  int64_t next_block_, end_block_;
  std::string term_;
  ByteView doclist_;
};

// The documents of one doclist (order=desc: row ids descending).
struct DocIterator {
  ByteView data;
  size_t pos = 0;
  bool started = false;
  int64_t docid = 0;
  ByteView positions;  // without the terminating 0x00; empty: a deletion marker
  bool at_end = false;

  // false and `damage` set when the list does not parse.
  bool next(std::string& damage) {
    while (pos < data.size() && data[pos] == 0 && started) ++pos;
    if (pos >= data.size()) {
      at_end = true;
      return true;
    }
    uint64_t delta = 0;
    if (!read_varint(data, pos, delta)) {
      damage = "a row id in a doclist is malformed";
      return false;
    }
    int64_t previous = docid;
    docid = started ? static_cast<int64_t>(static_cast<uint64_t>(docid) - delta)
                    : static_cast<int64_t>(delta);
    if (started && docid >= previous) {
      damage = "a doclist is out of order";
      return false;
    }
    started = true;
    size_t begin = pos;
    bool continuation = false;
    while (pos < data.size() && (data[pos] != 0 || continuation)) continuation = data[pos++] & 0x80;
    if (pos >= data.size()) {
      damage = "a position list is not terminated";
      return false;
    }
    positions = data.subspan(begin, pos - begin);
    ++pos;  // the terminator
    return true;
  }
};

// Walks a segment's interior nodes: every node parses, separator terms ascend, and the
// height-1 nodes point at exactly the leaf blocks [start_block, leaves_end], in order. (The
// leaves themselves are read by SegmentReader.)
class InteriorCheck {
 public:
  InteriorCheck(db::Database& db, const std::string& segments_table, int64_t start_block,
                int64_t leaves_end, int64_t end_block)
      : block_query_(db, "SELECT block FROM \"" + segments_table + "\" WHERE blockid = ?"),
        next_leaf_(start_block),
        leaves_end_(leaves_end),
        end_block_(end_block) {}

  // What is wrong, or an empty string.
  Result<std::string> run(ByteView root) {
    SOTTO_TRY_ASSIGN(std::string damage, visit(root, 0));
    if (damage.empty() && next_leaf_ != leaves_end_ + 1)
      damage = "a segment's interior nodes do not reach all of its leaves";
    return damage;
  }

 private:
  Result<std::string> visit(ByteView node, int depth) {
    auto bad = [](const char* what) { return std::string(what); };
    size_t pos = 0;
    uint64_t height = 0, child = 0;
    if (depth > 32 || !read_varint(node, pos, height) || height == 0 ||
        !read_varint(node, pos, child))
      return bad("a segment's interior node is malformed");
    std::string term, previous;
    uint64_t children = 1;
    for (bool first = true; pos < node.size(); first = false) {
      uint64_t prefix = 0, suffix = 0;
      if ((!first && !read_varint(node, pos, prefix)) || !read_varint(node, pos, suffix) ||
          suffix == 0 || prefix > term.size() || suffix > node.size() - pos)
        return bad("a separator in a segment's interior node is malformed");
      term.resize(prefix);
      term.append(reinterpret_cast<const char*>(node.data() + pos), suffix);
      pos += suffix;
      if (!first && !(previous < term)) return bad("a segment's interior node is out of order");
      previous = term;
      ++children;
    }
    for (uint64_t i = 0; i < children; ++i) {
      int64_t id = static_cast<int64_t>(child + i);
      if (height == 1) {
        if (id != next_leaf_) return bad("a segment's interior node points at a wrong leaf");
        ++next_leaf_;
        continue;
      }
      if (id <= leaves_end_ || id > end_block_)
        return bad("a segment's interior node points outside the segment");
      sqlite3_bind_int64(block_query_.get(), 1, id);
      SOTTO_TRY_ASSIGN(bool row, block_query_.step());
      if (!row) return bad("an interior block of a segment is missing");
      ByteView b = block_query_.blob(0);
      Bytes copy(b.begin(), b.end());
      block_query_.reset();
      SOTTO_TRY_ASSIGN(std::string damage, visit(copy, depth + 1));
      if (!damage.empty()) return damage;
      // The child's height must be one less than ours.
      size_t p = 0;
      uint64_t child_height = 0;
      if (!read_varint(copy, p, child_height) || child_height + 1 != height)
        return bad("a segment's interior node has a child of the wrong height");
    }
    return std::string();
  }

  Statement block_query_;
  int64_t next_leaf_, leaves_end_, end_block_;
};

// Sum of entry_hash over the live postings of one index (0: terms, 1: prefixes).
Result<uint64_t> index_checksum(db::Database& db, const PartNames& part, int index,
                                std::string& damage) {
  std::string table = part.table;
  // end_block is "<block> <leaf bytes>" text where FTS4 tracks incremental merges.
  Statement segdir(db,
                   "SELECT start_block, leaves_end_block, root, CAST(end_block AS TEXT) "
                   "FROM \"" +
                       table +
                       "_segdir\" WHERE level BETWEEN ? AND ? ORDER BY level "
                       "ASC, idx DESC");
  sqlite3_bind_int64(segdir.get(), 1, index * kLevelsPerIndex);
  sqlite3_bind_int64(segdir.get(), 2, (index + 1) * kLevelsPerIndex - 1);
  // Newest segment first: on the same term and row the newest entry is the one that counts.
  std::vector<std::unique_ptr<SegmentReader>> segments;
  for (;;) {
    SOTTO_TRY_ASSIGN(bool row, segdir.step());
    if (!row) break;
    ByteView root = segdir.blob(2);
    if (segdir.integer(0) != 0) {
      int64_t end_block = std::atoll(std::string(segdir.text(3)).c_str());
      InteriorCheck interior(db, table + "_segments", segdir.integer(0), segdir.integer(1),
                             end_block);
      SOTTO_TRY_ASSIGN(damage, interior.run(root));
      if (!damage.empty()) return uint64_t{0};
    } else if (root.empty() || root[0] != 0) {
      damage = "a root-only segment is not a leaf";
      return uint64_t{0};
    }
    segments.push_back(std::make_unique<SegmentReader>(db, table + "_segments",
                                                       Bytes(root.begin(), root.end()),
                                                       segdir.integer(0), segdir.integer(1)));
  }
  std::vector<bool> live(segments.size(), false);
  for (size_t i = 0; i < segments.size(); ++i) {
    SOTTO_TRY_ASSIGN(live[i], segments[i]->next(damage));
    if (!damage.empty()) return uint64_t{0};
  }
  uint64_t sum = 0;
  for (;;) {
    // The smallest term among the segments, and the segments that hold it.
    const std::string* term = nullptr;
    for (size_t i = 0; i < segments.size(); ++i)
      if (live[i] && (!term || segments[i]->term() < *term)) term = &segments[i]->term();
    if (!term) break;
    std::string current = *term;
    std::vector<DocIterator> docs;
    std::vector<size_t> holders;
    for (size_t i = 0; i < segments.size(); ++i) {
      if (!live[i] || segments[i]->term() != current) continue;
      DocIterator it;
      it.data = segments[i]->doclist();
      if (!it.next(damage)) return uint64_t{0};
      docs.push_back(it);
      holders.push_back(i);
    }
    // Merge by row id, descending; the newest segment's entry wins.
    for (;;) {
      bool any = false;
      int64_t top = 0;
      for (const auto& d : docs) {
        if (!d.at_end && (!any || d.docid > top)) top = d.docid;
        any |= !d.at_end;
      }
      if (!any) break;
      bool taken = false;
      for (auto& d : docs) {
        if (d.at_end || d.docid != top) continue;
        if (!taken) {
          taken = true;
          // Positions: varints of (delta + 2); 1 switches column, followed by the column.
          int64_t column = 0, position = 0;
          for (size_t p = 0; p < d.positions.size();) {
            uint64_t v = 0;
            if (!read_varint(d.positions, p, v) || v == 0) {
              damage = "a position list is malformed";
              return uint64_t{0};
            }
            if (v == 1) {
              uint64_t c = 0;
              if (!read_varint(d.positions, p, c)) {
                damage = "a position list is malformed";
                return uint64_t{0};
              }
              column = static_cast<int64_t>(c);
              position = 0;
              continue;
            }
            position += static_cast<int64_t>(v - 2);
            sum += entry_hash(current, d.docid, column, position);
          }
        }
        if (!d.next(damage)) return uint64_t{0};
      }
    }
    for (size_t i : holders) {
      SOTTO_TRY_ASSIGN(live[i], segments[i]->next(damage));
      if (!damage.empty()) return uint64_t{0};
    }
  }
  return sum;
}

}  // namespace

Result<std::string> verify_part(db::Database& db, const PartNames& part) {
  std::string damage;
  uint64_t index_sums[kIndexes];
  for (int index = 0; index < kIndexes; ++index) {
    SOTTO_TRY_ASSIGN(index_sums[index], index_checksum(db, part, index, damage));
    if (!damage.empty()) return damage;
  }
  uint64_t content_sums[kIndexes] = {0, 0};
  int64_t content_rows = 0;
  {
    Statement content(db, std::string("SELECT rowid, body, attachment_names, meta FROM \"") +
                              part.content + "\"");
    for (;;) {
      SOTTO_TRY_ASSIGN(bool row, content.step());
      if (!row) break;
      ++content_rows;
      int64_t docid = content.integer(0);
      for (int column = 0; column < 3; ++column) {
        if (content.is_null(column + 1)) continue;
        SOTTO_TRY_ASSIGN(auto tokens, tokenize(content.text(column + 1)));
        for (const Token& t : tokens) {
          content_sums[0] += entry_hash(t.text, docid, column, t.position);
          if (part.prefix_bytes > 0 && t.text.size() >= static_cast<size_t>(part.prefix_bytes))
            content_sums[1] += entry_hash(std::string_view(t.text).substr(0, part.prefix_bytes),
                                          docid, column, t.position);
        }
      }
    }
  }
  int64_t sized = 0;
  {
    Statement count(db, std::string("SELECT count(*) FROM \"") + part.table + "_docsize\"");
    SOTTO_TRY_ASSIGN(bool row, count.step());
    sized = row ? count.integer(0) : 0;
  }
  if (sized != content_rows)
    return std::to_string(sized) + " documents are indexed but " + std::to_string(content_rows) +
           " should be";
  if (index_sums[0] != content_sums[0]) return std::string("the postings differ from the text");
  if (index_sums[1] != content_sums[1])
    return std::string("the prefix postings differ from the text");
  return std::string();
}

}  // namespace sotto::search
