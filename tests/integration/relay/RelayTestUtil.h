// Helpers for the relay's integration tests.
#pragma once

#include <gtest/gtest.h>

#include <atomic>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "RelayProcess.h"
#include "WebhookListener.h"
#include "WireClient.h"

namespace sotto::test {

// Registers @handle with `prekeys` one-time prekeys; fails the test on error.
TestDevice must_register(const RelayProcess& relay, const std::string& handle,
                         uint32_t prekeys = 10);
std::unique_ptr<WireClient> must_connect(const RelayProcess& relay, const TestDevice& device);
// Sends and expects `status`; returns the response.
wire::Response expect_status(WireClient& client, wire::Request request, wire::Status status);
inline wire::Response expect_ok(WireClient& client, wire::Request request) {
  return expect_status(client, std::move(request), wire::OK);
}


// Collects envelope pushes until QueueEmpty (which must come); returns them in order.
std::vector<wire::Envelope> drain_backlog(WireClient& client,
                                          std::chrono::milliseconds timeout = 10s);
// The next envelope push (skipping other pushes), or nullopt.
std::optional<wire::Envelope> next_envelope(WireClient& client,
                                            std::chrono::milliseconds timeout = 5s);
void ack(WireClient& client, const std::vector<uint64_t>& sequences);

// A blocking HTTP/1.1 exchange with the relay (one connection per call).
struct HttpResult {
  int status = 0;
  std::map<std::string, std::string> headers;  // lower-case names
  std::string body;
};
HttpResult http_request(uint16_t port, const std::string& method, const std::string& target,
                        const std::map<std::string, std::string>& headers = {},
                        const std::string& body = {});

std::string str(const Bytes& b);

// A temp dir of the test's own, removed at the end.
struct Scratch {
  Scratch();
  ~Scratch();
  std::filesystem::path path;
};

}  // namespace sotto::test
