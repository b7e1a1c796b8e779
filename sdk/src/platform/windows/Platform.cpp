// The platform layer on Windows (MinGW-w64 and MSVC): wide-character file APIs, so that every
// path the SDK is given (UTF-8 in its API) reaches the disk as the same letters, whatever the
// system's ANSI code page.
//
// What POSIX does and Windows does differently, decided here:
//  - durability: FlushFileBuffers for a file; a rename is MoveFileExW with
//    MOVEFILE_WRITE_THROUGH, which returns once the rename is on disk, so there is no directory
//    to sync afterwards (Windows cannot fsync a directory; sync_directory() does nothing).
//  - privacy: a profile lives under the user's profile folder (%LOCALAPPDATA%), whose ACL
//    already keeps other users out; files and folders inherit it, so create_private_file() and
//    restrict_directory() change no permissions.
//  - paths: the classic limit of MAX_PATH (260 characters with the final NUL) applies, not the
//    \\?\ long-path form: SQLite's Windows VFS and many tools an app may hand a file to do not
//    accept long paths. check_path_room() refuses a profile folder too deep for its files
//    before anything is created there.
//  - names: Windows refuses device names (CON, NUL, COM1, ... with any extension), the
//    characters <>:"/\|?*, control characters and a trailing dot or space (it would drop
//    them, saving under another name); check_file_name() says so.
#include "platform/Platform.h"

#include <io.h>  // _get_osfhandle
#include <windows.h>

#include <algorithm>
#include <array>
#include <cctype>
#include <cerrno>
#include <cstring>
#include <utility>

namespace sotto::platform {
namespace fs = std::filesystem;

namespace {

// The longest path Windows opens without the \\?\ prefix, in UTF-16 units, without the NUL.
constexpr size_t kMaxPath = MAX_PATH - 1;

std::string narrow(const wchar_t* text, int length) {
  if (length == 0) return {};
  int size = ::WideCharToMultiByte(CP_UTF8, 0, text, length, nullptr, 0, nullptr, nullptr);
  std::string out(static_cast<size_t>(std::max(size, 0)), '\0');
  if (size > 0) ::WideCharToMultiByte(CP_UTF8, 0, text, length, out.data(), size, nullptr, nullptr);
  return out;
}

std::wstring widen(std::string_view text) {
  if (text.empty()) return {};
  int length = static_cast<int>(text.size());
  int size = ::MultiByteToWideChar(CP_UTF8, 0, text.data(), length, nullptr, 0);
  std::wstring out(static_cast<size_t>(std::max(size, 0)), L'\0');
  if (size > 0) ::MultiByteToWideChar(CP_UTF8, 0, text.data(), length, out.data(), size);
  return out;
}

std::string utf8(const fs::path& path) {
  const std::wstring& w = path.native();
  return narrow(w.data(), static_cast<int>(w.size()));
}

// The system's sentence for a Win32 error code, in UTF-8, without the trailing line break.
std::string system_message(DWORD err) {
  wchar_t* buffer = nullptr;
  DWORD n = ::FormatMessageW(
      FORMAT_MESSAGE_ALLOCATE_BUFFER | FORMAT_MESSAGE_FROM_SYSTEM | FORMAT_MESSAGE_IGNORE_INSERTS,
      nullptr, err, 0, reinterpret_cast<wchar_t*>(&buffer), 0, nullptr);
  std::string text = n > 0 ? narrow(buffer, static_cast<int>(n)) : std::string();
  if (buffer) ::LocalFree(buffer);
  while (!text.empty() && (text.back() == '\n' || text.back() == '\r' || text.back() == ' '))
    text.pop_back();
  if (text.empty()) text = "Windows error " + std::to_string(err);
  return text;
}

Error win_error(const fs::path& path, std::string_view what, DWORD err = ::GetLastError()) {
  bool full = err == ERROR_DISK_FULL || err == ERROR_HANDLE_DISK_FULL;
  return make_error(full ? ErrorCode::kStorageFull : ErrorCode::kStorageIo,
                    std::string(what) + " " + utf8(path) + ": " + system_message(err));
}

Error errno_error(const fs::path& path, std::string_view what, int err = errno) {
  return make_error(err == ENOSPC ? ErrorCode::kStorageFull : ErrorCode::kStorageIo,
                    std::string(what) + " " + utf8(path) + ": " + std::strerror(err));
}

bool is_device_name(std::string_view name) {
  // The part before the first dot: "con.txt" and "NUL.tar.gz" name the devices too.
  std::string stem(name.substr(0, name.find('.')));
  while (!stem.empty() && stem.back() == ' ') stem.pop_back();
  for (char& c : stem) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  static constexpr std::array<std::string_view, 6> kWhole = {"CON", "PRN",    "AUX",
                                                             "NUL", "CONIN$", "CONOUT$"};
  if (std::find(kWhole.begin(), kWhole.end(), stem) != kWhole.end()) return true;
  return stem.size() == 4 && (stem.starts_with("COM") || stem.starts_with("LPT")) &&
         stem[3] >= '1' && stem[3] <= '9';
}

}  // namespace

std::string to_utf8(const fs::path& path) { return utf8(path); }

fs::path from_utf8(std::string_view text) { return fs::path(widen(text)); }

Status check_file_name(const fs::path& name) {
  std::string text = utf8(name);
  auto refuse = [&](const std::string& why) {
    return make_error(
        ErrorCode::kInvalidArgument,
        "\"" + text + "\" cannot name a file on Windows: " + why + "; save it under another name");
  };
  if (text.empty()) return refuse("the name is empty");
  for (unsigned char c : text) {
    if (c < 0x20) return refuse("it contains a control character");
    if (std::strchr("<>:\"/\\|?*", c))
      return refuse(std::string("it contains '") + static_cast<char>(c) +
                    "' (Windows forbids < > : \" / \\ | ? * in names)");
  }
  if (text.back() == '.' || text.back() == ' ')
    return refuse("it ends in a dot or a space, which Windows would drop");
  if (is_device_name(text))
    return refuse(
        "it is the name of a device (CON, PRN, AUX, NUL, COM1-9, LPT1-9, with any "
        "extension)");
  return {};
}

Status check_path_room(const fs::path& dir, size_t deeper) {
  std::error_code ec;
  fs::path absolute = fs::absolute(dir, ec);
  if (ec) absolute = dir;
  // The folder, a separator and the deepest file the caller will create in it.
  size_t length = absolute.native().size();
  if (length + 1 + deeper <= kMaxPath) return {};
  size_t room = kMaxPath > deeper + 1 ? kMaxPath - deeper - 1 : 0;
  return make_error(ErrorCode::kInvalidArgument,
                    "the folder " + utf8(absolute) + " is " + std::to_string(length) +
                        " characters long; Windows opens paths of at most " +
                        std::to_string(kMaxPath) + " characters, and the files inside need " +
                        std::to_string(deeper + 1) + " of them: choose a folder of at most " +
                        std::to_string(room) + " characters");
}

File open_file(const fs::path& path, const char* mode) {
  // "N": the handle is not inherited by processes this one starts.
  std::wstring wmode = widen(mode) + L"N";
  return File(::_wfopen(path.c_str(), wmode.c_str()));
}

Result<File> create_private_file(const fs::path& path) {
  // Private by the ACL it inherits (see the top of this file).
  std::FILE* f = ::_wfopen(path.c_str(), L"wbN");
  if (!f) return errno_error(path, "cannot create");
  return File(f);
}

Status sync_file(std::FILE* file, const fs::path& path) {
  if (std::fflush(file) != 0) return errno_error(path, "cannot write");
  auto handle = reinterpret_cast<HANDLE>(::_get_osfhandle(::_fileno(file)));
  if (handle == INVALID_HANDLE_VALUE) return errno_error(path, "cannot write");
  if (!::FlushFileBuffers(handle)) return win_error(path, "cannot write");
  return {};
}

Status replace_file(const fs::path& from, const fs::path& to) {
  if (!::MoveFileExW(from.c_str(), to.c_str(), MOVEFILE_REPLACE_EXISTING | MOVEFILE_WRITE_THROUGH))
    return win_error(to, "cannot replace");
  return {};
}

// MOVEFILE_WRITE_THROUGH already made the rename durable; NTFS journals the directory's
// entries itself.
Status sync_directory(const fs::path&) { return {}; }

// The folder keeps the ACL it inherits from the user's profile folder.
void restrict_directory(const fs::path&) {}

// LockFileEx on a handle of the lock file's own: a lock belongs to the handle, so a second
// FileLock in this process is refused like another process's. Read, write and delete are
// shared: the lock is the byte range, not the file.
Result<FileLock> FileLock::acquire(const fs::path& path) {
  HANDLE h = ::CreateFileW(path.c_str(), GENERIC_READ | GENERIC_WRITE,
                           FILE_SHARE_READ | FILE_SHARE_WRITE | FILE_SHARE_DELETE, nullptr,
                           OPEN_ALWAYS, FILE_ATTRIBUTE_NORMAL, nullptr);
  if (h == INVALID_HANDLE_VALUE) return win_error(path, "cannot create");
  OVERLAPPED at{};
  if (!::LockFileEx(h, LOCKFILE_EXCLUSIVE_LOCK | LOCKFILE_FAIL_IMMEDIATELY, 0, 1, 0, &at)) {
    DWORD err = ::GetLastError();
    ::CloseHandle(h);
    if (err == ERROR_LOCK_VIOLATION || err == ERROR_IO_PENDING)
      return make_error(ErrorCode::kBusy, utf8(path) + " is locked");
    return win_error(path, "cannot lock", err);
  }
  return FileLock(reinterpret_cast<intptr_t>(h));
}

FileLock::FileLock(FileLock&& other) noexcept : handle_(std::exchange(other.handle_, -1)) {}

FileLock::~FileLock() {
  // Closing the handle releases its lock.
  if (handle_ != -1) ::CloseHandle(reinterpret_cast<HANDLE>(handle_));
}

long process_id() { return static_cast<long>(::GetCurrentProcessId()); }

}  // namespace sotto::platform

namespace sotto {

// SetThreadDescription (Windows 10 1607) is looked up at run time: older systems, Wine and
// MinGW's import libraries may lack it, and a name is only a debugging aid.
void name_this_thread(const char* name) {
  using SetDescription = HRESULT(WINAPI*)(HANDLE, PCWSTR);
  static const auto set = [] {
    HMODULE kernel = ::GetModuleHandleW(L"kernel32.dll");
    FARPROC f = kernel ? ::GetProcAddress(kernel, "SetThreadDescription") : nullptr;
    return reinterpret_cast<SetDescription>(reinterpret_cast<void (*)()>(f));
  }();
  if (!set) return;
  std::wstring wide = platform::from_utf8(name).native();
  set(::GetCurrentThread(), wide.c_str());
}

}  // namespace sotto
