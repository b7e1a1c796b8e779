#include "Listener.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

namespace sotto::relay {

bool is_ip_literal(const std::string& host) {
  in_addr v4{};
  in6_addr v6{};
  return inet_pton(AF_INET, host.c_str(), &v4) == 1 || inet_pton(AF_INET6, host.c_str(), &v6) == 1;
}

Result<int> open_listener(const std::string& host, uint16_t port, bool reuse_port) {
  const std::string where = "--listen " + (host.find(':') != std::string::npos ? "[" + host + "]"
                                                                                 : host) +
                            ":" + std::to_string(port);
  sockaddr_storage addr{};
  socklen_t len = 0;
  auto* v4 = reinterpret_cast<sockaddr_in*>(&addr);
  auto* v6 = reinterpret_cast<sockaddr_in6*>(&addr);
  if (inet_pton(AF_INET, host.c_str(), &v4->sin_addr) == 1) {
    v4->sin_family = AF_INET;
    v4->sin_port = htons(port);
    len = sizeof *v4;
  } else if (inet_pton(AF_INET6, host.c_str(), &v6->sin6_addr) == 1) {
    v6->sin6_family = AF_INET6;
    v6->sin6_port = htons(port);
    len = sizeof *v6;
  } else {
    return make_error(ErrorCode::kInvalidArgument,
                      where + ": the address must be an IP address (127.0.0.1, 0.0.0.0, [::]), "
                              "not a name");
  }
  int fd = ::socket(addr.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0)
    return make_error(ErrorCode::kUnavailable, where + ": cannot make a socket: " +
                                                   std::strerror(errno));
  int on = 1;
  ::setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &on, sizeof on);
  if (reuse_port) ::setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &on, sizeof on);
  if (::bind(fd, reinterpret_cast<sockaddr*>(&addr), len) != 0 ||
      ::listen(fd, SOMAXCONN) != 0) {
    int e = errno;
    ::close(fd);
    std::string why;
    switch (e) {
      case EADDRINUSE:
        why = "the port is in use: another relay or program listens there (stop it, or choose "
              "another port; nodes of one cluster on one port need --reuse-port true)";
        break;
      case EACCES:
        why = "permission denied: ports below 1024 need root or CAP_NET_BIND_SERVICE";
        break;
      case EADDRNOTAVAIL:
        why = "this machine has no such address (0.0.0.0 listens on all of them)";
        break;
      default:
        why = std::strerror(e);
    }
    return make_error(ErrorCode::kUnavailable, where + ": " + why);
  }
  return fd;
}

}  // namespace sotto::relay
