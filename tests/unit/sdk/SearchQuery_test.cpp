// The query language and the snippets, without a database.
#include <gtest/gtest.h>

#include "SearchQueryParser.h"
#include "SearchSnippet.h"

namespace sotto::search {
namespace {

std::vector<std::string> phrases(const std::vector<QueryTerm>& terms) {
  std::vector<std::string> out;
  for (const auto& t : terms) out.push_back(t.phrase);
  return out;
}

using V = std::vector<std::string>;

TEST(SearchQuery, ParsesWordsPhrasesPrefixesAndExclusions) {
  auto q = parse_query("lunch \"next Friday\" restau* -pizza -\"too late\"").value();
  EXPECT_EQ(phrases(q.include), (V{"lunch", "next Friday", "restau*"}));
  EXPECT_EQ(phrases(q.exclude), (V{"pizza", "too late"}));
  ASSERT_EQ(q.include[2].tokens.size(), 1u);
  EXPECT_TRUE(q.include[2].tokens[0].prefix);
  EXPECT_EQ(q.include[1].tokens.size(), 2u);
}

TEST(SearchQuery, FtsOperatorsAreJustText) {
  // Nothing typed reaches FTS4 as syntax: every term is quoted, '^' is dropped.
  auto q = parse_query("cats OR dogs NEAR body:x ^first").value();
  EXPECT_EQ(phrases(q.include), (V{"cats", "OR", "dogs", "NEAR", "body:x", "first"}));
  EXPECT_EQ(match_all(q.include), "\"cats\" \"OR\" \"dogs\" \"NEAR\" \"body:x\" \"first\"");
}

TEST(SearchQuery, WordsWithPunctuationBecomePhrases) {
  auto q = parse_query("e-mail o'clock").value();
  ASSERT_EQ(q.include.size(), 2u);
  EXPECT_EQ(q.include[0].tokens.size(), 2u);  // "e" "mail", next to each other
  EXPECT_EQ(q.include[1].tokens.size(), 2u);
}

TEST(SearchQuery, CjkRunsAreMarkedForExactBigramsAndSingleCharactersAreWords) {
  auto q = parse_query("北京大学 京 東京に 京*").value();
  EXPECT_EQ(phrases(q.include), (V{"北京大学\x01", "京", "東京に\x01", "京"}));
  EXPECT_EQ(q.include[0].tokens.size(), 3u);
  ASSERT_EQ(q.include[1].tokens.size(), 1u);
  EXPECT_FALSE(q.include[1].tokens[0].prefix);
  EXPECT_FALSE(q.include[3].tokens[0].prefix);
}

TEST(SearchQuery, ControlCharactersCannotForgeFilterTokens) {
  auto q = parse_query(std::string("\x02") +
                       "c12 a\x01"
                       "b")
               .value();
  EXPECT_EQ(phrases(q.include), (V{"c12", "a", "b"}));
  EXPECT_EQ(q.include[0].tokens[0].text, "c12");
}

TEST(SearchQuery, EqualQueriesHaveEqualCanonicalForms) {
  EXPECT_EQ(parse_query("  a   \"b c\"  ").value().canonical,
            parse_query("a \"b c\"").value().canonical);
  EXPECT_NE(parse_query("a -b").value().canonical, parse_query("a b").value().canonical);
}

TEST(SearchQuery, PunctuationOnlyTermsAreIgnored) {
  auto q = parse_query("hello !!! \"...\"").value();
  EXPECT_EQ(phrases(q.include), (V{"hello"}));
}

TEST(SearchQuery, MalformedQueriesSayWhatToChange) {
  struct Case {
    std::string text;
    std::string says;
  };
  std::vector<Case> cases = {
      {"\"never closed", "quote is not closed"},
      {"hello -", "'-' must be followed"},
      {"-spam", "at least one word to look for"},
      {"", "no letters or digits"},
      {"?!", "no letters or digits"},
      {"ab*", "at least 3 letters before the *"},
      {std::string(1001, 'a'), "at most 1000 bytes"},
      {"a b c d e f g h i j k l m n o p q", "use at most 16"},
      {"caf\xC3", "not valid UTF-8"},
  };
  for (const auto& c : cases) {
    auto r = parse_query(c.text);
    ASSERT_FALSE(r.ok()) << c.text;
    EXPECT_EQ(r.code(), ErrorCode::kInvalidArgument);
    EXPECT_NE(r.error().message.find(c.says), std::string::npos)
        << c.text << " -> " << r.error().message;
    EXPECT_EQ(r.error().message.find("SQL"), std::string::npos);
    EXPECT_EQ(r.error().message.find("fts"), std::string::npos);
  }
}

QueryTerm term(const std::string& text) { return parse_query(text).value().include.at(0); }

std::string marked(const std::string& text, const std::vector<ByteRange>& ranges) {
  std::string out;
  size_t at = 0;
  for (const auto& r : ranges) {
    out += text.substr(at, r.begin - at) + "[" + text.substr(r.begin, r.end - r.begin) + "]";
    at = r.end;
  }
  return out + text.substr(at);
}

TEST(SearchSnippet, FindsPhrasesPrefixesAndCountsLikeTheIndex) {
  std::string text = "The Café opens at nine; the café closes late. Cafés everywhere";
  auto m = find_phrases(text, {term("cafe"), term("\"cafe closes\""), term("caf*")}).value();
  EXPECT_EQ(m.hits, (std::vector<uint32_t>{2, 1, 3}));
  EXPECT_EQ(m.length, 11u);
  EXPECT_EQ(marked(text, m.ranges),
            "The [Café] opens at nine; the [café closes] late. [Cafés] everywhere");
}

TEST(SearchSnippet, MarksCjkWordsAndSingleCharacters) {
  std::string text = "我在北京大学工作";
  auto m = find_phrases(text, {term("北京大学")}).value();
  EXPECT_EQ(m.hits, (std::vector<uint32_t>{1}));
  EXPECT_EQ(marked(text, m.ranges), "我在[北京大学]工作");
  auto single = find_phrases(text, {term("京")}).value();
  EXPECT_EQ(marked(text, single.ranges), "我在北[京]大学工作");
  auto last = find_phrases(text, {term("作")}).value();
  EXPECT_EQ(marked(text, last.ranges), "我在北京大学工[作]");
}

TEST(SearchSnippet, ShortTextIsShownWholeWithLineBreaksAsSpaces) {
  Snippet s = make_snippet("see you\nat noon", {{8, 10}}, 160);
  EXPECT_EQ(s.text, "see you at noon");
  ASSERT_EQ(s.highlights.size(), 1u);
  EXPECT_EQ(s.text.substr(s.highlights[0].begin, s.highlights[0].end - s.highlights[0].begin),
            "at");
}

TEST(SearchSnippet, LongTextIsCutAroundTheMatchesAtWordBoundaries) {
  std::string text;
  for (int i = 0; i < 40; ++i) text += "filler" + std::to_string(i) + " ";
  size_t at = text.size();
  text += "the needle is here and another needle right after it";
  for (int i = 0; i < 40; ++i) text += " tail" + std::to_string(i);
  auto m = find_phrases(text, {term("needle")}).value();
  Snippet s = make_snippet(text, m.ranges, 80);
  EXPECT_LE(s.text.size(), 80u);
  EXPECT_EQ(s.text.rfind("\xE2\x80\xA6", 0), 0u);               // starts with …
  EXPECT_EQ(s.text.substr(s.text.size() - 3), "\xE2\x80\xA6");  // ends with …
  EXPECT_NE(s.text.find("the needle is here and another needle"), std::string::npos);
  ASSERT_EQ(s.highlights.size(), 2u);
  for (const auto& h : s.highlights) EXPECT_EQ(s.text.substr(h.begin, h.end - h.begin), "needle");
  // Cut between words: the text after the ellipsis starts a word.
  EXPECT_NE(s.text[3], ' ');
  EXPECT_TRUE(text.find(s.text.substr(3, s.text.size() - 6)) != std::string::npos);
  (void)at;
}

TEST(SearchSnippet, NeverCutsInsideAMultibyteCharacter) {
  std::string text;
  for (int i = 0; i < 60; ++i) text += "日本語の文章";
  text += "北京";
  for (int i = 0; i < 60; ++i) text += "日本語の文章";
  auto m = find_phrases(text, {term("北京")}).value();
  Snippet s = make_snippet(text, m.ranges, 64);
  EXPECT_LE(s.text.size(), 64u);
  ASSERT_EQ(s.highlights.size(), 1u);
  EXPECT_EQ(s.text.substr(s.highlights[0].begin, 6), "北京");
  size_t len = 0;
  for (size_t i = 0; i < s.text.size(); i += len) {
    char32_t c = decode_utf8(s.text.data() + i, s.text.size() - i, len);
    EXPECT_NE(c, 0xFFFDu) << "cut inside a character at " << i;
  }
}

}  // namespace
}  // namespace sotto::search
