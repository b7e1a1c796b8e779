#include "CrashVfs.h"

#include <fcntl.h>
#include <sqlcipher/sqlite3.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <new>
#include <stdexcept>

namespace sotto::test {

struct CrashVfs::File {
  sqlite3_file base;   // base.pMethods: kMethods below
  sqlite3_file* real;  // the wrapped VFS's file, in the same allocation, after kHeader bytes
  std::string* path;
};

namespace {

constexpr int kHeader = (sizeof(CrashVfs::File) + 15) / 16 * 16;

CrashVfs* g_vfs = nullptr;
sqlite3_vfs g_sqlite_vfs;

CrashVfs::File* as_file(sqlite3_file* f) { return reinterpret_cast<CrashVfs::File*>(f); }
sqlite3_file* real(sqlite3_file* f) { return as_file(f)->real; }

int x_close(sqlite3_file* f) { return g_vfs->close(as_file(f)); }
int x_read(sqlite3_file* f, void* data, int amount, sqlite3_int64 offset) {
  return g_vfs->read(as_file(f), data, amount, offset);
}
int x_write(sqlite3_file* f, const void* data, int amount, sqlite3_int64 offset) {
  return g_vfs->write(as_file(f), data, amount, offset);
}
int x_truncate(sqlite3_file* f, sqlite3_int64 size) { return g_vfs->truncate(as_file(f), size); }
int x_sync(sqlite3_file* f, int flags) { return g_vfs->sync(as_file(f), flags); }
int x_file_size(sqlite3_file* f, sqlite3_int64* size) {
  int64_t s = 0;
  int rc = g_vfs->file_size(as_file(f), &s);
  *size = s;
  return rc;
}
// Locks, file controls and the WAL index go straight to the wrapped file.
int x_lock(sqlite3_file* f, int level) { return real(f)->pMethods->xLock(real(f), level); }
int x_unlock(sqlite3_file* f, int level) { return real(f)->pMethods->xUnlock(real(f), level); }
int x_check_reserved_lock(sqlite3_file* f, int* out) {
  return real(f)->pMethods->xCheckReservedLock(real(f), out);
}
int x_file_control(sqlite3_file* f, int op, void* arg) {
  return real(f)->pMethods->xFileControl(real(f), op, arg);
}
int x_sector_size(sqlite3_file* f) { return real(f)->pMethods->xSectorSize(real(f)); }
int x_device_characteristics(sqlite3_file* f) {
  return real(f)->pMethods->xDeviceCharacteristics(real(f));
}
int x_shm_map(sqlite3_file* f, int page, int page_size, int extend, void volatile** out) {
  return real(f)->pMethods->xShmMap(real(f), page, page_size, extend, out);
}
int x_shm_lock(sqlite3_file* f, int offset, int n, int flags) {
  return real(f)->pMethods->xShmLock(real(f), offset, n, flags);
}
void x_shm_barrier(sqlite3_file* f) { real(f)->pMethods->xShmBarrier(real(f)); }
int x_shm_unmap(sqlite3_file* f, int delete_flag) {
  return real(f)->pMethods->xShmUnmap(real(f), delete_flag);
}
// No memory-mapped reads: every read goes through x_read, so none sees a file mid-cut.
int x_fetch(sqlite3_file*, sqlite3_int64, int, void** out) {
  *out = nullptr;
  return SQLITE_OK;
}
int x_unfetch(sqlite3_file*, sqlite3_int64, void*) { return SQLITE_OK; }

const sqlite3_io_methods kMethods = {
    3,
    x_close,
    x_read,
    x_write,
    x_truncate,
    x_sync,
    x_file_size,
    x_lock,
    x_unlock,
    x_check_reserved_lock,
    x_file_control,
    x_sector_size,
    x_device_characteristics,
    x_shm_map,
    x_shm_lock,
    x_shm_barrier,
    x_shm_unmap,
    x_fetch,
    x_unfetch,
};

sqlite3_vfs* wrapped() { return g_vfs->wrapped(); }

int v_open(sqlite3_vfs*, const char* name, sqlite3_file* file, int flags, int* out_flags) {
  return g_vfs->open(name, file, flags, out_flags);
}
int v_delete(sqlite3_vfs*, const char* name, int sync_dir) { return g_vfs->remove(name, sync_dir); }
int v_access(sqlite3_vfs*, const char* name, int flags, int* out) {
  return wrapped()->xAccess(wrapped(), name, flags, out);
}
int v_full_pathname(sqlite3_vfs*, const char* name, int n, char* out) {
  return wrapped()->xFullPathname(wrapped(), name, n, out);
}
void* v_dlopen(sqlite3_vfs*, const char* name) { return wrapped()->xDlOpen(wrapped(), name); }
void v_dlerror(sqlite3_vfs*, int n, char* out) { wrapped()->xDlError(wrapped(), n, out); }
void (*v_dlsym(sqlite3_vfs*, void* handle, const char* symbol))(void) {
  return wrapped()->xDlSym(wrapped(), handle, symbol);
}
void v_dlclose(sqlite3_vfs*, void* handle) { wrapped()->xDlClose(wrapped(), handle); }
int v_randomness(sqlite3_vfs*, int n, char* out) {
  return wrapped()->xRandomness(wrapped(), n, out);
}
int v_sleep(sqlite3_vfs*, int micros) { return wrapped()->xSleep(wrapped(), micros); }
int v_current_time(sqlite3_vfs*, double* out) { return wrapped()->xCurrentTime(wrapped(), out); }
int v_get_last_error(sqlite3_vfs*, int n, char* out) {
  return wrapped()->xGetLastError(wrapped(), n, out);
}
int v_current_time_int64(sqlite3_vfs*, sqlite3_int64* out) {
  return wrapped()->xCurrentTimeInt64(wrapped(), out);
}
int v_set_system_call(sqlite3_vfs*, const char* name, sqlite3_syscall_ptr call) {
  return wrapped()->xSetSystemCall(wrapped(), name, call);
}
sqlite3_syscall_ptr v_get_system_call(sqlite3_vfs*, const char* name) {
  return wrapped()->xGetSystemCall(wrapped(), name);
}
const char* v_next_system_call(sqlite3_vfs*, const char* name) {
  return wrapped()->xNextSystemCall(wrapped(), name);
}

std::string read_whole(const std::string& path) {
  std::string out;
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) throw std::runtime_error("crash-test VFS: cannot read " + path);
  char buf[65536];
  for (ssize_t n; (n = ::read(fd, buf, sizeof buf)) > 0;) out.append(buf, static_cast<size_t>(n));
  ::close(fd);
  return out;
}

void write_whole(const std::string& path, const std::string& bytes) {
  int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  bool ok =
      fd >= 0 && ::write(fd, bytes.data(), bytes.size()) == static_cast<ssize_t>(bytes.size());
  if (fd >= 0) ::close(fd);
  if (!ok) throw std::runtime_error("crash-test VFS: cannot write " + path);
}

}  // namespace

void fill(DiskBudget& budget, uint64_t room) {
  budget.room.store(room);
  budget.limited.store(1);
  budget.generation.fetch_add(1, std::memory_order_release);
}

void make_room(DiskBudget& budget) {
  budget.limited.store(0);
  budget.generation.fetch_add(1, std::memory_order_release);
}

CrashVfs::CrashVfs(sqlite3_vfs* real) : real_(real) {}

CrashVfs& CrashVfs::install() {
  static CrashVfs* const vfs = [] {
    sqlite3_vfs* real = sqlite3_vfs_find(nullptr);
    if (!real || real->iVersion < 3)
      throw std::runtime_error("the default SQLite VFS is missing or older than version 3");
    auto* v = new CrashVfs(real);
    g_vfs = v;
    sqlite3_vfs& s = g_sqlite_vfs;
    s.iVersion = 3;
    s.szOsFile = kHeader + (real->szOsFile + 15) / 16 * 16;
    s.mxPathname = real->mxPathname;
    s.pNext = nullptr;
    s.zName = kName;
    s.pAppData = v;
    s.xOpen = v_open;
    s.xDelete = v_delete;
    s.xAccess = v_access;
    s.xFullPathname = v_full_pathname;
    s.xDlOpen = v_dlopen;
    s.xDlError = v_dlerror;
    s.xDlSym = v_dlsym;
    s.xDlClose = v_dlclose;
    s.xRandomness = v_randomness;
    s.xSleep = v_sleep;
    s.xCurrentTime = v_current_time;
    s.xGetLastError = v_get_last_error;
    s.xCurrentTimeInt64 = v_current_time_int64;
    s.xSetSystemCall = v_set_system_call;
    s.xGetSystemCall = v_get_system_call;
    s.xNextSystemCall = v_next_system_call;
    if (sqlite3_vfs_register(&s, 1) != SQLITE_OK)
      throw std::runtime_error("sqlite3_vfs_register refused the crash-test VFS");
    return v;
  }();
  return *vfs;
}

void CrashVfs::watch(const std::filesystem::path& dir) {
  std::string d = std::filesystem::absolute(dir).lexically_normal().string();
  while (d.size() > 1 && d.back() == '/') d.pop_back();
  std::lock_guard lock(mu_);
  watched_.push_back(d + "/");
}

void CrashVfs::forget(const std::filesystem::path& dir) {
  std::string d = std::filesystem::absolute(dir).lexically_normal().string();
  while (d.size() > 1 && d.back() == '/') d.pop_back();
  d += '/';
  std::lock_guard lock(mu_);
  watched_.erase(std::remove(watched_.begin(), watched_.end(), d), watched_.end());
  for (auto it = files_.begin(); it != files_.end();)
    it = it->first.rfind(d, 0) == 0 ? files_.erase(it) : std::next(it);
}

std::string CrashVfs::root_of_locked(const std::string& path) const {
  for (const auto& w : watched_)
    if (path.rfind(w, 0) == 0) return w;
  return {};
}

bool CrashVfs::watched(const std::string& path) const {
  std::lock_guard lock(mu_);
  return !root_of_locked(path).empty();
}

void CrashVfs::commit_directory_locked(const std::string& root) {
  for (auto& [path, s] : files_) {
    if (path.rfind(root, 0) != 0) continue;
    s.ghost.reset();
    if (s.exists) s.entry_durable = true;
  }
}

// What `path` held at its last sync.
std::string CrashVfs::durable_image_locked(const std::string& path, const State& s) {
  std::string image = read_whole(path);
  image.resize(std::max<uint64_t>(image.size(), s.durable_size), '\0');
  for (const auto& [sector, bytes] : s.before)
    if (sector * kSector < image.size())
      image.replace(sector * kSector, std::min(bytes.size(), image.size() - sector * kSector),
                    bytes);
  image.resize(s.durable_size);
  return image;
}

bool CrashVfs::powered_off() const {
  std::lock_guard lock(mu_);
  return off_;
}

uint64_t CrashVfs::mutating_ops() const {
  std::lock_guard lock(mu_);
  return ops_;
}

uint64_t CrashVfs::syncs() const {
  std::lock_guard lock(mu_);
  return syncs_;
}

void CrashVfs::lose_power(Loss loss, uint64_t seed) {
  std::lock_guard lock(mu_);
  if (!off_) cut_locked(loss, seed);
}

void CrashVfs::arm(uint64_t n, Loss loss, uint64_t seed) {
  std::lock_guard lock(mu_);
  arm_at_ = ops_ + std::max<uint64_t>(n, 1);
  arm_loss_ = loss;
  arm_seed_ = seed;
}

bool CrashVfs::revive() {
  std::lock_guard lock(mu_);
  if (open_files_ > 0) return false;
  off_ = false;
  arm_at_.reset();
  return true;
}

std::optional<int> CrashVfs::before_mutation_locked(int failure) {
  if (off_) return failure;
  ++ops_;
  if (arm_at_ && ops_ >= *arm_at_) {
    cut_locked(arm_loss_, arm_seed_);
    return failure;
  }
  return std::nullopt;
}

// Keeps the last synced bytes of every sector in [from, to) not kept yet. A sector not kept
// yet was not changed since the last sync, so what the file holds now is what was synced.
int CrashVfs::remember_locked(File* f, State& s, uint64_t from, uint64_t to) {
  for (uint64_t sector = from / kSector; sector * kSector < to; ++sector) {
    if (s.before.count(sector)) continue;
    uint64_t start = sector * kSector;
    uint64_t end = std::min({start + kSector, s.durable_size, s.size});
    std::string bytes;
    if (end > start) {
      bytes.resize(end - start);
      int rc = f->real->pMethods->xRead(f->real, bytes.data(), static_cast<int>(bytes.size()),
                                        static_cast<sqlite3_int64>(start));
      if (rc != SQLITE_OK) return rc;
    }
    s.before.emplace(sector, std::move(bytes));
  }
  return SQLITE_OK;
}

bool CrashVfs::over_budget_locked(uint64_t growth) {
  uint64_t total = 0;
  for (const auto& [path, s] : files_)
    if (s.exists) total += s.size;
  uint64_t generation = budget_->generation.load(std::memory_order_acquire);
  if (generation != seen_generation_) {
    seen_generation_ = generation;
    cap_ = budget_->limited.load() ? total + budget_->room.load() : UINT64_MAX;
  }
  return cap_ != UINT64_MAX && total + growth > cap_;
}

int CrashVfs::open(const char* name, sqlite3_file* file, int flags, int* out_flags) {
  if (!name || !watched(name)) return real_->xOpen(real_, name, file, flags, out_flags);
  auto* f = as_file(file);
  f->base.pMethods = nullptr;
  f->real = reinterpret_cast<sqlite3_file*>(reinterpret_cast<char*>(file) + kHeader);
  f->path = nullptr;
  std::lock_guard lock(mu_);
  if (off_) return SQLITE_CANTOPEN;
  struct stat st;
  bool existed = ::stat(name, &st) == 0;
  f->real->pMethods = nullptr;
  int rc = real_->xOpen(real_, name, f->real, flags, out_flags);
  if (rc != SQLITE_OK) {
    if (f->real->pMethods) f->real->pMethods->xClose(f->real);
    return rc;
  }
  sqlite3_int64 size = 0;
  f->real->pMethods->xFileSize(f->real, &size);
  auto [it, fresh] = files_.try_emplace(name);
  State& s = it->second;
  if (fresh && existed) {  // there before this VFS saw it: durable
    s.entry_durable = true;
    s.durable_size = static_cast<uint64_t>(size);
  } else if (!existed) {  // new: nothing of it is durable yet
    s.entry_durable = false;
    s.durable_size = 0;
    s.before.clear();
  }
  s.exists = true;
  s.size = static_cast<uint64_t>(size);
  f->path = new std::string(name);
  f->base.pMethods = &kMethods;
  ++open_files_;
  return SQLITE_OK;
}

int CrashVfs::close(File* f) {
  std::lock_guard lock(mu_);
  int rc = f->real->pMethods->xClose(f->real);
  delete f->path;
  f->path = nullptr;
  --open_files_;
  return rc;
}

int CrashVfs::read(File* f, void* data, int amount, int64_t offset) {
  std::lock_guard lock(mu_);
  if (off_) return SQLITE_IOERR_READ;
  return f->real->pMethods->xRead(f->real, data, amount, offset);
}

int CrashVfs::file_size(File* f, int64_t* size) {
  std::lock_guard lock(mu_);
  if (off_) return SQLITE_IOERR_FSTAT;
  sqlite3_int64 s = 0;
  int rc = f->real->pMethods->xFileSize(f->real, &s);
  *size = s;
  return rc;
}

int CrashVfs::write(File* f, const void* data, int amount, int64_t offset) {
  std::lock_guard lock(mu_);
  if (auto rc = before_mutation_locked(SQLITE_IOERR_WRITE)) return *rc;
  State& s = files_[*f->path];
  uint64_t end = static_cast<uint64_t>(offset) + static_cast<uint64_t>(amount);
  if (end > s.size && over_budget_locked(end - s.size)) return SQLITE_FULL;
  if (int rc = remember_locked(f, s, static_cast<uint64_t>(offset), end); rc != SQLITE_OK)
    return rc;
  int rc = f->real->pMethods->xWrite(f->real, data, amount, offset);
  if (rc == SQLITE_OK) s.size = std::max(s.size, end);
  return rc;
}

int CrashVfs::truncate(File* f, int64_t size) {
  std::lock_guard lock(mu_);
  if (auto rc = before_mutation_locked(SQLITE_IOERR_TRUNCATE)) return *rc;
  State& s = files_[*f->path];
  uint64_t to = static_cast<uint64_t>(size);
  if (to > s.size && over_budget_locked(to - s.size)) return SQLITE_FULL;
  if (int rc = remember_locked(f, s, std::min(to, s.size), std::max(to, s.size)); rc != SQLITE_OK)
    return rc;
  int rc = f->real->pMethods->xTruncate(f->real, size);
  if (rc == SQLITE_OK) s.size = to;
  return rc;
}

int CrashVfs::sync(File* f, int flags) {
  std::lock_guard lock(mu_);
  if (auto rc = before_mutation_locked(SQLITE_IOERR_FSYNC)) return *rc;
  int rc = f->real->pMethods->xSync(f->real, flags);
  if (rc != SQLITE_OK) return rc;
  State& s = files_[*f->path];
  s.before.clear();
  s.durable_size = s.size;
  commit_directory_locked(root_of_locked(*f->path));
  ++syncs_;
  return SQLITE_OK;
}

int CrashVfs::remove(const char* name, int sync_dir) {
  if (!watched(name)) return real_->xDelete(real_, name, sync_dir);
  std::lock_guard lock(mu_);
  if (auto rc = before_mutation_locked(SQLITE_IOERR_DELETE)) return *rc;
  auto it = files_.find(name);
  if (it == files_.end()) {  // never opened through this VFS: whatever it holds is durable
    struct stat st;
    if (::stat(name, &st) != 0) return real_->xDelete(real_, name, sync_dir);
    it = files_.try_emplace(name).first;
    it->second.exists = it->second.entry_durable = true;
    it->second.size = it->second.durable_size = static_cast<uint64_t>(st.st_size);
  }
  State& s = it->second;
  // What the file held at its last sync comes back if the power goes before the deletion is
  // committed.
  std::optional<std::string> image;
  if (s.entry_durable) image = durable_image_locked(name, s);
  int rc = real_->xDelete(real_, name, sync_dir);
  if (rc != SQLITE_OK) return rc;
  if (image) s.ghost = std::move(image);
  s.exists = false;
  s.size = 0;
  s.entry_durable = false;
  s.durable_size = 0;
  s.before.clear();
  if (sync_dir) commit_directory_locked(root_of_locked(name));
  return SQLITE_OK;
}

void CrashVfs::cut_locked(Loss loss, uint64_t seed) {
  off_ = true;
  arm_at_.reset();
  std::mt19937_64 rng(seed);
  for (auto& [path, s] : files_) apply_cut_locked(path, s, loss, rng);
}

void CrashVfs::apply_cut_locked(const std::string& path, State& s, Loss loss,
                                std::mt19937_64& rng) {
  // true: an unsynced change did not reach the disk.
  auto lost = [&] { return loss == Loss::kEveryUnsyncedWrite || (rng() & 1) != 0; };
  struct stat st;
  bool on_disk = ::stat(path.c_str(), &st) == 0;
  if (on_disk && !s.entry_durable && lost()) {  // created, and the directory never committed
    ::unlink(path.c_str());
    on_disk = false;
  }
  if (!on_disk) {  // deleted: back as it was at its last sync unless the deletion was committed
    std::optional<std::string> ghost = std::move(s.ghost);
    s = State{};
    if (ghost && lost()) {
      write_whole(path, *ghost);
      s.exists = s.entry_durable = true;
      s.size = s.durable_size = ghost->size();
    }
    return;
  }
  uint64_t now = static_cast<uint64_t>(st.st_size);
  uint64_t size = now == s.durable_size || lost() ? s.durable_size : now;
  int fd = ::open(path.c_str(), O_RDWR | O_CLOEXEC);
  if (fd < 0) throw std::runtime_error("crash-test VFS: cannot reopen " + path);
  for (const auto& [sector, bytes] : s.before) {
    uint64_t start = sector * kSector;
    if (start >= size || !lost()) continue;
    // The synced bytes again; past the synced size, what never reached the disk reads as zeros.
    std::string image = bytes;
    image.resize(std::min<uint64_t>(kSector, size - start), '\0');
    if (::pwrite(fd, image.data(), image.size(), static_cast<off_t>(start)) !=
        static_cast<ssize_t>(image.size()))
      throw std::runtime_error("crash-test VFS: cannot rewrite " + path);
  }
  if (::ftruncate(fd, static_cast<off_t>(size)) != 0)
    throw std::runtime_error("crash-test VFS: cannot truncate " + path);
  ::close(fd);
  s.exists = s.entry_durable = true;
  s.size = s.durable_size = size;
  s.before.clear();
  s.ghost.reset();
}

SharedDiskBudget::SharedDiskBudget(const std::filesystem::path& file) : file_(file) {
  int fd = ::open(file.c_str(), O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (fd < 0 || ::ftruncate(fd, sizeof(DiskBudget)) != 0)
    throw std::runtime_error("cannot create the disk budget file " + file.string());
  void* p = ::mmap(nullptr, sizeof(DiskBudget), PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  ::close(fd);
  if (p == MAP_FAILED) throw std::runtime_error("cannot map " + file.string());
  budget_ = new (p) DiskBudget();
}

SharedDiskBudget::~SharedDiskBudget() {
  if (budget_) ::munmap(budget_, sizeof(DiskBudget));
  std::error_code ec;
  std::filesystem::remove(file_, ec);
}

DiskBudget* SharedDiskBudget::map_existing(const char* file) {
  int fd = ::open(file, O_RDWR | O_CLOEXEC);
  if (fd < 0) return nullptr;
  void* p = ::mmap(nullptr, sizeof(DiskBudget), PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  ::close(fd);
  return p == MAP_FAILED ? nullptr : static_cast<DiskBudget*>(p);
}

}  // namespace sotto::test
