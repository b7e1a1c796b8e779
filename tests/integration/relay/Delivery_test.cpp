// Sends, queues, acks, idempotency, STALE_DEVICES, send_multi fan-out, expiry, ephemeral.
#include <set>

#include "RelayMetrics.h"
#include "RelayTestUtil.h"

namespace sotto::test {
namespace {

TEST(RelayDelivery, LiveSendIsPushedAndAckDeletesIt) {
  RelayProcess relay;
  TestDevice alice = must_register(relay, "alice", 0);
  TestDevice bob = must_register(relay, "bob", 0);
  auto a = must_connect(relay, alice);
  auto b = must_connect(relay, bob);
  auto empty = b->next_push();
  ASSERT_TRUE(empty && empty->has_queue_empty());
  EXPECT_EQ(empty->queue_empty().last_sequence(), 0u);
  Bytes mid = random_message_id();
  auto resp = expect_ok(*a, send_request(mid, {{&bob, "hello"}}));
  auto e = next_envelope(*b);
  ASSERT_TRUE(e);
  EXPECT_EQ(e->ciphertext(), "hello");
  EXPECT_EQ(e->message_id(), str(mid));
  EXPECT_EQ(e->sender_account_id(), str(alice.account_id));
  EXPECT_EQ(e->sender_device_id(), 1u);
  EXPECT_EQ(e->recipient_device_id(), 1u);
  EXPECT_EQ(e->server_timestamp_ms(), resp.send().server_timestamp_ms());
  EXPECT_EQ(e->sequence(), 1u);
  EXPECT_EQ(e->type(), wire::Envelope::MESSAGE);
  EXPECT_TRUE(e->urgent());
  EXPECT_FALSE(e->ephemeral());
  ack(*b, {e->sequence(), 999});  // unknown numbers are ignored
  b->close();
  auto b2 = must_connect(relay, bob);
  EXPECT_TRUE(drain_backlog(*b2).empty());
}

TEST(RelayDelivery, UnackedEnvelopesComeBackOnTheNextConnection) {
  RelayProcess relay;
  TestDevice alice = must_register(relay, "alice", 0);
  TestDevice bob = must_register(relay, "bob", 0);
  auto a = must_connect(relay, alice);
  auto b = must_connect(relay, bob);
  drain_backlog(*b);
  expect_ok(*a, send_request(random_message_id(), {{&bob, "one"}}));
  ASSERT_TRUE(next_envelope(*b));
  b->close();
  auto b2 = must_connect(relay, bob);
  auto again = drain_backlog(*b2);
  ASSERT_EQ(again.size(), 1u);
  EXPECT_EQ(again[0].ciphertext(), "one");
  EXPECT_EQ(again[0].sequence(), 1u);
}

// An offline device's queue is drained in order on connect, 100 at a time (flow control),
// then QueueEmpty; sequence numbers keep growing across acks and restarts.
TEST(RelayDelivery, OfflineQueueIsDrainedInOrderWithFlowControl) {
  RelayProcess relay;
  TestDevice alice = must_register(relay, "alice", 0);
  TestDevice bob = must_register(relay, "bob", 0);
  auto a = must_connect(relay, alice);
  constexpr int kCount = 250;
  std::vector<uint64_t> ids;
  for (int i = 0; i < kCount; ++i)
    ids.push_back(a->send(send_request(random_message_id(), {{&bob, std::to_string(i)}})));
  for (uint64_t id : ids) {
    auto r = a->wait_response(id);
    ASSERT_TRUE(r.ok() && r->status() == wire::OK);
  }
  auto b = must_connect(relay, bob);
  int next = 0;
  bool empty_seen = false;
  while (!empty_seen) {
    std::vector<uint64_t> batch;
    // Without acks the relay stops at the window of 100.
    while (auto p = b->next_push(1s)) {
      if (p->has_queue_empty()) {
        EXPECT_EQ(next, kCount) << "QueueEmpty before the backlog was pushed";
        EXPECT_EQ(p->queue_empty().last_sequence(), static_cast<uint64_t>(kCount));
        empty_seen = true;
        break;
      }
      if (p->has_prekeys_low()) continue;  // bob registered without one-time prekeys
      ASSERT_TRUE(p->has_envelope());
      EXPECT_EQ(p->envelope().ciphertext(), std::to_string(next));
      EXPECT_EQ(p->envelope().sequence(), static_cast<uint64_t>(next + 1));
      ++next;
      batch.push_back(p->envelope().sequence());
    }
    if (!empty_seen) {
      ASSERT_EQ(batch.size(), 100u) << "flow-control window";
    }
    if (!batch.empty()) ack(*b, batch);
  }
  EXPECT_EQ(next, kCount);
  relay.restart();
  b = must_connect(relay, bob);
  EXPECT_TRUE(drain_backlog(*b).empty());
  a = must_connect(relay, alice);
  expect_ok(*a, send_request(random_message_id(), {{&bob, "after restart"}}));
  auto e = next_envelope(*b);
  ASSERT_TRUE(e);
  EXPECT_GT(e->sequence(), static_cast<uint64_t>(kCount)) << "sequence numbers are never reused";
}

TEST(RelayDelivery, AResendOfTheSameMessageIdIsANoOp) {
  RelayProcess relay;
  TestDevice alice = must_register(relay, "alice", 0);
  TestDevice bob = must_register(relay, "bob", 0);
  auto a = must_connect(relay, alice);
  Bytes mid = random_message_id();
  auto first = expect_ok(*a, send_request(mid, {{&bob, "v1"}}));
  // A new send now would get a later timestamp.
  while (unix_ms() <= first.send().server_timestamp_ms()) std::this_thread::sleep_for(1ms);
  auto second = expect_ok(*a, send_request(mid, {{&bob, "v2 (re-encrypted)"}}));
  EXPECT_EQ(first.send().server_timestamp_ms(), second.send().server_timestamp_ms());
  auto b = must_connect(relay, bob);
  auto got = drain_backlog(*b);
  ASSERT_EQ(got.size(), 1u);
  EXPECT_EQ(got[0].ciphertext(), "v1");
}

TEST(RelayDelivery, StaleDevicesListsMissingExtraAndStale) {
  RelayProcess relay;
  TestDevice alice = must_register(relay, "alice", 0);
  TestDevice bob = must_register(relay, "bob", 0);
  auto a = must_connect(relay, alice);
  // Stale: a registration id the device no longer has.
  auto r =
      expect_status(*a, send_request(random_message_id(), {{&bob, "x", bob.registration_id + 1}}),
                    wire::STALE_DEVICES);
  ASSERT_EQ(r.stale_devices().accounts_size(), 1);
  EXPECT_EQ(r.stale_devices().accounts(0).account_id(), str(bob.account_id));
  ASSERT_EQ(r.stale_devices().accounts(0).stale_devices_size(), 1);
  EXPECT_EQ(r.stale_devices().accounts(0).stale_devices(0), 1u);
  // Extra: a device that does not exist.
  TestDevice ghost = bob;
  ghost.device_id = 5;
  r = expect_status(*a, send_request(random_message_id(), {{&bob, "x"}, {&ghost, "x"}}),
                    wire::STALE_DEVICES);
  ASSERT_EQ(r.stale_devices().accounts(0).extra_devices_size(), 1);
  EXPECT_EQ(r.stale_devices().accounts(0).extra_devices(0), 5u);
  // Missing: the request names no device of an account; with targeted only extra/stale count.
  TestDevice carol = must_register(relay, "carol", 0);
  wire::Request none = send_request(random_message_id(), {{&bob, "x"}});
  auto* m = none.mutable_send()->mutable_messages(0);
  m->set_account_id(str(carol.account_id));
  m->set_device_id(2);
  m->set_registration_id(1);
  r = expect_status(*a, none, wire::STALE_DEVICES);
  ASSERT_EQ(r.stale_devices().accounts(0).missing_devices_size(), 1);
  EXPECT_EQ(r.stale_devices().accounts(0).missing_devices(0), 1u);
  EXPECT_EQ(r.stale_devices().accounts(0).extra_devices(0), 2u);
  // Unknown account.
  TestDevice nobody = bob;
  nobody.account_id = Bytes(16, 0x42);
  expect_status(*a, send_request(random_message_id(), {{&nobody, "x"}}), wire::NOT_FOUND);
  // Nothing of the refused sends was stored.
  auto b = must_connect(relay, bob);
  EXPECT_TRUE(drain_backlog(*b).empty());
}

TEST(RelayDelivery, UrgentSendsMustCoverTheSendersOwnOtherDevices) {
  RelayProcess relay;
  TestDevice alice = must_register(relay, "alice", 0);
  TestDevice bob = must_register(relay, "bob", 0);
  auto a1 = must_connect(relay, alice);
  // Link a second device for alice the short way: open, approve, link.
  auto l = WireClient::connect(relay.host(), relay.port());
  wire::Request open = make_request(wire::OP_PROVISION_OPEN);
  open.mutable_provision_open()->set_ephemeral_public_key(std::string(32, 'k'));
  std::string code = expect_ok(**l, open).provision_open().link_code();
  wire::Request approve = make_request(wire::OP_PROVISION_APPROVE);
  approve.mutable_provision_approve()->set_link_code(code);
  approve.mutable_provision_approve()->mutable_envelope()->set_ephemeral_public_key(
      std::string(32, 'e'));
  approve.mutable_provision_approve()->mutable_envelope()->set_nonce(std::string(24, 'n'));
  approve.mutable_provision_approve()->mutable_envelope()->set_ciphertext("c");
  expect_ok(*a1, approve);
  auto a2 = make_device("alice", 0, 1, &alice.identity);
  wire::LinkPayload p;
  p.set_account_id(str(alice.account_id));
  p.set_link_code(code);
  p.set_identity_key(str(alice.identity.public_key));
  *p.mutable_device() = device_keys(*a2);
  p.set_timestamp_ms(unix_ms());
  p.set_nonce(std::string(16, 'q'));
  std::string bytes = p.SerializeAsString();
  wire::Request link = make_request(wire::OP_LINK_DEVICE);
  link.mutable_link_device()->set_payload(bytes);
  link.mutable_link_device()->set_signature(str(*keys::sign_payload(
      test_context(), alice.identity, keys::SignedPurpose::kLink, as_bytes(bytes))));
  a2->account_id = alice.account_id;
  a2->device_id = expect_ok(**l, link).link_device().device_id();

  auto r =
      expect_status(*a1, send_request(random_message_id(), {{&bob, "hi"}}), wire::STALE_DEVICES);
  ASSERT_EQ(r.stale_devices().accounts_size(), 1);
  EXPECT_EQ(r.stale_devices().accounts(0).account_id(), str(alice.account_id));
  EXPECT_EQ(r.stale_devices().accounts(0).missing_devices(0), a2->device_id);
  // Not urgent (a receipt): the own devices need not be covered.
  expect_ok(*a1, send_request(random_message_id(), {{&bob, "receipt"}}, false));
  // Urgent and covering the own device.
  expect_ok(*a1, send_request(random_message_id(), {{&bob, "hi"}, {&*a2, "sync"}}));
  // Targeted: one device on purpose.
  expect_ok(*a1, send_request(random_message_id(), {{&*a2, "reset"}}, false, false, true));
}

TEST(RelayDelivery, SendMultiFansOneCiphertextOutTo500Devices) {
  RelayProcess relay;
  constexpr int kDevices = 500;
  TestDevice alice = must_register(relay, "alice", 0);
  std::vector<TestDevice> members;
  for (int i = 0; i < kDevices; ++i) {
    members.push_back(must_register(relay, "member" + std::to_string(i), 0));
    ASSERT_FALSE(HasFailure());
  }
  std::vector<std::unique_ptr<WireClient>> sockets;
  for (int i = 0; i < kDevices / 2; ++i) {  // half online, half offline
    sockets.push_back(must_connect(relay, members[i]));
    ASSERT_TRUE(sockets.back());
    drain_backlog(*sockets.back());
  }
  auto a = must_connect(relay, alice);
  wire::Request r = make_request(wire::OP_SEND_MULTI);
  auto* s = r.mutable_send_multi();
  s->set_message_id(str(random_message_id()));
  s->set_type(wire::Envelope::SENDER_KEY);
  s->set_ciphertext(std::string(2000, 'g'));
  s->set_urgent(true);
  for (const auto& m : members) {
    auto* rc = s->add_recipients();
    rc->set_account_id(str(m.account_id));
    rc->set_device_id(1);
    rc->set_registration_id(m.registration_id);
  }
  expect_ok(*a, r);
  for (int i = 0; i < kDevices; ++i) {
    std::optional<wire::Envelope> e;
    std::unique_ptr<WireClient> later;
    if (i < kDevices / 2) {
      e = next_envelope(*sockets[i]);
    } else {
      later = must_connect(relay, members[i]);
      auto got = drain_backlog(*later);
      if (got.size() == 1) e = got[0];
    }
    ASSERT_TRUE(e) << "member " << i;
    EXPECT_EQ(e->ciphertext(), std::string(2000, 'g'));
    EXPECT_EQ(e->type(), wire::Envelope::SENDER_KEY);
    EXPECT_EQ(e->sender_account_id(), str(alice.account_id));
  }
  // 1001 recipients is too many.
  auto* extra = s->add_recipients();
  *extra = s->recipients(0);
  for (int i = 0; i < 500; ++i) *s->add_recipients() = s->recipients(i);
  auto big = expect_status(*a, r, wire::TOO_LARGE);
  EXPECT_EQ(big.too_large().max_items(), 1000u);
}

TEST(RelayDelivery, EnvelopesExpireAfterTheirTimeToLive) {
  RelayProcess::Options o;
  o.extra_args = {"--envelope-ttl-ms", "1500", "--expiry-interval-ms", "500"};
  RelayProcess relay(o);
  TestDevice alice = must_register(relay, "alice", 0);
  TestDevice bob = must_register(relay, "bob", 0);
  auto a = must_connect(relay, alice);
  expect_ok(*a, send_request(random_message_id(), {{&bob, "soon gone"}}));
  ASSERT_TRUE(wait_for_metric(relay.port(), "sotto_envelopes_expired_total", [](double v) {
    return v >= 1;
  })) << "the relay never expired the envelope";
  auto b = must_connect(relay, bob);
  EXPECT_TRUE(drain_backlog(*b).empty());
  auto metrics = http_request(relay.port(), "GET", "/metrics");
  EXPECT_NE(metrics.body.find("sotto_envelopes_expired_total 1"), std::string::npos);
}

TEST(RelayDelivery, EphemeralEnvelopesReachOnlyConnectedDevicesAndAreNeverStored) {
  RelayProcess relay;
  TestDevice alice = must_register(relay, "alice", 0);
  TestDevice bob = must_register(relay, "bob", 0);
  TestDevice carol = must_register(relay, "carol", 0);
  auto a = must_connect(relay, alice);
  auto b = must_connect(relay, bob);
  drain_backlog(*b);
  expect_ok(*a, send_request(random_message_id(), {{&bob, "typing"}}, false, true));
  auto e = next_envelope(*b);
  ASSERT_TRUE(e);
  EXPECT_TRUE(e->ephemeral());
  EXPECT_EQ(e->sequence(), 0u);
  // Carol is offline: nothing waits for her.
  expect_ok(*a, send_request(random_message_id(), {{&carol, "typing"}}, false, true));
  auto c = must_connect(relay, carol);
  EXPECT_TRUE(drain_backlog(*c).empty());
}

TEST(RelayDelivery, QueuesHaveACap) {
  RelayProcess::Options o;
  o.extra_args = {"--max-queue-envelopes", "3"};
  RelayProcess relay(o);
  TestDevice alice = must_register(relay, "alice", 0);
  TestDevice bob = must_register(relay, "bob", 0);
  auto a = must_connect(relay, alice);
  for (int i = 0; i < 3; ++i) expect_ok(*a, send_request(random_message_id(), {{&bob, "x"}}));
  expect_status(*a, send_request(random_message_id(), {{&bob, "x"}}), wire::LIMIT_REACHED);
}

}  // namespace
}  // namespace sotto::test
