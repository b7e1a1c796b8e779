// The search tokenizer, on its own and registered on a bare SQLCipher connection.
#include "SearchTokenizer.h"

#include <gtest/gtest.h>
#include <sqlcipher/sqlite3.h>

#include <string>
#include <vector>

namespace sotto::search {
namespace {

std::vector<std::string> texts(std::string_view input) {
  auto tokens = tokenize(input);
  EXPECT_TRUE(tokens.ok()) << tokens.error().message;
  std::vector<std::string> out;
  if (tokens.ok())
    for (const auto& t : *tokens) out.push_back(t.text);
  return out;
}

using V = std::vector<std::string>;

TEST(SearchTokenizer, FoldsCaseAndDiacritics) {
  EXPECT_EQ(texts("Héllo WÖRLD, Crème brûlée! naïve"),
            (V{"hello", "world", "creme", "brulee", "naive"}));
  EXPECT_EQ(texts("ΟΔΥΣΣΕΑΣ Привет"), (V{"οδυσσεασ", "привет"}));
}

TEST(SearchTokenizer, OffsetsPointIntoTheOriginalText) {
  std::string text = "Ça va? Très BIEN";
  auto tokens = tokenize(text).value();
  ASSERT_EQ(tokens.size(), 4u);
  EXPECT_EQ(text.substr(tokens[0].begin, tokens[0].end - tokens[0].begin), "Ça");
  EXPECT_EQ(text.substr(tokens[2].begin, tokens[2].end - tokens[2].begin), "Très");
  EXPECT_EQ(tokens[2].text, "tres");
  EXPECT_EQ(text.substr(tokens[3].begin, tokens[3].end - tokens[3].begin), "BIEN");
  for (size_t i = 0; i < tokens.size(); ++i) EXPECT_EQ(tokens[i].position, static_cast<int>(i));
}

TEST(SearchTokenizer, CutsChineseIntoOverlappingBigramsAndSingleCharacters) {
  std::string text = "我在北京工作。";
  auto tokens = tokenize(text).value();
  EXPECT_EQ(texts(text),
            (V{"我在", "我", "在北", "在", "北京", "北", "京工", "京", "工作", "工", "作"}));
  // Each character shares the position of the bigram it begins, the last one the last
  // bigram's; offsets are the original bytes.
  ASSERT_EQ(tokens.size(), 11u);
  for (size_t i = 0; i < 10; ++i) EXPECT_EQ(tokens[i].position, static_cast<int>(i / 2)) << i;
  EXPECT_EQ(tokens[10].position, 4);
  EXPECT_EQ(text.substr(tokens[4].begin, tokens[4].end - tokens[4].begin), "北京");
  EXPECT_EQ(text.substr(tokens[5].begin, tokens[5].end - tokens[5].begin), "北");
  EXPECT_EQ(text.substr(tokens[10].begin, tokens[10].end - tokens[10].begin), "作");
  EXPECT_EQ(texts("京"), (V{"京"}));
  // A character repeated at the end is one word at that position, not two.
  EXPECT_EQ(texts("哈哈"), (V{"哈哈", "哈"}));
}

TEST(SearchTokenizer, QueryMarkerKeepsOnlyTheBigrams) {
  EXPECT_EQ(texts("北京大学\x01"), (V{"北京", "京大", "大学"}));
  auto tokens = tokenize("京*").value();
  ASSERT_EQ(tokens.size(), 1u);
  EXPECT_TRUE(tokens[0].prefix);
}

TEST(SearchTokenizer, JapaneseAndKoreanAreCutLikewise) {
  EXPECT_EQ(texts("東京に住む"), (V{"東京", "東", "京に", "京", "に住", "に", "住む", "住", "む"}));
  EXPECT_EQ(texts("학교에서 공부"),
            (V{"학교", "학", "교에", "교", "에서", "에", "서", "공부", "공", "부"}));
}

TEST(SearchTokenizer, SplitsWordsThatMixScripts) {
  std::string text = "新しいiPhone15を買った";
  EXPECT_EQ(texts(text), (V{"新し", "新", "しい", "し", "い", "iphone15", "を買", "を", "買っ",
                            "買", "った", "っ", "た"}));
  auto tokens = tokenize(text).value();
  EXPECT_EQ(text.substr(tokens[5].begin, tokens[5].end - tokens[5].begin), "iPhone15");
}

TEST(SearchTokenizer, FilterMarkMakesTokensNoTypedTextProduces) {
  EXPECT_EQ(texts("\x02"
                  "c12 \x02"
                  "sABC"),
            (V{"\x02"
               "c12",
               "\x02"
               "sabc"}));
  EXPECT_EQ(texts("c12 sabc"), (V{"c12", "sabc"}));
}

TEST(SearchTokenizer, EmptyAndPunctuationOnlyTextHasNoTokens) {
  EXPECT_TRUE(texts("").empty());
  EXPECT_TRUE(texts(" ,.;!? \n\t").empty());
}

TEST(SearchTokenizer, ATextEndsAtItsFirstNulByteAsInTheIndex) {
  // FTS hands the tokenizer C strings: what follows a NUL byte never reaches the index.
  EXPECT_EQ(texts(std::string("seen\0hidden", 11)), (V{"seen"}));
}

TEST(SearchTokenizer, WorksOnAnyConnectionItIsRegisteredOn) {
  sqlite3* db = nullptr;
  ASSERT_EQ(sqlite3_open(":memory:", &db), SQLITE_OK);
  ASSERT_TRUE(register_tokenizer(db).ok());
  char* err = nullptr;
  ASSERT_EQ(
      sqlite3_exec(db,
                   "CREATE VIRTUAL TABLE t USING fts4(x, tokenize=sotto);"
                   "INSERT INTO t (docid, x) VALUES (1, '我在北京工作'), (2, 'Café au lait');",
                   nullptr, nullptr, &err),
      SQLITE_OK)
      << err;
  auto count = [&](const char* match) {
    sqlite3_stmt* st = nullptr;
    EXPECT_EQ(sqlite3_prepare_v2(db, "SELECT count(*) FROM t WHERE t MATCH ?", -1, &st, nullptr),
              SQLITE_OK);
    sqlite3_bind_text(st, 1, match, -1, SQLITE_STATIC);
    EXPECT_EQ(sqlite3_step(st), SQLITE_ROW);
    int n = sqlite3_column_int(st, 0);
    sqlite3_finalize(st);
    return n;
  };
  EXPECT_EQ(count("\"北京\x01\""), 1);
  EXPECT_EQ(count("\"京*\""), 1);
  EXPECT_EQ(count("\"工作\x01\""), 1);
  EXPECT_EQ(count("\"京工作\x01\""), 1);
  EXPECT_EQ(count("\"京北\x01\""), 0);
  EXPECT_EQ(count("cafe"), 1);
  // Registration switches fts3_tokenizer() off again: SQL cannot install a tokenizer pointer.
  EXPECT_NE(sqlite3_exec(db, "SELECT fts3_tokenizer('x', x'0000000000000000')", nullptr, nullptr,
                         nullptr),
            SQLITE_OK);
  sqlite3_close(db);
}

}  // namespace
}  // namespace sotto::search
