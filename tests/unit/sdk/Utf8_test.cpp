#include "Utf8.h"

#include <gtest/gtest.h>

namespace sotto {
namespace {

TEST(Utf8, AcceptsWellFormedTextOfEveryLength) {
  for (const char* s : {"", "plain", "caf\xC3\xA9", "\xE2\x82\xAC 5", "\xF0\x9F\x98\x80",
                        "\xED\x9F\xBF", "\xEE\x80\x80", "\xF4\x8F\xBF\xBF", "\xEF\xBF\xBD"})
    EXPECT_TRUE(is_valid_utf8(s)) << s;
}

TEST(Utf8, RefusesWhatProtobufRefuses) {
  for (const char* s : {"caf\xC3",           // cut short
                        "\x80",              // a continuation byte alone
                        "\xC0\x80",          // overlong NUL
                        "\xE0\x9F\xBF",      // overlong three bytes
                        "\xF0\x8F\xBF\xBF",  // overlong four bytes
                        "\xED\xA0\x80",      // a surrogate
                        "\xF4\x90\x80\x80",  // above U+10FFFF
                        "\xF5\x80\x80\x80",  // no such lead byte
                        "\xFF", "ok\xE2\x82"})
    EXPECT_FALSE(is_valid_utf8(s)) << s;
}

TEST(Utf8, RepairReplacesEachBadPartOnceAndKeepsTheRest) {
  EXPECT_EQ(repair_utf8("caf\xC3\xA9"), "caf\xC3\xA9");
  EXPECT_EQ(repair_utf8("caf\xC3"), "caf\xEF\xBF\xBD");
  EXPECT_EQ(repair_utf8("a\xE2\x82"
                        "b"),
            "a\xEF\xBF\xBD"
            "b");  // one U+FFFD for the cut "\u20AC"
  EXPECT_EQ(repair_utf8("\xC0\x80x"), "\xEF\xBF\xBD\xEF\xBF\xBDx");
  EXPECT_EQ(repair_utf8("r\xE9sum\xE9.pdf"), "r\xEF\xBF\xBDsum\xEF\xBF\xBD.pdf");  // Latin-1
  for (const char* s : {"\xFF\xFE", "\xED\xA0\x80", "\xF4\x90\x80\x80z"})
    EXPECT_TRUE(is_valid_utf8(repair_utf8(s))) << s;
}

TEST(Utf8, TailStartsOnACharacterBoundary) {
  std::string s = "\xE6\x97\xA5\xE6\x9C\xAC.txt";  // two 3-byte characters, then ".txt"
  EXPECT_EQ(utf8_tail(s, 100), s);
  EXPECT_EQ(utf8_tail(s, 7), "\xE6\x9C\xAC.txt");
  EXPECT_EQ(utf8_tail(s, 6), ".txt");  // the cut falls inside a character: it is left out
  EXPECT_EQ(utf8_tail(s, 5), ".txt");
  EXPECT_EQ(utf8_tail(s, 0), "");
}

}  // namespace
}  // namespace sotto
