// A VFS for power-loss and full-disk tests, after SQLite's crash-test VFS (src/test6.c). It
// wraps the process's default VFS and keeps, for every file under a watched directory, what a
// power cut would leave of it: every sector written since that file's last xSync is remembered
// with its content at that sync. lose_power() then puts those sectors back (all of them, or a
// random choice of them, in whole 512-byte sectors, as a disk may have written some and not
// others) and drops unsynced growth. Files created or deleted since the last sync of any file in
// the watched directory are undone too (deleted files come back as they were at their last
// sync): ext4 and XFS commit the directory changes pending in their journal with any fsync,
// and SQLite counts on no more (it syncs the directory only for synchronous=EXTRA). After the
// cut every I/O on watched files fails until revive(), as on a machine that is off; the
// connections that were open are closed, then the files are reopened as a restarted process
// would find them.
//
// The same VFS stands in for a small file system: fill() lets the watched files grow by a
// given number of bytes more, after which writes fail with SQLITE_FULL, as on a full disk
// (overwriting bytes that exist keeps working there too). Only SQLite's files go through a
// VFS; the -shm index is mapped memory, never written through it, and is not counted.
//
// Thread rule: SQLite may call in from any thread; the test drives the controls from any.
#pragma once

#include <atomic>
#include <cstdint>
#include <filesystem>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <random>
#include <string>
#include <vector>

struct sqlite3_vfs;
struct sqlite3_file;

namespace sotto::test {

// How much the watched files may still grow. Plain atomics so that it can live in a file that
// two processes map: a test fills the disk of a relay process that has this VFS preloaded.
struct DiskBudget {
  std::atomic<uint64_t> generation{0};  // bumped by every change, after the fields below
  std::atomic<uint64_t> room{0};        // bytes of growth allowed from the change on
  std::atomic<uint32_t> limited{0};     // 0: no limit
};
static_assert(std::atomic<uint64_t>::is_always_lock_free);

// Leaves `room` bytes of growth from now on; 0 fills the disk up.
void fill(DiskBudget& budget, uint64_t room = 0);
// No limit any more.
void make_room(DiskBudget& budget);

class CrashVfs {
 public:
  static constexpr const char* kName = "sotto-crash";
  // The environment a process with libsotto_test_vfs_preload.so in LD_PRELOAD reads: the
  // directory it watches, and the file that holds its DiskBudget (see SharedDiskBudget).
  static constexpr const char* kWatchEnv = "SOTTO_TEST_VFS_WATCH";
  static constexpr const char* kBudgetEnv = "SOTTO_TEST_VFS_BUDGET";
  static constexpr uint64_t kSector = 512;

  // Registers the VFS as the process's default, once; every later sqlite3_open_v2 goes
  // through it. Files outside watched directories go straight to the wrapped VFS, untouched.
  static CrashVfs& install();

  // Tracks every file SQLite opens under `dir` from now on (its content so far counts as
  // durable).
  void watch(const std::filesystem::path& dir);
  // Stops watching `dir` and forgets its files (before the test removes it).
  void forget(const std::filesystem::path& dir);

  enum class Loss {
    kEveryUnsyncedWrite,       // nothing written since a file's last sync reaches the disk
    kUnsyncedSectorsAtRandom,  // each such sector, and each file's unsynced size, at random
  };
  // The power goes off now.
  void lose_power(Loss loss, uint64_t seed);
  // The power goes off inside the `n`-th write, truncate, sync or delete of a watched file from
  // now on (n >= 1), before it takes effect; that call fails.
  void arm(uint64_t n, Loss loss, uint64_t seed);
  bool powered_off() const;
  // The power is back. False (and still off) while a watched file is still open: every
  // connection of the old "boot" must be closed first, as SQLite rebuilds its WAL index only
  // when it is the first to open the database.
  bool revive();
  // Writes, truncates, syncs and deletes of watched files so far.
  uint64_t mutating_ops() const;
  uint64_t syncs() const;

  // This process's budget (fill(budget()) and make_room(budget())), or one shared with another
  // process.
  DiskBudget& budget() { return *budget_; }
  void use_budget(DiskBudget* shared) { budget_ = shared ? shared : &own_budget_; }

  CrashVfs(const CrashVfs&) = delete;
  CrashVfs& operator=(const CrashVfs&) = delete;

  // ---- the sqlite3_vfs and sqlite3_io_methods entry points (CrashVfs.cpp) ----
  struct File;
  int open(const char* name, sqlite3_file* file, int flags, int* out_flags);
  int remove(const char* name, int sync_dir);
  int write(File* f, const void* data, int amount, int64_t offset);
  int truncate(File* f, int64_t size);
  int sync(File* f, int flags);
  int read(File* f, void* data, int amount, int64_t offset);
  int file_size(File* f, int64_t* size);
  int close(File* f);
  sqlite3_vfs* wrapped() const { return real_; }

 private:
  // What the VFS knows about one path.
  struct State {
    bool exists = false;                     // on disk now
    uint64_t size = 0;                       // now
    bool entry_durable = false;              // its directory entry would survive a power cut
    uint64_t durable_size = 0;               // its size at its last sync
    std::map<uint64_t, std::string> before;  // sector -> its bytes at the last sync
    std::optional<std::string> ghost;        // a deleted file's durable bytes, while that can undo
  };

  explicit CrashVfs(sqlite3_vfs* real);
  // The watched directory `path` is in ("" when none), each ending in '/'.
  std::string root_of_locked(const std::string& path) const;
  bool watched(const std::string& path) const;
  // A sync under `root` commits its pending directory changes (creations and deletions).
  void commit_directory_locked(const std::string& root);
  std::string durable_image_locked(const std::string& path, const State& s);
  // nullopt: go on; otherwise the result code the call returns (the power is off, or goes off
  // now).
  std::optional<int> before_mutation_locked(int failure);
  int remember_locked(File* f, State& s, uint64_t from, uint64_t to);
  bool over_budget_locked(uint64_t growth);
  void cut_locked(Loss loss, uint64_t seed);
  void apply_cut_locked(const std::string& path, State& s, Loss loss, std::mt19937_64& rng);

  sqlite3_vfs* real_;
  mutable std::mutex mu_;
  std::vector<std::string> watched_;  // each ends in '/'
  std::map<std::string, State> files_;
  int open_files_ = 0;
  bool off_ = false;
  uint64_t ops_ = 0;
  uint64_t syncs_ = 0;
  std::optional<uint64_t> arm_at_;  // in ops_
  Loss arm_loss_ = Loss::kEveryUnsyncedWrite;
  uint64_t arm_seed_ = 0;
  DiskBudget own_budget_;
  DiskBudget* budget_ = &own_budget_;
  uint64_t seen_generation_ = 0;
  uint64_t cap_ = UINT64_MAX;  // no limit
};

// A DiskBudget in a file, mapped shared, for a process started with the preload library.
class SharedDiskBudget {
 public:
  explicit SharedDiskBudget(const std::filesystem::path& file);
  ~SharedDiskBudget();
  SharedDiskBudget(const SharedDiskBudget&) = delete;
  SharedDiskBudget& operator=(const SharedDiskBudget&) = delete;
  const std::filesystem::path& file() const { return file_; }
  DiskBudget& get() { return *budget_; }
  // Maps an existing budget file (the preload side); nullptr when it cannot.
  static DiskBudget* map_existing(const char* file);

 private:
  std::filesystem::path file_;
  DiskBudget* budget_ = nullptr;
};

}  // namespace sotto::test
