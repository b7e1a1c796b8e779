// What a relay's operator does, as a Client sees it: registration by invite on a closed relay,
// and a suspension that takes the account offline with the operator's reason (never "logged
// out": the credentials stay good) until it is lifted, when the Client comes back by itself.
#include <gtest/gtest.h>

#include "ClientHarness.h"

namespace sotto::test {
namespace {

std::vector<std::string> on(const RelayProcess& relay, std::vector<std::string> args) {
  args.insert(args.begin(), "admin");
  args.push_back("--data-dir");
  args.push_back(relay.data_dir().string());
  return args;
}

TEST(Operator, AClientRegistersByInviteAndWaitsOutASuspension) {
  RelayProcess::Options o;
  o.extra_args = {"--registration-open", "false"};
  RelayProcess relay(o);
  TestClient alice(relay, "alice");

  auto refused = alice->register_account("alice_op");
  ASSERT_FALSE(refused.ok());
  EXPECT_EQ(refused.code(), ErrorCode::kForbidden);
  EXPECT_NE(refused.error().message.find("invite"), std::string::npos)
      << refused.error().message;

  auto made = run_relay(on(relay, {"invite", "create"}));
  ASSERT_EQ(made.status, 0) << made.output;
  std::string token = made.output.substr(0, made.output.find('\n'));
  auto registered = alice->register_account("alice_op", token);
  ASSERT_TRUE(registered.ok()) << registered.error().message;
  ASSERT_TRUE(alice->wait_online(20s));

  auto suspended = run_relay(on(relay, {"suspend", "alice_op", "--reason", "too many reports"}));
  ASSERT_EQ(suspended.status, 0) << suspended.output;
  auto told = [&] {
    for (const auto& [state, detail] : alice.events().states())
      if (state == ConnectionState::kOffline &&
          detail.find("suspended") != std::string::npos)
        return true;
    return false;
  };
  EXPECT_TRUE(eventually(told, 20s)) << relay.log();
  // A reconnect is refused with the reason, and the Client keeps its account.
  EXPECT_TRUE(eventually(
      [&] {
        for (const auto& [state, detail] : alice.events().states())
          if (detail.find("too many reports") != std::string::npos) return true;
        return false;
      },
      20s));
  EXPECT_NE(alice->connection_state(), ConnectionState::kLoggedOut);

  auto lifted = run_relay(on(relay, {"unsuspend", "alice_op"}));
  ASSERT_EQ(lifted.status, 0) << lifted.output;
  EXPECT_TRUE(alice->wait_online(30s)) << relay.log();
  alice.close();
  alice.reopen();
  EXPECT_TRUE(alice->wait_online(20s));
  auto account = alice->account();
  ASSERT_TRUE(account.ok());
  EXPECT_EQ(account->handle, "alice_op");
}

}  // namespace
}  // namespace sotto::test
