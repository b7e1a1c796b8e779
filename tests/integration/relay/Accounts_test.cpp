// Registration, authentication of the upgrade, linking, device removal, account deletion.
#include <sodium.h>

#include "RelayTestUtil.h"

namespace sotto::test {
namespace {

std::string random_str(size_t n) {
  std::string s(n, '\0');
  randombytes_buf(s.data(), n);
  return s;
}

// The new device's side of linking up to the ProvisionPush, then OP_LINK_DEVICE.
struct Linker {
  std::unique_ptr<WireClient> socket;
  std::string code;
};

Linker open_channel(const RelayProcess& relay) {
  Linker l;
  auto c = WireClient::connect(relay.host(), relay.port());
  EXPECT_TRUE(c.ok());
  l.socket = std::move(*c);
  wire::Request r = make_request(wire::OP_PROVISION_OPEN);
  r.mutable_provision_open()->set_ephemeral_public_key(random_str(32));
  auto resp = expect_ok(*l.socket, r);
  l.code = resp.provision_open().link_code();
  EXPECT_EQ(l.code.size(), 8u);
  return l;
}

wire::Request approve_request(const std::string& code) {
  wire::Request r = make_request(wire::OP_PROVISION_APPROVE);
  r.mutable_provision_approve()->set_link_code(code);
  auto* env = r.mutable_provision_approve()->mutable_envelope();
  env->set_ephemeral_public_key(random_str(32));
  env->set_nonce(random_str(24));
  env->set_ciphertext("sealed provisioning message");
  return r;
}

wire::Request link_request(const TestDevice& existing, const TestDevice& fresh,
                           const std::string& code) {
  wire::LinkPayload p;
  p.set_account_id(str(existing.account_id));
  p.set_link_code(code);
  p.set_identity_key(str(existing.identity.public_key));
  *p.mutable_device() = device_keys(fresh);
  p.set_timestamp_ms(unix_ms());
  p.set_nonce(random_str(16));
  std::string bytes = p.SerializeAsString();
  auto sig = keys::sign_payload(test_context(), existing.identity, keys::SignedPurpose::kLink,
                                as_bytes(bytes));
  wire::Request r = make_request(wire::OP_LINK_DEVICE);
  r.mutable_link_device()->set_payload(bytes);
  r.mutable_link_device()->set_signature(str(*sig));
  return r;
}

// Links a second device to `existing`'s account through `approver`; returns it registered.
TestDevice link(const RelayProcess& relay, WireClient& approver, const TestDevice& existing) {
  Linker l = open_channel(relay);
  expect_ok(approver, approve_request(l.code));
  auto push = l.socket->next_push();
  EXPECT_TRUE(push && push->has_provision());
  if (push) {
    EXPECT_EQ(push->provision().link_code(), l.code);
    EXPECT_EQ(push->provision().account_id(), str(existing.account_id));
  }
  auto fresh = make_device(existing.handle, 5, 1000, &existing.identity);
  EXPECT_TRUE(fresh.ok());
  auto resp = expect_ok(*l.socket, link_request(existing, *fresh, l.code));
  fresh->account_id = existing.account_id;
  fresh->device_id = resp.link_device().device_id();
  EXPECT_EQ(l.socket->wait_closed(), std::optional<uint16_t>(1000));
  return std::move(*fresh);
}

TEST(RelayAccounts, RegisterThenAuthenticateTheUpgrade) {
  RelayProcess relay;
  TestDevice alice = must_register(relay, "alice");
  EXPECT_EQ(alice.account_id.size(), 16u);
  EXPECT_EQ(alice.device_id, 1u);
  auto c = must_connect(relay, alice);
  ASSERT_TRUE(c);
  expect_ok(*c, make_request(wire::OP_LIST_DEVICES));

  int status = 0;
  Credentials wrong = alice.credentials();
  wrong.auth_secret[0] ^= 1;
  EXPECT_FALSE(WireClient::connect(relay.host(), relay.port(), &wrong, &status).ok());
  EXPECT_EQ(status, 401);
  Credentials unknown = alice.credentials();
  unknown.device_id = 7;
  EXPECT_FALSE(WireClient::connect(relay.host(), relay.port(), &unknown, &status).ok());
  EXPECT_EQ(status, 401);
  // The secret itself is never stored: only its hash is. Every file of the data dir is read,
  // the WAL above all: the relay's commits stay there until a checkpoint (after thousands of
  // pages), and relay.db alone may still be the empty database the relay created.
  const std::string identity = str(alice.identity.public_key);
  bool identity_found = false;
  for (const auto& e : std::filesystem::recursive_directory_iterator(relay.data_dir())) {
    if (!e.is_regular_file()) continue;
    std::ifstream in(e.path(), std::ios::binary);
    std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    EXPECT_EQ(bytes.find(str(alice.auth_secret)), std::string::npos) << e.path();
    identity_found = identity_found || bytes.find(identity) != std::string::npos;
  }
  // What registration did store is found where the secret is looked for: the search sees the
  // relay's writes (and so would see the secret, were it stored).
  EXPECT_TRUE(identity_found) << "alice's identity key is in no file of the data dir";
}

TEST(RelayAccounts, UnauthenticatedSocketsMayOnlyRegisterOrLink) {
  RelayProcess relay;
  auto c = WireClient::connect(relay.host(), relay.port());
  ASSERT_TRUE(c.ok());
  expect_ok(**c, make_request(wire::OP_PING));
  expect_ok(**c, make_request(wire::OP_SERVER_INFO));
  wire::Request r = make_request(wire::OP_LIST_DEVICES);
  r.mutable_list_devices();
  expect_status(**c, r, wire::UNAUTHORIZED);
}

TEST(RelayAccounts, RegistrationChecksHandleSignatureClockAndNonce) {
  RelayProcess relay;
  auto c = WireClient::connect(relay.host(), relay.port());
  ASSERT_TRUE(c.ok());
  WireClient& client = **c;
  auto d = make_device("alice", 3);
  ASSERT_TRUE(d.ok());
  wire::Request first = register_request(*d);
  expect_ok(client, first);
  // The same signed request again: the nonce is replayed.
  expect_status(client, first, wire::CONFLICT);
  // A fresh request for a taken handle.
  expect_status(client, register_request(*d), wire::CONFLICT);

  for (const char* bad :
       {"Al", "9lives", "a..b", "dot.", "UPPER", "way_too_long_handle_for_sotto_xyz"}) {
    auto dev = make_device(bad, 0);
    expect_status(client, register_request(*dev), wire::BAD_REQUEST);
  }
  auto bob = make_device("bob", 0);
  wire::Request forged = register_request(*bob);
  std::string sig = forged.registration().signature();
  sig[5] ^= 0x20;
  forged.mutable_registration()->set_signature(sig);
  expect_status(client, forged, wire::BAD_REQUEST);
  expect_status(client, register_request(*bob, unix_ms() - 6 * 60'000), wire::BAD_REQUEST);
  // A signed prekey signed by another key.
  auto mallory = make_device("mallory", 0);
  auto other = make_device("other", 0);
  mallory->signed_prekey = other->signed_prekey;
  expect_status(client, register_request(*mallory), wire::BAD_REQUEST);
  auto big = make_device("big", 101);
  auto resp = expect_status(client, register_request(*big), wire::TOO_LARGE);
  EXPECT_EQ(resp.too_large().max_items(), 100u);
  expect_ok(client, register_request(*bob));
}

TEST(RelayAccounts, RegistrationIsRateLimitedPerAddress) {
  RelayProcess::Options o;
  o.permissive_limits = false;
  o.extra_args = {"--rate-register-ip", "2/1h"};
  RelayProcess relay(o);
  must_register(relay, "one", 0);
  must_register(relay, "two", 0);
  auto c = WireClient::connect(relay.host(), relay.port());
  ASSERT_TRUE(c.ok());
  auto d = make_device("three", 0);
  auto resp = expect_status(**c, register_request(*d), wire::RATE_LIMITED);
  EXPECT_GT(resp.rate_limited().retry_after_ms(), 0u);
  EXPECT_EQ(resp.rate_limited().limit(), "register");
  // The operator sees it at the default log level, once for a burst of refusals.
  expect_status(**c, register_request(*d), wire::RATE_LIMITED);
  std::string log = relay.log();
  EXPECT_NE(log.find("event=rate_limited limit=register refused=1"), std::string::npos) << log;
  EXPECT_EQ(log.find("event=rate_limited", log.find("event=rate_limited") + 1), std::string::npos)
      << log;
}

TEST(RelayAccounts, LookupByHandleAndById) {
  RelayProcess relay;
  TestDevice alice = must_register(relay, "alice");
  TestDevice bob = must_register(relay, "bob");
  auto c = must_connect(relay, alice);
  wire::Request r = make_request(wire::OP_LOOKUP_ACCOUNT);
  r.mutable_lookup_account()->set_handle("bob");
  auto resp = expect_ok(*c, r);
  EXPECT_EQ(resp.lookup_account().account_id(), str(bob.account_id));
  EXPECT_EQ(resp.lookup_account().identity_key(), str(bob.identity.public_key));
  r.mutable_lookup_account()->set_account_id(str(bob.account_id));
  EXPECT_EQ(expect_ok(*c, r).lookup_account().handle(), "bob");
  r.mutable_lookup_account()->set_handle("nobody");
  expect_status(*c, r, wire::NOT_FOUND);
  r.mutable_lookup_account()->set_handle("Bad Handle");
  expect_status(*c, r, wire::BAD_REQUEST);
}

TEST(RelayAccounts, LinkADeviceThroughTheProvisioningChannel) {
  RelayProcess relay;
  TestDevice alice = must_register(relay, "alice");
  auto a1 = must_connect(relay, alice);
  ASSERT_TRUE(a1);
  // Lookup by the typed code gives the new device's key.
  Linker l = open_channel(relay);
  wire::Request lookup = make_request(wire::OP_PROVISION_LOOKUP);
  std::string lower = l.code;
  for (auto& ch : lower) ch = static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));
  lookup.mutable_provision_lookup()->set_link_code(lower);
  EXPECT_EQ(expect_ok(*a1, lookup).provision_lookup().ephemeral_public_key().size(), 32u);
  // Linking before approval is refused; after approval it works once.
  auto fresh = make_device("alice", 5, 1000, &alice.identity);
  expect_status(*l.socket, link_request(alice, *fresh, l.code), wire::CONFLICT);
  expect_ok(*a1, approve_request(l.code));
  expect_status(*a1, approve_request(l.code), wire::CONFLICT);
  auto push = l.socket->next_push();
  ASSERT_TRUE(push && push->has_provision());
  auto resp = expect_ok(*l.socket, link_request(alice, *fresh, l.code));
  EXPECT_EQ(resp.link_device().device_id(), 2u);
  EXPECT_EQ(l.socket->wait_closed(), std::optional<uint16_t>(1000));
  // Device 1 hears about it.
  std::optional<wire::Push> changed;
  while ((changed = a1->next_push()) && !changed->has_devices_changed()) {
  }
  ASSERT_TRUE(changed);
  EXPECT_EQ(changed->devices_changed().devices_size(), 2);
  // The new device authenticates with its own credentials.
  fresh->account_id = alice.account_id;
  fresh->device_id = 2;
  auto a2 = must_connect(relay, *fresh);
  ASSERT_TRUE(a2);
  auto list = expect_ok(*a2, make_request(wire::OP_LIST_DEVICES));
  ASSERT_EQ(list.list_devices().devices_size(), 2);
  EXPECT_TRUE(list.list_devices().devices(0).connected());
  EXPECT_EQ(list.list_devices().devices(1).registration_id(), fresh->registration_id);
  expect_status(*a2, approve_request("ZZZZZZZZ"), wire::NOT_FOUND);
}

TEST(RelayAccounts, LinkRefusesAnotherIdentityAndTheDeviceCap) {
  RelayProcess::Options o;
  o.extra_args = {"--max-devices-per-account", "2"};
  RelayProcess relay(o);
  TestDevice alice = must_register(relay, "alice");
  TestDevice eve = must_register(relay, "eve");
  auto a1 = must_connect(relay, alice);
  // A payload signed by another identity than the account's.
  Linker l = open_channel(relay);
  expect_ok(*a1, approve_request(l.code));
  ASSERT_TRUE(l.socket->next_push());
  TestDevice forged = alice;
  forged.identity = eve.identity;
  auto fresh = make_device("alice", 0, 1, &eve.identity);
  expect_status(*l.socket, link_request(forged, *fresh, l.code), wire::FORBIDDEN);
  l.socket->close();
  TestDevice second = link(relay, *a1, alice);
  EXPECT_EQ(second.device_id, 2u);  // the refused link created nothing
  Linker third = open_channel(relay);
  expect_status(*a1, approve_request(third.code), wire::LIMIT_REACHED);
}

TEST(RelayAccounts, RemovingADeviceClosesItsSocketAndRevokesItsCredentials) {
  RelayProcess relay;
  TestDevice alice = must_register(relay, "alice");
  auto a1 = must_connect(relay, alice);
  TestDevice a2dev = link(relay, *a1, alice);
  auto a2 = must_connect(relay, a2dev);
  ASSERT_TRUE(a2);
  wire::Request r = make_request(wire::OP_REMOVE_DEVICE);
  r.mutable_remove_device()->set_device_id(9);
  expect_status(*a1, r, wire::NOT_FOUND);
  r.mutable_remove_device()->set_device_id(a2dev.device_id);
  expect_ok(*a1, r);
  EXPECT_EQ(a2->wait_closed(), std::optional<uint16_t>(4001));
  int status = 0;
  Credentials c = a2dev.credentials();
  EXPECT_FALSE(WireClient::connect(relay.host(), relay.port(), &c, &status).ok());
  EXPECT_EQ(status, 401);
  r.mutable_remove_device()->set_device_id(1);
  expect_status(*a1, r, wire::FORBIDDEN);  // the last device
}

TEST(RelayAccounts, DeletingAnAccountClosesItsSocketsAndFreesTheHandle) {
  RelayProcess relay;
  TestDevice alice = must_register(relay, "alice");
  auto a1 = must_connect(relay, alice);
  wire::Request r = make_request(wire::OP_DELETE_ACCOUNT);
  r.mutable_delete_account()->set_confirm_account_id(std::string(16, 'x'));
  expect_status(*a1, r, wire::BAD_REQUEST);
  r.mutable_delete_account()->set_confirm_account_id(str(alice.account_id));
  expect_ok(*a1, r);
  EXPECT_EQ(a1->wait_closed(), std::optional<uint16_t>(4001));
  int status = 0;
  Credentials c = alice.credentials();
  EXPECT_FALSE(WireClient::connect(relay.host(), relay.port(), &c, &status).ok());
  EXPECT_EQ(status, 401);
  must_register(relay, "alice");
}

TEST(RelayAccounts, ANewConnectionReplacesTheOldOneWith4002) {
  RelayProcess relay;
  TestDevice alice = must_register(relay, "alice");
  auto first = must_connect(relay, alice);
  // Answered: the relay has registered the first connection. (Two connections that
  // authenticate at the same moment are ordered by when the relay finishes each, not by when
  // they were opened.)
  expect_ok(*first, make_request(wire::OP_PING));
  auto second = must_connect(relay, alice);
  EXPECT_EQ(first->wait_closed(), std::optional<uint16_t>(4002));
  expect_ok(*second, make_request(wire::OP_PING));
}

}  // namespace
}  // namespace sotto::test
