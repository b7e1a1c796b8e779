// The C example (sdk/examples/hello.c) sends and receives a message through a real relay.
#include <gtest/gtest.h>

#include "ChildProcess.h"
#include "RelayProcess.h"
#include "TestSupport.h"

#ifndef SOTTO_HELLO_C
#error "SOTTO_HELLO_C must name the hello_c executable"
#endif

namespace sotto::test {
namespace {

using namespace std::chrono_literals;

TEST(CExample, SendsAndReceivesThroughARealRelay) {
  RelayProcess relay;
  TempDir dir;
  ChildProcess hello({SOTTO_HELLO_C, relay.ws_url(), dir.path().string()});
  std::string out;
  while (auto line = hello.read_line(60s)) out += *line + "\n";
  EXPECT_EQ(hello.wait(), 0) << out;
  EXPECT_NE(out.find("bob received: hello from C"), std::string::npos) << out;
  EXPECT_NE(out.find("alice sees it delivered"), std::string::npos) << out;
}

}  // namespace
}  // namespace sotto::test
