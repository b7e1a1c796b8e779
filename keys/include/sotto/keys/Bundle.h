// Prekey bundles: the public half of a device's keys that a peer needs to start a session.
// The wire form is sotto.wire.PreKeyBundle; the relay checks uploads with verify_bundle()
// and the SDK checks every fetched bundle again before it uses one.
#pragma once

#include <optional>

#include "sotto/Bytes.h"
#include "sotto/Result.h"
#include "sotto/keys/KeyGen.h"
#include "sotto/keys/Signal.h"
#include "sotto/proto/wire.pb.h"

namespace sotto::keys {

wire::PreKeyBundle make_bundle(uint32_t registration_id, uint32_t device_id,
                               ByteView identity_public_key, const SignedPreKey& signed_prekey,
                               const OneTimePreKey* one_time_prekey, bool last_resort = false);

Result<wire::PreKeyBundle> parse_bundle(ByteView serialized);
Bytes serialize_bundle(const wire::PreKeyBundle& bundle);

// Every key decodes and the signed prekey's signature verifies against the identity key.
// kMalformedBundle for missing parts, kInvalidKey for keys that do not decode,
// kInvalidSignature for a forged or corrupted signature.
Status verify_bundle(const Context& ctx, const wire::PreKeyBundle& bundle);

// A verified libsignal bundle, ready for session_builder_process_pre_key_bundle.
Result<Ref<session_pre_key_bundle>> to_signal_bundle(const Context& ctx,
                                                     const wire::PreKeyBundle& bundle);

}  // namespace sotto::keys
