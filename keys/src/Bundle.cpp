#include "sotto/keys/Bundle.h"

#include <session_pre_key.h>

#include <string>

namespace sotto::keys {

wire::PreKeyBundle make_bundle(uint32_t registration_id, uint32_t device_id,
                               ByteView identity_public_key, const SignedPreKey& signed_prekey,
                               const OneTimePreKey* one_time_prekey, bool last_resort) {
  wire::PreKeyBundle b;
  b.set_registration_id(registration_id);
  b.set_device_id(device_id);
  b.set_identity_key(std::string(as_chars(identity_public_key)));
  auto* spk = b.mutable_signed_prekey();
  spk->set_id(signed_prekey.id);
  spk->set_public_key(std::string(as_chars(signed_prekey.public_key)));
  spk->set_signature(std::string(as_chars(signed_prekey.signature)));
  spk->set_timestamp_ms(signed_prekey.timestamp_ms);
  if (one_time_prekey) {
    auto* otk = b.mutable_one_time_prekey();
    otk->set_id(one_time_prekey->id);
    otk->set_public_key(std::string(as_chars(one_time_prekey->public_key)));
    b.set_last_resort(last_resort);
  }
  return b;
}

Result<wire::PreKeyBundle> parse_bundle(ByteView serialized) {
  wire::PreKeyBundle b;
  if (serialized.empty() ||
      !b.ParseFromArray(serialized.data(), static_cast<int>(serialized.size())))
    return make_error(ErrorCode::kMalformedBundle, "the prekey bundle does not parse (" +
                                                       std::to_string(serialized.size()) +
                                                       " bytes); fetch it again");
  return b;
}

Bytes serialize_bundle(const wire::PreKeyBundle& bundle) {
  Bytes out(bundle.ByteSizeLong());
  bundle.SerializeToArray(out.data(), static_cast<int>(out.size()));
  return out;
}

Status verify_bundle(const Context& ctx, const wire::PreKeyBundle& b) {
  if (b.registration_id() == 0 || b.device_id() == 0)
    return make_error(ErrorCode::kMalformedBundle,
                      "the prekey bundle has no registration id or device id");
  if (!b.has_signed_prekey() || b.signed_prekey().public_key().empty() ||
      b.signed_prekey().signature().empty())
    return make_error(ErrorCode::kMalformedBundle, "the prekey bundle has no signed prekey");
  SOTTO_TRY(decode_public_key(ctx, as_bytes(b.identity_key()), "the bundle's identity key"));
  SOTTO_TRY(decode_public_key(ctx, as_bytes(b.signed_prekey().public_key()),
                              "the bundle's signed prekey"));
  if (b.has_one_time_prekey()) {
    if (b.one_time_prekey().id() == 0)
      return make_error(ErrorCode::kMalformedBundle,
                        "the bundle's one-time prekey has id 0, which is never issued");
    SOTTO_TRY(decode_public_key(ctx, as_bytes(b.one_time_prekey().public_key()),
                                "the bundle's one-time prekey"));
  }
  Status sig =
      verify_signature(ctx, as_bytes(b.identity_key()), as_bytes(b.signed_prekey().public_key()),
                       as_bytes(b.signed_prekey().signature()));
  if (!sig.ok())
    return make_error(sig.code(),
                      "the signed prekey in the bundle is not signed by its "
                      "identity key: " +
                          sig.error().message);
  return {};
}

Result<Ref<session_pre_key_bundle>> to_signal_bundle(const Context& ctx,
                                                     const wire::PreKeyBundle& b) {
  SOTTO_TRY(verify_bundle(ctx, b));
  SOTTO_TRY_ASSIGN(auto identity, decode_public_key(ctx, as_bytes(b.identity_key()), "identity"));
  SOTTO_TRY_ASSIGN(
      auto spk, decode_public_key(ctx, as_bytes(b.signed_prekey().public_key()), "signed prekey"));
  Ref<ec_public_key> otk;
  uint32_t otk_id = 0;
  if (b.has_one_time_prekey()) {
    SOTTO_TRY_ASSIGN(
        otk, decode_public_key(ctx, as_bytes(b.one_time_prekey().public_key()), "one-time prekey"));
    otk_id = b.one_time_prekey().id();
  }
  const std::string& sig = b.signed_prekey().signature();
  Ref<session_pre_key_bundle> out;
  int rc = session_pre_key_bundle_create(
      out.out(), b.registration_id(), static_cast<int>(b.device_id()), otk_id, otk.get(),
      b.signed_prekey().id(), spk.get(), reinterpret_cast<const uint8_t*>(sig.data()), sig.size(),
      identity.get());
  if (rc < 0) return signal_error(rc, "building a prekey bundle");
  return out;
}

}  // namespace sotto::keys
