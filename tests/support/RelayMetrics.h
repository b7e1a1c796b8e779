// A relay's own counters (GET /metrics, loopback, plain HTTP), for tests that must know the
// relay has done something before they check that something else did not happen: the relay
// has seen connections close, has expired an envelope, has decided on every wake-up.
// Header-only, so that any test target can use it without linking another library.
#pragma once

#ifdef _WIN32
#include <winsock2.h>  // a test program under Wine: Winsock, started by the fixtures
#else
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>
#endif

#include <cctype>
#include <chrono>
#include <cstdint>
#include <cstdlib>
#include <functional>
#include <map>
#include <optional>
#include <sstream>
#include <string>
#include <thread>

namespace sotto::test {

// Every series of the relay's /metrics on 127.0.0.1:`port`, named as the exposition shows it
// ("sotto_queue_depth", "sotto_connections{kind=\"ws_authenticated\"}") -> its value; nullopt
// when the relay does not answer.
using RelayMetrics = std::map<std::string, double>;
inline std::optional<RelayMetrics> relay_metrics(uint16_t port) {
#ifdef _WIN32
  SOCKET fd = ::socket(AF_INET, SOCK_STREAM, 0);
  if (fd == INVALID_SOCKET) return std::nullopt;
  DWORD limit = 10'000;  // milliseconds
  constexpr int kSendFlags = 0;
#else
  int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return std::nullopt;
  timeval limit{10, 0};
  constexpr int kSendFlags = MSG_NOSIGNAL;
#endif
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(port);
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, reinterpret_cast<const char*>(&limit), sizeof limit);
  ::setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, reinterpret_cast<const char*>(&limit), sizeof limit);
  std::string response;
  size_t body_at = std::string::npos, length = std::string::npos;
  if (::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0) {
    // HTTP/1.0: the body comes whole, never chunked.
    const std::string request = "GET /metrics HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n";
    if (::send(fd, request.data(), static_cast<int>(request.size()), kSendFlags) ==
        static_cast<int>(request.size())) {
      // Reads until the body is complete (Content-Length) or the relay closes.
      auto complete = [&] {
        return body_at != std::string::npos && length != std::string::npos &&
               response.size() >= body_at + length;
      };
      char buf[8192];
      for (int n; !complete() && (n = static_cast<int>(::recv(fd, buf, sizeof buf, 0))) > 0;) {
        response.append(buf, static_cast<size_t>(n));
        if (body_at != std::string::npos) continue;
        if ((body_at = response.find("\r\n\r\n")) == std::string::npos) continue;
        body_at += 4;
        std::string head = response.substr(0, body_at);
        for (auto& c : head) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
        if (auto at = head.find("\r\ncontent-length:"); at != std::string::npos)
          length = std::stoul(head.substr(at + 17));
      }
    }
  }
#ifdef _WIN32
  ::closesocket(fd);
#else
  ::close(fd);
#endif
  if (body_at == std::string::npos || response.rfind("HTTP/1.", 0) != 0 ||
      response.find(" 200 ") > response.find("\r\n"))
    return std::nullopt;
  RelayMetrics out;
  std::istringstream lines(response.substr(body_at));
  for (std::string line; std::getline(lines, line);) {
    auto space = line.rfind(' ');
    if (line.empty() || line[0] == '#' || space == std::string::npos) continue;
    out[line.substr(0, space)] = std::strtod(line.c_str() + space + 1, nullptr);
  }
  return out;
}

// One series' value: 0 when the relay has not shown it (yet), as for a counter never counted.
inline double metric(const RelayMetrics& m, const std::string& series) {
  auto it = m.find(series);
  return it == m.end() ? 0 : it->second;
}

// Polls the relay's metrics until `holds` is true of them (true) or `timeout` passes (false).
inline bool wait_for_metrics(uint16_t port, const std::function<bool(const RelayMetrics&)>& holds,
                             std::chrono::milliseconds timeout = std::chrono::seconds(20)) {
  auto deadline = std::chrono::steady_clock::now() + timeout;
  for (;;) {
    auto m = relay_metrics(port);
    if (m && holds(*m)) return true;
    if (std::chrono::steady_clock::now() >= deadline) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
}

// The same for one series: e.g. until the relay counts no unauthenticated connection.
inline bool wait_for_metric(uint16_t port, const std::string& series,
                            const std::function<bool(double)>& holds,
                            std::chrono::milliseconds timeout = std::chrono::seconds(20)) {
  return wait_for_metrics(
      port, [&](const RelayMetrics& m) { return holds(metric(m, series)); }, timeout);
}

}  // namespace sotto::test
