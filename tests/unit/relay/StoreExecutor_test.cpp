#include "StoreExecutor.h"

#include <gtest/gtest.h>
#include <libpq-fe.h>
#include <sodium.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <deque>
#include <filesystem>
#include <future>
#include <thread>

#include "PostgresServer.h"
#include "PostgresStore.h"
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

// Whether a transaction of the database waits for a lock another one holds.
bool lock_awaited(const std::string& conninfo) {
  PGconn* c = PQconnectdb(conninfo.c_str());
  bool waiting = false;
  if (PQstatus(c) == CONNECTION_OK) {
    PGresult* r = PQexec(c,
                         "SELECT count(*) FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid "
                         "WHERE NOT l.granted AND a.datname = current_database()");
    waiting = PQresultStatus(r) == PGRES_TUPLES_OK && std::atoi(PQgetvalue(r, 0, 0)) > 0;
    PQclear(r);
  }
  PQfinish(c);
  return waiting;
}

// Two relay nodes whose transactions lock the same device rows in opposite orders (one read a
// queue it had written to, which locks that queue's device row before the commit locks the
// others) deadlock in PostgreSQL, which rolls one back. The victim runs again: its requests
// are not answered UNAVAILABLE (an ack refused so is lost to a client that does not retry).
TEST(StoreExecutorPostgres, TheVictimOfADeadlockBetweenNodesRunsAgain) {
  auto server = test::PostgresServer::shared();
  ASSERT_TRUE(server.ok()) << "no PostgreSQL: " << server.error().message;
  auto db = (*server)->create_database("deadlock");
  ASSERT_TRUE(db.ok()) << db.error().message;
  const std::string conninfo = (*server)->conninfo(*db);
  auto open = [&]() -> std::unique_ptr<Store> {
    auto st = PostgresStore::open({conninfo, true});
    EXPECT_TRUE(st.ok()) << st.error().message;
    return st.ok() ? std::move(*st) : nullptr;
  };

  // One account with devices 1 and 2: device 1's row sorts first.
  AccountRecord account;
  account.id = Bytes(16, 7);
  account.handle = "alice";
  account.identity_key = Bytes(33, 5);
  account.created_at_ms = 1000;
  NewDevice device;
  device.registration_id = 7;
  device.auth_hash = Bytes(32, 7);
  device.signed_prekey.set_id(1);
  device.signed_prekey.set_public_key(std::string(33, 's'));
  device.signed_prekey.set_signature(std::string(64, 'g'));
  device.last_resort.set_id(0xFFFFFF);
  device.last_resort.set_public_key(std::string(33, 'l'));
  device.created_at_ms = 1000;
  {
    auto setup = open();
    ASSERT_TRUE(setup);
    auto created = setup->create_account(account, device);
    ASSERT_TRUE(created.ok() && *created);
    auto added = setup->add_device(account.id, device, 5);
    ASSERT_TRUE(added.ok());
    ASSERT_EQ(*added, 2u);
  }
  auto send_to = [&](std::vector<uint32_t> devices) {
    NewSend n;
    n.sender_account = account.id;
    n.sender_device = 3;
    n.message_id = Bytes(16);
    randombytes_buf(n.message_id.data(), 16);
    n.type = wire::Envelope::MESSAGE;
    for (uint32_t d : devices) {
      QueuedCopy c;
      c.account_id = account.id;
      c.device_id = d;
      c.ciphertext = Bytes(4, static_cast<uint8_t>(d));
      n.copies.push_back(c);
      n.copy_types.push_back(wire::Envelope::MESSAGE);
    }
    n.server_timestamp_ms = 5000;
    n.expires_at_ms = 50'000;
    return n;
  };
  const NewSend to_2 = send_to({2}), to_1 = send_to({1}), to_both = send_to({1, 2});
  // Each node's sends' sequences (they must outlive every commit).
  std::deque<std::vector<uint64_t>> sequences_one, sequences_two;

  Metrics metrics_one, metrics_two;
  StoreExecutor one(open(), metrics_one, 64), two(open(), metrics_two, 64);
  std::promise<void> locked;
  auto locked_future = locked.get_future().share();
  std::atomic<int> one_runs{0}, two_runs{0};
  std::promise<Status> one_done, two_done;
  // Node one: queues for device 2 and reads that queue (its row is locked now), then, once
  // node two waits for that row holding device 1's, queues for device 1.
  one.submit(
      [&](Store& s) -> Status {
        SOTTO_TRY(s.enqueue(to_2, &sequences_one.emplace_back()));
        SOTTO_TRY(s.load_queue(account.id, 2, 0, 10));
        if (one_runs++ == 0) {
          locked.set_value();
          for (int i = 0; i < 200 && !lock_awaited(conninfo); ++i)
            std::this_thread::sleep_for(std::chrono::milliseconds(50));
        }
        return s.enqueue(to_1, &sequences_one.emplace_back());
      },
      [&](const Status& st) { one_done.set_value(st); });
  // Node two: queues for both devices; its commit locks device 1's row, then waits for 2's.
  two.submit(
      [&](Store& s) -> Status {
        if (two_runs++ == 0) locked_future.wait();
        return s.enqueue(to_both, &sequences_two.emplace_back());
      },
      [&](const Status& st) { two_done.set_value(st); });
  Status first = one_done.get_future().get(), second = two_done.get_future().get();
  EXPECT_TRUE(first.ok()) << first.error().message;
  EXPECT_TRUE(second.ok()) << second.error().message;
  // At least one of them ran again. Its new attempt may deadlock with the other once more
  // (it can take device 2's row again before the survivor does) and run a third time.
  EXPECT_GE(one_runs.load() + two_runs.load(), 3) << "one of them ran again";

  // Both sends are queued, each once.
  auto check = open();
  ASSERT_TRUE(check);
  for (uint32_t d : {1u, 2u}) {
    auto q = check->load_queue(account.id, d, 0, 10);
    ASSERT_TRUE(q.ok()) << q.error().message;
    EXPECT_EQ(q->size(), 2u) << "device " << d;
  }
}

}  // namespace
}  // namespace sotto::relay
