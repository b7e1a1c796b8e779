#include "KeyFile.h"

#include <sodium.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <sstream>

#include "platform/Platform.h"

namespace sotto {
namespace {

constexpr std::string_view kMagic = "sotto-profile-kdf 1";

Error io_error(const std::filesystem::path& path, std::string_view what) {
  int err = errno;
  return make_error(err == ENOSPC ? ErrorCode::kStorageFull : ErrorCode::kStorageIo,
                    std::string(what) + " " + path.string() + ": " + std::strerror(err));
}

}  // namespace

KdfParams KdfParams::fresh(KdfStrength strength) {
  KdfParams p;
  switch (strength) {
    case KdfStrength::kInteractive:
      p.opslimit = crypto_pwhash_OPSLIMIT_INTERACTIVE;
      p.memlimit = crypto_pwhash_MEMLIMIT_INTERACTIVE;
      break;
    case KdfStrength::kModerate:
      p.opslimit = crypto_pwhash_OPSLIMIT_MODERATE;
      p.memlimit = crypto_pwhash_MEMLIMIT_MODERATE;
      break;
    case KdfStrength::kSensitive:
      p.opslimit = crypto_pwhash_OPSLIMIT_SENSITIVE;
      p.memlimit = crypto_pwhash_MEMLIMIT_SENSITIVE;
      break;
  }
  p.salt.resize(crypto_pwhash_SALTBYTES);
  randombytes_buf(p.salt.data(), p.salt.size());
  return p;
}

Result<std::optional<KdfParams>> read_kdf_file(const std::filesystem::path& path) {
  std::error_code ec;
  if (!std::filesystem::exists(path, ec)) return std::optional<KdfParams>();
  std::ifstream in(path);
  if (!in) return io_error(path, "cannot read");
  std::string magic, kind;
  std::getline(in, magic);
  in >> kind;
  auto corrupt = [&](std::string_view why) {
    return make_error(ErrorCode::kStorageCorrupt,
                      path.string() + " is damaged (" + std::string(why) +
                          "); restore it from a backup of the profile directory");
  };
  if (magic != kMagic) return corrupt("unknown header");
  KdfParams p;
  if (kind == "raw") {
    p.raw = true;
    return std::optional<KdfParams>(std::move(p));
  }
  std::string salt_hex;
  if (kind != "argon2id13" || !(in >> p.opslimit >> p.memlimit >> salt_hex))
    return corrupt("unknown key derivation");
  if (!from_hex(salt_hex, p.salt) || p.salt.size() != crypto_pwhash_SALTBYTES)
    return corrupt("bad salt");
  if (p.opslimit < crypto_pwhash_OPSLIMIT_MIN || p.memlimit < crypto_pwhash_MEMLIMIT_MIN)
    return corrupt("parameters below the minimum");
  return std::optional<KdfParams>(std::move(p));
}

Status write_kdf_file(const std::filesystem::path& path, const KdfParams& p) {
  std::ostringstream text;
  text << kMagic << '\n';
  if (p.raw)
    text << "raw\n";
  else
    text << "argon2id13 " << p.opslimit << ' ' << p.memlimit << ' ' << to_hex(p.salt) << '\n';
  std::string body = text.str();

  std::filesystem::path tmp = path;
  tmp += ".tmp";
  {
    SOTTO_TRY_ASSIGN(platform::File f, platform::create_private_file(tmp));
    Status written = std::fwrite(body.data(), 1, body.size(), f.get()) == body.size()
                         ? platform::sync_file(f.get(), tmp)
                         : Status(io_error(tmp, "cannot write"));
    if (!written.ok()) {
      f.reset();
      std::error_code ec;
      std::filesystem::remove(tmp, ec);
      return written;
    }
  }
  SOTTO_TRY(platform::replace_file(tmp, path));
  return platform::sync_directory(path.parent_path());
}

Result<SecureBytes> derive_key(const SecureBytes& passphrase, const KdfParams& p) {
  if (p.raw) return make_error(ErrorCode::kInternal, "derive_key on an app-keyed profile");
  SecureBytes key(32);
  if (crypto_pwhash(key.data(), key.size(), reinterpret_cast<const char*>(passphrase.data()),
                    passphrase.size(), p.salt.data(), p.opslimit, static_cast<size_t>(p.memlimit),
                    crypto_pwhash_ALG_ARGON2ID13) != 0)
    return make_error(ErrorCode::kCryptoFailure,
                      "deriving the key from the passphrase ran out of memory (Argon2id needs " +
                          std::to_string(p.memlimit >> 20) + " MiB)");
  return key;
}

}  // namespace sotto
