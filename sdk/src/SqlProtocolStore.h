// ProtocolStore on the profile's SQLCipher database.
#pragma once

#include <map>
#include <utility>

#include "Database.h"
#include "ProtocolStore.h"

namespace sotto {

class SqlProtocolStore final : public ProtocolStore {
 public:
  // NB: `db` outlives the store and is already migrated.
  explicit SqlProtocolStore(db::Database& db) : db_(db) {}

  Status begin() override { return db_.begin(); }
  Status commit() override;
  void rollback() noexcept override;

  Result<std::optional<LocalIdentityRecord>> local_identity() override;
  Status set_local_identity(const LocalIdentityRecord& identity) override;
  Result<std::optional<Bytes>> identity(const std::string& name) override;
  Status save_identity(const std::string& name, ByteView key) override;
  Result<std::optional<Bytes>> session(const std::string& name, int32_t device) override;
  Result<std::vector<int32_t>> session_devices(const std::string& name) override;
  Status store_session(const std::string& name, int32_t device, ByteView record) override;
  Result<bool> delete_session(const std::string& name, int32_t device) override;
  Result<int> delete_sessions(const std::string& name) override;
  Result<std::optional<SecureBytes>> prekey(uint32_t id) override;
  Status store_prekey(uint32_t id, ByteView record) override;
  Status remove_prekey(uint32_t id) override;
  Result<uint32_t> prekey_count() override;
  Result<std::optional<SecureBytes>> signed_prekey(uint32_t id) override;
  Status store_signed_prekey(uint32_t id, ByteView record) override;
  Status remove_signed_prekey(uint32_t id) override;
  Result<std::optional<Bytes>> sender_key(ByteView group, const std::string& name,
                                          int32_t device) override;
  Status store_sender_key(ByteView group, const std::string& name, int32_t device,
                          ByteView record) override;
  Status delete_sender_key(ByteView group, const std::string& name, int32_t device) override;
  Result<std::optional<int64_t>> counter(const std::string& name) override;
  Status set_counter(const std::string& name, int64_t value) override;

 private:
  db::Database& db_;
  // Session records as last written, so a message's ratchet step reads no row back. Only this
  // connection writes the file (the profile lock), so the cache cannot go stale; any rollback
  // clears it.
  std::map<std::pair<std::string, int32_t>, Bytes> sessions_;
};

}  // namespace sotto
