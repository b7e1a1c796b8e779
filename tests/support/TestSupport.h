// Shared helpers for sotto's unit tests.
#pragma once

#include <filesystem>
#include <map>
#include <string>
#include <string_view>
#include <vector>

#include "sotto/Bytes.h"
#include "sotto/SecureBytes.h"

namespace sotto::test {

// A fresh directory under the system temp dir, removed (recursively) on destruction.
class TempDir {
 public:
  TempDir();
  ~TempDir();
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  const std::filesystem::path& path() const { return path_; }
  std::filesystem::path operator/(const std::string& name) const { return path_ / name; }

 private:
  std::filesystem::path path_;
};

// A deterministic 32-byte key derived from a label.
SecureBytes test_key(const std::string& label);

// Every byte of every regular file under `dir`.
std::vector<std::pair<std::filesystem::path, Bytes>> read_tree(const std::filesystem::path& dir);
Bytes read_file(const std::filesystem::path& path);
// True when `needle` occurs in `haystack`.
bool contains(const Bytes& haystack, std::string_view needle);

// The logical content of every table of a profile database, read over a second SQLCipher
// connection with `key`: table name -> rows rendered as hex. Equal dumps mean no stored state
// changed.
std::map<std::string, std::vector<std::string>> dump_database(const std::filesystem::path& db,
                                                              const SecureBytes& key);

// Every page of <dir>/profile.db and every frame of its WAL, decrypted with the profile's raw
// key: what an attacker with the key would find in the files, including freed pages.
std::vector<Bytes> decrypted_pages(const std::filesystem::path& dir, const SecureBytes& key);
// True when `word` occurs in any of `pages`.
bool anywhere(const std::vector<Bytes>& pages, std::string_view word);

// Known-answer vector files: records of name -> value.
struct VectorRecord {
  std::string label;
  std::map<std::string, std::string> fields;
  Bytes hex(const std::string& name) const;
};
std::vector<VectorRecord> read_vectors(const std::string& file_name);

}  // namespace sotto::test
