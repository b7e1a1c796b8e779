// crypto_bench: what the crypto core costs.
//   1:1 encrypt+decrypt messages/s, alternating directions and one direction, with the
//   profile's SQLCipher stores (one commit per message, and commits batched) against
//   in-memory stores (the library's own limit); Sender Key encrypt and decrypt per second;
//   attachment encryption and decryption in MiB/s; profile open time with a passphrase and
//   with an app key.
//
// Throughput figures are the best of three runs.
//
// usage: crypto_bench [--messages N] [--batch N] [--quick]
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "BenchCommon.h"
#include "AttachmentCipher.h"
#include "MemoryProtocolStore.h"
#include "SessionCrypto.h"
#include "sotto/Profile.h"

namespace {
using namespace sotto;
namespace fs = std::filesystem;
using bench::Steady;

using bench::check;
using bench::die;
using bench::seconds_since;

// The two sides of a conversation, behind one interface for both store kinds.
struct Side {
  std::function<Result<Ciphertext>(const Address&, ByteView)> encrypt;
  std::function<Result<Bytes>(const Address&, const Ciphertext&)> decrypt;
  std::function<Status(const std::function<Status()>&)> transaction;
  Address address;
};

const std::string kText(120, 'm');  // a typical chat line, one padding block

// Runs `messages` messages between a and b, committing every `batch` messages (1 = every
// message its own commit). Returns messages per second.
double run_pairwise_once(Side& a, Side& b, int messages, int batch, bool alternate) {
  auto t0 = Steady::now();
  int sent = 0;
  while (sent < messages) {
    int n = std::min(batch, messages - sent);
    std::vector<Ciphertext> wire;
    // Each device batches its own commits; what crosses between them is only ciphertext.
    auto round = [&]() -> Status {
      for (int i = 0; i < n; ++i) {
        bool from_a = !alternate || (sent + i) % 2 == 0;
        Side& from = from_a ? a : b;
        Side& to = from_a ? b : a;
        SOTTO_TRY_ASSIGN(auto ct, from.encrypt(to.address, as_bytes(kText)));
        SOTTO_TRY_ASSIGN(auto pt, to.decrypt(from.address, ct));
        if (pt.size() != kText.size())
          return make_error(ErrorCode::kInternal, "round trip changed the text");
      }
      return {};
    };
    if (batch == 1) {
      check(round(), "message");
    } else {
      check(a.transaction([&] { return b.transaction(round); }), "batch");
    }
    sent += n;
  }
  return messages / seconds_since(t0);
}

// Best of three runs: the machine's other load only ever makes a run slower.
double run_pairwise(Side& a, Side& b, int messages, int batch, bool alternate, int runs = 3) {
  double best = 0;
  for (int i = 0; i < runs; ++i)
    best = std::max(best, run_pairwise_once(a, b, messages, batch, alternate));
  return best;
}

struct MemoryPeer {
  MemoryProtocolStore store;
  std::unique_ptr<SessionCrypto> crypto;
  Side side;
  MemoryPeer(std::shared_ptr<keys::Context> ctx, const std::string& name) {
    crypto = check(SessionCrypto::create(ctx, store), "memory store");
    check(crypto->create_identity(name, 1, 10), "identity");
    side.address = {name, 1};
    side.encrypt = [this](const Address& p, ByteView t) { return crypto->encrypt(p, t); };
    side.decrypt = [this](const Address& p, const Ciphertext& c) { return crypto->decrypt(p, c); };
    side.transaction = [this](const std::function<Status()>& f) { return crypto->transaction(f); };
  }
};

struct DiskPeer {
  fs::path dir;
  std::unique_ptr<Profile> profile;
  Side side;
  DiskPeer(const fs::path& root, const std::string& name) : dir(root / name) {
    SecureBytes key(32);
    key.data()[0] = static_cast<uint8_t>(name[0]);
    ProfileOptions o;
    o.initial_prekeys = 10;
    profile = check(Profile::open_with_key(dir, key, o), "open " + name);
    check(profile->create_identity(name, 1), "identity");
    side.address = {name, 1};
    side.encrypt = [this](const Address& p, ByteView t) { return profile->encrypt(p, t); };
    side.decrypt = [this](const Address& p, const Ciphertext& c) { return profile->decrypt(p, c); };
    side.transaction = [this](const std::function<Status()>& f) { return profile->transaction(f); };
  }
};

}  // namespace

int main(int argc, char** argv) {
  // One direction runs at tens of thousands a second: 2,000 took well under a second and
  // moved by a factor of two between runs.
  int messages = 20000, batch = 100;
  bool quick = false;
  for (int i = 1; i < argc; ++i) {
    std::string arg = argv[i];
    if (arg == "--messages" && i + 1 < argc)
      messages = std::atoi(argv[++i]);
    else if (arg == "--batch" && i + 1 < argc)
      batch = std::atoi(argv[++i]);
    else if (arg == "--quick")
      quick = true;
    else {
      std::fprintf(stderr, "usage: crypto_bench [--messages N] [--batch N] [--quick]\n");
      return 2;
    }
  }
  if (messages < 2 || batch < 1) {
    std::fprintf(stderr, "crypto_bench: --messages must be >= 2 and --batch >= 1\n");
    return 2;
  }
  fs::path root = fs::temp_directory_path() / ("sotto-crypto-bench-" + std::to_string(::getpid()));
  fs::create_directories(root);

  auto ctx = check(keys::Context::create(), "context");
  std::printf("sotto crypto_bench: %d messages of %zu bytes per run, batch %d\n\n", messages,
              kText.size(), batch);
  std::printf("%-52s %14s\n", "1:1 encrypt+decrypt", "messages/s");

  auto memory_pair = [&](const char* tag) {
    auto a = std::make_unique<MemoryPeer>(ctx, std::string("alice") + tag);
    auto b = std::make_unique<MemoryPeer>(ctx, std::string("bob") + tag);
    check(a->crypto->start_session(b->side.address, check(b->crypto->issue_bundle(), "bundle")),
          "session");
    run_pairwise(a->side, b->side, 4, 1, true, 1);
    return std::make_pair(std::move(a), std::move(b));
  };
  auto disk_pair = [&](const char* tag) {
    auto a = std::make_unique<DiskPeer>(root, std::string("alice") + tag);
    auto b = std::make_unique<DiskPeer>(root, std::string("bob") + tag);
    check(a->profile->start_session(b->side.address, check(b->profile->issue_bundle(), "bundle")),
          "session");
    run_pairwise(a->side, b->side, 4, 1, true, 1);
    return std::make_pair(std::move(a), std::move(b));
  };

  // Each comparison runs on fresh pairs, the in-memory and the persistent run interleaved, so
  // neither side inherits the other's history or gets the machine at a quieter moment.
  int counter = 0;
  for (bool alternate : {true, false}) {
    const char* mode = alternate ? "alternating" : "one direction";
    std::string tag = "-" + std::to_string(counter++);
    auto [ma, mb] = memory_pair(tag.c_str());
    auto [da, db] = disk_pair(tag.c_str());
    double mem = 0, disk = 0;
    for (int r = 0; r < 3; ++r) {
      mem = std::max(mem, run_pairwise(ma->side, mb->side, messages, 1, alternate, 1));
      disk = std::max(disk, run_pairwise(da->side, db->side, messages, batch, alternate, 1));
    }
    std::printf("%-52s %14.0f\n", (std::string("in-memory stores, ") + mode).c_str(), mem);
    std::printf("%-52s %14.0f\n",
                ("SQLCipher, commits of " + std::to_string(batch) + ", " + mode).c_str(), disk);
    std::printf("%-52s %13.0f%%\n", (std::string("persistent / in-memory, ") + mode).c_str(),
                100.0 * disk / mem);
  }
  {
    std::string tag = "-" + std::to_string(counter++);
    auto [a, b] = disk_pair(tag.c_str());
    int n = quick ? messages : std::max(2, messages / 10);
    double r = run_pairwise(a->side, b->side, n, 1, true, 1);
    std::printf("%-52s %14.0f\n", "SQLCipher, one synced commit per message, alternating", r);
    r = run_pairwise(a->side, b->side, n, 1, false, 1);
    std::printf("%-52s %14.0f\n\n", "SQLCipher, one synced commit per message, one direction", r);
  }

  // Sender Keys: one sender, one receiver, encrypt and decrypt timed apart.
  std::printf("%-52s %14s\n", "Sender Key", "operations/s");
  const Bytes group = {1, 2, 3, 4};
  auto sender_keys = [&](auto& a, auto& b, auto& sender_api, auto& receiver_api,
                         const char* label) {
    check(receiver_api.group_process_sender_key(group, a->side.address,
                                                check(sender_api.group_sender_key(group), "skdm")),
          "process");
    std::vector<Bytes> cts;
    auto t0 = Steady::now();
    check(sender_api.transaction([&]() -> Status {
      for (int i = 0; i < messages; ++i) {
        SOTTO_TRY_ASSIGN(auto ct, sender_api.group_encrypt(group, as_bytes(kText)));
        cts.push_back(std::move(ct));
      }
      return {};
    }),
          "group encrypt");
    double enc = messages / seconds_since(t0);
    t0 = Steady::now();
    check(receiver_api.transaction([&]() -> Status {
      for (const auto& ct : cts) SOTTO_TRY(receiver_api.group_decrypt(group, a->side.address, ct));
      return {};
    }),
          "group decrypt");
    double dec = messages / seconds_since(t0);
    std::printf("%-52s %14.0f\n", (std::string(label) + ", encrypt").c_str(), enc);
    std::printf("%-52s %14.0f\n", (std::string(label) + ", decrypt").c_str(), dec);
    (void)b;
  };
  {
    auto [a, b] = memory_pair("-sk");
    sender_keys(a, b, *a->crypto, *b->crypto, "in-memory stores");
  }
  {
    auto [a, b] = disk_pair("-sk");
    sender_keys(a, b, *a->profile, *b->profile, "SQLCipher, one commit per run");
  }

  // Attachments: secretstream in 64 KiB chunks, file to file, digest checked before decrypting.
  {
    const uint64_t mib = quick ? 2 : 64;
    fs::path plain = root / "attachment", blob = root / "attachment.blob",
             back = root / "attachment.out";
    {
      std::FILE* f = std::fopen(plain.c_str(), "wb");
      std::vector<uint8_t> block(1 << 20);
      for (size_t i = 0; i < block.size(); ++i) block[i] = static_cast<uint8_t>(i * 131);
      for (uint64_t i = 0; i < mib; ++i) std::fwrite(block.data(), 1, block.size(), f);
      std::fclose(f);
    }
    auto t0 = Steady::now();
    auto secrets = check(encrypt_attachment(plain, blob), "attachment encrypt");
    double enc = mib / seconds_since(t0);
    t0 = Steady::now();
    check(decrypt_attachment(blob, back, secrets.key, secrets.digest, secrets.size),
          "attachment decrypt");
    double dec = mib / seconds_since(t0);
    std::printf("\n%-52s %14s\n", ("attachment, " + std::to_string(mib) + " MiB file").c_str(),
                "MiB/s");
    std::printf("%-52s %14.0f\n", "encrypt (read, seal, hash, write, fsync)", enc);
    std::printf("%-52s %14.0f\n", "decrypt (hash pass, then open and write, fsync)", dec);
  }

  // Profile open: the passphrase path pays Argon2id once per open; the key path does not.
  std::printf("\n%-52s %14s\n", "profile open (existing profile)", "ms");
  {
    fs::path dir = root / "open-pass";
    auto pass = SecureBytes::from_string("a passphrase of usual length");
    { check(Profile::open(dir, pass), "create"); }
    int runs = quick ? 1 : 5;
    auto t0 = Steady::now();
    for (int i = 0; i < runs; ++i) check(Profile::open(dir, pass), "open");
    std::printf("%-52s %14.1f\n", "passphrase (Argon2id, interactive)",
                1000 * seconds_since(t0) / runs);
    fs::path kdir = root / "open-key";
    SecureBytes key(32);
    { check(Profile::open_with_key(kdir, key), "create"); }
    runs = quick ? 1 : 50;
    t0 = Steady::now();
    for (int i = 0; i < runs; ++i) check(Profile::open_with_key(kdir, key), "open");
    std::printf("%-52s %14.1f\n", "app-supplied 32-byte key", 1000 * seconds_since(t0) / runs);
  }
  std::error_code ec;
  fs::remove_all(root, ec);
  return 0;
}
