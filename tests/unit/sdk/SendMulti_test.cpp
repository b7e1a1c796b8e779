#include "SendMulti.h"

#include <gtest/gtest.h>

#include "sotto/proto/wire.pb.h"

namespace sotto {
namespace {

MultiRecipientEntry entry(uint8_t account, uint32_t device, uint32_t registration) {
  MultiRecipientEntry e;
  e.account_id.fill(account);
  e.device_id = device;
  e.registration_id = registration;
  return e;
}

std::string account(uint8_t fill) { return to_hex(Bytes(16, fill)); }

std::vector<MultiRecipientEntry> some_recipients(size_t n) {
  std::vector<MultiRecipientEntry> v;
  for (size_t i = 0; i < n; ++i)
    v.push_back(entry(static_cast<uint8_t>(i % 251), static_cast<uint32_t>(i + 1),
                      static_cast<uint32_t>(16000 + i * 37)));
  return v;
}

wire::SendMultiRequest head() {
  wire::SendMultiRequest h;
  h.set_message_id(std::string(16, 'm'));
  h.set_type(wire::Envelope::SENDER_KEY);
  h.set_ciphertext(std::string(300, 'c'));
  h.set_urgent(true);
  h.set_batch(2);
  return h;
}

// What the relay reads is what the generated code would have sent.
TEST(SendMulti, TheEncodedFrameParsesAsTheRequestTheGeneratedCodeBuilds) {
  auto list = some_recipients(1000);
  std::string encoded = encode_recipients(list.data(), list.data() + list.size());

  wire::Request request;
  request.set_id(987654321);
  request.set_op(wire::OP_SEND_MULTI);
  Bytes frame_bytes = encode_request_frame(request, send_multi_body(head(), encoded));

  wire::Frame expected;
  *expected.mutable_request() = request;
  auto* sm = expected.mutable_request()->mutable_send_multi();
  *sm = head();
  for (const auto& e : list) {
    auto* r = sm->add_recipients();
    r->set_account_id(std::string(e.account_id.begin(), e.account_id.end()));
    r->set_device_id(e.device_id);
    r->set_registration_id(e.registration_id);
  }

  wire::Frame parsed;
  ASSERT_TRUE(parsed.ParseFromArray(frame_bytes.data(), static_cast<int>(frame_bytes.size())));
  EXPECT_EQ(parsed.SerializeAsString(), expected.SerializeAsString());
  EXPECT_EQ(frame_bytes.size(), expected.ByteSizeLong());
  EXPECT_EQ(parsed.request().send_multi().recipients_size(), 1000);
}

TEST(SendMulti, AZeroRegistrationIdIsLeftOutAsProto3Does) {
  auto one = entry(1, 3, 0);
  wire::MultiRecipient r;
  r.set_account_id(std::string(16, '\x01'));
  r.set_device_id(3);
  wire::SendMultiRequest with;
  *with.add_recipients() = r;
  EXPECT_EQ(encode_recipients(&one, &one + 1), with.SerializeAsString());
}

TEST(SendMulti, OwnAccountFirstThenWholeAccountsInBatches) {
  std::vector<Address> devices = {{account(9), 1}, {account(2), 1}, {account(5), 1},
                                  {account(2), 2}, {account(5), 2}, {account(5), 3},
                                  {account(7), 4}};
  auto registration = [](const Address& d) -> Result<uint32_t> { return d.device_id + 100; };
  auto sorted = multi_recipients(devices, account(7), registration);
  ASSERT_TRUE(sorted.ok()) << sorted.error().message;
  std::vector<std::pair<uint8_t, uint32_t>> order;
  for (const auto& e : *sorted) {
    order.emplace_back(e.account_id[0], e.device_id);
    EXPECT_EQ(e.registration_id, e.device_id + 100);
  }
  EXPECT_EQ(order, (std::vector<std::pair<uint8_t, uint32_t>>{
                       {7, 4}, {2, 1}, {2, 2}, {5, 1}, {5, 2}, {5, 3}, {9, 1}}));
  // At most 3 a batch: account 5's three devices cannot join account 2's two.
  EXPECT_EQ(multi_batch_ends(*sorted, 3), (std::vector<size_t>{3, 6, 7}));
  // An account with more devices than a batch holds gets a batch of its own.
  EXPECT_EQ(multi_batch_ends(*sorted, 2), (std::vector<size_t>{1, 3, 6, 7}));
  EXPECT_EQ(multi_batch_ends(*sorted, 1000), (std::vector<size_t>{7}));

  auto bad = multi_recipients({{"not hex", 1}}, account(7), registration);
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.error().message.find("not 32 hex digits"), std::string::npos);
  auto no_session = multi_recipients({{account(1), 1}}, account(7), [](const Address&) {
    return Result<uint32_t>(make_error(ErrorCode::kNoSession, "no session"));
  });
  ASSERT_FALSE(no_session.ok());
  EXPECT_EQ(no_session.code(), ErrorCode::kNoSession);
}

TEST(SendMulti, AGroupsRecipientsAreEncodedAgainOnlyWhenSomethingChanged) {
  std::vector<Address> devices;
  for (uint8_t i = 1; i <= 30; ++i) devices.push_back({account(i), 1});
  uint32_t registration_base = 500;
  int lookups = 0;
  auto registration = [&](const Address& d) -> Result<uint32_t> {
    ++lookups;
    return registration_base + d.device_id;
  };
  GroupRecipients g;
  auto again = [&](uint64_t epoch, size_t max = 10) {
    auto r = g.assign(devices, account(99), epoch, registration, max);
    EXPECT_TRUE(r.ok());
    return r.ok() && *r;
  };
  EXPECT_TRUE(again(1));
  EXPECT_EQ(lookups, 30);
  ASSERT_EQ(g.batches().size(), 3u);
  auto first = g.batches();
  EXPECT_FALSE(again(1));
  EXPECT_EQ(lookups, 30);
  EXPECT_EQ(g.batches(), first);

  // A registration id the caller's cache dropped (a new epoch) is looked up again.
  registration_base = 600;
  EXPECT_TRUE(again(2));
  EXPECT_NE(g.batches(), first);
  // A device more, a device fewer, another batch size: encoded again.
  devices.push_back({account(31), 1});
  EXPECT_TRUE(again(2));
  EXPECT_EQ(g.batches().size(), 4u);
  devices.pop_back();
  EXPECT_TRUE(again(2));
  EXPECT_EQ(g.batches().size(), 3u);
  EXPECT_TRUE(again(2, 1000));
  EXPECT_EQ(g.batches().size(), 1u);

  // Every batch parses as the recipients it stands for.
  wire::SendMultiRequest parsed;
  ASSERT_TRUE(parsed.ParseFromString(g.batches()[0]));
  ASSERT_EQ(parsed.recipients_size(), 30);
  EXPECT_EQ(parsed.recipients(0).account_id(), std::string(16, '\x01'));
  EXPECT_EQ(parsed.recipients(29).registration_id(), 601u);

  // A failed lookup leaves nothing stale behind.
  auto failing = [](const Address&) -> Result<uint32_t> {
    return make_error(ErrorCode::kNoSession, "no session");
  };
  EXPECT_FALSE(g.assign(devices, account(99), 3, failing, 1000).ok());
  EXPECT_TRUE(g.batches().empty());
  EXPECT_TRUE(again(3, 1000));
}

TEST(SendMulti, AccountIdsAreExactly32HexDigits) {
  std::array<uint8_t, 16> out{};
  EXPECT_TRUE(account_id_from_hex("00112233445566778899aabbccddeeff", out));
  EXPECT_EQ(out[0], 0x00);
  EXPECT_EQ(out[15], 0xff);
  EXPECT_FALSE(account_id_from_hex("00112233445566778899aabbccddeef", out));
  EXPECT_FALSE(account_id_from_hex("00112233445566778899aabbccddeeff00", out));
  EXPECT_FALSE(account_id_from_hex("00112233445566778899aabbccddeexx", out));
  EXPECT_FALSE(account_id_from_hex("", out));
}

}  // namespace
}  // namespace sotto
