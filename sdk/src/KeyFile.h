// profile.kdf: how the profile's database key is obtained. Either "raw" (the app supplies the
// 32-byte key) or Argon2id parameters and salt for a passphrase. Not secret; the database is
// useless without the passphrase or key. Written atomically (temp file, fsync, rename).
#pragma once

#include <filesystem>
#include <optional>

#include "sotto/Profile.h"
#include "sotto/Result.h"
#include "sotto/SecureBytes.h"

namespace sotto {

struct KdfParams {
  bool raw = false;  // app-supplied key; the fields below are unused
  uint64_t opslimit = 0;
  uint64_t memlimit = 0;
  Bytes salt;  // 16 bytes

  static KdfParams fresh(KdfStrength strength);  // new random salt
};

Result<std::optional<KdfParams>> read_kdf_file(const std::filesystem::path& path);
Status write_kdf_file(const std::filesystem::path& path, const KdfParams& params);

// The 32-byte database key for a passphrase under `params`.
Result<SecureBytes> derive_key(const SecureBytes& passphrase, const KdfParams& params);

}  // namespace sotto
