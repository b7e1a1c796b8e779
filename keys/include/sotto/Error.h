// sotto::Error: what went wrong, as a code a program can branch on and a message a
// person can act on. Shared by every sotto library; no third-party type appears here.
#pragma once

#include <string>
#include <string_view>

#include "sotto/export.h"

namespace sotto {

// Numbered by subsystem: 1xx caller, 2xx storage, 3xx crypto and protocol, 4xx network and
// relay, 9xx internal.
// The numbers are part of the C API and never change meaning.
enum class ErrorCode : int {
  kOk = 0,

  kInvalidArgument = 100,  // the caller passed something malformed or out of range
  kInvalidState = 101,     // the call is not valid now (e.g. no identity yet)
  kNotFound = 102,         // the named thing does not exist
  kAlreadyExists = 103,    // the thing to create is already there
  kBusy = 104,             // another process holds the profile
  kCancelled = 105,        // the caller cancelled the operation; nothing was kept

  kWrongKey = 200,               // passphrase or key does not open the database
  kStorageCorrupt = 201,         // the database or a file beside it is damaged
  kStorageIo = 202,              // the operating system refused a read or a write
  kStorageFull = 203,            // no space left on the device
  kEncryptionUnavailable = 204,  // the SQLite in use is not SQLCipher
  kIncompatibleVersion = 205,    // written by a newer sotto, or an unknown format

  kInvalidMessage = 300,     // a ciphertext that is malformed, truncated or tampered with
  kDuplicateMessage = 301,   // a ciphertext that was already decrypted (a replay)
  kInvalidSignature = 302,   // a signature that does not verify
  kUnknownKeyId = 303,       // a message or bundle names a key this device does not have
  kNoSession = 304,          // no session with that peer (or no sender key for the group)
  kUntrustedIdentity = 305,  // the peer's identity key changed since it was first seen
  kInvalidKey = 306,         // a key that does not decode
  kMalformedBundle = 307,    // a prekey bundle that is incomplete or does not parse
  kLegacyMessage = 308,      // a message from an unsupported protocol version
  kCryptoFailure = 309,      // the crypto provider failed (out of memory, RNG failure)

  kUnavailable = 400,        // the relay cannot be reached now; it is retried by itself
  kTimeout = 401,            // the relay did not answer in time
  kUnauthorized = 402,       // the relay refused this device's credentials (device removed?)
  kRateLimited = 403,        // the relay asks to slow down; try again later
  kConflict = 404,           // clashes with the relay's state (e.g. the handle is taken)
  kTooLarge = 405,           // over a relay limit (message, attachment, recipients)
  kRelayRejected = 406,      // the relay refused the request; the message says why
  kProtocolError = 407,      // the relay answered something this SDK cannot understand
  kForbidden = 408,          // the relay does not allow this (e.g. registration closed)

  kInternal = 900,  // a bug: please report it with the message
};

// Stable lower-case name of a code, e.g. "wrong_key".
SOTTO_API std::string_view error_code_name(ErrorCode code) noexcept;

struct Error {
  ErrorCode code = ErrorCode::kInternal;
  // What was wrong and what to do about it; never contains plaintext, keys or passphrases.
  std::string message;
};

}  // namespace sotto
