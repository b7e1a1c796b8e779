// Untrusted bytes: ciphertexts and sender key distributions from a peer. The first byte picks
// the parser: 1:1 PreKey or Signal message, group message, or sender key distribution.
#include <cstddef>
#include <cstdint>
#include <memory>

#include "MemoryProtocolStore.h"
#include "SessionCrypto.h"

namespace {

struct World {
  std::shared_ptr<sotto::keys::Context> ctx = sotto::keys::Context::create().value();
  sotto::MemoryProtocolStore alice_store, bob_store;
  std::unique_ptr<sotto::SessionCrypto> alice, bob;
  sotto::Bytes group = {1, 2, 3};

  World() {
    alice = sotto::SessionCrypto::create(ctx, alice_store).value();
    bob = sotto::SessionCrypto::create(ctx, bob_store).value();
    if (!alice->create_identity("alice", 1, 2).ok() || !bob->create_identity("bob", 1, 2).ok() ||
        !alice->start_session({"bob", 1}, bob->issue_bundle().value()).ok())
      __builtin_trap();
    auto first = alice->encrypt({"bob", 1}, sotto::as_bytes("hello")).value();
    if (!bob->decrypt({"alice", 1}, first).ok()) __builtin_trap();
    auto skdm = alice->group_sender_key(group).value();
    if (!bob->group_process_sender_key(group, {"alice", 1}, skdm).ok()) __builtin_trap();
  }
};

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static World w;
  if (size == 0) return 0;
  sotto::ByteView payload(data + 1, size - 1);
  const sotto::Address alice{"alice", 1};
  switch (data[0] % 4) {
    case 0:
      (void)w.bob->decrypt(alice, {sotto::CiphertextType::kPreKey,
                                   sotto::Bytes(payload.begin(), payload.end())});
      break;
    case 1:
      (void)w.bob->decrypt(alice, {sotto::CiphertextType::kSignal,
                                   sotto::Bytes(payload.begin(), payload.end())});
      break;
    case 2:
      (void)w.bob->group_decrypt(w.group, alice, payload);
      break;
    case 3:
      (void)w.bob->group_process_sender_key(w.group, alice, payload);
      break;
  }
  return 0;
}
