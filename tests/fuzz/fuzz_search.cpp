// Untrusted bytes: received message text (any bytes, UTF-8 or not) as the search index
// tokenizes it, and a search typed by the user, through the query parser, the phrase finder
// and the snippet. Input: a byte for the snippet length (32..1024 bytes, as SearchQuery
// allows), then the query up to the first 0x00 byte, then the message text.
//
// Checked:
//  - tokens lie inside the text, in order; on UTF-8 text they start and end on character
//    boundaries and are UTF-8 themselves;
//  - a parsed query has at most 16 terms, each with tokens;
//  - the index agrees with the phrase finder: a real FTS4 table with the same tokenizer
//    matches the text exactly when every included phrase has a hit;
//  - matched ranges are sorted, apart, inside the text and (on UTF-8) on character boundaries;
//  - a snippet is at most the asked length, UTF-8 when the text is, its highlights sorted,
//    inside it, on character boundaries, each showing exactly the matched text.
#include <sqlcipher/sqlite3.h>

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <string_view>

#include "SearchQueryParser.h"
#include "SearchSnippet.h"
#include "SearchTokenizer.h"
#include "Utf8.h"

namespace {

using namespace sotto;
using namespace sotto::search;

[[noreturn]] void violated(const std::string& what, std::string_view text) {
  std::string shown;
  for (unsigned char c : text.substr(0, 200)) {
    char buf[5];
    std::snprintf(buf, sizeof buf, c >= 0x20 && c < 0x7F && c != '\\' ? "%c" : "\\x%02x", c);
    shown += buf;
  }
  std::fprintf(stderr, "search invariant violated: %s (text \"%s\")\n", what.c_str(),
               shown.c_str());
  std::abort();
}

bool is_continuation(std::string_view text, size_t at) {
  return at < text.size() && (static_cast<unsigned char>(text[at]) & 0xC0) == 0x80;
}

// A real FTS4 table with the index's tokenizer, in memory: the index's view of one text.
class Index {
 public:
  Index() {
    if (sqlite3_open_v2(":memory:", &db_, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, nullptr) !=
            SQLITE_OK ||
        !register_tokenizer(db_).ok() ||
        sqlite3_exec(db_,
                     "CREATE VIRTUAL TABLE t USING fts4(body, tokenize=sotto, order=desc, "
                     "prefix=\"3\")",
                     nullptr, nullptr, nullptr) != SQLITE_OK ||
        sqlite3_prepare_v2(db_, "INSERT INTO t (docid, body) VALUES (1, ?)", -1, &insert_,
                           nullptr) != SQLITE_OK ||
        sqlite3_prepare_v2(db_, "SELECT count(*) FROM t WHERE t MATCH ?", -1, &match_, nullptr) !=
            SQLITE_OK)
      violated(std::string("cannot set up the FTS table: ") + sqlite3_errmsg(db_), "");
  }

  // Whether the text alone in the table matches `expression`.
  bool matches(std::string_view text, const std::string& expression) {
    sqlite3_exec(db_, "DELETE FROM t", nullptr, nullptr, nullptr);
    sqlite3_bind_text(insert_, 1, text.data(), static_cast<int>(text.size()), SQLITE_TRANSIENT);
    if (sqlite3_step(insert_) != SQLITE_DONE)
      violated(std::string("the FTS table refused a text: ") + sqlite3_errmsg(db_), text);
    sqlite3_reset(insert_);
    sqlite3_bind_text(match_, 1, expression.data(), static_cast<int>(expression.size()),
                      SQLITE_TRANSIENT);
    if (sqlite3_step(match_) != SQLITE_ROW)
      violated(std::string("the FTS table refused a query: ") + sqlite3_errmsg(db_), expression);
    bool found = sqlite3_column_int(match_, 0) > 0;
    sqlite3_reset(match_);
    return found;
  }

 private:
  sqlite3* db_ = nullptr;
  sqlite3_stmt* insert_ = nullptr;
  sqlite3_stmt* match_ = nullptr;
};

void check_tokens(std::string_view text, bool utf8) {
  auto tokens = tokenize(text);
  if (!tokens.ok()) violated("tokenize() failed: " + tokens.error().message, text);
  int position = -1;
  uint32_t last_begin = 0;
  for (const Token& t : *tokens) {
    if (t.begin >= t.end || t.end > text.size())
      violated("a token at " + std::to_string(t.begin) + ".." + std::to_string(t.end) +
                   " is outside the text",
               text);
    if (t.position < position || t.position < 0) violated("token positions go back", text);
    if (t.begin < last_begin && t.position != position) violated("tokens go back", text);
    if (t.text.empty()) violated("an empty token", text);
    position = t.position;
    last_begin = t.begin;
    if (utf8 &&
        (is_continuation(text, t.begin) || is_continuation(text, t.end) || !is_valid_utf8(t.text)))
      violated("a token cuts a character", text);
  }
}

void check_snippet(std::string_view text, bool utf8, const std::vector<ByteRange>& ranges,
                   size_t max_bytes) {
  Snippet s = make_snippet(text, ranges, max_bytes);
  if (s.text.size() > std::max(max_bytes, text.size()) ||
      (text.size() > max_bytes && s.text.size() > max_bytes))
    violated("a snippet of " + std::to_string(s.text.size()) + " bytes for at most " +
                 std::to_string(max_bytes),
             text);
  if (utf8 && !is_valid_utf8(s.text)) violated("a snippet cuts a character", text);
  uint32_t last_end = 0;
  for (const auto& h : s.highlights) {
    if (h.begin >= h.end || h.end > s.text.size() || h.begin < last_end)
      violated("a highlight is outside the snippet or out of order", text);
    last_end = h.end;
    if (utf8 && (is_continuation(s.text, h.begin) || is_continuation(s.text, h.end)))
      violated("a highlight cuts a character", text);
    // What a highlight shows is some of the text a range matched (line breaks as spaces).
    std::string_view shown = std::string_view(s.text).substr(h.begin, h.end - h.begin);
    bool inside = false;
    for (const auto& r : ranges) {
      std::string matched(text.substr(r.begin, r.end - r.begin));
      for (char& c : matched)
        if (c == '\n' || c == '\r' || c == '\t') c = ' ';
      inside |= matched.find(shown) != std::string::npos;
    }
    if (!inside) violated("a highlight shows text that did not match", text);
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static Index index;
  if (size == 0) return 0;
  size_t max_bytes = std::min<size_t>(32 + size_t{data[0]} * 4, 1024);
  std::string_view rest(reinterpret_cast<const char*>(data + 1), size - 1);
  size_t nul = rest.find('\0');
  std::string_view query = rest.substr(0, nul);
  std::string_view text = nul == std::string_view::npos ? std::string_view() : rest.substr(nul + 1);
  bool utf8 = is_valid_utf8(text);

  check_tokens(text, utf8);
  check_tokens(query, is_valid_utf8(query));

  auto parsed = parse_query(query);
  if (!parsed.ok()) {
    check_snippet(text, utf8, {}, max_bytes);
    return 0;
  }
  if (parsed->include.size() + parsed->exclude.size() > kMaxQueryTerms)
    violated("a query with more than 16 terms was accepted", query);
  for (const auto* terms : {&parsed->include, &parsed->exclude})
    for (const QueryTerm& t : *terms)
      if (t.tokens.empty()) violated("a query term without tokens", query);

  auto found = find_phrases(text, parsed->include);
  if (!found.ok()) violated("find_phrases() failed: " + found.error().message, text);
  if (found->hits.size() != parsed->include.size()) violated("hits for the wrong phrases", text);
  bool all = true;
  for (uint32_t h : found->hits) all &= h > 0;
  if (index.matches(text, match_all(parsed->include)) != all)
    violated(std::string("the index ") + (all ? "misses" : "finds") + " \"" +
                 match_all(parsed->include) + "\" where the phrase finder " +
                 (all ? "finds it" : "does not"),
             text);
  uint32_t last_end = 0;
  for (size_t i = 0; i < found->ranges.size(); ++i) {
    const ByteRange& r = found->ranges[i];
    if (r.begin >= r.end || r.end > text.size() || (i > 0 && r.begin <= last_end))
      violated("matched ranges overlap, touch or leave the text", text);
    if (utf8 && (is_continuation(text, r.begin) || is_continuation(text, r.end)))
      violated("a matched range cuts a character", text);
    last_end = r.end;
  }
  check_snippet(text, utf8, found->ranges, max_bytes);
  return 0;
}
