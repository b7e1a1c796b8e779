// Untrusted bytes: a prekey bundle as fetched from the relay (or uploaded to it), checked and
// then used as the SDK uses an answer to GET_BUNDLES: a session started from it must be one
// this device can encrypt on.
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <memory>

#include "MemoryProtocolStore.h"
#include "SessionCrypto.h"
#include "sotto/keys/Bundle.h"

namespace {

struct Device {
  std::shared_ptr<sotto::keys::Context> ctx = sotto::keys::Context::create().value();
  sotto::MemoryProtocolStore store;
  std::unique_ptr<sotto::SessionCrypto> crypto;
  Device() {
    crypto = sotto::SessionCrypto::create(ctx, store).value();
    if (!crypto->create_identity(std::string(32, '1'), 1, 0).ok()) __builtin_trap();
  }
};

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static Device d;
  auto bundle = sotto::keys::parse_bundle(sotto::ByteView(data, size));
  if (!bundle.ok()) return 0;
  if (sotto::keys::verify_bundle(*d.ctx, *bundle).ok()) {
    auto signal_bundle = sotto::keys::to_signal_bundle(*d.ctx, *bundle);
    (void)signal_bundle;
  }
  const std::string peer_account(32, 'b');
  sotto::Address peer{peer_account, bundle->device_id()};
  if (d.crypto->start_session(peer, *bundle).ok()) {
    auto ct = d.crypto->encrypt(peer, sotto::as_bytes("hello"));
    if (!ct.ok()) {
      std::fprintf(stderr,
                   "bundle invariant violated: a session started from a bundle cannot "
                   "encrypt: %s\n",
                   ct.error().message.c_str());
      std::abort();
    }
  }
  // The next input's bundle is another device's: forget this one's identity and session.
  if (!d.crypto->forget_identity(peer_account).ok()) __builtin_trap();
  return 0;
}
