// The relay's protocol logic in-process: a real relay::Relay over a real SqliteStore in a
// temporary directory, with connections that are objects instead of sockets and a clock the
// test moves. No Beast, no process, no port: unit tests drive one operation at a time and the
// stateful fuzz target drives sequences of them.
//
// Threading: the test's thread plays every connection's strand. Work the relay posts to a
// connection (from the store's writer thread, or from another connection) waits in one queue
// until settle() runs it on the test's thread.
#pragma once

#include <atomic>
#include <cstdint>
#include <deque>
#include <filesystem>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "Config.h"
#include "Metrics.h"
#include "Relay.h"
#include "StoreExecutor.h"
#include "WireRequests.h"
#include "sotto/Result.h"

namespace sotto::test {

class RelayHarness;

// One connection as the relay sees it. It reads everything at once unless stalled: then what
// the relay writes stays queued, as on a socket whose peer stopped reading, and past the
// relay's outgoing limit the connection is cut as the server cuts a slow reader.
class HarnessConnection final : public relay::Connection,
                                public std::enable_shared_from_this<HarnessConnection> {
 public:
  HarnessConnection(RelayHarness& harness, std::string ip);

  // ---- relay::Connection ----
  void post(std::function<void()> fn) override;
  void write(std::shared_ptr<const std::string> frame) override;
  void close(uint16_t code) override;
  void request_done(uint64_t id) override;
  void set_deadline(uint64_t at_ms) override { deadline_ms = at_ms; }
  uint64_t queued_bytes() const override { return queued_; }
  void when_below(uint64_t bytes, std::function<void()> fn) override;

  // Answers and pushes received and not yet taken, in order.
  std::deque<wire::Response> responses;
  std::deque<wire::Push> pushes;
  // The close code the relay sent (graceful close), if any.
  std::optional<uint16_t> close_code;
  // Closed because too much waited for it (the server's 1008 rule).
  bool cut = false;
  bool ended = false;  // the relay was told the connection is gone
  uint64_t deadline_ms = 0;
  uint64_t frames_written = 0;
  std::shared_ptr<relay::Peer> peer;
  std::string ip;

  // While stalled, writes queue up (and count in queued_bytes()); drain() delivers them.
  void stall() { stalled_ = true; }
  bool stalled() const { return stalled_; }
  void drain();
  // The response to `id`, taken out of `responses`.
  std::optional<wire::Response> take_response(uint64_t id);
  // Envelopes pushed and not yet taken, in order.
  std::vector<wire::Envelope> take_envelopes();
  // Ids of requests not answered yet.
  const std::vector<uint64_t>& unanswered() const { return unanswered_; }

 private:
  friend class RelayHarness;
  void receive(const std::string& frame);
  RelayHarness& harness_;
  bool stalled_ = false;
  std::vector<std::shared_ptr<const std::string>> held_;  // written while stalled
  uint64_t queued_ = 0;
  uint64_t drain_mark_ = 0;
  std::function<void()> on_drained_;
  std::vector<uint64_t> unanswered_;
};

class RelayHarness {
 public:
  struct Options {
    relay::Config config;  // data_dir is set by the harness
    bool sync_full = false;  // fsync per commit: the relay's default, slower in tests
    uint64_t start_ms = 1'800'000'000'000;
  };
  RelayHarness();
  explicit RelayHarness(Options options);
  ~RelayHarness();
  RelayHarness(const RelayHarness&) = delete;
  RelayHarness& operator=(const RelayHarness&) = delete;

  // A socket that upgraded without credentials.
  std::shared_ptr<HarnessConnection> open(const std::string& ip = "192.0.2.1");
  // The upgrade with this Authorization header: nullptr and the reason when refused.
  std::shared_ptr<HarnessConnection> open_authenticated(const std::string& authorization,
                                                        relay::Relay::Auth::Kind* refused = nullptr,
                                                        const std::string& ip = "192.0.2.1");
  std::shared_ptr<HarnessConnection> connect(const TestDevice& device,
                                             const std::string& ip = "192.0.2.1");
  // Registers a new account with one device (keys from make_device) over a fresh
  // unauthenticated connection.
  Result<TestDevice> register_device(const std::string& handle, uint32_t prekeys = 5);
  // The same with keys made beforehand (make_device): fills account_id and device_id.
  Result<TestDevice> register_keys(TestDevice device);
  // The peer went away (the socket closed).
  void disconnect(HarnessConnection& conn);

  // Hands `request` to the relay as the connection's next frame (an id is assigned when it is
  // 0, unless `keep_id`) and returns the id; the answer arrives with settle().
  uint64_t send(HarnessConnection& conn, wire::Request request, bool keep_id = false);
  // send(), settle(), and the answer (kNotFound when none came, e.g. after a close).
  Result<wire::Response> call(HarnessConnection& conn, wire::Request request);
  // Runs posted work and storage jobs until there is none left.
  void settle();

  uint64_t now_ms() const { return now_ms_.load(); }
  void advance(uint64_t ms);  // moves the clock and runs the relay's housekeeping

  relay::Relay& relay() { return *relay_; }
  relay::Metrics& metrics() { return metrics_; }
  relay::StoreExecutor& store() { return *store_; }
  const relay::Config& config() const { return config_; }
  const std::filesystem::path& data_dir() const { return dir_; }

 private:
  friend class HarnessConnection;
  void post(std::function<void()> fn);

  relay::Config config_;
  std::filesystem::path dir_;
  std::atomic<uint64_t> now_ms_;
  relay::Metrics metrics_;
  std::unique_ptr<relay::StoreExecutor> store_;
  std::unique_ptr<relay::Relay> relay_;
  std::mutex mu_;
  std::deque<std::function<void()>> posted_;
  uint64_t next_request_id_ = 1;
  uint32_t registrations_ = 0;
};

}  // namespace sotto::test
