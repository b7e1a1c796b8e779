// Linking a new device (docs/protocol.md 15) and the encrypted device name, as pure functions:
// the ephemeral X25519 keys, the link code's text and URI forms, and the AEAD that carries the
// identity key from an existing device to the new one through the relay.
#pragma once

#include <optional>
#include <string>

#include "sotto/Bytes.h"
#include "sotto/Result.h"
#include "sotto/SecureBytes.h"
#include "sotto/proto/content.pb.h"
#include "sotto/proto/wire.pb.h"

namespace sotto {

struct LinkKeys {
  Bytes public_key;        // 32 bytes, raw X25519
  SecureBytes secret_key;  // 32 bytes
};
Result<LinkKeys> new_link_keys();

// The first 15 bytes of SHA-256(key) in Crockford base32: 24 characters.
std::string link_fingerprint(ByteView public_key);
// XXXX-XXXX-FFFF-FFFF-FFFF-FFFF-FFFF-FFFF: the code, then the fingerprint, in groups of four.
std::string link_text(const std::string& code, ByteView public_key);
// sotto://link?code=<code>&key=<base64url(key), no padding>
std::string link_uri(const std::string& code, ByteView public_key);

struct ParsedInvite {
  std::string code;         // upper case
  Bytes public_key;         // from a URI
  std::string fingerprint;  // from the text form (normalised)
};
// Accepts the URI or the text form (any case, dashes and spaces optional, Crockford's I/L/O
// read as 1/1/0).
Result<ParsedInvite> parse_invite(const std::string& text);
// Constant-time comparison of a typed fingerprint with a key's.
bool fingerprint_matches(const std::string& fingerprint, ByteView public_key);

// Existing device: encrypt `message` to the new device's key.
Result<wire::ProvisionEnvelope> seal_provision(const content::ProvisionMessage& message,
                                               ByteView new_device_key,
                                               const std::string& link_code);
// New device: decrypt with its key pair. kInvalidMessage if anything does not check out.
Result<content::ProvisionMessage> open_provision(const wire::ProvisionEnvelope& envelope,
                                                 const LinkKeys& keys,
                                                 const std::string& link_code);

// A device name encrypted under a key derived from the account's identity key pair, so only
// the account's own devices can read it: nonce (24) || XChaCha20-Poly1305 ciphertext.
Result<Bytes> seal_device_name(const std::string& name, const SecureBytes& identity_key_pair);
std::optional<std::string> open_device_name(ByteView sealed, const SecureBytes& identity_key_pair);

}  // namespace sotto
