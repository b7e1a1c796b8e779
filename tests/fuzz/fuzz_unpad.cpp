// Untrusted bytes: a decrypted plaintext whose padding the sender chose.
#include <cstddef>
#include <cstdint>

#include "Padding.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  auto out = sotto::unpad(sotto::ByteView(data, size));
  if (out.ok() && sotto::pad(*out).size() != size) __builtin_trap();  // unpad must invert pad
  return 0;
}
