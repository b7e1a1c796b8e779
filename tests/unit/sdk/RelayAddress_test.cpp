// Which relay addresses a Client accepts: TLS anywhere, plain ws:// and http:// only to this
// machine unless the app sets the development option. Client::create() decides before
// anything is dialed, so none of these addresses is ever contacted.
#include <gtest/gtest.h>

#include "TestSupport.h"
#include "Transport.h"
#include "sotto/Client.h"

namespace sotto {
namespace {

Status create_with(const std::string& url, bool allow_plaintext = false) {
  test::TempDir dir;
  ProfileOptions po;
  po.initial_prekeys = 0;
  auto profile = Profile::open_with_key(dir.path(), test::test_key("relay-address"), po);
  if (!profile.ok()) return std::move(profile).error();
  ClientOptions o;
  o.relay_url = url;
  o.dangerously_allow_plaintext_relay = allow_plaintext;
  auto client = Client::create(std::move(*profile), std::move(o));
  if (!client.ok()) return std::move(client).error();
  return {};
}

TEST(RelayAddress, PlainWebSocketToAnotherMachineIsRefusedWithTheFix) {
  for (const char* url :
       {"ws://192.0.2.10:8080/v1/ws", "ws://relay.example.org/v1/ws", "http://10.0.0.1/v1/ws",
        "ws://127.0.0.1.example.org/v1/ws", "ws://localhost.example.org/v1/ws",
        "ws://[2001:db8::1]:8080/v1/ws", "ws://128.0.0.1/v1/ws", "ws://0.0.0.0:8080/v1/ws"}) {
    Status s = create_with(url);
    ASSERT_EQ(s.code(), ErrorCode::kInvalidArgument) << url;
    const std::string& why = s.error().message;
    EXPECT_NE(why.find(url), std::string::npos) << why;
    EXPECT_NE(why.find("wss://"), std::string::npos) << why;
    EXPECT_NE(why.find("dangerously_allow_plaintext_relay"), std::string::npos) << why;
  }
}

TEST(RelayAddress, LoopbackAndTlsAreAccepted) {
  for (const char* url :
       {"ws://127.0.0.1:8080/v1/ws", "ws://127.255.0.3/v1/ws", "ws://localhost:9/v1/ws",
        "ws://LocalHost/v1/ws", "ws://[::1]:8080/v1/ws", "http://127.0.0.1:8080",
        "wss://relay.example.org/v1/ws", "wss://192.0.2.10:8443/v1/ws", "https://10.0.0.1"}) {
    Status s = create_with(url);
    EXPECT_TRUE(s.ok()) << url << ": " << s.error().message;
  }
}

TEST(RelayAddress, TheDevelopmentOptionAllowsPlainWebSocketAnywhere) {
  for (const char* url : {"ws://192.0.2.10:8080/v1/ws", "ws://relay.example.org/v1/ws"}) {
    Status s = create_with(url, /*allow_plaintext=*/true);
    EXPECT_TRUE(s.ok()) << url << ": " << s.error().message;
  }
  // The option does not make a malformed address acceptable.
  EXPECT_EQ(create_with("ftp://relay.example.org", true).code(), ErrorCode::kInvalidArgument);
}

TEST(RelayAddress, OnlyLiteralNamesOfThisMachineCountAsLoopback) {
  for (const char* host : {"localhost", "LOCALHOST", "127.0.0.1", "127.1.2.3", "::1"})
    EXPECT_TRUE(net::is_loopback_host(host)) << host;
  for (const char* host : {"", "localhost.", "127.1", "0x7f.0.0.1", "::ffff:127.0.0.1",
                           "::", "126.255.255.255", "example.org", "2001:db8::1"})
    EXPECT_FALSE(net::is_loopback_host(host)) << host;
}

}  // namespace
}  // namespace sotto
