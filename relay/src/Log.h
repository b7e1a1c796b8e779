// Structured logs: one logfmt line per event on stderr ("ts=... level=info event=listening
// port=8080"). Thread-safe. Never pass secrets, message content or auth material.
#pragma once

#include <cstdint>
#include <initializer_list>
#include <string>
#include <string_view>
#include <utility>

namespace sotto::relay {

enum class LogLevel { kDebug = 0, kInfo = 1, kWarn = 2, kError = 3 };

// A key and an already formatted value.
struct LogField {
  LogField(std::string_view k, std::string_view v) : key(k), value(v) {}
  LogField(std::string_view k, const char* v) : key(k), value(v) {}
  LogField(std::string_view k, const std::string& v) : key(k), value(v) {}
  template <class N>
  requires std::is_arithmetic_v<N> LogField(std::string_view k, N n)
      : key(k), value(std::to_string(n)) {}
  std::string_view key;
  std::string value;
};

void set_log_level(LogLevel level);
bool parse_log_level(std::string_view text, LogLevel& out);
bool log_enabled(LogLevel level);

// Writes `ts=<iso8601> level=<level> event=<event> k=v ...`, quoting values with spaces.
void log(LogLevel level, std::string_view event, std::initializer_list<LogField> fields = {});

inline void log_info(std::string_view event, std::initializer_list<LogField> fields = {}) {
  log(LogLevel::kInfo, event, fields);
}
inline void log_warn(std::string_view event, std::initializer_list<LogField> fields = {}) {
  log(LogLevel::kWarn, event, fields);
}
inline void log_error(std::string_view event, std::initializer_list<LogField> fields = {}) {
  log(LogLevel::kError, event, fields);
}
inline void log_debug(std::string_view event, std::initializer_list<LogField> fields = {}) {
  if (log_enabled(LogLevel::kDebug)) log(LogLevel::kDebug, event, fields);
}

}  // namespace sotto::relay
