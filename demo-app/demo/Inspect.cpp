#include "Inspect.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sqlite3.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <functional>
#include <sstream>

#include "sotto/Bytes.h"

namespace sotto::demo {
namespace {

class Db {
 public:
  Db(const std::filesystem::path& path, std::string& error) {
    if (sqlite3_open_v2(path.c_str(), &db_, SQLITE_OPEN_READONLY, nullptr) != SQLITE_OK) {
      error = "cannot open " + path.filename().string() + ": " +
              (db_ ? sqlite3_errmsg(db_) : "out of memory");
      return;
    }
    sqlite3_busy_timeout(db_, 3000);
  }
  ~Db() { sqlite3_close(db_); }
  Db(const Db&) = delete;
  Db& operator=(const Db&) = delete;

  // Runs `sql` with an optional blob parameter ?1; calls `row` for each row.
  bool query(const char* sql, const Bytes* param, const std::function<void(sqlite3_stmt*)>& row,
             std::string& error) {
    sqlite3_stmt* st = nullptr;
    if (sqlite3_prepare_v2(db_, sql, -1, &st, nullptr) != SQLITE_OK) {
      error =
          std::string("the relay's store does not answer \"") + sql + "\": " + sqlite3_errmsg(db_);
      return false;
    }
    if (param)
      sqlite3_bind_blob(st, 1, param->data(), static_cast<int>(param->size()), SQLITE_TRANSIENT);
    int rc;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) row(st);
    bool ok = rc == SQLITE_DONE;
    if (!ok) error = std::string("reading the relay's store: ") + sqlite3_errmsg(db_);
    sqlite3_finalize(st);
    return ok;
  }

  bool count(const char* sql, uint64_t& out, std::string& error) {
    return query(
        sql, nullptr,
        [&](sqlite3_stmt* st) { out = static_cast<uint64_t>(sqlite3_column_int64(st, 0)); }, error);
  }

  bool ok() const { return db_ != nullptr; }

 private:
  sqlite3* db_ = nullptr;
};

}  // namespace

bool read_file(const std::filesystem::path& path, std::string& content) {
  FILE* f = std::fopen(path.c_str(), "rb");
  if (!f) return false;
  content.clear();
  char buf[65536];
  for (size_t n; (n = std::fread(buf, 1, sizeof buf, f)) > 0;) content.append(buf, n);
  bool ok = !std::ferror(f);
  std::fclose(f);
  return ok;
}

std::string read_file(const std::filesystem::path& path) {
  std::string s;
  read_file(path, s);
  return s;
}

std::optional<StoreSnapshot> read_store(const std::filesystem::path& db_path,
                                        const std::string& account_hex, std::string& error) {
  Db db(db_path, error);
  if (!error.empty()) return std::nullopt;
  StoreSnapshot s;
  // Everything the relay keeps for a queued envelope that it cannot read: the ciphertext (or
  // the shared one of a fan-out) and the per-device header.
  const char* queue_all =
      "SELECT coalesce(length(q.header), 0) + coalesce(length(q.ciphertext), 0) + "
      "coalesce((SELECT length(b.ciphertext) FROM blobs b WHERE b.id = q.blob_id), 0) "
      "FROM queue q ORDER BY q.account, q.device, q.seq";
  const char* queue_one =
      "SELECT coalesce(length(q.header), 0) + coalesce(length(q.ciphertext), 0) + "
      "coalesce((SELECT length(b.ciphertext) FROM blobs b WHERE b.id = q.blob_id), 0) "
      "FROM queue q WHERE q.account = ?1 ORDER BY q.device, q.seq";
  Bytes account;
  if (!account_hex.empty() && !from_hex(account_hex, account)) {
    error = "bad account id " + account_hex;
    return std::nullopt;
  }
  auto size_row = [&](sqlite3_stmt* st) {
    s.queued_sizes.push_back(static_cast<uint64_t>(sqlite3_column_int64(st, 0)));
  };
  bool ok = account_hex.empty() ? db.query(queue_all, nullptr, size_row, error)
                                : db.query(queue_one, &account, size_row, error);
  ok = ok && db.count("SELECT count(*) FROM accounts", s.accounts, error) &&
       db.count("SELECT count(*) FROM devices", s.devices, error) &&
       db.count("SELECT count(*) FROM prekeys", s.prekeys, error) &&
       db.count("SELECT count(*) FROM attachments WHERE uploaded_at > 0", s.attachments, error) &&
       db.count("SELECT coalesce(sum(size), 0) FROM attachments WHERE uploaded_at > 0",
                s.attachment_bytes, error) &&
       db.query(
           "SELECT handle FROM accounts ORDER BY handle", nullptr,
           [&](sqlite3_stmt* st) {
             const unsigned char* h = sqlite3_column_text(st, 0);
             s.handles.emplace_back(h ? reinterpret_cast<const char*>(h) : "");
           },
           error);
  if (!ok) return std::nullopt;
  return s;
}

std::map<std::string, double> fetch_metrics(uint16_t port, std::string& error) {
  std::map<std::string, double> out;
  int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) {
    error = "no socket";
    return out;
  }
  timeval tv{3, 0};
  ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  ::setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(port);
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
    ::close(fd);
    error = "cannot connect to the relay";
    return out;
  }
  std::string req = "GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n";
  if (::send(fd, req.data(), req.size(), MSG_NOSIGNAL) != static_cast<ssize_t>(req.size())) {
    ::close(fd);
    error = "cannot send the request";
    return out;
  }
  std::string resp;
  char buf[8192];
  for (ssize_t n; (n = ::recv(fd, buf, sizeof buf, 0)) > 0;)
    resp.append(buf, static_cast<size_t>(n));
  ::close(fd);
  if (resp.rfind("HTTP/1.1 200", 0) != 0) {
    error = "the relay answered: " + resp.substr(0, resp.find('\r'));
    return out;
  }
  size_t body = resp.find("\r\n\r\n");
  std::istringstream lines(body == std::string::npos ? "" : resp.substr(body + 4));
  for (std::string line; std::getline(lines, line);) {
    if (line.empty() || line[0] == '#' || line.find('{') != std::string::npos) continue;
    std::istringstream words(line);
    std::string name;
    double value = 0;
    if (words >> name >> value) out[name] = value;
  }
  return out;
}

std::vector<FileInfo> list_files(const std::filesystem::path& root) {
  std::vector<FileInfo> files;
  std::error_code ec;
  for (auto it = std::filesystem::recursive_directory_iterator(root, ec);
       !ec && it != std::filesystem::recursive_directory_iterator(); it.increment(ec)) {
    if (it->is_regular_file(ec)) files.push_back({it->path(), it->file_size(ec)});
  }
  std::sort(files.begin(), files.end(),
            [](const FileInfo& a, const FileInfo& b) { return a.path < b.path; });
  return files;
}

ScanResult scan_for(const std::vector<std::filesystem::path>& files,
                    const std::vector<std::string>& needles) {
  ScanResult r;
  for (const auto& f : files) {
    std::string content;
    if (!read_file(f, content)) continue;
    ++r.files;
    r.bytes += content.size();
    for (const auto& n : needles)
      if (!n.empty() && content.find(n) != std::string::npos) r.found.push_back({f, n});
  }
  return r;
}

}  // namespace sotto::demo
