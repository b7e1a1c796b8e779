// Helpers the terminal client and the desktop app share: where profiles live, key files, and
// how times, sizes, statuses and safety numbers read for a person.
//
// Thread rule: free functions without shared state; call them from any thread.
#pragma once

#include <cstdint>
#include <filesystem>
#include <string>

#include "sotto/Client.h"
#include "sotto/Result.h"
#include "sotto/SecureBytes.h"

namespace sotto::app {

// The relay a client talks to when none is given: $SOTTO_RELAY, else a relay on this machine.
std::string default_relay_url();

// $XDG_DATA_HOME/sotto (or ~/.local/share/sotto): where the apps keep their profiles.
std::filesystem::path default_data_dir();

// True when `dir` holds no profile yet (missing or empty): the apps then ask for a new
// passphrase twice instead of once.
bool is_new_profile(const std::filesystem::path& dir);

// Where to save a received file called `file_name` in `dir`: its last path component only (a
// sender chooses the name), "file" when that is empty, ".." or ".", and "name (2).ext",
// "name (3).ext"... when the name is taken.
std::filesystem::path unused_path(const std::filesystem::path& dir, const std::string& file_name);

// A 32-byte profile key from a file holding 64 hex digits (surrounding whitespace ignored) or
// exactly 32 raw bytes. The message of an error says how to make one.
Result<SecureBytes> read_key_file(const std::filesystem::path& path);

// "14:05" for today, "Mon 14:05" within a week, "12 Mar" before that (local time).
std::string format_time(uint64_t ms, uint64_t now_ms);
// "14:05" (local time).
std::string format_clock(uint64_t ms);
// "last seen 5 min ago", "last seen today at 14:05", "last seen 12 Mar"; "" for 0.
std::string format_last_seen(uint64_t last_seen_ms, uint64_t now_ms);
// "512 B", "12.3 KB", "4.0 MB".
std::string format_size(uint64_t bytes);
// 60 digits as 12 groups of five separated by spaces (any other input comes back unchanged).
std::string group_digits(const std::string& digits);
// A word for a status: "sending", "sent", "delivered", "read", "failed", "" for incoming.
std::string status_word(MessageStatus status);
// Ticks for a status: "…" pending, "✓" sent, "✓✓" delivered and read, "!" failed.
std::string status_ticks(MessageStatus status);
// "off", "30 s", "5 min", "1 h", "1 day", "2 weeks".
std::string format_duration(uint32_t seconds);
// Parses "30s", "5m", "1h", "1d", "1w", a plain number of seconds, or "off"/"0". -1 when bad.
int64_t parse_duration(const std::string& text);
// "@bob" for "bob"; unchanged when it already starts with '@' or is empty.
std::string at_handle(const std::string& handle);
// Milliseconds since the epoch.
uint64_t now_ms();

}  // namespace sotto::app
