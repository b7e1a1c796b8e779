// Hostile input: each gets a clear status (or close code) while an honest client in the same
// test keeps working and nothing already accepted is lost.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <sstream>

#include "RelayMetrics.h"
#include "RelayTestUtil.h"

namespace sotto::test {
namespace {

// Alice keeps sending to Bob; `check()` verifies everything she sent so far arrived in order.
struct HonestPair {
  HonestPair(const RelayProcess& relay)
      : alice(must_register(relay, "honest_a", 0)), bob(must_register(relay, "honest_b", 0)) {
    a = must_connect(relay, alice);
    b = must_connect(relay, bob);
    drain_backlog(*b);
  }
  void exchange() {
    std::string text = "m" + std::to_string(sent++);
    expect_ok(*a, send_request(random_message_id(), {{&bob, text}}));
    auto e = next_envelope(*b);
    ASSERT_TRUE(e);
    EXPECT_EQ(e->ciphertext(), text);
    ack(*b, {e->sequence()});
  }
  TestDevice alice, bob;
  std::unique_ptr<WireClient> a, b;
  int sent = 0;
};

int raw_connect(uint16_t port) {
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(port);
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  EXPECT_EQ(::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr), 0);
  return fd;
}

// True when the peer closed within `ms` (read returns 0 or an error).
bool closed_within(int fd, int ms) {
  timeval tv{ms / 1000, (ms % 1000) * 1000};
  ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  char buf[512];
  for (;;) {
    ssize_t n = ::read(fd, buf, sizeof buf);
    if (n == 0) return true;
    if (n < 0) return errno != EAGAIN && errno != EWOULDBLOCK;
  }
}

TEST(RelayHostile, MalformedFramesCloseOnlyTheOffendingConnection) {
  RelayProcess relay;
  HonestPair honest(relay);
  TestDevice mallory = must_register(relay, "mallory", 0);
  honest.exchange();
  {
    auto m = must_connect(relay, mallory);
    m->send_raw("\xff\xff\xff not a protobuf");
    EXPECT_EQ(m->wait_closed(), std::optional<uint16_t>(1002));
  }
  {
    auto m = must_connect(relay, mallory);
    m->send_raw("a text message", false);
    EXPECT_EQ(m->wait_closed(), std::optional<uint16_t>(1003));
  }
  {
    auto m = must_connect(relay, mallory);
    wire::Frame f;
    f.mutable_response()->set_id(1);  // clients never send responses
    m->send_raw(f.SerializeAsString());
    EXPECT_EQ(m->wait_closed(), std::optional<uint16_t>(1002));
  }
  {
    // Invalid UTF-8 in a string field: protobuf refuses the frame, and its complaint must not
    // reach the relay's log as a line of its own (checked below).
    auto m = must_connect(relay, mallory);
    wire::Frame f;
    auto* r = f.mutable_request();
    r->set_id(1);
    r->set_op(wire::OP_LOOKUP_ACCOUNT);
    r->mutable_lookup_account()->set_handle("QQQQ");
    std::string bytes = f.SerializeAsString();
    bytes.replace(bytes.find("QQQQ"), 4, "\xff\xfe\xc0\x80");
    m->send_raw(bytes);
    EXPECT_EQ(m->wait_closed(), std::optional<uint16_t>(1002));
  }
  {
    auto m = must_connect(relay, mallory);
    m->send_raw(std::string(300 * 1024, 'x'));
    // The relay answers with close code 1009 without reading the rest of the frame; when the
    // client is still writing, its kernel may take the relay's reset before the close frame.
    auto code = m->wait_closed();
    ASSERT_TRUE(code);
    EXPECT_TRUE(*code == 1009 || *code == 1006) << *code;
  }
  honest.exchange();
  // Hostile bytes leave structured lines only, whatever library noticed them.
  std::istringstream log(relay.log());
  for (std::string line; std::getline(log, line);)
    EXPECT_EQ(line.rfind("ts=", 0), 0u) << "not a logfmt line in the relay's log: " << line;
}

TEST(RelayHostile, UnknownOpsAndMismatchedBodiesGetAStatus) {
  RelayProcess relay;
  HonestPair honest(relay);
  wire::Request r;
  r.set_op(static_cast<wire::Op>(99));
  r.mutable_ping();
  expect_status(*honest.a, r, wire::UNSUPPORTED);
  r.set_op(wire::OP_UNSPECIFIED);
  expect_status(*honest.a, r, wire::BAD_REQUEST);
  r.set_op(wire::OP_SEND);  // with a ping body
  expect_status(*honest.a, r, wire::BAD_REQUEST);
  expect_status(*honest.a, make_request(wire::OP_SEND), wire::BAD_REQUEST);  // no body
  wire::Request bad_id = send_request(Bytes(3, 1), {{&honest.bob, "x"}});
  expect_status(*honest.a, bad_id, wire::BAD_REQUEST);
  wire::Request self = send_request(random_message_id(), {{&honest.alice, "x"}});
  expect_status(*honest.a, self, wire::BAD_REQUEST);
  wire::Request huge =
      send_request(random_message_id(), {{&honest.bob, std::string(261'121, 'x')}});
  EXPECT_EQ(expect_status(*honest.a, huge, wire::TOO_LARGE).too_large().max_bytes(), 261'120u);
  honest.exchange();
}

TEST(RelayHostile, AckingAnotherDevicesQueueDeletesNothing) {
  RelayProcess relay;
  HonestPair honest(relay);
  TestDevice mallory = must_register(relay, "mallory", 0);
  auto m = must_connect(relay, mallory);
  honest.b->close();
  expect_ok(*honest.a, send_request(random_message_id(), {{&honest.bob, "keep me"}}));
  // Mallory acks sequence 1..10: only her own (empty) queue is touched.
  ack(*m, {1, 2, 3, 4, 5, 6, 7, 8, 9, 10});
  honest.b = must_connect(relay, honest.bob);
  auto got = drain_backlog(*honest.b);
  ASSERT_EQ(got.size(), 1u);
  EXPECT_EQ(got[0].ciphertext(), "keep me");
  wire::Request too_many = make_request(wire::OP_ACK);
  for (int i = 0; i < 1001; ++i) too_many.mutable_ack()->add_sequences(static_cast<uint64_t>(i));
  expect_status(*m, too_many, wire::TOO_LARGE);
}

TEST(RelayHostile, AFloodPastTheRateLimitIsAnsweredRateLimited) {
  RelayProcess::Options o;
  o.extra_args = {"--rate-send-device", "5/1m"};
  RelayProcess relay(o);
  TestDevice alice = must_register(relay, "alice", 0);
  TestDevice bob = must_register(relay, "bob", 0);
  TestDevice carol = must_register(relay, "carol", 0);
  auto a = must_connect(relay, alice);
  auto c = must_connect(relay, carol);
  int ok = 0, limited = 0;
  for (int i = 0; i < 20; ++i) {
    auto r = a->call(send_request(random_message_id(), {{&bob, "flood"}}));
    ASSERT_TRUE(r.ok());
    if (r->status() == wire::OK) ++ok;
    if (r->status() == wire::RATE_LIMITED) {
      ++limited;
      EXPECT_GT(r->rate_limited().retry_after_ms(), 0u);
      EXPECT_EQ(r->rate_limited().limit(), "send");
    }
  }
  EXPECT_EQ(ok, 5);
  EXPECT_EQ(limited, 15);
  // Carol's budget is her own.
  expect_ok(*c, send_request(random_message_id(), {{&bob, "honest"}}));
  auto b = must_connect(relay, bob);
  EXPECT_EQ(drain_backlog(*b).size(), 6u) << "every accepted send is kept";
}

TEST(RelayHostile, FramesPerConnectionAreRateLimited) {
  RelayProcess::Options o;
  o.permissive_limits = false;
  o.extra_args = {"--rate-frames-connection", "10/1m"};
  RelayProcess relay(o);
  auto c = WireClient::connect(relay.host(), relay.port());
  ASSERT_TRUE(c.ok());
  int limited = 0;
  for (int i = 0; i < 15; ++i) {
    auto r = (*c)->call(make_request(wire::OP_PING));
    ASSERT_TRUE(r.ok());
    if (r->status() == wire::RATE_LIMITED) ++limited;
  }
  EXPECT_EQ(limited, 5);
}

TEST(RelayHostile, SlowHandshakesAndIdleUnauthenticatedSocketsAreCut) {
  RelayProcess::Options o;
  o.extra_args = {"--http-header-timeout-ms", "800", "--unauth-timeout-ms", "800"};
  RelayProcess relay(o);
  HonestPair honest(relay);
  // A socket that never completes its upgrade request (slowloris).
  int fd = raw_connect(relay.port());
  std::string partial = "GET /v1/ws HTTP/1.1\r\nHost: x\r\n";
  ASSERT_EQ(::write(fd, partial.data(), partial.size()), static_cast<ssize_t>(partial.size()));
  honest.exchange();
  EXPECT_TRUE(closed_within(fd, 3000));
  ::close(fd);
  // A socket that connects and says nothing at all.
  fd = raw_connect(relay.port());
  EXPECT_TRUE(closed_within(fd, 3000));
  ::close(fd);
  // An unauthenticated WebSocket that does nothing: closed with 4000.
  auto idle = WireClient::connect(relay.host(), relay.port());
  ASSERT_TRUE(idle.ok());
  EXPECT_EQ((*idle)->wait_closed(3s), std::optional<uint16_t>(4000));
  honest.exchange();
}

TEST(RelayHostile, UpgradesArePerAddressLimited) {
  RelayProcess::Options o;
  o.permissive_limits = false;
  o.extra_args = {"--rate-upgrade-ip", "3/1m", "--unauth-sockets-ip", "2"};
  RelayProcess relay(o);
  std::vector<std::unique_ptr<WireClient>> keep;
  int status = 0;
  for (int i = 0; i < 2; ++i) {
    auto c = WireClient::connect(relay.host(), relay.port(), nullptr, &status);
    ASSERT_TRUE(c.ok());
    keep.push_back(std::move(*c));
  }
  EXPECT_FALSE(WireClient::connect(relay.host(), relay.port(), nullptr, &status).ok());
  EXPECT_EQ(status, 429) << "a third concurrent unauthenticated socket";
  keep.clear();
  // The relay has seen both sockets close: a refusal now is for the rate of upgrades, not for
  // the sockets open.
  ASSERT_TRUE(wait_for_metric(relay.port(), "sotto_connections{kind=\"ws_unauthenticated\"}",
                              [](double v) { return v == 0; }));
  EXPECT_FALSE(WireClient::connect(relay.host(), relay.port(), nullptr, &status).ok());
  EXPECT_EQ(status, 429) << "the fourth upgrade in a minute";
}

TEST(RelayHostile, ASlowReaderIsCutOffWithoutLosingItsQueue) {
  RelayProcess::Options o;
  o.extra_args = {"--max-outgoing-bytes", "200000", "--max-unacked-envelopes", "1000",
                  "--write-timeout-ms",   "1000"};
  RelayProcess relay(o);
  TestDevice alice = must_register(relay, "alice", 0);
  TestDevice bob = must_register(relay, "bob", 0);
  auto a = must_connect(relay, alice);
  // Bob connects but never reads: the raw socket's buffers fill, then the relay's queue.
  auto b = must_connect(relay, bob);
  std::vector<uint64_t> ids;
  for (int i = 0; i < 200; ++i)
    ids.push_back(a->send(send_request(random_message_id(), {{&bob, std::string(100'000, 'z')}})));
  for (uint64_t id : ids) {
    auto r = a->wait_response(id);
    ASSERT_TRUE(r.ok() && r->status() == wire::OK);
  }
  // No write progress for a second: the relay drops bob's socket. How soon it gets there
  // depends on how much the loopback's socket buffers take first, and on the machine's load.
  HttpResult metrics;
  for (auto until = std::chrono::steady_clock::now() + 20s;
       std::chrono::steady_clock::now() < until; std::this_thread::sleep_for(100ms)) {
    metrics = http_request(relay.port(), "GET", "/metrics");
    if (metrics.body.find("sotto_slow_reader_drops_total 1") != std::string::npos) break;
  }
  EXPECT_NE(metrics.body.find("sotto_slow_reader_drops_total 1"), std::string::npos)
      << metrics.body.substr(0, 2000);
  b.reset();
  auto b2 = must_connect(relay, bob);
  size_t got = 0;
  while (auto e = next_envelope(*b2, 3s)) {
    ++got;
    ack(*b2, {e->sequence()});
  }
  EXPECT_EQ(got, 200u) << relay.log();
}


// Anyone who knows an account id can send it ephemeral envelopes (typing). A flood of them while
// the victim is not reading must cost the victim those envelopes, never its connection or a
// stored message (protocol.md 3.5).
TEST(RelayHostile, AnEphemeralFloodCannotCutItsRecipientOff) {
  RelayProcess relay;
  TestDevice mallory = must_register(relay, "mallory", 0);
  TestDevice alice = must_register(relay, "alice", 0);
  TestDevice bob = must_register(relay, "bob", 0);
  auto m = must_connect(relay, mallory);
  auto a = must_connect(relay, alice);
  auto b = must_connect(relay, bob);
  drain_backlog(*b);
  // Bob reads nothing while 31 envelopes of 250 KB arrive for him.
  for (int i = 0; i < 31; ++i)
    expect_ok(*m, send_request(random_message_id(), {{&bob, std::string(250'000, 'f')}}, false,
                               true));
  expect_ok(*a, send_request(random_message_id(), {{&bob, "stored, after the flood"}}));
  // Now bob reads: his connection is the same one, and the stored message is there.
  std::optional<wire::Envelope> stored;
  size_t ephemeral = 0;
  while (auto e = next_envelope(*b, 10s)) {
    if (e->ephemeral()) {
      ++ephemeral;
      continue;
    }
    stored = e;
    break;
  }
  ASSERT_TRUE(stored) << "the stored message did not arrive\n" << relay.log();
  EXPECT_EQ(stored->ciphertext(), "stored, after the flood");
  EXPECT_TRUE(b->is_open());
  EXPECT_LT(ephemeral, 31u) << "none of the flood was dropped";
  expect_ok(*b, make_request(wire::OP_PING));
  auto metrics = http_request(relay.port(), "GET", "/metrics");
  EXPECT_NE(metrics.body.find("sotto_slow_reader_drops_total 0"), std::string::npos);
  EXPECT_EQ(metrics.body.find("sotto_envelopes_ephemeral_dropped_total 0"), std::string::npos);
}

// A client that never reads is cut by the write-progress rule, not only by the idle rule: the
// kernel may not take megabytes off the relay's queue for it (protocol.md 3.4, 1008).
TEST(RelayHostile, AReaderThatNeverReadsIsCutByTheWriteProgressRule) {
  RelayProcess::Options o;
  o.extra_args = {"--write-timeout-ms", "1000", "--idle-timeout-ms", "600000"};
  RelayProcess relay(o);
  TestDevice alice = must_register(relay, "alice", 0);
  TestDevice bob = must_register(relay, "bob", 0);
  auto a = must_connect(relay, alice);
  auto b = must_connect(relay, bob);
  // 3 MB: less than what the loopback socket's autotuned buffers would take in.
  for (int i = 0; i < 30; ++i)
    expect_ok(*a, send_request(random_message_id(), {{&bob, std::string(100'000, 'z')}}));
  HttpResult metrics;
  for (auto until = std::chrono::steady_clock::now() + 15s;
       std::chrono::steady_clock::now() < until; std::this_thread::sleep_for(100ms)) {
    metrics = http_request(relay.port(), "GET", "/metrics");
    if (metrics.body.find("sotto_slow_reader_drops_total 1") != std::string::npos) break;
  }
  EXPECT_NE(metrics.body.find("sotto_slow_reader_drops_total 1"), std::string::npos)
      << "a reader that never reads was not cut";
  // Nothing is lost: on a new connection bob gets all 30.
  b.reset();
  auto b2 = must_connect(relay, bob);
  size_t got = 0;
  while (auto e = next_envelope(*b2, 3s)) {
    ++got;
    ack(*b2, {e->sequence()});
  }
  EXPECT_EQ(got, 30u);
}

// A client WebSocket frame (masked, with an all-zero key: the payload goes as it is).
std::string client_frame(const std::string& payload) {
  std::string f;
  f += static_cast<char>(0x82);
  if (payload.size() < 126) {
    f += static_cast<char>(0x80 | payload.size());
  } else {
    f += static_cast<char>(0x80 | 126);
    f += static_cast<char>(payload.size() >> 8);
    f += static_cast<char>(payload.size() & 0xff);
  }
  f += std::string(4, '\0');
  return f + payload;
}

// Reads server frames until a close frame: its code, or nullopt when the socket ended first.
std::optional<uint16_t> read_close_code(int fd, int ms) {
  timeval tv{ms / 1000, (ms % 1000) * 1000};
  ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  std::string in;
  char buf[4096];
  for (;;) {
    while (in.size() >= 2) {
      auto u = [&](size_t i) { return static_cast<uint8_t>(in[i]); };
      size_t len = u(1) & 0x7f, head = 2;
      if (len == 126) {
        if (in.size() < 4) break;
        len = static_cast<size_t>(u(2)) << 8 | u(3);
        head = 4;
      } else if (len == 127) {
        return std::nullopt;  // no frame this test provokes is that large
      }
      if (in.size() < head + len) break;
      if ((u(0) & 0x0f) == 0x8) return static_cast<uint16_t>(u(head) << 8 | u(head + 1));
      in.erase(0, head + len);
    }
    ssize_t n = ::read(fd, buf, sizeof buf);
    if (n <= 0) return std::nullopt;
    in.append(buf, static_cast<size_t>(n));
  }
}

// Two unanswered requests with one id: their answers could not be told apart.
TEST(RelayHostile, ARepeatedRequestIdIsAProtocolError) {
  RelayProcess relay;
  HonestPair honest(relay);
  TestDevice mallory = must_register(relay, "mallory", 0);
  int fd = raw_connect(relay.port());
  std::string upgrade =
      "GET /v1/ws HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
      "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"
      "Authorization: " +
      mallory.credentials().authorization() + "\r\n\r\n";
  ASSERT_EQ(::write(fd, upgrade.data(), upgrade.size()), static_cast<ssize_t>(upgrade.size()));
  std::string response;
  char c;
  while (response.find("\r\n\r\n") == std::string::npos && ::read(fd, &c, 1) == 1) response += c;
  ASSERT_EQ(response.rfind("HTTP/1.1 101", 0), 0u) << response;
  // Two storage requests with one id in one write: the relay parses the second before it can
  // have answered the first (answers go through the store, then back to the connection).
  wire::Frame f;
  wire::Request r = make_request(wire::OP_GET_PREKEY_COUNT);
  r.set_id(77);
  *f.mutable_request() = r;
  std::string twice = client_frame(f.SerializeAsString()) + client_frame(f.SerializeAsString());
  ASSERT_EQ(::write(fd, twice.data(), twice.size()), static_cast<ssize_t>(twice.size()));
  EXPECT_EQ(read_close_code(fd, 5000), std::optional<uint16_t>(1002));
  ::close(fd);
  // Request id 0 is answered BAD_REQUEST on the same connection, which stays open.
  auto m = must_connect(relay, mallory);
  wire::Request zero = make_request(wire::OP_PING);
  zero.set_id(0);
  *f.mutable_request() = zero;
  ASSERT_TRUE(m->send_raw(f.SerializeAsString()));
  auto answer = m->wait_response(0);
  ASSERT_TRUE(answer.ok()) << answer.error().message;
  EXPECT_EQ(answer->status(), wire::BAD_REQUEST);
  expect_ok(*m, make_request(wire::OP_PING));
  honest.exchange();
}
}  // namespace
}  // namespace sotto::test
