#include "sotto/keys/KeyGen.h"

#include <gtest/gtest.h>

#include <set>

namespace sotto::keys {
namespace {

class KeyGen : public ::testing::Test {
 protected:
  void SetUp() override {
    auto c = Context::create();
    ASSERT_TRUE(c.ok()) << c.error().message;
    ctx = *c;
  }
  std::shared_ptr<Context> ctx;
};

TEST_F(KeyGen, IdentityIsACurve25519KeyPair) {
  auto id = generate_identity(*ctx);
  ASSERT_TRUE(id.ok()) << id.error().message;
  EXPECT_EQ(id->public_key.size(), 33u);
  EXPECT_EQ(id->public_key[0], 0x05);
  EXPECT_FALSE(id->serialized.empty());
  auto other = generate_identity(*ctx);
  ASSERT_TRUE(other.ok());
  EXPECT_NE(id->public_key, other->public_key);
}

TEST_F(KeyGen, RegistrationIdIsInLibsignalRange) {
  for (int i = 0; i < 50; ++i) {
    auto id = generate_registration_id(*ctx);
    ASSERT_TRUE(id.ok());
    EXPECT_GE(*id, 1u);
    EXPECT_LE(*id, 16380u);
  }
}

TEST_F(KeyGen, SignedPreKeyIsSignedByTheIdentity) {
  auto id = generate_identity(*ctx);
  ASSERT_TRUE(id.ok());
  auto spk = generate_signed_prekey(*ctx, *id, 7, 1234);
  ASSERT_TRUE(spk.ok()) << spk.error().message;
  EXPECT_EQ(spk->id, 7u);
  EXPECT_EQ(spk->timestamp_ms, 1234u);
  EXPECT_EQ(spk->signature.size(), 64u);
  EXPECT_TRUE(verify_signature(*ctx, id->public_key, spk->public_key, spk->signature).ok());

  auto stranger = generate_identity(*ctx);
  auto forged = verify_signature(*ctx, stranger->public_key, spk->public_key, spk->signature);
  EXPECT_EQ(forged.code(), ErrorCode::kInvalidSignature);
}

TEST_F(KeyGen, OneTimePreKeysHaveConsecutiveUniqueIdsAndWrap) {
  auto keys = generate_one_time_prekeys(*ctx, 0xFFFFFD, 4);
  ASSERT_TRUE(keys.ok()) << keys.error().message;
  ASSERT_EQ(keys->size(), 4u);
  EXPECT_EQ((*keys)[0].id, 0xFFFFFDu);
  EXPECT_EQ((*keys)[1].id, 0xFFFFFEu);
  EXPECT_EQ((*keys)[2].id, 1u);  // 0 is never an id
  EXPECT_EQ((*keys)[3].id, 2u);
  std::set<std::string> publics;  // hex: GCC 12 -O3 misreports memcmp on std::set<Bytes>
  for (const auto& k : *keys) publics.insert(to_hex(k.public_key));
  EXPECT_EQ(publics.size(), 4u);
}

TEST_F(KeyGen, SignAndVerifyArbitraryPayload) {
  auto id = generate_identity(*ctx);
  ASSERT_TRUE(id.ok());
  Bytes payload = {1, 2, 3, 4, 5};
  auto sig = sign(*ctx, *id, payload);
  ASSERT_TRUE(sig.ok());
  EXPECT_TRUE(verify_signature(*ctx, id->public_key, payload, *sig).ok());
  payload[2] ^= 1;
  EXPECT_EQ(verify_signature(*ctx, id->public_key, payload, *sig).code(),
            ErrorCode::kInvalidSignature);
  Bytes short_sig(10, 0);
  EXPECT_EQ(verify_signature(*ctx, id->public_key, payload, short_sig).code(),
            ErrorCode::kInvalidSignature);
  Bytes bad_key(33, 0);
  EXPECT_EQ(verify_signature(*ctx, bad_key, payload, *sig).code(), ErrorCode::kInvalidKey);
}

TEST_F(KeyGen, PayloadSignaturesAreBoundToTheirPurpose) {
  auto id = generate_identity(*ctx);
  ASSERT_TRUE(id.ok());
  Bytes payload = {9, 8, 7};
  auto sig = sign_payload(*ctx, *id, SignedPurpose::kRegistration, payload);
  ASSERT_TRUE(sig.ok());
  EXPECT_TRUE(
      verify_payload(*ctx, id->public_key, SignedPurpose::kRegistration, payload, *sig).ok());
  // The same bytes signed for registration must not pass as a link request, nor as a bare
  // signature over the payload.
  EXPECT_EQ(verify_payload(*ctx, id->public_key, SignedPurpose::kLink, payload, *sig).code(),
            ErrorCode::kInvalidSignature);
  EXPECT_EQ(verify_signature(*ctx, id->public_key, payload, *sig).code(),
            ErrorCode::kInvalidSignature);
}

}  // namespace
}  // namespace sotto::keys
