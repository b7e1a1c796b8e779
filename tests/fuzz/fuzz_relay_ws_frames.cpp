// Untrusted bytes: what a client sends on an upgraded relay connection, fed to the frame
// reader in pieces the first byte chooses, the way reads from a socket cut them.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>

#include "WebSocketFrames.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  const size_t piece = 1 + data[0] % 64;
  constexpr size_t kMax = 512;
  sotto::relay::ws::ClientFrameReader reader(kMax);
  std::string pending;
  for (size_t at = 1; at < size; at += piece) {
    pending.append(reinterpret_cast<const char*>(data) + at, std::min(piece, size - at));
    std::span<char> rest(pending.data(), pending.size());
    for (;;) {
      auto e = reader.next(rest);
      if (e.kind == sotto::relay::ws::ClientFrameReader::Event::kNeedMore) break;
      if (e.payload.size() > kMax) std::abort();
    }
    pending.erase(0, pending.size() - rest.size());
    // An incomplete frame is never longer than its header and the largest allowed payload.
    if (pending.size() > kMax + 14) std::abort();
  }
  return 0;
}
