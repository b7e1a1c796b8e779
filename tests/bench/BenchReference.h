// A yardstick measured in the same run as a benchmark's figures. The reference machine's speed
// moves 2-4x from day to day, and other work may share its cores during a run, so figures of
// different runs compare only as ratios to what the machine managed in that run. A benchmark
// measures it at its start and at its end: when the two differ, the machine changed speed
// during the run.
#pragma once

#include <fcntl.h>
#include <sodium.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <string>
#include <vector>

namespace sotto::bench {

struct MachineReference {
  // One thread hashing 64 KiB blocks (libsodium) for 0.3 s: MB per second of its own CPU
  // time (the speed of a core), and the share of the wall-clock time it had a core (less
  // than 1 when other work competes for the cores).
  double sha256_mb_per_cpu_s = 0;
  double core_share = 0;
  double fsync_ms = 0;   // median of 50 rewrites of 4 KiB, each followed by fdatasync
  double load_1min = 0;  // /proc/loadavg
};

// About half a second of work: the CPU part bounded by time, the fsync part by count. `dir`
// should be where the benchmark keeps its files (the same file system).
inline MachineReference measure_machine(const std::filesystem::path& dir) {
  using Clock = std::chrono::steady_clock;
  MachineReference r;
  if (sodium_init() < 0) return r;
  std::vector<unsigned char> block(64 * 1024, 0x5a);
  unsigned char digest[crypto_hash_sha256_BYTES];
  auto thread_cpu_s = [] {
    timespec ts{};
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return static_cast<double>(ts.tv_sec) + static_cast<double>(ts.tv_nsec) / 1e9;
  };
  size_t hashed = 0;
  auto t0 = Clock::now();
  double cpu0 = thread_cpu_s(), wall = 0;
  while (wall < 0.3) {
    crypto_hash_sha256(digest, block.data(), block.size());
    block[0] = digest[0];  // each block depends on the last: nothing to skip
    hashed += block.size();
    wall = std::chrono::duration<double>(Clock::now() - t0).count();
  }
  double cpu = thread_cpu_s() - cpu0;
  if (cpu > 0) r.sha256_mb_per_cpu_s = static_cast<double>(hashed) / 1e6 / cpu;
  r.core_share = std::min(1.0, cpu / wall);
  if (FILE* f = std::fopen("/proc/loadavg", "r")) {
    if (std::fscanf(f, "%lf", &r.load_1min) != 1) r.load_1min = 0;
    std::fclose(f);
  }

  std::filesystem::create_directories(dir);
  std::filesystem::path file = dir / "machine-reference";
  int fd = ::open(file.c_str(), O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (fd >= 0) {
    std::vector<double> ms;
    for (int i = 0; i < 50; ++i) {
      auto w = Clock::now();
      if (::pwrite(fd, block.data(), 4096, 0) != 4096 || ::fdatasync(fd) != 0) break;
      ms.push_back(std::chrono::duration<double, std::milli>(Clock::now() - w).count());
    }
    ::close(fd);
    if (!ms.empty()) {
      std::sort(ms.begin(), ms.end());
      r.fsync_ms = ms[ms.size() / 2];
    }
  }
  std::error_code ec;
  std::filesystem::remove(file, ec);
  return r;
}

inline void print_machine(const char* when, const MachineReference& r) {
  std::printf(
      "machine reference (%s): SHA-256 %.0f MB per CPU-second, a core %.0f%% of the time, "
      "fsync of 4 KiB %.2f ms, load average %.1f\n",
      when, r.sha256_mb_per_cpu_s, 100 * r.core_share, r.fsync_ms, r.load_1min);
}

}  // namespace sotto::bench
