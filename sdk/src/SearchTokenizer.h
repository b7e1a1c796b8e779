// The search index's tokenizer ("sotto"): SQLite's unicode61 (case and diacritics folded),
// with Chinese, Japanese and Korean runs cut into overlapping bigrams, so that a two-character
// word is found inside a sentence written without spaces.
//
// It is an FTS3 tokenizer module registered on each connection with fts3_tokenizer(). Token
// offsets point into the original text, so highlights and snippets are cut from what the user
// wrote, not from the folded form. The same code tokenizes in C++ (tokenize()) for highlights
// and scores, so both always agree with the index.
//
// A run of CJK characters c0..cn-1 becomes the bigrams c0c1, c1c2, ... at consecutive
// positions, and each character is also a word of its own at the position of the bigram it
// begins (the last one at the last bigram's), so a one-character search is the lookup of one
// word. (The index has no prefix index: FTS4's, kept for every word of every script, cost
// half of the indexing time and only served these searches and three-letter prefixes.) A run
// of one character is that character. Two bytes steer it, and never come from a user (the
// query parser strips control characters):
//   \x01 right after a CJK run: bigrams only (a query phrase of two or more characters)
//   \x02 right before a word: a filter token ("\x02c12"), see SearchIndex.
//
// Thread rule: free functions, safe from any thread.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "sotto/Result.h"

struct sqlite3;

namespace sotto::search {

inline constexpr char kTokenizerName[] = "sotto";
inline constexpr char kNoUnigrams = '\x01';
inline constexpr char kFilterMark = '\x02';

// Registers the tokenizer on a connection. Must run before any statement touches the search
// tables; Database::open() calls it. fts3_tokenizer() (which can install arbitrary function
// pointers) is enabled only for the duration of the call.
Status register_tokenizer(sqlite3* db);

struct Token {
  std::string text;    // folded
  uint32_t begin = 0;  // byte offsets into the tokenized text
  uint32_t end = 0;
  int position = 0;     // a CJK character shares the position of a bigram
  bool prefix = false;  // the text has a '*' right after the token (query phrases only)
};

// Tokenizes `text` exactly as the index does, which ends a text at its first NUL byte.
Result<std::vector<Token>> tokenize(std::string_view text);

// Chinese, Japanese (kana and kanji) and Korean letters: the characters cut into bigrams.
bool is_cjk(char32_t c);

// Decodes the UTF-8 character at `p` (at most `n` bytes); its length in `len` (1 for an
// invalid byte, which decodes to U+FFFD).
char32_t decode_utf8(const char* p, size_t n, size_t& len);

}  // namespace sotto::search
