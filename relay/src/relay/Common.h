// What the relay's sections (Relay.cpp and relay/*.cpp, one file per part of protocol.md)
// share besides class Relay: time constants and small helpers for frames and ids. Included by
// those files only.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <utility>

#include "Relay.h"

namespace sotto::relay {

inline constexpr uint64_t kMinuteMs = 60'000;
inline constexpr uint64_t kDayMs = 86'400'000;

inline std::string account_key(ByteView account) { return std::string(as_chars(account)); }

// A serialized Frame holding the Push that `fill` writes.
template <class Fill>
std::shared_ptr<const std::string> push_frame(Fill fill) {
  wire::Frame f;
  fill(*f.mutable_push());
  return std::make_shared<const std::string>(f.SerializeAsString());
}

inline std::string bytes_str(ByteView b) { return std::string(as_chars(b)); }

inline void fill_device_info(wire::DeviceInfo& info, const DeviceRecord& d, bool connected) {
  info.set_device_id(d.device_id);
  info.set_registration_id(d.registration_id);
  info.set_created_at_ms(d.created_at_ms);
  info.set_last_seen_ms(d.last_seen_ms / kDayMs * kDayMs);
  info.set_encrypted_name(bytes_str(d.encrypted_name));
  info.set_connected(connected);
}

inline Refusal status_refusal(wire::Status s, std::string m) { return Refusal{s, std::move(m)}; }

}  // namespace sotto::relay
