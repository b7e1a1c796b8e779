// Plain value types of sotto's public C++ API.
#pragma once

#include <compare>
#include <cstdint>
#include <string>

#include "sotto/Bytes.h"

namespace sotto {

// One device of one account: what a session is bound to.
struct Address {
  std::string account;     // the account's stable id (not its handle)
  uint32_t device_id = 0;  // 1 is an account's first device

  auto operator<=>(const Address&) const = default;
};

enum class CiphertextType : uint8_t {
  kSignal = 2,     // a message on an established 1:1 session
  kPreKey = 3,     // the first messages of a 1:1 session, until the peer answers
  kSenderKey = 4,  // a group message under a sender key
};

struct Ciphertext {
  CiphertextType type = CiphertextType::kSignal;
  Bytes bytes;
};

// What two people compare to rule out a man in the middle.
struct SafetyNumber {
  std::string digits;  // 60 digits, identical on both sides; show them in groups of five
  Bytes scannable;     // what a QR code carries; compare with Profile::verify_scanned()
};

}  // namespace sotto
