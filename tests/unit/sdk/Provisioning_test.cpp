// Linking crypto (protocol.md 15) and the encrypted device name, without a relay.
#include "Provisioning.h"

#include <gtest/gtest.h>
#include <sodium.h>

#include <vector>

#include "MemoryProtocolStore.h"
#include "SessionCrypto.h"
#include "sotto/keys/KeyGen.h"

namespace sotto {
namespace {

content::ProvisionMessage sample(const std::string& code) {
  content::ProvisionMessage m;
  m.set_account_id(std::string(16, 'a'));
  m.set_handle("alice");
  m.set_identity_key(std::string(33, '\x05'));
  m.set_identity_key_pair("secret key pair bytes");
  m.set_approver_device_id(1);
  m.set_link_code(code);
  m.set_timestamp_ms(1234);
  return m;
}

TEST(Provisioning, SealedMessageOpensOnlyForTheNewDevice) {
  auto keys = new_link_keys().value();
  auto env = seal_provision(sample("ABCD2345"), keys.public_key, "ABCD2345");
  ASSERT_TRUE(env.ok()) << env.error().message;
  auto opened = open_provision(*env, keys, "abcd2345");  // the code is case-insensitive
  ASSERT_TRUE(opened.ok()) << opened.error().message;
  EXPECT_EQ(opened->handle(), "alice");
  EXPECT_EQ(opened->identity_key_pair(), "secret key pair bytes");

  auto other = new_link_keys().value();
  EXPECT_EQ(open_provision(*env, other, "ABCD2345").code(), ErrorCode::kInvalidMessage);
}

TEST(Provisioning, WrongCodeOrTamperedEnvelopeIsRefused) {
  auto keys = new_link_keys().value();
  auto env = seal_provision(sample("ABCD2345"), keys.public_key, "ABCD2345").value();
  EXPECT_EQ(open_provision(env, keys, "ABCD2346").code(), ErrorCode::kInvalidMessage);
  for (size_t i : {size_t{0}, env.ciphertext().size() / 2, env.ciphertext().size() - 1}) {
    auto bad = env;
    (*bad.mutable_ciphertext())[i] ^= 1;
    EXPECT_EQ(open_provision(bad, keys, "ABCD2345").code(), ErrorCode::kInvalidMessage) << i;
  }
  auto bad_nonce = env;
  bad_nonce.set_nonce("short");
  EXPECT_EQ(open_provision(bad_nonce, keys, "ABCD2345").code(), ErrorCode::kInvalidMessage);
  // A message that names another code inside is refused even if it decrypts.
  auto inner = seal_provision(sample("ZZZZ2345"), keys.public_key, "ABCD2345").value();
  EXPECT_EQ(open_provision(inner, keys, "ABCD2345").code(), ErrorCode::kInvalidMessage);
}

TEST(Provisioning, ANewDeviceAdoptsOnlyAKeyPairThatBelongsToItsIdentityKey) {
  auto ctx = keys::Context::create().value();
  auto account = keys::generate_identity(*ctx).value();
  auto other = keys::generate_identity(*ctx).value();
  const std::string id(32, 'a');
  // An approval whose key pair is another account's would make this device sign for a key
  // it does not hold.
  std::vector<keys::IdentityKeyPair> mismatched;
  mismatched.push_back({account.public_key, SecureBytes(other.serialized)});
  mismatched.push_back({other.public_key, SecureBytes(account.serialized)});
  mismatched.push_back({Bytes{}, SecureBytes(account.serialized)});
  for (const auto& pair : mismatched) {
    MemoryProtocolStore store;
    auto crypto = SessionCrypto::create(ctx, store).value();
    Status s = crypto->import_identity(id, 2, pair, 0);
    EXPECT_EQ(s.code(), ErrorCode::kInvalidKey);
    EXPECT_FALSE(crypto->has_identity());
  }
  MemoryProtocolStore store;
  auto crypto = SessionCrypto::create(ctx, store).value();
  ASSERT_TRUE(crypto->import_identity(id, 2, account, 0).ok());
  EXPECT_EQ(crypto->identity().public_key, account.public_key);
}

TEST(Provisioning, InviteTextAndUriParseBack) {
  auto keys = new_link_keys().value();
  std::string text = link_text("ABCD2345", keys.public_key);
  ASSERT_EQ(text.size(), 32u + 7u);
  EXPECT_EQ(text.substr(0, 10), "ABCD-2345-");
  auto parsed = parse_invite(text);
  ASSERT_TRUE(parsed.ok()) << parsed.error().message;
  EXPECT_EQ(parsed->code, "ABCD2345");
  EXPECT_TRUE(parsed->public_key.empty());
  EXPECT_TRUE(fingerprint_matches(parsed->fingerprint, keys.public_key));

  // Typed in lower case without dashes it still reads the same.
  std::string sloppy;
  for (char c : text)
    if (c != '-') sloppy += static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  auto again = parse_invite("  " + sloppy + "\n");
  ASSERT_TRUE(again.ok());
  EXPECT_TRUE(fingerprint_matches(again->fingerprint, keys.public_key));

  auto other = new_link_keys().value();
  EXPECT_FALSE(fingerprint_matches(parsed->fingerprint, other.public_key));

  auto uri = parse_invite(link_uri("ABCD2345", keys.public_key));
  ASSERT_TRUE(uri.ok()) << uri.error().message;
  EXPECT_EQ(uri->code, "ABCD2345");
  EXPECT_EQ(uri->public_key, keys.public_key);
}

TEST(Provisioning, GarbageInvitesAreClearErrors) {
  for (const char* bad :
       {"", "hello", "ABCD-2345", "sotto://link?code=ABCD2345", "sotto://link?code=AB&key=AAAA",
        "ABCD-2345-!!!!-FFFF-FFFF-FFFF-FFFF-FFFF"}) {
    auto r = parse_invite(bad);
    EXPECT_EQ(r.code(), ErrorCode::kInvalidArgument) << bad;
    if (!r.ok()) {
      EXPECT_NE(r.error().message.find("invite"), std::string::npos);
    }
  }
}

TEST(Provisioning, DeviceNameOpensOnlyWithTheAccountKey) {
  SecureBytes pair = SecureBytes::from_string("identity key pair of the account");
  SecureBytes other = SecureBytes::from_string("identity key pair of someone else");
  auto sealed = seal_device_name("Alice's laptop", pair);
  ASSERT_TRUE(sealed.ok());
  EXPECT_EQ(open_device_name(*sealed, pair).value_or(""), "Alice's laptop");
  EXPECT_FALSE(open_device_name(*sealed, other).has_value());
  EXPECT_TRUE(seal_device_name("", pair)->empty());
  EXPECT_EQ(seal_device_name(std::string(300, 'x'), pair).code(), ErrorCode::kInvalidArgument);
}

}  // namespace
}  // namespace sotto
