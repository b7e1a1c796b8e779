#include "sotto/keys/SafetyNumber.h"

#include <gtest/gtest.h>

#include "sotto/keys/KeyGen.h"

namespace sotto::keys {
namespace {

TEST(SafetyNumber, BothSidesSeeTheSameSixtyDigits) {
  auto ctx = *Context::create();
  auto alice = *generate_identity(*ctx);
  auto bob = *generate_identity(*ctx);
  auto a = safety_number(*ctx, "alice", alice.public_key, "bob", bob.public_key);
  auto b = safety_number(*ctx, "bob", bob.public_key, "alice", alice.public_key);
  ASSERT_TRUE(a.ok()) << a.error().message;
  ASSERT_TRUE(b.ok());
  EXPECT_EQ(a->digits.size(), 60u);
  EXPECT_EQ(a->digits.find_first_not_of("0123456789"), std::string::npos);
  EXPECT_EQ(a->digits, b->digits);
  EXPECT_EQ(format_digits(a->digits).size(), 60u + 11u);

  // Scanning each other's code matches.
  EXPECT_TRUE(compare_scanned(*ctx, *a, b->scannable).ok());
  EXPECT_TRUE(compare_scanned(*ctx, *b, a->scannable).ok());
}

TEST(SafetyNumber, ChangesWhenAKeyChangesAndScanDetectsIt) {
  auto ctx = *Context::create();
  auto alice = *generate_identity(*ctx);
  auto bob = *generate_identity(*ctx);
  auto mallory = *generate_identity(*ctx);
  auto real = *safety_number(*ctx, "alice", alice.public_key, "bob", bob.public_key);
  // Alice talks to a man in the middle who claims to be bob; bob's screen shows the real one.
  auto mitm = *safety_number(*ctx, "alice", alice.public_key, "bob", mallory.public_key);
  auto bobs = *safety_number(*ctx, "bob", bob.public_key, "alice", alice.public_key);
  EXPECT_NE(real.digits, mitm.digits);
  EXPECT_EQ(compare_scanned(*ctx, mitm, bobs.scannable).code(), ErrorCode::kUntrustedIdentity);
  EXPECT_EQ(compare_scanned(*ctx, real, Bytes{1, 2, 3}).code(), ErrorCode::kInvalidArgument);
}

}  // namespace
}  // namespace sotto::keys
