// Untrusted bytes: a prekey bundle as fetched from the relay (or uploaded to it).
#include <cstddef>
#include <cstdint>

#include "sotto/keys/Bundle.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static auto ctx = sotto::keys::Context::create().value();
  auto bundle = sotto::keys::parse_bundle(sotto::ByteView(data, size));
  if (!bundle.ok()) return 0;
  if (sotto::keys::verify_bundle(*ctx, *bundle).ok()) {
    auto signal_bundle = sotto::keys::to_signal_bundle(*ctx, *bundle);
    (void)signal_bundle;
  }
  return 0;
}
