// sotto-relay admin: the operator's commands on the store a relay uses (the embedded store in
// --data-dir, or a cluster's PostgreSQL store). They run in their own process, also while
// relays serve the same store: a relay applies what they did within a few seconds
// (Store::actions_since). docs/operating-the-relay.md, "Administration", lists them.
#pragma once

#include <cstdint>
#include <ostream>
#include <string>
#include <vector>

#include "Store.h"

namespace sotto::relay {

// Exit statuses: 0 done, 1 the store failed or the account / invite does not exist, 2 the
// command line is wrong (what is wrong goes to `err`).
int run_admin(Store& store, const std::vector<std::string>& args, uint64_t now_ms,
              std::ostream& out, std::ostream& err);

// The admin command's help text.
extern const char* const kAdminUsage;

}  // namespace sotto::relay
