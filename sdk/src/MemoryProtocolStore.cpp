#include "MemoryProtocolStore.h"

#include <cstring>

namespace sotto {
namespace {

std::string device_key(const std::string& name, int32_t device) {
  // name, a separator that never occurs in account ids, then the device as fixed-width text so
  // a prefix scan finds every device of one name.
  char buf[16];
  std::snprintf(buf, sizeof buf, "%010d", device);
  return name + '\x1f' + buf;
}

std::string group_key(ByteView group, const std::string& name, int32_t device) {
  return to_hex(group) + '\x1e' + device_key(name, device);
}

Bytes to_bytes(ByteView v) { return Bytes(v.begin(), v.end()); }

}  // namespace

Status MemoryProtocolStore::begin() {
  if (depth_++ == 0) doomed_ = false;
  return {};
}

Status MemoryProtocolStore::commit() {
  if (depth_ == 0) return make_error(ErrorCode::kInternal, "commit without a transaction");
  if (--depth_ > 0) return {};
  if (doomed_) {
    undo_all();
    return make_error(ErrorCode::kInvalidState,
                      "the transaction was rolled back because an operation inside it failed; "
                      "nothing in it was saved");
  }
  journal_.clear();
  return {};
}

void MemoryProtocolStore::rollback() noexcept {
  if (depth_ == 0) return;
  if (--depth_ > 0) {
    doomed_ = true;
    return;
  }
  undo_all();
}

void MemoryProtocolStore::undo_all() noexcept {
  for (auto it = journal_.rbegin(); it != journal_.rend(); ++it) {
    auto& table = tables_[it->table];
    if (it->previous)
      table[it->key] = std::move(*it->previous);
    else
      table.erase(it->key);
  }
  journal_.clear();
  doomed_ = false;
}

std::optional<Bytes> MemoryProtocolStore::get(Table t, const std::string& key) const {
  auto it = tables_[t].find(key);
  if (it == tables_[t].end()) return std::nullopt;
  return it->second;
}

void MemoryProtocolStore::put(Table t, const std::string& key, std::optional<Bytes> value) {
  if (depth_ > 0) journal_.push_back(Undo{t, key, get(t, key)});
  if (value)
    tables_[t][key] = std::move(*value);
  else
    tables_[t].erase(key);
}

Result<std::optional<LocalIdentityRecord>> MemoryProtocolStore::local_identity() {
  auto account = get(kLocal, "account");
  if (!account) return std::optional<LocalIdentityRecord>();
  LocalIdentityRecord r;
  r.account = std::string(as_chars(*account));
  auto ids = *get(kLocal, "ids");
  std::memcpy(&r.device_id, ids.data(), 4);
  std::memcpy(&r.registration_id, ids.data() + 4, 4);
  r.public_key = *get(kLocal, "public_key");
  r.key_pair = SecureBytes(*get(kLocal, "key_pair"));
  return std::optional<LocalIdentityRecord>(std::move(r));
}

Status MemoryProtocolStore::set_local_identity(const LocalIdentityRecord& r) {
  Bytes ids(8);
  std::memcpy(ids.data(), &r.device_id, 4);
  std::memcpy(ids.data() + 4, &r.registration_id, 4);
  put(kLocal, "account", to_bytes(as_bytes(r.account)));
  put(kLocal, "ids", ids);
  put(kLocal, "public_key", r.public_key);
  put(kLocal, "key_pair", to_bytes(r.key_pair.span()));
  return {};
}

Result<std::optional<Bytes>> MemoryProtocolStore::identity(const std::string& name) {
  return get(kIdentities, name);
}

Status MemoryProtocolStore::save_identity(const std::string& name, ByteView key) {
  put(kIdentities, name, key.empty() ? std::nullopt : std::optional<Bytes>(to_bytes(key)));
  return {};
}

Result<std::optional<Bytes>> MemoryProtocolStore::session(const std::string& name, int32_t device) {
  return get(kSessions, device_key(name, device));
}

Result<std::vector<int32_t>> MemoryProtocolStore::session_devices(const std::string& name) {
  std::vector<int32_t> out;
  std::string prefix = name + '\x1f';
  for (auto it = tables_[kSessions].lower_bound(prefix);
       it != tables_[kSessions].end() && it->first.compare(0, prefix.size(), prefix) == 0; ++it)
    out.push_back(std::stoi(it->first.substr(prefix.size())));
  return out;
}

Status MemoryProtocolStore::store_session(const std::string& name, int32_t device,
                                          ByteView record) {
  put(kSessions, device_key(name, device), to_bytes(record));
  return {};
}

Result<bool> MemoryProtocolStore::delete_session(const std::string& name, int32_t device) {
  std::string key = device_key(name, device);
  bool had = tables_[kSessions].count(key) > 0;
  if (had) put(kSessions, key, std::nullopt);
  return had;
}

Result<int> MemoryProtocolStore::delete_sessions(const std::string& name) {
  SOTTO_TRY_ASSIGN(auto devices, session_devices(name));
  for (int32_t d : devices) put(kSessions, device_key(name, d), std::nullopt);
  return static_cast<int>(devices.size());
}

Result<std::optional<SecureBytes>> MemoryProtocolStore::prekey(uint32_t id) {
  auto v = get(kPreKeys, std::to_string(id));
  if (!v) return std::optional<SecureBytes>();
  return std::optional<SecureBytes>(SecureBytes(*v));
}

Status MemoryProtocolStore::store_prekey(uint32_t id, ByteView record) {
  put(kPreKeys, std::to_string(id), to_bytes(record));
  return {};
}

Status MemoryProtocolStore::remove_prekey(uint32_t id) {
  put(kPreKeys, std::to_string(id), std::nullopt);
  return {};
}

Result<uint32_t> MemoryProtocolStore::prekey_count() {
  // The last-resort key (id 0xFFFFFF) is not part of the one-time pool.
  return static_cast<uint32_t>(tables_[kPreKeys].size() -
                               tables_[kPreKeys].count(std::to_string(0xFFFFFF)));
}

Result<std::optional<SecureBytes>> MemoryProtocolStore::signed_prekey(uint32_t id) {
  auto v = get(kSignedPreKeys, std::to_string(id));
  if (!v) return std::optional<SecureBytes>();
  return std::optional<SecureBytes>(SecureBytes(*v));
}

Status MemoryProtocolStore::store_signed_prekey(uint32_t id, ByteView record) {
  put(kSignedPreKeys, std::to_string(id), to_bytes(record));
  return {};
}

Status MemoryProtocolStore::remove_signed_prekey(uint32_t id) {
  put(kSignedPreKeys, std::to_string(id), std::nullopt);
  return {};
}

Result<std::optional<Bytes>> MemoryProtocolStore::sender_key(ByteView group,
                                                             const std::string& name,
                                                             int32_t device) {
  return get(kSenderKeys, group_key(group, name, device));
}

Status MemoryProtocolStore::store_sender_key(ByteView group, const std::string& name,
                                             int32_t device, ByteView record) {
  put(kSenderKeys, group_key(group, name, device), to_bytes(record));
  return {};
}

Status MemoryProtocolStore::delete_sender_key(ByteView group, const std::string& name,
                                              int32_t device) {
  put(kSenderKeys, group_key(group, name, device), std::nullopt);
  return {};
}

Result<std::optional<int64_t>> MemoryProtocolStore::counter(const std::string& name) {
  auto v = get(kCounters, name);
  if (!v) return std::optional<int64_t>();
  int64_t value = 0;
  std::memcpy(&value, v->data(), sizeof value);
  return std::optional<int64_t>(value);
}

Status MemoryProtocolStore::set_counter(const std::string& name, int64_t value) {
  Bytes b(sizeof value);
  std::memcpy(b.data(), &value, sizeof value);
  put(kCounters, name, std::move(b));
  return {};
}

}  // namespace sotto
