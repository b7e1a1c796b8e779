#include "FaultyProxy.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

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

void set_nonblocking(int fd) { ::fcntl(fd, F_SETFL, ::fcntl(fd, F_GETFL) | O_NONBLOCK); }

// Closes with a reset rather than a FIN, as a dropped route or a middlebox would.
void reset_close(int fd) {
  linger l{1, 0};
  ::setsockopt(fd, SOL_SOCKET, SO_LINGER, &l, sizeof l);
  ::close(fd);
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
  int client = -1;
  int upstream = -1;
  Pipe up;    // client -> upstream
  Pipe down;  // upstream -> client
  size_t upstream_index = 0;
  bool dead = false;
};

// Reads what `from` has into an empty pipe; false when the pair must go.
bool pull(int from, Pipe& p) {
  p.buffer.resize(64 * 1024);
  p.done = 0;
  ssize_t n = ::read(from, p.buffer.data(), p.buffer.size());
  if (n > 0) {
    p.buffer.resize(static_cast<size_t>(n));
    return true;
  }
  p.buffer.clear();
  if (n == 0) {
    p.eof = true;
    return true;
  }
  return errno == EAGAIN || errno == EINTR;
}

// Writes what the pipe holds to `to`; false when the pair must go.
bool push(int to, Pipe& p) {
  while (p.pending()) {
    ssize_t n = ::send(to, p.buffer.data() + p.done, p.buffer.size() - p.done, MSG_NOSIGNAL);
    if (n > 0) {
      p.done += static_cast<size_t>(n);
      continue;
    }
    return n < 0 && (errno == EAGAIN || errno == EINTR);
  }
  if (p.eof) ::shutdown(to, SHUT_WR);
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
  routed_ = std::make_unique<std::atomic<uint64_t>[]>(upstreams_.size());
  listener_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  int one = 1;
  ::setsockopt(listener_, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (::bind(listener_, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0 ||
      ::listen(listener_, 128) != 0)
    throw std::runtime_error("the proxy cannot listen on 127.0.0.1");
  socklen_t len = sizeof a;
  ::getsockname(listener_, reinterpret_cast<sockaddr*>(&a), &len);
  port_ = ntohs(a.sin_port);
  set_nonblocking(listener_);
  if (::pipe2(wake_, O_CLOEXEC | O_NONBLOCK) != 0) throw std::runtime_error("pipe failed");
  thread_ = std::thread([this] { run(); });
}

FaultyProxy::~FaultyProxy() {
  stop_ = true;
  char c = 0;
  (void)!::write(wake_[1], &c, 1);
  thread_.join();
  ::close(listener_);
  ::close(wake_[0]);
  ::close(wake_[1]);
}

void FaultyProxy::cut_all() {
  cut_requested_ = true;
  char c = 0;
  (void)!::write(wake_[1], &c, 1);
}

void FaultyProxy::stall(std::chrono::milliseconds duration) {
  stalled_until_ns_ = now_ns() + std::chrono::nanoseconds(duration).count();
  char c = 0;
  (void)!::write(wake_[1], &c, 1);
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
    std::vector<pollfd> fds{{wake_[0], POLLIN, 0}, {listener_, POLLIN, 0}};
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
    if (::poll(fds.data(), fds.size(), timeout) < 0 && errno != EINTR) break;
    if (fds[0].revents & POLLIN) {
      char buf[64];
      while (::read(wake_[0], buf, sizeof buf) > 0) {
      }
    }
    if (fds[1].revents & POLLIN) {
      for (;;) {
        int c = ::accept4(listener_, nullptr, nullptr, SOCK_CLOEXEC | SOCK_NONBLOCK);
        if (c < 0) break;
        // Loopback connects complete at once or are refused (the relay is down): then the
        // next upstream is tried, and when every one refuses the client sees its connection
        // reset, as it would without the proxy.
        int u = -1;
        size_t upstream = 0;
        for (size_t tried = 0; tried < upstreams_.size() && u < 0; ++tried) {
          upstream = next_upstream_;
          next_upstream_ = (next_upstream_ + 1) % upstreams_.size();
          u = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
          sockaddr_in a{};
          a.sin_family = AF_INET;
          a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
          a.sin_port = htons(upstreams_[upstream]);
          if (::connect(u, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) {
            ::close(u);
            u = -1;
          }
        }
        if (u < 0) {
          reset_close(c);
          continue;
        }
        routed_[upstream].fetch_add(1);
        set_nonblocking(u);
        int one = 1;
        ::setsockopt(u, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        ::setsockopt(c, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
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
      const pollfd& c = fds[i + 2];
      const pollfd& u = fds[i + 3];
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
          ::close(p.client);
          ::close(p.upstream);
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
    ::close(p.client);
    ::close(p.upstream);
  }
}

}  // namespace sotto::test
