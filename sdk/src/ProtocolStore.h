// Storage behind libsignal's five stores (identity, prekey, signed prekey, session, sender
// key), plus the transaction that makes a ratchet step and the message it produced or
// consumed one atomic unit. Two backends: SqlProtocolStore (the profile's SQLCipher file)
// and MemoryProtocolStore (tests, and the benchmark's in-memory baseline).
//
// Thread rule: not thread-safe; the owner (Profile / SessionCrypto) serialises calls.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "sotto/Bytes.h"
#include "sotto/Result.h"
#include "sotto/SecureBytes.h"

namespace sotto {

struct LocalIdentityRecord {
  std::string account;  // this account's stable id (libsignal address name)
  uint32_t device_id = 0;
  uint32_t registration_id = 0;
  Bytes public_key;      // 33 bytes
  SecureBytes key_pair;  // libsignal-serialized identity key pair
};

class ProtocolStore {
 public:
  virtual ~ProtocolStore() = default;

  // Transactions nest. Rolling back the outermost level undoes everything since its begin;
  // rolling back an inner level dooms the whole transaction, so its outermost commit undoes
  // everything and fails. All or nothing: a transaction never commits in part.
  virtual Status begin() = 0;
  virtual Status commit() = 0;
  virtual void rollback() noexcept = 0;

  virtual Result<std::optional<LocalIdentityRecord>> local_identity() = 0;
  virtual Status set_local_identity(const LocalIdentityRecord& identity) = 0;

  // Remote identities, one per account name.
  virtual Result<std::optional<Bytes>> identity(const std::string& name) = 0;
  virtual Status save_identity(const std::string& name, ByteView key) = 0;

  virtual Result<std::optional<Bytes>> session(const std::string& name, int32_t device) = 0;
  virtual Result<std::vector<int32_t>> session_devices(const std::string& name) = 0;
  virtual Status store_session(const std::string& name, int32_t device, ByteView record) = 0;
  virtual Result<bool> delete_session(const std::string& name, int32_t device) = 0;
  virtual Result<int> delete_sessions(const std::string& name) = 0;

  virtual Result<std::optional<SecureBytes>> prekey(uint32_t id) = 0;
  virtual Status store_prekey(uint32_t id, ByteView record) = 0;
  virtual Status remove_prekey(uint32_t id) = 0;
  virtual Result<uint32_t> prekey_count() = 0;

  virtual Result<std::optional<SecureBytes>> signed_prekey(uint32_t id) = 0;
  virtual Status store_signed_prekey(uint32_t id, ByteView record) = 0;
  virtual Status remove_signed_prekey(uint32_t id) = 0;

  // Sender keys are keyed by (group id, sender name, sender device).
  virtual Result<std::optional<Bytes>> sender_key(ByteView group, const std::string& name,
                                                  int32_t device) = 0;
  virtual Status store_sender_key(ByteView group, const std::string& name, int32_t device,
                                  ByteView record) = 0;
  virtual Status delete_sender_key(ByteView group, const std::string& name, int32_t device) = 0;

  // Small named values the crypto core keeps (next prekey id, current signed prekey id).
  virtual Result<std::optional<int64_t>> counter(const std::string& name) = 0;
  virtual Status set_counter(const std::string& name, int64_t value) = 0;
};

}  // namespace sotto
