// A local HTTP listener on 127.0.0.1:0 that records every request: the wake-up webhook a
// relay POSTs to (relay and client tests alike).
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

namespace sotto::test {

class WebhookListener {
 public:
  explicit WebhookListener(int status = 200);
  ~WebhookListener();
  uint16_t port() const { return port_; }
  std::string url() const { return "http://127.0.0.1:" + std::to_string(port_) + "/wake/abc"; }
  struct Request {
    std::string method, target, body;
    std::map<std::string, std::string> headers;
  };
  std::vector<Request> requests();
  // Waits until at least `n` requests arrived or `timeout` passed; returns the count.
  size_t wait_for(size_t n, std::chrono::milliseconds timeout);

 private:
  void serve();
  struct Io;  // Asio's context and acceptor, kept out of this header
  int status_;
  std::unique_ptr<Io> io_;
  uint16_t port_ = 0;
  std::atomic<bool> stop_{false};
  std::mutex mu_;
  std::vector<Request> requests_;
  std::thread thread_;
};

}  // namespace sotto::test
