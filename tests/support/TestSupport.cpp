#include "TestSupport.h"

#include <gtest/gtest.h>
#include <openssl/evp.h>
#include <sqlcipher/sqlite3.h>
#include <unistd.h>

#include <fstream>
#include <random>
#include <sstream>

#include "Database.h"

namespace sotto::test {
namespace fs = std::filesystem;

TempDir::TempDir() {
  std::random_device rd;
  for (int attempt = 0; attempt < 100; ++attempt) {
    fs::path p = fs::temp_directory_path() /
                 ("sotto-test-" + std::to_string(::getpid()) + "-" + std::to_string(rd()));
    if (fs::create_directory(p)) {
      path_ = p;
      return;
    }
  }
  throw std::runtime_error("cannot create a temporary directory");
}

TempDir::~TempDir() {
  std::error_code ec;
  fs::remove_all(path_, ec);
}

SecureBytes test_key(const std::string& label) {
  SecureBytes key(32);
  for (size_t i = 0; i < 32; ++i)
    key.data()[i] = static_cast<uint8_t>(label[i % label.size()] * 31 + i * 7);
  return key;
}

Bytes read_file(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  return Bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
}

std::vector<std::pair<fs::path, Bytes>> read_tree(const fs::path& dir) {
  // A client may remove files while the tree is read (tidying its profile): a pass that lost an
  // entry under it is read again.
  for (int attempt = 0;; ++attempt) {
    try {
      std::vector<std::pair<fs::path, Bytes>> out;
      for (const auto& entry : fs::recursive_directory_iterator(dir))
        if (entry.is_regular_file()) out.emplace_back(entry.path(), read_file(entry.path()));
      return out;
    } catch (const fs::filesystem_error&) {
      if (attempt == 9) throw;
    }
  }
}

bool contains(const Bytes& haystack, std::string_view needle) {
  return std::search(haystack.begin(), haystack.end(), needle.begin(), needle.end()) !=
         haystack.end();
}

std::map<std::string, std::vector<std::string>> dump_database(const fs::path& db_path,
                                                              const SecureBytes& key) {
  std::map<std::string, std::vector<std::string>> out;
  auto db = db::Database::open(db_path, key, {false, db::Durability::kFull});
  if (!db.ok()) {
    ADD_FAILURE() << "cannot open " << db_path << ": " << db.error().message;
    return out;
  }
  sqlite3* h = (*db)->handle();
  std::vector<std::string> tables;
  {
    sqlite3_stmt* st = nullptr;
    sqlite3_prepare_v2(h, "SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name", -1,
                       &st, nullptr);
    while (sqlite3_step(st) == SQLITE_ROW)
      tables.emplace_back(reinterpret_cast<const char*>(sqlite3_column_text(st, 0)));
    sqlite3_finalize(st);
  }
  for (const auto& t : tables) {
    sqlite3_stmt* st = nullptr;
    std::string sql = "SELECT * FROM \"" + t + "\"";
    sqlite3_prepare_v2(h, sql.c_str(), -1, &st, nullptr);
    auto& rows = out[t];
    while (sqlite3_step(st) == SQLITE_ROW) {
      std::string row;
      for (int c = 0; c < sqlite3_column_count(st); ++c) {
        const auto* p = static_cast<const uint8_t*>(sqlite3_column_blob(st, c));
        int n = sqlite3_column_bytes(st, c);
        row += to_hex(ByteView(p, static_cast<size_t>(n))) + "|";
      }
      rows.push_back(row);
    }
    sqlite3_finalize(st);
    std::sort(rows.begin(), rows.end());
  }
  return out;
}

// SQLCipher 3 page layout (cipher_page_size 4096, raw key): AES-256-CBC over the page minus a
// 48-byte reserve holding the IV (first 16 bytes of it) and the HMAC; page 1 starts with the
// 16-byte salt, outside the encrypted part.
constexpr size_t kPage = 4096;
constexpr size_t kReserve = 48;

namespace {

Bytes decrypt_page(const SecureBytes& key, const uint8_t* page, bool first) {
  size_t begin = first ? 16 : 0;
  const uint8_t* iv = page + kPage - kReserve;
  Bytes out(kPage - kReserve - begin);
  std::unique_ptr<EVP_CIPHER_CTX, decltype(&EVP_CIPHER_CTX_free)> ctx(EVP_CIPHER_CTX_new(),
                                                                      EVP_CIPHER_CTX_free);
  int n = 0, m = 0;
  if (EVP_DecryptInit_ex(ctx.get(), EVP_aes_256_cbc(), nullptr, key.data(), iv) != 1 ||
      EVP_CIPHER_CTX_set_padding(ctx.get(), 0) != 1 ||
      EVP_DecryptUpdate(ctx.get(), out.data(), &n, page + begin, static_cast<int>(out.size())) !=
          1 ||
      EVP_DecryptFinal_ex(ctx.get(), out.data() + n, &m) != 1)
    ADD_FAILURE() << "cannot decrypt a page";
  return out;
}

}  // namespace

std::vector<Bytes> decrypted_pages(const fs::path& dir, const SecureBytes& key) {
  std::vector<Bytes> pages;
  Bytes db = read_file(dir / "profile.db");
  for (size_t off = 0; off + kPage <= db.size(); off += kPage)
    pages.push_back(decrypt_page(key, db.data() + off, off == 0));
  std::error_code ec;
  if (fs::exists(dir / "profile.db-wal", ec)) {
    Bytes wal = read_file(dir / "profile.db-wal");
    // 32-byte header, then frames of a 24-byte header (page number first) and a page.
    for (size_t off = 32; off + 24 + kPage <= wal.size(); off += 24 + kPage) {
      uint32_t page_no = (uint32_t{wal[off]} << 24) | (uint32_t{wal[off + 1]} << 16) |
                         (uint32_t{wal[off + 2]} << 8) | wal[off + 3];
      pages.push_back(decrypt_page(key, wal.data() + off + 24, page_no == 1));
    }
  }
  return pages;
}

bool anywhere(const std::vector<Bytes>& pages, std::string_view word) {
  return std::any_of(pages.begin(), pages.end(), [&](const Bytes& p) { return contains(p, word); });
}

Bytes VectorRecord::hex(const std::string& name) const {
  auto it = fields.find(name);
  if (it == fields.end()) {
    ADD_FAILURE() << label << ": no field " << name;
    return {};
  }
  Bytes out;
  if (!from_hex(it->second, out)) ADD_FAILURE() << label << ": " << name << " is not hex";
  return out;
}

std::vector<VectorRecord> read_vectors(const std::string& file_name) {
  std::ifstream in(fs::path(SOTTO_VECTORS_DIR) / file_name);
  if (!in) {
    ADD_FAILURE() << "missing vector file " << file_name;
    return {};
  }
  std::vector<VectorRecord> out;
  std::string line;
  auto trim = [](std::string s) {
    size_t b = s.find_first_not_of(" \t\r"), e = s.find_last_not_of(" \t\r");
    return b == std::string::npos ? std::string() : s.substr(b, e - b + 1);
  };
  while (std::getline(in, line)) {
    line = trim(line);
    if (line.empty() || line[0] == '#') continue;
    if (line.front() == '[' && line.back() == ']') {
      out.push_back(VectorRecord{line.substr(1, line.size() - 2), {}});
      continue;
    }
    size_t eq = line.find('=');
    if (eq == std::string::npos || out.empty()) {
      ADD_FAILURE() << file_name << ": cannot parse line: " << line;
      continue;
    }
    out.back().fields[trim(line.substr(0, eq))] = trim(line.substr(eq + 1));
  }
  return out;
}

}  // namespace sotto::test
