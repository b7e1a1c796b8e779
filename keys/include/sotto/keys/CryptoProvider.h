// sotto's crypto provider for libsignal-protocol-c, on OpenSSL 3's EVP interfaces only
// (EVP_MAC for HMAC, EVP_MD for SHA-512, EVP_CIPHER for AES-CBC/CTR, RAND_bytes).
#pragma once

#include <signal_protocol.h>

namespace sotto::keys {

// The provider's function table. Stateless; user_data is unused.
const signal_crypto_provider& openssl_crypto_provider();

}  // namespace sotto::keys
