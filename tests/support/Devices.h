// Test devices: a profile in its own temp directory with a known key, and helpers to start
// sessions by handing bundles across, as the relay would.
#pragma once

#include <gtest/gtest.h>

#include <memory>
#include <string>

#include "TestSupport.h"
#include "sotto/Profile.h"

namespace sotto::test {

struct Device {
  // A small prekey pool keeps set-up fast; tests that need more generate them.
  static ProfileOptions small_pool() {
    ProfileOptions o;
    o.initial_prekeys = 10;
    return o;
  }
  Device(const std::string& account, uint32_t device_id, ProfileOptions options = small_pool())
      : address{account, device_id}, key(test_key(account + std::to_string(device_id))) {
    opts = options;
    open();
    auto s = profile->create_identity(account, device_id);
    EXPECT_TRUE(s.ok()) << s.error().message;
  }
  void open() {
    auto p = Profile::open_with_key(dir.path(), key, opts);
    ASSERT_TRUE(p.ok()) << p.error().message;
    profile = std::move(*p);
  }
  void close() { profile.reset(); }
  std::filesystem::path db_path() const { return dir.path() / "profile.db"; }
  auto dump() const { return dump_database(db_path(), key); }
  Profile* operator->() { return profile.get(); }

  TempDir dir;
  Address address;
  SecureBytes key;
  ProfileOptions opts;
  std::unique_ptr<Profile> profile;
};

// `from` starts a session with `to` from a freshly issued bundle of `to`.
inline void connect(Device& from, Device& to) {
  auto bundle = to->issue_bundle();
  ASSERT_TRUE(bundle.ok()) << bundle.error().message;
  auto s = from->start_session(to.address, *bundle);
  ASSERT_TRUE(s.ok()) << s.error().message;
}

inline std::string text(const Bytes& b) { return std::string(as_chars(b)); }

// Encrypts on `from`, decrypts on `to`, and checks the text arrives intact.
inline void deliver(Device& from, Device& to, const std::string& message) {
  auto ct = from->encrypt(to.address, as_bytes(message));
  ASSERT_TRUE(ct.ok()) << ct.error().message;
  auto pt = to->decrypt(from.address, *ct);
  ASSERT_TRUE(pt.ok()) << pt.error().message;
  EXPECT_EQ(text(*pt), message);
}

}  // namespace sotto::test
