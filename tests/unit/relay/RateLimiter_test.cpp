#include "RateLimiter.h"

#include <gtest/gtest.h>

namespace sotto::relay {
namespace {

TEST(RateSpec, ParsesRatesPeriodsAndBursts) {
  RateSpec s;
  ASSERT_TRUE(RateSpec::parse("30/1s:300", s));
  EXPECT_TRUE(s.enabled);
  EXPECT_EQ(s.rate, 30);
  EXPECT_EQ(s.period_ms, 1000u);
  EXPECT_EQ(s.burst, 300);
  ASSERT_TRUE(RateSpec::parse("5/h", s));
  EXPECT_EQ(s.period_ms, 3'600'000u);
  EXPECT_EQ(s.burst, 5);
  ASSERT_TRUE(RateSpec::parse("off", s));
  EXPECT_FALSE(s.enabled);
  for (const char* bad : {"", "5", "5/", "5/1y", "-1/1s", "x/1s", "5/1s:0", "5/0s", "5/1s:x"})
    EXPECT_FALSE(RateSpec::parse(bad, s)) << bad;
  RateSpec round;
  ASSERT_TRUE(RateSpec::parse("500/1h:100", round));
  RateSpec again;
  ASSERT_TRUE(RateSpec::parse(round.to_string(), again));
  EXPECT_EQ(again.rate, 500);
  EXPECT_EQ(again.burst, 100);
  EXPECT_EQ(again.period_ms, 3'600'000u);
}

TEST(RateLimiter, TakesTokensAndSaysWhenToRetry) {
  RateSpec s;
  ASSERT_TRUE(RateSpec::parse("2/1s:3", s));
  RateLimiter rl(s);
  uint64_t t = 1'000'000;
  EXPECT_EQ(rl.take("a", t), 0u);
  EXPECT_EQ(rl.take("a", t), 0u);
  EXPECT_EQ(rl.take("a", t), 0u);
  uint64_t wait = rl.take("a", t);
  EXPECT_EQ(wait, 500u) << "one token at 2 per second";
  EXPECT_EQ(rl.take("b", t), 0u) << "keys are separate";
  EXPECT_EQ(rl.take("a", t + 500), 0u);
  EXPECT_GT(rl.take("a", t + 500), 0u);
  EXPECT_EQ(rl.take("a", t + 10'000, 3), 0u) << "refills up to the burst";
  EXPECT_GT(rl.take("a", t + 10'000, 4), 0u) << "more than the burst never passes";
}

TEST(RateLimiter, SweepForgetsFullBuckets) {
  RateSpec s;
  ASSERT_TRUE(RateSpec::parse("1/1s", s));
  RateLimiter rl(s);
  rl.take("a", 0);
  rl.take("b", 0);
  EXPECT_EQ(rl.size(), 2u);
  rl.sweep(500);
  EXPECT_EQ(rl.size(), 2u);
  rl.sweep(5000);
  EXPECT_EQ(rl.size(), 0u);
}

TEST(RateLimiter, DisabledNeverLimits) {
  RateLimiter rl(RateSpec{});
  for (int i = 0; i < 1000; ++i) EXPECT_EQ(rl.take("a", 0), 0u);
}

TEST(ConcurrencyLimiter, CountsPerKey) {
  ConcurrencyLimiter c(2);
  EXPECT_TRUE(c.acquire("ip"));
  EXPECT_TRUE(c.acquire("ip"));
  EXPECT_FALSE(c.acquire("ip"));
  EXPECT_TRUE(c.acquire("other"));
  c.release("ip");
  EXPECT_TRUE(c.acquire("ip"));
  ConcurrencyLimiter unlimited(0);
  for (int i = 0; i < 100; ++i) EXPECT_TRUE(unlimited.acquire("ip"));
}

}  // namespace
}  // namespace sotto::relay
