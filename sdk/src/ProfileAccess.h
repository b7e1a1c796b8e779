// The parts of an open Profile that the SDK's higher layers (the Client, history, outbox)
// work on directly, so that a ratchet step and the history rows it belongs to commit in one
// transaction.
//
// Thread rule: hold `mu` for every use of `db` and `crypto`, and for the whole of a
// transaction.
#pragma once

#include <mutex>

#include "Database.h"
#include "SessionCrypto.h"
#include "sotto/Profile.h"

namespace sotto {

struct ProfileParts {
  std::recursive_mutex& mu;
  db::Database& db;
  SessionCrypto& crypto;
  keys::Context& ctx;
  const ProfileOptions& options;
};

struct ProfileAccess {
  static ProfileParts parts(Profile& profile);
};

}  // namespace sotto
