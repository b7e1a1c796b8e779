#include "PeerContent.h"

#include <google/protobuf/descriptor.h>
#include <google/protobuf/message.h>
#include <google/protobuf/stubs/logging.h>

#include <algorithm>
#include <mutex>
#include <vector>

#include "Utf8.h"
#include "sotto/proto/content.pb.h"

namespace sotto {
namespace {

using google::protobuf::FieldDescriptor;
using google::protobuf::Message;

Status bad_text(const std::string& path) {
  return make_error(ErrorCode::kInvalidMessage,
                    "the field " + path + " holds text that is not UTF-8: the sender's software " +
                        "is broken or hostile; the message was dropped");
}

Status check(const Message& m, const std::string& prefix) {
  const auto* r = m.GetReflection();
  std::vector<const FieldDescriptor*> fields;
  r->ListFields(m, &fields);
  std::string scratch;
  for (const FieldDescriptor* f : fields) {
    std::string path = prefix + f->name();
    if (f->type() == FieldDescriptor::TYPE_MESSAGE) {
      if (f->is_repeated()) {
        for (int i = 0, n = r->FieldSize(m, f); i < n; ++i)
          SOTTO_TRY(check(r->GetRepeatedMessage(m, f, i), path + "[" + std::to_string(i) + "]."));
      } else {
        SOTTO_TRY(check(r->GetMessage(m, f), path + "."));
      }
    } else if (f->type() == FieldDescriptor::TYPE_BYTES &&
               f->options().GetExtension(content::utf8)) {
      if (f->is_repeated()) {
        for (int i = 0, n = r->FieldSize(m, f); i < n; ++i)
          if (!is_valid_utf8(r->GetRepeatedStringReference(m, f, i, &scratch)))
            return bad_text(path + "[" + std::to_string(i) + "]");
      } else if (!is_valid_utf8(r->GetStringReference(m, f, &scratch))) {
        return bad_text(path);
      }
    }
  }
  return {};
}

// The routes alive. The handler copies the list and calls each outside the lock, so a log
// callback may create or destroy a Client.
using Sink = std::shared_ptr<const std::function<void(const std::string&)>>;
std::mutex routes_mu;
std::vector<Sink>& routes() {
  static std::vector<Sink> r;
  return r;
}

void route_protobuf_log(google::protobuf::LogLevel level, const char* file, int line,
                        const std::string& message) {
  // Copied at construction (not assigned: GCC 12 for arm64 then warns of a null shared_ptr
  // in the destruction of the empty vector's elements).
  std::vector<Sink> sinks = [] {
    std::lock_guard lock(routes_mu);
    return routes();
  }();
  if (sinks.empty()) return;
  const char* name = level == google::protobuf::LOGLEVEL_FATAL     ? "fatal"
                     : level == google::protobuf::LOGLEVEL_ERROR   ? "error"
                     : level == google::protobuf::LOGLEVEL_WARNING ? "warning"
                                                                   : "info";
  std::string text = std::string("protobuf ") + name + " (" + (file ? file : "?") + ":" +
                     std::to_string(line) + "): " + message;
  for (const auto& s : sinks) (*s)(text);
}

}  // namespace

Status check_text_fields(const Message& message) { return check(message, ""); }

Status parse_from_peer(ByteView bytes, Message& out) {
  if (!out.ParseFromArray(bytes.data(), static_cast<int>(bytes.size())))
    return make_error(ErrorCode::kInvalidMessage,
                      "the sender's " + out.GetDescriptor()->name() +
                          " is not readable (a broken or newer sender); it was dropped");
  return check_text_fields(out);
}

LibraryLogRoute::LibraryLogRoute(std::function<void(const std::string&)> log)
    : log_(std::make_shared<const std::function<void(const std::string&)>>(
          log ? std::move(log) : [](const std::string&) {})) {
  static std::once_flag installed;
  std::call_once(installed, [] { google::protobuf::SetLogHandler(&route_protobuf_log); });
  std::lock_guard lock(routes_mu);
  routes().push_back(log_);
}

LibraryLogRoute::~LibraryLogRoute() {
  std::lock_guard lock(routes_mu);
  auto& r = routes();
  r.erase(std::remove(r.begin(), r.end(), log_), r.end());
}

}  // namespace sotto
