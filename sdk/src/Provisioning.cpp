#include "Provisioning.h"

#include <sodium.h>

#include <algorithm>
#include <cctype>
#include <cstring>

#include "PeerContent.h"

namespace sotto {

namespace {

constexpr char kCrockford[] = "0123456789ABCDEFGHJKMNPQRSTVWXYZ";
constexpr const char* kUriPrefix = "sotto://link?";
constexpr size_t kCodeLength = 8;
constexpr size_t kFingerprintLength = 24;

std::string crockford(ByteView bytes) {
  std::string out;
  uint32_t buffer = 0;
  int bits = 0;
  for (uint8_t b : bytes) {
    buffer = (buffer << 8) | b;
    bits += 8;
    while (bits >= 5) {
      out += kCrockford[(buffer >> (bits - 5)) & 31];
      bits -= 5;
    }
  }
  if (bits > 0) out += kCrockford[(buffer << (5 - bits)) & 31];
  return out;
}

// Upper case, separators removed, Crockford's look-alikes mapped; empty if a character is not
// valid.
std::string normalise(const std::string& in) {
  std::string out;
  for (char c : in) {
    if (c == '-' || c == ' ') continue;
    char u = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
    if (u == 'I' || u == 'L') u = '1';
    if (u == 'O') u = '0';
    if (!std::strchr(kCrockford, u) || u == '\0') return {};
    out += u;
  }
  return out;
}

Result<SecureBytes> provision_key(ByteView shared, ByteView e_pk, ByteView n_pk) {
  SecureBytes k(crypto_aead_xchacha20poly1305_ietf_KEYBYTES);
  crypto_generichash_state st;
  static constexpr char kLabel[] = "sotto-provision-v1";
  crypto_generichash_init(&st, nullptr, 0, k.size());
  crypto_generichash_update(&st, reinterpret_cast<const uint8_t*>(kLabel), sizeof kLabel - 1);
  crypto_generichash_update(&st, shared.data(), shared.size());
  crypto_generichash_update(&st, e_pk.data(), e_pk.size());
  crypto_generichash_update(&st, n_pk.data(), n_pk.size());
  crypto_generichash_final(&st, k.data(), k.size());
  sodium_memzero(&st, sizeof st);
  return k;
}

Bytes upper(const std::string& code) {
  Bytes out;
  for (char c : code)
    out.push_back(static_cast<uint8_t>(std::toupper(static_cast<unsigned char>(c))));
  return out;
}

SecureBytes name_key(const SecureBytes& identity_key_pair) {
  SecureBytes k(crypto_aead_xchacha20poly1305_ietf_KEYBYTES);
  static constexpr char kLabel[] = "sotto-device-name-v1";
  crypto_generichash(k.data(), k.size(), reinterpret_cast<const uint8_t*>(kLabel),
                     sizeof kLabel - 1, identity_key_pair.data(), identity_key_pair.size());
  return k;
}

}  // namespace

Result<LinkKeys> new_link_keys() {
  if (sodium_init() < 0)
    return make_error(ErrorCode::kCryptoFailure, "libsodium could not be initialised");
  LinkKeys k;
  k.public_key.resize(crypto_scalarmult_BYTES);
  k.secret_key = SecureBytes(crypto_scalarmult_SCALARBYTES);
  randombytes_buf(k.secret_key.data(), k.secret_key.size());
  if (crypto_scalarmult_base(k.public_key.data(), k.secret_key.data()) != 0)
    return make_error(ErrorCode::kCryptoFailure, "could not create a link key");
  return k;
}

std::string link_fingerprint(ByteView public_key) {
  uint8_t digest[crypto_hash_sha256_BYTES];
  crypto_hash_sha256(digest, public_key.data(), public_key.size());
  return crockford(ByteView(digest, 15));
}

std::string link_text(const std::string& code, ByteView public_key) {
  std::string all = code + link_fingerprint(public_key);
  std::string out;
  for (size_t i = 0; i < all.size(); ++i) {
    if (i && i % 4 == 0) out += '-';
    out += all[i];
  }
  return out;
}

std::string link_uri(const std::string& code, ByteView public_key) {
  std::string key(
      sodium_base64_encoded_len(public_key.size(), sodium_base64_VARIANT_URLSAFE_NO_PADDING), '\0');
  sodium_bin2base64(key.data(), key.size(), public_key.data(), public_key.size(),
                    sodium_base64_VARIANT_URLSAFE_NO_PADDING);
  key.resize(std::strlen(key.c_str()));
  return std::string(kUriPrefix) + "code=" + code + "&key=" + key;
}

Result<ParsedInvite> parse_invite(const std::string& text) {
  auto bad = [](const std::string& why) {
    return make_error(
        ErrorCode::kInvalidArgument,
        "this is not a sotto link invite (" + why +
            "); type the XXXX-XXXX-... text the new device shows, or scan its QR code");
  };
  ParsedInvite out;
  std::string t = text;
  t.erase(0, t.find_first_not_of(" \t\r\n"));
  t.erase(t.find_last_not_of(" \t\r\n") + 1);
  if (t.rfind(kUriPrefix, 0) == 0) {
    std::string query = t.substr(std::strlen(kUriPrefix));
    std::string key_text;
    size_t pos = 0;
    while (pos <= query.size()) {
      size_t amp = query.find('&', pos);
      std::string part =
          query.substr(pos, amp == std::string::npos ? std::string::npos : amp - pos);
      if (part.rfind("code=", 0) == 0) out.code = normalise(part.substr(5));
      if (part.rfind("key=", 0) == 0) key_text = part.substr(4);
      if (amp == std::string::npos) break;
      pos = amp + 1;
    }
    if (out.code.size() != kCodeLength) return bad("the code is missing or malformed");
    out.public_key.resize(crypto_scalarmult_BYTES);
    size_t len = 0;
    if (sodium_base642bin(out.public_key.data(), out.public_key.size(), key_text.data(),
                          key_text.size(), nullptr, &len, nullptr,
                          sodium_base64_VARIANT_URLSAFE_NO_PADDING) != 0 ||
        len != crypto_scalarmult_BYTES)
      return bad("the key is missing or malformed");
    return out;
  }
  std::string n = normalise(t);
  if (n.size() != kCodeLength + kFingerprintLength)
    return bad("expected 32 characters in groups of four");
  out.code = n.substr(0, kCodeLength);
  out.fingerprint = n.substr(kCodeLength);
  return out;
}

bool fingerprint_matches(const std::string& fingerprint, ByteView public_key) {
  std::string expected = link_fingerprint(public_key);
  std::string typed = normalise(fingerprint);
  if (typed.size() != expected.size()) return false;
  return sodium_memcmp(typed.data(), expected.data(), expected.size()) == 0;
}

Result<wire::ProvisionEnvelope> seal_provision(const content::ProvisionMessage& message,
                                               ByteView n_pk, const std::string& link_code) {
  if (n_pk.size() != crypto_scalarmult_BYTES)
    return make_error(ErrorCode::kInvalidKey, "the new device's link key is not 32 bytes");
  SOTTO_TRY_ASSIGN(auto e, new_link_keys());
  SecureBytes shared(crypto_scalarmult_BYTES);
  if (crypto_scalarmult(shared.data(), e.secret_key.data(), n_pk.data()) != 0)
    return make_error(ErrorCode::kInvalidKey, "the new device's link key is not usable");
  SOTTO_TRY_ASSIGN(auto k, provision_key(shared.span(), e.public_key, n_pk));
  std::string plain = message.SerializeAsString();
  Bytes nonce(crypto_aead_xchacha20poly1305_ietf_NPUBBYTES);
  randombytes_buf(nonce.data(), nonce.size());
  Bytes ad = upper(link_code);
  Bytes ct(plain.size() + crypto_aead_xchacha20poly1305_ietf_ABYTES);
  unsigned long long ct_len = 0;
  crypto_aead_xchacha20poly1305_ietf_encrypt(
      ct.data(), &ct_len, reinterpret_cast<const uint8_t*>(plain.data()), plain.size(), ad.data(),
      ad.size(), nullptr, nonce.data(), k.data());
  sodium_memzero(plain.data(), plain.size());
  ct.resize(ct_len);
  wire::ProvisionEnvelope env;
  env.set_ephemeral_public_key(e.public_key.data(), e.public_key.size());
  env.set_nonce(nonce.data(), nonce.size());
  env.set_ciphertext(ct.data(), ct.size());
  return env;
}

Result<content::ProvisionMessage> open_provision(const wire::ProvisionEnvelope& env,
                                                 const LinkKeys& keys,
                                                 const std::string& link_code) {
  auto bad = [](const std::string& why) {
    return make_error(ErrorCode::kInvalidMessage,
                      "the link approval could not be opened (" + why +
                          "); start linking again and check the code on both devices");
  };
  const std::string& e_pk = env.ephemeral_public_key();
  if (e_pk.size() != crypto_scalarmult_BYTES ||
      env.nonce().size() != crypto_aead_xchacha20poly1305_ietf_NPUBBYTES ||
      env.ciphertext().size() < crypto_aead_xchacha20poly1305_ietf_ABYTES)
    return bad("malformed envelope");
  ByteView e(reinterpret_cast<const uint8_t*>(e_pk.data()), e_pk.size());
  SecureBytes shared(crypto_scalarmult_BYTES);
  if (crypto_scalarmult(shared.data(), keys.secret_key.data(), e.data()) != 0)
    return bad("unusable key");
  SOTTO_TRY_ASSIGN(auto k, provision_key(shared.span(), e, keys.public_key));
  Bytes ad = upper(link_code);
  SecureBytes plain(env.ciphertext().size());
  unsigned long long len = 0;
  if (crypto_aead_xchacha20poly1305_ietf_decrypt(
          plain.data(), &len, nullptr, reinterpret_cast<const uint8_t*>(env.ciphertext().data()),
          env.ciphertext().size(), ad.data(), ad.size(),
          reinterpret_cast<const uint8_t*>(env.nonce().data()), k.data()) != 0)
    return bad("it was not encrypted for this device");
  content::ProvisionMessage msg;
  if (Status read = parse_from_peer(ByteView(plain.data(), static_cast<size_t>(len)), msg);
      !read.ok())
    return bad("unreadable contents (" + read.error().message + ")");
  std::string inside = msg.link_code();
  std::transform(inside.begin(), inside.end(), inside.begin(),
                 [](unsigned char c) { return static_cast<char>(std::toupper(c)); });
  Bytes ours = upper(link_code);
  if (inside != std::string(ours.begin(), ours.end())) return bad("it names another link code");
  return msg;
}

Result<Bytes> seal_device_name(const std::string& name, const SecureBytes& identity_key_pair) {
  if (name.empty()) return Bytes();
  if (name.size() > 200)
    return make_error(ErrorCode::kInvalidArgument, "a device name is at most 200 bytes");
  SecureBytes k = name_key(identity_key_pair);
  Bytes out(crypto_aead_xchacha20poly1305_ietf_NPUBBYTES + name.size() +
            crypto_aead_xchacha20poly1305_ietf_ABYTES);
  randombytes_buf(out.data(), crypto_aead_xchacha20poly1305_ietf_NPUBBYTES);
  unsigned long long len = 0;
  crypto_aead_xchacha20poly1305_ietf_encrypt(
      out.data() + crypto_aead_xchacha20poly1305_ietf_NPUBBYTES, &len,
      reinterpret_cast<const uint8_t*>(name.data()), name.size(), nullptr, 0, nullptr, out.data(),
      k.data());
  return out;
}

std::optional<std::string> open_device_name(ByteView sealed, const SecureBytes& identity_key_pair) {
  constexpr size_t kNonce = crypto_aead_xchacha20poly1305_ietf_NPUBBYTES;
  if (sealed.size() < kNonce + crypto_aead_xchacha20poly1305_ietf_ABYTES) return std::nullopt;
  SecureBytes k = name_key(identity_key_pair);
  std::string out(sealed.size(), '\0');
  unsigned long long len = 0;
  if (crypto_aead_xchacha20poly1305_ietf_decrypt(
          reinterpret_cast<uint8_t*>(out.data()), &len, nullptr, sealed.data() + kNonce,
          sealed.size() - kNonce, nullptr, 0, sealed.data(), k.data()) != 0)
    return std::nullopt;
  out.resize(len);
  return out;
}

}  // namespace sotto
