#include "sotto/keys/Signal.h"

#include <string>

#include "sotto/keys/CryptoProvider.h"

namespace sotto::keys {

Result<std::shared_ptr<Context>> Context::create() {
  std::shared_ptr<Context> self(new Context());
  if (signal_context_create(&self->ctx_, self.get()) != 0 || !self->ctx_)
    return make_error(ErrorCode::kCryptoFailure, "could not create the Signal protocol context");
  if (signal_context_set_crypto_provider(self->ctx_, &openssl_crypto_provider()) != 0 ||
      signal_context_set_locking_functions(self->ctx_, &Context::lock, &Context::unlock) != 0)
    return make_error(ErrorCode::kCryptoFailure, "could not configure the Signal protocol context");
  return self;
}

Context::~Context() {
  if (ctx_) signal_context_destroy(ctx_);
}

void Context::lock(void* user_data) { static_cast<Context*>(user_data)->mu_.lock(); }
void Context::unlock(void* user_data) { static_cast<Context*>(user_data)->mu_.unlock(); }

Error signal_error(int rc, std::string_view what) {
  std::string w(what);
  switch (rc) {
    case SG_ERR_NOMEM:
      return make_error(ErrorCode::kCryptoFailure, "out of memory while " + w);
    case SG_ERR_INVAL:
      return make_error(ErrorCode::kInvalidArgument, "invalid argument while " + w);
    case SG_ERR_DUPLICATE_MESSAGE:
      return make_error(ErrorCode::kDuplicateMessage,
                        "already decrypted while " + w + ": a replay or a resend; drop it");
    case SG_ERR_INVALID_KEY:
      return make_error(ErrorCode::kInvalidKey, "a key did not decode while " + w);
    case SG_ERR_INVALID_KEY_ID:
      return make_error(ErrorCode::kUnknownKeyId,
                        "the message names a prekey this device does not have (used or never "
                        "issued) while " +
                            w + "; the sender must fetch a new bundle");
    case SG_ERR_INVALID_MAC:
      return make_error(ErrorCode::kInvalidMessage, "authentication failed while " + w +
                                                        ": the data was tampered with or "
                                                        "corrupted");
    case SG_ERR_INVALID_MESSAGE:
    case SG_ERR_INVALID_PROTO_BUF:
      return make_error(ErrorCode::kInvalidMessage, "malformed or truncated data while " + w);
    case SG_ERR_INVALID_VERSION:
    case SG_ERR_LEGACY_MESSAGE:
      return make_error(ErrorCode::kLegacyMessage, "unsupported protocol version while " + w);
    case SG_ERR_NO_SESSION:
      return make_error(ErrorCode::kNoSession, "no session (or sender key) for the peer while " +
                                                   w + "; a session must be started first");
    case SG_ERR_STALE_KEY_EXCHANGE:
      return make_error(ErrorCode::kInvalidMessage, "stale key exchange while " + w);
    case SG_ERR_UNTRUSTED_IDENTITY:
      return make_error(ErrorCode::kUntrustedIdentity,
                        "the peer's identity key changed while " + w +
                            "; verify the new safety number before trusting it");
    case SG_ERR_VRF_SIG_VERIF_FAILED:
      return make_error(ErrorCode::kInvalidSignature, "a signature did not verify while " + w);
    case SG_ERR_FP_VERSION_MISMATCH:
      return make_error(ErrorCode::kInvalidArgument,
                        "the scanned code has another fingerprint version while " + w);
    case SG_ERR_FP_IDENT_MISMATCH:
      return make_error(ErrorCode::kUntrustedIdentity,
                        "the scanned code belongs to other identities while " + w);
    default:
      return make_error(ErrorCode::kCryptoFailure, "the Signal protocol library failed (code " +
                                                       std::to_string(rc) + ") while " + w);
  }
}

Result<Ref<ec_public_key>> decode_public_key(const Context& ctx, ByteView key,
                                             std::string_view what) {
  if (key.size() != 33 || key[0] != 0x05)
    return make_error(ErrorCode::kInvalidKey,
                      std::string(what) + " is not a 33-byte Curve25519 public key");
  Ref<ec_public_key> out;
  int rc = curve_decode_point(out.out(), key.data(), key.size(), ctx.get());
  if (rc < 0) return signal_error(rc, std::string("decoding ") + std::string(what));
  return out;
}

Result<Bytes> serialize_public_key(const ec_public_key* key) {
  signal_buffer* raw = nullptr;
  int rc = ec_public_key_serialize(&raw, key);
  Buffer buf(raw);
  if (rc < 0) return signal_error(rc, "serializing a public key");
  return copy(buf.get());
}

}  // namespace sotto::keys
