#include "PushClient.h"

#include <boost/asio.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/ssl.hpp>
#include <chrono>

#include "Log.h"
#include "Validate.h"

namespace sotto::relay {
namespace {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
namespace ssl = asio::ssl;
using tcp = asio::ip::tcp;
constexpr auto use_nothrow = asio::as_tuple(asio::use_awaitable);

// The wake-up body never varies: it says nothing about sender, recipient or message.
constexpr std::string_view kBody = R"({"sotto":"wake"})";

class PushClient final : public Pusher {
 public:
  PushClient(asio::io_context& ioc, const Config& config)
      : ioc_(ioc), config_(config), tls_(ssl::context::tls_client) {
    tls_.set_default_verify_paths();
    tls_.set_verify_mode(ssl::verify_peer);
  }

  void wake(const std::string& url, std::function<void(int)> done) override {
    asio::co_spawn(ioc_, attempt_all(url, std::move(done)), asio::detached);
  }

 private:
  asio::awaitable<void> attempt_all(std::string url, std::function<void(int)> done) {
    int status = 0;
    uint64_t backoff = config_.push_backoff_ms;
    for (uint32_t attempt = 0; attempt <= config_.push_retries; ++attempt) {
      if (attempt > 0) {
        asio::steady_timer t(ioc_, std::chrono::milliseconds(backoff));
        co_await t.async_wait(use_nothrow);
        backoff *= 2;
      }
      status = co_await post_once(url);
      // Success, or an answer that a retry will not change.
      if ((status >= 200 && status < 300) ||
          (status >= 400 && status < 500 && status != 408 && status != 429))
        break;
    }
    if (status < 200 || status >= 300)
      log_info("wakeup_failed", {{"status", status}});  // never the URL: it is a secret
    done(status);
  }

  template <class Stream>
  asio::awaitable<int> exchange(Stream& stream, const PushUrl& u) {
    http::request<http::string_body> req{http::verb::post, u.target, 11};
    std::string host = u.host.find(':') != std::string::npos ? "[" + u.host + "]" : u.host;
    if ((u.https && u.port != 443) || (!u.https && u.port != 80))
      host += ":" + std::to_string(u.port);
    req.set(http::field::host, host);
    req.set(http::field::content_type, "application/json");
    req.set("TTL", "86400");
    req.set("Urgency", "high");
    req.set(http::field::user_agent, "sotto-relay");
    req.body() = std::string(kBody);
    req.prepare_payload();
    auto [wec, wn] = co_await http::async_write(stream, req, use_nothrow);
    if (wec) co_return 0;
    beast::flat_buffer buf;
    http::response_parser<http::string_body> res;
    res.body_limit(64 * 1024);
    auto [rec, rn] = co_await http::async_read(stream, buf, res, use_nothrow);
    if (rec) co_return 0;
    co_return static_cast<int>(res.get().result_int());
  }

  asio::awaitable<int> post_once(const std::string& url) {
    Refusal why;
    auto u = parse_push_url(url, config_.push_allow_http, config_.push_allow_private,
                            config_.limits.max_push_url_bytes, why);
    if (!u) co_return 0;
    auto timeout = std::chrono::milliseconds(config_.push_timeout_ms);
    tcp::resolver resolver(ioc_);
    auto [rec, results] =
        co_await resolver.async_resolve(u->host, std::to_string(u->port), use_nothrow);
    if (rec) co_return 0;
    // The policy again after resolution: a public name may point at a private address.
    std::vector<tcp::endpoint> endpoints;
    for (const auto& r : results) {
      if (!config_.push_allow_private && is_private_address(r.endpoint().address().to_string()))
        continue;
      endpoints.push_back(r.endpoint());
    }
    if (endpoints.empty()) co_return 0;
    beast::tcp_stream tcp_stream(ioc_);
    tcp_stream.expires_after(timeout);
    auto [cec, ep] = co_await tcp_stream.async_connect(endpoints, use_nothrow);
    if (cec) co_return 0;
    if (!u->https) {
      int status = co_await exchange(tcp_stream, *u);
      beast::error_code ec;
      tcp_stream.socket().shutdown(tcp::socket::shutdown_both, ec);
      co_return status;
    }
    beast::ssl_stream<beast::tcp_stream> stream(std::move(tcp_stream), tls_);
    if (!SSL_set_tlsext_host_name(stream.native_handle(), u->host.c_str())) co_return 0;
    stream.set_verify_callback(ssl::host_name_verification(u->host));
    auto [hec] = co_await stream.async_handshake(ssl::stream_base::client, use_nothrow);
    if (hec) co_return 0;
    int status = co_await exchange(stream, *u);
    beast::get_lowest_layer(stream).expires_after(std::chrono::seconds(2));
    auto [sec] = co_await stream.async_shutdown(use_nothrow);
    (void)sec;
    co_return status;
  }

  asio::io_context& ioc_;
  const Config& config_;
  ssl::context tls_;
};

}  // namespace

std::unique_ptr<Pusher> make_push_client(boost::asio::io_context& ioc, const Config& config) {
  return std::make_unique<PushClient>(ioc, config);
}

}  // namespace sotto::relay
