// Known-answer tests of the OpenSSL crypto provider that libsignal runs on, through the same
// function table libsignal calls. Vectors in tests/vectors/ come from RFC 4231 (HMAC-SHA256),
// NIST SP 800-38A (AES-256 CBC and CTR) and FIPS 180 (SHA-512).
#include "sotto/keys/CryptoProvider.h"

#include <gtest/gtest.h>

#include <string>

#include "TestSupport.h"
#include "sotto/keys/Signal.h"

namespace sotto::keys {
namespace {

const signal_crypto_provider& P() { return openssl_crypto_provider(); }

Bytes hmac(const Bytes& key, const Bytes& data) {
  void* ctx = nullptr;
  EXPECT_EQ(P().hmac_sha256_init_func(&ctx, key.data(), key.size(), nullptr), 0);
  // Feed in two pieces to exercise update.
  size_t half = data.size() / 2;
  EXPECT_EQ(P().hmac_sha256_update_func(ctx, data.data(), half, nullptr), 0);
  EXPECT_EQ(P().hmac_sha256_update_func(ctx, data.data() + half, data.size() - half, nullptr), 0);
  signal_buffer* out = nullptr;
  EXPECT_EQ(P().hmac_sha256_final_func(ctx, &out, nullptr), 0);
  P().hmac_sha256_cleanup_func(ctx, nullptr);
  Buffer owned(out);
  return copy(out);
}

TEST(CryptoProvider, HmacSha256MatchesRfc4231) {
  auto records = test::read_vectors("hmac_sha256_rfc4231.txt");
  ASSERT_EQ(records.size(), 7u);
  for (const auto& r : records) {
    Bytes mac = hmac(r.hex("key"), r.hex("data"));
    Bytes expected = r.hex("mac");
    if (auto t = r.fields.find("truncate"); t != r.fields.end())
      mac.resize(static_cast<size_t>(std::stoi(t->second)));
    EXPECT_EQ(to_hex(mac), to_hex(expected)) << r.label;
  }
}

Bytes sha512(ByteView data, size_t repeat, void* ctx) {
  for (size_t i = 0; i < repeat; ++i)
    EXPECT_EQ(P().sha512_digest_update_func(ctx, data.data(), data.size(), nullptr), 0);
  signal_buffer* out = nullptr;
  EXPECT_EQ(P().sha512_digest_final_func(ctx, &out, nullptr), 0);
  Buffer owned(out);
  return copy(out);
}

TEST(CryptoProvider, Sha512MatchesFips180AndContextIsReusable) {
  auto records = test::read_vectors("sha512_fips180.txt");
  ASSERT_GE(records.size(), 3u);
  void* ctx = nullptr;
  ASSERT_EQ(P().sha512_digest_init_func(&ctx, nullptr), 0);
  // One context for every record: final must leave it ready for the next digest.
  for (const auto& r : records) {
    Bytes msg;
    if (r.fields.count("msg_ascii")) {
      const std::string& a = r.fields.at("msg_ascii");
      msg.assign(a.begin(), a.end());
    } else if (r.fields.count("msg")) {
      msg = r.hex("msg");
    }
    size_t repeat = r.fields.count("repeat") ? std::stoul(r.fields.at("repeat")) : 1;
    EXPECT_EQ(to_hex(sha512(msg, repeat, ctx)), to_hex(r.hex("digest"))) << r.label;
  }
  P().sha512_digest_cleanup_func(ctx, nullptr);
}

Bytes aes(bool encrypt, int mode, const Bytes& key, const Bytes& iv, const Bytes& in) {
  signal_buffer* out = nullptr;
  auto fn = encrypt ? P().encrypt_func : P().decrypt_func;
  EXPECT_EQ(
      fn(&out, mode, key.data(), key.size(), iv.data(), iv.size(), in.data(), in.size(), nullptr),
      0);
  Buffer owned(out);
  return copy(out);
}

TEST(CryptoProvider, Aes256CbcMatchesSp800_38a) {
  auto records = test::read_vectors("aes256_cbc_sp800_38a.txt");
  ASSERT_FALSE(records.empty());
  for (const auto& r : records) {
    Bytes key = r.hex("key"), iv = r.hex("iv"), pt = r.hex("plaintext"), ct = r.hex("ciphertext");
    ASSERT_EQ(key.size(), 32u);
    Bytes out = aes(true, SG_CIPHER_AES_CBC_PKCS5, key, iv, pt);
    // PKCS#7 adds one whole block to block-aligned input; the vector covers the rest.
    ASSERT_EQ(out.size(), ct.size() + 16) << r.label;
    EXPECT_EQ(to_hex(Bytes(out.begin(), out.begin() + static_cast<long>(ct.size()))), to_hex(ct))
        << r.label;
    EXPECT_EQ(to_hex(aes(false, SG_CIPHER_AES_CBC_PKCS5, key, iv, out)), to_hex(pt)) << r.label;
  }
}

TEST(CryptoProvider, Aes256CtrMatchesSp800_38a) {
  auto records = test::read_vectors("aes256_ctr_sp800_38a.txt");
  ASSERT_FALSE(records.empty());
  for (const auto& r : records) {
    Bytes key = r.hex("key"), iv = r.hex("iv"), pt = r.hex("plaintext"), ct = r.hex("ciphertext");
    EXPECT_EQ(to_hex(aes(true, SG_CIPHER_AES_CTR_NOPADDING, key, iv, pt)), to_hex(ct)) << r.label;
    EXPECT_EQ(to_hex(aes(false, SG_CIPHER_AES_CTR_NOPADDING, key, iv, ct)), to_hex(pt)) << r.label;
  }
}

TEST(CryptoProvider, RejectsBadKeyLengthAndBadPadding) {
  Bytes key(20, 1), iv(16, 0), data(16, 0);
  signal_buffer* out = nullptr;
  EXPECT_LT(P().encrypt_func(&out, SG_CIPHER_AES_CBC_PKCS5, key.data(), key.size(), iv.data(),
                             iv.size(), data.data(), data.size(), nullptr),
            0);
  Bytes key32(32, 1);
  // A random block decrypts to garbage whose PKCS#7 pad is almost surely invalid.
  Bytes garbage(16, 0x5a);
  int rc = P().decrypt_func(&out, SG_CIPHER_AES_CBC_PKCS5, key32.data(), key32.size(), iv.data(),
                            iv.size(), garbage.data(), garbage.size(), nullptr);
  if (rc == 0) signal_buffer_free(out);
  EXPECT_LT(rc, 0);
}

TEST(CryptoProvider, RandomFillsTheBuffer) {
  Bytes a(64, 0), b(64, 0);
  ASSERT_EQ(P().random_func(a.data(), a.size(), nullptr), 0);
  ASSERT_EQ(P().random_func(b.data(), b.size(), nullptr), 0);
  EXPECT_NE(a, b);
  EXPECT_NE(a, Bytes(64, 0));
}

}  // namespace
}  // namespace sotto::keys
