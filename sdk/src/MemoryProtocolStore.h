// ProtocolStore in memory, with the same transaction semantics as the SQL backend (an undo
// log for the open transaction). For tests and for the benchmark's "library limit" baseline.
#pragma once

#include <array>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "ProtocolStore.h"

namespace sotto {

class MemoryProtocolStore final : public ProtocolStore {
 public:
  Status begin() override;
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
  enum Table {
    kLocal,
    kIdentities,
    kSessions,
    kPreKeys,
    kSignedPreKeys,
    kSenderKeys,
    kCounters,
    kTableCount
  };
  struct Undo {
    Table table;
    std::string key;
    std::optional<Bytes> previous;
  };

  std::optional<Bytes> get(Table t, const std::string& key) const;
  void put(Table t, const std::string& key, std::optional<Bytes> value);

  std::array<std::map<std::string, Bytes>, kTableCount> tables_;
  void undo_all() noexcept;

  std::vector<Undo> journal_;  // undo log of the open transaction
  int depth_ = 0;
  bool doomed_ = false;
};

}  // namespace sotto
