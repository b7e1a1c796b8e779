#include "sotto/Error.h"

namespace sotto {

std::string_view error_code_name(ErrorCode code) noexcept {
  switch (code) {
    case ErrorCode::kOk:
      return "ok";
    case ErrorCode::kInvalidArgument:
      return "invalid_argument";
    case ErrorCode::kInvalidState:
      return "invalid_state";
    case ErrorCode::kNotFound:
      return "not_found";
    case ErrorCode::kAlreadyExists:
      return "already_exists";
    case ErrorCode::kBusy:
      return "busy";
    case ErrorCode::kCancelled:
      return "cancelled";
    case ErrorCode::kWrongKey:
      return "wrong_key";
    case ErrorCode::kStorageCorrupt:
      return "storage_corrupt";
    case ErrorCode::kStorageIo:
      return "storage_io";
    case ErrorCode::kStorageFull:
      return "storage_full";
    case ErrorCode::kEncryptionUnavailable:
      return "encryption_unavailable";
    case ErrorCode::kIncompatibleVersion:
      return "incompatible_version";
    case ErrorCode::kInvalidMessage:
      return "invalid_message";
    case ErrorCode::kDuplicateMessage:
      return "duplicate_message";
    case ErrorCode::kInvalidSignature:
      return "invalid_signature";
    case ErrorCode::kUnknownKeyId:
      return "unknown_key_id";
    case ErrorCode::kNoSession:
      return "no_session";
    case ErrorCode::kUntrustedIdentity:
      return "untrusted_identity";
    case ErrorCode::kInvalidKey:
      return "invalid_key";
    case ErrorCode::kMalformedBundle:
      return "malformed_bundle";
    case ErrorCode::kLegacyMessage:
      return "legacy_message";
    case ErrorCode::kCryptoFailure:
      return "crypto_failure";
    case ErrorCode::kUnavailable:
      return "unavailable";
    case ErrorCode::kTimeout:
      return "timeout";
    case ErrorCode::kUnauthorized:
      return "unauthorized";
    case ErrorCode::kRateLimited:
      return "rate_limited";
    case ErrorCode::kConflict:
      return "conflict";
    case ErrorCode::kTooLarge:
      return "too_large";
    case ErrorCode::kRelayRejected:
      return "relay_rejected";
    case ErrorCode::kProtocolError:
      return "protocol_error";
    case ErrorCode::kForbidden:
      return "forbidden";
    case ErrorCode::kInternal:
      return "internal";
  }
  return "unknown";
}

}  // namespace sotto
