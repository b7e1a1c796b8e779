// The search query language (see sotto/Search.h) turned into FTS4 phrases.
//
// Every term becomes a quoted FTS phrase, so nothing a user types is FTS syntax: "OR",
// "NEAR", "col:", "^" and stray quotes are plain text, and a malformed query is our own error
// with a message, never SQLite's. Exclusions are not written into the MATCH expression: FTS4's
// standard syntax can only exclude single bare words, so SearchIndex subtracts them itself.
//
// Thread rule: free functions, safe from any thread.
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "SearchTokenizer.h"
#include "sotto/Result.h"

namespace sotto::search {

inline constexpr size_t kMaxQueryBytes = 1000;
inline constexpr size_t kMaxQueryTerms = 16;
inline constexpr size_t kMinPrefixChars = 3;

struct QueryTerm {
  std::string phrase;         // FTS phrase text, without the quotes
  std::vector<Token> tokens;  // what the index matches, in order (Token::prefix: a prefix)
};

struct ParsedQuery {
  std::vector<QueryTerm> include;
  std::vector<QueryTerm> exclude;
  std::string canonical;  // a normal form: equal for queries that mean the same
};

// kInvalidArgument with a message for the user when the text is not a valid query.
Result<ParsedQuery> parse_query(std::string_view text);

// `"phrase"` for one term, and the terms ANDed.
std::string match_phrase(const QueryTerm& term);
std::string match_all(const std::vector<QueryTerm>& terms);

}  // namespace sotto::search
