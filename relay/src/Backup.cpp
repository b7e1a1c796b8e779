#include "Backup.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <string>

#include "SqliteStore.h"

namespace sotto::relay {
namespace {

namespace fs = std::filesystem;

constexpr const char* kDatabase = "relay.db";
constexpr const char* kAttachments = "attachments";

Error io_error(const std::string& what, int err) {
  return make_error(ErrorCode::kStorageIo, what + ": " + std::strerror(err));
}

// Data reaches the disk, and so does a file's name in its directory, only once synced.
Status sync_path(const fs::path& path, bool directory) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | (directory ? O_DIRECTORY : 0));
  if (fd < 0) return io_error("opening " + path.string() + " to sync it", errno);
  int rc = ::fsync(fd);
  int err = errno;
  ::close(fd);
  if (rc != 0) return io_error("syncing " + path.string(), err);
  return {};
}

Status copy_synced(const fs::path& from, const fs::path& to) {
  std::error_code ec;
  fs::copy_file(from, to, fs::copy_options::none, ec);
  if (ec)
    return make_error(
        ec == std::errc::no_space_on_device ? ErrorCode::kStorageFull : ErrorCode::kStorageIo,
        "copying " + from.string() + " to " + to.string() + ": " + ec.message());
  return sync_path(to, false);
}

fs::path parent_of(const fs::path& path) {
  fs::path parent = fs::absolute(path).lexically_normal().parent_path();
  return parent.empty() ? fs::path(".") : parent;
}

// A directory (mode 0700) beside `target`, removed again unless kept.
class WorkDir {
 public:
  static Result<WorkDir> beside(const fs::path& target) {
    fs::path name = fs::absolute(target).lexically_normal();
    while (name.filename().empty() && name.has_parent_path()) name = name.parent_path();
    fs::path parent = parent_of(name);
    std::error_code ec;
    if (!fs::is_directory(parent, ec))
      return make_error(ErrorCode::kNotFound,
                        "the directory " + parent.string() + " does not exist; create it first");
    std::string tmpl = (parent / ("." + name.filename().string() + ".partial-XXXXXX")).string();
    if (!::mkdtemp(tmpl.data()))
      return io_error("creating a directory in " + parent.string(), errno);
    return WorkDir(tmpl);
  }
  WorkDir(WorkDir&& o) noexcept : path_(std::move(o.path_)) { o.path_.clear(); }
  WorkDir(const WorkDir&) = delete;
  WorkDir& operator=(const WorkDir&) = delete;
  WorkDir& operator=(WorkDir&&) = delete;
  ~WorkDir() {
    std::error_code ec;
    if (!path_.empty()) fs::remove_all(path_, ec);
  }
  const fs::path& path() const { return path_; }
  void keep() { path_.clear(); }

 private:
  explicit WorkDir(fs::path path) : path_(std::move(path)) {}
  fs::path path_;
};

// An attachment id from the database names a file in attachments/, nothing else.
bool plain_file_name(const std::string& id) {
  return !id.empty() && id[0] != '.' && id.find('/') == std::string::npos;
}

}  // namespace

Result<BackupSummary> backup_data_dir(const fs::path& data_dir, const SecureBytes& key,
                                      const fs::path& dest) {
  std::error_code ec;
  if (fs::exists(fs::symlink_status(dest, ec)))
    return make_error(ErrorCode::kAlreadyExists,
                      dest.string() +
                          " already exists; a backup goes to a new directory: name another one "
                          "or remove that one first");
  SOTTO_TRY_ASSIGN(WorkDir work, WorkDir::beside(dest));
  const fs::path blobs = work.path() / kAttachments;
  if (!fs::create_directory(blobs, ec))
    return make_error(ErrorCode::kStorageIo, "creating " + blobs.string() + ": " + ec.message());

  auto copy_blob = [&](const std::string& id) -> Result<bool> {
    if (!plain_file_name(id))
      return make_error(ErrorCode::kStorageCorrupt,
                        "the database names an attachment \"" + id + "\" that is no file name");
    const fs::path from = data_dir / kAttachments / id;
    std::error_code missing;
    if (!fs::exists(from, missing)) return false;  // expired and deleted since the snapshot
    SOTTO_TRY(copy_synced(from, blobs / id));
    return true;
  };
  SOTTO_TRY_ASSIGN(auto copied, SqliteStore::backup(data_dir / kDatabase, key,
                                                    work.path() / kDatabase, copy_blob));
  SOTTO_TRY(sync_path(blobs, true));
  SOTTO_TRY(sync_path(work.path(), true));
  // Never over a `dest` that appeared meanwhile.
  if (::renameat2(AT_FDCWD, work.path().c_str(), AT_FDCWD, dest.c_str(), RENAME_NOREPLACE) != 0) {
    int err = errno;
    if (err == EEXIST)
      return make_error(ErrorCode::kAlreadyExists,
                        dest.string() +
                            " appeared while the backup was written; nothing was "
                            "written there, run the backup again to another name");
    return io_error("renaming the finished backup to " + dest.string(), err);
  }
  work.keep();
  SOTTO_TRY(sync_path(parent_of(dest), true));
  return BackupSummary{copied.pages, copied.attachments, copied.attachments_gone};
}

Result<RestoreSummary> restore_data_dir(const fs::path& backup, const SecureBytes& key,
                                        const fs::path& data_dir, bool keep_one_time_prekeys) {
  std::error_code ec;
  if (!fs::is_regular_file(backup / kDatabase, ec))
    return make_error(
        ErrorCode::kNotFound,
        backup.string() + " holds no relay.db: name a directory written by sotto-relay backup");
  if (fs::exists(data_dir, ec) && (!fs::is_directory(data_dir, ec) || !fs::is_empty(data_dir, ec)))
    return make_error(ErrorCode::kAlreadyExists,
                      "--data-dir " + data_dir.string() +
                          " is not empty: restore into a new or empty directory (a restore never "
                          "writes over a relay's data)");
  // The backup opens with the key and is whole, or nothing is written.
  SOTTO_TRY(SqliteStore::check(backup / kDatabase, key));
  SOTTO_TRY_ASSIGN(WorkDir work, WorkDir::beside(data_dir));
  const fs::path db = work.path() / kDatabase;
  SOTTO_TRY(copy_synced(backup / kDatabase, db));
  const fs::path blobs = work.path() / kAttachments;
  fs::create_directories(blobs / "tmp", ec);
  if (ec)
    return make_error(ErrorCode::kStorageIo, "creating " + blobs.string() + ": " + ec.message());
  RestoreSummary summary;
  for (const auto& e : fs::directory_iterator(backup / kAttachments, ec)) {
    if (!e.is_regular_file()) continue;
    SOTTO_TRY(copy_synced(e.path(), blobs / e.path().filename()));
    ++summary.attachments;
  }
  if (ec && ec != std::errc::no_such_file_or_directory)
    return make_error(ErrorCode::kStorageIo,
                      "reading " + (backup / kAttachments).string() + ": " + ec.message());

  {
    SqliteStore::Options options;
    options.key = key;
    SOTTO_TRY_ASSIGN(auto store, SqliteStore::open(db, options));  // migrates an older schema
    if (!keep_one_time_prekeys) {
      SOTTO_TRY_ASSIGN(summary.one_time_prekeys_dropped, store->drop_one_time_prekeys());
    }
  }  // closed: the WAL is checkpointed into relay.db and removed
  SOTTO_TRY(sync_path(blobs, true));
  SOTTO_TRY(sync_path(work.path(), true));
  // rename() replaces an empty directory, and fails on one that is not empty any more.
  if (::rename(work.path().c_str(), data_dir.c_str()) != 0)
    return io_error("moving the restored data into " + data_dir.string(), errno);
  work.keep();
  SOTTO_TRY(sync_path(parent_of(data_dir), true));
  return summary;
}

}  // namespace sotto::relay
