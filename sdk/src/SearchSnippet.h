// Where a query's phrases occur in one message, and the snippet shown for it. Runs in C++
// over the message text with the index's own tokenizer, for the few messages of a result page,
// so no FTS offsets()/snippet() call has to re-run the query per row.
//
// Thread rule: free functions, safe from any thread.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "SearchQueryParser.h"
#include "sotto/Result.h"
#include "sotto/Search.h"

namespace sotto::search {

struct ByteRange {
  uint32_t begin = 0;
  uint32_t end = 0;
};

struct PhraseMatches {
  std::vector<ByteRange> ranges;  // matched text, sorted, merged where they touch or overlap
  std::vector<uint32_t> hits;     // per phrase: occurrences (as FTS4 matchinfo 'y' counts)
  uint32_t length = 0;            // tokens in the text (as FTS4 matchinfo 'l' counts)
};

Result<PhraseMatches> find_phrases(std::string_view text, const std::vector<QueryTerm>& phrases);

struct Snippet {
  std::string text;
  std::vector<SearchHighlight> highlights;
};

// At most `max_bytes` of `text` around the densest group of `ranges`, cut at character (and
// where possible word) boundaries, "…" where text was left out, line breaks as spaces.
Snippet make_snippet(std::string_view text, const std::vector<ByteRange>& ranges, size_t max_bytes);

}  // namespace sotto::search
