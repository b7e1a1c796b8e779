// The relay's operations one by one, in-process (RelayHarness): the real protocol logic and a
// real store, no sockets. What only the network layer does (framing, TLS, the upgrade's HTTP)
// is tested against the real process in tests/integration/relay.
#include <gtest/gtest.h>
#include <sodium.h>

#include "RelayHarness.h"
#include "sotto/keys/KeyGen.h"

namespace sotto::test {
namespace {

std::string str(ByteView b) { return std::string(as_chars(b)); }

class RelayOps : public ::testing::Test {
 protected:
  explicit RelayOps(RelayHarness::Options options = {}) : h(std::move(options)) {}

  TestDevice must_register(const std::string& handle, uint32_t prekeys = 5) {
    auto d = h.register_device(handle, prekeys);
    EXPECT_TRUE(d.ok()) << d.error().message;
    return d.ok() ? std::move(*d) : TestDevice{};
  }
  std::shared_ptr<HarnessConnection> must_connect(const TestDevice& d) {
    auto c = h.connect(d);
    EXPECT_TRUE(c) << "the relay refused @" << d.handle << "'s credentials";
    return c;
  }
  wire::Response expect(HarnessConnection& c, wire::Request r, wire::Status status) {
    auto op = r.op();
    auto got = h.call(c, std::move(r));
    EXPECT_TRUE(got.ok()) << wire::Op_Name(op) << ": " << got.error().message;
    if (!got.ok()) return {};
    EXPECT_EQ(wire::Status_Name(got->status()), wire::Status_Name(status))
        << wire::Op_Name(op) << ": " << got->message();
    return std::move(*got);
  }
  // A device record as the store has it now.
  relay::DeviceRecord device_record(const TestDevice& d) {
    auto out = std::make_shared<relay::DeviceRecord>();
    h.store().submit(
        [out, d](relay::Store& s) -> Status {
          SOTTO_TRY_ASSIGN(auto found, s.find_device(d.account_id, d.device_id));
          if (found) *out = *found;
          return {};
        },
        nullptr);
    h.settle();
    return *out;
  }

  RelayHarness h;
};

TEST_F(RelayOps, RequestIdZeroIsRefused) {
  auto c = h.open();
  wire::Request r = make_request(wire::OP_PING);
  r.set_id(0);
  h.send(*c, r, /*keep_id=*/true);
  h.settle();
  auto got = c->take_response(0);
  ASSERT_TRUE(got);
  EXPECT_EQ(got->status(), wire::BAD_REQUEST);
  EXPECT_NE(got->message().find("non-zero"), std::string::npos) << got->message();
  EXPECT_TRUE(c->unanswered().empty());
}

TEST_F(RelayOps, ARequestWithoutItsBodyOrWithAnotherOpsBodyIsRefused) {
  auto c = h.open();
  wire::Request none;
  none.set_op(wire::OP_PING);
  EXPECT_NE(expect(*c, none, wire::BAD_REQUEST).message().find("no body"), std::string::npos);
  wire::Request other = make_request(wire::OP_SERVER_INFO);
  other.set_op(wire::OP_PING);
  expect(*c, other, wire::BAD_REQUEST);
  wire::Request unknown;
  unknown.set_op(static_cast<wire::Op>(999));
  expect(*c, unknown, wire::UNSUPPORTED);
}

TEST_F(RelayOps, UnauthenticatedSocketsMayOnlyPingRegisterAndLink) {
  auto c = h.open();
  expect(*c, make_request(wire::OP_PING), wire::OK);
  expect(*c, make_request(wire::OP_SERVER_INFO), wire::OK);
  for (wire::Op op : {wire::OP_LIST_DEVICES, wire::OP_GET_BUNDLES, wire::OP_SEND, wire::OP_ACK,
                      wire::OP_SET_PUSH_ENDPOINT, wire::OP_ATTACHMENT_UPLOAD,
                      wire::OP_PROVISION_LOOKUP})
    expect(*c, make_request(op), wire::UNAUTHORIZED);
}

TEST_F(RelayOps, WrongOrMalformedCredentialsAreRefusedAtTheUpgrade) {
  TestDevice alice = must_register("alice");
  relay::Relay::Auth::Kind why = relay::Relay::Auth::kOk;
  Credentials wrong = alice.credentials();
  wrong.auth_secret[0] ^= 1;
  EXPECT_FALSE(h.open_authenticated(wrong.authorization(), &why));
  EXPECT_EQ(why, relay::Relay::Auth::kUnauthorized);
  EXPECT_FALSE(h.open_authenticated("", &why));
  EXPECT_EQ(why, relay::Relay::Auth::kUnauthorized);
  EXPECT_TRUE(h.connect(alice));
}

TEST_F(RelayOps, RegistrationRefusesATakenHandleAndAReplayedPayload) {
  TestDevice alice = must_register("alice");
  auto c = h.open();
  auto again = make_device("alice");
  ASSERT_TRUE(again.ok());
  expect(*c, register_request(*again, h.now_ms()), wire::CONFLICT);
  auto bob = make_device("bob");
  ASSERT_TRUE(bob.ok());
  wire::Request r = register_request(*bob, h.now_ms());
  expect(*c, r, wire::OK);
  r.set_id(0);
  EXPECT_NE(expect(*c, r, wire::CONFLICT).message().find("nonce"), std::string::npos);
  auto late = make_device("carol");
  ASSERT_TRUE(late.ok());
  expect(*c, register_request(*late, h.now_ms() - 10 * 60'000), wire::BAD_REQUEST);
}

// The relay hands out each one-time prekey exactly once, then the last-resort key.
TEST_F(RelayOps, EachOneTimePrekeyIsHandedOutOnce) {
  TestDevice alice = must_register("alice", 3);
  TestDevice bob = must_register("bob");
  auto b = must_connect(bob);
  std::set<uint32_t> seen;
  for (int i = 0; i < 5; ++i) {
    wire::Request r = make_request(wire::OP_GET_BUNDLES);
    r.mutable_get_bundles()->set_account_id(str(alice.account_id));
    auto resp = expect(*b, r, wire::OK);
    ASSERT_EQ(resp.get_bundles().bundles_size(), 1);
    const auto& bundle = resp.get_bundles().bundles(0);
    if (i < 3) {
      EXPECT_FALSE(bundle.last_resort());
      EXPECT_TRUE(seen.insert(bundle.one_time_prekey().id()).second) << "handed out twice";
    } else {
      EXPECT_TRUE(bundle.last_resort());
      EXPECT_EQ(bundle.one_time_prekey().id(), 0xFFFFFFu);
    }
    h.advance(61'000);  // past the per-target rate limit
  }
  EXPECT_EQ(seen.size(), 3u);
}

TEST_F(RelayOps, AStoredEnvelopeIsDeliveredInOrderAndGoneAfterItsAck) {
  TestDevice alice = must_register("alice");
  TestDevice bob = must_register("bob");
  auto a = must_connect(alice);
  for (int i = 0; i < 3; ++i)
    expect(*a, send_request(random_message_id(), {{&bob, "m" + std::to_string(i)}}), wire::OK);
  auto b = must_connect(bob);
  auto got = b->take_envelopes();
  ASSERT_EQ(got.size(), 3u);
  for (int i = 0; i < 3; ++i) {
    EXPECT_EQ(got[i].ciphertext(), "m" + std::to_string(i));
    EXPECT_EQ(got[i].sender_account_id(), str(alice.account_id));
    EXPECT_EQ(got[i].sequence(), static_cast<uint64_t>(i + 1));
  }
  wire::Request ack = make_request(wire::OP_ACK);
  for (const auto& e : got) ack.mutable_ack()->add_sequences(e.sequence());
  expect(*b, ack, wire::OK);
  h.disconnect(*b);
  auto again = must_connect(bob);
  EXPECT_TRUE(again->take_envelopes().empty());
  EXPECT_EQ(device_record(bob).queue_length, 0u);
  EXPECT_EQ(device_record(bob).queue_bytes, 0u);
}

TEST_F(RelayOps, ASendRepeatedWithItsMessageIdIsStoredOnce) {
  TestDevice alice = must_register("alice");
  TestDevice bob = must_register("bob");
  auto a = must_connect(alice);
  Bytes id = random_message_id();
  auto first = expect(*a, send_request(id, {{&bob, "once"}}), wire::OK);
  h.advance(5);
  auto second = expect(*a, send_request(id, {{&bob, "once"}}), wire::OK);
  EXPECT_EQ(first.send().server_timestamp_ms(), second.send().server_timestamp_ms());
  EXPECT_EQ(device_record(bob).queue_length, 1u);
}

TEST_F(RelayOps, ASendThatMissesADeviceIsStale) {
  TestDevice alice = must_register("alice");
  TestDevice bob = must_register("bob");
  auto a = must_connect(alice);
  TestDevice wrong = bob;
  wrong.device_id = 7;
  auto r = expect(*a, send_request(random_message_id(), {{&wrong, "x"}}), wire::STALE_DEVICES);
  ASSERT_EQ(r.stale_devices().accounts_size(), 1);
  EXPECT_EQ(r.stale_devices().accounts(0).missing_devices(0), 1u);
  EXPECT_EQ(r.stale_devices().accounts(0).extra_devices(0), 7u);
  EXPECT_EQ(device_record(bob).queue_length, 0u);
}

// A queue is bounded in bytes, not only in envelopes: one sender cannot park gigabytes.
class RelayOpsSmallQueues : public RelayOps {
 protected:
  static RelayHarness::Options options() {
    RelayHarness::Options o;
    o.config.limits.max_queue_bytes = 1000;
    return o;
  }
  RelayOpsSmallQueues() : RelayOps(options()) {}
};

TEST_F(RelayOpsSmallQueues, AQueueFullInBytesRefusesMoreAndKeepsWhatItHas) {
  TestDevice alice = must_register("alice");
  TestDevice bob = must_register("bob");
  TestDevice carol = must_register("carol");
  auto a = must_connect(alice);
  expect(*a, send_request(random_message_id(), {{&bob, std::string(400, 'a')}}), wire::OK);
  expect(*a, send_request(random_message_id(), {{&bob, std::string(400, 'b')}}), wire::OK);
  auto full =
      expect(*a, send_request(random_message_id(), {{&bob, std::string(400, 'c')}}),
             wire::LIMIT_REACHED);
  EXPECT_NE(full.message().find("full"), std::string::npos) << full.message();
  EXPECT_EQ(device_record(bob).queue_bytes, 800u);
  expect(*a, send_request(random_message_id(), {{&carol, std::string(400, 'd')}}), wire::OK);
  auto b = must_connect(bob);
  auto got = b->take_envelopes();
  ASSERT_EQ(got.size(), 2u);
  wire::Request ack = make_request(wire::OP_ACK);
  ack.mutable_ack()->add_sequences(got[0].sequence());
  expect(*b, ack, wire::OK);
  expect(*a, send_request(random_message_id(), {{&bob, std::string(400, 'e')}}), wire::OK);
}

// An ephemeral flood (typing and the like) must never cut the recipient's connection as a slow
// reader, nor hold back its stored messages: the flood is what gets dropped.
TEST_F(RelayOps, AnEphemeralFloodNeverCutsTheRecipientAndDropsOnlyEphemeralCopies) {
  TestDevice mallory = must_register("mallory");
  TestDevice alice = must_register("alice");
  TestDevice bob = must_register("bob");
  auto m = must_connect(mallory);
  auto a = must_connect(alice);
  auto b = must_connect(bob);
  b->stall();  // bob reads slowly: everything the relay writes waits in its queue
  for (int i = 0; i < 31; ++i) {
    expect(*m, send_request(random_message_id(), {{&bob, std::string(250'000, 'f')}}, false, true),
           wire::OK);
    h.advance(1'000);  // within the send rate limit
  }
  EXPECT_FALSE(b->cut) << "the relay cut the recipient of an ephemeral flood";
  EXPECT_FALSE(b->ended);
  EXPECT_GT(h.metrics().envelopes_ephemeral_dropped.load(), 0u);
  EXPECT_LE(b->queued_bytes(), h.config().limits.max_outgoing_bytes);
  expect(*a, send_request(random_message_id(), {{&bob, "still here"}}), wire::OK);
  b->drain();
  h.settle();
  auto got = b->take_envelopes();
  ASSERT_FALSE(got.empty());
  EXPECT_EQ(got.back().ciphertext(), "still here");
  EXPECT_FALSE(got.back().ephemeral());
}

TEST_F(RelayOps, APushEndpointIsClearedOnlyOnRequest) {
  TestDevice alice = must_register("alice");
  auto a = must_connect(alice);
  wire::Request set = make_request(wire::OP_SET_PUSH_ENDPOINT);
  set.mutable_set_push_endpoint()->set_url("https://push.example.com/up/abc");
  expect(*a, set, wire::OK);
  EXPECT_EQ(device_record(alice).push_url, "https://push.example.com/up/abc");
  // An empty body: the field is there, with nothing in it.
  auto empty = expect(*a, make_request(wire::OP_SET_PUSH_ENDPOINT), wire::BAD_REQUEST);
  EXPECT_NE(empty.message().find("clear"), std::string::npos) << empty.message();
  EXPECT_EQ(device_record(alice).push_url, "https://push.example.com/up/abc");
  wire::Request both = set;
  both.set_id(0);
  both.mutable_set_push_endpoint()->set_clear(true);
  expect(*a, both, wire::BAD_REQUEST);
  wire::Request clear = make_request(wire::OP_SET_PUSH_ENDPOINT);
  clear.mutable_set_push_endpoint()->set_clear(true);
  expect(*a, clear, wire::OK);
  EXPECT_EQ(device_record(alice).push_url, "");
  wire::Request odd = make_request(wire::OP_SET_PUSH_ENDPOINT);
  odd.mutable_set_push_endpoint()->set_url("https://2130706433/wake");
  expect(*a, odd, wire::BAD_REQUEST);
}

TEST_F(RelayOps, PresenceReachesSubscribersAndHiddenAccountsShowNothing) {
  TestDevice alice = must_register("alice");
  TestDevice bob = must_register("bob");
  auto b = must_connect(bob);
  wire::Request sub = make_request(wire::OP_PRESENCE_SUBSCRIBE);
  sub.mutable_presence_subscribe()->add_account_ids(str(alice.account_id));
  auto current = expect(*b, sub, wire::OK);
  ASSERT_EQ(current.presence_subscribe().current_size(), 1);
  EXPECT_FALSE(current.presence_subscribe().current(0).online());
  auto a = must_connect(alice);
  ASSERT_FALSE(b->pushes.empty());
  EXPECT_TRUE(b->pushes.back().presence().online());
  b->pushes.clear();
  wire::Request hide = make_request(wire::OP_PRESENCE_VISIBILITY);
  hide.mutable_presence_visibility()->set_hidden(true);
  expect(*a, hide, wire::OK);
  ASSERT_FALSE(b->pushes.empty());
  EXPECT_FALSE(b->pushes.back().presence().online());
  EXPECT_EQ(b->pushes.back().presence().last_seen_ms(), 0u);
  b->pushes.clear();
  h.disconnect(*a);
  EXPECT_TRUE(b->pushes.empty()) << "a hidden account's disconnect was announced";
}

TEST_F(RelayOps, ASecondConnectionOfADeviceReplacesTheFirst) {
  TestDevice alice = must_register("alice");
  auto first = must_connect(alice);
  auto second = must_connect(alice);
  EXPECT_EQ(first->close_code, std::optional<uint16_t>(4002));
  EXPECT_FALSE(second->close_code);
  expect(*second, make_request(wire::OP_PING), wire::OK);
}

TEST_F(RelayOps, ADeviceIsLinkedThroughAnApprovedChannel) {
  TestDevice alice = must_register("alice");
  auto a = must_connect(alice);
  auto fresh = h.open();
  wire::Request open = make_request(wire::OP_PROVISION_OPEN);
  open.mutable_provision_open()->set_ephemeral_public_key(std::string(32, 'k'));
  auto opened = expect(*fresh, open, wire::OK);
  std::string code = opened.provision_open().link_code();
  ASSERT_EQ(code.size(), 8u);

  wire::Request lookup = make_request(wire::OP_PROVISION_LOOKUP);
  lookup.mutable_provision_lookup()->set_link_code(code);
  EXPECT_EQ(expect(*a, lookup, wire::OK).provision_lookup().ephemeral_public_key(),
            std::string(32, 'k'));
  wire::Request approve = make_request(wire::OP_PROVISION_APPROVE);
  approve.mutable_provision_approve()->set_link_code(code);
  auto* env = approve.mutable_provision_approve()->mutable_envelope();
  env->set_ephemeral_public_key(std::string(32, 'e'));
  env->set_nonce(std::string(24, 'n'));
  env->set_ciphertext("sealed provision message");
  expect(*a, approve, wire::OK);
  ASSERT_FALSE(fresh->pushes.empty());
  EXPECT_EQ(fresh->pushes.back().provision().envelope().ciphertext(), "sealed provision message");
  approve.set_id(0);
  expect(*a, approve, wire::CONFLICT);

  auto second = make_device("alice", 3, 100, &alice.identity);
  ASSERT_TRUE(second.ok());
  wire::LinkPayload payload;
  payload.set_account_id(str(alice.account_id));
  payload.set_link_code(code);
  payload.set_identity_key(str(alice.identity.public_key));
  *payload.mutable_device() = device_keys(*second);
  payload.set_timestamp_ms(h.now_ms());
  payload.set_nonce(std::string(16, 'x'));
  std::string bytes = payload.SerializeAsString();
  auto sig = keys::sign_payload(test_context(), alice.identity, keys::SignedPurpose::kLink,
                                as_bytes(bytes));
  ASSERT_TRUE(sig.ok());
  wire::Request link = make_request(wire::OP_LINK_DEVICE);
  link.mutable_link_device()->set_payload(bytes);
  link.mutable_link_device()->set_signature(str(*sig));
  auto linked = expect(*fresh, link, wire::OK);
  EXPECT_EQ(linked.link_device().device_id(), 2u);
  EXPECT_EQ(fresh->close_code, std::optional<uint16_t>(1000));
  second->account_id = alice.account_id;
  second->device_id = 2;
  auto s = must_connect(*second);
  auto list = expect(*s, make_request(wire::OP_LIST_DEVICES), wire::OK);
  EXPECT_EQ(list.list_devices().devices_size(), 2);
}

TEST_F(RelayOps, RemovingADeviceEndsItsConnectionAndItsCredentials) {
  TestDevice alice = must_register("alice");
  auto second_keys = make_device("alice", 0, 1, &alice.identity);
  ASSERT_TRUE(second_keys.ok());
  // Linking is tested above; here the second device is added straight to the store.
  relay::NewDevice nd;
  nd.registration_id = second_keys->registration_id;
  nd.auth_hash = relay::hash_auth_secret(second_keys->auth_secret);
  *nd.signed_prekey.mutable_public_key() = str(second_keys->signed_prekey.public_key);
  nd.last_resort.set_id(0xFFFFFF);
  nd.last_resort.set_public_key(str(second_keys->last_resort.public_key));
  auto id = std::make_shared<uint32_t>(0);
  h.store().submit(
      [id, account = alice.account_id, nd](relay::Store& s) -> Status {
        SOTTO_TRY_ASSIGN(*id, s.add_device(account, nd, 6));
        return {};
      },
      nullptr);
  h.settle();
  ASSERT_EQ(*id, 2u);
  second_keys->account_id = alice.account_id;
  second_keys->device_id = 2;
  auto a = must_connect(alice);
  auto second = must_connect(*second_keys);
  wire::Request remove = make_request(wire::OP_REMOVE_DEVICE);
  remove.mutable_remove_device()->set_device_id(2);
  expect(*a, remove, wire::OK);
  EXPECT_EQ(second->close_code, std::optional<uint16_t>(4001));
  relay::Relay::Auth::Kind why = relay::Relay::Auth::kOk;
  EXPECT_FALSE(h.open_authenticated(second_keys->credentials().authorization(), &why));
  EXPECT_EQ(why, relay::Relay::Auth::kUnauthorized);
  remove.set_id(0);
  remove.mutable_remove_device()->set_device_id(1);
  expect(*a, remove, wire::FORBIDDEN);  // the last device
}

TEST_F(RelayOps, DeletingAnAccountNeedsItsIdAndFreesItsHandle) {
  TestDevice alice = must_register("alice");
  auto a = must_connect(alice);
  wire::Request del = make_request(wire::OP_DELETE_ACCOUNT);
  del.mutable_delete_account()->set_confirm_account_id(std::string(16, 'x'));
  expect(*a, del, wire::BAD_REQUEST);
  del.set_id(0);
  del.mutable_delete_account()->set_confirm_account_id(str(alice.account_id));
  expect(*a, del, wire::OK);
  EXPECT_EQ(a->close_code, std::optional<uint16_t>(4001));
  EXPECT_TRUE(h.register_device("alice").ok()) << "the handle is free again";
}

TEST_F(RelayOps, AttachmentSlotsAreBoundedBySizeAndRate) {
  TestDevice alice = must_register("alice");
  auto a = must_connect(alice);
  wire::Request up = make_request(wire::OP_ATTACHMENT_UPLOAD);
  up.mutable_attachment_upload()->set_size_bytes(0);
  expect(*a, up, wire::BAD_REQUEST);
  up.set_id(0);
  up.mutable_attachment_upload()->set_size_bytes(h.config().limits.attachment_max_bytes + 1);
  EXPECT_EQ(expect(*a, up, wire::TOO_LARGE).too_large().max_bytes(),
            h.config().limits.attachment_max_bytes);
  up.set_id(0);
  up.mutable_attachment_upload()->set_size_bytes(1000);
  auto slot = expect(*a, up, wire::OK);
  EXPECT_EQ(slot.attachment_upload().attachment_id().size(), 32u);
  EXPECT_EQ(slot.attachment_upload().path(),
            "/v1/attachments/" + slot.attachment_upload().attachment_id());
}

}  // namespace
}  // namespace sotto::test
