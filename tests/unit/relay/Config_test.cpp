#include "Config.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>

namespace sotto::relay {
namespace {

Result<ParsedCommandLine> parse(const std::vector<std::string>& args) {
  std::vector<const char*> argv = {"sotto-relay"};
  for (const auto& a : args) argv.push_back(a.c_str());
  return parse_command_line(static_cast<int>(argv.size()), argv.data());
}

TEST(Config, DefaultsAreTheSpecsLimits) {
  auto r = parse({"--data-dir", "/tmp/x"});
  ASSERT_TRUE(r.ok()) << r.error().message;
  const Config& c = r->config;
  EXPECT_EQ(c.listen_host, "127.0.0.1");
  EXPECT_EQ(c.listen_port, 8080);
  EXPECT_EQ(c.limits.max_frame_bytes, 262'144u);
  EXPECT_EQ(c.limits.max_envelope_bytes, 261'120u);
  EXPECT_EQ(c.limits.max_devices_per_account, 6u);
  EXPECT_EQ(c.limits.envelope_ttl_ms, 30ull * 86'400'000);
  EXPECT_EQ(c.limits.attachment_max_bytes, 100ull << 20);
  EXPECT_EQ(c.rates.send_device.rate, 30);
  EXPECT_EQ(c.rates.send_device.burst, 300);
  EXPECT_EQ(c.rates.register_ip.period_ms, 3'600'000u);
  EXPECT_TRUE(c.rates.per_ip);
  EXPECT_GE(c.threads, 1u);
}

TEST(Config, FlagsAndConfigFileWithFlagsWinning) {
  auto path =
      std::filesystem::temp_directory_path() / ("sotto-relay-conf-" + std::to_string(::getpid()));
  {
    std::ofstream f(path);
    f << "# comment\ndata-dir = /var/lib/sotto\nlisten = 0.0.0.0:443\n"
         "max-devices-per-account = 4\nrate-send-device = 10/1s:20\nreserved-handle = admin\n"
         "reserved-handle = support\n";
  }
  auto r = parse(
      {"--config", path.string(), "--max-devices-per-account", "8", "--ip-rate-limits", "false"});
  std::filesystem::remove(path);
  ASSERT_TRUE(r.ok()) << r.error().message;
  const Config& c = r->config;
  EXPECT_EQ(c.data_dir, "/var/lib/sotto");
  EXPECT_EQ(c.listen_host, "0.0.0.0");
  EXPECT_EQ(c.listen_port, 443);
  EXPECT_EQ(c.limits.max_devices_per_account, 8u);
  EXPECT_EQ(c.rates.send_device.rate, 10);
  EXPECT_EQ(c.rates.send_device.burst, 20);
  EXPECT_FALSE(c.rates.per_ip);
  EXPECT_EQ(c.reserved_handles, (std::vector<std::string>{"admin", "support"}));
}

TEST(Config, MistakesAreNamed) {
  auto no_dir = parse({});
  ASSERT_FALSE(no_dir.ok());
  EXPECT_NE(no_dir.error().message.find("--data-dir"), std::string::npos);
  auto bad_rate = parse({"--data-dir", "/x", "--rate-send-device", "fast"});
  ASSERT_FALSE(bad_rate.ok());
  EXPECT_NE(bad_rate.error().message.find("rate-send-device"), std::string::npos);
  EXPECT_FALSE(parse({"--data-dir", "/x", "--listen", "nowhere"}).ok());
  EXPECT_FALSE(parse({"--data-dir", "/x", "--listen", "1.2.3.4:99999"}).ok());
  EXPECT_FALSE(parse({"--data-dir", "/x", "--tls-cert", "c.pem"}).ok());
  EXPECT_FALSE(parse({"--data-dir", "/x", "--metrics-access", "token"}).ok());
  EXPECT_FALSE(parse({"--data-dir", "/x", "--bogus"}).ok());
  EXPECT_FALSE(parse({"--data-dir", "/x", "--max-frame-bytes", "lots"}).ok());
  EXPECT_FALSE(parse({"--config", "/nonexistent/relay.conf"}).ok());
}

TEST(Config, HelpPrintsEveryOption) {
  auto r = parse({"--help"});
  ASSERT_TRUE(r.ok());
  EXPECT_TRUE(r->exit_now);
  for (const char* o : {"--data-dir", "--max-queue-envelopes", "--rate-bundles-target",
                        "--unauth-timeout-ms", "--push-allow-private", "--attachment-slot-ms"})
    EXPECT_NE(r->output.find(o), std::string::npos) << o;
}

TEST(Config, BackupAndRestoreTakeTheirPathFirstAndTheServersOptions) {
  using Command = ParsedCommandLine::Command;
  auto serve = parse({"--data-dir", "/d"});
  ASSERT_TRUE(serve.ok());
  EXPECT_EQ(serve->command, Command::kServe);

  auto backup = parse({"backup", "/b/new", "--data-dir", "/d", "--db-key-file", "/k"});
  ASSERT_TRUE(backup.ok()) << backup.error().message;
  EXPECT_EQ(backup->command, Command::kBackup);
  EXPECT_EQ(backup->command_path, "/b/new");
  EXPECT_EQ(backup->config.data_dir, "/d");
  EXPECT_EQ(backup->config.db_key_file, "/k");
  EXPECT_FALSE(backup->keep_one_time_prekeys);

  auto restore = parse({"restore", "/b/old", "--data-dir", "/n", "--keep-one-time-prekeys"});
  ASSERT_TRUE(restore.ok()) << restore.error().message;
  EXPECT_EQ(restore->command, Command::kRestore);
  EXPECT_EQ(restore->command_path, "/b/old");
  EXPECT_TRUE(restore->keep_one_time_prekeys);

  auto no_path = parse({"backup", "--data-dir", "/d"});
  ASSERT_FALSE(no_path.ok());
  EXPECT_NE(no_path.error().message.find("backup DEST"), std::string::npos);
  auto no_dir = parse({"restore", "/b/old"});
  ASSERT_FALSE(no_dir.ok());
  EXPECT_NE(no_dir.error().message.find("restore into"), std::string::npos);
  EXPECT_FALSE(parse({"--data-dir", "/d", "--keep-one-time-prekeys"}).ok())
      << "keeping prekeys means something to restore only";
}

}  // namespace
}  // namespace sotto::relay
