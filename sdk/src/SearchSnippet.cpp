#include "SearchSnippet.h"

#include <algorithm>

namespace sotto::search {
namespace {

constexpr std::string_view kEllipsis = "\xE2\x80\xA6";  // …
constexpr size_t kWordSlack = 16;  // how far a cut may move to fall between words

bool token_matches(const Token& query, const Token& doc) {
  if (!query.prefix) return doc.text == query.text;
  return doc.text.size() >= query.text.size() &&
         doc.text.compare(0, query.text.size(), query.text) == 0;
}

bool is_continuation(char c) { return (static_cast<unsigned char>(c) & 0xC0) == 0x80; }

bool is_blank(char c) { return c == ' ' || c == '\n' || c == '\r' || c == '\t'; }

}  // namespace

Result<PhraseMatches> find_phrases(std::string_view text, const std::vector<QueryTerm>& phrases) {
  SOTTO_TRY_ASSIGN(auto tokens, tokenize(text));
  PhraseMatches out;
  out.hits.assign(phrases.size(), 0);
  if (tokens.empty()) return out;
  out.length = static_cast<uint32_t>(tokens.back().position + 1);
  // Tokens by position (a CJK character shares a position with a bigram).
  std::vector<std::vector<size_t>> at(out.length);
  for (size_t i = 0; i < tokens.size(); ++i)
    at[static_cast<size_t>(tokens[i].position)].push_back(i);

  std::vector<ByteRange> ranges;
  for (size_t p = 0; p < phrases.size(); ++p) {
    const auto& q = phrases[p].tokens;
    if (q.empty() || q.size() > at.size()) continue;
    for (size_t start = 0; start + q.size() <= at.size(); ++start) {
      std::vector<ByteRange> found;
      bool all = true;
      for (size_t k = 0; k < q.size() && all; ++k) {
        bool any = false;
        for (size_t i : at[start + k]) {
          if (!token_matches(q[k], tokens[i])) continue;
          found.push_back({tokens[i].begin, tokens[i].end});
          any = true;
        }
        all = any;
      }
      if (!all) continue;
      ++out.hits[p];
      ranges.insert(ranges.end(), found.begin(), found.end());
    }
  }
  std::sort(ranges.begin(), ranges.end(),
            [](const ByteRange& a, const ByteRange& b) { return a.begin < b.begin; });
  // One highlight for a phrase: ranges that overlap or have only spaces between them merge.
  auto joins = [&](uint32_t end, uint32_t begin) {
    for (uint32_t i = end; i < begin; ++i)
      if (text[i] != ' ') return false;
    return true;
  };
  for (const ByteRange& r : ranges) {
    if (!out.ranges.empty() &&
        (r.begin <= out.ranges.back().end || joins(out.ranges.back().end, r.begin)))
      out.ranges.back().end = std::max(out.ranges.back().end, r.end);
    else
      out.ranges.push_back(r);
  }
  return out;
}

Snippet make_snippet(std::string_view text, const std::vector<ByteRange>& ranges,
                     size_t max_bytes) {
  Snippet out;
  size_t begin = 0, end = text.size();
  if (text.size() > max_bytes) {
    // Room for the text itself once both ellipses are counted.
    size_t budget = max_bytes > 2 * kEllipsis.size() ? max_bytes - 2 * kEllipsis.size() : 1;
    // The window that holds the most highlights, starting a little before one of them.
    size_t best = 0, best_count = 0;
    for (const ByteRange& anchor : ranges) {
      size_t start = anchor.begin > budget / 4 ? anchor.begin - budget / 4 : 0;
      size_t count = 0;
      for (const ByteRange& r : ranges) count += r.begin >= start && r.end <= start + budget;
      if (count > best_count) {
        best_count = count;
        best = start;
      }
    }
    begin = ranges.empty() ? 0 : std::min(best, text.size() - budget);
    while (begin > 0 && is_continuation(text[begin])) --begin;
    // Start at a word boundary when one is close and no highlight comes before it.
    if (begin > 0 && !is_blank(text[begin - 1])) {
      size_t limit = std::min(text.size(), begin + kWordSlack);
      for (const ByteRange& r : ranges)
        if (r.begin >= begin) limit = std::min<size_t>(limit, r.begin);
      for (size_t i = begin; i < limit; ++i) {
        if (is_blank(text[i])) {
          begin = i + 1;
          break;
        }
      }
    }
    end = std::min(text.size(), begin + budget);
    while (end > begin && end < text.size() && is_continuation(text[end])) --end;
    // End at a word boundary when one is close and no highlight goes past it.
    if (end < text.size() && !is_blank(text[end])) {
      size_t floor = end > kWordSlack ? end - kWordSlack : 0;
      for (const ByteRange& r : ranges)
        if (r.end <= end) floor = std::max<size_t>(floor, r.end);
      for (size_t i = end; i > std::max(floor, begin); --i) {
        if (is_blank(text[i - 1])) {
          end = i - 1;
          break;
        }
      }
    }
  }
  if (begin > 0) out.text += kEllipsis;
  size_t shift = out.text.size();
  for (size_t i = begin; i < end; ++i) out.text.push_back(is_blank(text[i]) ? ' ' : text[i]);
  if (end < text.size()) out.text += kEllipsis;
  for (const ByteRange& r : ranges) {
    size_t b = std::max<size_t>(r.begin, begin), e = std::min<size_t>(r.end, end);
    if (b >= e) continue;
    out.highlights.push_back(
        {static_cast<uint32_t>(b - begin + shift), static_cast<uint32_t>(e - begin + shift)});
  }
  return out;
}

}  // namespace sotto::search
