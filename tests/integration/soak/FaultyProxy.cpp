#include "FaultyProxy.h"

#ifdef _WIN32
#include <ws2tcpip.h>
#else
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>
#endif

#include <cerrno>
#include <stdexcept>
#include <utility>
#include <vector>

namespace sotto::test {
namespace {

using Clock = std::chrono::steady_clock;

int64_t now_ns() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(Clock::now().time_since_epoch())
      .count();
}

// The few calls that differ between POSIX sockets and Winsock.
#ifdef _WIN32
constexpr Socket kNoSocket = INVALID_SOCKET;
constexpr int kSendFlags = 0;
constexpr int kShutWrite = SD_SEND;
void close_socket(Socket s) { ::closesocket(s); }
void set_nonblocking(Socket s) {
  u_long on = 1;
  ::ioctlsocket(s, FIONBIO, &on);
}
bool would_block() { return WSAGetLastError() == WSAEWOULDBLOCK; }
int poll_sockets(std::vector<WSAPOLLFD>& fds, int timeout_ms) {
  return ::WSAPoll(fds.data(), static_cast<ULONG>(fds.size()), timeout_ms);
}
using PollFd = WSAPOLLFD;
void start_sockets() {
  static const bool started = [] {
    WSADATA data;
    return WSAStartup(MAKEWORD(2, 2), &data) == 0;
  }();
  if (!started) throw std::runtime_error("Winsock did not start");
}
#else
constexpr Socket kNoSocket = -1;
constexpr int kSendFlags = MSG_NOSIGNAL;
constexpr int kShutWrite = SHUT_WR;
void close_socket(Socket s) { ::close(s); }
void set_nonblocking(Socket s) { ::fcntl(s, F_SETFL, ::fcntl(s, F_GETFL) | O_NONBLOCK); }
bool would_block() { return errno == EAGAIN || errno == EINTR; }
int poll_sockets(std::vector<pollfd>& fds, int timeout_ms) {
  int n = ::poll(fds.data(), fds.size(), timeout_ms);
  return n < 0 && errno == EINTR ? 0 : n;
}
using PollFd = pollfd;
void start_sockets() {}
#endif

// A socket that processes started later (the relay, the devices) do not inherit.
Socket new_socket(int type) {
  Socket s = ::socket(AF_INET, type, 0);
#ifndef _WIN32
  if (s >= 0) ::fcntl(s, F_SETFD, FD_CLOEXEC);
#endif
  return s;
}

sockaddr_in loopback(uint16_t port) {
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  a.sin_port = htons(port);
  return a;
}

// Closes with a reset rather than a FIN, as a dropped route or a middlebox would.
void reset_close(Socket s) {
  linger l{};
  l.l_onoff = 1;
  l.l_linger = 0;
  ::setsockopt(s, SOL_SOCKET, SO_LINGER, reinterpret_cast<const char*>(&l), sizeof l);
  close_socket(s);
}

void wake(Socket s) {
  char c = 0;
  (void)!::send(s, &c, 1, 0);
}

// One direction of a pair: bytes read from `from` and not yet written to `to`.
struct Pipe {
  std::vector<char> buffer;
  size_t done = 0;
  bool eof = false;  // `from` closed its side; shut `to`'s write side once the buffer is out
  bool pending() const { return done < buffer.size(); }
};

struct Pair {
  uint64_t id = 0;
  Socket client = kNoSocket;
  Socket upstream = kNoSocket;
  Pipe up;    // client -> upstream
  Pipe down;  // upstream -> client
  size_t upstream_index = 0;
  bool dead = false;
};

// Reads what `from` has into an empty pipe; false when the pair must go.
bool pull(Socket from, Pipe& p) {
  p.buffer.resize(64 * 1024);
  p.done = 0;
  auto n = ::recv(from, p.buffer.data(), static_cast<int>(p.buffer.size()), 0);
  if (n > 0) {
    p.buffer.resize(static_cast<size_t>(n));
    return true;
  }
  p.buffer.clear();
  if (n == 0) {
    p.eof = true;
    return true;
  }
  return would_block();
}

// Writes what the pipe holds to `to`; false when the pair must go.
bool push(Socket to, Pipe& p) {
  while (p.pending()) {
    auto n = ::send(to, p.buffer.data() + p.done, static_cast<int>(p.buffer.size() - p.done),
                    kSendFlags);
    if (n > 0) {
      p.done += static_cast<size_t>(n);
      continue;
    }
    return n < 0 && would_block();
  }
  if (p.eof) ::shutdown(to, kShutWrite);
  return true;
}

}  // namespace

FaultyProxy::FaultyProxy(uint16_t upstream_port, Tap tap)
    : upstreams_{upstream_port}, tap_(std::move(tap)) {
  start();
}

FaultyProxy::FaultyProxy(std::vector<uint16_t> upstreams, size_t first)
    : upstreams_(std::move(upstreams)) {
  if (upstreams_.empty()) throw std::logic_error("a proxy needs at least one upstream");
  next_upstream_ = first % upstreams_.size();
  start();
}

void FaultyProxy::start() {
  start_sockets();
  routed_ = std::make_unique<std::atomic<uint64_t>[]>(upstreams_.size());
  listener_ = new_socket(SOCK_STREAM);
  int one = 1;
  ::setsockopt(listener_, SOL_SOCKET, SO_REUSEADDR, reinterpret_cast<const char*>(&one),
               sizeof one);
  sockaddr_in a = loopback(0);
  if (::bind(listener_, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0 ||
      ::listen(listener_, 128) != 0)
    throw std::runtime_error("the proxy cannot listen on 127.0.0.1");
  socklen_t len = sizeof a;
  ::getsockname(listener_, reinterpret_cast<sockaddr*>(&a), &len);
  port_ = ntohs(a.sin_port);
  set_nonblocking(listener_);
  wake_ = new_socket(SOCK_DGRAM);
  sockaddr_in w = loopback(0);
  socklen_t wlen = sizeof w;
  if (wake_ == kNoSocket || ::bind(wake_, reinterpret_cast<sockaddr*>(&w), sizeof w) != 0 ||
      ::getsockname(wake_, reinterpret_cast<sockaddr*>(&w), &wlen) != 0 ||
      ::connect(wake_, reinterpret_cast<sockaddr*>(&w), sizeof w) != 0)
    throw std::runtime_error("the proxy cannot make its wake-up socket");
  set_nonblocking(wake_);
  thread_ = std::thread([this] { run(); });
}

FaultyProxy::~FaultyProxy() {
  stop_ = true;
  wake(wake_);
  thread_.join();
  close_socket(listener_);
  close_socket(wake_);
}

void FaultyProxy::cut_all() {
  cut_requested_ = true;
  wake(wake_);
}

void FaultyProxy::stall(std::chrono::milliseconds duration) {
  stalled_until_ns_ = now_ns() + std::chrono::nanoseconds(duration).count();
  wake(wake_);
}

std::optional<size_t> FaultyProxy::current_upstream() const {
  int c = current_.load();
  if (c < 0) return std::nullopt;
  return static_cast<size_t>(c);
}

void FaultyProxy::run() {
  std::vector<Pair> pairs;
  uint64_t accepted = 0;
  auto pull_tapped = [&](const Pair& p, bool to_upstream, Pipe& pipe) {
    bool ok = pull(to_upstream ? p.client : p.upstream, pipe);
    if (ok && tap_ && !pipe.buffer.empty())
      tap_(p.id, to_upstream, pipe.buffer.data(), pipe.buffer.size());
    return ok;
  };
  while (!stop_) {
    if (cut_requested_.exchange(false)) {
      for (auto& p : pairs) {
        reset_close(p.client);
        reset_close(p.upstream);
      }
      cuts_ += pairs.size();
      pairs.clear();
      current_ = -1;
    }
    bool stalled = now_ns() < stalled_until_ns_.load();
    std::vector<PollFd> fds{{wake_, POLLIN, 0}, {listener_, POLLIN, 0}};
    for (auto& p : pairs) {
      short c = 0, u = 0;
      if (!stalled) {
        // Read from a side only when what it sent before is out; write while something waits.
        if (!p.up.pending() && !p.up.eof) c |= POLLIN;
        if (!p.down.pending() && !p.down.eof) u |= POLLIN;
        if (p.up.pending()) u |= POLLOUT;
        if (p.down.pending()) c |= POLLOUT;
      }
      fds.push_back({p.client, c, 0});
      fds.push_back({p.upstream, u, 0});
    }
    int timeout = stalled ? 50 : 1000;
    if (poll_sockets(fds, timeout) < 0) break;
    if (fds[0].revents & POLLIN) {
      char buf[64];
      while (::recv(wake_, buf, sizeof buf, 0) > 0) {
      }
    }
    if (fds[1].revents & POLLIN) {
      for (;;) {
        Socket c = ::accept(listener_, nullptr, nullptr);
        if (c == kNoSocket) break;
#ifndef _WIN32
        ::fcntl(c, F_SETFD, FD_CLOEXEC);
#endif
        set_nonblocking(c);
        // Loopback connects complete at once or are refused (the relay is down): then the
        // next upstream is tried, and when every one refuses the client sees its connection
        // reset, as it would without the proxy.
        Socket u = kNoSocket;
        size_t upstream = 0;
        for (size_t tried = 0; tried < upstreams_.size() && u == kNoSocket; ++tried) {
          upstream = next_upstream_;
          next_upstream_ = (next_upstream_ + 1) % upstreams_.size();
          u = new_socket(SOCK_STREAM);
          sockaddr_in a = loopback(upstreams_[upstream]);
          if (::connect(u, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) {
            close_socket(u);
            u = kNoSocket;
          }
        }
        if (u == kNoSocket) {
          reset_close(c);
          continue;
        }
        routed_[upstream].fetch_add(1);
        set_nonblocking(u);
        int one = 1;
        for (Socket s : {u, c})
          ::setsockopt(s, IPPROTO_TCP, TCP_NODELAY, reinterpret_cast<const char*>(&one),
                       sizeof one);
        Pair p;
        p.id = ++accepted;
        p.client = c;
        p.upstream = u;
        p.upstream_index = upstream;
        pairs.push_back(std::move(p));
      }
    }
    for (size_t i = 0; i + 2 < fds.size() && i / 2 < pairs.size(); i += 2) {
      Pair& p = pairs[i / 2];
      const PollFd& c = fds[i + 2];
      const PollFd& u = fds[i + 3];
      bool ok = true;
      if (c.revents & (POLLERR | POLLNVAL)) ok = false;
      if (u.revents & (POLLERR | POLLNVAL)) ok = false;
      // Hung up for good on a side that already finished sending: nothing more can pass.
      if ((c.revents & POLLHUP) && p.up.eof) ok = false;
      if ((u.revents & POLLHUP) && p.down.eof) ok = false;
      if (ok && (c.revents & (POLLIN | POLLHUP)) && !p.up.pending() && !p.up.eof)
        ok = pull_tapped(p, true, p.up) && push(p.upstream, p.up);
      if (ok && (u.revents & (POLLIN | POLLHUP)) && !p.down.pending() && !p.down.eof)
        ok = pull_tapped(p, false, p.down) && push(p.client, p.down);
      if (ok && (u.revents & POLLOUT)) ok = push(p.upstream, p.up);
      if (ok && (c.revents & POLLOUT)) ok = push(p.client, p.down);
      // Both directions finished: the connection closed normally.
      if (!ok || (p.up.eof && p.down.eof && !p.up.pending() && !p.down.pending())) {
        if (ok) {
          close_socket(p.client);
          close_socket(p.upstream);
        } else {
          reset_close(p.client);
          reset_close(p.upstream);
        }
        p.dead = true;
      }
    }
    std::erase_if(pairs, [](const Pair& p) { return p.dead; });
    // Pairs are in the order accepted: the last is the newest.
    current_ = pairs.empty() ? -1 : static_cast<int>(pairs.back().upstream_index);
  }
  for (auto& p : pairs) {
    close_socket(p.client);
    close_socket(p.upstream);
  }
}

}  // namespace sotto::test
