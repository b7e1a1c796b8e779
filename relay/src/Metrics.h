// The relay's counters, gauges and histograms, rendered in the Prometheus text format
// (version 0.0.4) for GET /metrics. Every member is updated lock-free from any thread.
// NB: nothing here may carry an account id, handle, device id or address (protocol.md 11.2).
#pragma once

#include <array>
#include <atomic>
#include <cstdint>
#include <string>

namespace sotto::relay {

// A histogram with fixed upper bounds in seconds.
class Histogram {
 public:
  static constexpr std::array<double, 12> kBounds = {0.0005, 0.001, 0.002, 0.005, 0.01, 0.02,
                                                     0.05,   0.1,   0.25,  0.5,   1.0,  2.5};
  void observe(double seconds);
  void render(std::string& out, const std::string& name, const std::string& help) const;

 private:
  std::array<std::atomic<uint64_t>, kBounds.size() + 1> buckets_{};
  std::atomic<uint64_t> count_{0};
  std::atomic<uint64_t> sum_us_{0};
};

struct Metrics {
  static constexpr int kOps = 22;       // Op values 0..21
  static constexpr int kStatuses = 14;  // index by status_index()

  // Connections.
  std::atomic<int64_t> ws_authenticated{0};
  std::atomic<int64_t> ws_unauthenticated{0};
  std::atomic<int64_t> http_connections{0};
  std::atomic<uint64_t> connections_accepted{0};
  std::atomic<uint64_t> connections_refused_budget{0};  // over the descriptor budget
  std::atomic<uint64_t> connections_refused_rate{0};    // per-address limits
  std::atomic<uint64_t> accept_errors{0};
  std::atomic<uint64_t> idle_drops{0};
  std::atomic<uint64_t> slow_reader_drops{0};
  std::atomic<uint64_t> protocol_errors{0};
  std::atomic<uint64_t> auth_failures{0};
  int64_t descriptor_budget = 0;
  // When the served TLS certificate expires (Unix seconds); 0 without TLS. Set on start and
  // on every successful SIGHUP reload, for an alert well before the date.
  std::atomic<int64_t> tls_not_after_s{0};
  std::atomic<uint64_t> tls_reload_failures{0};

  // Requests by op and status.
  std::array<std::array<std::atomic<uint64_t>, kStatuses>, kOps> requests{};
  std::atomic<uint64_t> requests_unknown_op{0};

  // Envelopes.
  std::atomic<uint64_t> envelopes_queued{0};
  std::atomic<uint64_t> envelopes_pushed{0};
  std::atomic<uint64_t> envelopes_acked{0};
  std::atomic<uint64_t> envelopes_expired{0};
  std::atomic<uint64_t> envelopes_ephemeral{0};
  std::atomic<uint64_t> envelopes_ephemeral_dropped{0};
  std::atomic<int64_t> queue_depth{0};

  // Storage.
  Histogram commit_latency;
  std::atomic<uint64_t> store_batches{0};
  std::atomic<uint64_t> store_jobs{0};
  std::atomic<uint64_t> store_errors{0};

  // Push wake-ups and attachments.
  std::atomic<uint64_t> wakeups_sent{0};
  std::atomic<uint64_t> wakeups_failed{0};
  std::atomic<uint64_t> wakeups_coalesced{0};
  std::atomic<uint64_t> attachments_uploaded{0};
  std::atomic<uint64_t> attachment_bytes_in{0};
  std::atomic<uint64_t> attachment_bytes_out{0};

  void count_request(int op, int status);
  // The exposition text; reads the process's open descriptors from /proc.
  std::string render() const;
};

// Position of a wire Status number in Metrics::requests (0 for unknown numbers).
int status_index(int status);

}  // namespace sotto::relay
