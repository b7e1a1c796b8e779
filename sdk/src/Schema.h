// The profile database's schema and its migrations. PRAGMA user_version holds the version.
#pragma once

#include "Database.h"

namespace sotto::db {

inline constexpr int64_t kSchemaVersion = 12;

// Brings a database to kSchemaVersion: in one transaction, or in two for a database older
// than version 5 (each leaves a whole version behind it). kIncompatibleVersion when the file
// was written by a newer sotto.
Status migrate(Database& db);

}  // namespace sotto::db
