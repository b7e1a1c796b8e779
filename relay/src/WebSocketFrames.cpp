#include "WebSocketFrames.h"

#include <algorithm>
#include <cstring>

namespace sotto::relay::ws {

size_t server_header(Opcode op, uint64_t payload_size, uint8_t* out) {
  out[0] = static_cast<uint8_t>(0x80 | static_cast<uint8_t>(op));  // FIN, no RSV bits
  if (payload_size < 126) {
    out[1] = static_cast<uint8_t>(payload_size);
    return 2;
  }
  if (payload_size <= 0xFFFF) {
    out[1] = 126;
    out[2] = static_cast<uint8_t>(payload_size >> 8);
    out[3] = static_cast<uint8_t>(payload_size);
    return 4;
  }
  out[1] = 127;
  for (int i = 0; i < 8; ++i) out[2 + i] = static_cast<uint8_t>(payload_size >> (56 - 8 * i));
  return 10;
}

std::string close_payload(uint16_t code) {
  std::string p(2, '\0');
  p[0] = static_cast<char>(code >> 8);
  p[1] = static_cast<char>(code & 0xFF);
  return p;
}

namespace {

bool valid_close_code(uint16_t c) {
  // RFC 6455 7.4: 1004-1006 and 1015 must not appear on the wire; 1012-1014 are registered.
  if (c >= 1000 && c <= 1003) return true;
  if (c >= 1007 && c <= 1014) return true;
  return c >= 3000 && c <= 4999;
}

void unmask(char* p, size_t n, const uint8_t key[4]) {
  uint64_t wide;
  uint8_t k8[8];
  for (int i = 0; i < 8; ++i) k8[i] = key[i & 3];
  std::memcpy(&wide, k8, 8);
  size_t i = 0;
  for (; i + 8 <= n; i += 8) {
    uint64_t w;
    std::memcpy(&w, p + i, 8);
    w ^= wide;
    std::memcpy(p + i, &w, 8);
  }
  for (; i < n; ++i) p[i] = static_cast<char>(p[i] ^ key[i & 3]);
}

}  // namespace

ClientFrameReader::Event ClientFrameReader::refuse(uint16_t code, const char* why) {
  Event e;
  e.kind = Event::kRefused;
  e.code = code;
  e.why = why;
  if (code == kCloseProtocolError) broken_ = true;
  in_message_ = false;
  message_.clear();
  message_.shrink_to_fit();
  return e;
}

ClientFrameReader::Event ClientFrameReader::next(std::span<char>& data) {
  if (deliver_pending_) {
    deliver_pending_ = false;
    message_.clear();
    if (message_.capacity() > 4096) message_.shrink_to_fit();
  }
  for (;;) {
    if (broken_) {
      data = data.subspan(data.size());
      return {};
    }
    if (skip_) {
      size_t n = static_cast<size_t>(std::min<uint64_t>(skip_, data.size()));
      skip_ -= n;
      data = data.subspan(n);
      if (skip_) return {};
    }
    if (data.size() < 2) return {};
    auto* b = reinterpret_cast<const uint8_t*>(data.data());
    const bool fin = b[0] & 0x80;
    const uint8_t rsv = b[0] & 0x70;
    const uint8_t op = b[0] & 0x0F;
    const bool masked = b[1] & 0x80;
    uint64_t len = b[1] & 0x7F;
    size_t header = 2;
    if (len == 126) {
      header = 4;
      if (data.size() < header) return {};
      len = (uint64_t{b[2]} << 8) | b[3];
    } else if (len == 127) {
      header = 10;
      if (data.size() < header) return {};
      len = 0;
      for (int i = 0; i < 8; ++i) len = (len << 8) | b[2 + i];
      if (len >> 63) return refuse(kCloseProtocolError, "frame length has its top bit set");
    }
    if (rsv) return refuse(kCloseProtocolError, "reserved bits set (no extension was agreed)");
    if (!masked) return refuse(kCloseProtocolError, "client frame not masked");
    const bool control = op & 0x8;
    if (control) {
      if (op != 0x8 && op != 0x9 && op != 0xA)
        return refuse(kCloseProtocolError, "unknown control opcode");
      if (!fin) return refuse(kCloseProtocolError, "fragmented control frame");
      if (len > 125) return refuse(kCloseProtocolError, "control frame longer than 125 bytes");
    } else {
      if (op > 0x2) return refuse(kCloseProtocolError, "unknown data opcode");
      if (op == 0x0 && !in_message_)
        return refuse(kCloseProtocolError, "continuation frame without a message");
      if (op != 0x0 && in_message_)
        return refuse(kCloseProtocolError, "new message inside a fragmented one");
      if (op == 0x1 || len > max_message_ - std::min(max_message_, message_.size())) {
        // The frame boundary is known: skip its payload, so what follows still parses.
        uint64_t after_header = data.size() - std::min<size_t>(data.size(), header + 4);
        uint64_t have = std::min<uint64_t>(len, after_header);
        skip_ = len - have;
        data = data.subspan(std::min<size_t>(data.size(), header + 4 + have));
        if (op == 0x1)
          return refuse(kCloseUnsupportedData, "text message (the protocol is binary)");
        return refuse(kCloseTooBig, "message larger than the frame limit");
      }
    }
    header += 4;  // the masking key
    if (data.size() < header || data.size() - header < len) return {};
    uint8_t key[4];
    std::memcpy(key, data.data() + header - 4, 4);
    char* payload = data.data() + header;
    const size_t n = static_cast<size_t>(len);
    unmask(payload, n, key);
    data = data.subspan(header + n);
    Event e;
    switch (op) {
      case 0x8: {
        if (n == 1) return refuse(kCloseProtocolError, "close frame with a one-byte payload");
        e.kind = Event::kClose;
        e.code = kCloseNoStatus;
        if (n >= 2) {
          e.code = static_cast<uint16_t>((static_cast<uint8_t>(payload[0]) << 8) |
                                         static_cast<uint8_t>(payload[1]));
          if (!valid_close_code(e.code))
            return refuse(kCloseProtocolError, "close frame with an invalid code");
        }
        return e;
      }
      case 0x9:
      case 0xA:
        e.kind = op == 0x9 ? Event::kPing : Event::kPong;
        e.payload = std::string_view(payload, n);
        return e;
      default:
        break;
    }
    if (fin && !in_message_) {
      e.kind = Event::kMessage;
      e.payload = std::string_view(payload, n);
      return e;
    }
    message_.append(payload, n);
    in_message_ = !fin;
    if (fin) {
      deliver_pending_ = true;
      e.kind = Event::kMessage;
      e.payload = message_;
      return e;
    }
  }
}

}  // namespace sotto::relay::ws
