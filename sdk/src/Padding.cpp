#include "Padding.h"

namespace sotto {

Bytes pad(ByteView plaintext) {
  size_t total = (plaintext.size() / kPaddingBlock + 1) * kPaddingBlock;
  Bytes out(total, 0);
  std::copy(plaintext.begin(), plaintext.end(), out.begin());
  out[plaintext.size()] = 0x80;
  return out;
}

Result<Bytes> unpad(ByteView padded) {
  if (padded.empty() || padded.size() % kPaddingBlock != 0)
    return make_error(ErrorCode::kInvalidMessage,
                      "the decrypted message is not padded to a whole block; the sender is "
                      "not a conforming sotto client");
  size_t i = padded.size();
  while (i > 0 && padded[i - 1] == 0) --i;
  if (i == 0 || padded[i - 1] != 0x80 || padded.size() - i >= kPaddingBlock)
    return make_error(ErrorCode::kInvalidMessage,
                      "the decrypted message has malformed padding; the sender is not a "
                      "conforming sotto client");
  return Bytes(padded.begin(), padded.begin() + static_cast<std::ptrdiff_t>(i - 1));
}

}  // namespace sotto
