// The HTTP header values the SDK takes from the relay's answers (ResponseHeaders.h).
#include "ResponseHeaders.h"

#include <gtest/gtest.h>

namespace sotto::net {
namespace {

TEST(ResponseHeaders, RetryAfterIsWholeSecondsUpToADay) {
  EXPECT_EQ(parse_retry_after("30"), 30'000u);
  EXPECT_EQ(parse_retry_after("0"), 0u);
  EXPECT_EQ(parse_retry_after("86400"), 86'400'000u);
  for (const char* ignored : {"86401", "", " 5", "5 ", "-1", "1.5", "99999999999999999999999",
                              "Wed, 21 Oct 2015 07:28:00 GMT"})
    EXPECT_EQ(parse_retry_after(ignored), 0u) << ignored;
}

TEST(ResponseHeaders, AContentRangeParsesOnlyWhenWellFormed) {
  auto r = parse_content_range("bytes 0-99/100");
  ASSERT_TRUE(r);
  EXPECT_EQ(r->first, 0u);
  EXPECT_EQ(r->last, 99u);
  EXPECT_EQ(r->complete, 100u);
  r = parse_content_range("bytes 65536-131071/*");
  ASSERT_TRUE(r);
  EXPECT_EQ(r->first, 65536u);
  EXPECT_FALSE(r->complete);
  for (const char* bad :
       {"bytes 10-5/100", "bytes 0-100/100", "bytes */100", "bytes 0-99", "bytes -5/10",
        "bytes 1-/10", "items 0-1/2", "bytes  0-1/2", "bytes 0-1/2x",
        "bytes 0-18446744073709551616/*", "bytes 0-1/18446744073709551616", ""})
    EXPECT_FALSE(parse_content_range(bad)) << bad;
}

TEST(ResponseHeaders, AWholeBlobStartsTheFileOver) {
  auto t = download_target(200, 1000, std::nullopt, 5000);
  ASSERT_TRUE(t.ok());
  EXPECT_TRUE(t->write);
  EXPECT_FALSE(t->append);
  t = download_target(404, 1000, std::nullopt, 20);
  ASSERT_TRUE(t.ok());
  EXPECT_FALSE(t->write);
}

TEST(ResponseHeaders, AResumedDownloadKeepsOnlyBytesThatStartWhereItStopped) {
  auto t = download_target(206, 1000, "bytes 1000-1999/2000", 1000);
  ASSERT_TRUE(t.ok()) << t.error().message;
  EXPECT_TRUE(t->write);
  EXPECT_TRUE(t->append);
  // Bytes from elsewhere in the blob would be appended at the wrong place.
  t = download_target(206, 1000, "bytes 0-1999/2000", 2000);
  EXPECT_EQ(t.code(), ErrorCode::kProtocolError);
  EXPECT_NE(t.error().message.find("starts at byte 0"), std::string::npos) << t.error().message;
  EXPECT_EQ(download_target(206, 1000, std::nullopt, 1000).code(), ErrorCode::kProtocolError);
  EXPECT_EQ(download_target(206, 1000, "bytes 1000-1999/*x", 1000).code(),
            ErrorCode::kProtocolError);
  // A body longer than its range would run past the blob's end.
  EXPECT_EQ(download_target(206, 1000, "bytes 1000-1999/2000", 5000).code(),
            ErrorCode::kProtocolError);
  // A 206 to a request without a range is kept only if it is the blob's start.
  t = download_target(206, 0, "bytes 0-1999/2000", std::nullopt);
  ASSERT_TRUE(t.ok());
  EXPECT_FALSE(t->append);
  EXPECT_EQ(download_target(206, 0, "bytes 5-1999/2000", std::nullopt).code(),
            ErrorCode::kProtocolError);
}

}  // namespace
}  // namespace sotto::net
