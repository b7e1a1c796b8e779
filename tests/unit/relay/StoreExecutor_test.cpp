#include "StoreExecutor.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <future>

#include "SqliteStore.h"

namespace sotto::relay {
namespace {

class StoreExecutorTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = std::filesystem::temp_directory_path() / ("sotto-exec-" + std::to_string(::getpid()));
    std::filesystem::create_directories(dir_);
    auto st = SqliteStore::open(dir_ / "relay.db", {});
    ASSERT_TRUE(st.ok());
    exec_ = std::make_unique<StoreExecutor>(std::move(*st), metrics_, 64);
  }
  void TearDown() override {
    exec_.reset();
    std::filesystem::remove_all(dir_);
  }
  std::filesystem::path dir_;
  Metrics metrics_;
  std::unique_ptr<StoreExecutor> exec_;
};

TEST_F(StoreExecutorTest, JobsRunInOrderAndShareTransactions) {
  std::vector<int> order;
  std::promise<void> done;
  constexpr int kJobs = 500;
  for (int i = 0; i < kJobs; ++i) {
    ASSERT_TRUE(exec_->submit(
        [&order, i](Store&) -> Status {
          order.push_back(i);
          return {};
        },
        [&, i](const Status& s) {
          EXPECT_TRUE(s.ok());
          if (i == kJobs - 1) done.set_value();
        }));
  }
  done.get_future().wait();
  ASSERT_EQ(order.size(), static_cast<size_t>(kJobs));
  for (int i = 0; i < kJobs; ++i) EXPECT_EQ(order[i], i);
  EXPECT_LT(metrics_.store_batches.load(), static_cast<uint64_t>(kJobs)) << "batched commits";
  exec_->stop();  // pending() drops after the batch's completions have run
  EXPECT_EQ(exec_->pending(), 0u);
}

TEST_F(StoreExecutorTest, AFailingJobDoesNotFailItsNeighbours) {
  std::promise<void> gate;
  auto opened = gate.get_future().share();
  // Hold the writer so the next three jobs land in one batch.
  exec_->submit(
      [opened](Store&) -> Status {
        opened.wait();
        return {};
      },
      nullptr);
  std::vector<std::promise<bool>> results(3);
  for (int i = 0; i < 3; ++i) {
    exec_->submit(
        [i](Store& s) -> Status {
          if (i == 1) return make_error(ErrorCode::kStorageIo, "disk on fire");
          return s.ping();
        },
        [&results, i](const Status& st) { results[i].set_value(st.ok()); });
  }
  gate.set_value();
  EXPECT_TRUE(results[0].get_future().get());
  EXPECT_FALSE(results[1].get_future().get());
  EXPECT_TRUE(results[2].get_future().get());
  EXPECT_GE(metrics_.store_errors.load(), 1u);
}

TEST_F(StoreExecutorTest, StopFinishesQueuedJobsThenRefusesNewOnes) {
  std::atomic<int> ran{0};
  for (int i = 0; i < 100; ++i)
    exec_->submit(
        [&ran](Store&) -> Status {
          ++ran;
          return {};
        },
        nullptr);
  exec_->stop();
  EXPECT_EQ(ran.load(), 100);
  EXPECT_FALSE(exec_->submit([](Store&) -> Status { return {}; }, nullptr));
}

}  // namespace
}  // namespace sotto::relay
