// sotto-relay backup DEST and sotto-relay restore SRC (docs/operating-the-relay.md, Backups):
// a consistent copy of a data dir, taken while a relay serves it, and a new data dir made
// from one.
#pragma once

#include <cstdint>
#include <filesystem>

#include "sotto/Result.h"
#include "sotto/SecureBytes.h"

namespace sotto::relay {

struct BackupSummary {
  uint64_t pages = 0;
  uint64_t attachments = 0;       // blobs copied
  uint64_t attachments_gone = 0;  // expired between the snapshot and their copy: left out
};

// Writes a backup of `data_dir` into the new directory `dest`: relay.db, SQLite's online backup
// of one snapshot of the database, encrypted with `key` as the original is, and attachments/,
// the blobs that snapshot has as uploaded. Safe while a relay serves `data_dir`; blobs whose
// upload completes after the snapshot are not in it. The backup is built beside `dest` and
// renamed to it once complete, synced and checked, so `dest` is a whole backup or nothing.
// kAlreadyExists when `dest` exists.
Result<BackupSummary> backup_data_dir(const std::filesystem::path& data_dir, const SecureBytes& key,
                                      const std::filesystem::path& dest);

struct RestoreSummary {
  uint64_t attachments = 0;
  uint64_t one_time_prekeys_dropped = 0;
};

// Makes `data_dir`, which must be absent or empty, from the backup in `backup`: checks the copy
// with `key`, migrates it to this release's schema as a start would, and, unless
// `keep_one_time_prekeys`, drops the one-time prekeys left in it, which may include keys handed
// out after the backup was taken (SqliteStore::drop_one_time_prekeys). Built beside `data_dir`
// and renamed into place at the end, so a failed restore leaves `data_dir` as it was.
Result<RestoreSummary> restore_data_dir(const std::filesystem::path& backup, const SecureBytes& key,
                                        const std::filesystem::path& data_dir,
                                        bool keep_one_time_prekeys);

}  // namespace sotto::relay
