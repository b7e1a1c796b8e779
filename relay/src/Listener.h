// The relay's listening socket, opened before anything else (the store included), so that a
// port in use or an address the machine does not have is the first thing the operator hears
// of, in the words of --listen.
#pragma once

#include <cstdint>
#include <string>

#include "sotto/Result.h"

namespace sotto::relay {

// A bound, listening TCP socket on `host` (an IPv4 or IPv6 literal) and `port` (0: any free
// one), with SO_REUSEADDR, and SO_REUSEPORT when `reuse_port`. The caller owns the descriptor
// (close-on-exec). kInvalidArgument or kUnavailable with what to change.
Result<int> open_listener(const std::string& host, uint16_t port, bool reuse_port);

// The same rule for a --listen host, without opening anything (Config).
bool is_ip_literal(const std::string& host);

}  // namespace sotto::relay
