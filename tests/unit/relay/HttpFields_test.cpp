#include "HttpFields.h"

#include <gtest/gtest.h>

namespace sotto::relay {
namespace {

void expect_whole(std::string_view header, uint64_t size) {
  EXPECT_EQ(parse_range(header, size).kind, ByteRange::kWhole) << header;
}
void expect_unsatisfiable(std::string_view header, uint64_t size) {
  EXPECT_EQ(parse_range(header, size).kind, ByteRange::kUnsatisfiable) << header;
}
void expect_part(std::string_view header, uint64_t size, uint64_t first, uint64_t last) {
  ByteRange r = parse_range(header, size);
  ASSERT_EQ(r.kind, ByteRange::kPartial) << header;
  EXPECT_EQ(r.first, first) << header;
  EXPECT_EQ(r.last, last) << header;
}

TEST(HttpFields, RangesWithinTheBody) {
  expect_part("bytes=0-0", 18, 0, 0);
  expect_part("bytes=5-9", 18, 5, 9);
  expect_part("bytes=5-", 18, 5, 17);
  expect_part("bytes=5-1000", 18, 5, 17);
  expect_part("bytes=-4", 18, 14, 17);
  expect_part("bytes=-100", 18, 0, 17);
  expect_part("bytes=17-17", 18, 17, 17);
  expect_part("bytes=0-18446744073709551615", 18, 0, 17);
  expect_part("bytes=0-99999999999999999999999", 18, 0, 17);
  expect_part("bytes=-99999999999999999999999", 18, 0, 17);
}

// RFC 9110 14.2: a Range the server does not understand, or an invalid one, is ignored.
TEST(HttpFields, InvalidRangesAreIgnored) {
  for (std::string_view h :
       {"", "bytes=", "bytes=-", "bytes=5-2", "bytes=1-0", "bytes=a-b", "bytes=+1-2", "bytes=1-+2",
        "bytes= 1-2", "bytes=1-2,4-5", "bytes=1 -2", "items=0-1", "Bytes=0-1", "bytes=0x1-2",
        "bytes=-1-2", "bytes=18446744073709551615-0"})
    expect_whole(h, 18);
}

TEST(HttpFields, RangesPastTheEndAreUnsatisfiable) {
  expect_unsatisfiable("bytes=18-", 18);
  expect_unsatisfiable("bytes=18-20", 18);
  expect_unsatisfiable("bytes=18446744073709551615-", 18);
  expect_unsatisfiable("bytes=99999999999999999999999-", 18);
  expect_unsatisfiable("bytes=-0", 18);
  expect_unsatisfiable("bytes=0-", 0);
  expect_unsatisfiable("bytes=-5", 0);
}

TEST(HttpFields, AttachmentIdsAre32LowercaseHexDigits) {
  EXPECT_TRUE(valid_attachment_id("0123456789abcdef0123456789abcdef"));
  for (std::string_view bad :
       {"", "0123456789abcdef0123456789abcde", "0123456789abcdef0123456789abcdef0",
        "0123456789ABCDEF0123456789abcdef", "0123456789abcdef0123456789abcdeg",
        "../3456789abcdef0123456789abcdef", "0123456789abcdef0123456789abcd\\0"})
    EXPECT_FALSE(valid_attachment_id(bad)) << bad;
}

}  // namespace
}  // namespace sotto::relay
