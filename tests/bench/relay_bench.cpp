// relay_bench: a load generator for sotto-relay on loopback. It starts its own relay process
// (temp data dir, 127.0.0.1, ephemeral port) and prints a table of figures:
//
//   1. durable 1:1 envelopes/s with 100 connections (each send is committed before its OK)
//   2. p50/p99 send-to-deliver latency at half of that rate, and at 2,000 and 10,000/s. Sends
//      follow a fixed schedule (send k is due at start + k / rate, whether or not the previous
//      ones were answered) and latency counts from the due time, so a stall delays the sends
//      behind it and shows in the figures instead of thinning the sample; sends that left
//      more than 1 ms after their due time are counted
//   3. time for one send_multi to reach 1,000 connected devices
//   4. relay RSS per idle authenticated connection: the slope between 5,000 and 18,000
//      connections, held by several load-generator processes on source addresses 127.0.0.x
//      (a process here may hold at most 20,000 files), then connections past the relay's
//      descriptor budget, which it must refuse with a 503 (failures of any other kind are
//      counted apart)
//
// Every envelope of phases 1-3 is checked at its recipient: each must arrive exactly once, at
// the device it was sent to, with its message id and sender. Lost, duplicated or misrouted
// deliveries are printed and make the run exit with status 1 (a correctness check; no figure
// is ever compared with a target).
//
// --cluster measures cluster mode instead, against the embedded store in the same run: one
// relay on its embedded store (the reference), then three relay nodes on this machine sharing
// a PostgreSQL 15 (fsync on) and a redis-server that this program starts, each node on its own
// port so that the load generator chooses where each device connects:
//
//   C1. durable 1:1 envelopes/s with every sender on another node than its recipient, and
//       send-to-deliver latency at half that rate (paced as in 2)
//   C2. CPU per envelope of every server process together (the nodes; PostgreSQL's postmaster,
//       backends and helpers, and those it has reaped; redis-server), split by part, and the
//       same for the reference relay
//   C3. one send_multi to 1,000 devices spread evenly over the three nodes: time until every
//       device has it, 20 rounds
//
// with each figure also as a ratio to the reference's. Every envelope is checked as above.
//
// Every phase is bounded in count and in time. Usage:
//   relay_bench [--relay PATH] [--quick] [--seconds N] [--idle N] [--memory-only] [--cluster]
#include <fcntl.h>
#include <signal.h>
#include <sodium.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <boost/asio.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/websocket.hpp>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <deque>
#include <filesystem>
#include <fstream>
#include <functional>
#include <iterator>
#include <memory>
#include <sstream>
#include <string>
#include <string_view>
#include <thread>
#include <utility>
#include <vector>

#include "BenchReference.h"
#include "PostgresServer.h"
#include "RedisServer.h"
#include "sotto/Bytes.h"
#include "sotto/keys/KeyGen.h"
#include "sotto/keys/Signal.h"
#include "sotto/proto/wire.pb.h"

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
namespace websocket = beast::websocket;
using tcp = asio::ip::tcp;
using Clock = std::chrono::steady_clock;
using namespace std::chrono_literals;
using sotto::Bytes;

namespace {

std::string g_relay_binary = SOTTO_RELAY_BINARY;

uint64_t unix_ms() {
  return static_cast<uint64_t>(std::chrono::duration_cast<std::chrono::milliseconds>(
                                   std::chrono::system_clock::now().time_since_epoch())
                                   .count());
}
uint64_t mono_ns() {
  return static_cast<uint64_t>(
      std::chrono::duration_cast<std::chrono::nanoseconds>(Clock::now().time_since_epoch())
          .count());
}
std::string str(const Bytes& b) { return std::string(sotto::as_chars(b)); }

// While --cluster runs its PostgreSQL server: stops it and removes its directory. pg_ctl
// detaches the server, so it would outlive this program (relays and redis-server die with it,
// PR_SET_PDEATHSIG).
std::function<void()> g_stop_services;
// The same server's postmaster, for a signal handler: SIGQUIT is its immediate shutdown.
volatile pid_t g_postmaster = -1;

void die(const std::string& what) {
  std::fprintf(stderr, "relay_bench: %s\n", what.c_str());
  if (g_stop_services) std::exchange(g_stop_services, nullptr)();
  std::exit(1);
}

extern "C" void on_interrupt(int sig) {
  if (g_postmaster > 0) ::kill(g_postmaster, SIGQUIT);
  ::_exit(128 + sig);
}

// ---- the relay process ----

// What /proc/PID/stat says of a process's parent and CPU time (seconds).
struct ProcStat {
  pid_t ppid = -1;
  double cpu = 0;         // user + system, its own threads
  double reaped_cpu = 0;  // user + system of the children it has waited for
};

ProcStat proc_stat(pid_t pid) {
  std::ifstream in(pid ? "/proc/" + std::to_string(pid) + "/stat" : "/proc/self/stat");
  std::string stat((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  auto close = stat.rfind(')');  // the command name may hold spaces
  ProcStat out;
  if (close == std::string::npos || close + 2 > stat.size()) return out;
  std::istringstream rest(stat.substr(close + 2));
  std::string field;
  unsigned long long ticks[4] = {0, 0, 0, 0};  // utime stime cutime cstime: fields 14-17
  for (int i = 3; i <= 17 && rest >> field; ++i) {
    if (i == 4) out.ppid = static_cast<pid_t>(std::stol(field));
    if (i >= 14) ticks[i - 14] = std::stoull(field);
  }
  const double hz = static_cast<double>(::sysconf(_SC_CLK_TCK));
  out.cpu = static_cast<double>(ticks[0] + ticks[1]) / hz;
  out.reaped_cpu = static_cast<double>(ticks[2] + ticks[3]) / hz;
  return out;
}

// User + system CPU seconds of a process (0 for this one).
double process_cpu_seconds(pid_t pid) { return proc_stat(pid).cpu; }

// The processes whose parent is `parent` now.
std::vector<pid_t> children_of(pid_t parent) {
  std::vector<pid_t> out;
  std::error_code ec;
  for (const auto& e : std::filesystem::directory_iterator("/proc", ec)) {
    const std::string name = e.path().filename().string();
    if (name.empty() || name.find_first_not_of("0123456789") != std::string::npos) continue;
    pid_t pid = static_cast<pid_t>(std::stol(name));
    if (pid != parent && proc_stat(pid).ppid == parent) out.push_back(pid);
  }
  return out;
}

// User + system CPU seconds of `root` and every child it has or has reaped: PostgreSQL's whole
// server, whose processes are all children of the postmaster (a backend per connection, the
// WAL writer, checkpointer, autovacuum...).
double process_tree_cpu_seconds(pid_t root) {
  ProcStat top = proc_stat(root);
  double sum = top.cpu + top.reaped_cpu;
  for (pid_t child : children_of(root)) sum += process_cpu_seconds(child);
  return sum;
}

// Bytes a process (and the children it has reaped) caused to be written to storage so far.
double process_write_bytes(pid_t pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/io");
  std::string key;
  double value = 0;
  while (in >> key >> value)
    if (key == "write_bytes:") return value;
  return 0;
}

struct Relay {
  pid_t pid = -1;
  uint16_t port = 0;
  std::filesystem::path dir;

  // `data_dir`: the relay's --data-dir (cluster nodes share one); empty: its own temp dir.
  void start(const std::vector<std::string>& extra, const std::filesystem::path& data_dir = {}) {
    std::string tmpl = (std::filesystem::temp_directory_path() / "sotto-bench-XXXXXX").string();
    if (!::mkdtemp(tmpl.data())) die("mkdtemp");
    dir = tmpl;
    std::vector<std::string> args = {g_relay_binary,
                                     "--data-dir",
                                     (data_dir.empty() ? dir / "data" : data_dir).string(),
                                     "--init",
                                     "--listen",
                                     "127.0.0.1:0",
                                     "--port-file",
                                     (dir / "port").string(),
                                     "--log-level",
                                     "warn",
                                     "--ip-rate-limits=false",
                                     "--rate-send-device=off",
                                     "--rate-frames-connection=off",
                                     "--rate-bundles-device=off",
                                     "--rate-bundles-target=off",
                                     "--unauth-timeout-ms=60000"};
    args.insert(args.end(), extra.begin(), extra.end());
    int log = ::open((dir / "relay.log").c_str(), O_WRONLY | O_CREAT | O_APPEND, 0600);
    pid = ::fork();
    if (pid == 0) {
      ::prctl(PR_SET_PDEATHSIG, SIGKILL);
      ::dup2(log, 2);
      std::vector<char*> argv;
      for (auto& a : args) argv.push_back(a.data());
      argv.push_back(nullptr);
      ::execv(argv[0], argv.data());
      ::_exit(127);
    }
    ::close(log);
    auto deadline = Clock::now() + 30s;
    while (Clock::now() < deadline) {
      std::ifstream in(dir / "port");
      unsigned p = 0;
      if (in >> p && p) {
        port = static_cast<uint16_t>(p);
        return;
      }
      std::this_thread::sleep_for(10ms);
    }
    die("the relay did not start; see " + (dir / "relay.log").string());
  }
  // User + system CPU seconds the relay process has used so far.
  double cpu_seconds() const { return process_cpu_seconds(pid); }
  // Bytes the relay has caused to be written to storage so far (/proc/PID/io).
  double disk_write_bytes() const { return process_write_bytes(pid); }
  long rss_kib() const {
    std::ifstream in("/proc/" + std::to_string(pid) + "/status");
    std::string line;
    while (std::getline(in, line))
      if (line.rfind("VmRSS:", 0) == 0) return std::stol(line.substr(6));
    return -1;
  }
  void stop() {
    if (pid <= 0) return;
    ::kill(pid, SIGTERM);
    int status = 0;
    ::waitpid(pid, &status, 0);
    pid = -1;
    std::error_code ec;
    std::filesystem::remove_all(dir, ec);
  }
};

// ---- accounts ----

struct Device {
  Bytes account;
  uint32_t registration_id = 0;
  Bytes secret;
  std::string authorization() const {
    std::string user = sotto::to_hex(account) + ".1:" + sotto::to_hex(secret);
    std::string b64(sodium_base64_ENCODED_LEN(user.size(), sodium_base64_VARIANT_ORIGINAL), '\0');
    sodium_bin2base64(b64.data(), b64.size(), reinterpret_cast<const unsigned char*>(user.data()),
                      user.size(), sodium_base64_VARIANT_ORIGINAL);
    b64.resize(std::strlen(b64.c_str()));
    return "Basic " + b64;
  }
};

// One asynchronous WebSocket client; everything runs on the thread that runs its io_context.
class Conn : public std::enable_shared_from_this<Conn> {
 public:
  explicit Conn(asio::io_context& ioc) : ws_(ioc) {}
  std::function<void(sotto::wire::Frame&)> on_frame;
  std::function<void(bool)> on_open;
  bool open_ = false;
  // Why opening failed, when on_open(false) was called.
  enum class Failure { kNone, kConnect, kRefused503, kOther };
  Failure failure = Failure::kNone;
  std::string failure_detail;  // the error, or the status line of a refusal that was not 503

  void open(uint16_t port, const std::string& source, const std::string& authorization) {
    beast::error_code ec;
    auto& sock = beast::get_lowest_layer(ws_);
    sock.open(tcp::v4(), ec);
    if (!source.empty()) sock.bind(tcp::endpoint(asio::ip::make_address(source), 0), ec);
    if (ec) return fail(Failure::kConnect, ec.message());
    // As the SDK does: a masked client message goes out in pieces of Beast's write buffer, and
    // with Nagle on the second piece waits for the relay's delayed ACK (40 ms).
    sock.set_option(tcp::no_delay(true), ec);
    ws_.set_option(websocket::stream_base::decorator([authorization](websocket::request_type& r) {
      if (!authorization.empty()) r.set(http::field::authorization, authorization);
    }));
    ws_.binary(true);
    ws_.auto_fragment(false);
    ws_.read_message_max(64 << 20);
    auto self = shared_from_this();
    sock.async_connect(
        tcp::endpoint(asio::ip::make_address("127.0.0.1"), port), [self](beast::error_code e) {
          if (e) return self->fail(Failure::kConnect, e.message());
          self->response_ = std::make_unique<websocket::response_type>();
          auto& response = *self->response_;
          self->ws_.async_handshake(response, "127.0.0.1", "/v1/ws", [self](beast::error_code e2) {
            // The relay's refusal at its connection budget is an HTTP 503 (protocol.md
            // section 3.1); anything else (a reset, a timeout, another status) is not one.
            auto& res = *self->response_;
            if (e2 == websocket::error::upgrade_declined &&
                res.result() == http::status::service_unavailable)
              return self->fail(Failure::kRefused503, "503");
            if (e2 == websocket::error::upgrade_declined)
              return self->fail(Failure::kOther, "HTTP " + std::to_string(res.result_int()));
            if (e2) return self->fail(Failure::kOther, e2.message());
            self->response_.reset();
            self->open_ = true;
            if (self->on_open) self->on_open(true);
            self->read();
          });
        });
  }
  void send(const sotto::wire::Request& r) {
    sotto::wire::Frame f;
    *f.mutable_request() = r;
    out_.push_back(std::make_shared<std::string>(f.SerializeAsString()));
    if (!writing_) write();
  }
  void close() {
    beast::error_code ec;
    beast::get_lowest_layer(ws_).close(ec);
    open_ = false;
  }

 private:
  void fail(Failure why, std::string detail) {
    failure = why;
    failure_detail = std::move(detail);
    open_ = false;
    if (on_open) on_open(false);
    on_open = nullptr;
  }
  void read() {
    auto self = shared_from_this();
    ws_.async_read(in_, [self](beast::error_code ec, size_t) {
      if (ec) {
        self->open_ = false;
        return;
      }
      sotto::wire::Frame f;
      if (f.ParseFromArray(self->in_.data().data(), static_cast<int>(self->in_.size())) &&
          self->on_frame)
        self->on_frame(f);
      self->in_.consume(self->in_.size());
      self->read();
    });
  }
  void write() {
    if (out_.empty()) {
      writing_ = false;
      return;
    }
    writing_ = true;
    auto self = shared_from_this();
    ws_.async_write(asio::buffer(*out_.front()), [self](beast::error_code ec, size_t) {
      self->out_.pop_front();
      if (ec) {
        self->open_ = false;
        return;
      }
      self->write();
    });
  }
  websocket::stream<tcp::socket> ws_;
  std::unique_ptr<websocket::response_type> response_;  // only while the handshake runs
  beast::flat_buffer in_;
  std::deque<std::shared_ptr<std::string>> out_;
  bool writing_ = false;
};

// Runs the io_context until `done()` or the deadline; false on timeout.
bool run_until(asio::io_context& ioc, const std::function<bool()>& done,
               std::chrono::milliseconds limit) {
  auto deadline = Clock::now() + limit;
  while (!done()) {
    if (Clock::now() >= deadline) return false;
    ioc.restart();
    ioc.run_for(10ms);
  }
  return true;
}

// Registers `n` accounts over a few pipelined unauthenticated sockets. One identity key and
// signed prekey serve them all: the relay checks signatures, not uniqueness of keys.
std::vector<Device> register_accounts(uint16_t port, size_t n, const std::string& prefix) {
  auto ctx = sotto::keys::Context::create().value();
  auto identity = sotto::keys::generate_identity(*ctx).value();
  auto spk = sotto::keys::generate_signed_prekey(*ctx, identity, 1, unix_ms()).value();
  auto lr = sotto::keys::generate_one_time_prekeys(*ctx, 1, 1).value();
  std::vector<Device> out(n);
  std::vector<sotto::wire::Request> requests(n);
  for (size_t i = 0; i < n; ++i) {
    Device& d = out[i];
    d.registration_id = static_cast<uint32_t>(1 + i % 16000);
    d.secret.resize(32);
    randombytes_buf(d.secret.data(), 32);
    sotto::wire::RegistrationPayload p;
    p.set_handle(prefix + std::to_string(i));
    p.set_identity_key(str(identity.public_key));
    auto* dk = p.mutable_device();
    dk->set_registration_id(d.registration_id);
    dk->set_auth_secret(str(d.secret));
    dk->mutable_signed_prekey()->set_id(1);
    dk->mutable_signed_prekey()->set_public_key(str(spk.public_key));
    dk->mutable_signed_prekey()->set_signature(str(spk.signature));
    dk->mutable_last_resort_prekey()->set_id(0xFFFFFF);
    dk->mutable_last_resort_prekey()->set_public_key(str(lr[0].public_key));
    p.set_timestamp_ms(unix_ms());
    Bytes nonce(16);
    randombytes_buf(nonce.data(), 16);
    p.set_nonce(str(nonce));
    std::string bytes = p.SerializeAsString();
    auto sig = sotto::keys::sign_payload(*ctx, identity, sotto::keys::SignedPurpose::kRegistration,
                                         sotto::as_bytes(bytes));
    auto& r = requests[i];
    r.set_id(i + 1);
    r.set_op(sotto::wire::OP_REGISTER);
    r.mutable_registration()->set_payload(bytes);
    r.mutable_registration()->set_signature(str(*sig));
  }
  asio::io_context ioc;
  constexpr int kSockets = 8, kWindow = 32;
  size_t next = 0, done = 0, failed = 0;
  std::vector<std::shared_ptr<Conn>> conns;
  std::vector<int> inflight(kSockets, 0);
  for (int s = 0; s < kSockets; ++s) {
    auto c = std::make_shared<Conn>(ioc);
    // The connection owns its handlers, which own pump: pump must not own the connection.
    std::weak_ptr<Conn> weak = c;
    auto pump = [&, s, weak] {
      auto conn = weak.lock();
      if (!conn) return;
      while (inflight[s] < kWindow && next < n) {
        ++inflight[s];
        conn->send(requests[next++]);
      }
    };
    c->on_open = [pump](bool ok) {
      if (ok) pump();
    };
    c->on_frame = [&, s, pump](sotto::wire::Frame& f) {
      if (!f.has_response()) return;
      --inflight[s];
      ++done;
      size_t i = f.response().id() - 1;
      if (f.response().status() == sotto::wire::OK)
        out[i].account = Bytes(f.response().registration().account_id().begin(),
                               f.response().registration().account_id().end());
      else
        ++failed;
      pump();
    };
    c->open(port, "", "");
    conns.push_back(c);
  }
  if (!run_until(
          ioc, [&] { return done == n; }, std::chrono::milliseconds(60'000 + n * 10)))
    die("registration timed out after " + std::to_string(done) + " of " + std::to_string(n));
  if (failed) die(std::to_string(failed) + " registrations failed");
  for (auto& c : conns) c->close();
  ioc.restart();
  ioc.run_for(50ms);
  return out;
}

// Authenticated connections for `devices`, device i to the relay on ports[i], each past its
// QueueEmpty. Envelopes pushed before it are acked and counted in `leftovers`.
std::vector<std::shared_ptr<Conn>> connect_all(
    asio::io_context& ioc, const std::vector<uint16_t>& ports, const std::vector<Device>& devices,
    const std::string& source = "", size_t concurrency = 256, size_t* leftovers = nullptr) {
  std::vector<std::shared_ptr<Conn>> conns(devices.size());
  size_t next = 0, ready = 0, failed = 0;
  uint64_t leftover_ack_id = 2'000'000'000;
  std::function<void()> start_one = [&] {
    if (next >= devices.size()) return;
    size_t i = next++;
    auto c = std::make_shared<Conn>(ioc);
    conns[i] = c;
    c->on_open = [&](bool ok) {
      if (!ok) {
        ++failed;
        start_one();
      }
    };
    c->on_frame = [&, c](sotto::wire::Frame& f) {
      if (f.has_push() && f.push().has_envelope()) {
        // Leftovers of an earlier phase: ack them so they do not hold the window.
        if (leftovers) ++*leftovers;
        sotto::wire::Request a;
        // Unique among the connection's unanswered requests (protocol.md 3.2).
        a.set_id(leftover_ack_id++);
        a.set_op(sotto::wire::OP_ACK);
        a.mutable_ack()->add_sequences(f.push().envelope().sequence());
        c->send(a);
      }
      if (f.has_push() && f.push().has_queue_empty()) {
        ++ready;
        // Resetting on_frame destroys this closure: copy what is used afterwards first.
        std::function<void()>* start = &start_one;
        c->on_frame = nullptr;
        (*start)();
      }
    };
    c->open(ports.at(i), source, devices[i].authorization());
  };
  for (size_t k = 0; k < concurrency; ++k) start_one();
  if (!run_until(
          ioc, [&] { return ready + failed == devices.size(); },
          std::chrono::milliseconds(30'000 + devices.size() * 5)))
    die("connecting timed out at " + std::to_string(ready) + " of " +
        std::to_string(devices.size()));
  if (failed) die(std::to_string(failed) + " connections failed");
  return conns;
}

// Message ids time-ordered, as protocol.md section 2 has clients make them (and the SDK
// does). The relay's idempotency index relies on that order: random ids would put every
// send on a random page of it.
std::string message_id() {
  auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(
      std::chrono::system_clock::now().time_since_epoch());
  return str(sotto::new_message_id(static_cast<uint64_t>(ms.count())));
}

sotto::wire::Request send_to(const Device& to, const std::string& ciphertext,
                             const std::string& message_id, uint64_t request_id) {
  sotto::wire::Request r;
  r.set_id(request_id);
  r.set_op(sotto::wire::OP_SEND);
  auto* s = r.mutable_send();
  s->set_message_id(message_id);
  auto* m = s->add_messages();
  m->set_account_id(str(to.account));
  m->set_device_id(1);
  m->set_registration_id(to.registration_id);
  m->set_type(sotto::wire::Envelope::MESSAGE);
  m->set_ciphertext(ciphertext);
  return r;
}

std::string metric(uint16_t port, const std::string& name);

// Storage jobs and transactions the relay has run so far.
std::pair<double, double> store_counters(uint16_t port) {
  auto number = [](const std::string& v) { return v == "?" ? 0.0 : std::stod(v); };
  return {number(metric(port, "sotto_store_jobs_total")),
          number(metric(port, "sotto_store_batches_total"))};
}

// CPU seconds used so far by what serves the load, by part.
struct ServerCpu {
  double nodes = 0, postgres = 0, redis = 0;
  double total() const { return nodes + postgres + redis; }
};

// What serves the load: one relay on its embedded store, or (--cluster) relay nodes sharing a
// PostgreSQL and a redis-server that this program started. Each node listens on a port of its
// own, so the load generator decides which node each device is on.
struct Service {
  std::vector<Relay> nodes;
  std::unique_ptr<sotto::test::PostgresServer> postgres;
  std::unique_ptr<sotto::test::RedisServer> redis;
  std::filesystem::path shared_dir;  // the nodes' --data-dir (attachment blobs)

  static std::unique_ptr<Service> embedded(const std::vector<std::string>& extra = {}) {
    auto s = std::make_unique<Service>();
    s->nodes.emplace_back().start(extra);
    return s;
  }
  // `count` nodes. PostgreSQL runs with fsync on: an OK then means what it means with the
  // embedded store's db-sync = full, a commit that survives a power loss.
  static std::unique_ptr<Service> cluster(int count) {
    auto s = std::make_unique<Service>();
    auto pg = sotto::test::PostgresServer::start(/*fsync=*/true);
    if (!pg.ok()) die("cluster mode needs PostgreSQL 15: " + pg.error().message);
    s->postgres = std::move(*pg);
    g_postmaster = s->postgres->postmaster_pid();
    Service* raw = s.get();
    g_stop_services = [raw] { raw->stop(); };
    auto db = s->postgres->create_database("bench");
    if (!db.ok()) die(db.error().message);
    auto redis = sotto::test::RedisServer::start();
    if (!redis.ok()) die("cluster mode needs redis-server: " + redis.error().message);
    s->redis = std::move(*redis);
    std::string tmpl =
        (std::filesystem::temp_directory_path() / "sotto-bench-shared-XXXXXX").string();
    if (!::mkdtemp(tmpl.data())) die("mkdtemp");
    s->shared_dir = tmpl;
    // One after another: the first creates the schema (the others would wait for its lock).
    for (int i = 0; i < count; ++i)
      s->nodes.emplace_back().start({"--store", s->postgres->url(*db), "--bus", s->redis->address(),
                                     "--node-id", "n" + std::to_string(i)},
                                    s->shared_dir);
    return s;
  }
  ~Service() { stop(); }

  std::vector<uint16_t> ports() const {
    std::vector<uint16_t> out;
    for (const Relay& r : nodes) out.push_back(r.port);
    return out;
  }
  ServerCpu cpu() const {
    ServerCpu c;
    for (const Relay& r : nodes) c.nodes += r.cpu_seconds();
    if (postgres) c.postgres = process_tree_cpu_seconds(postgres->postmaster_pid());
    if (redis) c.redis = process_cpu_seconds(redis->pid());
    return c;
  }
  // Bytes written to storage so far: the nodes' and every PostgreSQL process's (WAL, data
  // files; the postmaster's count holds those of the backends it has reaped).
  double disk_write_bytes() const {
    double sum = 0;
    for (const Relay& r : nodes) sum += r.disk_write_bytes();
    if (postgres) {
      pid_t root = postgres->postmaster_pid();
      sum += process_write_bytes(root);
      for (pid_t child : children_of(root)) sum += process_write_bytes(child);
    }
    return sum;
  }
  // Storage jobs and transactions every node has run so far.
  std::pair<double, double> store_totals() const;

  void stop() {
    for (Relay& r : nodes) r.stop();
    nodes.clear();
    redis.reset();
    if (postgres) {
      g_postmaster = -1;
      g_stop_services = nullptr;
      postgres.reset();
    }
    std::error_code ec;
    if (!shared_dir.empty()) std::filesystem::remove_all(shared_dir, ec);
    shared_dir.clear();
  }
};

std::pair<double, double> Service::store_totals() const {
  std::pair<double, double> sum;
  for (const Relay& r : nodes) {
    auto c = store_counters(r.port);
    sum.first += c.first;
    sum.second += c.second;
  }
  return sum;
}

// Where the talkers of phases 1 and 2 connect: device i and its partner i ^ 1 on different
// nodes when there are several (pair p on nodes p and p + 1, round the ring), so that every
// envelope crosses from one node to another; all on the one relay otherwise.
std::vector<uint16_t> talker_ports_of(const Service& service, size_t talkers) {
  std::vector<uint16_t> ports(talkers);
  const size_t n = service.nodes.size();
  for (size_t i = 0; i < talkers; ++i) ports[i] = service.nodes[(i / 2 + (i & 1)) % n].port;
  return ports;
}

// Where the members of a fan-out connect: evenly over the nodes.
std::vector<uint16_t> member_ports_of(const Service& service, size_t members) {
  std::vector<uint16_t> ports(members);
  for (size_t i = 0; i < members; ++i) ports[i] = service.nodes[i % service.nodes.size()].port;
  return ports;
}

// Exactly-once delivery, checked per envelope: its message id and its recipient device.
struct Deliveries {
  size_t envelopes = 0;     // copies sent (one per recipient device)
  size_t lost = 0;          // committed (answered OK) but never delivered
  size_t duplicated = 0;    // deliveries past the first of the same copy
  size_t misrouted = 0;     // delivered to another device, or with another id or sender
  size_t unanswered = 0;    // sends and acks the relay never answered
  size_t pushed_again = 0;  // pushed to a new connection after their ack was answered
  size_t failures() const { return lost + duplicated + misrouted + unanswered + pushed_again; }
  void add(const Deliveries& d) {
    envelopes += d.envelopes;
    lost += d.lost;
    duplicated += d.duplicated;
    misrouted += d.misrouted;
    unanswered += d.unanswered;
    pushed_again += d.pushed_again;
  }
};

// Phases 1 and 2: 100 connections in pairs; each sends to its partner and acks what it gets.
struct Traffic {
  double envelopes_per_s = 0;
  // CPU time per committed envelope over the measured window: every server process's (the
  // relay, or the nodes with PostgreSQL and redis-server), and this load generator's (which
  // shares the cores).
  double server_cpu_us = 0, generator_cpu_us = 0;
  ServerCpu server_cpu_split_us;  // server_cpu_us by part
  double disk_kib = 0;         // the relay's writes to storage (WAL and checkpoints) per envelope
  double jobs_per_commit = 0;  // the relay's storage jobs per transaction (its batch size)
  // Send-to-deliver latency. Paced: from the time each send was due on the fixed schedule,
  // whether or not it could leave then; at full load, from the send.
  double p50_ms = 0, p99_ms = 0, max_ms = 0;
  // Paced: the same from the moment each send actually left (what the due time corrects).
  double sent_p50_ms = 0, sent_p99_ms = 0;
  size_t samples = 0;
  size_t late = 0;  // paced: measured sends that left more than kLateNs after their due time
  double lateness_p50_ms = 0, lateness_p99_ms = 0, worst_late_ms = 0;  // paced: sent - due
  size_t window_waits = 0;  // paced: measured sends that found their connection's window full
  Deliveries deliveries;
};

// A paced send that leaves more than this after its due time is counted late.
constexpr uint64_t kLateNs = 1'000'000;

// What became of one envelope of phases 1 and 2: connection `from` sends it to from ^ 1.
struct SentEnvelope {
  std::array<char, 16> message_id{};
  uint32_t from = 0;
  uint16_t deliveries = 0;
  bool committed = false;  // the relay answered OK
  bool measured = false;   // inside the measured window
  uint64_t due_ns = 0, sent_ns = 0;
};

// Device i connects to ports[i] and sends to device i ^ 1.
Traffic one_to_one(const Service& service, const std::vector<Device>& devices,
                   const std::vector<uint16_t>& ports, double rate, double seconds) {
  asio::io_context ioc;
  Traffic t;
  auto conns = connect_all(ioc, ports, devices, "", 256, &t.deliveries.pushed_again);
  size_t n = conns.size();
  std::vector<int> inflight(n, 0);
  std::vector<std::vector<uint64_t>> to_ack(n);
  std::vector<std::deque<uint64_t>> due(n);  // paced: due times of sends not yet made
  size_t acks_unanswered = 0;
  uint64_t ack_ids = 1'000'000'000;  // acks' request ids; a send's is its envelope index + 1
  std::vector<SentEnvelope> sent;
  sent.reserve(rate > 0 ? static_cast<size_t>(rate * (seconds + 1.5)) : 1 << 20);
  size_t delivered_once = 0;
  uint64_t committed = 0;  // in the measured window
  std::vector<double> latencies, sent_latencies, lateness;
  bool measuring = false, sending = true;
  ServerCpu server_cpu0;
  double own_cpu0 = 0, disk0 = 0;
  std::pair<double, double> store0;
  constexpr int kWindow = 24;
  std::string pad(200 - 16, 'c');

  const uint64_t start_ns = mono_ns();
  const uint64_t warm_end_ns = start_ns + 1'000'000'000;
  const uint64_t end_ns = warm_end_ns + static_cast<uint64_t>(seconds * 1e9);

  // Acks go out in batches, and at least every loop turn (~1 ms), like a real client's.
  auto flush_acks = [&](size_t i) {
    if (to_ack[i].empty()) return;
    sotto::wire::Request a;
    a.set_id(ack_ids++);
    a.set_op(sotto::wire::OP_ACK);
    for (uint64_t sq : to_ack[i]) a.mutable_ack()->add_sequences(sq);
    to_ack[i].clear();
    ++acks_unanswered;
    conns[i]->send(a);
  };
  // The ciphertext carries the envelope's index and its due time, padded to 200 bytes.
  auto send_one = [&](size_t i, uint64_t due_ns) {
    uint64_t now = mono_ns();
    uint64_t index = sent.size();
    SentEnvelope& s = sent.emplace_back();
    std::string id = message_id();
    std::memcpy(s.message_id.data(), id.data(), s.message_id.size());
    s.from = static_cast<uint32_t>(i);
    s.due_ns = due_ns ? due_ns : now;
    s.sent_ns = now;
    s.measured = rate > 0 ? s.due_ns >= warm_end_ns && s.due_ns < end_ns : measuring;
    if (rate > 0 && s.measured) {
      lateness.push_back(static_cast<double>(now - s.due_ns) / 1e6);
      if (now > s.due_ns + kLateNs) ++t.late;
    }
    std::string ct(16, '\0');
    std::memcpy(ct.data(), &index, 8);
    std::memcpy(ct.data() + 8, &s.due_ns, 8);
    ct += pad;
    ++inflight[i];
    conns[i]->send(send_to(devices[i ^ 1], ct, id, index + 1));
  };
  // Paced: sends whose time has come leave as the connection's window allows.
  auto send_due = [&](size_t i) {
    while (!due[i].empty() && inflight[i] < kWindow) {
      uint64_t d = due[i].front();
      due[i].pop_front();
      send_one(i, d);
    }
  };
  for (size_t i = 0; i < n; ++i) {
    conns[i]->on_frame = [&, i](sotto::wire::Frame& f) {
      if (f.has_response()) {
        const auto& r = f.response();
        if (r.status() != sotto::wire::OK)
          die(std::string(r.id() >= 1'000'000'000 ? "ack" : "send") + " refused: " + r.message());
        if (r.id() >= 1'000'000'000) {
          --acks_unanswered;
          return;
        }
        if (r.id() == 0 || r.id() > sent.size() || sent[r.id() - 1].committed)
          die("an unexpected response to request " + std::to_string(r.id()));
        sent[r.id() - 1].committed = true;
        --inflight[i];
        if (measuring) ++committed;
        if (rate == 0 && sending) send_one(i, 0);
        if (rate > 0) send_due(i);
        return;
      }
      if (!f.has_push() || !f.push().has_envelope()) return;
      uint64_t now = mono_ns();
      const auto& e = f.push().envelope();
      to_ack[i].push_back(e.sequence());
      if (to_ack[i].size() >= 16) flush_acks(i);
      // Delivered to the right device, from its partner, with the id it was sent with?
      uint64_t index = 0;
      if (e.ciphertext().size() >= 16) std::memcpy(&index, e.ciphertext().data(), 8);
      if (e.ciphertext().size() < 16 || index >= sent.size()) {
        ++t.deliveries.misrouted;
        return;
      }
      SentEnvelope& s = sent[index];
      if ((s.from ^ 1) != i || e.message_id() != std::string_view(s.message_id.data(), 16) ||
          e.sender_account_id() != str(devices[s.from].account)) {
        ++t.deliveries.misrouted;
        return;
      }
      if (++s.deliveries > 1) {
        ++t.deliveries.duplicated;
        return;
      }
      ++delivered_once;
      if (s.measured) {
        latencies.push_back(static_cast<double>(now - s.due_ns) / 1e6);
        sent_latencies.push_back(static_cast<double>(now - s.sent_ns) / 1e6);
      }
    };
  }
  if (rate == 0) {
    for (size_t i = 0; i < n; ++i)
      for (int k = 0; k < kWindow; ++k) send_one(i, 0);
  }
  // Paced: send k is due at start + k / rate, from connection k mod n (as wrk2 schedules
  // them). A timer hands out what is due, at most every 100 us; a send that finds its
  // connection's window full waits in its queue and keeps its due time.
  const double period_ns = rate > 0 ? 1e9 / rate : 0;
  const uint64_t scheduled_total =
      rate > 0 ? static_cast<uint64_t>(static_cast<double>(end_ns - start_ns) / period_ns) : 0;
  uint64_t scheduled = 0;
  asio::steady_timer pacer(ioc);
  std::function<void()> pace = [&] {
    uint64_t now = mono_ns();
    while (scheduled < scheduled_total) {
      uint64_t d = start_ns + static_cast<uint64_t>(static_cast<double>(scheduled) * period_ns);
      if (d > now) break;
      size_t i = scheduled++ % n;
      due[i].push_back(d);
      send_due(i);
      // Its connection has kWindow sends unanswered: it leaves when one is answered.
      if (!due[i].empty() && d >= warm_end_ns && d < end_ns) ++t.window_waits;
    }
    if (scheduled == scheduled_total) return;
    uint64_t next = start_ns + static_cast<uint64_t>(static_cast<double>(scheduled) * period_ns);
    pacer.expires_at(Clock::time_point(std::chrono::nanoseconds(std::max(next, now + 100'000))));
    pacer.async_wait([&](beast::error_code ec) {
      if (!ec) pace();
    });
  };
  if (rate > 0) pace();
  uint64_t measure_start_ns = warm_end_ns;
  while (mono_ns() < end_ns) {
    if (!measuring && mono_ns() >= warm_end_ns) {
      measuring = true;
      committed = 0;
      measure_start_ns = mono_ns();
      server_cpu0 = service.cpu();
      disk0 = service.disk_write_bytes();
      own_cpu0 = process_cpu_seconds(0);
      store0 = service.store_totals();
    }
    ioc.restart();
    ioc.run_for(rate > 0 ? 1ms : 5ms);
    for (size_t i = 0; i < n; ++i) flush_acks(i);
  }
  double elapsed = static_cast<double>(mono_ns() - measure_start_ns) / 1e9;
  ServerCpu server_cpu1 = service.cpu();
  double own_cpu = process_cpu_seconds(0) - own_cpu0;
  double disk = service.disk_write_bytes() - disk0;
  auto store1 = service.store_totals();
  uint64_t counted = committed;
  sending = false;
  // Everything sent must be committed and delivered, also what was due but had not left yet
  // (its latency counts from its due time); then every ack answered.
  auto settled = [&] {
    for (size_t i = 0; i < n; ++i) {
      flush_acks(i);
      if (!due[i].empty() || inflight[i]) return false;
    }
    return delivered_once == sent.size() && acks_unanswered == 0;
  };
  run_until(ioc, settled, 30s);
  // A little longer, for deliveries that should never come.
  run_until(
      ioc, [] { return false; }, 200ms);
  t.deliveries.unanswered += acks_unanswered;
  for (const SentEnvelope& s : sent) {
    if (!s.committed) ++t.deliveries.unanswered;
    if (s.committed && s.deliveries == 0) ++t.deliveries.lost;
  }
  t.deliveries.envelopes = sent.size();
  t.envelopes_per_s = static_cast<double>(counted) / elapsed;
  if (counted) {
    const double per = 1e6 / static_cast<double>(counted);
    t.server_cpu_split_us = {(server_cpu1.nodes - server_cpu0.nodes) * per,
                             (server_cpu1.postgres - server_cpu0.postgres) * per,
                             (server_cpu1.redis - server_cpu0.redis) * per};
    t.server_cpu_us = t.server_cpu_split_us.total();
    t.generator_cpu_us = own_cpu * 1e6 / static_cast<double>(counted);
    t.disk_kib = disk / 1024 / static_cast<double>(counted);
  }
  if (store1.second > store0.second)
    t.jobs_per_commit = (store1.first - store0.first) / (store1.second - store0.second);
  auto at = [](const std::vector<double>& v, size_t num, size_t den) {
    return v[std::min(v.size() - 1, v.size() * num / den)];
  };
  std::sort(latencies.begin(), latencies.end());
  std::sort(sent_latencies.begin(), sent_latencies.end());
  std::sort(lateness.begin(), lateness.end());
  if (!lateness.empty()) {
    t.lateness_p50_ms = at(lateness, 1, 2);
    t.lateness_p99_ms = at(lateness, 99, 100);
    t.worst_late_ms = lateness.back();
  }
  t.samples = latencies.size();
  if (!latencies.empty()) {
    t.p50_ms = at(latencies, 1, 2);
    t.p99_ms = at(latencies, 99, 100);
    t.max_ms = latencies.back();
    t.sent_p50_ms = at(sent_latencies, 1, 2);
    t.sent_p99_ms = at(sent_latencies, 99, 100);
  }
  pacer.cancel();
  for (auto& c : conns) c->close();
  ioc.restart();
  ioc.run_for(50ms);
  return t;
}

// Phase 3: one send_multi to `members.size()` connected devices; ms until all have it. Each
// member's copies are counted: every round must reach every member exactly once. Member i
// connects to member_ports[i], the sender to sender_port.
std::vector<double> fan_out(uint16_t sender_port, const Device& sender,
                            const std::vector<Device>& members,
                            const std::vector<uint16_t>& member_ports, int rounds,
                            Deliveries& deliveries) {
  asio::io_context ioc;
  auto conns = connect_all(ioc, member_ports, members, "", 256, &deliveries.pushed_again);
  auto s = connect_all(ioc, {sender_port}, {sender}, "", 256, &deliveries.pushed_again);
  std::vector<std::string> round_ids;      // message id of each round
  std::vector<std::vector<uint16_t>> got;  // per round, per member: copies delivered
  size_t received = 0, acks_unanswered = 0;
  uint64_t ack_id = 3'000'000'000;
  bool answered = false;
  for (size_t i = 0; i < conns.size(); ++i) {
    conns[i]->on_frame = [&, i](sotto::wire::Frame& f) {
      if (f.has_response()) {
        if (f.response().status() != sotto::wire::OK) die("ack refused: " + f.response().message());
        --acks_unanswered;
        return;
      }
      if (!f.has_push() || !f.push().has_envelope()) return;
      const auto& e = f.push().envelope();
      sotto::wire::Request a;
      a.set_id(ack_id++);  // unique among the connection's unanswered requests
      a.set_op(sotto::wire::OP_ACK);
      a.mutable_ack()->add_sequences(e.sequence());
      ++acks_unanswered;
      conns[i]->send(a);
      auto r = std::find(round_ids.begin(), round_ids.end(), e.message_id());
      if (r == round_ids.end() || e.sender_account_id() != str(sender.account)) {
        ++deliveries.misrouted;
        return;
      }
      uint16_t& copies = got[static_cast<size_t>(r - round_ids.begin())][i];
      if (++copies > 1) {
        ++deliveries.duplicated;
        return;
      }
      if (r + 1 == round_ids.end()) ++received;
    };
  }
  s[0]->on_frame = [&](sotto::wire::Frame& f) {
    if (!f.has_response()) return;
    if (f.response().status() != sotto::wire::OK)
      die("send_multi refused: " + f.response().message());
    answered = true;
  };
  std::vector<double> out;
  for (int round = 0; round < rounds; ++round) {
    sotto::wire::Request r;
    r.set_id(100 + round);
    r.set_op(sotto::wire::OP_SEND_MULTI);
    auto* m = r.mutable_send_multi();
    round_ids.push_back(message_id());
    got.emplace_back(members.size(), 0);
    m->set_message_id(round_ids.back());
    m->set_type(sotto::wire::Envelope::SENDER_KEY);
    m->set_ciphertext(std::string(320, 'g'));
    for (const auto& d : members) {
      auto* rc = m->add_recipients();
      rc->set_account_id(str(d.account));
      rc->set_device_id(1);
      rc->set_registration_id(d.registration_id);
    }
    received = 0;
    answered = false;
    deliveries.envelopes += members.size();
    uint64_t t0 = mono_ns();
    s[0]->send(r);
    bool all = run_until(
        ioc, [&] { return received == members.size(); }, 30s);
    out.push_back(static_cast<double>(mono_ns() - t0) / 1e6);
    // Let the acks settle; copies that come now are duplicates.
    run_until(
        ioc, [&] { return answered && acks_unanswered == 0; }, 10s);
    run_until(
        ioc, [] { return false; }, 300ms);
    if (!answered) ++deliveries.unanswered;
    if (!all)
      std::fprintf(stderr, "relay_bench: fan-out round %d reached %zu of %zu devices in 30 s\n",
                   round + 1, received, members.size());
  }
  for (const auto& copies : got)
    deliveries.lost += static_cast<size_t>(std::count(copies.begin(), copies.end(), 0));
  deliveries.unanswered += acks_unanswered;
  for (auto& c : conns) c->close();
  s[0]->close();
  return out;
}

// Phase 4, in a child process: hold authenticated idle connections for a slice of devices.
// Protocol on the pipes: the parent writes a count, the child opens up to that many and
// answers with the number it holds; "x" ends it.
[[noreturn]] void idle_child(int in_fd, int out_fd, uint16_t port, std::vector<Device> devices,
                             std::string source) {
  rlimit rl{};
  getrlimit(RLIMIT_NOFILE, &rl);
  rl.rlim_cur = rl.rlim_max;
  setrlimit(RLIMIT_NOFILE, &rl);
  asio::io_context ioc;
  std::vector<std::shared_ptr<Conn>> held;
  for (;;) {
    char buf[64] = {0};
    ssize_t n = ::read(in_fd, buf, sizeof buf - 1);
    if (n <= 0 || buf[0] == 'x') break;
    if (buf[0] == 'r') {
      // Try `target` connections past the ones held; answers "opened refused503 other".
      size_t target = std::stoul(buf + 1);
      size_t done = 0, opened = 0, refused = 0, other = 0;
      std::string first_other;
      std::vector<std::shared_ptr<Conn>> extra;
      for (size_t i = 0; i < target && held.size() + i < devices.size(); ++i) {
        auto c = std::make_shared<Conn>(ioc);
        std::weak_ptr<Conn> weak = c;
        c->on_open = [&, weak](bool ok) {
          ++done;
          auto conn = weak.lock();
          if (ok) {
            ++opened;
          } else if (conn && conn->failure == Conn::Failure::kRefused503) {
            ++refused;
          } else {
            ++other;
            if (first_other.empty() && conn) first_other = conn->failure_detail;
          }
        };
        c->open(port, source, devices[held.size() + i].authorization());
        extra.push_back(c);
      }
      if (!run_until(
              ioc, [&] { return done == extra.size(); }, 30s))
        other += extra.size() - done;  // neither opened nor refused in 30 s
      for (auto& c : extra) c->close();
      run_until(
          ioc, [] { return false; }, 500ms);
      if (!first_other.empty())
        std::fprintf(stderr, "relay_bench: a connection failed without a 503: %s\n",
                     first_other.c_str());
      std::string reply = std::to_string(opened) + " " + std::to_string(refused) + " " +
                          std::to_string(other) + "\n";
      (void)!::write(out_fd, reply.data(), reply.size());
      continue;
    }
    size_t target = std::stoul(buf);
    if (target > held.size()) {
      std::vector<Device> more(
          devices.begin() + static_cast<long>(held.size()),
          devices.begin() + static_cast<long>(std::min(target, devices.size())));
      auto conns = connect_all(ioc, std::vector<uint16_t>(more.size(), port), more, source, 128);
      held.insert(held.end(), conns.begin(), conns.end());
    }
    run_until(
        ioc, [] { return false; }, 200ms);
    std::string reply = std::to_string(held.size()) + "\n";
    (void)!::write(out_fd, reply.data(), reply.size());
  }
  ::_exit(0);
}

struct Child {
  pid_t pid;
  int to, from;
};

// The child's answer to `msg`: one line of numbers.
std::vector<size_t> ask_all(const Child& c, const std::string& msg) {
  (void)!::write(c.to, msg.data(), msg.size());
  char buf[64] = {0};
  ssize_t n = ::read(c.from, buf, sizeof buf - 1);
  if (n <= 0) die("an idle-connection child died");
  std::istringstream in(buf);
  std::vector<size_t> out;
  for (size_t v; in >> v;) out.push_back(v);
  if (out.empty()) die("an idle-connection child answered \"" + std::string(buf) + "\"");
  return out;
}
size_t ask(const Child& c, const std::string& msg) { return ask_all(c, msg)[0]; }

// The relay's /metrics page (empty when it cannot be read).
std::string metrics_page(uint16_t port) {
  asio::io_context ioc;
  beast::tcp_stream s(ioc);
  beast::error_code ec;
  s.expires_after(10s);
  s.connect(tcp::endpoint(asio::ip::make_address("127.0.0.1"), port), ec);
  http::request<http::empty_body> req{http::verb::get, "/metrics", 11};
  req.set(http::field::host, "127.0.0.1");
  http::write(s, req, ec);
  beast::flat_buffer b;
  http::response<http::string_body> res;
  http::read(s, b, res, ec);
  return res.body();
}

std::string metric(uint16_t port, const std::string& name) {
  std::istringstream in(metrics_page(port));
  std::string line;
  while (std::getline(in, line))
    if (line.rfind(name + " ", 0) == 0) return line.substr(name.size() + 1);
  return "?";
}

std::string fmt(double v, int digits = 1) {
  char b[64];
  std::snprintf(b, sizeof b, "%.*f", digits, v);
  return b;
}

// p50 / p99 of sotto_store_commit_seconds, from its buckets (upper bounds), over every node
// (the nodes' histograms have the same buckets: their counts add).
std::string commit_quantiles(const std::vector<uint16_t>& ports) {
  std::vector<std::pair<double, double>> buckets;  // le, cumulative count
  for (size_t node = 0; node < ports.size(); ++node) {
    std::istringstream in(metrics_page(ports[node]));
    std::string line;
    const std::string prefix = "sotto_store_commit_seconds_bucket{le=\"";
    size_t k = 0;
    while (std::getline(in, line)) {
      if (line.rfind(prefix, 0) != 0) continue;
      std::string le = line.substr(prefix.size(), line.find('"', prefix.size()) - prefix.size());
      double bound = le == "+Inf" ? 1e9 : std::stod(le);
      double count = std::stod(line.substr(line.rfind(' ') + 1));
      if (node == 0)
        buckets.emplace_back(bound, count);
      else if (k < buckets.size())
        buckets[k].second += count;
      ++k;
    }
  }
  if (buckets.empty() || buckets.back().second == 0) return "?";
  auto q = [&](double f) {
    for (auto& [le, c] : buckets)
      if (c >= f * buckets.back().second)
        return le >= 1e9 ? std::string(">2500") : fmt(le * 1000, 1);
    return std::string("?");
  };
  return "<=" + q(0.5) + " / <=" + q(0.99);
}

void print_row(const char* what, const std::string& value, const char* target) {
  std::printf("%-58s %14s   %s\n", what, value.c_str(), target);
}

Deliveries g_deliveries;  // every phase's; any failure makes the run exit non-zero

void print_deliveries(const std::string& what, const Deliveries& d) {
  g_deliveries.add(d);
  print_row(("  " + what + ": lost / duplicated of " + std::to_string(d.envelopes)).c_str(),
            std::to_string(d.lost) + " / " + std::to_string(d.duplicated), "0 / 0");
  if (d.misrouted || d.unanswered || d.pushed_again)
    print_row("    misrouted / unanswered / pushed again after their ack",
              std::to_string(d.misrouted) + " / " + std::to_string(d.unanswered) + " / " +
                  std::to_string(d.pushed_again),
              "0 / 0 / 0");
}

// Latency of a paced run, from each send's due time; and how many sends left late.
std::string paced_latency(const Traffic& t) {
  return fmt(t.p50_ms, 2) + " / " + fmt(t.p99_ms, 2) + "; " + std::to_string(t.late);
}

void traffic_phases(size_t pairs, size_t fan, double seconds, bool quick);
void cluster_phases(size_t pairs, size_t fan, double seconds, int fan_rounds);
int memory_phase(size_t idle_total, size_t idle_first, size_t spare, size_t extra);

}  // namespace

int main(int argc, char** argv) {
  bool quick = false, memory_only = false, cluster = false;
  double seconds = 5;
  size_t idle_total = 18'000, idle_first = 5'000;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    if (a == "--quick")
      quick = true;
    else if (a == "--relay" && i + 1 < argc)
      g_relay_binary = argv[++i];
    else if (a == "--seconds" && i + 1 < argc)
      seconds = std::stod(argv[++i]);
    else if (a == "--idle" && i + 1 < argc)
      idle_total = std::stoul(argv[++i]);
    else if (a == "--memory-only")
      memory_only = true;
    else if (a == "--cluster")
      cluster = true;
    else {
      std::fprintf(stderr,
                   "usage: relay_bench [--relay PATH] [--quick] [--seconds N] [--idle N] "
                   "[--memory-only | --cluster]\n");
      return 2;
    }
  }
  if (cluster && memory_only) {
    std::fprintf(stderr, "relay_bench: --cluster and --memory-only are separate runs; pick one\n");
    return 2;
  }
  if (idle_total < 30) {
    std::fprintf(stderr, "relay_bench: --idle needs at least 30 connections\n");
    return 2;
  }
  // The first RSS reading sits at 5,000 connections, or half of a smaller --idle.
  idle_first = std::min(idle_first, idle_total / 2);
  size_t pairs = 100, fan = 1000, spare = 600, extra = 400;
  if (quick) {  // a smoke run for ctest: every phase, small numbers
    seconds = 1;
    idle_total = std::min<size_t>(idle_total, 200);
    idle_first = idle_total / 2;
    pairs = 20;
    fan = 50;
    spare = 150;
    extra = 100;
  }
  int fan_rounds = quick ? 3 : 20;
  if (sodium_init() < 0) die("sodium_init");
  std::signal(SIGPIPE, SIG_IGN);
  // Ctrl-C must not leave --cluster's PostgreSQL server running (see on_interrupt).
  std::signal(SIGINT, on_interrupt);
  std::signal(SIGTERM, on_interrupt);
  std::printf("sotto relay_bench: relay %s, %u cores\n", g_relay_binary.c_str(),
              std::thread::hardware_concurrency());
  const auto scratch = std::filesystem::temp_directory_path();
  sotto::bench::print_machine("start", sotto::bench::measure_machine(scratch));
  std::printf("\n%-58s %14s   %s\n", "figure", "value", "target");

  int rc = 0;
  if (cluster) {
    cluster_phases(pairs, fan, seconds, fan_rounds);
  } else {
    if (!memory_only) traffic_phases(pairs, fan, seconds, quick);
    rc = memory_phase(idle_total, idle_first, spare, extra);
  }
  if (!memory_only) {
    // A correctness check, not a timing one: the relay lost, doubled or misdirected envelopes.
    const Deliveries& d = g_deliveries;
    print_row(
        ("every envelope delivered exactly once (" + std::to_string(d.envelopes) + " checked)")
            .c_str(),
        d.failures() ? "NO" : "yes", "yes");
    if (d.failures()) {
      std::fprintf(stderr,
                   "relay_bench: delivery failures: %zu lost, %zu duplicated, %zu misrouted, %zu "
                   "requests unanswered, %zu pushed again after their ack\n",
                   d.lost, d.duplicated, d.misrouted, d.unanswered, d.pushed_again);
      rc = 1;
    }
  }
  std::printf("\n");
  sotto::bench::print_machine("end", sotto::bench::measure_machine(scratch));
  return rc;
}

namespace {

// Phases 1-3 and the db-sync normal rerun.
void traffic_phases(size_t pairs, size_t fan, double seconds, bool quick) {
  auto service = Service::embedded();
  const Relay& relay = service->nodes[0];
  auto devices = register_accounts(relay.port, pairs + fan + 1, "bench");
  std::vector<Device> talkers(devices.begin(), devices.begin() + static_cast<long>(pairs));
  std::vector<Device> members(devices.begin() + static_cast<long>(pairs),
                              devices.begin() + static_cast<long>(pairs + fan));
  const Device& sender = devices.back();
  const std::vector<uint16_t> talker_ports = talker_ports_of(*service, pairs);

  Traffic full = one_to_one(*service, talkers, talker_ports, 0, seconds);
  std::string conns = std::to_string(pairs) + " connections";
  print_row(("durable 1:1 envelopes/s, " + conns).c_str(), fmt(full.envelopes_per_s, 0),
            ">= 50,000");
  print_row("  CPU per envelope, relay / load generator (us)",
            fmt(full.server_cpu_us, 1) + " / " + fmt(full.generator_cpu_us, 1), "");
  // What the relay's own CPU time allows if it had both cores to itself (its commits wait on
  // the disk, not the CPU: a batch grows while the previous one syncs).
  print_row("  envelopes/s the relay's CPU time allows on 2 cores",
            fmt(full.server_cpu_us > 0 ? 2e6 / full.server_cpu_us : 0, 0), "");
  print_row("  relay writes to storage per envelope (KiB)", fmt(full.disk_kib, 2), "");
  print_row("  storage jobs per transaction", fmt(full.jobs_per_commit, 1), "");
  print_deliveries("full load", full.deliveries);
  Traffic half = one_to_one(*service, talkers, talker_ports, full.envelopes_per_s / 2, seconds);
  print_row("  send-to-deliver at half load: envelopes/s", fmt(half.envelopes_per_s, 0), "");
  print_row("  CPU per envelope at half load, relay / load generator (us)",
            fmt(half.server_cpu_us, 1) + " / " + fmt(half.generator_cpu_us, 1), "");
  print_row("  relay writes to storage per envelope at half load (KiB)", fmt(half.disk_kib, 2), "");
  print_row("  storage jobs per transaction at half load", fmt(half.jobs_per_commit, 1), "");
  print_row("  send-to-deliver p50 (ms, from the send's due time)", fmt(half.p50_ms, 2), "");
  print_row("  send-to-deliver p99 (ms, from the send's due time)", fmt(half.p99_ms, 2), "< 10");
  print_row("  send-to-deliver worst (ms)", fmt(half.max_ms, 2), "");
  print_row(("  sends that left > 1 ms late, of " + std::to_string(half.samples)).c_str(),
            std::to_string(half.late), "");
  print_row("    of which waited for a full window (24 unanswered)",
            std::to_string(half.window_waits), "");
  print_row("  sends behind their due time p50 / p99 / worst (ms)",
            fmt(half.lateness_p50_ms, 2) + " / " + fmt(half.lateness_p99_ms, 2) + " / " +
                fmt(half.worst_late_ms, 1),
            "");
  print_row("  p50 / p99 from when each send left (ms)",
            fmt(half.sent_p50_ms, 2) + " / " + fmt(half.sent_p99_ms, 2), "");
  print_row("  relay commit latency p50 / p99 (ms)", commit_quantiles({relay.port}), "");
  print_deliveries("half load", half.deliveries);
  // The same latency at fixed, lighter loads: how much of it is queueing on the shared cores.
  for (double rate : {2'000.0, 10'000.0}) {
    if (quick || rate >= full.envelopes_per_s / 2) continue;
    Traffic t = one_to_one(*service, talkers, talker_ports, rate, seconds);
    print_row(("  p50 / p99 at " + fmt(rate, 0) + " envelopes/s (ms); late sends").c_str(),
              paced_latency(t), "");
    print_deliveries(fmt(rate, 0) + " envelopes/s", t.deliveries);
  }
  Deliveries fanned;
  auto rounds = fan_out(relay.port, sender, members, std::vector<uint16_t>(fan, relay.port),
                        quick ? 2 : 5, fanned);
  std::sort(rounds.begin(), rounds.end());
  print_row(("send_multi to " + std::to_string(fan) + " connected devices, median (ms)").c_str(),
            fmt(rounds[rounds.size() / 2], 1), "< 50");
  print_row("  worst round (ms)", fmt(rounds.back(), 1), "");
  print_deliveries("send_multi copies", fanned);
  service->stop();

  // The same 1:1 phases with --db-sync normal: an OK then survives a process crash but not a
  // power loss (no fsync per commit). Shows what the disk's fsync costs.
  {
    auto fast = Service::embedded({"--db-sync", "normal"});
    auto fast_devices = register_accounts(fast->nodes[0].port, pairs, "fast");
    Traffic f = one_to_one(*fast, fast_devices, talker_ports_of(*fast, pairs), 0, seconds);
    print_row(("db-sync normal: 1:1 envelopes/s, " + conns).c_str(), fmt(f.envelopes_per_s, 0), "");
    Traffic fh = one_to_one(*fast, fast_devices, talker_ports_of(*fast, pairs),
                            f.envelopes_per_s / 2, seconds);
    print_deliveries("full load", f.deliveries);
    print_row("  p50 / p99 at half load (ms); late sends", paced_latency(fh), "");
    print_deliveries("half load", fh.deliveries);
  }
}

// p50 and p99 of a few samples (with 20, the p99 is the worst).
std::pair<double, double> p50_p99(std::vector<double> v) {
  if (v.empty()) return {0, 0};
  std::sort(v.begin(), v.end());
  return {v[v.size() / 2], v[std::min(v.size() - 1, v.size() * 99 / 100)]};
}

std::string ratio(double a, double b) { return b > 0 ? fmt(a / b, 2) : "?"; }

// Cores each part kept busy over a measured window: CPU per envelope times envelopes/s.
std::string cores(const Traffic& t) {
  auto c = [&](double us) { return fmt(us * t.envelopes_per_s / 1e6, 2); };
  return c(t.server_cpu_split_us.nodes) + " / " + c(t.server_cpu_split_us.postgres) + " / " +
         c(t.server_cpu_split_us.redis) + " / " + c(t.generator_cpu_us);
}

// --cluster: phases C1-C3 on three nodes, each beside the same load on the embedded store.
void cluster_phases(size_t pairs, size_t fan, double seconds, int fan_rounds) {
  constexpr int kNodes = 3;
  const std::string conns = std::to_string(pairs) + " connections";
  const std::string rounds = std::to_string(fan_rounds);
  auto split = [](const ServerCpu& us) {
    return fmt(us.nodes, 1) + " / " + fmt(us.postgres, 1) + " / " + fmt(us.redis, 1);
  };

  // The reference: one relay on its embedded store (db-sync = full), the same load.
  auto embedded = Service::embedded();
  auto devices = register_accounts(embedded->nodes[0].port, pairs + fan + 1, "ref");
  std::vector<Device> talkers(devices.begin(), devices.begin() + static_cast<long>(pairs));
  std::vector<Device> members(devices.begin() + static_cast<long>(pairs),
                              devices.begin() + static_cast<long>(pairs + fan));
  Traffic ref = one_to_one(*embedded, talkers, talker_ports_of(*embedded, pairs), 0, seconds);
  Traffic ref_half = one_to_one(*embedded, talkers, talker_ports_of(*embedded, pairs),
                                ref.envelopes_per_s / 2, seconds);
  Deliveries ref_fanned;
  auto [ref_fan_p50, ref_fan_p99] =
      p50_p99(fan_out(embedded->nodes[0].port, devices.back(), members,
                      member_ports_of(*embedded, fan), fan_rounds, ref_fanned));
  embedded->stop();
  std::printf("reference: one relay on its embedded store (db-sync full)\n");
  print_row(("durable 1:1 envelopes/s, " + conns).c_str(), fmt(ref.envelopes_per_s, 0), "");
  print_row("  CPU per envelope, relay / load generator (us)",
            fmt(ref.server_cpu_us, 1) + " / " + fmt(ref.generator_cpu_us, 1), "");
  print_row("  cores busy: relay / - / - / load generator", cores(ref), "");
  print_row("  relay writes to storage per envelope (KiB)", fmt(ref.disk_kib, 2), "");
  print_deliveries("full load", ref.deliveries);
  print_row("  half load: envelopes/s", fmt(ref_half.envelopes_per_s, 0), "");
  print_row("  p50 / p99 at half load (ms, from due time); late sends", paced_latency(ref_half),
            "");
  print_row("  CPU per envelope at half load, relay (us)", fmt(ref_half.server_cpu_us, 1), "");
  print_deliveries("half load", ref_half.deliveries);
  print_row(("send_multi to " + std::to_string(fan) + " devices: p50 / p99 of " + rounds + " (ms)")
                .c_str(),
            fmt(ref_fan_p50, 1) + " / " + fmt(ref_fan_p99, 1), "");
  print_deliveries("send_multi copies", ref_fanned);
  std::fflush(stdout);

  // Cluster mode: kNodes nodes, PostgreSQL (fsync on) and redis-server on the same cores.
  auto cluster = Service::cluster(kNodes);
  const uint64_t t0 = mono_ns();
  // Accounts through real signed registrations, pipelined, through one node: about as fast as
  // on the embedded store (about a second for these counts), so no shortcut into the database.
  devices = register_accounts(cluster->nodes[0].port, pairs + fan + 1, "cluster");
  const double registered_s = static_cast<double>(mono_ns() - t0) / 1e9;
  talkers.assign(devices.begin(), devices.begin() + static_cast<long>(pairs));
  members.assign(devices.begin() + static_cast<long>(pairs),
                 devices.begin() + static_cast<long>(pairs + fan));
  const auto talker_ports = talker_ports_of(*cluster, pairs);
  Traffic full = one_to_one(*cluster, talkers, talker_ports, 0, seconds);
  Traffic half = one_to_one(*cluster, talkers, talker_ports, full.envelopes_per_s / 2, seconds);
  const std::string commits = commit_quantiles(cluster->ports());
  Deliveries fanned;
  auto [fan_p50, fan_p99] = p50_p99(fan_out(cluster->nodes[0].port, devices.back(), members,
                                            member_ports_of(*cluster, fan), fan_rounds, fanned));
  cluster->stop();

  std::printf("\ncluster: %d nodes, PostgreSQL 15 (fsync on), redis-server; one machine\n", kNodes);
  print_row(
      ("  " + std::to_string(pairs + fan + 1) + " signed registrations, one node (s)").c_str(),
      fmt(registered_s, 1), "");
  print_row(("1:1 across nodes: durable envelopes/s, " + conns).c_str(),
            fmt(full.envelopes_per_s, 0), ">= 30,000");
  print_row("  as a ratio to the embedded store's",
            ratio(full.envelopes_per_s, ref.envelopes_per_s), "");
  print_row("  CPU per envelope, all servers / load generator (us)",
            fmt(full.server_cpu_us, 1) + " / " + fmt(full.generator_cpu_us, 1), "");
  print_row("    nodes / PostgreSQL / Redis (us)", split(full.server_cpu_split_us), "");
  print_row("    all servers' as a ratio to the embedded store's",
            ratio(full.server_cpu_us, ref.server_cpu_us), "");
  print_row("  cores busy: nodes / PostgreSQL / Redis / load generator", cores(full), "");
  print_row("  writes to storage per envelope, nodes + PostgreSQL (KiB)", fmt(full.disk_kib, 2),
            "");
  print_row("  storage jobs per transaction (all nodes)", fmt(full.jobs_per_commit, 1), "");
  print_deliveries("full load", full.deliveries);
  print_row("  half load: envelopes/s", fmt(half.envelopes_per_s, 0), "");
  print_row("  send-to-deliver p50 (ms, from the send's due time)", fmt(half.p50_ms, 2), "");
  print_row("  send-to-deliver p99 (ms, from the send's due time)", fmt(half.p99_ms, 2), "< 20");
  print_row("    as a ratio to the embedded store's p99 at its half load",
            ratio(half.p99_ms, ref_half.p99_ms), "");
  print_row("  send-to-deliver worst (ms)", fmt(half.max_ms, 2), "");
  print_row(("  sends that left > 1 ms late, of " + std::to_string(half.samples)).c_str(),
            std::to_string(half.late), "");
  print_row("    of which waited for a full window (24 unanswered)",
            std::to_string(half.window_waits), "");
  print_row("  p50 / p99 from when each send left (ms)",
            fmt(half.sent_p50_ms, 2) + " / " + fmt(half.sent_p99_ms, 2), "");
  print_row("  CPU per envelope at half load, all servers (us)", fmt(half.server_cpu_us, 1), "");
  print_row("    nodes / PostgreSQL / Redis (us)", split(half.server_cpu_split_us), "");
  print_row("    all servers' as a ratio to the embedded store's",
            ratio(half.server_cpu_us, ref_half.server_cpu_us), "");
  print_row("  cores busy at half load (the same split)", cores(half), "");
  print_row("  commit latency p50 / p99, all nodes (ms)", commits, "");
  print_deliveries("half load", half.deliveries);
  print_row(("send_multi, " + std::to_string(fan) + " devices on " + std::to_string(kNodes) +
             " nodes: p50 / p99 of " + rounds + " (ms)")
                .c_str(),
            fmt(fan_p50, 1) + " / " + fmt(fan_p99, 1), "p99 < 100");
  print_row("  the p99 as a ratio to the embedded store's", ratio(fan_p99, ref_fan_p99), "");
  print_deliveries("send_multi copies", fanned);
}

int memory_phase(size_t idle_total, size_t idle_first, size_t spare, size_t extra) {
  // Phase 4 on a fresh relay whose connection budget sits a little above the idle total.
  size_t budget = idle_total + extra / 4;
  Relay idle;
  idle.start({"--max-connections", std::to_string(budget), "--threads", "2"});
  auto idle_devices = register_accounts(idle.port, idle_total + spare, "idle");
  constexpr int kChildren = 3;
  std::vector<Child> children;
  size_t per = idle_total / kChildren;  // the last child also gets the spare accounts
  for (int k = 0; k < kChildren; ++k) {
    int down[2], up[2];
    if (::pipe(down) || ::pipe(up)) die("pipe");
    std::vector<Device> slice(
        idle_devices.begin() + static_cast<long>(std::min(idle_devices.size(), k * per)),
        k == kChildren - 1 ? idle_devices.end()
                           : idle_devices.begin() + static_cast<long>((k + 1) * per));
    pid_t pid = ::fork();
    if (pid == 0) {
      ::prctl(PR_SET_PDEATHSIG, SIGKILL);
      ::close(down[1]);
      ::close(up[0]);
      idle_child(down[0], up[1], idle.port, std::move(slice), "127.0.0." + std::to_string(2 + k));
    }
    ::close(down[0]);
    ::close(up[1]);
    children.push_back({pid, down[1], up[0]});
  }
  auto hold = [&](size_t total) {
    size_t held = 0;
    for (int k = 0; k < kChildren; ++k)
      // Each child holds a third; the last, which has the spare accounts, the remainder.
      held += ask(children[k],
                  std::to_string(k == kChildren - 1 ? total - (kChildren - 1) * (total / kChildren)
                                                    : total / kChildren) +
                      "\n");
    std::this_thread::sleep_for(2s);
    return held;
  };
  long rss0 = idle.rss_kib();
  size_t a = hold(idle_first);
  long rss_a = idle.rss_kib();
  size_t b = hold(idle_total);
  long rss_b = idle.rss_kib();
  double slope = static_cast<double>(rss_b - rss_a) / static_cast<double>(b - a);
  print_row("relay RSS with no connections (MiB)", fmt(rss0 / 1024.0, 1), "");
  print_row(("relay RSS at " + std::to_string(a) + " idle connections (MiB)").c_str(),
            fmt(rss_a / 1024.0, 1), "");
  print_row(("relay RSS at " + std::to_string(b) + " idle connections (MiB)").c_str(),
            fmt(rss_b / 1024.0, 1), "");
  print_row("relay RSS per idle authenticated connection (KiB, slope)", fmt(slope, 2), "<= 4");
  // `extra` more connections, three quarters of them past the budget.
  auto tried = ask_all(children.back(), "r" + std::to_string(extra) + "\n");
  if (tried.size() != 3) die("an idle-connection child gave no refusal counts");
  size_t opened = tried[0], refused = tried[1], other = tried[2];
  size_t past = extra - (budget - std::min(budget, b));
  std::string counted =
      metric(idle.port, "sotto_connections_refused_total{reason=\"descriptor_budget\"}");
  print_row(
      ("connections past a budget of " + std::to_string(budget) + ": refused with 503").c_str(),
      std::to_string(refused) + " of " + std::to_string(extra),
      (std::to_string(past) + ", clean 503").c_str());
  print_row("  failed without a 503 (reset, timeout, other status)", std::to_string(other), "0");
  print_row("  opened", std::to_string(opened), std::to_string(extra - past).c_str());
  print_row("  sotto_connections_refused_total{descriptor_budget}", counted, "");
  bool alive = ::kill(idle.pid, 0) == 0 && metric(idle.port, "sotto_descriptor_budget") != "?";
  print_row("  relay still serving after the refusals", alive ? "yes" : "NO", "yes");
  for (auto& c : children) {
    (void)!::write(c.to, "x", 1);
    int st = 0;
    ::waitpid(c.pid, &st, 0);
  }
  idle.stop();
  return alive ? 0 : 1;
}

}  // namespace
