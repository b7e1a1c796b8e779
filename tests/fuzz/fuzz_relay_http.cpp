// Untrusted bytes: an HTTP/1.1 request as it reaches the relay's port, through the same header
// parser settings as the server (Beast's request parser, 16 KiB of header, no body read), then
// what the relay takes from it: the path's attachment id, the Range header against blobs of
// several sizes, the Authorization credentials and the WebSocket upgrade check.
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/websocket/rfc6455.hpp>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string_view>

#include "HttpFields.h"
#include "Validate.h"

namespace http = boost::beast::http;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  http::request_parser<http::empty_body> parser;
  parser.header_limit(16 * 1024);
  parser.body_limit(boost::none);
  parser.eager(false);
  boost::beast::error_code ec;
  parser.put(boost::asio::buffer(data, size), ec);
  if (ec || !parser.is_header_done()) return 0;
  const auto& req = parser.get();
  (void)boost::beast::websocket::is_upgrade(req);
  std::string_view target = req.target();
  if (auto q = target.find('?'); q != std::string_view::npos) target = target.substr(0, q);
  constexpr std::string_view kPrefix = "/v1/attachments/";
  if (target.starts_with(kPrefix)) (void)sotto::relay::valid_attachment_id(target.substr(16));
  if (auto it = req.find(http::field::range); it != req.end()) {
    for (uint64_t blob : {uint64_t{0}, uint64_t{1}, uint64_t{300'000}, ~uint64_t{0}}) {
      auto r = sotto::relay::parse_range(it->value(), blob);
      if (r.kind != sotto::relay::ByteRange::kPartial) continue;
      // What the download path relies on: a non-empty range inside the blob.
      if (r.first > r.last || r.last >= blob) {
        std::fprintf(stderr, "parse_range gave %llu-%llu for a blob of %llu bytes\n",
                     static_cast<unsigned long long>(r.first),
                     static_cast<unsigned long long>(r.last), static_cast<unsigned long long>(blob));
        std::abort();
      }
    }
  }
  if (auto it = req.find(http::field::authorization); it != req.end())
    (void)sotto::relay::parse_authorization(it->value());
  return 0;
}
