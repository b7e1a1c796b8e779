// The parts of an open Profile that the SDK's higher layers (the Client, history, outbox)
// work on directly, so that a ratchet step and the history rows it belongs to commit in one
// transaction.
//
// Thread rule: hold `mu` for every use of `db` and `crypto`, and for the whole of a
// transaction.
#pragma once

#include <atomic>
#include <mutex>

#include "Database.h"
#include "SessionCrypto.h"
#include "sotto/Profile.h"

namespace sotto {

// The profile's lock: recursive, and it tells its holder whether another thread waits for it,
// so a long background batch (a drain of received messages) can commit early and let an app
// call in instead of keeping it waiting for the whole batch.
class ProfileMutex {
 public:
  void lock() {
    if (m_.try_lock()) return;
    waiting_.fetch_add(1, std::memory_order_relaxed);
    m_.lock();
    waiting_.fetch_sub(1, std::memory_order_relaxed);
  }
  bool try_lock() { return m_.try_lock(); }
  void unlock() { m_.unlock(); }
  bool others_waiting() const { return waiting_.load(std::memory_order_relaxed) > 0; }

 private:
  std::recursive_mutex m_;
  std::atomic<int> waiting_{0};
};

struct ProfileParts {
  ProfileMutex& mu;
  db::Database& db;
  SessionCrypto& crypto;
  keys::Context& ctx;
  const ProfileOptions& options;
};

struct ProfileAccess {
  static ProfileParts parts(Profile& profile);
};

}  // namespace sotto
