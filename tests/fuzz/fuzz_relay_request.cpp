// Untrusted bytes: a WebSocket message as the relay receives it, parsed as a Frame and, for
// the ops with nested signed payloads, the payload and its DeviceKeys checks.
#include <cstddef>
#include <cstdint>

#include "Validate.h"
#include "sotto/proto/wire.pb.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static auto ctx = sotto::keys::Context::create().value();
  static const sotto::relay::Limits limits;
  sotto::wire::Frame frame;
  if (!frame.ParseFromArray(data, static_cast<int>(size)) || !frame.has_request()) return 0;
  const auto& r = frame.request();
  if (r.has_registration()) {
    sotto::wire::RegistrationPayload p;
    if (p.ParseFromString(r.registration().payload())) {
      (void)sotto::relay::valid_handle(p.handle());
      (void)sotto::relay::check_device_keys(*ctx, p.identity_key(), p.device(), limits);
    }
  }
  if (r.has_link_device()) {
    sotto::wire::LinkPayload p;
    if (p.ParseFromString(r.link_device().payload()))
      (void)sotto::relay::check_device_keys(*ctx, p.identity_key(), p.device(), limits);
  }
  if (r.has_upload_prekeys())
    (void)sotto::relay::check_prekey_upload(*ctx, std::string(33, '\x05'), r.upload_prekeys(),
                                            limits);
  if (r.has_set_push_endpoint()) {
    sotto::relay::Refusal why;
    (void)sotto::relay::parse_push_url(r.set_push_endpoint().url(), true, false, 2048, why);
  }
  if (r.has_provision_lookup())
    (void)sotto::relay::normalize_link_code(r.provision_lookup().link_code());
  return 0;
}
