// Generation of a device's long-term and medium-term keys: the identity key pair, the
// registration id, signed prekeys and one-time prekeys. Nothing here touches storage.
#pragma once

#include <cstdint>
#include <vector>

#include "sotto/Bytes.h"
#include "sotto/Result.h"
#include "sotto/SecureBytes.h"
#include "sotto/keys/Signal.h"

namespace sotto::keys {

struct IdentityKeyPair {
  Bytes public_key;        // 33 bytes, 0x05-prefixed Curve25519
  SecureBytes serialized;  // libsignal's serialized key pair (holds the private key)
};

struct SignedPreKey {
  uint32_t id = 0;
  uint64_t timestamp_ms = 0;
  Bytes public_key;
  Bytes signature;     // XEdDSA by the identity key over public_key
  SecureBytes record;  // libsignal's serialized session_signed_pre_key (private part)
};

struct OneTimePreKey {
  uint32_t id = 0;
  Bytes public_key;
  SecureBytes record;  // libsignal's serialized session_pre_key (private part)
};

Result<IdentityKeyPair> generate_identity(const Context& ctx);
// A random id in 1..16380, as libsignal expects.
Result<uint32_t> generate_registration_id(const Context& ctx);
Result<SignedPreKey> generate_signed_prekey(const Context& ctx, const IdentityKeyPair& identity,
                                            uint32_t id, uint64_t timestamp_ms);
// `count` keys with ids first_id, first_id+1, ... wrapping within 1..0xFFFFFE.
Result<std::vector<OneTimePreKey>> generate_one_time_prekeys(const Context& ctx, uint32_t first_id,
                                                             uint32_t count);
// Next id after `id` in the one-time prekey id space (1..0xFFFFFE).
uint32_t next_prekey_id(uint32_t id, uint32_t step = 1);

Result<Ref<ratchet_identity_key_pair>> load_identity(const Context& ctx,
                                                     const IdentityKeyPair& identity);

// XEdDSA signature of `message` with the identity key.
Result<Bytes> sign(const Context& ctx, const IdentityKeyPair& identity, ByteView message);
// Ok when `signature` is the identity key's signature over `message`; kInvalidSignature
// when it is not, kInvalidKey when the key does not decode.
Status verify_signature(const Context& ctx, ByteView identity_public_key, ByteView message,
                        ByteView signature);

// What a signed wire payload is for (docs/protocol.md 5.3 and 5.7). The signature covers the
// purpose's ASCII label, a 0x00 byte, then the payload, so a signature made for one purpose
// never verifies for another.
enum class SignedPurpose {
  kRegistration,  // "sotto-register-v1": RegisterRequest.payload
  kLink,          // "sotto-link-v1": LinkDeviceRequest.payload
};
Result<Bytes> sign_payload(const Context& ctx, const IdentityKeyPair& identity,
                           SignedPurpose purpose, ByteView payload);
Status verify_payload(const Context& ctx, ByteView identity_public_key, SignedPurpose purpose,
                      ByteView payload, ByteView signature);

}  // namespace sotto::keys
