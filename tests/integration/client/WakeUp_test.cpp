// Wake-ups through the SDK: an app registers the URL its platform's push service gave it, and
// the relay POSTs a content-free wake-up there when a message is queued while the device is
// offline; after clear_push_endpoint() it does not. Through a real relay process and a real
// HTTP listener on 127.0.0.1.
#include <gtest/gtest.h>

#include "ClientHarness.h"
#include "RelayMetrics.h"
#include "WebhookListener.h"

namespace sotto::test {
namespace {

// Waits until the relay counts `n` authenticated connections: it has seen bob's close.
bool relay_counts(const RelayProcess& relay, int n) {
  return wait_for_metric(relay.port(), "sotto_connections{kind=\"ws_authenticated\"}",
                         [n](double v) { return v == n; });
}

TEST(WakeUp, AMessageForAnOfflineDeviceWakesItUntilTheEndpointIsCleared) {
  WebhookListener hook;
  RelayProcess relay;
  TestClient alice(relay, "alice"), bob(relay, "bob");
  alice.register_account();
  bob.register_account();
  ConversationId ab = alice.conversation_with(bob);

  // Nothing an app would pass by mistake reaches the relay.
  EXPECT_EQ(bob->set_push_endpoint("").code(), ErrorCode::kInvalidArgument);
  EXPECT_EQ(bob->set_push_endpoint("https://push.example/" + std::string(2100, 'a')).code(),
            ErrorCode::kInvalidArgument);
  auto refused = bob->set_push_endpoint("not a url");
  ASSERT_FALSE(refused.ok());
  EXPECT_EQ(refused.code(), ErrorCode::kRelayRejected) << refused.error().message;
  EXPECT_NE(refused.error().message.find("push endpoint"), std::string::npos)
      << refused.error().message;

  ASSERT_TRUE(bob->set_push_endpoint(hook.url()).ok());
  bob.close();
  ASSERT_TRUE(relay_counts(relay, 1)) << "the relay still counts bob online";
  ASSERT_TRUE(alice->send_text(ab, "wake up").ok());
  ASSERT_EQ(hook.wait_for(1, 10s), 1u) << "the relay did not wake bob";
  auto reqs = hook.requests();
  EXPECT_EQ(reqs[0].method, "POST");
  EXPECT_EQ(reqs[0].body, R"({"sotto":"wake"})") << "a wake-up carries nothing else";
  bob.reopen();
  ASSERT_TRUE(eventually([&] { return bob.events().texts().size() == 1; }));

  // Cleared: the next message for the offline device wakes nobody. The relay has stored it
  // (alice's send was acknowledged) and decided on the wake-up before the check below.
  ASSERT_TRUE(bob->clear_push_endpoint().ok());
  bob.close();
  ASSERT_TRUE(relay_counts(relay, 1)) << "the relay still counts bob online";
  auto sent = alice->send_text(ab, "no wake-up now");
  ASSERT_TRUE(sent.ok());
  ASSERT_TRUE(eventually([&] {
    auto m = alice.find(ab, *sent);
    return m && m->status >= MessageStatus::kSent;
  }));
  EXPECT_EQ(hook.wait_for(2, 1s), 1u) << "a cleared endpoint was woken";
  bob.reopen();
  ASSERT_TRUE(eventually([&] { return bob.events().texts().size() == 2; }));
}

}  // namespace
}  // namespace sotto::test
