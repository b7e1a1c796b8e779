// sotto-relay admin and --check-config, on the real binary beside a relay that serves the same
// data dir: listings, suspension (the connected device is closed with 4003, a new connection
// gets 401 with the operator's reason), deletion, invites on a relay with closed
// registration, and what each says when it is used wrong.
#include <cctype>
#include <fstream>

#include "RelayTestUtil.h"

namespace sotto::test {
namespace {

std::vector<std::string> admin_args(const RelayProcess& relay, std::vector<std::string> words) {
  std::vector<std::string> args = {"admin"};
  args.insert(args.end(), words.begin(), words.end());
  args.push_back("--data-dir");
  args.push_back(relay.data_dir().string());
  return args;
}

Outcome admin(const RelayProcess& relay, std::vector<std::string> words) {
  return run_relay(admin_args(relay, std::move(words)));
}

// Registers on a relay whose registration is closed; the response.
wire::Response register_with(const RelayProcess& relay, const TestDevice& d,
                             const std::string& invite) {
  auto c = WireClient::connect(relay.host(), relay.port());
  EXPECT_TRUE(c.ok());
  if (!c.ok()) return {};
  auto r = (*c)->call(register_request(d, 0, invite));
  EXPECT_TRUE(r.ok());
  return r.ok() ? *r : wire::Response{};
}

bool contains(const std::string& text, const std::string& part) {
  return text.find(part) != std::string::npos;
}

TEST(RelayAdmin, ListsShowsAndCountsAccountsWhileTheRelayServes) {
  RelayProcess relay;
  TestDevice alice = must_register(relay, "alice");
  TestDevice bob = must_register(relay, "bob.b");
  must_register(relay, "bobby");
  {
    auto c = must_connect(relay, alice);
    ASSERT_TRUE(c);
    expect_ok(*c, send_request(random_message_id(), {{&bob, "hello"}}));
  }

  auto all = admin(relay, {"accounts"});
  EXPECT_EQ(all.status, 0) << all.output;
  EXPECT_TRUE(contains(all.output, "alice")) << all.output;
  EXPECT_TRUE(contains(all.output, to_hex(alice.account_id))) << all.output;
  EXPECT_TRUE(contains(all.output, "3 accounts")) << all.output;

  auto bobs = admin(relay, {"accounts", "bob", "--limit", "1"});
  EXPECT_EQ(bobs.status, 0) << bobs.output;
  EXPECT_TRUE(contains(bobs.output, "bob.b")) << bobs.output;
  EXPECT_FALSE(contains(bobs.output, "alice")) << bobs.output;
  EXPECT_TRUE(contains(bobs.output, "more match")) << bobs.output;

  auto show = admin(relay, {"show", "bob.b"});
  EXPECT_EQ(show.status, 0) << show.output;
  EXPECT_TRUE(contains(show.output, "device 1:")) << show.output;
  EXPECT_TRUE(contains(show.output, "1 queued")) << show.output;
  EXPECT_TRUE(contains(show.output, "state        active")) << show.output;

  auto totals = admin(relay, {"totals"});
  EXPECT_EQ(totals.status, 0) << totals.output;
  EXPECT_TRUE(contains(totals.output, "accounts          3 (0 suspended)")) << totals.output;
  EXPECT_TRUE(contains(totals.output, "queued envelopes  1 ")) << totals.output;

  auto missing = admin(relay, {"show", "carol"});
  EXPECT_EQ(missing.status, 1);
  EXPECT_TRUE(contains(missing.output, "no account with the handle 'carol'")) << missing.output;
  auto wrong = admin(relay, {"frobnicate"});
  EXPECT_EQ(wrong.status, 2);
  EXPECT_TRUE(contains(wrong.output, "sotto-relay admin help")) << wrong.output;
  auto bad_flag = admin(relay, {"totals", "--reason", "x"});
  EXPECT_EQ(bad_flag.status, 2);
  EXPECT_TRUE(contains(bad_flag.output, "--reason does not go with `totals`")) << bad_flag.output;
}

TEST(RelayAdmin, ASuspendedAccountIsClosedRefusedWithTheReasonAndBackWhenLifted) {
  RelayProcess relay;
  TestDevice alice = must_register(relay, "alice");
  TestDevice bob = must_register(relay, "bob");
  auto connected = must_connect(relay, alice);
  ASSERT_TRUE(connected);

  auto no_reason = admin(relay, {"suspend", "alice"});
  EXPECT_EQ(no_reason.status, 2);
  EXPECT_TRUE(contains(no_reason.output, "--reason")) << no_reason.output;

  auto done = admin(relay, {"suspend", "alice", "--reason", "spam reports"});
  ASSERT_EQ(done.status, 0) << done.output;
  // The relay looks for operators' actions every 2 seconds.
  EXPECT_EQ(connected->wait_closed(10s), std::optional<uint16_t>(4003)) << relay.log();

  Credentials creds = alice.credentials();
  int http_status = 0;
  auto refused = WireClient::connect(relay.host(), relay.port(), &creds, &http_status);
  EXPECT_FALSE(refused.ok());
  EXPECT_EQ(http_status, 401);
  if (!refused.ok()) {
    EXPECT_TRUE(contains(refused.error().message, "suspended by the relay's operator: spam reports"))
        << refused.error().message;
  }
  // Its queue still takes messages: a suspension loses nothing.
  {
    auto b = must_connect(relay, bob);
    ASSERT_TRUE(b);
    expect_ok(*b, send_request(random_message_id(), {{&alice, "while suspended"}}));
  }
  auto listed = admin(relay, {"accounts"});
  EXPECT_TRUE(contains(listed.output, "suspended: spam reports")) << listed.output;

  auto lifted = admin(relay, {"unsuspend", "alice"});
  ASSERT_EQ(lifted.status, 0) << lifted.output;
  // A running relay sees it within a few seconds.
  std::unique_ptr<WireClient> back;
  for (auto until = std::chrono::steady_clock::now() + 10s;
       !back && std::chrono::steady_clock::now() < until; std::this_thread::sleep_for(200ms)) {
    auto c = connect_device(relay.host(), relay.port(), alice);
    if (c.ok()) back = std::move(*c);
  }
  ASSERT_TRUE(back) << relay.log();
  auto backlog = drain_backlog(*back);
  ASSERT_EQ(backlog.size(), 1u);
  EXPECT_EQ(backlog[0].ciphertext(), "while suspended");
}

TEST(RelayAdmin, DeleteAsksForYesThenClosesTheDevicesAndFreesTheHandle) {
  RelayProcess relay;
  TestDevice bob = must_register(relay, "bob");
  auto connected = must_connect(relay, bob);
  ASSERT_TRUE(connected);

  auto unsure = admin(relay, {"delete", "bob"});
  EXPECT_EQ(unsure.status, 2);
  EXPECT_TRUE(contains(unsure.output, "--yes")) << unsure.output;
  EXPECT_TRUE(connected->is_open());

  auto done = admin(relay, {"delete", "bob", "--yes"});
  ASSERT_EQ(done.status, 0) << done.output;
  EXPECT_EQ(connected->wait_closed(10s), std::optional<uint16_t>(4001)) << relay.log();
  Credentials creds = bob.credentials();
  int http_status = 0;
  EXPECT_FALSE(WireClient::connect(relay.host(), relay.port(), &creds, &http_status).ok());
  EXPECT_EQ(http_status, 401);
  // The handle is free again.
  must_register(relay, "bob");
}

TEST(RelayAdmin, AClosedRelayRegistersOnlyWithALiveInvite) {
  RelayProcess::Options o;
  o.extra_args = {"--registration-open", "false"};
  RelayProcess relay(o);
  auto d = make_device("alice");
  ASSERT_TRUE(d.ok());

  auto none = register_with(relay, *d, "");
  EXPECT_EQ(none.status(), wire::FORBIDDEN);
  EXPECT_TRUE(contains(none.message(), "ask its operator for an invite")) << none.message();
  auto junk = register_with(relay, *d, "not-an-invite");
  EXPECT_EQ(junk.status(), wire::BAD_REQUEST) << junk.message();

  auto made = admin(relay, {"invite", "create", "--uses", "1", "--note", "for alice"});
  ASSERT_EQ(made.status, 0) << made.output;
  std::string token = made.output.substr(0, made.output.find('\n'));
  ASSERT_EQ(token.size(), 29u) << made.output;  // 25 characters in five groups
  // A made-up token of the right shape is refused.
  std::string other = token;
  other[0] = other[0] == '0' ? '1' : '0';
  EXPECT_EQ(register_with(relay, *d, other).status(), wire::FORBIDDEN);

  // Typed in lower case without the dashes, for a handle someone has: the use is given back.
  std::string typed;
  for (char c : token)
    if (c != '-') typed += static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  {
    auto taker = make_device("taken");
    ASSERT_TRUE(taker.ok());
    auto opener = admin(relay, {"invite", "create"});
    std::string first = opener.output.substr(0, opener.output.find('\n'));
    ASSERT_EQ(register_with(relay, *taker, first).status(), wire::OK);
    auto again = make_device("taken");
    ASSERT_TRUE(again.ok());
    EXPECT_EQ(register_with(relay, *again, typed).status(), wire::CONFLICT);
  }
  EXPECT_EQ(register_with(relay, *d, typed).status(), wire::OK);
  auto late = make_device("bob");
  ASSERT_TRUE(late.ok());
  auto spent = register_with(relay, *late, token);
  EXPECT_EQ(spent.status(), wire::FORBIDDEN);
  EXPECT_TRUE(contains(spent.message(), "used up, expired or revoked")) << spent.message();

  auto list = admin(relay, {"invite", "list"});
  EXPECT_EQ(list.status, 0) << list.output;
  EXPECT_TRUE(contains(list.output, "used up")) << list.output;
  EXPECT_TRUE(contains(list.output, "for alice")) << list.output;
  EXPECT_FALSE(contains(list.output, token)) << "the token itself is never stored";

  // Revoked by its token (or by the id the list shows): it stops working at once.
  auto spare = admin(relay, {"invite", "create", "--uses", "5"});
  std::string spare_token = spare.output.substr(0, spare.output.find('\n'));
  auto revoked = admin(relay, {"invite", "revoke", spare_token});
  EXPECT_EQ(revoked.status, 0) << revoked.output;
  EXPECT_EQ(register_with(relay, *late, spare_token).status(), wire::FORBIDDEN);
  EXPECT_EQ(admin(relay, {"invite", "revoke", "ffffffffffff"}).status, 1);
  auto totals = admin(relay, {"totals"});
  EXPECT_TRUE(contains(totals.output, "live invites      0")) << totals.output;
}

TEST(RelayAdmin, CheckConfigValidatesTheFileAndWhatItNames) {
  Scratch dir;
  std::filesystem::create_directories(dir.path / "data");
  auto write = [&](const std::string& name, const std::string& text) {
    std::ofstream(dir.path / name) << text;
    return (dir.path / name).string();
  };
  auto good = write("good.conf", "data-dir = " + (dir.path / "data").string() +
                                     "\nlisten = 127.0.0.1:0\nregistration-open = false\n");
  auto ok = run_relay({"--check-config", "--config", good});
  EXPECT_EQ(ok.status, 0) << ok.output;
  EXPECT_TRUE(contains(ok.output, "the configuration is valid")) << ok.output;
  EXPECT_TRUE(contains(ok.output, "registration by invite")) << ok.output;

  auto typo = write("typo.conf", "data-dir = " + (dir.path / "data").string() + "\nlisen = 1\n");
  auto bad = run_relay({"--check-config", "--config", typo});
  EXPECT_EQ(bad.status, 2) << bad.output;
  EXPECT_TRUE(contains(bad.output, "lisen")) << bad.output;

  auto missing = write("missing.conf", "data-dir = " + (dir.path / "nowhere").string() +
                                           "\ntls-cert = " + (dir.path / "no.pem").string() +
                                           "\ntls-key = " + (dir.path / "no.key").string() +
                                           "\n");
  auto gaps = run_relay({"--check-config", "--config", missing});
  EXPECT_EQ(gaps.status, 2) << gaps.output;
  EXPECT_TRUE(contains(gaps.output, "nowhere: not a directory")) << gaps.output;
  EXPECT_TRUE(contains(gaps.output, "no.pem: cannot be read")) << gaps.output;

  // The admin command does not make a data dir it cannot find.
  auto lost = run_relay({"admin", "accounts", "--data-dir", (dir.path / "nowhere").string()});
  EXPECT_EQ(lost.status, 1) << lost.output;
  EXPECT_TRUE(contains(lost.output, "has no relay database")) << lost.output;
  EXPECT_FALSE(std::filesystem::exists(dir.path / "nowhere"));
}

}  // namespace
}  // namespace sotto::test
