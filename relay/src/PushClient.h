// Wake-up pushes over HTTP(S) (protocol.md section 10): a POST of {"sotto":"wake"} with
// retries and backoff, run on the server's io_context so it never blocks message flow.
#pragma once

#include <memory>

#include "Config.h"
#include "Relay.h"

namespace boost::asio {
class io_context;
}

namespace sotto::relay {

std::unique_ptr<Pusher> make_push_client(boost::asio::io_context& ioc, const Config& config);

}  // namespace sotto::relay
