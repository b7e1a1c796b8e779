// libsotto_test_vfs_preload.so: the crash-test VFS inside a process a test starts, the real
// sotto-relay binary, through LD_PRELOAD. When CrashVfs::kWatchEnv names a directory, the VFS
// becomes the process's default and watches it before main() runs; CrashVfs::kBudgetEnv names
// the file of a SharedDiskBudget that the test fills and empties. Without the variables the
// library does nothing.
#include <cstdio>
#include <cstdlib>

#include "CrashVfs.h"

namespace {

__attribute__((constructor)) void install_from_environment() {
  const char* watch = std::getenv(sotto::test::CrashVfs::kWatchEnv);
  if (!watch || !*watch) return;
  auto& vfs = sotto::test::CrashVfs::install();
  vfs.watch(watch);
  if (const char* budget = std::getenv(sotto::test::CrashVfs::kBudgetEnv)) {
    sotto::test::DiskBudget* shared = sotto::test::SharedDiskBudget::map_existing(budget);
    if (!shared) {
      std::fprintf(stderr, "crash-test VFS: cannot map the disk budget file %s\n", budget);
      std::abort();
    }
    vfs.use_budget(shared);
  }
}

}  // namespace
