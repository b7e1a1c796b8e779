#include "sotto/keys/KeyGen.h"

#include <curve.h>
#include <key_helper.h>
#include <ratchet.h>
#include <session_pre_key.h>

#include <string>
#include <string_view>

namespace sotto::keys {
namespace {

constexpr uint32_t kMaxPreKeyId = PRE_KEY_MEDIUM_MAX_VALUE - 1;  // 0xFFFFFE

SecureBytes secure_copy(const signal_buffer* b) {
  ByteView v = view(b);
  return SecureBytes(v.data(), v.size());
}

}  // namespace

uint32_t next_prekey_id(uint32_t id, uint32_t step) {
  // Ids live in 1..kMaxPreKeyId; 0 is never used.
  uint64_t zero_based =
      (static_cast<uint64_t>(id == 0 ? kMaxPreKeyId : id) - 1 + step) % kMaxPreKeyId;
  return static_cast<uint32_t>(zero_based + 1);
}

Result<IdentityKeyPair> generate_identity(const Context& ctx) {
  Ref<ratchet_identity_key_pair> pair;
  int rc = signal_protocol_key_helper_generate_identity_key_pair(pair.out(), ctx.get());
  if (rc < 0) return signal_error(rc, "generating an identity key pair");
  IdentityKeyPair out;
  SOTTO_TRY_ASSIGN(out.public_key,
                   serialize_public_key(ratchet_identity_key_pair_get_public(pair.get())));
  signal_buffer* raw = nullptr;
  rc = ratchet_identity_key_pair_serialize(&raw, pair.get());
  Buffer buf(raw);
  if (rc < 0) return signal_error(rc, "serializing an identity key pair");
  out.serialized = secure_copy(buf.get());
  return out;
}

Result<uint32_t> generate_registration_id(const Context& ctx) {
  uint32_t id = 0;
  int rc = signal_protocol_key_helper_generate_registration_id(&id, 0, ctx.get());
  if (rc < 0) return signal_error(rc, "generating a registration id");
  return id;
}

Result<Ref<ratchet_identity_key_pair>> load_identity(const Context& ctx,
                                                     const IdentityKeyPair& identity) {
  Ref<ratchet_identity_key_pair> pair;
  int rc = ratchet_identity_key_pair_deserialize(pair.out(), identity.serialized.data(),
                                                 identity.serialized.size(), ctx.get());
  if (rc < 0) return signal_error(rc, "loading the identity key pair");
  return pair;
}

Result<SignedPreKey> generate_signed_prekey(const Context& ctx, const IdentityKeyPair& identity,
                                            uint32_t id, uint64_t timestamp_ms) {
  SOTTO_TRY_ASSIGN(auto pair, load_identity(ctx, identity));
  Ref<session_signed_pre_key> spk;
  int rc = signal_protocol_key_helper_generate_signed_pre_key(spk.out(), pair.get(), id,
                                                              timestamp_ms, ctx.get());
  if (rc < 0) return signal_error(rc, "generating a signed prekey");
  SignedPreKey out;
  out.id = id;
  out.timestamp_ms = timestamp_ms;
  SOTTO_TRY_ASSIGN(
      out.public_key,
      serialize_public_key(ec_key_pair_get_public(session_signed_pre_key_get_key_pair(spk.get()))));
  const uint8_t* sig = session_signed_pre_key_get_signature(spk.get());
  out.signature.assign(sig, sig + session_signed_pre_key_get_signature_len(spk.get()));
  signal_buffer* raw = nullptr;
  rc = session_signed_pre_key_serialize(&raw, spk.get());
  Buffer buf(raw);
  if (rc < 0) return signal_error(rc, "serializing a signed prekey");
  out.record = secure_copy(buf.get());
  return out;
}

Result<std::vector<OneTimePreKey>> generate_one_time_prekeys(const Context& ctx, uint32_t first_id,
                                                             uint32_t count) {
  std::vector<OneTimePreKey> out;
  out.reserve(count);
  uint32_t id = first_id == 0 ? 1 : first_id;
  for (uint32_t i = 0; i < count; ++i, id = next_prekey_id(id)) {
    Ref<ec_key_pair> pair;
    int rc = curve_generate_key_pair(ctx.get(), pair.out());
    if (rc < 0) return signal_error(rc, "generating a one-time prekey");
    Ref<session_pre_key> pk;
    rc = session_pre_key_create(pk.out(), id, pair.get());
    if (rc < 0) return signal_error(rc, "creating a one-time prekey");
    OneTimePreKey key;
    key.id = id;
    SOTTO_TRY_ASSIGN(key.public_key, serialize_public_key(ec_key_pair_get_public(pair.get())));
    signal_buffer* raw = nullptr;
    rc = session_pre_key_serialize(&raw, pk.get());
    Buffer buf(raw);
    if (rc < 0) return signal_error(rc, "serializing a one-time prekey");
    key.record = secure_copy(buf.get());
    out.push_back(std::move(key));
  }
  return out;
}

Result<Bytes> sign(const Context& ctx, const IdentityKeyPair& identity, ByteView message) {
  SOTTO_TRY_ASSIGN(auto pair, load_identity(ctx, identity));
  signal_buffer* raw = nullptr;
  int rc =
      curve_calculate_signature(ctx.get(), &raw, ratchet_identity_key_pair_get_private(pair.get()),
                                message.data(), message.size());
  Buffer buf(raw);
  if (rc < 0) return signal_error(rc, "signing with the identity key");
  return copy(buf.get());
}

Status verify_signature(const Context& ctx, ByteView identity_public_key, ByteView message,
                        ByteView signature) {
  SOTTO_TRY_ASSIGN(auto key, decode_public_key(ctx, identity_public_key, "the identity key"));
  if (signature.size() != CURVE_SIGNATURE_LEN)
    return make_error(ErrorCode::kInvalidSignature, "the signature is " +
                                                        std::to_string(signature.size()) +
                                                        " bytes; an XEdDSA signature is 64");
  int rc = curve_verify_signature(key.get(), message.data(), message.size(), signature.data(),
                                  signature.size());
  if (rc < 0) return signal_error(rc, "verifying a signature");
  if (rc != 1)
    return make_error(ErrorCode::kInvalidSignature,
                      "the signature does not match the identity key: the data was forged or "
                      "corrupted");
  return {};
}

namespace {

Bytes labelled(SignedPurpose purpose, ByteView payload) {
  std::string_view label =
      purpose == SignedPurpose::kRegistration ? "sotto-register-v1" : "sotto-link-v1";
  Bytes out(label.begin(), label.end());
  out.push_back(0x00);
  out.insert(out.end(), payload.begin(), payload.end());
  return out;
}

}  // namespace

Result<Bytes> sign_payload(const Context& ctx, const IdentityKeyPair& identity,
                           SignedPurpose purpose, ByteView payload) {
  return sign(ctx, identity, labelled(purpose, payload));
}

Status verify_payload(const Context& ctx, ByteView identity_public_key, SignedPurpose purpose,
                      ByteView payload, ByteView signature) {
  return verify_signature(ctx, identity_public_key, labelled(purpose, payload), signature);
}

}  // namespace sotto::keys
