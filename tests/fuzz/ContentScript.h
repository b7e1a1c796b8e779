// The input language of fuzz_content, shared with the program that writes its seeds: who is in
// the world the target builds, and how an input encodes the envelopes it receives.
//
// The world: this device ("me", device 1 of kMe) with a profile on disk and a Client; two
// other accounts with a session with it, kPeer (alice) and kStranger (carol); and this
// account's own second device (kMe, device 2). All four are in the group kGroupId (alice is
// its admin) and have given this device their sender keys for it. History already holds the
// messages named by the k...Message ids below.
//
// An input is a series of steps, each an op byte and its operands:
//   kPairwise  sender, flags, u16 length, Content bytes: encrypted over the sender's session
//   kGroup     sender, flags, u16 length, Content bytes: under the sender's key for the group
//   kGarbage   sender, type, u16 length, bytes: an envelope whose ciphertext is those bytes
//   kDeliver   the envelopes made so far reach the Client, as one batch
//   kClock     u16: the clock moves on by that many times 10 s
//   kRelay     u16 length, bytes: a frame from the relay; a push in it reaches the Client as
//              its connection hands pushes over (envelopes, device lists, presence)
// Envelopes also reach the Client when four are waiting and at the end of the input. A
// sender byte picks alice, carol or the own device (modulo 3); flags: bit 0 ephemeral, bit 1
// no relay timestamp. u16 is little-endian; past the end of the input every byte reads as 0.
#pragma once

#include <cstdint>
#include <string>

namespace sotto::fuzz {

enum ContentOp : uint8_t { kPairwise, kGroup, kGarbage, kDeliver, kClock, kRelay, kContentOps };
enum ContentSender : uint8_t { kFromPeer, kFromStranger, kFromOwnDevice, kSenders };
enum EnvelopeFlags : uint8_t { kEphemeral = 1, kNoServerTime = 2 };

// Account ids (16 bytes) and the group id (32 bytes), raw.
inline std::string account_bytes(char fill) { return std::string(16, fill); }
inline const std::string kMe = account_bytes('\x11');
inline const std::string kPeer = account_bytes('\xaa');
inline const std::string kStranger = account_bytes('\xcc');
inline const std::string kGroupId(32, 'G');

// Message ids (16 bytes) of what history holds when an input starts.
inline std::string message_id(uint8_t n) { return std::string(15, '\0') + char(n); }
inline const std::string kPeerMessage = message_id(1);           // alice -> me, 1:1
inline const std::string kOwnToPeerMessage = message_id(2);      // me (device 2) -> alice, 1:1
inline const std::string kOwnToStrangerMessage = message_id(3);  // me (device 2) -> carol
inline const std::string kPeerGroupMessage = message_id(4);      // alice -> the group
inline const std::string kOwnGroupMessage = message_id(5);       // me (device 2) -> the group
inline const std::string kStrangerMessage = message_id(6);       // carol -> me, 1:1

// The clock when an input starts (ms since the epoch); the world was built 10 minutes before.
inline constexpr uint64_t kWorldBuiltMs = 1'750'000'000'000;
inline constexpr uint64_t kInputStartMs = kWorldBuiltMs + 600'000;

}  // namespace sotto::fuzz
