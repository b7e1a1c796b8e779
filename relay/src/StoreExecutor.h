// The storage writer thread. Jobs queued from any thread run one after another on this
// thread; all jobs waiting when a batch starts share one transaction, so one fsync covers
// many sends. A job's completion runs after the commit, on this thread, with the commit's
// outcome: it must only post work elsewhere (never block).
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

#include "Metrics.h"
#include "Store.h"

namespace sotto::relay {

class StoreExecutor {
 public:
  // `work` reads and writes through the Store; an error from it (storage trouble, not a refusal
  // of the request) rolls back the whole batch, whose jobs then run again one transaction
  // each. A transaction that fails with kBusy (a deadlock's victim) runs again as it was
  // first. NB: so `work` may run several times and must set its results from scratch each
  // time.
  // `done` gets the outcome of the transaction that held the job.
  struct Job {
    std::function<Status(Store&)> work;
    std::function<void(const Status&)> done;
  };

  StoreExecutor(std::unique_ptr<Store> store, Metrics& metrics, uint32_t batch_max);
  ~StoreExecutor();  // stop()

  // false when the executor is stopping: the caller answers UNAVAILABLE.
  bool submit(Job job);
  bool submit(std::function<Status(Store&)> work, std::function<void(const Status&)> done) {
    return submit(Job{std::move(work), std::move(done)});
  }
  // Refuses new jobs, finishes every queued one, commits and joins the thread.
  void stop();
  size_t queued() const;
  // Jobs submitted and not yet completed (queued or running).
  size_t pending() const { return pending_.load(); }

 private:
  // How many times a transaction that failed with kBusy runs again before it fails.
  static constexpr int kBusyRetries = 3;

  void run();
  Status run_batch(std::vector<Job>& batch, size_t first, size_t last);
  void log_failure(const Error& e, size_t jobs);  // at most one line a second

  std::unique_ptr<Store> store_;
  Metrics& metrics_;
  uint32_t batch_max_;
  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::deque<Job> queue_;
  bool stopping_ = false;
  std::atomic<size_t> pending_{0};
  // Writer thread only.
  std::chrono::steady_clock::time_point last_failure_log_{};
  uint64_t failures_unlogged_ = 0;
  std::thread thread_;
};

}  // namespace sotto::relay
