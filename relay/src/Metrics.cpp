#include "Metrics.h"

#include <dirent.h>

#include <cstdio>

#include "sotto/proto/wire.pb.h"

namespace sotto::relay {
namespace {

constexpr int kStatusNumbers[Metrics::kStatuses] = {0,   200, 400, 401, 403, 404, 409,
                                                    410, 413, 422, 429, 500, 501, 503};

void line(std::string& out, const std::string& name, const std::string& type,
          const std::string& help) {
  out += "# HELP " + name + " " + help + "\n# TYPE " + name + " " + type + "\n";
}

template <class T>
void scalar(std::string& out, const char* name, const char* type, const char* help, const T& v) {
  line(out, name, type, help);
  out += name;
  out += ' ';
  out += std::to_string(v.load(std::memory_order_relaxed));
  out += '\n';
}

int64_t open_descriptors() {
  DIR* d = opendir("/proc/self/fd");
  if (!d) return -1;
  int64_t n = 0;
  while (readdir(d)) ++n;
  closedir(d);
  return n - 3;  // ".", ".." and the directory's own descriptor
}

std::string format_double(double v) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%g", v);
  return buf;
}

}  // namespace

int status_index(int status) {
  for (int i = 0; i < Metrics::kStatuses; ++i)
    if (kStatusNumbers[i] == status) return i;
  return 0;
}

void Histogram::observe(double seconds) {
  size_t i = 0;
  while (i < kBounds.size() && seconds > kBounds[i]) ++i;
  buckets_[i].fetch_add(1, std::memory_order_relaxed);
  count_.fetch_add(1, std::memory_order_relaxed);
  sum_us_.fetch_add(static_cast<uint64_t>(seconds * 1e6), std::memory_order_relaxed);
}

void Histogram::render(std::string& out, const std::string& name, const std::string& help) const {
  line(out, name, "histogram", help);
  uint64_t cumulative = 0;
  for (size_t i = 0; i < kBounds.size(); ++i) {
    cumulative += buckets_[i].load(std::memory_order_relaxed);
    out += name + "_bucket{le=\"" + format_double(kBounds[i]) + "\"} " +
           std::to_string(cumulative) + "\n";
  }
  cumulative += buckets_[kBounds.size()].load(std::memory_order_relaxed);
  out += name + "_bucket{le=\"+Inf\"} " + std::to_string(cumulative) + "\n";
  out += name + "_sum " + format_double(static_cast<double>(sum_us_.load()) / 1e6) + "\n";
  out += name + "_count " + std::to_string(count_.load()) + "\n";
}

void Metrics::count_request(int op, int status) {
  if (op < 0 || op >= kOps) {
    requests_unknown_op.fetch_add(1, std::memory_order_relaxed);
    return;
  }
  requests[op][status_index(status)].fetch_add(1, std::memory_order_relaxed);
}

std::string Metrics::render() const {
  std::string out;
  out.reserve(16384);
  line(out, "sotto_connections", "gauge", "Open connections by kind.");
  out += "sotto_connections{kind=\"ws_authenticated\"} " + std::to_string(ws_authenticated.load()) +
         "\n";
  out += "sotto_connections{kind=\"ws_unauthenticated\"} " +
         std::to_string(ws_unauthenticated.load()) + "\n";
  out += "sotto_connections{kind=\"http\"} " + std::to_string(http_connections.load()) + "\n";
  scalar(out, "sotto_connections_accepted_total", "counter", "TCP connections accepted.",
         connections_accepted);
  line(out, "sotto_connections_refused_total", "counter",
       "Connections refused, by reason (descriptor budget or per-address limits).");
  out += "sotto_connections_refused_total{reason=\"descriptor_budget\"} " +
         std::to_string(connections_refused_budget.load()) + "\n";
  out += "sotto_connections_refused_total{reason=\"rate_limit\"} " +
         std::to_string(connections_refused_rate.load()) + "\n";
  scalar(out, "sotto_accept_errors_total", "counter", "accept() failures (e.g. EMFILE).",
         accept_errors);
  scalar(out, "sotto_idle_drops_total", "counter",
         "Connections dropped for silence or an unfinished handshake.", idle_drops);
  scalar(out, "sotto_slow_reader_drops_total", "counter",
         "Connections closed because too much outgoing data waited for them.", slow_reader_drops);
  scalar(out, "sotto_protocol_errors_total", "counter", "Connections closed for a protocol error.",
         protocol_errors);
  scalar(out, "sotto_auth_failures_total", "counter", "Upgrades refused with 401.", auth_failures);
  line(out, "sotto_open_descriptors", "gauge", "File descriptors the process holds.");
  out += "sotto_open_descriptors " + std::to_string(open_descriptors()) + "\n";
  line(out, "sotto_descriptor_budget", "gauge",
       "Connections accepted before new ones are refused with 503.");
  out += "sotto_descriptor_budget " + std::to_string(descriptor_budget) + "\n";
  if (int64_t not_after = tls_not_after_s.load()) {
    line(out, "sotto_tls_certificate_not_after_seconds", "gauge",
         "When the TLS certificate served to new connections expires (Unix time).");
    out += "sotto_tls_certificate_not_after_seconds " + std::to_string(not_after) + "\n";
    scalar(out, "sotto_tls_reload_failures_total", "counter",
           "SIGHUP reloads refused (unreadable or mismatched certificate and key).",
           tls_reload_failures);
  }

  line(out, "sotto_requests_total", "counter", "Requests answered, by op and status.");
  for (int op = 0; op < kOps; ++op) {
    const std::string& op_name = wire::Op_Name(static_cast<wire::Op>(op));
    for (int s = 0; s < kStatuses; ++s) {
      uint64_t n = requests[op][s].load(std::memory_order_relaxed);
      if (n == 0) continue;
      const std::string& st = wire::Status_Name(static_cast<wire::Status>(kStatusNumbers[s]));
      out += "sotto_requests_total{op=\"" + op_name + "\",status=\"" + st + "\"} " +
             std::to_string(n) + "\n";
    }
  }
  scalar(out, "sotto_requests_unknown_op_total", "counter", "Requests with an unknown op.",
         requests_unknown_op);

  scalar(out, "sotto_envelopes_queued_total", "counter", "Envelope copies durably queued.",
         envelopes_queued);
  scalar(out, "sotto_envelopes_pushed_total", "counter", "Envelopes pushed to devices.",
         envelopes_pushed);
  scalar(out, "sotto_envelopes_acked_total", "counter", "Envelopes deleted by an ack.",
         envelopes_acked);
  scalar(out, "sotto_envelopes_expired_total", "counter", "Envelopes deleted by the TTL.",
         envelopes_expired);
  scalar(out, "sotto_envelopes_ephemeral_total", "counter",
         "Ephemeral envelopes forwarded to connected devices.", envelopes_ephemeral);
  scalar(out, "sotto_envelopes_ephemeral_dropped_total", "counter",
         "Ephemeral envelopes dropped because the recipient's connection had a backlog.",
         envelopes_ephemeral_dropped);
  scalar(out, "sotto_queue_depth", "gauge", "Envelopes waiting in all device queues.", queue_depth);

  commit_latency.render(out, "sotto_store_commit_seconds",
                        "Time from the start of a storage batch to its durable commit.");
  scalar(out, "sotto_store_batches_total", "counter", "Storage transactions committed.",
         store_batches);
  scalar(out, "sotto_store_jobs_total", "counter", "Storage jobs run.", store_jobs);
  scalar(out, "sotto_store_errors_total", "counter", "Storage transactions that failed.",
         store_errors);

  scalar(out, "sotto_wakeups_sent_total", "counter", "Wake-up pushes delivered.", wakeups_sent);
  scalar(out, "sotto_wakeups_failed_total", "counter", "Wake-up pushes given up.", wakeups_failed);
  scalar(out, "sotto_wakeups_coalesced_total", "counter",
         "Wake-ups skipped because one was sent recently.", wakeups_coalesced);
  scalar(out, "sotto_attachments_uploaded_total", "counter", "Attachment blobs stored.",
         attachments_uploaded);
  scalar(out, "sotto_attachment_bytes_in_total", "counter", "Attachment bytes received.",
         attachment_bytes_in);
  scalar(out, "sotto_attachment_bytes_out_total", "counter", "Attachment bytes served.",
         attachment_bytes_out);
  return out;
}

}  // namespace sotto::relay
