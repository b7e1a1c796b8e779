#include "SearchQueryParser.h"

#include "Utf8.h"

namespace sotto::search {
namespace {

Error invalid(std::string message) {
  return make_error(ErrorCode::kInvalidArgument, std::move(message));
}

bool is_space(char32_t c) {
  return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == 0xA0 || c == 0x3000 ||
         (c >= 0x2000 && c <= 0x200A) || c == 0x202F || c == 0x205F;
}

struct RawTerm {
  std::string text;
  bool exclude = false;
};

void append_utf8(std::string& out, char32_t c) {
  if (c < 0x80) {
    out.push_back(static_cast<char>(c));
  } else if (c < 0x800) {
    out.push_back(static_cast<char>(0xC0 | (c >> 6)));
    out.push_back(static_cast<char>(0x80 | (c & 0x3F)));
  } else if (c < 0x10000) {
    out.push_back(static_cast<char>(0xE0 | (c >> 12)));
    out.push_back(static_cast<char>(0x80 | ((c >> 6) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | (c & 0x3F)));
  } else {
    out.push_back(static_cast<char>(0xF0 | (c >> 18)));
    out.push_back(static_cast<char>(0x80 | ((c >> 12) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | ((c >> 6) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | (c & 0x3F)));
  }
}

// The user's text as code points, with control characters (which steer the tokenizer) and
// '^' (FTS4's "first token" operator) turned into spaces.
std::vector<char32_t> clean(std::string_view text) {
  std::vector<char32_t> out;
  for (size_t i = 0; i < text.size();) {
    size_t len = 0;
    char32_t c = decode_utf8(text.data() + i, text.size() - i, len);
    i += len;
    if (c < 0x20 || c == 0x7F || (c >= 0x80 && c < 0xA0) || c == '^') c = ' ';
    out.push_back(c);
  }
  return out;
}

Result<std::vector<RawTerm>> split_terms(const std::vector<char32_t>& cps) {
  std::vector<RawTerm> terms;
  size_t i = 0, n = cps.size();
  while (i < n) {
    if (is_space(cps[i])) {
      ++i;
      continue;
    }
    RawTerm t;
    if (cps[i] == '-') {
      t.exclude = true;
      ++i;
      if (i == n || is_space(cps[i]))
        return invalid("a '-' must be followed directly by the word or \"phrase\" to leave out");
    }
    if (cps[i] == '"') {
      size_t close = i + 1;
      while (close < n && cps[close] != '"') ++close;
      if (close == n)
        return invalid("a quote is not closed: add the closing \" or remove the quote");
      for (size_t k = i + 1; k < close; ++k) append_utf8(t.text, cps[k]);
      i = close + 1;
    } else {
      // A word runs to the next space or quote; a quote inside it starts a new term.
      while (i < n && !is_space(cps[i]) && cps[i] != '"') append_utf8(t.text, cps[i++]);
    }
    terms.push_back(std::move(t));
  }
  return terms;
}

bool is_cjk_or_mark(char32_t c) { return is_cjk(c) || c == 0x3099 || c == 0x309A; }

// The FTS phrase text for one term. A CJK run of two or more characters gets the marker \x01
// (match its bigrams exactly, without the single characters); a single character is the word
// the index keeps for each character. A trailing '*' on a non-CJK word is kept as a prefix;
// any other '*' separates words.
std::string phrase_text(std::string_view raw) {
  size_t len = 0;
  std::vector<char32_t> cps;
  for (size_t i = 0; i < raw.size(); i += len)
    cps.push_back(decode_utf8(raw.data() + i, raw.size() - i, len));
  std::string out;
  for (size_t i = 0; i < cps.size();) {
    char32_t c = cps[i];
    if (is_cjk(c)) {
      size_t chars = 0;
      while (i < cps.size() && is_cjk_or_mark(cps[i])) {
        if (is_cjk(cps[i])) ++chars;
        append_utf8(out, cps[i++]);
      }
      if (chars >= 2) out.push_back(kNoUnigrams);
      while (i < cps.size() && cps[i] == '*') ++i;  // a CJK run is matched as a substring anyway
      continue;
    }
    if (c == '*') {
      // A prefix marker only at the end of a word (inside a phrase too); else a separator.
      bool word_end = i + 1 == cps.size() || is_space(cps[i + 1]) || cps[i + 1] == '*';
      bool after_letter = !out.empty() && out.back() != ' ' && out.back() != '*';
      out.push_back(word_end && after_letter ? '*' : ' ');
      ++i;
      while (i < cps.size() && cps[i] == '*') ++i;
      continue;
    }
    append_utf8(out, c);
    ++i;
  }
  return out;
}

size_t char_count(std::string_view s) {
  size_t n = 0;
  for (unsigned char c : s)
    if ((c & 0xC0) != 0x80) ++n;
  return n;
}

bool starts_with_cjk(std::string_view s) {
  size_t len = 0;
  return !s.empty() && is_cjk(decode_utf8(s.data(), s.size(), len));
}

}  // namespace

Result<ParsedQuery> parse_query(std::string_view text) {
  if (text.size() > kMaxQueryBytes)
    return invalid("the search is too long: use at most " + std::to_string(kMaxQueryBytes) +
                   " bytes");
  if (!is_valid_utf8(text)) return invalid("the search text is not valid UTF-8");
  SOTTO_TRY_ASSIGN(auto raw_terms, split_terms(clean(text)));
  if (raw_terms.size() > kMaxQueryTerms)
    return invalid("the search has " + std::to_string(raw_terms.size()) +
                   " words and phrases; use at most " + std::to_string(kMaxQueryTerms));
  ParsedQuery q;
  for (const RawTerm& raw : raw_terms) {
    QueryTerm term;
    term.phrase = phrase_text(raw.text);
    SOTTO_TRY_ASSIGN(term.tokens, tokenize(term.phrase));
    if (term.tokens.empty()) continue;  // punctuation only: nothing to look for
    for (const Token& t : term.tokens) {
      if (t.prefix && !starts_with_cjk(t.text) && char_count(t.text) < kMinPrefixChars)
        return invalid("\"" + t.text + "*\" is too short to search as a prefix: type at least " +
                       std::to_string(kMinPrefixChars) + " letters before the *");
    }
    q.canonical += raw.exclude ? "-\"" : "+\"";
    q.canonical += term.phrase;
    q.canonical += "\" ";
    (raw.exclude ? q.exclude : q.include).push_back(std::move(term));
  }
  if (q.include.empty())
    return invalid(q.exclude.empty()
                       ? "the search has no letters or digits to look for"
                       : "add at least one word to look for: a '-' term only leaves messages out");
  return q;
}

std::string match_phrase(const QueryTerm& term) { return "\"" + term.phrase + "\""; }

std::string match_all(const std::vector<QueryTerm>& terms) {
  std::string out;
  for (const QueryTerm& t : terms) {
    if (!out.empty()) out += ' ';
    out += match_phrase(t);
  }
  return out;
}

}  // namespace sotto::search
