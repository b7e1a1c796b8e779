#include "Validate.h"

#include <gtest/gtest.h>
#include <sodium.h>

#include "sotto/keys/KeyGen.h"

namespace sotto::relay {
namespace {

std::string basic(const std::string& user) {
  std::string b64(sodium_base64_ENCODED_LEN(user.size(), sodium_base64_VARIANT_ORIGINAL), '\0');
  sodium_bin2base64(b64.data(), b64.size(), reinterpret_cast<const unsigned char*>(user.data()),
                    user.size(), sodium_base64_VARIANT_ORIGINAL);
  b64.resize(std::strlen(b64.c_str()));
  return "Basic " + b64;
}

TEST(Validate, HandlesFollowTheSpec) {
  for (const char* good : {"alice", "a_b.c", "abc", "a23456789012345678901234567890ab"})
    EXPECT_TRUE(valid_handle(good)) << good;
  for (const char* bad : {"", "ab", "1abc", "_abc", "abc.", "a..b", "Alice", "al ice", "al-ice",
                          "a234567890123456789012345678901234"})
    EXPECT_FALSE(valid_handle(bad)) << bad;
}

TEST(Validate, AuthorizationHeaders) {
  std::string account = "00112233445566778899aabbccddeeff";
  std::string secret(64, 'a');
  auto c = parse_authorization(basic(account + ".2:" + secret));
  ASSERT_TRUE(c);
  EXPECT_EQ(to_hex(c->account_id), account);
  EXPECT_EQ(c->device_id, 2u);
  EXPECT_EQ(c->secret, Bytes(32, 0xaa));
  EXPECT_TRUE(parse_authorization("basic " + basic(account + ".1:" + secret).substr(6)));
  for (const std::string& bad :
       {basic(account + ".0:" + secret), basic(account + ".x:" + secret),
        basic(account + ":" + secret), basic(account + ".2:" + secret.substr(2)),
        basic("00112233445566778899AABBCCDDEEFF.2:" + secret),
        basic(account + ".2147483648:" + secret), std::string("Bearer abc"),
        std::string("Basic !!!"), std::string("Basic ")})
    EXPECT_FALSE(parse_authorization(bad)) << bad;
}

TEST(Validate, CredentialsAreLowercaseHexOnly) {
  std::string account = "00112233445566778899aabbccddeeff";
  std::string secret = std::string(62, 'a') + "0f";
  EXPECT_TRUE(parse_authorization(basic(account + ".1:" + secret)));
  std::string upper = std::string(62, 'A') + "0F";
  EXPECT_FALSE(parse_authorization(basic(account + ".1:" + upper)));
  EXPECT_FALSE(parse_authorization(basic(account + ".1:" + std::string(63, 'a') + "F")));
  EXPECT_FALSE(parse_authorization(""));
}

TEST(Validate, AuthSecretsAreStoredAsKeyedHashes) {
  Bytes secret(32, 7);
  Bytes h = hash_auth_secret(secret);
  EXPECT_EQ(h.size(), 32u);
  EXPECT_NE(h, secret);
  EXPECT_TRUE(auth_hash_matches(h, secret));
  secret[0] ^= 1;
  EXPECT_FALSE(auth_hash_matches(h, secret));
  EXPECT_FALSE(auth_hash_matches(Bytes(), secret));
}

TEST(Validate, PushUrlPolicy) {
  Refusal why;
  auto u = parse_push_url("https://push.example.com:8443/up/abc?x=1", false, false, 2048, why);
  ASSERT_TRUE(u);
  EXPECT_TRUE(u->https);
  EXPECT_EQ(u->host, "push.example.com");
  EXPECT_EQ(u->port, 8443);
  EXPECT_EQ(u->target, "/up/abc?x=1");
  EXPECT_EQ(parse_push_url("https://Push.Example.com", false, false, 2048, why)->target, "/");
  EXPECT_FALSE(parse_push_url("http://push.example.com/", false, false, 2048, why));
  EXPECT_EQ(why.status, wire::BAD_REQUEST);
  EXPECT_TRUE(parse_push_url("http://push.example.com/", true, false, 2048, why));
  for (const char* priv :
       {"https://127.0.0.1/", "https://10.0.0.1/", "https://192.168.1.1/", "https://172.16.5.5/",
        "https://169.254.1.1/", "https://[::1]/", "https://[fe80::1]/", "https://[fd00::1]/",
        "https://localhost/", "https://0.0.0.0/", "https://[::ffff:127.0.0.1]/"}) {
    EXPECT_FALSE(parse_push_url(priv, false, false, 2048, why)) << priv;
    EXPECT_EQ(why.status, wire::FORBIDDEN) << priv;
    EXPECT_TRUE(parse_push_url(priv, false, true, 2048, why)) << priv;
  }
  for (const char* bad : {"ftp://x/", "https://", "https://user@host/", "https://h:0/",
                          "https://h:70000/", "https://h/ space", "//h/"})
    EXPECT_FALSE(parse_push_url(bad, true, true, 2048, why)) << bad;
  EXPECT_FALSE(parse_push_url("https://h/" + std::string(3000, 'a'), true, true, 2048, why));
  EXPECT_FALSE(is_private_address("8.8.8.8"));
  EXPECT_FALSE(is_private_address("2001:4860::1"));
}

// The resolver reads these as 127.0.0.1 (or another address), though inet_pton does not.
TEST(Validate, PushUrlsRefuseIpv4LiteralsInAnyButDottedDecimalForm) {
  Refusal why;
  for (const char* odd :
       {"https://127.1/", "https://2130706433/", "https://0x7f.1/", "https://0177.0.0.1/",
        "https://0x7f000001/", "https://010.0.0.1/", "https://8.8.8.8./", "https://1.2.3.4.5/",
        "https://host.0x10/", "https://[::127.0.0.1]/"}) {
    for (bool allow_private : {false, true}) {
      SCOPED_TRACE(std::string(odd) + (allow_private ? " private allowed" : ""));
      bool v4 = std::string_view(odd).find('[') == std::string_view::npos;
      if (!v4 && allow_private) continue;  // a bracketed IPv6 literal is parsed exactly
      EXPECT_FALSE(parse_push_url(odd, false, allow_private, 2048, why));
      EXPECT_EQ(why.status, v4 ? wire::BAD_REQUEST : wire::FORBIDDEN);
    }
  }
  EXPECT_FALSE(parse_push_url("https://localhost./", false, false, 2048, why));
  EXPECT_EQ(why.status, wire::FORBIDDEN);
  EXPECT_TRUE(parse_push_url("https://8.8.8.8/", false, false, 2048, why));
  EXPECT_TRUE(parse_push_url("https://push.example.com./", false, false, 2048, why));
  EXPECT_TRUE(parse_push_url("https://1e100.net/", false, false, 2048, why));
}

TEST(Validate, LinkCodesAreCrockfordBase32) {
  for (int i = 0; i < 200; ++i) {
    std::string code = make_link_code();
    ASSERT_EQ(code.size(), 8u);
    EXPECT_EQ(normalize_link_code(code), code);
    for (char c : code) EXPECT_EQ(std::string("ILOU").find(c), std::string::npos);
  }
  EXPECT_EQ(normalize_link_code("abcd1234"), "ABCD1234");
  EXPECT_EQ(normalize_link_code("abcd123"), "");
  EXPECT_EQ(normalize_link_code("ABCDIOLU"), "");
}

TEST(Validate, DeviceKeysAreCheckedInOrder) {
  auto ctx = keys::Context::create().value();
  auto id = keys::generate_identity(*ctx).value();
  auto spk = keys::generate_signed_prekey(*ctx, id, 1, 1).value();
  auto otks = keys::generate_one_time_prekeys(*ctx, 1, 3).value();
  wire::DeviceKeys d;
  d.set_registration_id(5);
  d.set_auth_secret(std::string(32, 's'));
  d.mutable_signed_prekey()->set_id(1);
  d.mutable_signed_prekey()->set_public_key(std::string(as_chars(spk.public_key)));
  d.mutable_signed_prekey()->set_signature(std::string(as_chars(spk.signature)));
  for (auto& k : otks) {
    auto* o = d.add_one_time_prekeys();
    o->set_id(k.id);
    o->set_public_key(std::string(as_chars(k.public_key)));
  }
  d.mutable_last_resort_prekey()->set_id(kLastResortId);
  d.mutable_last_resort_prekey()->set_public_key(std::string(as_chars(otks[0].public_key)));
  std::string ik(as_chars(id.public_key));
  Limits limits;
  EXPECT_FALSE(check_device_keys(*ctx, ik, d, limits));

  auto broken = d;
  broken.set_registration_id(16381);
  EXPECT_TRUE(check_device_keys(*ctx, ik, broken, limits));
  broken = d;
  broken.set_auth_secret("short");
  EXPECT_TRUE(check_device_keys(*ctx, ik, broken, limits));
  broken = d;
  broken.mutable_one_time_prekeys(1)->set_id(broken.one_time_prekeys(0).id());
  EXPECT_TRUE(check_device_keys(*ctx, ik, broken, limits));
  broken = d;
  broken.mutable_last_resort_prekey()->set_id(3);
  EXPECT_TRUE(check_device_keys(*ctx, ik, broken, limits));
  broken = d;
  broken.set_encrypted_name(std::string(257, 'n'));
  EXPECT_TRUE(check_device_keys(*ctx, ik, broken, limits));
  broken = d;
  broken.mutable_one_time_prekeys(0)->set_public_key(std::string(33, '\x07'));  // not 0x05
  EXPECT_TRUE(check_device_keys(*ctx, ik, broken, limits));
  // Signed by another identity.
  auto other = keys::generate_identity(*ctx).value();
  auto r = check_device_keys(*ctx, std::string(as_chars(other.public_key)), d, limits);
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, wire::BAD_REQUEST);
  limits.max_prekeys_per_upload = 2;
  r = check_device_keys(*ctx, ik, d, limits);
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, wire::TOO_LARGE);
  EXPECT_EQ(r->max_items, 2u);
}

}  // namespace
}  // namespace sotto::relay
