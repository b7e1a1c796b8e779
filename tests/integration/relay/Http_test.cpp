// HTTP on the relay's port: attachments with Range, health, metrics, wake-up webhooks.
#include <netinet/in.h>
#include <sodium.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <cstdlib>

#include "RelayMetrics.h"
#include "RelayTestUtil.h"

namespace sotto::test {
namespace {

std::string reserve(WireClient& c, uint64_t size) {
  wire::Request r = make_request(wire::OP_ATTACHMENT_UPLOAD);
  r.mutable_attachment_upload()->set_size_bytes(size);
  auto resp = expect_ok(c, r);
  EXPECT_EQ(resp.attachment_upload().path(),
            "/v1/attachments/" + resp.attachment_upload().attachment_id());
  return resp.attachment_upload().path();
}

TEST(RelayHttp, AttachmentUploadDownloadAndResume) {
  RelayProcess relay;
  TestDevice alice = must_register(relay, "alice", 0);
  TestDevice bob = must_register(relay, "bob", 0);
  auto a = must_connect(relay, alice);
  std::string blob(300'000, '\0');
  randombytes_buf(blob.data(), blob.size());
  std::string path = reserve(*a, blob.size());
  auto info = expect_ok(*a, make_request(wire::OP_SERVER_INFO));
  EXPECT_EQ(info.server_info().attachment_max_bytes(), 100ull << 20);
  std::map<std::string, std::string> alice_auth = {
      {"Authorization", alice.credentials().authorization()}};
  std::map<std::string, std::string> bob_auth = {
      {"Authorization", bob.credentials().authorization()}};

  EXPECT_EQ(http_request(relay.port(), "PUT", path, {}, blob).status, 401);
  EXPECT_EQ(http_request(relay.port(), "PUT", path, bob_auth, blob).status, 403);
  EXPECT_EQ(http_request(relay.port(), "PUT", path, alice_auth, blob.substr(1)).status, 400);
  EXPECT_EQ(http_request(relay.port(), "GET", path, bob_auth).status, 404) << "not uploaded yet";
  EXPECT_EQ(http_request(relay.port(), "PUT", path, alice_auth, blob).status, 201);
  EXPECT_EQ(http_request(relay.port(), "PUT", path, alice_auth, blob).status, 409);

  auto whole = http_request(relay.port(), "GET", path, bob_auth);
  EXPECT_EQ(whole.status, 200);
  EXPECT_EQ(whole.body, blob);
  EXPECT_EQ(whole.headers["accept-ranges"], "bytes");
  EXPECT_EQ(whole.headers["content-type"], "application/octet-stream");
  auto head = http_request(relay.port(), "HEAD", path, bob_auth);
  EXPECT_EQ(head.status, 200);
  EXPECT_EQ(head.headers["content-length"], std::to_string(blob.size()));

  // Resume after 123,456 bytes.
  auto h = bob_auth;
  h["Range"] = "bytes=123456-";
  auto rest = http_request(relay.port(), "GET", path, h);
  EXPECT_EQ(rest.status, 206);
  EXPECT_EQ(rest.headers["content-range"], "bytes 123456-299999/300000");
  EXPECT_EQ(rest.body, blob.substr(123456));
  h["Range"] = "bytes=10-19";
  EXPECT_EQ(http_request(relay.port(), "GET", path, h).body, blob.substr(10, 10));
  h["Range"] = "bytes=-5";
  EXPECT_EQ(http_request(relay.port(), "GET", path, h).body, blob.substr(blob.size() - 5));
  h["Range"] = "bytes=300000-";
  auto bad = http_request(relay.port(), "GET", path, h);
  EXPECT_EQ(bad.status, 416);
  EXPECT_EQ(bad.headers["content-range"], "bytes */300000");
  h["Range"] = "bytes=0-1,5-6";
  EXPECT_EQ(http_request(relay.port(), "GET", path, h).status, 200);
  // Invalid ranges are ignored (RFC 9110): the whole blob, never a length computed from them.
  for (const char* invalid : {"bytes=5-2", "bytes=1-0", "bytes=x-", "items=0-9"}) {
    h["Range"] = invalid;
    auto r = http_request(relay.port(), "GET", path, h);
    EXPECT_EQ(r.status, 200) << invalid;
    EXPECT_EQ(r.headers["content-length"], std::to_string(blob.size())) << invalid;
    EXPECT_EQ(r.body, blob) << invalid;
  }
  for (const char* past : {"bytes=18446744073709551615-", "bytes=99999999999999999999999-",
                           "bytes=-0"}) {
    h["Range"] = past;
    auto r = http_request(relay.port(), "GET", path, h);
    EXPECT_EQ(r.status, 416) << past;
    EXPECT_EQ(r.headers["content-range"], "bytes */300000") << past;
  }

  EXPECT_EQ(http_request(relay.port(), "GET", path).status, 401);
  EXPECT_EQ(
      http_request(relay.port(), "GET", "/v1/attachments/" + std::string(32, 'a'), bob_auth).status,
      404);
  EXPECT_EQ(http_request(relay.port(), "DELETE", path, bob_auth).status, 405);
  // Blobs live on disk, whole, under the data dir.
  EXPECT_EQ(std::filesystem::file_size(relay.data_dir() / "attachments" / path.substr(16)),
            blob.size());
}

// A plain TCP connection to the relay, for an HTTP request sent in pieces.
class RawHttp {
 public:
  explicit RawHttp(uint16_t port) : fd_(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0)) {
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    addr.sin_port = htons(port);
    timeval tv{10, 0};  // a relay that never answers fails the test instead of hanging it
    ::setsockopt(fd_, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    ok_ = ::connect(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0;
  }
  ~RawHttp() { ::close(fd_); }
  bool ok() const { return ok_; }
  bool send(const std::string& bytes) {
    for (size_t at = 0; at < bytes.size();) {
      ssize_t n = ::send(fd_, bytes.data() + at, bytes.size() - at, MSG_NOSIGNAL);
      if (n <= 0) return false;
      at += static_cast<size_t>(n);
    }
    return true;
  }
  // The status of the next response (its header block is consumed); 0 when none came.
  int next_status() {
    for (;;) {
      size_t end = buf_.find("\r\n\r\n");
      if (end != std::string::npos) {
        int status = buf_.size() > 12 ? std::atoi(buf_.substr(9, 3).c_str()) : 0;
        buf_.erase(0, end + 4);
        return status;
      }
      char chunk[4096];
      ssize_t n = ::recv(fd_, chunk, sizeof chunk, 0);
      if (n <= 0) return 0;
      buf_.append(chunk, static_cast<size_t>(n));
    }
  }

 private:
  int fd_;
  bool ok_ = false;
  std::string buf_;
};

// While one upload to a slot is under way, others to the same slot are refused with 409, one
// after another, and the first then completes.
TEST(RelayHttp, UploadsToASlotInProgressAreRefusedAndTheFirstCompletes) {
  RelayProcess relay;
  TestDevice alice = must_register(relay, "alice", 0);
  auto a = must_connect(relay, alice);
  std::string blob(100'000, '\0');
  randombytes_buf(blob.data(), blob.size());
  std::string path = reserve(*a, blob.size());
  std::map<std::string, std::string> auth = {
      {"Authorization", alice.credentials().authorization()}};

  // The relay answers 100 Continue once it has taken the slot for this upload.
  RawHttp first(relay.port());
  ASSERT_TRUE(first.ok());
  ASSERT_TRUE(first.send(
      "PUT " + path + " HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: " + auth["Authorization"] +
      "\r\nContent-Length: " + std::to_string(blob.size()) + "\r\nExpect: 100-continue\r\n\r\n"));
  ASSERT_EQ(first.next_status(), 100);
  // Each refusal is written while other connections come and go on the relay's threads.
  for (int i = 0; i < 20; ++i)
    ASSERT_EQ(http_request(relay.port(), "PUT", path, auth, blob).status, 409) << "attempt " << i;
  ASSERT_TRUE(first.send(blob));
  EXPECT_EQ(first.next_status(), 201);
  EXPECT_EQ(http_request(relay.port(), "GET", path, auth).body, blob);
}

TEST(RelayHttp, AttachmentSizeLimits) {
  RelayProcess::Options o;
  o.extra_args = {"--attachment-max-bytes", "1000"};
  RelayProcess relay(o);
  TestDevice alice = must_register(relay, "alice", 0);
  auto a = must_connect(relay, alice);
  wire::Request r = make_request(wire::OP_ATTACHMENT_UPLOAD);
  r.mutable_attachment_upload()->set_size_bytes(1001);
  EXPECT_EQ(expect_status(*a, r, wire::TOO_LARGE).too_large().max_bytes(), 1000u);
  r.mutable_attachment_upload()->set_size_bytes(0);
  expect_status(*a, r, wire::BAD_REQUEST);
  std::string path = reserve(*a, 1000);
  std::map<std::string, std::string> auth = {
      {"Authorization", alice.credentials().authorization()}};
  EXPECT_EQ(http_request(relay.port(), "PUT", path, auth, std::string(2000, 'x')).status, 413);
}

// An Authorization header that is present is judged even when it is empty: it never gives an
// unauthenticated socket (protocol.md 3.1). Credentials have one spelling: lowercase hex.
TEST(RelayHttp, AnEmptyOrUppercaseAuthorizationIsRefusedAtTheUpgrade) {
  RelayProcess relay;
  TestDevice alice = must_register(relay, "alice", 0);
  std::map<std::string, std::string> upgrade = {{"Upgrade", "websocket"},
                                                {"Connection", "Upgrade"},
                                                {"Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ=="},
                                                {"Sec-WebSocket-Version", "13"}};
  EXPECT_EQ(http_request(relay.port(), "GET", "/v1/ws", upgrade).status, 101);
  auto empty = upgrade;
  empty["Authorization"] = "";
  EXPECT_EQ(http_request(relay.port(), "GET", "/v1/ws", empty).status, 401);
  auto upper = upgrade;
  Credentials c = alice.credentials();
  upper["Authorization"] = c.authorization();
  EXPECT_EQ(http_request(relay.port(), "GET", "/v1/ws", upper).status, 101);
  // The same credentials with the secret in capitals: one spelling per credential.
  std::string user = to_hex(c.account_id) + "." + std::to_string(c.device_id) + ":";
  for (char ch : to_hex(c.auth_secret))
    user += static_cast<char>(std::toupper(static_cast<unsigned char>(ch)));
  std::string b64(sodium_base64_ENCODED_LEN(user.size(), sodium_base64_VARIANT_ORIGINAL), '\0');
  sodium_bin2base64(b64.data(), b64.size(), reinterpret_cast<const unsigned char*>(user.data()),
                    user.size(), sodium_base64_VARIANT_ORIGINAL);
  upper["Authorization"] = "Basic " + std::string(b64.c_str());
  EXPECT_EQ(http_request(relay.port(), "GET", "/v1/ws", upper).status, 401);
}

TEST(RelayHttp, AnOversizedRequestHeaderIsAnswered431) {
  RelayProcess relay;
  auto r = http_request(relay.port(), "GET", "/healthz", {{"X-Filler", std::string(20'000, 'f')}});
  EXPECT_EQ(r.status, 431);
  EXPECT_EQ(http_request(relay.port(), "GET", "/healthz", {{"X-Filler", std::string(8'000, 'f')}})
                .status,
            200);
}

TEST(RelayHttp, UnknownPathsAndMethods) {
  RelayProcess relay;
  EXPECT_EQ(http_request(relay.port(), "GET", "/nope").status, 404);
  auto r = http_request(relay.port(), "POST", "/healthz");
  EXPECT_EQ(r.status, 405);
  EXPECT_EQ(r.headers["allow"], "GET, HEAD");
  EXPECT_EQ(http_request(relay.port(), "GET", "/v1/ws").status, 426);
}

TEST(RelayHttp, MetricsCanRequireAToken) {
  RelayProcess::Options o;
  o.extra_args = {"--metrics-access", "token", "--metrics-token", "s3cret"};
  RelayProcess relay(o);
  EXPECT_EQ(http_request(relay.port(), "GET", "/metrics").status, 403);
  auto ok = http_request(relay.port(), "GET", "/metrics", {{"Authorization", "Bearer s3cret"}});
  EXPECT_EQ(ok.status, 200);
  EXPECT_EQ(ok.body.find("account"), std::string::npos) << "no user identifiers in metrics";
}

// Waits until the relay counts `n` authenticated connections: it has seen every other close.
void wait_authenticated(const RelayProcess& relay, int n) {
  ASSERT_TRUE(wait_for_metric(relay.port(), "sotto_connections{kind=\"ws_authenticated\"}",
                              [n](double v) { return v == n; }))
      << "the relay never counted " << n << " authenticated connections";
}

double wakeups(const RelayMetrics& m) {
  return metric(m, "sotto_wakeups_sent_total") + metric(m, "sotto_wakeups_failed_total") +
         metric(m, "sotto_wakeups_coalesced_total");
}

// The relay's metrics once it has decided on at least `n` wake-ups: sent (the POST answered),
// given up, or coalesced with an earlier one.
RelayMetrics after_wakeups(const RelayProcess& relay, int n) {
  RelayMetrics seen;
  bool decided = wait_for_metrics(relay.port(), [&](const RelayMetrics& m) {
    seen = m;
    return wakeups(m) >= n;
  });
  EXPECT_TRUE(decided) << "the relay decided on " << wakeups(seen) << " wake-ups, not " << n;
  return seen;
}

// An urgent envelope for an offline device with an endpoint: one content-free POST,
// coalesced; receipts (not urgent) never wake.
TEST(RelayHttp, WakeUpWebhookIsCoalescedAndContentFree) {
  WebhookListener hook;
  RelayProcess relay;
  TestDevice alice = must_register(relay, "alice", 0);
  TestDevice bob = must_register(relay, "bob", 0);
  TestDevice carol = must_register(relay, "carol", 0);
  for (TestDevice* d : {&bob, &carol}) {
    auto c = must_connect(relay, *d);
    wire::Request r = make_request(wire::OP_SET_PUSH_ENDPOINT);
    r.mutable_set_push_endpoint()->set_url(hook.url());
    expect_ok(*c, r);
    c->close();
  }
  ASSERT_NO_FATAL_FAILURE(wait_authenticated(relay, 0));  // both offline
  auto a = must_connect(relay, alice);
  for (int i = 0; i < 3; ++i) expect_ok(*a, send_request(random_message_id(), {{&bob, "urgent"}}));
  ASSERT_EQ(hook.wait_for(1, 5s), 1u);
  auto m = after_wakeups(relay, 3);
  EXPECT_EQ(wakeups(m), 3);
  EXPECT_EQ(metric(m, "sotto_wakeups_coalesced_total"), 2);
  // A receipt for carol, who is offline too: no wake-up. An urgent envelope right after it
  // wakes her, which it would not if the receipt had: it would be coalesced.
  expect_ok(*a, send_request(random_message_id(), {{&carol, "receipt"}}, false));
  expect_ok(*a, send_request(random_message_id(), {{&carol, "urgent"}}));
  ASSERT_EQ(hook.wait_for(2, 5s), 2u);
  m = after_wakeups(relay, 4);
  EXPECT_EQ(wakeups(m), 4);
  EXPECT_EQ(metric(m, "sotto_wakeups_coalesced_total"), 2) << "the receipt woke carol";
  auto reqs = hook.requests();
  ASSERT_EQ(reqs.size(), 2u);
  for (auto& r : reqs) {
    EXPECT_EQ(r.method, "POST");
    EXPECT_EQ(r.target, "/wake/abc");
    EXPECT_EQ(r.body, R"({"sotto":"wake"})");
    EXPECT_EQ(r.headers["content-type"], "application/json");
    EXPECT_EQ(r.headers["ttl"], "86400");
    EXPECT_EQ(r.headers["urgency"], "high");
  }
  // Once the device has connected, the next urgent envelope wakes it again.
  { auto b = must_connect(relay, bob); }
  ASSERT_NO_FATAL_FAILURE(wait_authenticated(relay, 1));  // bob offline again, alice online
  expect_ok(*a, send_request(random_message_id(), {{&bob, "urgent again"}}));
  EXPECT_EQ(hook.wait_for(3, 5s), 3u);
}

TEST(RelayHttp, PushEndpointPolicy) {
  RelayProcess::Options o;
  o.permissive_limits = false;
  RelayProcess relay(o);
  TestDevice alice = must_register(relay, "alice", 0);
  auto a = must_connect(relay, alice);
  auto set = [&](const std::string& url, wire::Status want) {
    wire::Request r = make_request(wire::OP_SET_PUSH_ENDPOINT);
    r.mutable_set_push_endpoint()->set_url(url);
    expect_status(*a, r, want);
  };
  set("http://push.example.com/x", wire::BAD_REQUEST);
  set("https://127.0.0.1/x", wire::FORBIDDEN);
  set("https://10.1.2.3/x", wire::FORBIDDEN);
  set("https://[::1]:8443/x", wire::FORBIDDEN);
  set("https://localhost/x", wire::FORBIDDEN);
  set("ftp://push.example.com/x", wire::BAD_REQUEST);
  set("https://push.example.com/" + std::string(2100, 'a'), wire::BAD_REQUEST);
  set("https://push.example.com/up?token=abc", wire::OK);
  set("https://127.1/x", wire::BAD_REQUEST);  // an IPv4 literal in a form inet_pton never sees
  set("", wire::BAD_REQUEST);  // an empty body clears nothing
  wire::Request clear = make_request(wire::OP_SET_PUSH_ENDPOINT);
  clear.mutable_set_push_endpoint()->set_clear(true);
  expect_status(*a, clear, wire::OK);
}

}  // namespace
}  // namespace sotto::test
