// sotto's calls into the operating system, in one place: the SDK and keys/ reach files,
// locks, processes and threads only through these functions, so a port is one new directory
// beside posix/ (CMake picks the implementation) and no #ifdef elsewhere.
//
// Paths are std::filesystem::path throughout. Text that crosses into a C library or the wire
// (SQLite's file names, an attachment's name, the C API's arguments) is UTF-8 on every
// platform: to_utf8() and from_utf8() convert, whatever the system's own narrow encoding is.
#pragma once

#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <memory>
#include <string>
#include <string_view>

#include "sotto/Result.h"
#include "sotto/ThreadName.h"  // name_this_thread(), implemented here too

namespace sotto::platform {

// ---- paths and names -------------------------------------------------------------------------

// The path as UTF-8 (POSIX: its bytes as they are).
std::string to_utf8(const std::filesystem::path& path);
// A path from UTF-8 text (POSIX: the bytes as they are).
std::filesystem::path from_utf8(std::string_view text);

// Whether `name` (one path component, e.g. an attachment's name from another system) can name
// a file here. The error (kInvalidArgument) says what is wrong with it and what to do.
Status check_file_name(const std::filesystem::path& name);

// Whether files up to `deeper` characters below the folder `dir` have paths this system opens,
// checked before anything is created there. POSIX has no limit to check ahead: the kernel's
// own is reported when a file is opened. A system with a short one (Windows' MAX_PATH) returns
// kInvalidArgument saying how long the folder may be.
Status check_path_room(const std::filesystem::path& dir, size_t deeper);

// ---- files -----------------------------------------------------------------------------------

struct FileClose {
  void operator()(std::FILE* f) const { std::fclose(f); }
};
using File = std::unique_ptr<std::FILE, FileClose>;

// std::fopen for a path in any encoding; nullptr with errno set on failure, as fopen.
File open_file(const std::filesystem::path& path, const char* mode);

// Creates `path` (truncating it when it exists) for writing, readable by this user only.
Result<File> create_private_file(const std::filesystem::path& path);

// Flushes `file` and makes its contents durable (fsync).
Status sync_file(std::FILE* file, const std::filesystem::path& path);

// Renames `from` to `to`, replacing `to` atomically when it exists.
Status replace_file(const std::filesystem::path& from, const std::filesystem::path& to);

// Makes the entries of `dir` durable after a create or rename in it (fsync of the directory).
Status sync_directory(const std::filesystem::path& dir);

// Owner-only permissions on a directory the SDK made (POSIX: 0700).
void restrict_directory(const std::filesystem::path& dir);

// An exclusive lock on a file, held until the object is destroyed, against every other
// process and every other FileLock in this one. acquire() fails with kBusy when someone else
// holds it, without waiting.
class FileLock {
 public:
  static Result<FileLock> acquire(const std::filesystem::path& path);
  FileLock(FileLock&& other) noexcept;
  FileLock& operator=(FileLock&&) = delete;
  FileLock(const FileLock&) = delete;
  FileLock& operator=(const FileLock&) = delete;
  ~FileLock();

 private:
  explicit FileLock(intptr_t handle) : handle_(handle) {}
  intptr_t handle_;  // the system's handle (POSIX: a file descriptor); -1 when moved from
};

// ---- processes -------------------------------------------------------------------------------

long process_id();

}  // namespace sotto::platform
