// Reading what another party wrote inside a ciphertext (content.proto: a peer's Content, a
// ProvisionMessage), and keeping libprotobuf's own log lines off the application's stderr.
//
// Text fields in content.proto are `bytes` marked [(utf8) = true]: libprotobuf does not check
// their encoding, so parse_from_peer() does, strictly (RFC 3629, as is_valid_utf8()), at any
// depth. Everything the SDK stores or shows from a peer went through it.
#pragma once

#include <functional>
#include <memory>
#include <string>

#include "sotto/Bytes.h"
#include "sotto/Result.h"

namespace google::protobuf {
class Message;
}

namespace sotto {

// Parses `bytes` into `out` and checks every text field in it. kInvalidMessage when the bytes
// are not a `out`-shaped protobuf, or naming the first field whose text is not UTF-8 (by path,
// e.g. "data_message.quote.text"; never its contents).
Status parse_from_peer(ByteView bytes, google::protobuf::Message& out);

// The text check alone, for a message already parsed.
Status check_text_fields(const google::protobuf::Message& message);

// libprotobuf logs through one handler per process, to stderr unless told otherwise. While at
// least one LibraryLogRoute exists, its lines go to the `log` of every route alive (each
// Client's ClientOptions::log) as "protobuf: ..." lines; with none, they are dropped. Never
// to stderr: an application's stderr is its own.
class LibraryLogRoute {
 public:
  explicit LibraryLogRoute(std::function<void(const std::string&)> log);
  ~LibraryLogRoute();
  LibraryLogRoute(const LibraryLogRoute&) = delete;
  LibraryLogRoute& operator=(const LibraryLogRoute&) = delete;

 private:
  std::shared_ptr<const std::function<void(const std::string&)>> log_;
};

}  // namespace sotto
