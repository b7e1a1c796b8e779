#include "sotto/keys/Bundle.h"

#include <gtest/gtest.h>

namespace sotto::keys {
namespace {

class BundleTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ctx = *Context::create();
    identity = *generate_identity(*ctx);
    spk = *generate_signed_prekey(*ctx, identity, 1, 1000);
    otk = std::move((*generate_one_time_prekeys(*ctx, 5, 1))[0]);
  }
  std::shared_ptr<Context> ctx;
  IdentityKeyPair identity;
  SignedPreKey spk;
  OneTimePreKey otk;
};

TEST_F(BundleTest, RoundTripsThroughTheWireFormat) {
  auto bundle = make_bundle(42, 3, identity.public_key, spk, &otk);
  Bytes wire = serialize_bundle(bundle);
  auto parsed = parse_bundle(wire);
  ASSERT_TRUE(parsed.ok());
  EXPECT_EQ(parsed->registration_id(), 42u);
  EXPECT_EQ(parsed->device_id(), 3u);
  EXPECT_EQ(parsed->one_time_prekey().id(), 5u);
  EXPECT_TRUE(verify_bundle(*ctx, *parsed).ok());
  EXPECT_TRUE(to_signal_bundle(*ctx, *parsed).ok());
}

TEST_F(BundleTest, WithoutOneTimePreKeyIsValid) {
  auto bundle = make_bundle(42, 1, identity.public_key, spk, nullptr);
  EXPECT_FALSE(bundle.has_one_time_prekey());
  EXPECT_TRUE(verify_bundle(*ctx, bundle).ok());
}

TEST_F(BundleTest, ForgedSignatureIsRejected) {
  auto bundle = make_bundle(42, 1, identity.public_key, spk, &otk);
  std::string sig = bundle.signed_prekey().signature();
  sig[10] ^= 0x01;
  bundle.mutable_signed_prekey()->set_signature(sig);
  EXPECT_EQ(verify_bundle(*ctx, bundle).code(), ErrorCode::kInvalidSignature);
  EXPECT_EQ(to_signal_bundle(*ctx, bundle).code(), ErrorCode::kInvalidSignature);
}

TEST_F(BundleTest, SignedPreKeySwappedByAnAttackerIsRejected) {
  auto attacker = *generate_identity(*ctx);
  auto attacker_spk = *generate_signed_prekey(*ctx, attacker, 1, 1000);
  // The relay (or anyone on the path) puts its own signed prekey under the victim's identity.
  auto bundle = make_bundle(42, 1, identity.public_key, attacker_spk, &otk);
  EXPECT_EQ(verify_bundle(*ctx, bundle).code(), ErrorCode::kInvalidSignature);
}

TEST_F(BundleTest, MalformedBundlesGiveTypedErrors) {
  EXPECT_EQ(parse_bundle(Bytes{}).code(), ErrorCode::kMalformedBundle);
  EXPECT_EQ(parse_bundle(Bytes{0xff, 0xff, 0xff}).code(), ErrorCode::kMalformedBundle);

  auto no_spk = make_bundle(42, 1, identity.public_key, spk, &otk);
  no_spk.clear_signed_prekey();
  EXPECT_EQ(verify_bundle(*ctx, no_spk).code(), ErrorCode::kMalformedBundle);

  auto bad_identity = make_bundle(42, 1, identity.public_key, spk, &otk);
  bad_identity.set_identity_key(std::string(33, '\x07'));
  EXPECT_EQ(verify_bundle(*ctx, bad_identity).code(), ErrorCode::kInvalidKey);

  auto short_key = make_bundle(42, 1, identity.public_key, spk, &otk);
  short_key.mutable_one_time_prekey()->set_public_key("abc");
  EXPECT_EQ(verify_bundle(*ctx, short_key).code(), ErrorCode::kInvalidKey);

  auto no_device = make_bundle(42, 0, identity.public_key, spk, &otk);
  EXPECT_EQ(verify_bundle(*ctx, no_device).code(), ErrorCode::kMalformedBundle);
}

}  // namespace
}  // namespace sotto::keys
