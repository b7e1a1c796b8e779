// The platform layer on Linux and other POSIX systems.
#include "platform/Platform.h"

#include <fcntl.h>
#include <pthread.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <utility>

namespace sotto::platform {
namespace fs = std::filesystem;

namespace {

Error io_error(const fs::path& path, std::string_view what, int err = errno) {
  return make_error(err == ENOSPC ? ErrorCode::kStorageFull : ErrorCode::kStorageIo,
                    std::string(what) + " " + path.string() + ": " + std::strerror(err));
}

}  // namespace

std::string to_utf8(const fs::path& path) { return path.string(); }

fs::path from_utf8(std::string_view text) { return fs::path(text); }

Status check_file_name(const fs::path& name) {
  // The kernel refuses only '/' (a separator, never inside one component) and NUL.
  std::string text = name.string();
  if (text.find('\0') != std::string::npos)
    return make_error(ErrorCode::kInvalidArgument,
                      "a file name cannot contain a NUL character; choose another name");
  return {};
}

Status check_path_room(const fs::path&, size_t) { return {}; }

File open_file(const fs::path& path, const char* mode) {
  return File(std::fopen(path.c_str(), mode));
}

Result<File> create_private_file(const fs::path& path) {
  int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (fd < 0) return io_error(path, "cannot create");
  std::FILE* f = ::fdopen(fd, "wb");
  if (!f) {
    Error err = io_error(path, "cannot create");
    ::close(fd);
    return err;
  }
  return File(f);
}

Status sync_file(std::FILE* file, const fs::path& path) {
  if (std::fflush(file) != 0 || ::fsync(::fileno(file)) != 0) return io_error(path, "cannot write");
  return {};
}

Status replace_file(const fs::path& from, const fs::path& to) {
  if (::rename(from.c_str(), to.c_str()) != 0) return io_error(to, "cannot replace");
  return {};
}

Status sync_directory(const fs::path& dir) {
  int fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) return io_error(dir, "cannot open directory");
  int rc = ::fsync(fd);
  int err = errno;
  ::close(fd);
  if (rc != 0) return io_error(dir, "cannot sync directory", err);
  return {};
}

void restrict_directory(const fs::path& dir) {
  std::error_code ec;
  fs::permissions(dir, fs::perms::owner_all, fs::perm_options::replace, ec);
}

// flock() rather than fcntl() locks: a flock belongs to the open file, so a second FileLock in
// the same process is refused too, and closing another descriptor of the file keeps it.
Result<FileLock> FileLock::acquire(const fs::path& path) {
  int fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600);
  if (fd < 0) return io_error(path, "cannot create");
  if (::flock(fd, LOCK_EX | LOCK_NB) != 0) {
    int err = errno;
    ::close(fd);
    if (err == EWOULDBLOCK) return make_error(ErrorCode::kBusy, path.string() + " is locked");
    return io_error(path, "cannot lock", err);
  }
  return FileLock(fd);
}

FileLock::FileLock(FileLock&& other) noexcept : handle_(std::exchange(other.handle_, -1)) {}

FileLock::~FileLock() {
  if (handle_ >= 0) ::close(static_cast<int>(handle_));
}

long process_id() { return static_cast<long>(::getpid()); }

}  // namespace sotto::platform

namespace sotto {

void name_this_thread(const char* name) {
#if defined(__APPLE__)
  pthread_setname_np(name);
#else
  pthread_setname_np(pthread_self(), name);
#endif
}

}  // namespace sotto
