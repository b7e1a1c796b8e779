#include "sotto/keys/CryptoProvider.h"

#include <openssl/core_names.h>
#include <openssl/evp.h>
#include <openssl/params.h>
#include <openssl/rand.h>

#include <climits>
#include <memory>

namespace sotto::keys {
namespace {

// An HMAC-SHA256 context with the digest already set, duplicated for every MAC: fetching the
// algorithm and the digest by name walks OpenSSL's provider tables, too slow per message.
const EVP_MAC_CTX* hmac_sha256_prototype() {
  static EVP_MAC_CTX* proto = [] {
    EVP_MAC* mac = EVP_MAC_fetch(nullptr, "HMAC", nullptr);
    if (!mac) return static_cast<EVP_MAC_CTX*>(nullptr);
    EVP_MAC_CTX* ctx = EVP_MAC_CTX_new(mac);
    EVP_MAC_free(mac);  // the context keeps its own reference
    char digest[] = "SHA256";
    OSSL_PARAM params[] = {OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, digest, 0),
                           OSSL_PARAM_construct_end()};
    if (ctx && EVP_MAC_CTX_set_params(ctx, params) != 1) {
      EVP_MAC_CTX_free(ctx);
      ctx = nullptr;
    }
    return ctx;
  }();
  return proto;
}

int random_bytes(uint8_t* data, size_t len, void*) {
  while (len > 0) {
    int chunk = len > INT_MAX ? INT_MAX : static_cast<int>(len);
    if (RAND_bytes(data, chunk) != 1) return SG_ERR_UNKNOWN;
    data += chunk;
    len -= static_cast<size_t>(chunk);
  }
  return SG_SUCCESS;
}

int hmac_init(void** context, const uint8_t* key, size_t key_len, void*) {
  const EVP_MAC_CTX* proto = hmac_sha256_prototype();
  if (!proto) return SG_ERR_UNKNOWN;
  EVP_MAC_CTX* ctx = EVP_MAC_CTX_dup(proto);
  if (!ctx) return SG_ERR_NOMEM;
  // A zero-length key is legal for HMAC; hand OpenSSL a valid pointer anyway.
  static const uint8_t kEmpty = 0;
  if (EVP_MAC_init(ctx, key_len ? key : &kEmpty, key_len, nullptr) != 1) {
    EVP_MAC_CTX_free(ctx);
    return SG_ERR_UNKNOWN;
  }
  *context = ctx;
  return SG_SUCCESS;
}

int hmac_update(void* context, const uint8_t* data, size_t len, void*) {
  return EVP_MAC_update(static_cast<EVP_MAC_CTX*>(context), data, len) == 1 ? SG_SUCCESS
                                                                            : SG_ERR_UNKNOWN;
}

int hmac_final(void* context, signal_buffer** output, void*) {
  uint8_t md[EVP_MAX_MD_SIZE];
  size_t len = 0;
  if (EVP_MAC_final(static_cast<EVP_MAC_CTX*>(context), md, &len, sizeof md) != 1)
    return SG_ERR_UNKNOWN;
  signal_buffer* out = signal_buffer_create(md, len);
  if (!out) return SG_ERR_NOMEM;
  *output = out;
  return SG_SUCCESS;
}

void hmac_cleanup(void* context, void*) { EVP_MAC_CTX_free(static_cast<EVP_MAC_CTX*>(context)); }

int sha512_init(void** context, void*) {
  EVP_MD_CTX* ctx = EVP_MD_CTX_new();
  if (!ctx) return SG_ERR_NOMEM;
  if (EVP_DigestInit_ex(ctx, EVP_sha512(), nullptr) != 1) {
    EVP_MD_CTX_free(ctx);
    return SG_ERR_UNKNOWN;
  }
  *context = ctx;
  return SG_SUCCESS;
}

int sha512_update(void* context, const uint8_t* data, size_t len, void*) {
  return EVP_DigestUpdate(static_cast<EVP_MD_CTX*>(context), data, len) == 1 ? SG_SUCCESS
                                                                             : SG_ERR_UNKNOWN;
}

int sha512_final(void* context, signal_buffer** output, void*) {
  auto* ctx = static_cast<EVP_MD_CTX*>(context);
  uint8_t md[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  if (EVP_DigestFinal_ex(ctx, md, &len) != 1) return SG_ERR_UNKNOWN;
  // The contract: leave the context ready for another digest.
  if (EVP_DigestInit_ex(ctx, EVP_sha512(), nullptr) != 1) return SG_ERR_UNKNOWN;
  signal_buffer* out = signal_buffer_create(md, len);
  if (!out) return SG_ERR_NOMEM;
  *output = out;
  return SG_SUCCESS;
}

void sha512_cleanup(void* context, void*) { EVP_MD_CTX_free(static_cast<EVP_MD_CTX*>(context)); }

const EVP_CIPHER* aes_cipher(int mode, size_t key_len) {
  if (mode == SG_CIPHER_AES_CBC_PKCS5) {
    switch (key_len) {
      case 16:
        return EVP_aes_128_cbc();
      case 24:
        return EVP_aes_192_cbc();
      case 32:
        return EVP_aes_256_cbc();
    }
  } else if (mode == SG_CIPHER_AES_CTR_NOPADDING) {
    switch (key_len) {
      case 16:
        return EVP_aes_128_ctr();
      case 24:
        return EVP_aes_192_ctr();
      case 32:
        return EVP_aes_256_ctr();
    }
  }
  return nullptr;
}

struct CipherCtxFree {
  void operator()(EVP_CIPHER_CTX* c) const { EVP_CIPHER_CTX_free(c); }
};

int aes(bool encrypt, signal_buffer** output, int mode, const uint8_t* key, size_t key_len,
        const uint8_t* iv, size_t iv_len, const uint8_t* input, size_t input_len) {
  const EVP_CIPHER* cipher = aes_cipher(mode, key_len);
  if (!cipher || iv_len != 16) return SG_ERR_INVAL;
  if (input_len > static_cast<size_t>(INT_MAX) - 32) return SG_ERR_INVAL;
  std::unique_ptr<EVP_CIPHER_CTX, CipherCtxFree> ctx(EVP_CIPHER_CTX_new());
  if (!ctx) return SG_ERR_NOMEM;
  if (EVP_CipherInit_ex(ctx.get(), cipher, nullptr, key, iv, encrypt ? 1 : 0) != 1)
    return SG_ERR_UNKNOWN;
  EVP_CIPHER_CTX_set_padding(ctx.get(), mode == SG_CIPHER_AES_CBC_PKCS5 ? 1 : 0);

  signal_buffer* out = signal_buffer_alloc(input_len + 16);
  if (!out) return SG_ERR_NOMEM;
  uint8_t* p = signal_buffer_data(out);
  int n = 0, tail = 0;
  if (EVP_CipherUpdate(ctx.get(), p, &n, input, static_cast<int>(input_len)) != 1 ||
      EVP_CipherFinal_ex(ctx.get(), p + n, &tail) != 1) {
    signal_buffer_bzero_free(out);
    // A bad PKCS#7 pad on decrypt lands here: the caller sees an invalid message.
    return SG_ERR_UNKNOWN;
  }
  signal_buffer* exact = signal_buffer_n_copy(out, static_cast<size_t>(n + tail));
  signal_buffer_bzero_free(out);
  if (!exact) return SG_ERR_NOMEM;
  *output = exact;
  return SG_SUCCESS;
}

int aes_encrypt(signal_buffer** output, int mode, const uint8_t* key, size_t key_len,
                const uint8_t* iv, size_t iv_len, const uint8_t* plaintext, size_t len, void*) {
  return aes(true, output, mode, key, key_len, iv, iv_len, plaintext, len);
}

int aes_decrypt(signal_buffer** output, int mode, const uint8_t* key, size_t key_len,
                const uint8_t* iv, size_t iv_len, const uint8_t* ciphertext, size_t len, void*) {
  return aes(false, output, mode, key, key_len, iv, iv_len, ciphertext, len);
}

}  // namespace

const signal_crypto_provider& openssl_crypto_provider() {
  static const signal_crypto_provider provider = {
      .random_func = random_bytes,
      .hmac_sha256_init_func = hmac_init,
      .hmac_sha256_update_func = hmac_update,
      .hmac_sha256_final_func = hmac_final,
      .hmac_sha256_cleanup_func = hmac_cleanup,
      .sha512_digest_init_func = sha512_init,
      .sha512_digest_update_func = sha512_update,
      .sha512_digest_final_func = sha512_final,
      .sha512_digest_cleanup_func = sha512_cleanup,
      .encrypt_func = aes_encrypt,
      .decrypt_func = aes_decrypt,
      .user_data = nullptr,
  };
  return provider;
}

}  // namespace sotto::keys
