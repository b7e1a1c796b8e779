// What a test needs to speak the wire protocol without a socket: device keys, signed
// registration requests, request builders. Free of Beast, so the relay's in-process tests and
// fuzz targets use it too.
#pragma once

#include <chrono>
#include <cstdint>
#include <string>
#include <vector>

#include "sotto/Bytes.h"
#include "sotto/Result.h"
#include "sotto/keys/KeyGen.h"
#include "sotto/keys/Signal.h"
#include "sotto/proto/wire.pb.h"

namespace sotto::test {

using namespace std::chrono_literals;

// What a device presents on the upgrade.
struct Credentials {
  Bytes account_id;  // 16 bytes
  uint32_t device_id = 0;
  Bytes auth_secret;  // 32 bytes
  // "Basic base64(<account hex>.<device>:<secret hex>)"
  std::string authorization() const;
};

// A device's keys as a test makes them, and the account they belong to once registered.
struct TestDevice {
  std::string handle;
  keys::IdentityKeyPair identity;
  uint32_t registration_id = 0;
  Bytes auth_secret;
  keys::SignedPreKey signed_prekey;
  std::vector<keys::OneTimePreKey> one_time_prekeys;
  keys::OneTimePreKey last_resort;
  Bytes account_id;  // set after registration
  uint32_t device_id = 0;
  Credentials credentials() const { return Credentials{account_id, device_id, auth_secret}; }
};

// The shared libsignal context of the test process.
const keys::Context& test_context();

// New keys: a fresh identity (or `identity` for a linked device), registration id, secret,
// signed prekey and `prekeys` one-time prekeys with ids from `first_prekey_id`.
Result<TestDevice> make_device(const std::string& handle, uint32_t prekeys = 10,
                               uint32_t first_prekey_id = 1,
                               const keys::IdentityKeyPair* identity = nullptr);
wire::DeviceKeys device_keys(const TestDevice& device);
// A signed OP_REGISTER request for `device` (timestamp now, fresh nonce), with an invite from
// the relay's operator when given.
wire::Request register_request(const TestDevice& device, uint64_t now_ms = 0,
                               const std::string& invite = {});
// Request builders.
wire::Request make_request(wire::Op op);
// One copy of a send.
struct Copy {
  const TestDevice* to;
  std::string ciphertext;
  uint32_t registration_id = 0;  // 0: the device's own
};
// An OP_SEND of MESSAGE copies.
wire::Request send_request(const Bytes& message_id, const std::vector<Copy>& copies,
                           bool urgent = true, bool ephemeral = false, bool targeted = false);
Bytes random_message_id();
uint64_t unix_ms();

}  // namespace sotto::test
