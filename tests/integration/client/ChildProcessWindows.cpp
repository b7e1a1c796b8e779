// ChildProcess.h on Windows: CreateProcess with a pipe for stdout, TerminateProcess.
#include <windows.h>

#include <algorithm>
#include <stdexcept>
#include <thread>

#include "ChildProcess.h"

namespace sotto::test {
namespace {

// A program named by a Linux path (the build's paths, under Wine) as Windows names it: Wine
// shows the Linux root as drive Z:.
std::string windows_path(const std::string& path) {
  return !path.empty() && path[0] == '/' ? "Z:" + path : path;
}

// One argument of a Windows command line (the rules CommandLineToArgvW reads back).
std::string quoted(const std::string& arg) {
  if (!arg.empty() && arg.find_first_of(" \t\"") == std::string::npos) return arg;
  std::string out = "\"";
  size_t slashes = 0;
  for (char c : arg) {
    if (c == '\\') {
      ++slashes;
      continue;
    }
    out.append(c == '"' ? slashes * 2 + 1 : slashes, '\\');
    slashes = 0;
    out += c;
  }
  out.append(slashes * 2, '\\');
  return out + "\"";
}

std::wstring wide(const std::string& s) {
  int n = MultiByteToWideChar(CP_UTF8, 0, s.data(), static_cast<int>(s.size()), nullptr, 0);
  std::wstring w(static_cast<size_t>(n), L'\0');
  MultiByteToWideChar(CP_UTF8, 0, s.data(), static_cast<int>(s.size()), w.data(), n);
  return w;
}

}  // namespace

ChildProcess::ChildProcess(const std::vector<std::string>& program) {
  if (program.empty()) throw std::runtime_error("no program to start");
  std::string line;
  for (size_t i = 0; i < program.size(); ++i)
    line += (i ? " " : "") + quoted(i == 0 ? windows_path(program[i]) : program[i]);
  SECURITY_ATTRIBUTES inherit{sizeof(SECURITY_ATTRIBUTES), nullptr, TRUE};
  HANDLE read_end = nullptr, write_end = nullptr;
  if (!CreatePipe(&read_end, &write_end, &inherit, 0)) throw std::runtime_error("pipe failed");
  SetHandleInformation(read_end, HANDLE_FLAG_INHERIT, 0);
  STARTUPINFOW si{};
  si.cb = sizeof si;
  si.dwFlags = STARTF_USESTDHANDLES;
  si.hStdOutput = write_end;
  si.hStdError = GetStdHandle(STD_ERROR_HANDLE);
  si.hStdInput = GetStdHandle(STD_INPUT_HANDLE);
  PROCESS_INFORMATION pi{};
  std::wstring command = wide(line);
  BOOL made = CreateProcessW(nullptr, command.data(), nullptr, nullptr, TRUE, 0, nullptr,
                             nullptr, &si, &pi);
  CloseHandle(write_end);
  if (!made) {
    CloseHandle(read_end);
    throw std::runtime_error("cannot start " + line + " (error " +
                             std::to_string(GetLastError()) + ")");
  }
  CloseHandle(pi.hThread);
  process_ = pi.hProcess;
  pid_ = static_cast<pid_t>(pi.dwProcessId);
  out_ = read_end;
}

ChildProcess::~ChildProcess() {
  if (status_ < 0 && process_) kill9();
  if (out_) CloseHandle(out_);
  if (process_) CloseHandle(process_);
}

std::optional<std::string> ChildProcess::read_line(std::chrono::milliseconds timeout) {
  auto deadline = std::chrono::steady_clock::now() + timeout;
  bool looked = false;  // the pipe is looked at at least once, also with a timeout of 0
  for (;;) {
    size_t nl = buffer_.find('\n');
    if (nl != std::string::npos) {
      std::string line = buffer_.substr(0, nl);
      buffer_.erase(0, nl + 1);
      if (!line.empty() && line.back() == '\r') line.pop_back();
      return line;
    }
    if (std::chrono::steady_clock::now() >= deadline && looked) return std::nullopt;
    looked = true;
    DWORD available = 0;
    if (!PeekNamedPipe(out_, nullptr, 0, nullptr, &available, nullptr))
      return std::nullopt;  // the child closed its end: EOF
    if (available == 0) {
      std::this_thread::sleep_for(std::chrono::milliseconds(2));
      continue;
    }
    char buf[4096];
    DWORD n = 0;
    if (!ReadFile(out_, buf, std::min<DWORD>(available, sizeof buf), &n, nullptr) || n == 0)
      return std::nullopt;
    buffer_.append(buf, n);
  }
}

void ChildProcess::kill9() {
  if (!process_ || status_ >= 0) return;
  TerminateProcess(process_, 137);
  wait();
}

int ChildProcess::wait() {
  if (status_ >= 0) return status_;
  WaitForSingleObject(process_, INFINITE);
  DWORD code = 0;
  GetExitCodeProcess(process_, &code);
  status_ = static_cast<int>(code);
  return status_;
}

std::optional<int> ChildProcess::exit_status() {
  if (status_ >= 0) return status_;
  if (WaitForSingleObject(process_, 0) != WAIT_OBJECT_0) return std::nullopt;
  return wait();
}

}  // namespace sotto::test
