#include "WireClient.h"

#include <sodium.h>

#include <boost/asio.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/websocket.hpp>
#include <functional>

namespace sotto::test {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
namespace websocket = beast::websocket;
using tcp = asio::ip::tcp;

// One io_context driven by the calling thread: a read is always pending, and each wait runs
// the context until what the caller waits for has arrived or the time is up.
class WireClient::Impl {
 public:
  Impl() : ws(ioc) {}
  asio::io_context ioc;
  websocket::stream<tcp::socket> ws;
  beast::flat_buffer in;
  std::deque<std::string> frames;  // received binary messages, not yet parsed
  bool reading = false;
  bool open = true;
  std::optional<uint16_t> close_code;

  void start_read() {
    if (reading || !open) return;
    reading = true;
    ws.async_read(in, [this](beast::error_code ec, size_t) {
      reading = false;
      if (ec) {
        open = false;
        close_code = ws.reason().code ? static_cast<uint16_t>(ws.reason().code) : 1006;
        return;
      }
      frames.emplace_back(beast::buffers_to_string(in.data()));
      in.consume(in.size());
      start_read();
    });
  }
};

WireClient::WireClient(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

WireClient::~WireClient() {
  if (impl_ && impl_->open) {
    beast::error_code ec;
    beast::get_lowest_layer(impl_->ws).close(ec);
  }
}

Result<std::unique_ptr<WireClient>> WireClient::connect(const std::string& host, uint16_t port,
                                                        const Credentials* credentials,
                                                        int* http_status) {
  auto impl = std::make_unique<Impl>();
  beast::error_code ec;
  tcp::endpoint ep(asio::ip::make_address(host, ec), port);
  if (ec) return make_error(ErrorCode::kInvalidArgument, "bad host " + host);
  beast::get_lowest_layer(impl->ws).connect(ep, ec);
  if (ec) return make_error(ErrorCode::kStorageIo, "connect failed: " + ec.message());
  std::string auth = credentials ? credentials->authorization() : std::string();
  impl->ws.set_option(websocket::stream_base::decorator([auth](websocket::request_type& req) {
    if (!auth.empty()) req.set(http::field::authorization, auth);
  }));
  impl->ws.read_message_max(64 << 20);
  websocket::response_type res;
  impl->ws.handshake(res, host + ":" + std::to_string(port), "/v1/ws", ec);
  if (http_status) *http_status = static_cast<int>(res.result_int());
  if (ec)
    return make_error(ErrorCode::kStorageIo,
                      "upgrade refused: " + std::to_string(res.result_int()) + " " + ec.message() +
                          (res.body().empty() ? "" : ": " + res.body()));
  impl->ws.binary(true);
  impl->ws.auto_fragment(false);
  impl->start_read();
  return std::unique_ptr<WireClient>(new WireClient(std::move(impl)));
}

void WireClient::pump(std::chrono::milliseconds timeout, const std::function<bool()>& done) {
  auto deadline = std::chrono::steady_clock::now() + timeout;
  for (;;) {
    // Sort what arrived: responses by id, pushes in order.
    while (!impl_->frames.empty()) {
      wire::Frame f;
      if (f.ParseFromString(impl_->frames.front())) {
        if (f.has_response()) responses_.push_back(std::move(*f.mutable_response()));
        if (f.has_push()) pushes_.push_back(std::move(*f.mutable_push()));
      }
      impl_->frames.pop_front();
    }
    if (done()) return;
    if (!impl_->open) return;
    auto now = std::chrono::steady_clock::now();
    if (now >= deadline) return;
    impl_->ioc.restart();
    impl_->ioc.run_one_for(deadline - now);
  }
}

uint64_t WireClient::send(wire::Request request) {
  if (request.id() == 0) request.set_id(next_id_++);
  wire::Frame f;
  *f.mutable_request() = request;
  send_raw(f.SerializeAsString());
  return request.id();
}

bool WireClient::send_raw(const std::string& bytes, bool binary) {
  if (!impl_->open) return false;
  beast::error_code ec;
  impl_->ws.binary(binary);
  impl_->ws.write(asio::buffer(bytes), ec);
  impl_->ws.binary(true);
  return !ec;
}

Result<wire::Response> WireClient::wait_response(uint64_t id, std::chrono::milliseconds timeout) {
  auto find = [&] {
    for (auto& r : responses_)
      if (r.id() == id) return true;
    return false;
  };
  pump(timeout, find);
  for (auto it = responses_.begin(); it != responses_.end(); ++it) {
    if (it->id() == id) {
      wire::Response r = std::move(*it);
      responses_.erase(it);
      return r;
    }
  }
  if (!impl_->open)
    return make_error(ErrorCode::kStorageIo, "the relay closed the connection (code " +
                                                 std::to_string(impl_->close_code.value_or(0)) +
                                                 ")");
  return make_error(ErrorCode::kNotFound, "no response within the timeout");
}

Result<wire::Response> WireClient::call(wire::Request request, std::chrono::milliseconds timeout) {
  uint64_t id = send(std::move(request));
  return wait_response(id, timeout);
}

std::optional<wire::Push> WireClient::next_push(std::chrono::milliseconds timeout) {
  pump(timeout, [&] { return !pushes_.empty(); });
  if (pushes_.empty()) return std::nullopt;
  wire::Push p = std::move(pushes_.front());
  pushes_.pop_front();
  return p;
}

std::optional<uint16_t> WireClient::wait_closed(std::chrono::milliseconds timeout) {
  pump(timeout, [&] { return !impl_->open; });
  return impl_->open ? std::nullopt : impl_->close_code;
}

bool WireClient::is_open() const { return impl_->open; }

void WireClient::ping() {
  beast::error_code ec;
  impl_->ws.ping({}, ec);
}

void WireClient::close() {
  if (!impl_->open) return;
  beast::error_code ec;
  impl_->ws.async_close(websocket::close_code::normal, [](beast::error_code) {});
  pump(std::chrono::seconds(2), [&] { return !impl_->open; });
  beast::get_lowest_layer(impl_->ws).close(ec);
  impl_->open = false;
}

Result<TestDevice> register_device(const std::string& host, uint16_t port,
                                   const std::string& handle, uint32_t prekeys) {
  SOTTO_TRY_ASSIGN(TestDevice d, make_device(handle, prekeys));
  SOTTO_TRY_ASSIGN(auto client, WireClient::connect(host, port));
  SOTTO_TRY_ASSIGN(wire::Response r, client->call(register_request(d)));
  if (r.status() != wire::OK)
    return make_error(
        ErrorCode::kInvalidArgument,
        "register @" + handle + " failed: " + wire::Status_Name(r.status()) + " " + r.message());
  d.account_id = Bytes(r.registration().account_id().begin(), r.registration().account_id().end());
  d.device_id = r.registration().device_id();
  client->close();
  return d;
}

Result<std::unique_ptr<WireClient>> connect_device(const std::string& host, uint16_t port,
                                                   const TestDevice& device) {
  Credentials c = device.credentials();
  return WireClient::connect(host, port, &c);
}

}  // namespace sotto::test
