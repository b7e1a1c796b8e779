#include "Validate.h"

#include <arpa/inet.h>
#include <sodium.h>

#include <algorithm>
#include <cctype>
#include <charconv>
#include <set>

#include "sotto/keys/KeyGen.h"

namespace sotto::relay {
namespace {

constexpr std::string_view kCrockford = "0123456789ABCDEFGHJKMNPQRSTVWXYZ";
constexpr unsigned char kAuthHashKey[] = "sotto-relay-auth-v1";
constexpr unsigned char kInviteHashKey[] = "sotto-relay-invite-v1";
constexpr size_t kInviteChars = 25;

}  // namespace

bool valid_handle(std::string_view h) {
  if (h.size() < 3 || h.size() > 32) return false;
  if (h.front() < 'a' || h.front() > 'z') return false;
  if (h.back() == '.') return false;
  char prev = 0;
  for (char c : h) {
    bool ok = (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_' || c == '.';
    if (!ok) return false;
    if (c == '.' && prev == '.') return false;
    prev = c;
  }
  return true;
}

bool valid_public_key(const keys::Context& ctx, std::string_view key) {
  if (key.size() != 33) return false;
  return keys::decode_public_key(ctx, as_bytes(key), "a public key").ok();
}

Check check_device_keys(const keys::Context& ctx, std::string_view identity_key,
                        const wire::DeviceKeys& d, const Limits& limits) {
  if (!valid_public_key(ctx, identity_key))
    return bad_request("identity_key is not a valid 33-byte public key");
  if (!d.has_signed_prekey() || !valid_public_key(ctx, d.signed_prekey().public_key()))
    return bad_request("device.signed_prekey.public_key is not a valid 33-byte public key");
  for (const auto& k : d.one_time_prekeys())
    if (!valid_public_key(ctx, k.public_key()))
      return bad_request("one-time prekey " + std::to_string(k.id()) +
                         " is not a valid 33-byte public key");
  if (!d.has_last_resort_prekey() || !valid_public_key(ctx, d.last_resort_prekey().public_key()))
    return bad_request("device.last_resort_prekey is missing or not a valid public key");
  if (d.registration_id() < 1 || d.registration_id() > 16380)
    return bad_request("device.registration_id must be in 1..16380");
  if (d.auth_secret().size() != 32) return bad_request("device.auth_secret must be 32 bytes");
  if (d.signed_prekey().id() < 1 || d.signed_prekey().id() > kMaxPreKeyId)
    return bad_request("device.signed_prekey.id must be in 1..0xFFFFFE");
  if (!keys::verify_signature(ctx, as_bytes(identity_key), as_bytes(d.signed_prekey().public_key()),
                              as_bytes(d.signed_prekey().signature()))
           .ok())
    return bad_request("the signed prekey's signature does not verify with the identity key");
  if (static_cast<uint32_t>(d.one_time_prekeys_size()) > limits.max_prekeys_per_upload)
    return too_large_items("too many one-time prekeys", limits.max_prekeys_per_upload);
  std::set<uint32_t> ids;
  for (const auto& k : d.one_time_prekeys()) {
    if (k.id() < 1 || k.id() > kMaxPreKeyId)
      return bad_request("one-time prekey ids must be in 1..0xFFFFFE");
    if (!ids.insert(k.id()).second)
      return bad_request("one-time prekey id " + std::to_string(k.id()) + " appears twice");
  }
  if (d.last_resort_prekey().id() != kLastResortId)
    return bad_request("the last-resort key must have id 0xFFFFFF");
  if (d.encrypted_name().size() > limits.max_encrypted_name_bytes)
    return bad_request("device.encrypted_name is longer than " +
                       std::to_string(limits.max_encrypted_name_bytes) + " bytes");
  return std::nullopt;
}

Check check_prekey_upload(const keys::Context& ctx, std::string_view identity_key,
                          const wire::UploadPreKeysRequest& r, const Limits& limits) {
  if (!r.has_signed_prekey() && r.one_time_prekeys_size() == 0 && !r.has_last_resort_prekey())
    return bad_request(
        "nothing to upload: set signed_prekey, one_time_prekeys or "
        "last_resort_prekey");
  if (static_cast<uint32_t>(r.one_time_prekeys_size()) > limits.max_prekeys_per_upload)
    return too_large_items("too many one-time prekeys in one upload",
                           limits.max_prekeys_per_upload);
  if (r.has_signed_prekey()) {
    const auto& s = r.signed_prekey();
    if (!valid_public_key(ctx, s.public_key()))
      return bad_request("signed_prekey.public_key is not a valid 33-byte public key");
    if (s.id() < 1 || s.id() > kMaxPreKeyId)
      return bad_request("signed_prekey.id must be in 1..0xFFFFFE");
    if (!keys::verify_signature(ctx, as_bytes(identity_key), as_bytes(s.public_key()),
                                as_bytes(s.signature()))
             .ok())
      return bad_request("the signed prekey's signature does not verify with the identity key");
  }
  std::set<uint32_t> ids;
  for (const auto& k : r.one_time_prekeys()) {
    if (!valid_public_key(ctx, k.public_key()))
      return bad_request("one-time prekey " + std::to_string(k.id()) +
                         " is not a valid 33-byte public key");
    if (k.id() < 1 || k.id() > kMaxPreKeyId)
      return bad_request("one-time prekey ids must be in 1..0xFFFFFE");
    if (!ids.insert(k.id()).second)
      return bad_request("one-time prekey id " + std::to_string(k.id()) + " appears twice");
  }
  if (r.has_last_resort_prekey()) {
    if (!valid_public_key(ctx, r.last_resort_prekey().public_key()))
      return bad_request("last_resort_prekey is not a valid 33-byte public key");
    if (r.last_resort_prekey().id() != kLastResortId)
      return bad_request("the last-resort key must have id 0xFFFFFF");
  }
  return std::nullopt;
}

std::optional<Credentials> parse_authorization(std::string_view h) {
  constexpr std::string_view kBasic = "Basic ";
  if (h.size() <= kBasic.size() || h.size() > 512) return std::nullopt;
  for (size_t i = 0; i < kBasic.size(); ++i)
    if (std::tolower(static_cast<unsigned char>(h[i])) !=
        std::tolower(static_cast<unsigned char>(kBasic[i])))
      return std::nullopt;
  std::string_view b64 = h.substr(kBasic.size());
  while (!b64.empty() && b64.front() == ' ') b64.remove_prefix(1);
  char decoded[384];
  struct Wipe {  // the decoded secret, on every way out
    char* p;
    size_t n;
    ~Wipe() { sodium_memzero(p, n); }
  } wipe{decoded, sizeof decoded};
  size_t len = 0;
  if (sodium_base642bin(reinterpret_cast<unsigned char*>(decoded), sizeof decoded, b64.data(),
                        b64.size(), nullptr, &len, nullptr, sodium_base64_VARIANT_ORIGINAL) != 0)
    return std::nullopt;
  std::string_view text(decoded, len);
  auto colon = text.find(':');
  auto dot = text.find('.');
  if (colon == std::string_view::npos || dot == std::string_view::npos || dot > colon)
    return std::nullopt;
  Credentials c;
  std::string_view account = text.substr(0, dot);
  std::string_view device = text.substr(dot + 1, colon - dot - 1);
  std::string_view secret = text.substr(colon + 1);
  if (account.size() != 32 || secret.size() != 64) return std::nullopt;
  // Lowercase hex only, for both (protocol.md 3.1): one spelling per credential.
  auto lower_hex = [](std::string_view s) {
    return std::all_of(s.begin(), s.end(),
                       [](char ch) { return (ch >= '0' && ch <= '9') || (ch >= 'a' && ch <= 'f'); });
  };
  if (!lower_hex(account) || !lower_hex(secret)) return std::nullopt;
  if (!from_hex(account, c.account_id) || !from_hex(secret, c.secret)) return std::nullopt;
  if (device.empty() || device.size() > 10) return std::nullopt;
  uint64_t d = 0;
  auto r = std::from_chars(device.data(), device.data() + device.size(), d);
  if (r.ec != std::errc() || r.ptr != device.data() + device.size() || d < 1 || d > 0x7FFFFFFF)
    return std::nullopt;
  c.device_id = static_cast<uint32_t>(d);
  return c;
}

Bytes hash_auth_secret(ByteView secret) {
  Bytes out(32);
  crypto_generichash(out.data(), out.size(), secret.data(), secret.size(), kAuthHashKey,
                     sizeof kAuthHashKey - 1);
  return out;
}

bool auth_hash_matches(ByteView stored, ByteView secret) {
  Bytes h = hash_auth_secret(secret);
  return stored.size() == h.size() && sodium_memcmp(stored.data(), h.data(), h.size()) == 0;
}

bool is_private_address(std::string_view literal) {
  std::string s(literal);
  in_addr v4{};
  if (inet_pton(AF_INET, s.c_str(), &v4) == 1) {
    uint32_t a = ntohl(v4.s_addr);
    auto in = [&](uint32_t net, int bits) {
      uint32_t mask = bits == 0 ? 0 : ~uint32_t{0} << (32 - bits);
      return (a & mask) == (net & mask);
    };
    return in(0x00000000, 8) || in(0x7F000000, 8) || in(0x0A000000, 8) || in(0xAC100000, 12) ||
           in(0xC0A80000, 16) || in(0xA9FE0000, 16) || in(0x64400000, 10) || in(0xE0000000, 4) ||
           a == 0xFFFFFFFF;
  }
  in6_addr v6{};
  if (inet_pton(AF_INET6, s.c_str(), &v6) == 1) {
    const uint8_t* b = v6.s6_addr;
    bool zero_prefix = true;
    for (int i = 0; i < 12; ++i) zero_prefix = zero_prefix && b[i] == 0;
    if (zero_prefix) return true;  // ::, ::1 and the deprecated IPv4-compatible ::a.b.c.d
    if ((b[0] & 0xFE) == 0xFC) return true;                      // fc00::/7
    if (b[0] == 0xFE && (b[1] & 0xC0) == 0x80) return true;      // fe80::/10
    if (b[0] == 0xFF) return true;                               // multicast
    bool mapped = true;                                          // ::ffff:a.b.c.d
    for (int i = 0; i < 10; ++i) mapped = mapped && b[i] == 0;
    if (mapped && b[10] == 0xFF && b[11] == 0xFF) {
      char buf[INET_ADDRSTRLEN];
      inet_ntop(AF_INET, b + 12, buf, sizeof buf);
      return is_private_address(buf);
    }
    return false;
  }
  return false;
}

std::optional<PushUrl> parse_push_url(std::string_view url, bool allow_http, bool allow_private,
                                      uint32_t max_bytes, Refusal& why) {
  why = bad_request("the push endpoint must be an absolute https URL");
  if (url.size() > max_bytes) {
    why =
        bad_request("the push endpoint URL is longer than " + std::to_string(max_bytes) + " bytes");
    return std::nullopt;
  }
  for (char c : url)
    if (static_cast<unsigned char>(c) <= 0x20 || static_cast<unsigned char>(c) >= 0x7F)
      return std::nullopt;
  PushUrl out;
  std::string_view rest;
  if (url.starts_with("https://")) {
    rest = url.substr(8);
  } else if (url.starts_with("http://")) {
    if (!allow_http) {
      why = bad_request("plain http push endpoints are not allowed on this relay; use https");
      return std::nullopt;
    }
    out.https = false;
    out.port = 80;
    rest = url.substr(7);
  } else {
    return std::nullopt;
  }
  size_t end = rest.find_first_of("/?#");
  std::string_view authority = rest.substr(0, end);
  out.target = end == std::string_view::npos ? "/" : std::string(rest.substr(end));
  if (auto hash = out.target.find('#'); hash != std::string::npos) out.target.resize(hash);
  if (out.target.empty() || out.target[0] != '/') out.target = "/" + out.target;
  if (authority.empty() || authority.find('@') != std::string_view::npos) return std::nullopt;
  std::string_view host = authority, port;
  if (authority.front() == '[') {
    auto close = authority.find(']');
    if (close == std::string_view::npos) return std::nullopt;
    host = authority.substr(1, close - 1);
    std::string_view after = authority.substr(close + 1);
    if (!after.empty()) {
      if (after.front() != ':') return std::nullopt;
      port = after.substr(1);
    }
  } else if (auto colon = authority.rfind(':'); colon != std::string_view::npos) {
    host = authority.substr(0, colon);
    port = authority.substr(colon + 1);
  }
  if (host.empty()) return std::nullopt;
  if (!port.empty()) {
    unsigned p = 0;
    auto r = std::from_chars(port.data(), port.data() + port.size(), p);
    if (r.ec != std::errc() || r.ptr != port.data() + port.size() || p == 0 || p > 65535)
      return std::nullopt;
    out.port = static_cast<uint16_t>(p);
  }
  out.host = std::string(host);
  for (auto& c : out.host) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  // A name ending in a number is an IPv4 literal to the resolver, in forms inet_pton never
  // sees ("127.1", "2130706433", "0x7f.1", "0177.0.0.1"): only the dotted-decimal form is
  // accepted, so the address checked here is the one that will be dialled.
  std::string_view name = out.host;
  if (name.ends_with('.')) name.remove_suffix(1);
  std::string_view last = name.substr(name.rfind('.') + 1);
  bool ipv6 = name.find(':') != std::string_view::npos;  // a bracketed literal, parsed exactly
  bool numeric = !ipv6 && !last.empty() &&
                 (std::isdigit(static_cast<unsigned char>(last[0])) ||
                  (last.size() > 1 && last[0] == '0' && last[1] == 'x'));
  in_addr v4{};
  if (numeric && (name.size() != out.host.size() ||
                  inet_pton(AF_INET, std::string(name).c_str(), &v4) != 1)) {
    why = bad_request("write an IPv4 push endpoint as four decimal numbers (a.b.c.d)");
    return std::nullopt;
  }
  if (!allow_private && (name == "localhost" || name.ends_with(".localhost") ||
                         is_private_address(out.host))) {
    why = Refusal{wire::FORBIDDEN,
                  "this relay does not send wake-ups to loopback, private or link-local "
                  "addresses"};
    return std::nullopt;
  }
  return out;
}

std::string make_link_code() {
  std::string code(8, '0');
  for (auto& c : code) c = kCrockford[randombytes_uniform(32)];
  return code;
}

std::string normalize_link_code(std::string_view code) {
  if (code.size() != 8) return {};
  std::string out(code);
  for (auto& c : out) {
    c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
    if (kCrockford.find(c) == std::string_view::npos) return {};
  }
  return out;
}

Bytes random_bytes(size_t n) {
  Bytes b(n);
  randombytes_buf(b.data(), n);
  return b;
}

std::string make_invite_token() {
  std::string token;
  for (size_t i = 0; i < kInviteChars; ++i) {
    if (i > 0 && i % 5 == 0) token += '-';
    token += kCrockford[randombytes_uniform(32)];
  }
  return token;
}

Bytes hash_invite_token(std::string_view token) {
  std::string canonical;
  for (char c : token) {
    if (c == '-' || c == ' ') continue;
    c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
    if (kCrockford.find(c) == std::string_view::npos) return {};
    canonical += c;
  }
  if (canonical.size() != kInviteChars) return {};
  Bytes out(32);
  crypto_generichash(out.data(), out.size(), reinterpret_cast<const unsigned char*>(canonical.data()),
                     canonical.size(), kInviteHashKey, sizeof kInviteHashKey - 1);
  return out;
}

std::string random_hex(size_t bytes) { return to_hex(random_bytes(bytes)); }

}  // namespace sotto::relay
