#include "sotto/Profile.h"

#include <sodium.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <mutex>

#include "Database.h"
#include "KeyFile.h"
#include "ProfileAccess.h"
#include "Schema.h"
#include "SearchIndex.h"
#include "SessionCrypto.h"
#include "SqlProtocolStore.h"
#include "platform/Platform.h"
#include "sotto/keys/SafetyNumber.h"

namespace sotto {
namespace fs = std::filesystem;

namespace {

constexpr const char* kDatabaseFile = "profile.db";
constexpr const char* kKdfFile = "profile.kdf";
constexpr const char* kNextKdfFile = "profile.kdf.next";
constexpr const char* kLockFile = "profile.lock";
// How far below its folder the profile's deepest file lies:
// "/attachments/blobs/" + 32 hex digits + ".part", with room to spare.
constexpr size_t kDeepestFile = 64;

// Holds an exclusive lock on profile.lock for the life of the Profile, so two processes (or
// two Profile objects) never write one database at once.
class DirectoryLock {
 public:
  static Result<DirectoryLock> acquire(const fs::path& dir) {
    auto lock = platform::FileLock::acquire(dir / kLockFile);
    if (lock.code() == ErrorCode::kBusy)
      return make_error(ErrorCode::kBusy, "the profile in " + platform::to_utf8(dir) +
                                              " is open in another process or object; close it "
                                              "first");
    SOTTO_TRY(lock);
    return DirectoryLock(std::move(*lock));
  }

 private:
  explicit DirectoryLock(platform::FileLock lock) : lock_(std::move(lock)) {}
  platform::FileLock lock_;
};

bool sodium_ready() {
  static const bool ready = sodium_init() >= 0;
  return ready;
}

Status check_passphrase(const SecureBytes& passphrase) {
  if (passphrase.empty())
    return make_error(ErrorCode::kInvalidArgument, "the passphrase is empty; choose one");
  return {};
}

Status check_key(const SecureBytes& key) {
  if (key.size() != 32)
    return make_error(ErrorCode::kInvalidArgument,
                      "an app-supplied profile key is 32 bytes, got " + std::to_string(key.size()));
  return {};
}

// What the caller gave to open the profile.
struct Secret {
  bool is_key;
  const SecureBytes& bytes;
};

Result<SecureBytes> key_for(const Secret& secret, const KdfParams& params, const fs::path& dir) {
  if (params.raw != secret.is_key)
    return make_error(ErrorCode::kWrongKey,
                      params.raw ? "the profile in " + dir.string() +
                                       " is protected by an app-supplied key, not a passphrase"
                                 : "the profile in " + dir.string() +
                                       " is protected by a passphrase, not an app-supplied key");
  if (secret.is_key) return SecureBytes(secret.bytes);
  return derive_key(secret.bytes, params);
}

}  // namespace

struct Profile::Impl {
  fs::path dir;
  ProfileOptions options;
  DirectoryLock lock;
  KdfParams kdf;
  std::shared_ptr<keys::Context> ctx;
  std::unique_ptr<db::Database> db;
  std::unique_ptr<SqlProtocolStore> store;
  std::unique_ptr<SessionCrypto> crypto;
  std::unique_ptr<search::SearchIndex> search;  // destroyed before db: holds statements on it
  mutable ProfileMutex mu;

  Impl(fs::path d, ProfileOptions o, DirectoryLock l)
      : dir(std::move(d)), options(std::move(o)), lock(std::move(l)) {}

  db::Database::Options db_options(bool create) const {
    db::Database::Options o;
    o.create = create;
    o.durability = options.sync_every_commit ? db::Durability::kFull : db::Durability::kNormal;
    o.cache_kib = std::max<uint32_t>(options.cache_mib, 1) * 1024;
    return o;
  }

  // Opens the database with `secret`. Finishes (or forgets) a key change that a crash
  // interrupted: profile.kdf.next exists only between writing it and the rekey completing.
  Status open_database(const Secret& secret) {
    fs::path db_path = dir / kDatabaseFile;
    SOTTO_TRY_ASSIGN(auto current, read_kdf_file(dir / kKdfFile));
    SOTTO_TRY_ASSIGN(auto next, read_kdf_file(dir / kNextKdfFile));
    std::error_code ec;
    bool exists = fs::exists(db_path, ec);

    if (!exists) {
      if (!options.create_if_missing)
        return make_error(ErrorCode::kNotFound, "no profile in " + dir.string());
      // A new profile: the key derivation is written first, so a crash never leaves a
      // database whose salt is lost (a profile.kdf without a database is simply replaced).
      kdf = secret.is_key ? KdfParams{true, 0, 0, {}} : KdfParams::fresh(options.kdf);
      SOTTO_TRY_ASSIGN(auto key, key_for(secret, kdf, dir));
      SOTTO_TRY(write_kdf_file(dir / kKdfFile, kdf));
      fs::remove(dir / kNextKdfFile, ec);
      SOTTO_TRY_ASSIGN(db, db::Database::open(db_path, key, db_options(true)));
      return db::migrate(*db);
    }
    if (!current)
      return make_error(ErrorCode::kStorageCorrupt,
                        dir.string() + " has a profile database but no " + kKdfFile +
                            "; restore the whole profile directory from a backup");

    std::optional<Error> unusable;  // why a candidate could not even be tried
    for (const std::optional<KdfParams>* params : {&current, &next}) {
      if (!*params) continue;
      auto key = key_for(secret, **params, dir);
      if (!key.ok()) {
        unusable = key.error();
        continue;
      }
      auto opened = db::Database::open(db_path, *key, db_options(false));
      if (!opened.ok()) {
        if (opened.code() != ErrorCode::kWrongKey) return std::move(opened).error();
        continue;
      }
      db = std::move(*opened);
      kdf = **params;
      if (params == &next) {
        SOTTO_TRY(write_kdf_file(dir / kKdfFile, kdf));  // the rekey had completed
      }
      fs::remove(dir / kNextKdfFile, ec);
      return db::migrate(*db);
    }
    if (unusable) return std::move(*unusable);
    // SQLCipher cannot tell a wrong key from a damaged first page; say both.
    return make_error(ErrorCode::kWrongKey,
                      (secret.is_key ? "the key does not open the profile in "
                                     : "wrong passphrase for the profile in ") +
                          dir.string() +
                          "; check it and try again (nothing was changed). If it is right, the "
                          "database file is damaged: restore the directory from a backup");
  }

  Status finish_open() {
    Clock clock = options.clock ? options.clock : Clock(system_clock_ms);
    search = std::make_unique<search::SearchIndex>(*db, clock);
    // Messages written in a transaction are indexed just before it commits.
    db->set_before_commit([index = search.get()] { return index->flush_queue(); });
    SOTTO_TRY_ASSIGN(ctx, keys::Context::create());
    store = std::make_unique<SqlProtocolStore>(*db);
    SOTTO_TRY_ASSIGN(crypto, SessionCrypto::create(ctx, *store, std::move(clock)));
    return {};
  }

  Status change_secret(const Secret& secret) {
    std::lock_guard guard(mu);
    if (db->depth() != 0)
      return make_error(ErrorCode::kInvalidState,
                        "cannot change the passphrase inside a transaction");
    KdfParams next = secret.is_key ? KdfParams{true, 0, 0, {}} : KdfParams::fresh(options.kdf);
    SOTTO_TRY_ASSIGN(auto key, key_for(secret, next, dir));
    SOTTO_TRY(write_kdf_file(dir / kNextKdfFile, next));
    Status s = db->rekey(key);
    std::error_code ec;
    if (!s.ok()) {
      fs::remove(dir / kNextKdfFile, ec);
      return s;
    }
    SOTTO_TRY(write_kdf_file(dir / kKdfFile, next));
    fs::remove(dir / kNextKdfFile, ec);
    kdf = std::move(next);
    return {};
  }

  static Result<std::unique_ptr<Impl>> create(const fs::path& directory, const Secret& secret,
                                              const ProfileOptions& options) {
    if (!sodium_ready())
      return make_error(ErrorCode::kCryptoFailure, "libsodium could not be initialised");
    // Before anything is created: a folder whose files the system could not open is refused.
    SOTTO_TRY(platform::check_path_room(directory, kDeepestFile));
    std::error_code ec;
    if (!fs::exists(directory, ec)) {
      if (!options.create_if_missing)
        return make_error(ErrorCode::kNotFound, "no profile directory " + directory.string());
      fs::create_directories(directory, ec);
      if (ec)
        return make_error(ErrorCode::kStorageIo,
                          "cannot create " + directory.string() + ": " + ec.message());
      platform::restrict_directory(directory);
    }
    SOTTO_TRY_ASSIGN(auto lock, DirectoryLock::acquire(directory));
    auto impl = std::make_unique<Impl>(directory, options, std::move(lock));
    SOTTO_TRY(impl->open_database(secret));
    SOTTO_TRY(impl->finish_open());
    return impl;
  }

  Status need_identity() const {
    if (!crypto->has_identity())
      return make_error(ErrorCode::kInvalidState,
                        "this profile has no identity yet: call create_identity() first");
    return {};
  }
};

Status Profile::erase(const fs::path& directory) {
  std::error_code ec;
  if (!fs::exists(directory / kKdfFile, ec) && !fs::exists(directory / kDatabaseFile, ec))
    return make_error(ErrorCode::kNotFound, platform::to_utf8(directory) +
                                                " holds no sotto profile; nothing was removed");
  {
    // Held while the files go, so no one opens the profile halfway through.
    SOTTO_TRY_ASSIGN(auto lock, DirectoryLock::acquire(directory));
    const std::string db = kDatabaseFile;
    for (const fs::path& f :
         {fs::path(db), fs::path(db + "-wal"), fs::path(db + "-shm"), fs::path(db + "-journal"),
          fs::path(kNextKdfFile), fs::path(kKdfFile)}) {
      fs::remove(directory / f, ec);
      if (ec)
        return make_error(ErrorCode::kStorageIo, "cannot remove " +
                                                     platform::to_utf8(directory / f) + ": " +
                                                     ec.message());
    }
    fs::remove_all(directory / "attachments", ec);
    if (ec)
      return make_error(ErrorCode::kStorageIo, "cannot remove " +
                                                   platform::to_utf8(directory / "attachments") +
                                                   ": " + ec.message());
  }
  fs::remove(directory / kLockFile, ec);
  if (fs::is_empty(directory, ec)) fs::remove(directory, ec);
  return {};
}

Profile::Profile(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Profile::~Profile() = default;

Result<std::unique_ptr<Profile>> Profile::open(const fs::path& directory,
                                               const SecureBytes& passphrase,
                                               const ProfileOptions& options) {
  SOTTO_TRY(check_passphrase(passphrase));
  SOTTO_TRY_ASSIGN(auto impl, Impl::create(directory, Secret{false, passphrase}, options));
  return std::unique_ptr<Profile>(new Profile(std::move(impl)));
}

Result<std::unique_ptr<Profile>> Profile::open_with_key(const fs::path& directory,
                                                        const SecureBytes& key,
                                                        const ProfileOptions& options) {
  SOTTO_TRY(check_key(key));
  SOTTO_TRY_ASSIGN(auto impl, Impl::create(directory, Secret{true, key}, options));
  return std::unique_ptr<Profile>(new Profile(std::move(impl)));
}

const fs::path& Profile::directory() const { return impl_->dir; }

Status Profile::change_passphrase(const SecureBytes& new_passphrase) {
  SOTTO_TRY(check_passphrase(new_passphrase));
  return impl_->change_secret(Secret{false, new_passphrase});
}

Status Profile::change_key(const SecureBytes& new_key) {
  SOTTO_TRY(check_key(new_key));
  return impl_->change_secret(Secret{true, new_key});
}

bool Profile::has_identity() const {
  std::lock_guard guard(impl_->mu);
  return impl_->crypto->has_identity();
}

Status Profile::create_identity(const std::string& account, uint32_t device_id) {
  std::lock_guard guard(impl_->mu);
  return impl_->crypto->create_identity(account, device_id, impl_->options.initial_prekeys);
}

Result<LocalIdentity> Profile::identity() const {
  std::lock_guard guard(impl_->mu);
  SOTTO_TRY(impl_->need_identity());
  const auto& r = impl_->crypto->identity();
  return LocalIdentity{r.account, r.device_id, r.registration_id, r.public_key};
}

Status Profile::rotate_signed_prekey() {
  std::lock_guard guard(impl_->mu);
  SOTTO_TRY(impl_->need_identity());
  SOTTO_TRY(impl_->crypto->rotate_signed_prekey());
  return {};
}

Status Profile::generate_prekeys(uint32_t count) {
  if (count == 0 || count > 10000)
    return make_error(ErrorCode::kInvalidArgument, "generate 1..10000 prekeys at a time");
  std::lock_guard guard(impl_->mu);
  SOTTO_TRY(impl_->need_identity());
  SOTTO_TRY(impl_->crypto->generate_prekeys(count));
  return {};
}

Result<uint32_t> Profile::prekey_count() const {
  std::lock_guard guard(impl_->mu);
  return impl_->store->prekey_count();
}

Result<Bytes> Profile::issue_bundle() {
  std::lock_guard guard(impl_->mu);
  SOTTO_TRY(impl_->need_identity());
  SOTTO_TRY_ASSIGN(auto bundle, impl_->crypto->issue_bundle());
  return keys::serialize_bundle(bundle);
}

Status Profile::start_session(const Address& peer, ByteView bundle) {
  SOTTO_TRY_ASSIGN(auto parsed, keys::parse_bundle(bundle));
  std::lock_guard guard(impl_->mu);
  SOTTO_TRY(impl_->need_identity());
  return impl_->crypto->start_session(peer, parsed);
}

Result<bool> Profile::has_session(const Address& peer) const {
  std::lock_guard guard(impl_->mu);
  return impl_->crypto->has_session(peer);
}

Result<Ciphertext> Profile::encrypt(const Address& peer, ByteView plaintext,
                                    const CiphertextHandler& within_commit) {
  std::lock_guard guard(impl_->mu);
  SOTTO_TRY(impl_->need_identity());
  return impl_->crypto->encrypt(peer, plaintext, within_commit);
}

Result<Bytes> Profile::decrypt(const Address& peer, const Ciphertext& ciphertext,
                               const PlaintextHandler& within_commit) {
  std::lock_guard guard(impl_->mu);
  SOTTO_TRY(impl_->need_identity());
  return impl_->crypto->decrypt(peer, ciphertext, within_commit);
}

Status Profile::delete_session(const Address& peer) {
  std::lock_guard guard(impl_->mu);
  return impl_->crypto->delete_session(peer);
}

Result<SafetyNumber> Profile::safety_number(const std::string& peer_account) const {
  std::lock_guard guard(impl_->mu);
  SOTTO_TRY(impl_->need_identity());
  SOTTO_TRY_ASSIGN(auto remote, impl_->crypto->peer_identity(peer_account));
  if (!remote)
    return make_error(ErrorCode::kNotFound, "no identity key known for " + peer_account +
                                                ": start a session with it first");
  const auto& me = impl_->crypto->identity();
  SOTTO_TRY_ASSIGN(
      auto sn, keys::safety_number(*impl_->ctx, me.account, me.public_key, peer_account, *remote));
  return SafetyNumber{std::move(sn.digits), std::move(sn.scannable)};
}

Status Profile::verify_scanned(const std::string& peer_account, ByteView scanned) const {
  SOTTO_TRY_ASSIGN(auto ours, safety_number(peer_account));
  return keys::compare_scanned(*impl_->ctx, keys::SafetyNumber{ours.digits, ours.scannable},
                               scanned);
}

Status Profile::forget_identity(const std::string& peer_account) {
  std::lock_guard guard(impl_->mu);
  return impl_->crypto->forget_identity(peer_account);
}

Result<Bytes> Profile::group_sender_key(ByteView group) {
  std::lock_guard guard(impl_->mu);
  SOTTO_TRY(impl_->need_identity());
  return impl_->crypto->group_sender_key(group);
}

Result<Bytes> Profile::group_rotate_sender_key(ByteView group) {
  std::lock_guard guard(impl_->mu);
  SOTTO_TRY(impl_->need_identity());
  return impl_->crypto->group_rotate_sender_key(group);
}

Status Profile::group_process_sender_key(ByteView group, const Address& sender,
                                         ByteView distribution) {
  std::lock_guard guard(impl_->mu);
  return impl_->crypto->group_process_sender_key(group, sender, distribution);
}

Result<Bytes> Profile::group_encrypt(ByteView group, ByteView plaintext,
                                     const CiphertextHandler& within_commit) {
  std::lock_guard guard(impl_->mu);
  SOTTO_TRY(impl_->need_identity());
  return impl_->crypto->group_encrypt(group, plaintext, within_commit);
}

Result<Bytes> Profile::group_decrypt(ByteView group, const Address& sender, ByteView ciphertext,
                                     const PlaintextHandler& within_commit) {
  std::lock_guard guard(impl_->mu);
  return impl_->crypto->group_decrypt(group, sender, ciphertext, within_commit);
}

Status Profile::group_forget_sender(ByteView group, const Address& sender) {
  std::lock_guard guard(impl_->mu);
  return impl_->crypto->group_forget_sender(group, sender);
}

Result<SearchPage> Profile::search(const SearchQuery& query) const {
  std::lock_guard guard(impl_->mu);
  return impl_->search->search(query);
}

Result<SearchIndexStatus> Profile::search_index_status() const {
  std::lock_guard guard(impl_->mu);
  return impl_->search->status();
}

Result<SearchIndexCheck> Profile::check_search_index(const SearchProgressHandler& progress) {
  std::lock_guard guard(impl_->mu);
  return impl_->search->check(progress);
}

Status Profile::rebuild_search_index(const SearchProgressHandler& progress) {
  std::lock_guard guard(impl_->mu);
  return impl_->search->rebuild(progress);
}

Status Profile::purge_search_index(SearchPurge what) {
  std::lock_guard guard(impl_->mu);
  return impl_->search->purge(what);
}

Status Profile::transaction(const std::function<Status()>& body) {
  std::lock_guard guard(impl_->mu);
  return impl_->crypto->transaction(body);
}

ProfileParts ProfileAccess::parts(Profile& profile) {
  Profile::Impl& impl = *profile.impl_;
  return ProfileParts{impl.mu, *impl.db, *impl.crypto, *impl.ctx, impl.options};
}

}  // namespace sotto
