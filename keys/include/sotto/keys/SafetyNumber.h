// Safety numbers: what two people compare to know no one sits between them. Built with
// libsignal's fingerprint generator (5200 iterations, scannable version 1).
#pragma once

#include <string>
#include <string_view>

#include "sotto/Bytes.h"
#include "sotto/Result.h"
#include "sotto/keys/Signal.h"

namespace sotto::keys {

struct SafetyNumber {
  std::string digits;  // 60 decimal digits, the same on both sides
  Bytes scannable;     // serialized scannable fingerprint (what a QR code carries)
};

// `local_id`/`remote_id` are the stable identifiers of the two accounts.
Result<SafetyNumber> safety_number(const Context& ctx, std::string_view local_id,
                                   ByteView local_identity_key, std::string_view remote_id,
                                   ByteView remote_identity_key);

// Compares what the other side's screen showed (scanned bytes) with ours: ok when they
// match; kUntrustedIdentity when the keys differ, kInvalidArgument when the data is not a
// scannable fingerprint or of another version.
Status compare_scanned(const Context& ctx, const SafetyNumber& ours, ByteView scanned);

// "12345 67890 ..." in 12 groups of five, for display.
std::string format_digits(std::string_view digits);

}  // namespace sotto::keys
