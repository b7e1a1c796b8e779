// sotto::Profile: one device's encrypted local state — identity, prekeys, sessions, sender
// keys — in a SQLCipher database inside a directory of its own, and the 1:1 and group
// encryption that runs on it. No network: bytes in, bytes out.
//
// Thread rule: every method may be called from any thread; calls are serialised inside.
// Hooks run on the calling thread while the profile is locked: they must not call back into
// the same Profile from another thread.
#pragma once

#include <cstdint>
#include <filesystem>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "sotto/Bytes.h"
#include "sotto/Result.h"
#include "sotto/Search.h"
#include "sotto/SecureBytes.h"
#include "sotto/Types.h"
#include "sotto/export.h"

namespace sotto {

// How much work a passphrase costs to test (Argon2id). Stored with the profile, so each
// profile keeps the strength it was created or last re-keyed with.
enum class KdfStrength {
  kInteractive,  // 64 MiB, 2 passes: about 0.1 s here
  kModerate,     // 256 MiB, 3 passes: about 0.7 s
  kSensitive,    // 1 GiB, 4 passes: several seconds
};

struct ProfileOptions {
  bool create_if_missing = true;                // otherwise kNotFound for an empty directory
  KdfStrength kdf = KdfStrength::kInteractive;  // for new profiles and passphrase changes
  // true: every commit reaches the disk before a call returns (survives power loss).
  // false: commits survive a crash of the process but the last few may not survive a power
  // cut. Ratchet state that goes back in time breaks sessions, so keep the default.
  bool sync_every_commit = true;
  uint32_t initial_prekeys = 100;   // one-time prekeys generated with a new identity
  // Memory for decrypted database pages, allocated as they are used. Every page read past it
  // is decrypted and authenticated again; search over a long history wants this much.
  uint32_t cache_mib = 64;
  std::function<uint64_t()> clock;  // ms since the epoch; the system clock when empty
};

struct LocalIdentity {
  std::string account;
  uint32_t device_id = 0;
  uint32_t registration_id = 0;
  Bytes identity_key;  // public, 33 bytes
};

// Called inside the transaction that records a ratchet step, before it commits; return an
// error to roll back both.
using PlaintextHandler = std::function<Status(ByteView plaintext)>;
using CiphertextHandler = std::function<Status(const Ciphertext& ciphertext)>;

class SOTTO_API Profile {
 public:
  // Opens (or creates) the profile in `directory` with a passphrase. The key is derived with
  // Argon2id and a salt kept beside the database. kWrongKey for a wrong passphrase (and the
  // files are left untouched), kBusy when another process has the profile open.
  static Result<std::unique_ptr<Profile>> open(const std::filesystem::path& directory,
                                               const SecureBytes& passphrase,
                                               const ProfileOptions& options = {});
  // Opens (or creates) the profile with a 32-byte key the app keeps (e.g. in the OS keystore).
  static Result<std::unique_ptr<Profile>> open_with_key(const std::filesystem::path& directory,
                                                        const SecureBytes& key,
                                                        const ProfileOptions& options = {});
  // Erases the profile in `directory`: its database, key derivation, stored attachments and
  // lock, then the directory itself when nothing else is left in it (files the app put there
  // stay). The database is encrypted, so deleting its files leaves nothing readable behind.
  // kBusy while a Profile has it open (close the Client first); kNotFound, with nothing
  // removed, when the directory holds no profile.
  static Status erase(const std::filesystem::path& directory);
  ~Profile();
  Profile(const Profile&) = delete;
  Profile& operator=(const Profile&) = delete;

  const std::filesystem::path& directory() const;

  // Re-encrypts the database under a new passphrase (or a new app key). Safe against a crash
  // at any point: afterwards exactly one of the old and the new secret opens the profile.
  Status change_passphrase(const SecureBytes& new_passphrase);
  Status change_key(const SecureBytes& new_key);

  // ---- identity and prekeys ----
  bool has_identity() const;
  // A new identity for `account` on `device_id`: identity key, registration id, signed
  // prekey and options.initial_prekeys one-time prekeys. kAlreadyExists if there is one.
  Status create_identity(const std::string& account, uint32_t device_id);
  Result<LocalIdentity> identity() const;
  // Replaces the signed prekey (the old one keeps working for messages already in flight).
  Status rotate_signed_prekey();
  // Adds `count` one-time prekeys to the pool.
  Status generate_prekeys(uint32_t count);
  Result<uint32_t> prekey_count() const;
  // This device's serialized sotto.wire.PreKeyBundle with a one-time prekey that was never
  // handed out before (none when all are gone), as the relay serves it to a peer.
  Result<Bytes> issue_bundle();

  // ---- 1:1 sessions ----
  // Verifies a peer's serialized bundle (every key, the signed prekey's signature) and starts
  // a session. kMalformedBundle, kInvalidKey, kInvalidSignature, kUntrustedIdentity.
  Status start_session(const Address& peer, ByteView bundle);
  Result<bool> has_session(const Address& peer) const;
  // Pads and encrypts. The result is a kPreKey message until the peer has answered.
  Result<Ciphertext> encrypt(const Address& peer, ByteView plaintext,
                             const CiphertextHandler& within_commit = {});
  // Decrypts and unpads. A replay is kDuplicateMessage; a tampered or truncated message is
  // kInvalidMessage; in every error case nothing stored changes.
  Result<Bytes> decrypt(const Address& peer, const Ciphertext& ciphertext,
                        const PlaintextHandler& within_commit = {});
  Status delete_session(const Address& peer);

  // Safety number for the conversation with `peer_account`, from the stored identity keys.
  Result<SafetyNumber> safety_number(const std::string& peer_account) const;
  // Ok when `scanned` (the other phone's QR code) matches our safety number with that peer.
  Status verify_scanned(const std::string& peer_account, ByteView scanned) const;
  // Accepts a changed identity key for an account: forgets the old key and the sessions.
  Status forget_identity(const std::string& peer_account);

  // ---- Sender Key groups ----
  // `group` is the group's id (1..64 bytes). The distribution message goes to every member
  // over the 1:1 sessions; they pass it to group_process_sender_key().
  Result<Bytes> group_sender_key(ByteView group);
  // A fresh sender key (after a member left): returns its distribution message.
  Result<Bytes> group_rotate_sender_key(ByteView group);
  Status group_process_sender_key(ByteView group, const Address& sender, ByteView distribution);
  Result<Bytes> group_encrypt(ByteView group, ByteView plaintext,
                              const CiphertextHandler& within_commit = {});
  Result<Bytes> group_decrypt(ByteView group, const Address& sender, ByteView ciphertext,
                              const PlaintextHandler& within_commit = {});
  // Forgets a departed member's sender key so nothing more from it is accepted.
  Status group_forget_sender(ByteView group, const Address& sender);

  // ---- search over the message history (sotto/Search.h) ----
  // The index follows the history by itself, in the transactions that write it.
  // One page of matching messages. kInvalidArgument, with a message to show the user, for a
  // malformed query or a cursor from another search.
  Result<SearchPage> search(const SearchQuery& query) const;
  Result<SearchIndexStatus> search_index_status() const;
  // Compares the index with the history and, when they differ, rebuilds it (reporting progress)
  // and says what was wrong. Reads the whole index: run it from a background task.
  Result<SearchIndexCheck> check_search_index(const SearchProgressHandler& progress = {});
  // Rebuilds the index from the history, or carries on with a rebuild that was paused, cut
  // short by a crash, or started because a search found the index damaged. kCancelled when
  // `progress` paused it.
  Status rebuild_search_index(const SearchProgressHandler& progress = {});
  // Erases the words of edited, deleted and expired messages from the index's pages and from
  // the write-ahead log: until then they are unreachable but still in the files. Cheap when
  // nothing is pending (search_index_status().pending_purge); call it after deleting or
  // expiring messages, when the app is idle. kDue erases what is in the archive part only when
  // its rewrite is due (SearchPurge says when), so an old message's delete costs what a recent
  // one's does; kEverything erases it all now. NB: outside a transaction.
  Status purge_search_index(SearchPurge what = SearchPurge::kDue);

  // Runs `body` as one transaction: every call it makes commits together (one disk sync).
  // All or nothing: if any call inside fails, nothing of the transaction is saved, even when
  // `body` carries on and returns ok (the result is then kInvalidState). Batch only what
  // should succeed or fail together.
  Status transaction(const std::function<Status()>& body);

 private:
  friend struct ProfileAccess;  // the SDK's own layers above the profile (sdk/src)
  struct Impl;
  explicit Profile(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace sotto
