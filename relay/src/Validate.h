// Checks of untrusted request fields, free of I/O so they are unit-tested and fuzzed alone.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "Config.h"
#include "sotto/Bytes.h"
#include "sotto/keys/Signal.h"
#include "sotto/proto/wire.pb.h"

namespace sotto::relay {

// A refusal: the wire status, one sentence for the client, and a detail limit for TOO_LARGE.
struct Refusal {
  wire::Status status = wire::BAD_REQUEST;
  std::string message;
  uint64_t max_bytes = 0;
  uint32_t max_items = 0;
};
using Check = std::optional<Refusal>;

inline Refusal bad_request(std::string m) { return Refusal{wire::BAD_REQUEST, std::move(m)}; }
inline Refusal too_large_bytes(std::string m, uint64_t max) {
  return Refusal{wire::TOO_LARGE, std::move(m), max, 0};
}
inline Refusal too_large_items(std::string m, uint32_t max) {
  return Refusal{wire::TOO_LARGE, std::move(m), 0, max};
}

constexpr uint32_t kLastResortId = 0xFFFFFF;
constexpr uint32_t kMaxPreKeyId = 0xFFFFFE;

// protocol.md section 2: 3..32 of [a-z0-9_.], starts with a letter, no trailing '.', no "..".
bool valid_handle(std::string_view handle);

// A 33-byte libsignal public key that decodes.
bool valid_public_key(const keys::Context& ctx, std::string_view key);

// The DeviceKeys checks of OP_REGISTER and OP_LINK_DEVICE, in the order of protocol.md 5.3
// (after handle syntax): keys, registration id, auth secret, signed prekey signature, one-time
// prekey ids, last-resort id, encrypted name.
Check check_device_keys(const keys::Context& ctx, std::string_view identity_key,
                        const wire::DeviceKeys& device, const Limits& limits);

// OP_UPLOAD_PREKEYS body checks (not the pool cap, which needs storage).
Check check_prekey_upload(const keys::Context& ctx, std::string_view identity_key,
                          const wire::UploadPreKeysRequest& req, const Limits& limits);

// Credentials of the upgrade: "Basic base64(<account hex>.<device>:<secret hex>)".
struct Credentials {
  Bytes account_id;
  uint32_t device_id = 0;
  Bytes secret;
};
std::optional<Credentials> parse_authorization(std::string_view header);

// The stored form of an auth secret: keyed BLAKE2b-256. The secret has 256 random bits, so a
// fast hash is enough; only the hash is ever written to disk.
Bytes hash_auth_secret(ByteView secret);
bool auth_hash_matches(ByteView stored_hash, ByteView secret);

// A parsed push endpoint. `host` is a name or an address literal (without brackets).
struct PushUrl {
  bool https = true;
  std::string host;
  uint16_t port = 443;
  std::string target;  // path and query, "/" at least
};
// Parses and applies the operator's policy. BAD_REQUEST for a malformed URL, plain http when
// not allowed, or a URL too long; FORBIDDEN for a loopback/private/link-local literal or
// "localhost" when private targets are not allowed.
std::optional<PushUrl> parse_push_url(std::string_view url, bool allow_http, bool allow_private,
                                      uint32_t max_bytes, Refusal& why);
// True for loopback, private (RFC 1918, fc00::/7), link-local, unspecified and CGNAT addresses.
bool is_private_address(std::string_view address_literal);

// Link codes: 8 characters of Crockford base32 (0-9 A-Z without I L O U).
std::string make_link_code();
// Upper-cases a typed code; empty when it is not 8 Crockford characters.
std::string normalize_link_code(std::string_view code);

// Invite tokens (sotto-relay admin invite create): 25 Crockford base32 characters (125 random
// bits) in five groups, e.g. "7K2QD-MX4RA-...". The store keeps only hash_invite_token(); a
// typed token may be lower case and without the dashes; its hash is empty when it is not a token.
std::string make_invite_token();
Bytes hash_invite_token(std::string_view token);

std::string random_hex(size_t bytes);
Bytes random_bytes(size_t n);

}  // namespace sotto::relay
