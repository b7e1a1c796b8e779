#include "WebhookListener.h"

#include <boost/asio.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>

namespace sotto::test {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using tcp = asio::ip::tcp;

struct WebhookListener::Io {
  asio::io_context ioc;
  tcp::acceptor acceptor{ioc, tcp::endpoint(asio::ip::address_v4::loopback(), 0)};
};

WebhookListener::WebhookListener(int status) : status_(status), io_(std::make_unique<Io>()) {
  io_->acceptor.non_blocking(true);
  port_ = io_->acceptor.local_endpoint().port();
  thread_ = std::thread([this] { serve(); });
}

WebhookListener::~WebhookListener() {
  stop_ = true;
  thread_.join();
}

void WebhookListener::serve() {
  while (!stop_) {
    beast::error_code ec;
    tcp::socket sock(io_->ioc);
    io_->acceptor.accept(sock, ec);
    if (ec) {
      // Nothing to accept (non-blocking): look again shortly, and for stop_.
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
      continue;
    }
    sock.non_blocking(false, ec);
    beast::flat_buffer buf;
    http::request<http::string_body> req;
    http::read(sock, buf, req, ec);
    if (!ec) {
      Request r;
      r.method = std::string(req.method_string());
      r.target = std::string(req.target());
      r.body = req.body();
      for (const auto& f : req) {
        std::string name(f.name_string());
        for (auto& c : name) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
        r.headers[name] = std::string(f.value());
      }
      {
        std::lock_guard lock(mu_);
        requests_.push_back(std::move(r));
      }
      http::response<http::string_body> res{static_cast<http::status>(status_), 11};
      res.body() = "";
      res.keep_alive(false);
      res.prepare_payload();
      http::write(sock, res, ec);
    }
    sock.shutdown(tcp::socket::shutdown_both, ec);
  }
}

std::vector<WebhookListener::Request> WebhookListener::requests() {
  std::lock_guard lock(mu_);
  return requests_;
}

size_t WebhookListener::wait_for(size_t n, std::chrono::milliseconds timeout) {
  auto deadline = std::chrono::steady_clock::now() + timeout;
  for (;;) {
    {
      std::lock_guard lock(mu_);
      if (requests_.size() >= n || std::chrono::steady_clock::now() >= deadline)
        return requests_.size();
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
}

}  // namespace sotto::test
