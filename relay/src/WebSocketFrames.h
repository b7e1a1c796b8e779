// The WebSocket framing of an upgraded relay connection (RFC 6455 section 5), server side.
//
// Beast does the HTTP upgrade; the frames after it are read and written here. A Beast stream
// keeps a 2.5 KiB block per connection and needs a pending read into a buffer to notice
// incoming bytes; without it an idle connection is a socket waiting for readability and a
// few hundred bytes of state (docs/benchmarks.md, "memory per idle connection").
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>

namespace sotto::relay::ws {

enum class Opcode : uint8_t {
  kContinuation = 0x0,
  kText = 0x1,
  kBinary = 0x2,
  kClose = 0x8,
  kPing = 0x9,
  kPong = 0xA,
};

// Close codes (RFC 6455 section 7.4.1).
constexpr uint16_t kCloseNormal = 1000;
constexpr uint16_t kCloseProtocolError = 1002;
constexpr uint16_t kCloseUnsupportedData = 1003;
constexpr uint16_t kCloseNoStatus = 1005;  // never sent: a close frame without a code
constexpr uint16_t kCloseTooBig = 1009;

// The longest header of a server frame: two bytes and a 64-bit length.
constexpr size_t kMaxServerHeader = 10;

// Writes the header of one unfragmented, unmasked server frame carrying `payload_size` bytes
// into `out`; returns the header's length.
size_t server_header(Opcode op, uint64_t payload_size, uint8_t* out);

// The payload of a close frame: the code, big-endian (no reason text).
std::string close_payload(uint16_t code);

// Parses what a client sends: masked frames, no extensions, binary messages of at most
// `max_message` bytes, possibly fragmented, with control frames in between.
class ClientFrameReader {
 public:
  struct Event {
    enum Kind {
      kNeedMore,  // `data` holds no complete frame; keep it and call again with more
      kMessage,   // a whole binary message
      kPing,
      kPong,
      kClose,    // `code` is the peer's (kCloseNoStatus when it sent none)
      kRefused,  // answer with close `code`: `why` says what was wrong
    };
    Kind kind = kNeedMore;
    // kMessage, kPing, kPong: valid until the next call and until `data` changes.
    std::string_view payload;
    uint16_t code = 0;
    const char* why = "";
  };

  explicit ClientFrameReader(size_t max_message) : max_message_(max_message) {}

  // Parses the next frame of `data` and moves `data`'s start past what it consumed. Payloads
  // are unmasked in place. After kRefused with kCloseProtocolError the stream cannot be
  // parsed any further: every later call consumes all of `data` and reports kNeedMore.
  // After kRefused with another code the refused frame's payload is skipped and parsing goes
  // on, so the peer's answering close frame is still seen.
  Event next(std::span<char>& data);

  bool broken() const { return broken_; }
  // Bytes the reader holds for a fragmented message being assembled.
  size_t buffered() const { return message_.size(); }

 private:
  Event refuse(uint16_t code, const char* why);

  size_t max_message_;
  std::string message_;  // the fragments so far of a message sent in several frames
  bool in_message_ = false;
  bool deliver_pending_ = false;  // message_ was handed out: clear it on the next call
  bool broken_ = false;
  uint64_t skip_ = 0;  // payload bytes of a refused frame still to discard
};

}  // namespace sotto::relay::ws
