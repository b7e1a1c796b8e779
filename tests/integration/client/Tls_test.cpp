// The relay with a certificate: clients on wss:// and https:// exchange messages and a file.
// The certificate is made here (self-signed, for 127.0.0.1) and trusted through
// SSL_CERT_FILE, which OpenSSL's default verify paths read, as an operator's own CA would be.
// A raw Beast client checks how the relay ends TLS connections.
#include <gtest/gtest.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>
#include <sodium.h>
#include <stdlib.h>

#include <boost/asio/ssl.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/ssl.hpp>
#include <boost/beast/websocket.hpp>
#include <boost/beast/websocket/ssl.hpp>
#include <cstdio>
#include <fstream>

#include "ClientHarness.h"

namespace sotto::test {
namespace {

namespace fs = std::filesystem;

// Which certificates OpenSSL's default verify paths trust, for this process.
void trust(const fs::path& pem) {
#ifdef _WIN32
  _putenv_s("SSL_CERT_FILE", pem.string().c_str());
#else
  ::setenv("SSL_CERT_FILE", pem.c_str(), 1);
#endif
}

// Writes a self-signed P-256 certificate for IP 127.0.0.1, valid from an hour ago for
// `valid_s`, and its key as PEM files.
bool make_certificate(const fs::path& cert_path, const fs::path& key_path, long valid_s = 24 * 3600,
                      const char* common_name = "127.0.0.1") {
  EVP_PKEY* key = EVP_EC_gen("P-256");
  X509* cert = X509_new();
  bool ok = key && cert;
  if (ok) {
    X509_set_version(cert, 2);
    ASN1_INTEGER_set(X509_get_serialNumber(cert), 1);
    X509_gmtime_adj(X509_getm_notBefore(cert), -3600);
    X509_gmtime_adj(X509_getm_notAfter(cert), valid_s);
    X509_NAME* name = X509_get_subject_name(cert);
    X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC,
                               reinterpret_cast<const unsigned char*>(common_name), -1, -1, 0);
    X509_set_issuer_name(cert, name);
    X509_set_pubkey(cert, key);
    X509V3_CTX ctx;
    X509V3_set_ctx_nodb(&ctx);
    X509V3_set_ctx(&ctx, cert, cert, nullptr, nullptr, 0);
    X509_EXTENSION* san = X509V3_EXT_conf_nid(nullptr, &ctx, NID_subject_alt_name, "IP:127.0.0.1");
    ok = san && X509_add_ext(cert, san, -1) == 1;
    X509_EXTENSION_free(san);
    ok = ok && X509_sign(cert, key, EVP_sha256()) > 0;
  }
  if (ok) {
    FILE* c = std::fopen(cert_path.string().c_str(), "w");
    FILE* k = std::fopen(key_path.string().c_str(), "w");
    ok = c && k && PEM_write_X509(c, cert) == 1 &&
         PEM_write_PrivateKey(k, key, nullptr, nullptr, 0, nullptr, nullptr) == 1;
    if (c) std::fclose(c);
    if (k) std::fclose(k);
  }
  X509_free(cert);
  EVP_PKEY_free(key);
  return ok;
}

// The certificate's expiry in Unix seconds, as the relay's metric gives it.
int64_t not_after(const fs::path& cert_path) {
  FILE* f = std::fopen(cert_path.string().c_str(), "r");
  if (!f) return -1;
  X509* cert = PEM_read_X509(f, nullptr, nullptr, nullptr);
  std::fclose(f);
  std::tm tm{};
  bool ok = cert && ASN1_TIME_to_tm(X509_get0_notAfter(cert), &tm) == 1;
  X509_free(cert);
#ifdef _WIN32
  return ok ? static_cast<int64_t>(_mkgmtime(&tm)) : -1;
#else
  return ok ? static_cast<int64_t>(timegm(&tm)) : -1;
#endif
}

TEST(Tls, MessagesAndAFileOverWssAndHttps) {
  TempDir certs;
  ASSERT_TRUE(make_certificate(certs / "relay.pem", certs / "relay.key"));
  trust(certs / "relay.pem");
  RelayProcess::Options o;
  o.extra_args = {"--tls-cert", (certs / "relay.pem").string(), "--tls-key",
                  (certs / "relay.key").string()};
  RelayProcess relay(o);
  ASSERT_EQ(relay.ws_url().rfind("wss://", 0), 0u) << relay.ws_url();
  TestClient alice(relay, "alice"), bob(relay, "bob");
  alice.register_account();
  bob.register_account();
  ConversationId ab = alice.conversation_with(bob);

  // Enough messages at once that the relay reads several frames per TLS record and writes
  // several per system call.
  constexpr int kCount = 60;
  for (int i = 0; i < kCount; ++i)
    ASSERT_TRUE(alice->send_text(ab, "over tls " + std::to_string(i)).ok());
  ASSERT_TRUE(eventually([&] { return bob.events().texts().size() == kCount; }));
  for (int i = 0; i < kCount; ++i)
    EXPECT_EQ(bob.events().texts()[static_cast<size_t>(i)], "over tls " + std::to_string(i));
  ConversationId ba = bob->conversations().value().at(0).id;
  ASSERT_TRUE(bob->send_text(ba, "and back").ok());
  ASSERT_TRUE(eventually([&] { return alice.events().texts().size() == 1; }));

  TempDir files;
  Bytes content(300'000);
  randombytes_buf(content.data(), content.size());
  std::ofstream(files / "notes.bin", std::ios::binary)
      .write(reinterpret_cast<const char*>(content.data()),
             static_cast<std::streamsize>(content.size()));
  ASSERT_TRUE(alice->send_file(ab, files / "notes.bin").ok());
  std::optional<Message> got;
  ASSERT_TRUE(eventually([&] {
    for (auto& m : bob.events().messages())
      if (!m.outgoing && !m.attachments.empty()) got = m;
    return got.has_value();
  }));
  auto downloaded = bob->download_attachment(got->conversation, got->id, 0, nullptr);
  ASSERT_TRUE(downloaded.ok()) << downloaded.error().message;
  auto read = bob->read_attachment(got->conversation, got->id, 0);
  ASSERT_TRUE(read.ok()) << read.error().message;
  EXPECT_EQ(*read, content);
}

TEST(Tls, AnUntrustedCertificateFailsRegistrationWithAClearError) {
  TempDir certs;
  ASSERT_TRUE(make_certificate(certs / "relay.pem", certs / "relay.key"));
  ASSERT_TRUE(make_certificate(certs / "other.pem", certs / "other.key"));
  trust(certs / "other.pem");  // trusts another certificate
  RelayProcess::Options o;
  o.extra_args = {"--tls-cert", (certs / "relay.pem").string(), "--tls-key",
                  (certs / "relay.key").string()};
  RelayProcess relay(o);
  TestClient alice(relay, "alice");
  auto r = alice->register_account("alice_untrusted");
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.error().message.find("certificate"), std::string::npos) << r.error().message;
}

// A TLS peer tells an orderly end from a cut connection by close_notify. The relay sends it
// after the WebSocket closing handshake, whoever began it, and after an HTTP response that
// ends the connection; without it the client's TLS layer reports a truncated stream.
TEST(Tls, TheRelayEndsConnectionsWithCloseNotify) {
  namespace asio = boost::asio;
  namespace beast = boost::beast;
  namespace ssl = asio::ssl;
  using tcp = asio::ip::tcp;
  TempDir certs;
  ASSERT_TRUE(make_certificate(certs / "relay.pem", certs / "relay.key"));
  RelayProcess::Options o;
  o.extra_args = {"--tls-cert", (certs / "relay.pem").string(), "--tls-key",
                  (certs / "relay.key").string()};
  RelayProcess relay(o);
  asio::io_context ioc;
  ssl::context ctx(ssl::context::tls_client);
  ctx.load_verify_file((certs / "relay.pem").string());
  ctx.set_verify_mode(ssl::verify_peer);
  const tcp::endpoint at(asio::ip::make_address("127.0.0.1"), relay.port());
  using Tls = beast::ssl_stream<tcp::socket>;
  auto connect = [&](Tls& s) {
    beast::get_lowest_layer(s).connect(at);
    s.handshake(ssl::stream_base::client);
  };

  {  // HTTPS: a response with Connection: close, then close_notify (read as end of stream).
    Tls s(ioc, ctx);
    connect(s);
    beast::http::request<beast::http::empty_body> req{beast::http::verb::get, "/healthz", 11};
    req.set(beast::http::field::host, "127.0.0.1");
    req.keep_alive(false);
    beast::http::write(s, req);
    beast::flat_buffer buf;
    beast::http::response<beast::http::string_body> res;
    beast::http::read(s, buf, res);
    EXPECT_EQ(res.result(), beast::http::status::ok);
    char byte;
    beast::error_code ec;
    s.read_some(asio::buffer(&byte, 1), ec);
    EXPECT_EQ(ec, asio::error::eof) << ec.message();
  }
  {  // The client closes the WebSocket: the TLS shutdown after the close frames succeeds.
    beast::websocket::stream<Tls> ws(ioc, ctx);
    connect(ws.next_layer());
    ws.handshake("127.0.0.1", "/v1/ws");
    beast::error_code ec;
    ws.close(beast::websocket::close_code::normal, ec);
    EXPECT_FALSE(ec) << ec.message();
  }
  {  // The relay closes it (1001 on SIGTERM): the read ends with "closed", not a truncation.
    beast::websocket::stream<Tls> ws(ioc, ctx);
    connect(ws.next_layer());
    ws.handshake("127.0.0.1", "/v1/ws");
    relay.signal(spawn::kTerm);
    beast::flat_buffer buf;
    beast::error_code ec;
    ws.read(buf, ec);
    EXPECT_EQ(ec, beast::websocket::error::closed) << ec.message();
    EXPECT_EQ(ws.reason().code, beast::websocket::close_code::going_away);
    EXPECT_EQ(relay.await_exit(), 0);
  }
}

// After a renewal the operator sends SIGHUP: new connections get the files' certificate and key,
// open ones keep theirs, and a pair that does not match is refused with the old one still
// served.
TEST(Tls, SighupServesARenewedCertificateToNewConnections) {
  namespace asio = boost::asio;
  namespace beast = boost::beast;
  namespace ssl = asio::ssl;
  namespace http = beast::http;
  using tcp = asio::ip::tcp;
  using Tls = beast::ssl_stream<tcp::socket>;
  TempDir certs;
  ASSERT_TRUE(make_certificate(certs / "old.pem", certs / "old.key"));
  // Renewed: a new key, a longer life, and a name of its own.
  ASSERT_TRUE(make_certificate(certs / "new.pem", certs / "new.key", 90 * 24 * 3600, "relay 2"));
  auto install = [&](const char* cert, const char* key) {
    // Removed first: MinGW's copy_file() refuses overwrite_existing.
    for (const char* name : {"relay.pem", "relay.key"}) fs::remove(certs / name);
    fs::copy_file(certs / cert, certs / "relay.pem");
    fs::copy_file(certs / key, certs / "relay.key");
  };
  install("old.pem", "old.key");
  {
    std::ofstream both(certs / "both.pem", std::ios::binary);  // the SDK clients trust either
    both << std::ifstream(certs / "old.pem", std::ios::binary).rdbuf()
         << std::ifstream(certs / "new.pem", std::ios::binary).rdbuf();
  }
  trust(certs / "both.pem");
  RelayProcess::Options o;
  o.extra_args = {"--tls-cert", (certs / "relay.pem").string(), "--tls-key",
                  (certs / "relay.key").string()};
  RelayProcess relay(o);
  TestClient alice(relay, "alice"), bob(relay, "bob");
  alice.register_account();
  bob.register_account();
  ConversationId ab = alice.conversation_with(bob);
  ASSERT_TRUE(alice->send_text(ab, "before the renewal").ok());
  ASSERT_TRUE(eventually([&] { return bob.events().texts().size() == 1; }));

  asio::io_context ioc;
  const tcp::endpoint at(asio::ip::make_address("127.0.0.1"), relay.port());
  // A TLS connection that trusts only `ca`: open when the relay serves that certificate.
  auto open = [&](const char* ca, ssl::context& ctx) -> std::unique_ptr<Tls> {
    ctx.load_verify_file((certs / ca).string());
    ctx.set_verify_mode(ssl::verify_peer);
    auto s = std::make_unique<Tls>(ioc, ctx);
    beast::error_code ec;
    beast::get_lowest_layer(*s).connect(at, ec);
    if (!ec) s->handshake(ssl::stream_base::client, ec);
    if (ec) return nullptr;
    return s;
  };
  auto serves = [&](const char* ca) {
    ssl::context ctx(ssl::context::tls_client);
    return open(ca, ctx) != nullptr;
  };
  auto get = [&](Tls& s, const char* path) -> std::optional<std::string> {
    http::request<http::empty_body> req{http::verb::get, path, 11};
    req.set(http::field::host, "127.0.0.1");
    beast::error_code ec;
    http::write(s, req, ec);
    beast::flat_buffer buf;
    http::response<http::string_body> res;
    if (!ec) http::read(s, buf, res, ec);
    if (ec || res.result() != http::status::ok) return std::nullopt;
    return res.body();
  };
  // A metric's value line, as /metrics gives it to a connection trusting `ca`.
  auto metric = [&](const char* ca, const std::string& name) -> std::string {
    ssl::context ctx(ssl::context::tls_client);
    auto s = open(ca, ctx);
    auto text = s ? get(*s, "/metrics") : std::nullopt;
    if (!text) return "(no /metrics)";
    size_t from = text->find("\n" + name + " ");
    if (from == std::string::npos) return "(no " + name + ")";
    return text->substr(from + 1, text->find('\n', from + 1) - from - 1);
  };
  const std::string kExpiry = "sotto_tls_certificate_not_after_seconds";
  auto log_count = [&](const std::string& event) {
    std::string log = relay.log();
    size_t n = 0;
    for (size_t i = log.find(event); i != std::string::npos; i = log.find(event, i + 1)) ++n;
    return n;
  };
  EXPECT_TRUE(serves("old.pem"));
  EXPECT_FALSE(serves("new.pem"));
  EXPECT_EQ(metric("old.pem", kExpiry),
            kExpiry + " " + std::to_string(not_after(certs / "old.pem")));

  // The new certificate with the old key: refused, and the old pair still served.
  install("new.pem", "old.key");
  relay.signal(spawn::kHup);
  ASSERT_TRUE(eventually([&] { return log_count("event=tls_reload_failed") == 1; })) << relay.log();
  EXPECT_NE(relay.log().find("private key"), std::string::npos) << relay.log();
  EXPECT_TRUE(serves("old.pem"));
  EXPECT_EQ(metric("old.pem", "sotto_tls_reload_failures_total"),
            "sotto_tls_reload_failures_total 1");

  // The matching pair: new connections get it; an HTTPS connection opened before keeps going.
  ssl::context before_ctx(ssl::context::tls_client);
  auto before = open("old.pem", before_ctx);
  ASSERT_TRUE(before);
  ASSERT_TRUE(get(*before, "/healthz"));
  install("new.pem", "new.key");
  relay.signal(spawn::kHup);
  ASSERT_TRUE(eventually([&] { return log_count("event=tls_reloaded") == 1; })) << relay.log();
  EXPECT_TRUE(serves("new.pem"));
  EXPECT_FALSE(serves("old.pem"));
  EXPECT_TRUE(get(*before, "/healthz"));
  EXPECT_EQ(metric("new.pem", kExpiry),
            kExpiry + " " + std::to_string(not_after(certs / "new.pem")));

  // The Clients' sockets were never dropped; messages keep flowing both ways.
  ASSERT_TRUE(alice->send_text(ab, "after the renewal").ok());
  ASSERT_TRUE(eventually([&] { return bob.events().texts().size() == 2; }));
  ConversationId ba = bob->conversations().value().at(0).id;
  ASSERT_TRUE(bob->send_text(ba, "got it").ok());
  ASSERT_TRUE(eventually([&] { return alice.events().texts().size() == 1; }));
  EXPECT_EQ(relay.terminate(), 0);
}

}  // namespace
}  // namespace sotto::test
