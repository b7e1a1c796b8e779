// How RelayProcess starts, watches and stops the relay process: with fork and exec on POSIX
// (RelaySpawnPosix.cpp), and from a Windows test under Wine through a shell script that Wine
// runs as a Unix program (RelaySpawnWine.cpp): the relay is always the native Linux binary.
#pragma once

#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <vector>

namespace sotto::test::spawn {

// Signals, by their Linux numbers (a Windows build has no <signal.h> names for most).
inline constexpr int kHup = 1;
inline constexpr int kKill = 9;
inline constexpr int kTerm = 15;

struct Running {
  long pid = -1;               // the relay's process id (Linux)
  std::filesystem::path dir;   // the RelayProcess's own directory (the Wine side's files)
};

// A fresh directory for one relay's files.
std::filesystem::path make_dir();
// The path as the relay (a Linux process) names it.
std::string native_path(const std::filesystem::path& p);
// Starts `command` (argv; command[0] the relay) with `env` (NAME=value) over the test's own
// environment, stdout and stderr appended to `log`. Empty `why` on success.
Running start(const std::vector<std::string>& command, const std::vector<std::string>& env,
              const std::filesystem::path& log, const std::filesystem::path& dir,
              std::string& why);
// The exit status (or 128 + signal) once it has ended; nullopt while it runs.
std::optional<int> exited(Running& r);
void signal(const Running& r, int sig);
// The relay run as a command to its end: exit status and output (stdout and stderr).
std::pair<int, std::string> run(const std::vector<std::string>& command);
bool can_connect(uint16_t port);

}  // namespace sotto::test::spawn
