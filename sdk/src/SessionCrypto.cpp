#include "SessionCrypto.h"

#include <curve.h>
#include <group_cipher.h>
#include <group_session_builder.h>
#include <protocol.h>
#include <ratchet.h>
#include <sender_key_record.h>
#include <session_builder.h>
#include <session_cipher.h>
#include <session_pre_key.h>
#include <signal_protocol.h>

#include <algorithm>
#include <chrono>
#include <string>

#include "Padding.h"
#include "ScopedTransaction.h"

namespace sotto {
namespace {

constexpr const char* kCurrentSignedPreKey = "signed_prekey.current";
constexpr const char* kNextPreKeyId = "prekey.next_id";
constexpr const char* kIssuedPreKeyId = "prekey.issued_up_to";

std::string name_of(const char* name, size_t len) { return std::string(name, len); }
std::string name_of(const signal_protocol_address* a) { return name_of(a->name, a->name_len); }

signal_protocol_address address_of(const Address& a) {
  return signal_protocol_address{a.account.c_str(), a.account.size(),
                                 static_cast<int32_t>(a.device_id)};
}

std::string describe(const Address& a) { return a.account + "." + std::to_string(a.device_id); }

Status check_address(const Address& a) {
  if (a.account.empty() || a.device_id == 0 || a.device_id > 0x7fffffff)
    return make_error(ErrorCode::kInvalidArgument,
                      "an address needs an account id and a device id in 1..2^31-1");
  return {};
}

signal_buffer* buffer_of(ByteView v) { return signal_buffer_create(v.data(), v.size()); }

// Bytes that do not deserialize are a malformed message, whatever libsignal's code says
// (it reports short input as an invalid argument and garbage as a legacy version).
Error parse_error(int rc, const std::string& what) {
  if (rc == SG_ERR_NOMEM) return keys::signal_error(rc, what);
  return make_error(ErrorCode::kInvalidMessage,
                    what + ": the bytes are not a well-formed message (truncated or corrupted)");
}

struct BuilderFree {
  void operator()(session_builder* b) const { session_builder_free(b); }
};
struct CipherFree {
  void operator()(session_cipher* c) const { session_cipher_free(c); }
};
struct GroupBuilderFree {
  void operator()(group_session_builder* b) const { group_session_builder_free(b); }
};
struct GroupCipherFree {
  void operator()(group_cipher* c) const { group_cipher_free(c); }
};

}  // namespace

uint64_t system_clock_ms() {
  return static_cast<uint64_t>(std::chrono::duration_cast<std::chrono::milliseconds>(
                                   std::chrono::system_clock::now().time_since_epoch())
                                   .count());
}

// libsignal's store callbacks, forwarded to the ProtocolStore. A storage failure is kept in
// store_error_ so the caller gets the real cause (disk full, say) instead of a generic code.
struct SessionCrypto::Bridge {
  static SessionCrypto& self(void* user_data) { return *static_cast<SessionCrypto*>(user_data); }

  template <class T>
  static bool failed(SessionCrypto& s, const Result<T>& r) {
    if (r.ok()) return false;
    if (!s.store_error_) s.store_error_ = r.error();
    return true;
  }

  // -- sessions --
  static int load_session(signal_buffer** record, signal_buffer** user_record,
                          const signal_protocol_address* address, void* ud) {
    (void)user_record;
    auto& s = self(ud);
    auto r = s.store_.session(name_of(address), address->device_id);
    if (failed(s, r)) return SG_ERR_UNKNOWN;
    if (!*r) return 0;
    *record = buffer_of(**r);
    return *record ? 1 : SG_ERR_NOMEM;
  }
  static int sub_device_sessions(signal_int_list** sessions, const char* name, size_t len,
                                 void* ud) {
    auto& s = self(ud);
    auto r = s.store_.session_devices(name_of(name, len));
    if (failed(s, r)) return SG_ERR_UNKNOWN;
    signal_int_list* list = signal_int_list_alloc();
    if (!list) return SG_ERR_NOMEM;
    for (int32_t d : *r) signal_int_list_push_back(list, d);
    *sessions = list;
    return static_cast<int>(r->size());
  }
  static int store_session(const signal_protocol_address* address, uint8_t* record, size_t len,
                           uint8_t*, size_t, void* ud) {
    auto& s = self(ud);
    auto r = s.store_.store_session(name_of(address), address->device_id, ByteView(record, len));
    return failed(s, r) ? SG_ERR_UNKNOWN : 0;
  }
  static int contains_session(const signal_protocol_address* address, void* ud) {
    auto& s = self(ud);
    auto r = s.store_.session(name_of(address), address->device_id);
    if (failed(s, r)) return 0;
    return r->has_value() ? 1 : 0;
  }
  static int delete_session(const signal_protocol_address* address, void* ud) {
    auto& s = self(ud);
    auto r = s.store_.delete_session(name_of(address), address->device_id);
    if (failed(s, r)) return SG_ERR_UNKNOWN;
    return *r ? 1 : 0;
  }
  static int delete_all_sessions(const char* name, size_t len, void* ud) {
    auto& s = self(ud);
    auto r = s.store_.delete_sessions(name_of(name, len));
    if (failed(s, r)) return SG_ERR_UNKNOWN;
    return *r;
  }

  // -- one-time prekeys --
  static int load_pre_key(signal_buffer** record, uint32_t id, void* ud) {
    auto& s = self(ud);
    auto r = s.store_.prekey(id);
    if (failed(s, r)) return SG_ERR_UNKNOWN;
    if (!*r) return SG_ERR_INVALID_KEY_ID;
    *record = buffer_of((*r)->span());
    return *record ? SG_SUCCESS : SG_ERR_NOMEM;
  }
  static int store_pre_key(uint32_t id, uint8_t* record, size_t len, void* ud) {
    auto& s = self(ud);
    return failed(s, s.store_.store_prekey(id, ByteView(record, len))) ? SG_ERR_UNKNOWN : 0;
  }
  static int contains_pre_key(uint32_t id, void* ud) {
    auto& s = self(ud);
    auto r = s.store_.prekey(id);
    if (failed(s, r)) return 0;
    return r->has_value() ? 1 : 0;
  }
  static int remove_pre_key(uint32_t id, void* ud) {
    auto& s = self(ud);
    if (id == kLastResortPreKeyId) return 0;  // reused until replaced
    return failed(s, s.store_.remove_prekey(id)) ? SG_ERR_UNKNOWN : 0;
  }

  // -- signed prekeys --
  static int load_signed_pre_key(signal_buffer** record, uint32_t id, void* ud) {
    auto& s = self(ud);
    auto r = s.store_.signed_prekey(id);
    if (failed(s, r)) return SG_ERR_UNKNOWN;
    if (!*r) return SG_ERR_INVALID_KEY_ID;
    *record = buffer_of((*r)->span());
    return *record ? SG_SUCCESS : SG_ERR_NOMEM;
  }
  static int store_signed_pre_key(uint32_t id, uint8_t* record, size_t len, void* ud) {
    auto& s = self(ud);
    return failed(s, s.store_.store_signed_prekey(id, ByteView(record, len))) ? SG_ERR_UNKNOWN : 0;
  }
  static int contains_signed_pre_key(uint32_t id, void* ud) {
    auto& s = self(ud);
    auto r = s.store_.signed_prekey(id);
    if (failed(s, r)) return 0;
    return r->has_value() ? 1 : 0;
  }
  static int remove_signed_pre_key(uint32_t id, void* ud) {
    auto& s = self(ud);
    return failed(s, s.store_.remove_signed_prekey(id)) ? SG_ERR_UNKNOWN : 0;
  }

  // -- identities --
  static int get_identity_key_pair(signal_buffer** public_data, signal_buffer** private_data,
                                   void* ud) {
    auto& s = self(ud);
    if (!s.identity_) return SG_ERR_INVALID_KEY;
    *public_data = buffer_of(s.identity_public_.span());
    *private_data = buffer_of(s.identity_private_.span());
    return *public_data && *private_data ? SG_SUCCESS : SG_ERR_NOMEM;
  }
  static int get_local_registration_id(void* ud, uint32_t* registration_id) {
    auto& s = self(ud);
    if (!s.identity_) return SG_ERR_INVALID_KEY;
    *registration_id = s.identity_->registration_id;
    return SG_SUCCESS;
  }
  static int save_identity(const signal_protocol_address* address, uint8_t* key, size_t len,
                           void* ud) {
    auto& s = self(ud);
    ByteView k = key ? ByteView(key, len) : ByteView();
    return failed(s, s.store_.save_identity(name_of(address), k)) ? SG_ERR_UNKNOWN : 0;
  }
  // Trust on first use: unknown accounts are trusted, known ones only with the same key.
  static int is_trusted_identity(const signal_protocol_address* address, uint8_t* key, size_t len,
                                 void* ud) {
    auto& s = self(ud);
    auto r = s.store_.identity(name_of(address));
    if (failed(s, r)) return SG_ERR_UNKNOWN;
    if (!*r) return 1;
    const Bytes& known = **r;
    return known.size() == len && std::equal(known.begin(), known.end(), key) ? 1 : 0;
  }

  // -- sender keys --
  static int store_sender_key(const signal_protocol_sender_key_name* n, uint8_t* record, size_t len,
                              uint8_t*, size_t, void* ud) {
    auto& s = self(ud);
    auto r = s.store_.store_sender_key(
        ByteView(reinterpret_cast<const uint8_t*>(n->group_id), n->group_id_len),
        name_of(&n->sender), n->sender.device_id, ByteView(record, len));
    return failed(s, r) ? SG_ERR_UNKNOWN : 0;
  }
  static int load_sender_key(signal_buffer** record, signal_buffer** user_record,
                             const signal_protocol_sender_key_name* n, void* ud) {
    (void)user_record;
    auto& s = self(ud);
    auto r = s.store_.sender_key(
        ByteView(reinterpret_cast<const uint8_t*>(n->group_id), n->group_id_len),
        name_of(&n->sender), n->sender.device_id);
    if (failed(s, r)) return SG_ERR_UNKNOWN;
    if (!*r) return 0;
    *record = buffer_of(**r);
    return *record ? 1 : SG_ERR_NOMEM;
  }
};

SessionCrypto::SessionCrypto(std::shared_ptr<keys::Context> ctx, ProtocolStore& store, Clock clock)
    : ctx_(std::move(ctx)), store_(store), clock_(std::move(clock)) {}

SessionCrypto::~SessionCrypto() {
  if (store_ctx_) signal_protocol_store_context_destroy(store_ctx_);
}

Result<std::unique_ptr<SessionCrypto>> SessionCrypto::create(std::shared_ptr<keys::Context> ctx,
                                                             ProtocolStore& store, Clock clock) {
  std::unique_ptr<SessionCrypto> self(new SessionCrypto(std::move(ctx), store, std::move(clock)));
  SOTTO_TRY(self->install_bridge());
  SOTTO_TRY(self->load_identity());
  return self;
}

Status SessionCrypto::install_bridge() {
  if (signal_protocol_store_context_create(&store_ctx_, ctx_->get()) != 0)
    return make_error(ErrorCode::kCryptoFailure, "could not create the Signal store context");
  signal_protocol_session_store sessions = {&Bridge::load_session,
                                            &Bridge::sub_device_sessions,
                                            &Bridge::store_session,
                                            &Bridge::contains_session,
                                            &Bridge::delete_session,
                                            &Bridge::delete_all_sessions,
                                            nullptr,
                                            this};
  signal_protocol_pre_key_store prekeys = {&Bridge::load_pre_key,
                                           &Bridge::store_pre_key,
                                           &Bridge::contains_pre_key,
                                           &Bridge::remove_pre_key,
                                           nullptr,
                                           this};
  signal_protocol_signed_pre_key_store signed_prekeys = {&Bridge::load_signed_pre_key,
                                                         &Bridge::store_signed_pre_key,
                                                         &Bridge::contains_signed_pre_key,
                                                         &Bridge::remove_signed_pre_key,
                                                         nullptr,
                                                         this};
  signal_protocol_identity_key_store identities = {&Bridge::get_identity_key_pair,
                                                   &Bridge::get_local_registration_id,
                                                   &Bridge::save_identity,
                                                   &Bridge::is_trusted_identity,
                                                   nullptr,
                                                   this};
  signal_protocol_sender_key_store sender_keys = {&Bridge::store_sender_key,
                                                  &Bridge::load_sender_key, nullptr, this};
  if (signal_protocol_store_context_set_session_store(store_ctx_, &sessions) != 0 ||
      signal_protocol_store_context_set_pre_key_store(store_ctx_, &prekeys) != 0 ||
      signal_protocol_store_context_set_signed_pre_key_store(store_ctx_, &signed_prekeys) != 0 ||
      signal_protocol_store_context_set_identity_key_store(store_ctx_, &identities) != 0 ||
      signal_protocol_store_context_set_sender_key_store(store_ctx_, &sender_keys) != 0)
    return make_error(ErrorCode::kCryptoFailure, "could not install the Signal stores");
  return {};
}

Status SessionCrypto::load_identity() {
  SOTTO_TRY_ASSIGN(auto record, store_.local_identity());
  if (!record) return {};
  keys::IdentityKeyPair pair{record->public_key, SecureBytes(record->key_pair)};
  SOTTO_TRY_ASSIGN(auto loaded, keys::load_identity(*ctx_, pair));
  signal_buffer* raw = nullptr;
  int rc = ec_private_key_serialize(&raw, ratchet_identity_key_pair_get_private(loaded.get()));
  keys::Buffer priv(raw);
  if (rc < 0) return keys::signal_error(rc, "loading the identity key");
  identity_private_ = SecureBytes(keys::view(priv.get()));
  identity_public_ = SecureBytes(record->public_key);
  identity_ = std::move(*record);
  return {};
}

Error SessionCrypto::take_error(int rc, std::string_view what) {
  if (store_error_) {
    Error e = std::move(*store_error_);
    store_error_.reset();
    return e;
  }
  return keys::signal_error(rc, what);
}

Status SessionCrypto::transaction(const std::function<Status()>& body) {
  ScopedTransaction txn(store_);
  SOTTO_TRY(txn.begin());
  SOTTO_TRY(body());
  return txn.commit();
}

// ---- identity and prekeys ----

Status SessionCrypto::create_identity(const std::string& account, uint32_t device_id,
                                      uint32_t prekeys) {
  if (identity_)
    return make_error(ErrorCode::kAlreadyExists, "this profile already has an identity (" +
                                                     identity_->account + "." +
                                                     std::to_string(identity_->device_id) +
                                                     "); open another profile "
                                                     "directory for another account");
  SOTTO_TRY(check_address(Address{account, device_id}));
  SOTTO_TRY_ASSIGN(auto pair, keys::generate_identity(*ctx_));
  SOTTO_TRY_ASSIGN(uint32_t registration_id, keys::generate_registration_id(*ctx_));
  LocalIdentityRecord record;
  record.account = account;
  record.device_id = device_id;
  record.registration_id = registration_id;
  record.public_key = pair.public_key;
  record.key_pair = std::move(pair.serialized);

  Status s = transaction([&]() -> Status {
    SOTTO_TRY(store_.set_local_identity(record));
    SOTTO_TRY(load_identity());
    SOTTO_TRY(rotate_signed_prekey());
    if (prekeys) SOTTO_TRY(generate_prekeys(prekeys));
    return {};
  });
  if (!s.ok()) identity_.reset();
  return s;
}

Status SessionCrypto::set_address(const std::string& account, uint32_t device_id) {
  if (!identity_) return make_error(ErrorCode::kInvalidState, "no identity yet: create one first");
  SOTTO_TRY(check_address(Address{account, device_id}));
  LocalIdentityRecord record = *identity_;
  record.account = account;
  record.device_id = device_id;
  SOTTO_TRY(store_.set_local_identity(record));
  identity_->account = account;
  identity_->device_id = device_id;
  return {};
}

Status SessionCrypto::import_identity(const std::string& account, uint32_t device_id,
                                      const keys::IdentityKeyPair& pair, uint32_t prekeys) {
  if (identity_)
    return make_error(ErrorCode::kAlreadyExists,
                      "this profile already has an identity; link a new device from an empty "
                      "profile directory");
  SOTTO_TRY(check_address(Address{account, device_id}));
  // Refuse a key pair that does not decode, or whose private key is not that of the public
  // key it comes with: this device would sign for a key it does not hold.
  SOTTO_TRY_ASSIGN(auto loaded, keys::load_identity(*ctx_, pair));
  keys::Ref<ec_public_key> derived;
  if (curve_generate_public_key(derived.out(),
                                ratchet_identity_key_pair_get_private(loaded.get())) < 0)
    return make_error(ErrorCode::kInvalidKey, "the identity key pair has an unusable private key");
  SOTTO_TRY_ASSIGN(Bytes derived_public, keys::serialize_public_key(derived.get()));
  SOTTO_TRY_ASSIGN(Bytes stored_public,
                   keys::serialize_public_key(ratchet_identity_key_pair_get_public(loaded.get())));
  if (derived_public != pair.public_key || stored_public != pair.public_key)
    return make_error(ErrorCode::kInvalidKey,
                      "the identity key pair does not belong to the identity key it came with; "
                      "nothing was stored (link this device again)");
  SOTTO_TRY_ASSIGN(uint32_t registration_id, keys::generate_registration_id(*ctx_));
  LocalIdentityRecord record;
  record.account = account;
  record.device_id = device_id;
  record.registration_id = registration_id;
  record.public_key = pair.public_key;
  record.key_pair = SecureBytes(pair.serialized);
  Status s = transaction([&]() -> Status {
    SOTTO_TRY(store_.set_local_identity(record));
    SOTTO_TRY(load_identity());
    SOTTO_TRY(rotate_signed_prekey());
    if (prekeys) SOTTO_TRY(generate_prekeys(prekeys));
    return {};
  });
  if (!s.ok()) identity_.reset();
  return s;
}

keys::IdentityKeyPair SessionCrypto::identity_key_pair() const {
  return keys::IdentityKeyPair{identity_->public_key, SecureBytes(identity_->key_pair)};
}

Result<keys::OneTimePreKey> SessionCrypto::last_resort_prekey() {
  if (!identity_) return make_error(ErrorCode::kInvalidState, "no identity yet: create one first");
  SOTTO_TRY_ASSIGN(auto record, store_.prekey(kLastResortPreKeyId));
  if (!record) {
    SOTTO_TRY_ASSIGN(auto generated,
                     keys::generate_one_time_prekeys(*ctx_, kLastResortPreKeyId, 1));
    if (generated.size() != 1 || generated[0].id != kLastResortPreKeyId)
      return make_error(ErrorCode::kInternal, "could not generate the last-resort prekey");
    SOTTO_TRY(store_.store_prekey(kLastResortPreKeyId, generated[0].record.span()));
    return std::move(generated[0]);
  }
  keys::Ref<session_pre_key> pk;
  int rc = session_pre_key_deserialize(pk.out(), record->data(), record->size(), ctx_->get());
  if (rc < 0) return keys::signal_error(rc, "reading the last-resort prekey");
  keys::OneTimePreKey k;
  k.id = kLastResortPreKeyId;
  SOTTO_TRY_ASSIGN(
      k.public_key,
      keys::serialize_public_key(ec_key_pair_get_public(session_pre_key_get_key_pair(pk.get()))));
  k.record = std::move(*record);
  return k;
}

Result<keys::SignedPreKey> SessionCrypto::rotate_signed_prekey() {
  if (!identity_) return make_error(ErrorCode::kInvalidState, "no identity yet: create one first");
  SOTTO_TRY_ASSIGN(auto current, store_.counter(kCurrentSignedPreKey));
  uint32_t id = keys::next_prekey_id(current ? static_cast<uint32_t>(*current) : 0);
  keys::IdentityKeyPair pair{identity_->public_key, SecureBytes(identity_->key_pair)};
  SOTTO_TRY_ASSIGN(auto spk, keys::generate_signed_prekey(*ctx_, pair, id, clock_()));
  SOTTO_TRY(transaction([&]() -> Status {
    SOTTO_TRY(store_.store_signed_prekey(spk.id, spk.record.span()));
    return store_.set_counter(kCurrentSignedPreKey, spk.id);
  }));
  return spk;
}

Result<keys::SignedPreKey> SessionCrypto::current_signed_prekey() {
  SOTTO_TRY_ASSIGN(auto current, store_.counter(kCurrentSignedPreKey));
  if (!current) return make_error(ErrorCode::kInvalidState, "no signed prekey yet");
  auto id = static_cast<uint32_t>(*current);
  SOTTO_TRY_ASSIGN(auto record, store_.signed_prekey(id));
  if (!record)
    return make_error(ErrorCode::kStorageCorrupt, "the current signed prekey is missing");
  keys::Ref<session_signed_pre_key> spk;
  int rc =
      session_signed_pre_key_deserialize(spk.out(), record->data(), record->size(), ctx_->get());
  if (rc < 0) return keys::signal_error(rc, "reading the signed prekey");
  keys::SignedPreKey out;
  out.id = id;
  out.timestamp_ms = session_signed_pre_key_get_timestamp(spk.get());
  SOTTO_TRY_ASSIGN(out.public_key, keys::serialize_public_key(ec_key_pair_get_public(
                                       session_signed_pre_key_get_key_pair(spk.get()))));
  const uint8_t* sig = session_signed_pre_key_get_signature(spk.get());
  out.signature.assign(sig, sig + session_signed_pre_key_get_signature_len(spk.get()));
  return out;
}

Result<std::vector<keys::OneTimePreKey>> SessionCrypto::generate_prekeys(uint32_t count) {
  if (!identity_) return make_error(ErrorCode::kInvalidState, "no identity yet: create one first");
  SOTTO_TRY_ASSIGN(auto next, store_.counter(kNextPreKeyId));
  uint32_t first = next ? static_cast<uint32_t>(*next) : 1;
  SOTTO_TRY_ASSIGN(auto generated, keys::generate_one_time_prekeys(*ctx_, first, count));
  SOTTO_TRY(transaction([&]() -> Status {
    for (const auto& k : generated) SOTTO_TRY(store_.store_prekey(k.id, k.record.span()));
    return store_.set_counter(kNextPreKeyId, keys::next_prekey_id(first, count));
  }));
  return generated;
}

Result<wire::PreKeyBundle> SessionCrypto::issue_bundle() {
  if (!identity_) return make_error(ErrorCode::kInvalidState, "no identity yet: create one first");
  SOTTO_TRY_ASSIGN(auto spk, current_signed_prekey());
  std::optional<keys::OneTimePreKey> otk;
  SOTTO_TRY(transaction([&]() -> Status {
    SOTTO_TRY_ASSIGN(auto issued, store_.counter(kIssuedPreKeyId));
    SOTTO_TRY_ASSIGN(auto next, store_.counter(kNextPreKeyId));
    uint32_t end = next ? static_cast<uint32_t>(*next) : 1;
    uint32_t id = keys::next_prekey_id(issued ? static_cast<uint32_t>(*issued) : 0);
    for (; id != end; id = keys::next_prekey_id(id)) {
      SOTTO_TRY_ASSIGN(auto record, store_.prekey(id));
      if (!record) continue;  // already used
      keys::Ref<session_pre_key> pk;
      int rc = session_pre_key_deserialize(pk.out(), record->data(), record->size(), ctx_->get());
      if (rc < 0) return keys::signal_error(rc, "reading a one-time prekey");
      keys::OneTimePreKey k;
      k.id = id;
      SOTTO_TRY_ASSIGN(k.public_key, keys::serialize_public_key(ec_key_pair_get_public(
                                         session_pre_key_get_key_pair(pk.get()))));
      otk = std::move(k);
      break;
    }
    // Never hand out the same one-time prekey twice, even when it was not yet used.
    if (otk) SOTTO_TRY(store_.set_counter(kIssuedPreKeyId, otk->id));
    return {};
  }));
  return keys::make_bundle(identity_->registration_id, identity_->device_id, identity_->public_key,
                           spk, otk ? &*otk : nullptr);
}

// ---- 1:1 ----

Result<bool> SessionCrypto::has_session(const Address& peer) {
  SOTTO_TRY(check_address(peer));
  SOTTO_TRY_ASSIGN(auto record, store_.session(peer.account, static_cast<int32_t>(peer.device_id)));
  return record.has_value();
}

Status SessionCrypto::start_session(const Address& peer, const wire::PreKeyBundle& bundle) {
  if (!identity_) return make_error(ErrorCode::kInvalidState, "no identity yet: create one first");
  SOTTO_TRY(check_address(peer));
  if (bundle.device_id() != peer.device_id)
    return make_error(ErrorCode::kMalformedBundle, "the bundle is for device " +
                                                       std::to_string(bundle.device_id()) +
                                                       ", not for " + describe(peer));
  SOTTO_TRY_ASSIGN(auto signal_bundle, keys::to_signal_bundle(*ctx_, bundle));
  signal_protocol_address address = address_of(peer);
  return transaction([&]() -> Status {
    session_builder* raw = nullptr;
    int rc = session_builder_create(&raw, store_ctx_, &address, ctx_->get());
    std::unique_ptr<session_builder, BuilderFree> builder(raw);
    if (rc < 0) return take_error(rc, "starting a session with " + describe(peer));
    rc = session_builder_process_pre_key_bundle(builder.get(), signal_bundle.get());
    if (rc < 0) return take_error(rc, "starting a session with " + describe(peer));
    if (store_error_) return take_error(rc, "");
    return {};
  });
}

Result<Ciphertext> SessionCrypto::encrypt(const Address& peer, ByteView plaintext,
                                          const CiphertextHook& hook) {
  SOTTO_TRY(check_address(peer));
  SOTTO_TRY_ASSIGN(bool has, has_session(peer));
  if (!has)
    return make_error(ErrorCode::kNoSession, "no session with " + describe(peer) +
                                                 ": start one from the peer's prekey bundle");
  signal_protocol_address address = address_of(peer);
  Bytes padded = pad(plaintext);
  Ciphertext out;
  SOTTO_TRY(transaction([&]() -> Status {
    session_cipher* raw = nullptr;
    int rc = session_cipher_create(&raw, store_ctx_, &address, ctx_->get());
    std::unique_ptr<session_cipher, CipherFree> cipher(raw);
    if (rc < 0) return take_error(rc, "encrypting for " + describe(peer));
    keys::Ref<ciphertext_message> message;
    rc = session_cipher_encrypt(cipher.get(), padded.data(), padded.size(), message.out());
    if (rc < 0 || store_error_) return take_error(rc, "encrypting for " + describe(peer));
    out.type = ciphertext_message_get_type(message.get()) == CIPHERTEXT_PREKEY_TYPE
                   ? CiphertextType::kPreKey
                   : CiphertextType::kSignal;
    out.bytes = keys::copy(ciphertext_message_get_serialized(message.get()));
    if (hook) SOTTO_TRY(hook(out));
    return {};
  }));
  return out;
}

Result<Bytes> SessionCrypto::decrypt(const Address& peer, const Ciphertext& ciphertext,
                                     const PlaintextHook& hook) {
  if (!identity_) return make_error(ErrorCode::kInvalidState, "no identity yet: create one first");
  SOTTO_TRY(check_address(peer));
  const std::string what = "decrypting a message from " + describe(peer);
  if (ciphertext.bytes.empty())
    return make_error(ErrorCode::kInvalidMessage, what + ": the ciphertext is empty");
  signal_protocol_address address = address_of(peer);
  Bytes plaintext;
  SOTTO_TRY(transaction([&]() -> Status {
    session_cipher* raw = nullptr;
    int rc = session_cipher_create(&raw, store_ctx_, &address, ctx_->get());
    std::unique_ptr<session_cipher, CipherFree> cipher(raw);
    if (rc < 0) return take_error(rc, what);
    signal_buffer* raw_plain = nullptr;
    if (ciphertext.type == CiphertextType::kPreKey) {
      keys::Ref<pre_key_signal_message> message;
      rc = pre_key_signal_message_deserialize(message.out(), ciphertext.bytes.data(),
                                              ciphertext.bytes.size(), ctx_->get());
      if (rc < 0) return parse_error(rc, what);
      rc = session_cipher_decrypt_pre_key_signal_message(cipher.get(), message.get(), nullptr,
                                                         &raw_plain);
    } else if (ciphertext.type == CiphertextType::kSignal) {
      keys::Ref<signal_message> message;
      rc = signal_message_deserialize(message.out(), ciphertext.bytes.data(),
                                      ciphertext.bytes.size(), ctx_->get());
      if (rc < 0) return parse_error(rc, what);
      rc = session_cipher_decrypt_signal_message(cipher.get(), message.get(), nullptr, &raw_plain);
    } else {
      return make_error(ErrorCode::kInvalidMessage, what + ": not a 1:1 ciphertext type");
    }
    keys::Buffer padded(raw_plain);
    if (rc < 0 || store_error_) return take_error(rc, what);
    SOTTO_TRY_ASSIGN(plaintext, unpad(keys::view(padded.get())));
    if (hook) SOTTO_TRY(hook(plaintext));
    return {};
  }));
  return plaintext;
}

Status SessionCrypto::delete_session(const Address& peer) {
  SOTTO_TRY(check_address(peer));
  SOTTO_TRY(store_.delete_session(peer.account, static_cast<int32_t>(peer.device_id)));
  return {};
}

Result<std::vector<uint32_t>> SessionCrypto::session_devices(const std::string& account) {
  SOTTO_TRY_ASSIGN(auto devices, store_.session_devices(account));
  std::vector<uint32_t> out;
  for (int32_t d : devices)
    if (d > 0) out.push_back(static_cast<uint32_t>(d));
  std::sort(out.begin(), out.end());
  return out;
}

Result<uint32_t> SessionCrypto::remote_registration_id(const Address& peer) {
  SOTTO_TRY(check_address(peer));
  SOTTO_TRY_ASSIGN(bool has, has_session(peer));
  if (!has) return make_error(ErrorCode::kNoSession, "no session with " + describe(peer));
  signal_protocol_address address = address_of(peer);
  session_cipher* raw = nullptr;
  int rc = session_cipher_create(&raw, store_ctx_, &address, ctx_->get());
  std::unique_ptr<session_cipher, CipherFree> cipher(raw);
  if (rc < 0) return take_error(rc, "reading the session with " + describe(peer));
  uint32_t id = 0;
  rc = session_cipher_get_remote_registration_id(cipher.get(), &id);
  if (rc < 0 || store_error_) return take_error(rc, "reading the session with " + describe(peer));
  return id;
}

Result<Bytes> SessionCrypto::prekey_message_identity(ByteView prekey_message) {
  keys::Ref<pre_key_signal_message> message;
  int rc = pre_key_signal_message_deserialize(message.out(), prekey_message.data(),
                                              prekey_message.size(), ctx_->get());
  if (rc < 0) return parse_error(rc, "reading a PreKey message");
  return keys::serialize_public_key(pre_key_signal_message_get_identity_key(message.get()));
}

Result<std::optional<Bytes>> SessionCrypto::peer_identity(const std::string& account) {
  return store_.identity(account);
}

Status SessionCrypto::forget_identity(const std::string& account) {
  return transaction([&]() -> Status {
    SOTTO_TRY(store_.save_identity(account, {}));
    SOTTO_TRY(store_.delete_sessions(account));
    return {};
  });
}

// ---- groups ----

namespace {

Status check_group(ByteView group) {
  if (group.empty() || group.size() > 64)
    return make_error(ErrorCode::kInvalidArgument, "a group id is 1..64 bytes");
  return {};
}

signal_protocol_sender_key_name sender_key_name(ByteView group, const signal_protocol_address& a) {
  return signal_protocol_sender_key_name{reinterpret_cast<const char*>(group.data()), group.size(),
                                         a};
}

}  // namespace

Result<Bytes> SessionCrypto::group_sender_key(ByteView group) {
  if (!identity_) return make_error(ErrorCode::kInvalidState, "no identity yet: create one first");
  SOTTO_TRY(check_group(group));
  Address self{identity_->account, identity_->device_id};
  signal_protocol_address address = address_of(self);
  signal_protocol_sender_key_name name = sender_key_name(group, address);
  Bytes out;
  SOTTO_TRY(transaction([&]() -> Status {
    group_session_builder* raw = nullptr;
    int rc = group_session_builder_create(&raw, store_ctx_, ctx_->get());
    std::unique_ptr<group_session_builder, GroupBuilderFree> builder(raw);
    if (rc < 0) return take_error(rc, "creating a sender key");
    keys::Ref<sender_key_distribution_message> message;
    rc = group_session_builder_create_session(builder.get(), message.out(), &name);
    if (rc < 0 || store_error_) return take_error(rc, "creating a sender key");
    out = keys::copy(
        ciphertext_message_get_serialized(reinterpret_cast<ciphertext_message*>(message.get())));
    return {};
  }));
  return out;
}

Result<Bytes> SessionCrypto::group_rotate_sender_key(ByteView group) {
  if (!identity_) return make_error(ErrorCode::kInvalidState, "no identity yet: create one first");
  SOTTO_TRY(check_group(group));
  Bytes out;
  SOTTO_TRY(transaction([&]() -> Status {
    SOTTO_TRY(store_.delete_sender_key(group, identity_->account,
                                       static_cast<int32_t>(identity_->device_id)));
    SOTTO_TRY_ASSIGN(out, group_sender_key(group));
    return {};
  }));
  return out;
}

Status SessionCrypto::group_process_sender_key(ByteView group, const Address& sender,
                                               ByteView distribution) {
  SOTTO_TRY(check_group(group));
  SOTTO_TRY(check_address(sender));
  const std::string what = "reading the sender key of " + describe(sender);
  keys::Ref<sender_key_distribution_message> message;
  int rc = sender_key_distribution_message_deserialize(message.out(), distribution.data(),
                                                       distribution.size(), ctx_->get());
  if (rc < 0) return parse_error(rc, what);
  signal_protocol_address address = address_of(sender);
  signal_protocol_sender_key_name name = sender_key_name(group, address);
  return transaction([&]() -> Status {
    group_session_builder* raw = nullptr;
    rc = group_session_builder_create(&raw, store_ctx_, ctx_->get());
    std::unique_ptr<group_session_builder, GroupBuilderFree> builder(raw);
    if (rc < 0) return take_error(rc, what);
    rc = group_session_builder_process_session(builder.get(), &name, message.get());
    if (rc < 0 || store_error_) return take_error(rc, what);
    return {};
  });
}

Result<Bytes> SessionCrypto::group_encrypt(ByteView group, ByteView plaintext,
                                           const CiphertextHook& hook) {
  if (!identity_) return make_error(ErrorCode::kInvalidState, "no identity yet: create one first");
  SOTTO_TRY(check_group(group));
  Address self{identity_->account, identity_->device_id};
  signal_protocol_address address = address_of(self);
  signal_protocol_sender_key_name name = sender_key_name(group, address);
  Bytes padded = pad(plaintext);
  Ciphertext out{CiphertextType::kSenderKey, {}};
  SOTTO_TRY(transaction([&]() -> Status {
    group_cipher* raw = nullptr;
    int rc = group_cipher_create(&raw, store_ctx_, &name, ctx_->get());
    std::unique_ptr<group_cipher, GroupCipherFree> cipher(raw);
    if (rc < 0) return take_error(rc, "encrypting for the group");
    keys::Ref<ciphertext_message> message;
    rc = group_cipher_encrypt(cipher.get(), padded.data(), padded.size(), message.out());
    if (rc == SG_ERR_NO_SESSION)
      return make_error(ErrorCode::kNoSession,
                        "no sender key for this group yet: create it with group_sender_key() "
                        "and distribute it first");
    if (rc < 0 || store_error_) return take_error(rc, "encrypting for the group");
    out.bytes = keys::copy(ciphertext_message_get_serialized(message.get()));
    if (hook) SOTTO_TRY(hook(out));
    return {};
  }));
  return std::move(out.bytes);
}

Result<Bytes> SessionCrypto::group_decrypt(ByteView group, const Address& sender,
                                           ByteView ciphertext, const PlaintextHook& hook) {
  SOTTO_TRY(check_group(group));
  SOTTO_TRY(check_address(sender));
  const std::string what = "decrypting a group message from " + describe(sender);
  keys::Ref<sender_key_message> message;
  int rc = sender_key_message_deserialize(message.out(), ciphertext.data(), ciphertext.size(),
                                          ctx_->get());
  if (rc < 0) return parse_error(rc, what);
  signal_protocol_address address = address_of(sender);
  signal_protocol_sender_key_name name = sender_key_name(group, address);
  Bytes plaintext;
  SOTTO_TRY(transaction([&]() -> Status {
    group_cipher* raw = nullptr;
    rc = group_cipher_create(&raw, store_ctx_, &name, ctx_->get());
    std::unique_ptr<group_cipher, GroupCipherFree> cipher(raw);
    if (rc < 0) return take_error(rc, what);
    signal_buffer* raw_plain = nullptr;
    rc = group_cipher_decrypt(cipher.get(), message.get(), nullptr, &raw_plain);
    keys::Buffer padded(raw_plain);
    if (rc < 0 && !store_error_) return group_decrypt_error(group, sender, message.get(), rc, what);
    if (rc < 0 || store_error_) return take_error(rc, what);
    SOTTO_TRY_ASSIGN(plaintext, unpad(keys::view(padded.get())));
    if (hook) SOTTO_TRY(hook(plaintext));
    return {};
  }));
  return plaintext;
}

// libsignal reports a key id it has no state for as a malformed message; tell the two apart
// so a removed member sees why it cannot read on.
Error SessionCrypto::group_decrypt_error(ByteView group, const Address& sender,
                                         sender_key_message* message, int rc,
                                         const std::string& what) {
  auto record_bytes =
      store_.sender_key(group, sender.account, static_cast<int32_t>(sender.device_id));
  if (!record_bytes.ok()) return std::move(record_bytes).error();
  if (!*record_bytes)
    return make_error(ErrorCode::kNoSession,
                      what +
                          ": this device holds no sender key of that sender for this group "
                          "(never distributed to it, or forgotten after the sender left)");
  keys::Ref<sender_key_record> record;
  if (sender_key_record_deserialize(record.out(), (*record_bytes)->data(), (*record_bytes)->size(),
                                    ctx_->get()) == 0) {
    sender_key_state* state = nullptr;
    uint32_t key_id = sender_key_message_get_key_id(message);
    if (sender_key_record_get_sender_key_state_by_id(record.get(), &state, key_id) < 0)
      return make_error(ErrorCode::kUnknownKeyId,
                        what + ": the message uses sender key " + std::to_string(key_id) +
                            ", which was never distributed to this device (it joined later, "
                            "or was removed before the key was rotated)");
  }
  return keys::signal_error(rc, what);
}

Result<uint32_t> SessionCrypto::sender_key_message_id(ByteView bytes) {
  keys::Ref<sender_key_message> message;
  int rc = sender_key_message_deserialize(message.out(), bytes.data(), bytes.size(), ctx_->get());
  if (rc < 0) return parse_error(rc, "reading a group message");
  return sender_key_message_get_key_id(message.get());
}

Result<uint32_t> SessionCrypto::sender_key_distribution_id(ByteView bytes) {
  keys::Ref<sender_key_distribution_message> message;
  int rc = sender_key_distribution_message_deserialize(message.out(), bytes.data(), bytes.size(),
                                                       ctx_->get());
  if (rc < 0) return parse_error(rc, "reading a sender key");
  return sender_key_distribution_message_get_id(message.get());
}

Status SessionCrypto::group_forget_sender(ByteView group, const Address& sender) {
  SOTTO_TRY(check_group(group));
  SOTTO_TRY(check_address(sender));
  return store_.delete_sender_key(group, sender.account, static_cast<int32_t>(sender.device_id));
}

}  // namespace sotto
