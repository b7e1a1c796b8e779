// Looking at the relay from outside, as its operator (or whoever holds its disk) could: the
// envelopes and attachments in its data dir, its /metrics, and a search of every file it
// wrote for the demo's plaintext.
//
// Thread rule: free functions without shared state.
#pragma once

#include <cstdint>
#include <filesystem>
#include <map>
#include <optional>
#include <string>
#include <vector>

namespace sotto::demo {

// What the relay's database holds. Read-only; works while the relay runs (WAL) and after.
// The relay runs here without --db-key-file, so its database is a plain SQLite file: what an
// operator or a thief of the disk would see.
struct StoreSnapshot {
  uint64_t accounts = 0;
  uint64_t devices = 0;
  uint64_t prekeys = 0;
  std::vector<uint64_t> queued_sizes;  // ciphertext bytes of each queued envelope, queue order
  uint64_t attachments = 0;
  uint64_t attachment_bytes = 0;
  std::vector<std::string> handles;  // what the relay needs in clear to look people up
};

// Everything in the store, or only the queue of one account (32 hex digits).
std::optional<StoreSnapshot> read_store(const std::filesystem::path& db,
                                        const std::string& account_hex, std::string& error);

// GET /metrics on 127.0.0.1:port: the value of every unlabelled sample.
std::map<std::string, double> fetch_metrics(uint16_t port, std::string& error);

// A whole file; false when it cannot be read.
bool read_file(const std::filesystem::path& path, std::string& content);
std::string read_file(const std::filesystem::path& path);  // empty when unreadable

struct FileInfo {
  std::filesystem::path path;
  uint64_t size = 0;
};
// Every regular file under `root` (recursively), sorted by path.
std::vector<FileInfo> list_files(const std::filesystem::path& root);

struct ScanFinding {
  std::filesystem::path file;
  std::string needle;
};
struct ScanResult {
  size_t files = 0;
  uint64_t bytes = 0;
  std::vector<ScanFinding> found;
};
// Searches every byte of `files` for each of `needles`.
ScanResult scan_for(const std::vector<std::filesystem::path>& files,
                    const std::vector<std::string>& needles);

}  // namespace sotto::demo
