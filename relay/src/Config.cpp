#include "Config.h"

// GCC 12 reports a false -Wnull-dereference inside program_options' vector<string> notify.
#pragma GCC diagnostic ignored "-Wnull-dereference"

#include <boost/program_options.hpp>
#include <fstream>
#include <set>
#include <sstream>
#include <string_view>
#include <thread>
#include <vector>

#include "Listener.h"

namespace po = boost::program_options;

namespace sotto::relay {
namespace {

RateSpec spec(const char* text) {
  RateSpec s;
  RateSpec::parse(text, s);
  return s;
}

struct RateOption {
  const char* name;
  RateSpec* target;
  const char* help;
  std::string text;
};

constexpr const char* kUsage =
    "sotto-relay: the sotto store-and-forward relay (WebSocket /v1/ws and HTTP on one port).\n"
    "\n"
    "Usage: sotto-relay --data-dir DIR [options]\n"
    "       sotto-relay --config /etc/sotto/relay.conf\n"
    "       sotto-relay backup DEST --data-dir DIR [--db-key-file FILE]\n"
    "       sotto-relay restore SRC --data-dir NEW_DIR [--db-key-file FILE]\n"
    "       sotto-relay admin help      (accounts, suspend, delete, invites, totals)\n"
    "       sotto-relay --check-config --config /etc/sotto/relay.conf\n"
    "\n"
    "backup writes a consistent copy of the data dir (database and attachments) into the new\n"
    "directory DEST, also while a relay serves it; restore makes a new data dir from one, and\n"
    "drops the one-time prekeys left in it unless --keep-one-time-prekeys.\n"
    "\n"
    "Every option can also be given in the config file as `name = value` (one per line, '#'\n"
    "starts a comment); flags on the command line win. Durations end in -ms (milliseconds).\n"
    "Rate limits are written RATE/PERIOD[:BURST] (units ms, s, m, h, d), e.g. 30/1s:300, or\n"
    "`off`. See docs/operating-the-relay.md.\n";

}  // namespace

RateLimits::RateLimits()
    : upgrade_ip(spec("60/1m")),
      register_ip(spec("5/1h")),
      provision_ip(spec("10/1h")),
      provision_lookup_account(spec("20/1h")),
      lookup_device(spec("500/1h:100")),
      bundles_device(spec("2000/1h")),
      bundles_target(spec("20/1h")),
      send_device(spec("30/1s:300")),
      presence_device(spec("30/1m")),
      attachment_account(spec("100/1h")),
      download_device(spec("1000/1h")),
      frames_connection(spec("100/1s:200")) {}

Result<ParsedCommandLine> parse_command_line(int argc, const char* const* argv) {
  ParsedCommandLine out;
  // A command and its path come first; the options after them are the server's.
  std::vector<const char*> args(argv, argv + argc);
  if (args.size() > 1 &&
      (std::string_view(args[1]) == "backup" || std::string_view(args[1]) == "restore")) {
    const bool backup = std::string_view(args[1]) == "backup";
    out.command =
        backup ? ParsedCommandLine::Command::kBackup : ParsedCommandLine::Command::kRestore;
    if (args.size() < 3 || args[2][0] == '-' || args[2][0] == '\0')
      return make_error(ErrorCode::kInvalidArgument,
                        backup ? "backup needs the directory to write: sotto-relay backup DEST "
                                 "--data-dir DIR"
                               : "restore needs the backup to read: sotto-relay restore SRC "
                                 "--data-dir NEW_DIR");
    out.command_path = args[2];
    args.erase(args.begin() + 1, args.begin() + 3);
  } else if (args.size() > 1 && std::string_view(args[1]) == "admin") {
    // The admin command's own words and flags go to it (Admin.cpp); the server's options
    // that say where the store is (--config, --data-dir, --store, ...) stay here.
    out.command = ParsedCommandLine::Command::kAdmin;
    static const std::set<std::string_view> admin_flags_with_value = {"--reason", "--uses",
                                                                      "--valid-days", "--note",
                                                                      "--limit"};
    static const std::set<std::string_view> switches = {"--help", "-h", "--version",
                                                        "--check-config", "--yes", "--init"};
    std::vector<const char*> rest = {args[0]};
    for (size_t i = 2; i < args.size(); ++i) {
      std::string_view a = args[i];
      std::string_view name = a.substr(0, a.find('='));
      if (admin_flags_with_value.count(name)) {
        out.admin_args.emplace_back(a);
        if (name == a && i + 1 < args.size()) out.admin_args.emplace_back(args[++i]);
      } else if (a == "--yes" || a.empty() || a[0] != '-') {
        out.admin_args.emplace_back(a);
      } else {
        rest.push_back(args[i]);
        if (!switches.count(name) && name == a && i + 1 < args.size()) rest.push_back(args[++i]);
      }
    }
    args = std::move(rest);
  }
  argc = static_cast<int>(args.size());
  argv = args.data();
  Config& c = out.config;
  Limits& l = c.limits;
  RateLimits& r = c.rates;

  std::string listen = c.listen_host + ":" + std::to_string(c.listen_port);
  std::string config_file, data_dir, port_file, tls_cert, tls_key, db_key_file;
  std::string db_sync = "full";

  po::options_description general("General");
  general.add_options()                          //
      ("help,h", "print this help and exit")     //
      ("version", "print the version and exit")  //
      ("check-config", po::bool_switch(&out.check_config),
       "check the options and config file, and the files they name, then exit (0: valid)")
      ("config,c", po::value(&config_file), "read options from this file (name = value lines)")(
          "data-dir,d", po::value(&data_dir),
          "directory of the database and attachments (required; in cluster mode shared by "
          "every node, and only attachments)")(
          "init", po::bool_switch(&c.init),
          "create --data-dir if it does not exist (a new relay); without it, a missing data dir "
          "is an error")(
          "store", po::value(&c.store),
          "cluster mode: postgresql://user@host:port/db (libpq); empty: the embedded store in "
          "--data-dir")(
          "bus", po::value(&c.bus),
          "cluster mode: redis://host:port or unix:/path/to/redis.sock, the bus between nodes")(
          "node-id", po::value(&c.node_id), "cluster mode: this node's name, unique in the cluster")(
          "cluster-claim-ttl-ms",
          po::value(&c.cluster_claim_ttl_ms)->default_value(c.cluster_claim_ttl_ms),
          "cluster mode: a node's claims on its devices expire this long after it dies")(
          "listen,l", po::value(&listen)->default_value(listen),
          "address:port to listen on; port 0 picks a free port (see --port-file)")(
          "port-file", po::value(&port_file),
          "once listening, write the bound port to this file (atomically: temp file + rename)")(
          "threads", po::value(&c.threads)->default_value(c.threads),
          "io threads; 0 = one per core")(
          "reuse-port", po::value(&c.reuse_port)->default_value(c.reuse_port),
          "set SO_REUSEPORT so several relay processes share one port (cluster mode)")(
          "tls-cert", po::value(&tls_cert),
          "PEM certificate chain; with --tls-key serves wss/https")(
          "tls-key", po::value(&tls_key), "PEM private key for --tls-cert")(
          "db-key-file", po::value(&db_key_file),
          "file holding 64 hex digits: the database is encrypted at rest with this key")(
          "keep-one-time-prekeys", po::bool_switch(&out.keep_one_time_prekeys),
          "restore only: keep the backup's one-time prekeys (some may have been handed out "
          "after the backup; see docs/operating-the-relay.md)")(
          "db-sync", po::value(&db_sync)->default_value(db_sync),
          "full: every acknowledged send survives power loss; normal: survives a crash only")(
          "store-batch-max", po::value(&c.store_batch_max)->default_value(c.store_batch_max),
          "most storage jobs committed in one transaction")(
          "max-connections", po::value(&c.max_connections)->default_value(c.max_connections),
          "connections accepted before refusing with 503; 0 = descriptor limit minus reserve")(
          "descriptor-reserve",
          po::value(&c.descriptor_reserve)->default_value(c.descriptor_reserve),
          "descriptors kept back from connections for files, the database and push requests")(
          "shutdown-grace-ms", po::value(&c.shutdown_grace_ms)->default_value(c.shutdown_grace_ms),
          "on SIGTERM, how long closing connections may take before the process exits")(
          "expiry-interval-ms",
          po::value(&c.expiry_interval_ms)->default_value(c.expiry_interval_ms),
          "how often expired envelopes, idempotency records and attachments are deleted")(
          "metrics-access", po::value(&c.metrics_access)->default_value(c.metrics_access),
          "who may GET /metrics: loopback | open | token (Authorization: Bearer --metrics-token)")(
          "metrics-token", po::value(&c.metrics_token), "bearer token for --metrics-access token")(
          "registration-open", po::value(&c.registration_open)->default_value(c.registration_open),
          "false: OP_REGISTER answers FORBIDDEN")("reserved-handle",
                                                  po::value(&c.reserved_handles)->composing(),
                                                  "a handle nobody may register (repeatable)")(
          "push-allow-http", po::value(&c.push_allow_http)->default_value(c.push_allow_http),
          "accept plain http:// push endpoints")(
          "push-allow-private",
          po::value(&c.push_allow_private)->default_value(c.push_allow_private),
          "accept push endpoints on loopback, private and link-local addresses")(
          "push-timeout-ms", po::value(&c.push_timeout_ms)->default_value(c.push_timeout_ms),
          "give up on one wake-up request after this long")(
          "push-retries", po::value(&c.push_retries)->default_value(c.push_retries),
          "retries of a failed wake-up")(
          "push-backoff-ms", po::value(&c.push_backoff_ms)->default_value(c.push_backoff_ms),
          "first retry delay; doubles each retry")(
          "push-coalesce-ms", po::value(&c.push_coalesce_ms)->default_value(c.push_coalesce_ms),
          "after a wake-up, no new one for the device until it connects or this passes")(
          "log-level", po::value(&c.log_level)->default_value(c.log_level),
          "debug | info | warn | error");

  po::options_description limits("Limits (protocol.md section 12)");
  limits.add_options()  //
      ("max-frame-bytes", po::value(&l.max_frame_bytes)->default_value(l.max_frame_bytes),
       "largest WebSocket message")(
          "max-envelope-bytes",
          po::value(&l.max_envelope_bytes)->default_value(l.max_envelope_bytes),
          "ciphertext + header of one envelope")(
          "max-send-messages", po::value(&l.max_send_messages)->default_value(l.max_send_messages),
          "device messages per OP_SEND")(
          "max-send-multi-devices",
          po::value(&l.max_send_multi_devices)->default_value(l.max_send_multi_devices),
          "recipient devices per OP_SEND_MULTI")(
          "max-multi-header-bytes",
          po::value(&l.max_multi_header_bytes)->default_value(l.max_multi_header_bytes),
          "per-device header in OP_SEND_MULTI")(
          "max-devices-per-account",
          po::value(&l.max_devices_per_account)->default_value(l.max_devices_per_account),
          "devices per account")(
          "max-prekeys-per-upload",
          po::value(&l.max_prekeys_per_upload)->default_value(l.max_prekeys_per_upload),
          "one-time prekeys per upload (and in registration)")(
          "max-prekeys-stored",
          po::value(&l.max_prekeys_stored)->default_value(l.max_prekeys_stored),
          "one-time prekeys stored per device")(
          "prekey-low-threshold",
          po::value(&l.prekey_low_threshold)->default_value(l.prekey_low_threshold),
          "PreKeysLow is pushed below this many one-time prekeys")(
          "max-ack-sequences", po::value(&l.max_ack_sequences)->default_value(l.max_ack_sequences),
          "sequence numbers per OP_ACK")(
          "max-presence-subscriptions",
          po::value(&l.max_presence_subscriptions)->default_value(l.max_presence_subscriptions),
          "accounts per presence subscription list")(
          "max-unanswered-requests",
          po::value(&l.max_unanswered_requests)->default_value(l.max_unanswered_requests),
          "pipelined requests per connection before the relay stops reading")(
          "max-unacked-envelopes",
          po::value(&l.max_unacked_envelopes)->default_value(l.max_unacked_envelopes),
          "pushed but unacknowledged envelopes per connection")(
          "max-outgoing-bytes",
          po::value(&l.max_outgoing_bytes)->default_value(l.max_outgoing_bytes),
          "unsent data per connection before it is closed with 1008")(
          "envelope-ttl-ms", po::value(&l.envelope_ttl_ms)->default_value(l.envelope_ttl_ms),
          "queued envelopes expire after this")(
          "max-queue-envelopes",
          po::value(&l.max_queue_envelopes)->default_value(l.max_queue_envelopes),
          "envelopes queued per device")(
          "max-queue-bytes", po::value(&l.max_queue_bytes)->default_value(l.max_queue_bytes),
          "ciphertext bytes queued per device")(
          "max-signed-payload-bytes",
          po::value(&l.max_signed_payload_bytes)->default_value(l.max_signed_payload_bytes),
          "registration / link payload")(
          "clock-skew-ms", po::value(&l.clock_skew_ms)->default_value(l.clock_skew_ms),
          "clock skew allowed on signed payloads")(
          "nonce-window-ms", po::value(&l.nonce_window_ms)->default_value(l.nonce_window_ms),
          "how long a registration / link nonce is remembered")(
          "link-lifetime-ms", po::value(&l.link_lifetime_ms)->default_value(l.link_lifetime_ms),
          "link channel lifetime")("max-provision-ciphertext-bytes",
                                   po::value(&l.max_provision_ciphertext_bytes)
                                       ->default_value(l.max_provision_ciphertext_bytes),
                                   "provisioning ciphertext")(
          "attachment-max-bytes",
          po::value(&l.attachment_max_bytes)->default_value(l.attachment_max_bytes),
          "attachment size")(
          "attachment-retention-ms",
          po::value(&l.attachment_retention_ms)->default_value(l.attachment_retention_ms),
          "how long an uploaded attachment stays downloadable")(
          "attachment-slot-ms",
          po::value(&l.attachment_slot_ms)->default_value(l.attachment_slot_ms),
          "how long a reserved slot waits for its upload to start")(
          "unauth-timeout-ms", po::value(&l.unauth_timeout_ms)->default_value(l.unauth_timeout_ms),
          "unauthenticated socket lifetime (unless a link channel is open)")(
          "ping-interval-ms", po::value(&l.ping_interval_ms)->default_value(l.ping_interval_ms),
          "client ping interval announced in ServerInfo")(
          "idle-timeout-ms", po::value(&l.idle_timeout_ms)->default_value(l.idle_timeout_ms),
          "silent connections are dropped after this")(
          "max-push-url-bytes",
          po::value(&l.max_push_url_bytes)->default_value(l.max_push_url_bytes),
          "push endpoint URL length")(
          "write-timeout-ms", po::value(&l.write_timeout_ms)->default_value(l.write_timeout_ms),
          "a connection whose outgoing data makes no progress this long is dropped (slow reader)")(
          "socket-send-buffer-bytes",
          po::value(&l.socket_send_buffer_bytes)->default_value(l.socket_send_buffer_bytes),
          "kernel send buffer of a WebSocket (SO_SNDBUF); 0 = the kernel's autotuning")(
          "http-header-timeout-ms",
          po::value(&l.http_header_timeout_ms)->default_value(l.http_header_timeout_ms),
          "time for a client to send a whole HTTP request header (slowloris guard)");

  std::vector<RateOption> rate_options = {
      {"rate-upgrade-ip", &r.upgrade_ip, "WebSocket upgrades per IP address", {}},
      {"rate-register-ip", &r.register_ip, "OP_REGISTER per IP address", {}},
      {"rate-provision-ip", &r.provision_ip, "OP_PROVISION_OPEN + OP_LINK_DEVICE per IP", {}},
      {"rate-provision-lookup-account",
       &r.provision_lookup_account,
       "OP_PROVISION_LOOKUP + OP_PROVISION_APPROVE per account",
       {}},
      {"rate-lookup-device", &r.lookup_device, "OP_LOOKUP_ACCOUNT per device", {}},
      {"rate-bundles-device", &r.bundles_device, "OP_GET_BUNDLES per device", {}},
      {"rate-bundles-target", &r.bundles_target, "OP_GET_BUNDLES per (device, target account)", {}},
      {"rate-send-device", &r.send_device, "OP_SEND + OP_SEND_MULTI per device", {}},
      {"rate-presence-device", &r.presence_device, "OP_PRESENCE_SUBSCRIBE per device", {}},
      {"rate-attachment-account", &r.attachment_account, "OP_ATTACHMENT_UPLOAD per account", {}},
      {"rate-download-device", &r.download_device, "attachment downloads per device", {}},
      {"rate-frames-connection", &r.frames_connection, "all frames per connection", {}},
  };
  po::options_description rates("Rate limits (RATE/PERIOD[:BURST] or off)");
  rates.add_options()  //
      ("ip-rate-limits", po::value(&r.per_ip)->default_value(r.per_ip),
       "false turns off every per-address limit (upgrades, unauthenticated sockets, "
       "registration, linking): for load tests from one address")(
          "unauth-sockets-ip", po::value(&r.unauth_sockets_ip)->default_value(r.unauth_sockets_ip),
          "concurrent unauthenticated sockets per IP address; 0 = no limit")(
          "attachment-bytes-per-day",
          po::value(&r.attachment_bytes_per_day)->default_value(r.attachment_bytes_per_day),
          "attachment bytes reserved per account per day; 0 = no limit");
  for (auto& o : rate_options) {
    o.text = o.target->to_string();
    rates.add_options()(o.name, po::value(&o.text)->default_value(o.text), o.help);
  }

  po::options_description all;
  all.add(general).add(limits).add(rates);

  po::variables_map vm;
  try {
    po::store(po::parse_command_line(argc, argv, all), vm);
    if (vm.count("config")) {
      std::ifstream in(vm["config"].as<std::string>());
      if (!in)
        return make_error(ErrorCode::kNotFound,
                          "cannot read the config file " + vm["config"].as<std::string>());
      po::store(po::parse_config_file(in, all), vm);
    }
    po::notify(vm);
  } catch (const po::error& e) {
    return make_error(ErrorCode::kInvalidArgument,
                      std::string(e.what()) + " (see sotto-relay --help)");
  }

  if (vm.count("help")) {
    std::ostringstream os;
    os << kUsage << all;
    out.exit_now = true;
    out.output = os.str();
    return out;
  }
  if (vm.count("version")) {
    out.exit_now = true;
    out.output = "sotto-relay 0.1.0\n";
    return out;
  }

  auto colon = listen.rfind(':');
  if (colon == std::string::npos)
    return make_error(ErrorCode::kInvalidArgument, "--listen wants address:port, got " + listen);
  c.listen_host = listen.substr(0, colon);
  if (c.listen_host.size() > 2 && c.listen_host.front() == '[') {
    c.listen_host = c.listen_host.substr(1, c.listen_host.size() - 2);
  }
  try {
    unsigned long port = std::stoul(listen.substr(colon + 1));
    if (port > 65535) throw std::out_of_range("port");
    c.listen_port = static_cast<uint16_t>(port);
  } catch (const std::exception&) {
    return make_error(ErrorCode::kInvalidArgument, "--listen has a bad port: " + listen);
  }
  if (!is_ip_literal(c.listen_host))
    return make_error(ErrorCode::kInvalidArgument,
                      "--listen wants an IP address and a port (127.0.0.1:8080, 0.0.0.0:443, "
                      "[::]:443), got '" + listen + "': names such as localhost are not looked up");
  if (data_dir.empty())
    return make_error(ErrorCode::kInvalidArgument,
                      out.command == ParsedCommandLine::Command::kRestore
                          ? "--data-dir is required: the new data dir to restore into"
                          : "--data-dir is required: where the relay keeps its database");
  if (out.keep_one_time_prekeys && out.command != ParsedCommandLine::Command::kRestore)
    return make_error(ErrorCode::kInvalidArgument,
                      "--keep-one-time-prekeys only goes with restore");
  c.data_dir = data_dir;
  if (!c.store.empty() && !c.store.starts_with("postgresql://") &&
      !c.store.starts_with("postgres://"))
    return make_error(ErrorCode::kInvalidArgument,
                      "--store is a PostgreSQL URL (postgresql://user@host:port/db), got '" +
                          c.store + "'; leave it out for the embedded store");
  if (!c.bus.empty() && c.store.empty())
    return make_error(ErrorCode::kInvalidArgument,
                      "--bus needs --store: the nodes of a cluster share a PostgreSQL store");
  if (!c.bus.empty()) {
    bool ok = !c.node_id.empty() && c.node_id.size() <= 64;
    for (char ch : c.node_id)
      ok = ok && ((ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9') || ch == '-' || ch == '_' ||
                  ch == '.');
    if (!ok)
      return make_error(ErrorCode::kInvalidArgument,
                        "--node-id is required with --bus: 1 to 64 of a-z 0-9 - _ . , unique in "
                        "the cluster and the same across restarts of this node");
  }
  if (c.cluster_claim_ttl_ms < 3000)
    return make_error(ErrorCode::kInvalidArgument, "--cluster-claim-ttl-ms is at least 3000");
  if ((out.command == ParsedCommandLine::Command::kBackup ||
       out.command == ParsedCommandLine::Command::kRestore) &&
      !c.store.empty())
    return make_error(ErrorCode::kInvalidArgument,
                      "backup and restore are for the embedded store; back a PostgreSQL store up "
                      "with pg_dump (docs/operating-the-relay.md)");
  c.port_file = port_file;
  c.tls_cert = tls_cert;
  c.tls_key = tls_key;
  if (tls_cert.empty() != tls_key.empty())
    return make_error(ErrorCode::kInvalidArgument, "--tls-cert and --tls-key go together");
  c.db_key_file = db_key_file;
  if (db_sync != "full" && db_sync != "normal")
    return make_error(ErrorCode::kInvalidArgument, "--db-sync is full or normal, got " + db_sync);
  c.db_sync_full = db_sync == "full";
  if (c.threads == 0) c.threads = std::max(1u, std::thread::hardware_concurrency());
  if (c.metrics_access != "loopback" && c.metrics_access != "open" && c.metrics_access != "token")
    return make_error(ErrorCode::kInvalidArgument,
                      "--metrics-access is loopback, open or token, got " + c.metrics_access);
  if (c.metrics_access == "token" && c.metrics_token.empty())
    return make_error(ErrorCode::kInvalidArgument, "--metrics-access token needs --metrics-token");
  if (c.store_batch_max == 0) c.store_batch_max = 1;
  for (auto& o : rate_options) {
    if (!RateSpec::parse(o.text, *o.target))
      return make_error(
          ErrorCode::kInvalidArgument,
          std::string("--") + o.name + " wants RATE/PERIOD[:BURST] or off, got " + o.text);
  }
  if (l.max_envelope_bytes + 1024 > l.max_frame_bytes && l.max_frame_bytes > 1024)
    l.max_envelope_bytes = std::min(l.max_envelope_bytes, l.max_frame_bytes - 1024);
  return out;
}

}  // namespace sotto::relay
