#include "WireRequests.h"

#include <sodium.h>

#include <chrono>
#include <cstring>

namespace sotto::test {

std::string Credentials::authorization() const {
  std::string user =
      to_hex(account_id) + "." + std::to_string(device_id) + ":" + to_hex(auth_secret);
  std::string b64(sodium_base64_ENCODED_LEN(user.size(), sodium_base64_VARIANT_ORIGINAL), '\0');
  sodium_bin2base64(b64.data(), b64.size(), reinterpret_cast<const unsigned char*>(user.data()),
                    user.size(), sodium_base64_VARIANT_ORIGINAL);
  b64.resize(std::strlen(b64.c_str()));
  return "Basic " + b64;
}

const keys::Context& test_context() {
  static std::shared_ptr<keys::Context> ctx = keys::Context::create().value();
  return *ctx;
}

uint64_t unix_ms() {
  return static_cast<uint64_t>(std::chrono::duration_cast<std::chrono::milliseconds>(
                                   std::chrono::system_clock::now().time_since_epoch())
                                   .count());
}

Bytes random_message_id() {
  Bytes id(16);
  randombytes_buf(id.data(), id.size());
  uint64_t ms = unix_ms();
  for (int i = 0; i < 6; ++i) id[i] = static_cast<uint8_t>(ms >> (8 * (5 - i)));
  return id;
}

wire::Request make_request(wire::Op op) {
  wire::Request r;
  r.set_op(op);
  // The op's (empty) body: the field numbered 100 + op.
  if (const auto* field = wire::Request::descriptor()->FindFieldByNumber(100 + op))
    r.GetReflection()->MutableMessage(&r, field);
  return r;
}

Result<TestDevice> make_device(const std::string& handle, uint32_t prekeys,
                               uint32_t first_prekey_id, const keys::IdentityKeyPair* identity) {
  const keys::Context& ctx = test_context();
  TestDevice d;
  d.handle = handle;
  if (identity) {
    d.identity = *identity;
  } else {
    SOTTO_TRY_ASSIGN(d.identity, keys::generate_identity(ctx));
  }
  SOTTO_TRY_ASSIGN(d.registration_id, keys::generate_registration_id(ctx));
  d.auth_secret.resize(32);
  randombytes_buf(d.auth_secret.data(), d.auth_secret.size());
  SOTTO_TRY_ASSIGN(d.signed_prekey, keys::generate_signed_prekey(ctx, d.identity, 1, unix_ms()));
  if (prekeys) {
    SOTTO_TRY_ASSIGN(d.one_time_prekeys,
                     keys::generate_one_time_prekeys(ctx, first_prekey_id, prekeys));
  }
  SOTTO_TRY_ASSIGN(auto lr, keys::generate_one_time_prekeys(ctx, 0xFFFFFF, 1));
  d.last_resort = std::move(lr[0]);
  d.last_resort.id = 0xFFFFFF;
  return d;
}

wire::DeviceKeys device_keys(const TestDevice& d) {
  wire::DeviceKeys k;
  k.set_registration_id(d.registration_id);
  k.set_auth_secret(std::string(as_chars(d.auth_secret)));
  auto* spk = k.mutable_signed_prekey();
  spk->set_id(d.signed_prekey.id);
  spk->set_public_key(std::string(as_chars(d.signed_prekey.public_key)));
  spk->set_signature(std::string(as_chars(d.signed_prekey.signature)));
  spk->set_timestamp_ms(d.signed_prekey.timestamp_ms);
  for (const auto& p : d.one_time_prekeys) {
    auto* o = k.add_one_time_prekeys();
    o->set_id(p.id);
    o->set_public_key(std::string(as_chars(p.public_key)));
  }
  k.mutable_last_resort_prekey()->set_id(0xFFFFFF);
  k.mutable_last_resort_prekey()->set_public_key(std::string(as_chars(d.last_resort.public_key)));
  return k;
}

wire::Request register_request(const TestDevice& d, uint64_t now_ms, const std::string& invite) {
  wire::RegistrationPayload payload;
  payload.set_handle(d.handle);
  payload.set_identity_key(std::string(as_chars(d.identity.public_key)));
  *payload.mutable_device() = device_keys(d);
  payload.set_timestamp_ms(now_ms ? now_ms : unix_ms());
  Bytes nonce(16);
  randombytes_buf(nonce.data(), nonce.size());
  payload.set_nonce(std::string(as_chars(nonce)));
  payload.set_invite(invite);
  std::string bytes = payload.SerializeAsString();
  auto sig = keys::sign_payload(test_context(), d.identity, keys::SignedPurpose::kRegistration,
                                as_bytes(bytes));
  wire::Request r = make_request(wire::OP_REGISTER);
  r.mutable_registration()->set_payload(bytes);
  if (sig.ok()) r.mutable_registration()->set_signature(std::string(as_chars(*sig)));
  return r;
}

wire::Request send_request(const Bytes& message_id, const std::vector<Copy>& copies, bool urgent,
                           bool ephemeral, bool targeted) {
  wire::Request r = make_request(wire::OP_SEND);
  auto* s = r.mutable_send();
  s->set_message_id(std::string(as_chars(message_id)));
  s->set_urgent(urgent);
  s->set_ephemeral(ephemeral);
  s->set_targeted(targeted);
  for (const auto& c : copies) {
    auto* m = s->add_messages();
    m->set_account_id(std::string(as_chars(c.to->account_id)));
    m->set_device_id(c.to->device_id);
    m->set_registration_id(c.registration_id ? c.registration_id : c.to->registration_id);
    m->set_type(wire::Envelope::MESSAGE);
    m->set_ciphertext(c.ciphertext);
  }
  return r;
}

}  // namespace sotto::test
