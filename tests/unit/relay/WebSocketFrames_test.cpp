#include "WebSocketFrames.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

namespace sotto::relay::ws {
namespace {

using Event = ClientFrameReader::Event;

// A client frame as RFC 6455 section 5 describes it: masked with `key`.
std::string client_frame(uint8_t op, std::string_view payload, bool fin = true,
                         uint32_t key = 0x37fa213d, bool masked = true, uint8_t rsv = 0) {
  std::string f;
  f.push_back(static_cast<char>((fin ? 0x80 : 0) | rsv | op));
  uint8_t mask_bit = masked ? 0x80 : 0;
  if (payload.size() < 126) {
    f.push_back(static_cast<char>(mask_bit | payload.size()));
  } else if (payload.size() <= 0xFFFF) {
    f.push_back(static_cast<char>(mask_bit | 126));
    f.push_back(static_cast<char>(payload.size() >> 8));
    f.push_back(static_cast<char>(payload.size()));
  } else {
    f.push_back(static_cast<char>(mask_bit | 127));
    for (int i = 0; i < 8; ++i)
      f.push_back(static_cast<char>(uint64_t{payload.size()} >> (56 - 8 * i)));
  }
  uint8_t k[4] = {static_cast<uint8_t>(key >> 24), static_cast<uint8_t>(key >> 16),
                  static_cast<uint8_t>(key >> 8), static_cast<uint8_t>(key)};
  if (masked) f.append(reinterpret_cast<const char*>(k), 4);
  for (size_t i = 0; i < payload.size(); ++i)
    f.push_back(static_cast<char>(payload[i] ^ (masked ? k[i % 4] : 0)));
  return f;
}

// Feeds `bytes` and collects every event until the reader needs more.
std::vector<Event> feed(ClientFrameReader& r, std::string& bytes,
                        std::vector<std::string>* payloads) {
  std::vector<Event> out;
  std::span<char> d(bytes.data(), bytes.size());
  for (;;) {
    auto e = r.next(d);
    if (e.kind == Event::kNeedMore) break;
    if (payloads) payloads->emplace_back(e.payload);
    out.push_back(e);
  }
  bytes.erase(0, bytes.size() - d.size());
  return out;
}

TEST(WebSocketFrames, ServerHeadersUseTheShortestLengthForm) {
  uint8_t h[kMaxServerHeader];
  ASSERT_EQ(server_header(Opcode::kBinary, 125, h), 2u);
  EXPECT_EQ(h[0], 0x82);
  EXPECT_EQ(h[1], 125);
  ASSERT_EQ(server_header(Opcode::kPong, 126, h), 4u);
  EXPECT_EQ(h[0], 0x8A);
  EXPECT_EQ(h[1], 126);
  EXPECT_EQ((h[2] << 8) | h[3], 126);
  ASSERT_EQ(server_header(Opcode::kBinary, 65'535, h), 4u);
  ASSERT_EQ(server_header(Opcode::kClose, 65'536, h), 10u);
  EXPECT_EQ(h[0], 0x88);
  EXPECT_EQ(h[1], 127);
  uint64_t len = 0;
  for (int i = 0; i < 8; ++i) len = (len << 8) | h[2 + i];
  EXPECT_EQ(len, 65'536u);
  EXPECT_EQ(close_payload(1009), std::string("\x03\xf1", 2));
}

TEST(WebSocketFrames, UnmasksMessagesOfEveryLengthForm) {
  ClientFrameReader r(1 << 20);
  for (size_t n : {0u, 1u, 7u, 125u, 126u, 1000u, 65'535u, 65'536u, 300'000u}) {
    std::string payload(n, '\0');
    for (size_t i = 0; i < n; ++i) payload[i] = static_cast<char>(i * 31 + 7);
    std::string bytes = client_frame(0x2, payload);
    std::vector<std::string> got;
    auto events = feed(r, bytes, &got);
    ASSERT_EQ(events.size(), 1u) << n;
    EXPECT_EQ(events[0].kind, Event::kMessage);
    EXPECT_EQ(got[0], payload) << n;
    EXPECT_TRUE(bytes.empty());
  }
}

TEST(WebSocketFrames, AFrameSplitAnywhereWaitsForTheRest) {
  std::string all = client_frame(0x2, std::string(300, 'a')) + client_frame(0x9, "hi") +
                    client_frame(0x2, "second");
  for (size_t cut = 0; cut <= all.size(); ++cut) {
    ClientFrameReader r(4096);
    std::string bytes = all.substr(0, cut);
    std::vector<std::string> got;
    auto first = feed(r, bytes, &got);
    bytes += all.substr(cut);
    auto second = feed(r, bytes, &got);
    ASSERT_EQ(first.size() + second.size(), 3u) << cut;
    EXPECT_EQ(got[0], std::string(300, 'a'));
    EXPECT_EQ(got[1], "hi");
    EXPECT_EQ(got[2], "second");
    EXPECT_TRUE(bytes.empty());
  }
}

TEST(WebSocketFrames, FragmentsAreJoinedAroundControlFrames) {
  ClientFrameReader r(4096);
  std::string bytes = client_frame(0x2, "frag", false) + client_frame(0x9, "ping") +
                      client_frame(0x0, "ment", false) + client_frame(0xA, "") +
                      client_frame(0x0, "ed", true);
  std::vector<std::string> got;
  auto events = feed(r, bytes, &got);
  ASSERT_EQ(events.size(), 3u);
  EXPECT_EQ(events[0].kind, Event::kPing);
  EXPECT_EQ(got[0], "ping");
  EXPECT_EQ(events[1].kind, Event::kPong);
  EXPECT_EQ(events[2].kind, Event::kMessage);
  EXPECT_EQ(got[2], "fragmented");
  EXPECT_EQ(r.buffered(), 0u);  // freed by the call after the message
}

TEST(WebSocketFrames, CloseFramesCarryTheirCode) {
  ClientFrameReader r(4096);
  std::string bytes = client_frame(0x8, close_payload(4001) + "bye") + client_frame(0x8, "");
  auto events = feed(r, bytes, nullptr);
  ASSERT_EQ(events.size(), 2u);
  EXPECT_EQ(events[0].kind, Event::kClose);
  EXPECT_EQ(events[0].code, 4001);
  EXPECT_EQ(events[1].code, kCloseNoStatus);
}

TEST(WebSocketFrames, ProtocolViolationsBreakTheStream) {
  struct Case {
    std::string bytes;
    const char* what;
  };
  std::vector<Case> cases = {
      {client_frame(0x2, "x", true, 1, false), "unmasked"},
      {client_frame(0x2, "x", true, 1, true, 0x40), "reserved bit"},
      {client_frame(0x3, "x"), "unknown data opcode"},
      {client_frame(0xB, "x"), "unknown control opcode"},
      {client_frame(0x9, "x", false), "fragmented ping"},
      {client_frame(0x9, std::string(126, 'p')), "long ping"},
      {client_frame(0x0, "x"), "continuation first"},
      {client_frame(0x2, "x", false) + client_frame(0x2, "y"), "message inside a message"},
      {client_frame(0x8, "\x03"), "one-byte close"},
      {client_frame(0x8, close_payload(1005)), "reserved close code"},
      {client_frame(0x8, close_payload(999)), "close code below 1000"},
  };
  for (auto& c : cases) {
    ClientFrameReader r(4096);
    std::string bytes = c.bytes + client_frame(0x2, "after");
    auto events = feed(r, bytes, nullptr);
    ASSERT_EQ(events.size(), 1u) << c.what;
    EXPECT_EQ(events[0].kind, Event::kRefused) << c.what;
    EXPECT_EQ(events[0].code, kCloseProtocolError) << c.what;
    EXPECT_TRUE(r.broken()) << c.what;
    EXPECT_TRUE(bytes.empty()) << c.what;  // the rest is discarded
  }
}

TEST(WebSocketFrames, TextAndOversizedMessagesAreSkippedSoTheCloseAnswerIsSeen) {
  for (uint8_t op : {uint8_t{0x1}, uint8_t{0x2}}) {
    ClientFrameReader r(1000);
    std::string big = client_frame(op, std::string(op == 0x1 ? 10 : 5000, 'z'));
    // Only the header arrives first: the refusal comes before the payload is there.
    std::string bytes = big.substr(0, 8);
    auto events = feed(r, bytes, nullptr);
    ASSERT_EQ(events.size(), 1u);
    EXPECT_EQ(events[0].kind, Event::kRefused);
    EXPECT_EQ(events[0].code, op == 0x1 ? kCloseUnsupportedData : kCloseTooBig);
    EXPECT_FALSE(r.broken());
    bytes += big.substr(8) + client_frame(0x8, close_payload(1000));
    events = feed(r, bytes, nullptr);
    ASSERT_EQ(events.size(), 1u);
    EXPECT_EQ(events[0].kind, Event::kClose);
    EXPECT_EQ(events[0].code, 1000);
  }
  // The limit counts every fragment of a message.
  ClientFrameReader r(10);
  std::string bytes = client_frame(0x2, "123456", false) + client_frame(0x0, "789012");
  auto events = feed(r, bytes, nullptr);
  ASSERT_EQ(events.size(), 1u);
  EXPECT_EQ(events[0].code, kCloseTooBig);
}

}  // namespace
}  // namespace sotto::relay::ws
