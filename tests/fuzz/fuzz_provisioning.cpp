// Untrusted bytes of device linking: an invite as typed or scanned (parse_invite), a
// ProvisionEnvelope as the relay forwards it (open_provision), the ProvisionMessage inside an
// authentic envelope as the new device takes it in (finish_link: the account id, then the
// identity key pair it adopts), and a device name as the relay lists it (open_device_name).
// The first byte picks which; the rest is the input.
//
// Checked:
//  - an accepted invite has an 8-character code in Crockford's alphabet and either a 32-byte
//    key (URI) or a 24-character fingerprint (text); the text and URI made from its code
//    parse back to the same code, and the fingerprint matches the key it was made from;
//  - an envelope opens only when it was sealed for this device and this code;
//  - an identity key pair the new device adopts signs for the identity key it announces;
//  - a device name opens only when sealed under the account's key, to what was sealed.
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>

#include "MemoryProtocolStore.h"
#include "Provisioning.h"
#include "SessionCrypto.h"
#include "sotto/keys/KeyGen.h"

namespace {

using namespace sotto;

[[noreturn]] void violated(const std::string& what) {
  std::fprintf(stderr, "provisioning invariant violated: %s\n", what.c_str());
  std::abort();
}

constexpr char kAlphabet[] = "0123456789ABCDEFGHJKMNPQRSTVWXYZ";
constexpr char kCode[] = "K7M2QX9B";

bool crockford(const std::string& s) {
  for (char c : s)
    if (c == '\0' || !std::strchr(kAlphabet, c)) return false;
  return true;
}

struct Keys {
  std::shared_ptr<keys::Context> ctx = keys::Context::create().value();
  LinkKeys link = new_link_keys().value();
  keys::IdentityKeyPair account = keys::generate_identity(*ctx).value();
};

void check_invite(const std::string& text) {
  auto invite = parse_invite(text);
  if (!invite.ok()) {
    if (invite.code() != ErrorCode::kInvalidArgument) violated("an invite failed unexpectedly");
    return;
  }
  if (invite->code.size() != 8 || !crockford(invite->code))
    violated("an invite with the code \"" + invite->code + "\" was accepted");
  if (invite->public_key.empty()) {
    if (invite->fingerprint.size() != 24 || !crockford(invite->fingerprint))
      violated("an invite with the fingerprint \"" + invite->fingerprint + "\" was accepted");
    return;
  }
  if (invite->public_key.size() != 32 || !invite->fingerprint.empty())
    violated("an invite URI gave a key of " + std::to_string(invite->public_key.size()) + " bytes");
  auto uri = parse_invite(link_uri(invite->code, invite->public_key));
  if (!uri.ok() || uri->code != invite->code || uri->public_key != invite->public_key)
    violated("the URI made from an invite does not parse back to it");
  auto typed = parse_invite(link_text(invite->code, invite->public_key));
  if (!typed.ok() || typed->code != invite->code ||
      !fingerprint_matches(typed->fingerprint, invite->public_key))
    violated("the text made from an invite does not parse back to it");
}

// The new device's side of an approval, as finish_link() takes it in.
void adopt(const Keys& k, const content::ProvisionMessage& sent, const std::string& relay_account) {
  auto sealed = seal_provision(sent, k.link.public_key, kCode);
  if (!sealed.ok()) violated("cannot seal: " + sealed.error().message);
  auto msg = open_provision(*sealed, k.link, kCode);
  if (!msg.ok()) {
    if (sent.link_code().size() == 8 && ::strncasecmp(sent.link_code().c_str(), kCode, 8) == 0)
      violated("an approval for this code did not open: " + msg.error().message);
    return;
  }
  if (msg->account_id().size() != 16 || msg->account_id() != relay_account) return;
  keys::IdentityKeyPair pair{
      Bytes(msg->identity_key().begin(), msg->identity_key().end()),
      SecureBytes(reinterpret_cast<const uint8_t*>(msg->identity_key_pair().data()),
                  msg->identity_key_pair().size())};
  MemoryProtocolStore store;
  auto crypto = SessionCrypto::create(k.ctx, store);
  if (!crypto.ok()) violated("cannot make a crypto core");
  std::string account(32, 'a');
  if (!(*crypto)->import_identity(account, 0x7fffffff, pair, 0).ok()) return;
  // What the new device will sign its link request with must verify under the key it names.
  auto adopted = (*crypto)->identity_key_pair();
  Bytes payload = {1, 2, 3};
  auto sig = keys::sign_payload(*k.ctx, adopted, keys::SignedPurpose::kLink, payload);
  if (!sig.ok() || !keys::verify_payload(*k.ctx, (*crypto)->identity().public_key,
                                         keys::SignedPurpose::kLink, payload, *sig)
                        .ok())
    violated("the new device adopted an identity key pair that does not sign for its key");
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static Keys k;
  if (size == 0) return 0;
  std::string rest(reinterpret_cast<const char*>(data + 1), size - 1);
  switch (data[0] % 5) {
    case 0:
      check_invite(rest);
      break;
    case 1: {
      wire::ProvisionEnvelope env;
      if (!env.ParseFromString(rest)) break;
      if (open_provision(env, k.link, kCode).ok())
        violated("an envelope the target did not seal opened");
      break;
    }
    case 2: {
      // Anything the approving device may put inside: its account, a key pair, a code.
      content::ProvisionMessage sent;
      if (!sent.ParseFromString(rest)) break;
      adopt(k, sent, sent.account_id());
      break;
    }
    case 3: {
      // The real account's key pair with one of its parts replaced by the input's bytes.
      content::ProvisionMessage sent;
      sent.set_account_id(std::string(16, 'A'));
      sent.set_link_code(kCode);
      const auto& a = k.account;
      sent.set_identity_key(std::string(a.public_key.begin(), a.public_key.end()));
      sent.set_identity_key_pair(
          std::string(a.serialized.span().begin(), a.serialized.span().end()));
      if (!rest.empty() && rest[0] & 1)
        sent.set_identity_key(rest.substr(1));
      else if (!rest.empty())
        sent.set_identity_key_pair(rest.substr(1));
      adopt(k, sent, sent.account_id());
      break;
    }
    case 4: {
      auto name = open_device_name(as_bytes(rest), k.account.serialized);
      if (name) violated("a device name the target did not seal opened");
      if (rest.size() <= 200 && !rest.empty()) {
        auto sealed = seal_device_name(rest, k.account.serialized);
        if (!sealed.ok()) violated("cannot seal a device name: " + sealed.error().message);
        auto opened = open_device_name(*sealed, k.account.serialized);
        if (!opened || *opened != rest) violated("a sealed device name did not open to itself");
      }
      break;
    }
  }
  return 0;
}
