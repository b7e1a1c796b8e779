// Everything an operator can set, from a config file and command-line flags (flags win).
// Every limit of protocol.md section 12 is here; defaults are the spec's.
#pragma once

#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

#include "RateLimiter.h"
#include "sotto/Result.h"

namespace sotto::relay {

struct Limits {
  uint32_t max_frame_bytes = 262'144;
  uint32_t max_envelope_bytes = 261'120;
  uint32_t max_send_messages = 100;
  uint32_t max_send_multi_devices = 1000;
  uint32_t max_multi_header_bytes = 256;
  uint32_t max_devices_per_account = 6;
  uint32_t max_prekeys_per_upload = 100;
  uint32_t max_prekeys_stored = 1000;
  uint32_t prekey_low_threshold = 10;
  uint32_t max_ack_sequences = 1000;
  uint32_t max_presence_subscriptions = 256;
  uint32_t max_unanswered_requests = 32;
  uint32_t max_unacked_envelopes = 512;
  uint64_t max_outgoing_bytes = 1 << 20;
  uint64_t envelope_ttl_ms = 30ull * 86'400'000;
  uint64_t max_queue_envelopes = 100'000;
  uint64_t max_queue_bytes = 256ull << 20;
  uint32_t max_signed_payload_bytes = 64 * 1024;
  uint64_t clock_skew_ms = 5 * 60'000;
  uint64_t nonce_window_ms = 10 * 60'000;
  uint64_t link_lifetime_ms = 10 * 60'000;
  uint32_t max_provision_ciphertext_bytes = 16 * 1024;
  uint64_t attachment_max_bytes = 100ull << 20;
  uint64_t attachment_retention_ms = 30ull * 86'400'000;
  uint64_t attachment_slot_ms = 3'600'000;
  uint64_t unauth_timeout_ms = 5'000;
  uint32_t ping_interval_ms = 30'000;
  uint32_t idle_timeout_ms = 90'000;
  uint32_t max_push_url_bytes = 2048;
  uint64_t http_header_timeout_ms = 10'000;
  uint64_t write_timeout_ms = 30'000;  // no write progress this long: a slow reader, cut off
  // SO_SNDBUF of a WebSocket: bounds what the kernel takes off the write queue, so a peer
  // that stops reading shows as no write progress (0: the kernel's autotuning, up to MBs).
  uint32_t socket_send_buffer_bytes = 128 * 1024;
  uint32_t max_encrypted_name_bytes = 256;
};

struct RateLimits {
  bool per_ip = true;  // false: no per-address limit at all (load tests, trusted NAT)
  RateSpec upgrade_ip;
  uint32_t unauth_sockets_ip = 10;
  RateSpec register_ip;
  RateSpec provision_ip;
  RateSpec provision_lookup_account;
  RateSpec lookup_device;
  RateSpec bundles_device;
  RateSpec bundles_target;
  RateSpec send_device;
  RateSpec presence_device;
  RateSpec attachment_account;
  uint64_t attachment_bytes_per_day = 2ull << 30;
  RateSpec download_device;
  RateSpec frames_connection;
  RateLimits();
};

struct Config {
  std::string listen_host = "127.0.0.1";
  uint16_t listen_port = 8080;
  std::filesystem::path port_file;  // written (atomically) with the bound port once listening
  unsigned threads = 0;             // 0: one per core
  bool reuse_port = false;          // SO_REUSEPORT: several relay processes on one port
  std::filesystem::path tls_cert;   // PEM chain; TLS only when both are set
  std::filesystem::path tls_key;

  std::filesystem::path data_dir;
  // Cluster mode (docs/operating-the-relay.md): the store in PostgreSQL ("" = the embedded
  // SQLCipher store in data_dir), the bus between nodes ("" = a single relay) and this node's
  // name on it. Nodes of a cluster share data_dir, which then holds only attachments.
  std::string store;
  std::string bus;
  std::string node_id;
  uint64_t cluster_claim_ttl_ms = 30'000;  // a dead node's devices show offline after this
  std::filesystem::path db_key_file;  // 64 hex digits: the database is encrypted at rest
  bool db_sync_full = true;           // synchronous=FULL: an OK survives power loss
  uint32_t store_batch_max = 1024;    // jobs per storage transaction

  uint64_t max_connections = 0;  // 0: derived from the descriptor limit
  uint32_t descriptor_reserve = 256;
  uint64_t shutdown_grace_ms = 5'000;
  uint64_t expiry_interval_ms = 60'000;  // how often expired envelopes and blobs are deleted

  std::string metrics_access = "loopback";  // loopback | open | token
  std::string metrics_token;

  bool registration_open = true;
  std::vector<std::string> reserved_handles;

  bool push_allow_http = false;
  bool push_allow_private = false;
  uint64_t push_timeout_ms = 10'000;
  uint32_t push_retries = 3;
  uint64_t push_coalesce_ms = 30'000;
  uint64_t push_backoff_ms = 1'000;

  std::string log_level = "info";
  // --init: create the data dir when it does not exist. Without it a missing data dir is an
  // error, so that a mistyped path never starts an empty relay.
  bool init = false;

  Limits limits;
  RateLimits rates;
};

// What the command line asked for.
struct ParsedCommandLine {
  enum class Command {
    kServe,    // sotto-relay [options]
    kBackup,   // sotto-relay backup DEST [options]: a backup of --data-dir into DEST
    kRestore,  // sotto-relay restore SRC [options]: a new --data-dir from the backup SRC
    kAdmin,    // sotto-relay admin WHAT [ARGS] [options]: an operator's command (Admin.h)
  };
  Command command = Command::kServe;
  std::filesystem::path command_path;  // DEST or SRC
  bool keep_one_time_prekeys = false;  // restore: keep the backup's one-time prekeys
  std::vector<std::string> admin_args;  // admin: the words and admin flags after "admin"
  bool check_config = false;            // --check-config: validate, print a summary, exit
  Config config;
  bool exit_now = false;  // --help or --version: print `output` and exit 0
  std::string output;
};

// Parses an optional command (backup DEST, restore SRC, admin ...), flags, then the config file named by
// --config (if any). kInvalidArgument with a message naming the bad option.
Result<ParsedCommandLine> parse_command_line(int argc, const char* const* argv);

}  // namespace sotto::relay
