// A small tmpfs for full-disk tests of plain files (attachments), which the crash-test VFS
// cannot budget: mounted over a directory, filled up by a filler file, given room again, and
// unmounted when destroyed. Mounting needs root: a test without it fails and says so, it is
// never skipped.
#pragma once

#include <sys/mount.h>
#include <unistd.h>

#include <cerrno>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <memory>
#include <string>

namespace sotto::test {

class SmallTmpfs {
 public:
  // Mounts a tmpfs of `size` ("16m") over `dir`, hiding what it held; nullptr, and the reason
  // in `why`, when this process cannot mount.
  static std::unique_ptr<SmallTmpfs> mount(const std::filesystem::path& dir, const char* size,
                                           std::string& why) {
    if (::geteuid() != 0) {
      why = "needs root to mount a small tmpfs";
      return nullptr;
    }
    std::string options = std::string("size=") + size + ",mode=0700";
    if (::mount("tmpfs", dir.c_str(), "tmpfs", 0, options.c_str()) != 0) {
      why = std::string("cannot mount a tmpfs here: ") + std::strerror(errno);
      return nullptr;
    }
    return std::unique_ptr<SmallTmpfs>(new SmallTmpfs(dir));
  }
  ~SmallTmpfs() { ::umount2(dir_.c_str(), MNT_DETACH); }
  SmallTmpfs(const SmallTmpfs&) = delete;
  SmallTmpfs& operator=(const SmallTmpfs&) = delete;

  // Writes a filler file until the file system is full, then gives back `leave` bytes of it.
  void fill(uint64_t leave = 0) {
    {
      std::ofstream out(filler(), std::ios::binary);
      std::string block(64 * 1024, 'f');
      while (out.write(block.data(), static_cast<std::streamsize>(block.size()))) {
      }
    }
    uint64_t size = std::filesystem::file_size(filler());
    std::filesystem::resize_file(filler(), size > leave ? size - leave : 0);
  }
  // Room again: the filler goes.
  void make_room() { std::filesystem::remove(filler()); }

 private:
  explicit SmallTmpfs(std::filesystem::path dir) : dir_(std::move(dir)) {}
  std::filesystem::path filler() const { return dir_ / "filler"; }
  std::filesystem::path dir_;
};

}  // namespace sotto::test
