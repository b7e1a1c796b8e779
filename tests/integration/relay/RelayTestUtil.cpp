#include "RelayTestUtil.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <boost/asio.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>

namespace sotto::test {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using tcp = asio::ip::tcp;

std::string str(const Bytes& b) { return std::string(as_chars(b)); }

Scratch::Scratch() {
  std::string tmpl = (std::filesystem::temp_directory_path() / "sotto-relay-test-XXXXXX").string();
  EXPECT_TRUE(::mkdtemp(tmpl.data()));
  path = tmpl;
}

Scratch::~Scratch() {
  std::error_code ec;
  std::filesystem::remove_all(path, ec);
}

TestDevice must_register(const RelayProcess& relay, const std::string& handle, uint32_t prekeys) {
  auto d = register_device(relay.host(), relay.port(), handle, prekeys);
  EXPECT_TRUE(d.ok()) << (d.ok() ? "" : d.error().message) << "\n" << relay.log();
  return d.ok() ? std::move(*d) : TestDevice{};
}

std::unique_ptr<WireClient> must_connect(const RelayProcess& relay, const TestDevice& device) {
  auto c = connect_device(relay.host(), relay.port(), device);
  EXPECT_TRUE(c.ok()) << (c.ok() ? "" : c.error().message);
  return c.ok() ? std::move(*c) : nullptr;
}

wire::Response expect_status(WireClient& client, wire::Request request, wire::Status status) {
  auto op = request.op();
  auto r = client.call(std::move(request));
  EXPECT_TRUE(r.ok()) << wire::Op_Name(op) << ": " << (r.ok() ? "" : r.error().message);
  if (!r.ok()) return {};
  EXPECT_EQ(wire::Status_Name(r->status()), wire::Status_Name(status))
      << wire::Op_Name(op) << ": " << r->message();
  return std::move(*r);
}

std::vector<wire::Envelope> drain_backlog(WireClient& client, std::chrono::milliseconds timeout) {
  std::vector<wire::Envelope> out;
  auto deadline = std::chrono::steady_clock::now() + timeout;
  for (;;) {
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
        deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0) break;
    auto p = client.next_push(left);
    if (!p) break;
    if (p->has_envelope()) out.push_back(p->envelope());
    if (p->has_queue_empty()) return out;
  }
  ADD_FAILURE() << "no QueueEmpty after " << out.size() << " envelopes";
  return out;
}

std::optional<wire::Envelope> next_envelope(WireClient& client, std::chrono::milliseconds timeout) {
  auto deadline = std::chrono::steady_clock::now() + timeout;
  for (;;) {
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
        deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0) return std::nullopt;
    auto p = client.next_push(left);
    if (!p) return std::nullopt;
    if (p->has_envelope()) return p->envelope();
  }
}

void ack(WireClient& client, const std::vector<uint64_t>& sequences) {
  wire::Request r = make_request(wire::OP_ACK);
  for (uint64_t s : sequences) r.mutable_ack()->add_sequences(s);
  expect_ok(client, std::move(r));
}

HttpResult http_request(uint16_t port, const std::string& method, const std::string& target,
                        const std::map<std::string, std::string>& headers,
                        const std::string& body) {
  HttpResult out;
  asio::io_context ioc;
  beast::tcp_stream stream(ioc);
  beast::error_code ec;
  stream.expires_after(std::chrono::seconds(30));
  stream.connect(tcp::endpoint(asio::ip::make_address("127.0.0.1"), port), ec);
  if (ec) return out;
  http::request<http::string_body> req{http::string_to_verb(method), target, 11};
  req.set(http::field::host, "127.0.0.1");
  for (const auto& [k, v] : headers) req.set(k, v);
  req.body() = body;
  if (!body.empty() || method == "PUT") req.prepare_payload();
  http::write(stream, req, ec);
  if (ec) return out;
  beast::flat_buffer buf;
  http::response_parser<http::string_body> res;
  res.body_limit(512 << 20);
  if (method == "HEAD") res.skip(true);
  http::read(stream, buf, res, ec);
  if (ec) return out;
  out.status = static_cast<int>(res.get().result_int());
  for (const auto& f : res.get()) {
    std::string name(f.name_string());
    for (auto& c : name) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    out.headers[name] = std::string(f.value());
  }
  out.body = res.get().body();
  return out;
}

}  // namespace sotto::test
