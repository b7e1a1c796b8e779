// The crypto core: 1:1 sessions (X3DH + double ratchet) and Sender Key groups on top of
// libsignal-protocol-c, over a ProtocolStore. It does no I/O of its own: bytes in, bytes out,
// the clock injected. Every operation that advances a ratchet runs in one store transaction
// together with the caller's hook, so the ratchet step and the message it produced or consumed
// are committed together or not at all.
//
// Thread rule: not thread-safe; Profile serialises calls.
#pragma once

#include <functional>
#include <memory>
#include <optional>
#include <string>

#include "ProtocolStore.h"
#include "sotto/Types.h"
#include "sotto/keys/Bundle.h"
#include "sotto/keys/KeyGen.h"
#include "sotto/keys/Signal.h"

namespace sotto {

using Clock = std::function<uint64_t()>;  // milliseconds since the Unix epoch

// docs/protocol.md 2: the last-resort prekey always has this id.
inline constexpr uint32_t kLastResortPreKeyId = 0xFFFFFF;
uint64_t system_clock_ms();

// Called inside the transaction, before commit; an error rolls back the ratchet step too.
using PlaintextHook = std::function<Status(ByteView plaintext)>;
using CiphertextHook = std::function<Status(const Ciphertext& ciphertext)>;

class SessionCrypto {
 public:
  static Result<std::unique_ptr<SessionCrypto>> create(std::shared_ptr<keys::Context> ctx,
                                                       ProtocolStore& store,
                                                       Clock clock = system_clock_ms);
  ~SessionCrypto();
  SessionCrypto(const SessionCrypto&) = delete;
  SessionCrypto& operator=(const SessionCrypto&) = delete;

  ProtocolStore& store() { return store_; }
  const keys::Context& context() const { return *ctx_; }

  // ---- identity and prekeys ----
  bool has_identity() const { return identity_.has_value(); }
  // NB: has_identity() must be true.
  const LocalIdentityRecord& identity() const { return *identity_; }
  // A new identity key pair, registration id, signed prekey and `prekeys` one-time prekeys.
  Status create_identity(const std::string& account, uint32_t device_id, uint32_t prekeys);
  // Gives the identity the account id and device id the relay assigned (after registration).
  Status set_address(const std::string& account, uint32_t device_id);
  // Adopts an existing account's identity key pair on a newly linked device: a fresh
  // registration id, signed prekey and `prekeys` one-time prekeys. kAlreadyExists if there is
  // an identity.
  Status import_identity(const std::string& account, uint32_t device_id,
                         const keys::IdentityKeyPair& pair, uint32_t prekeys);
  // The identity key pair, for signing registration and link payloads.
  // NB: has_identity() must be true.
  keys::IdentityKeyPair identity_key_pair() const;
  // The last-resort prekey (id kLastResortPreKeyId), created on first use. libsignal never
  // deletes it, so a peer can start a session when the one-time pool is empty.
  Result<keys::OneTimePreKey> last_resort_prekey();
  // A new signed prekey becomes current; the previous one is kept (late messages still use it).
  Result<keys::SignedPreKey> rotate_signed_prekey();
  // Creates and stores `count` more one-time prekeys.
  Result<std::vector<keys::OneTimePreKey>> generate_prekeys(uint32_t count);
  Result<keys::SignedPreKey> current_signed_prekey();
  // This device's bundle with the next one-time prekey not yet handed out (none when the pool
  // is exhausted), as the relay would serve it.
  Result<wire::PreKeyBundle> issue_bundle();

  // ---- 1:1 ----
  Result<bool> has_session(const Address& peer);
  Status start_session(const Address& peer, const wire::PreKeyBundle& bundle);
  Result<Ciphertext> encrypt(const Address& peer, ByteView plaintext,
                             const CiphertextHook& hook = {});
  Result<Bytes> decrypt(const Address& peer, const Ciphertext& ciphertext,
                        const PlaintextHook& hook = {});
  Status delete_session(const Address& peer);
  // Device ids of `account` this device has a session with.
  Result<std::vector<uint32_t>> session_devices(const std::string& account);
  // The registration id the session with `peer` was built for (kNoSession without one).
  Result<uint32_t> remote_registration_id(const Address& peer);
  // The sender's identity key inside a PreKey message (to show a changed safety number).
  Result<Bytes> prekey_message_identity(ByteView prekey_message);
  // The identity key stored for an account, if any.
  Result<std::optional<Bytes>> peer_identity(const std::string& account);
  // Forgets an account's identity key so a changed key can be accepted (after the user
  // verified it) and its sessions.
  Status forget_identity(const std::string& account);

  // ---- Sender Key groups ----
  // This device's sender key distribution message for `group`, creating the key if needed.
  Result<Bytes> group_sender_key(ByteView group);
  // Replaces this device's sender key for `group` and returns the new distribution message.
  Result<Bytes> group_rotate_sender_key(ByteView group);
  Status group_process_sender_key(ByteView group, const Address& sender, ByteView distribution);
  Result<Bytes> group_encrypt(ByteView group, ByteView plaintext, const CiphertextHook& hook = {});
  Result<Bytes> group_decrypt(ByteView group, const Address& sender, ByteView ciphertext,
                              const PlaintextHook& hook = {});
  // The key id inside a serialized SenderKeyMessage / SenderKeyDistributionMessage: a
  // SENDER_KEY envelope names no group, the key id says which one it belongs to.
  Result<uint32_t> sender_key_message_id(ByteView message);
  Result<uint32_t> sender_key_distribution_id(ByteView distribution);
  // Drops what this device holds of `sender`'s key in `group` (after the sender left).
  Status group_forget_sender(ByteView group, const Address& sender);

  // Runs `body` as one transaction (batching many operations into one commit).
  Status transaction(const std::function<Status()>& body);

 private:
  struct Bridge;
  SessionCrypto(std::shared_ptr<keys::Context> ctx, ProtocolStore& store, Clock clock);
  Status load_identity();
  Status install_bridge();
  Error take_error(int rc, std::string_view what);
  Error group_decrypt_error(ByteView group, const Address& sender, sender_key_message* message,
                            int rc, const std::string& what);

  std::shared_ptr<keys::Context> ctx_;
  ProtocolStore& store_;
  Clock clock_;
  signal_protocol_store_context* store_ctx_ = nullptr;
  std::optional<LocalIdentityRecord> identity_;
  SecureBytes identity_public_;       // serialized, for libsignal's identity store
  SecureBytes identity_private_;      // serialized private key
  std::optional<Error> store_error_;  // the first storage error seen inside a libsignal call
};

}  // namespace sotto
