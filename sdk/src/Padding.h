// Message padding. libsignal-protocol-c encrypts exactly what it is given, so the length of
// a ciphertext would betray the length of the text. Plaintext is padded ISO/IEC 7816-4 style
// (0x80, then zeros) up to the next multiple of kPaddingBlock bytes before encryption.
#pragma once

#include "sotto/Bytes.h"
#include "sotto/Result.h"

namespace sotto {

inline constexpr size_t kPaddingBlock = 160;

Bytes pad(ByteView plaintext);
// kInvalidMessage when the padding is malformed.
Result<Bytes> unpad(ByteView padded);

}  // namespace sotto
