#include "Padding.h"

#include <gtest/gtest.h>

namespace sotto {
namespace {

TEST(Padding, RoundTripsEveryLengthAroundBlockEdges) {
  for (size_t n : {0u, 1u, 158u, 159u, 160u, 161u, 319u, 320u, 1000u}) {
    Bytes text(n, 0x41);
    if (n) text.back() = 0;  // trailing zero bytes in the text itself must survive
    Bytes padded = pad(text);
    EXPECT_EQ(padded.size() % kPaddingBlock, 0u);
    EXPECT_GT(padded.size(), n);
    auto back = unpad(padded);
    ASSERT_TRUE(back.ok()) << n;
    EXPECT_EQ(*back, text) << n;
  }
}

TEST(Padding, HidesLengthWithinABlock) {
  EXPECT_EQ(pad(Bytes(1, 1)).size(), pad(Bytes(100, 1)).size());
}

TEST(Padding, RejectsMalformedPadding) {
  EXPECT_EQ(unpad(Bytes{}).code(), ErrorCode::kInvalidMessage);
  EXPECT_EQ(unpad(Bytes(159, 0)).code(), ErrorCode::kInvalidMessage);
  EXPECT_EQ(unpad(Bytes(160, 0)).code(), ErrorCode::kInvalidMessage);  // no 0x80 marker
  Bytes no_marker(160, 0x41);
  EXPECT_EQ(unpad(no_marker).code(), ErrorCode::kInvalidMessage);
  Bytes too_much(320, 0);
  too_much[0] = 0x80;  // more than a whole block of padding
  EXPECT_EQ(unpad(too_much).code(), ErrorCode::kInvalidMessage);
}

}  // namespace
}  // namespace sotto
