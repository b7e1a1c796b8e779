#include "StoreExecutor.h"

#include <chrono>
#include <utility>
#include <vector>

#include "Log.h"
#include "sotto/ThreadName.h"

namespace sotto::relay {

StoreExecutor::StoreExecutor(std::unique_ptr<Store> store, Metrics& metrics, uint32_t batch_max)
    : store_(std::move(store)), metrics_(metrics), batch_max_(batch_max) {
  thread_ = std::thread([this] {
    name_this_thread("sotto-store");
    run();
  });
}

StoreExecutor::~StoreExecutor() { stop(); }

bool StoreExecutor::submit(Job job) {
  {
    std::lock_guard lock(mu_);
    if (stopping_) return false;
    queue_.push_back(std::move(job));
    pending_.fetch_add(1);
  }
  cv_.notify_one();
  return true;
}

void StoreExecutor::stop() {
  {
    std::lock_guard lock(mu_);
    if (stopping_ && !thread_.joinable()) return;
    stopping_ = true;
  }
  cv_.notify_one();
  if (thread_.joinable()) thread_.join();
}

size_t StoreExecutor::queued() const {
  std::lock_guard lock(mu_);
  return queue_.size();
}

Status StoreExecutor::run_batch(std::vector<Job>& batch, size_t first, size_t last) {
  Status status;
  // kBusy: the store chose this transaction as a deadlock's victim (PostgreSQL, when another
  // node's transaction locks the same device rows in another order) or another process held
  // the database. The transaction was rolled back and runs again: answered UNAVAILABLE, an ack
  // would be lost to a client that does not send it again.
  for (int attempt = 0; attempt <= kBusyRetries; ++attempt) {
    status = store_->begin();
    for (size_t i = first; status.ok() && i < last; ++i) status = batch[i].work(*store_);
    if (status.ok()) status = store_->commit();
    if (status.ok()) break;
    store_->rollback();
    metrics_.store_errors.fetch_add(1, std::memory_order_relaxed);
    if (status.code() != ErrorCode::kBusy || attempt == kBusyRetries) {
      log_failure(status.error(), last - first);
      return status;
    }
  }
  metrics_.store_batches.fetch_add(1, std::memory_order_relaxed);
  return status;
}

void StoreExecutor::log_failure(const Error& e, size_t jobs) {
  // While the disk stays full every batch fails, and then each of its jobs on its own: one line
  // a second, with how many failures it stands for, so the log does not take what space is
  // left (it is often on the same file system).
  auto now = std::chrono::steady_clock::now();
  ++failures_unlogged_;
  if (last_failure_log_.time_since_epoch().count() != 0 &&
      now - last_failure_log_ < std::chrono::seconds(1))
    return;
  last_failure_log_ = now;
  uint64_t failures = std::exchange(failures_unlogged_, 0);
  if (e.code == ErrorCode::kStorageFull) {
    log_error("storage_full", {{"failed_transactions", failures},
                               {"jobs", jobs},
                               {"error", e.message},
                               {"action",
                                "free space on the data dir's file system; until then every "
                                "request that writes is answered UNAVAILABLE, and nothing "
                                "already acknowledged is lost"}});
  } else {
    log_error("store_batch_failed",
              {{"failed_transactions", failures}, {"jobs", jobs}, {"error", e.message}});
  }
}

void StoreExecutor::run() {
  std::vector<Job> batch;
  for (;;) {
    {
      std::unique_lock lock(mu_);
      cv_.wait(lock, [&] { return stopping_ || !queue_.empty(); });
      if (queue_.empty()) return;  // stopping and drained
      while (!queue_.empty() && batch.size() < batch_max_) {
        batch.push_back(std::move(queue_.front()));
        queue_.pop_front();
      }
    }
    auto start = std::chrono::steady_clock::now();
    Status status = run_batch(batch, 0, batch.size());
    if (status.ok()) {
      metrics_.commit_latency.observe(
          std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count());
      for (auto& job : batch)
        if (job.done) job.done(status);
    } else if (batch.size() == 1) {
      if (batch[0].done) batch[0].done(status);
    } else {
      // One job's failure must not fail its neighbours: run each again on its own.
      for (size_t i = 0; i < batch.size(); ++i) {
        Status one = run_batch(batch, i, i + 1);
        if (batch[i].done) batch[i].done(one);
      }
    }
    metrics_.store_jobs.fetch_add(batch.size(), std::memory_order_relaxed);
    pending_.fetch_sub(batch.size());
    batch.clear();
  }
}

}  // namespace sotto::relay
