#include "AppSupport.h"

#include <cctype>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <iterator>
#include <system_error>

namespace sotto::app {
namespace {

// The formats are the literals below; strftime cannot check a parameter.
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wformat-nonliteral"
std::string strftime_local(uint64_t ms, const char* format) {
  std::time_t t = static_cast<std::time_t>(ms / 1000);
  std::tm tm{};
  localtime_r(&t, &tm);
  char buf[64];
  size_t n = std::strftime(buf, sizeof buf, format, &tm);
  return std::string(buf, n);
}
#pragma GCC diagnostic pop

int64_t local_day(uint64_t ms) {
  std::time_t t = static_cast<std::time_t>(ms / 1000);
  std::tm tm{};
  localtime_r(&t, &tm);
  return static_cast<int64_t>(tm.tm_year) * 400 + tm.tm_yday;
}

int hex_value(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

}  // namespace

std::string default_relay_url() {
  const char* env = std::getenv("SOTTO_RELAY");
  if (env && *env) return env;
  return "ws://127.0.0.1:8080/v1/ws";
}

std::filesystem::path default_data_dir() {
  if (const char* xdg = std::getenv("XDG_DATA_HOME"); xdg && *xdg)
    return std::filesystem::path(xdg) / "sotto";
  if (const char* home = std::getenv("HOME"); home && *home)
    return std::filesystem::path(home) / ".local" / "share" / "sotto";
  return std::filesystem::current_path() / "sotto-data";
}

bool is_new_profile(const std::filesystem::path& dir) {
  std::error_code ec;
  if (!std::filesystem::exists(dir, ec)) return true;
  return std::filesystem::is_empty(dir, ec);
}

std::filesystem::path unused_path(const std::filesystem::path& dir, const std::string& file_name) {
  std::string name = std::filesystem::path(file_name).filename().string();
  if (name.empty() || name == "." || name == "..") name = "file";
  std::filesystem::path p = dir / name;
  std::error_code ec;
  std::string stem = p.stem().string(), ext = p.extension().string();
  for (int n = 2; std::filesystem::exists(p, ec) && n < 10000; ++n)
    p = dir / (stem + " (" + std::to_string(n) + ")" + ext);
  return p;
}

Result<SecureBytes> read_key_file(const std::filesystem::path& path) {
  FILE* f = std::fopen(path.c_str(), "rb");
  if (!f)
    return make_error(ErrorCode::kNotFound, "cannot read the key file " + path.string() +
                                                " (make one with: openssl rand -hex 32 > " +
                                                path.string() + ")");
  std::string raw(200, '\0');
  raw.resize(std::fread(raw.data(), 1, raw.size(), f));
  std::fclose(f);
  SecureBytes key;
  if (raw.size() == 32) {
    key = SecureBytes(reinterpret_cast<const uint8_t*>(raw.data()), raw.size());
  } else {
    size_t b = 0, e = raw.size();
    while (b < e && std::isspace(static_cast<unsigned char>(raw[b]))) ++b;
    while (e > b && std::isspace(static_cast<unsigned char>(raw[e - 1]))) --e;
    bool ok = e - b == 64;
    uint8_t bytes[32] = {};
    for (size_t i = 0; ok && i < 32; ++i) {
      int hi = hex_value(raw[b + 2 * i]), lo = hex_value(raw[b + 2 * i + 1]);
      if (hi < 0 || lo < 0) ok = false;
      bytes[i] = static_cast<uint8_t>(hi << 4 | lo);
    }
    if (ok) key = SecureBytes(bytes, sizeof bytes);
    std::fill(std::begin(bytes), std::end(bytes), uint8_t{0});
  }
  std::fill(raw.begin(), raw.end(), '\0');
  if (key.size() != 32)
    return make_error(ErrorCode::kInvalidArgument,
                      "the key file " + path.string() +
                          " must hold 64 hex digits or 32 raw bytes (openssl rand -hex 32 > FILE)");
  return key;
}

std::string format_clock(uint64_t ms) { return strftime_local(ms, "%H:%M"); }

std::string format_time(uint64_t ms, uint64_t now) {
  if (ms == 0) return "";
  int64_t days = local_day(now) - local_day(ms);
  if (days == 0) return strftime_local(ms, "%H:%M");
  if (days > 0 && days < 7) return strftime_local(ms, "%a %H:%M");
  return strftime_local(ms, "%e %b");
}

std::string format_last_seen(uint64_t seen, uint64_t now) {
  if (seen == 0) return "";
  if (now >= seen && now - seen < 60'000) return "last seen just now";
  if (now >= seen && now - seen < 3600'000)
    return "last seen " + std::to_string((now - seen) / 60'000) + " min ago";
  if (local_day(now) == local_day(seen)) return "last seen today at " + format_clock(seen);
  return "last seen " + strftime_local(seen, "%e %b");
}

std::string format_size(uint64_t bytes) {
  char buf[32];
  if (bytes < 1024) {
    std::snprintf(buf, sizeof buf, "%llu B", static_cast<unsigned long long>(bytes));
  } else if (bytes < 1024 * 1024) {
    std::snprintf(buf, sizeof buf, "%.1f KB", static_cast<double>(bytes) / 1024);
  } else if (bytes < 1024ull * 1024 * 1024) {
    std::snprintf(buf, sizeof buf, "%.1f MB", static_cast<double>(bytes) / (1024 * 1024));
  } else {
    std::snprintf(buf, sizeof buf, "%.1f GB", static_cast<double>(bytes) / (1024 * 1024 * 1024));
  }
  return buf;
}

std::string group_digits(const std::string& digits) {
  if (digits.size() != 60) return digits;
  std::string out;
  for (size_t i = 0; i < 60; i += 5) {
    if (i) out += ' ';
    out += digits.substr(i, 5);
  }
  return out;
}

std::string status_word(MessageStatus s) {
  switch (s) {
    case MessageStatus::kPending:
      return "sending";
    case MessageStatus::kSent:
      return "sent";
    case MessageStatus::kDelivered:
      return "delivered";
    case MessageStatus::kRead:
      return "read";
    case MessageStatus::kFailed:
      return "failed";
    default:
      return "";
  }
}

std::string status_ticks(MessageStatus s) {
  switch (s) {
    case MessageStatus::kPending:
      return "\u2026";
    case MessageStatus::kSent:
      return "\u2713";
    case MessageStatus::kDelivered:
    case MessageStatus::kRead:
      return "\u2713\u2713";
    case MessageStatus::kFailed:
      return "!";
    default:
      return "";
  }
}

std::string format_duration(uint32_t s) {
  if (s == 0) return "off";
  auto plural = [](uint32_t n, const char* one, const char* many) {
    return std::to_string(n) + " " + (n == 1 ? one : many);
  };
  if (s % (7 * 86400) == 0) return plural(s / (7 * 86400), "week", "weeks");
  if (s % 86400 == 0) return plural(s / 86400, "day", "days");
  if (s % 3600 == 0) return std::to_string(s / 3600) + " h";
  if (s % 60 == 0) return std::to_string(s / 60) + " min";
  return std::to_string(s) + " s";
}

int64_t parse_duration(const std::string& text) {
  if (text == "off" || text == "0") return 0;
  if (text.empty()) return -1;
  size_t i = 0;
  int64_t n = 0;
  while (i < text.size() && std::isdigit(static_cast<unsigned char>(text[i]))) {
    n = n * 10 + (text[i] - '0');
    if (n > 10'000'000'000) return -1;
    ++i;
  }
  if (i == 0) return -1;
  std::string unit = text.substr(i);
  int64_t mult = unit.empty() || unit == "s"    ? 1
                 : unit == "m" || unit == "min" ? 60
                 : unit == "h"                  ? 3600
                 : unit == "d"                  ? 86400
                 : unit == "w"                  ? 7 * 86400
                                                : -1;
  if (mult < 0) return -1;
  int64_t total = n * mult;
  return total > UINT32_MAX ? -1 : total;
}

std::string at_handle(const std::string& handle) {
  if (handle.empty() || handle[0] == '@') return handle;
  return "@" + handle;
}

uint64_t now_ms() {
  return static_cast<uint64_t>(std::chrono::duration_cast<std::chrono::milliseconds>(
                                   std::chrono::system_clock::now().time_since_epoch())
                                   .count());
}

}  // namespace sotto::app
