#include "sotto/SecureBytes.h"

#include <gtest/gtest.h>

namespace sotto {
namespace {

TEST(SecureBytes, CopiesMovesAndCompares) {
  SecureBytes a = SecureBytes::from_string("correct horse");
  SecureBytes b = a;
  EXPECT_TRUE(a == b);
  SecureBytes c = std::move(b);
  EXPECT_TRUE(b.empty());  // NOLINT(bugprone-use-after-move): moved-from is defined empty
  EXPECT_TRUE(a == c);
  c.data()[0] ^= 1;
  EXPECT_FALSE(a == c);
  EXPECT_FALSE(a == SecureBytes::from_string("correct"));
  EXPECT_EQ(a.view(), "correct horse");
}

TEST(SecureBytes, WipeReleasesAndZeroSizedIsEmpty) {
  SecureBytes a(16);
  EXPECT_EQ(a.size(), 16u);
  for (size_t i = 0; i < a.size(); ++i) EXPECT_EQ(a.data()[i], 0);
  a.wipe();
  EXPECT_TRUE(a.empty());
  EXPECT_EQ(a.data(), nullptr);
  EXPECT_TRUE(SecureBytes() == SecureBytes(0));
}

}  // namespace
}  // namespace sotto
