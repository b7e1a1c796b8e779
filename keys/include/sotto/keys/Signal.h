// The libsignal-protocol-c adapter: the global context (crypto provider, recursive lock)
// and RAII owners for its reference-counted objects and buffers. libsignal-protocol-c is
// archived upstream, so nothing outside keys/ and sdk/src/ may include its headers.
#pragma once

#include <signal_protocol.h>

#include <memory>
#include <mutex>
#include <string_view>
#include <utility>

#include "sotto/Bytes.h"
#include "sotto/Result.h"

namespace sotto::keys {

// Owner of one reference to a signal_type_base-derived object (session_record, ec_public_key,
// ciphertext_message, ...). Move-only.
template <class T>
class Ref {
 public:
  Ref() = default;
  explicit Ref(T* p) : p_(p) {}  // adopts the caller's reference
  Ref(const Ref&) = delete;
  Ref& operator=(const Ref&) = delete;
  Ref(Ref&& o) noexcept : p_(std::exchange(o.p_, nullptr)) {}
  Ref& operator=(Ref&& o) noexcept {
    if (this != &o) {
      reset();
      p_ = std::exchange(o.p_, nullptr);
    }
    return *this;
  }
  ~Ref() { reset(); }

  // Takes a new reference to an object someone else owns (a getter's result).
  static Ref share(T* p) {
    if (p) signal_type_ref(reinterpret_cast<signal_type_base*>(p));
    return Ref(p);
  }

  T* get() const noexcept { return p_; }
  explicit operator bool() const noexcept { return p_ != nullptr; }
  // For out-parameters: releases what is held and hands libsignal the slot.
  T** out() noexcept {
    reset();
    return &p_;
  }
  void reset() noexcept {
    if (p_) signal_type_unref(reinterpret_cast<signal_type_base*>(p_));
    p_ = nullptr;
  }

 private:
  T* p_ = nullptr;
};

struct BufferFree {
  void operator()(signal_buffer* b) const noexcept { signal_buffer_bzero_free(b); }
};
// Owner of a signal_buffer; wiped when freed since buffers often hold key material.
using Buffer = std::unique_ptr<signal_buffer, BufferFree>;

inline ByteView view(const signal_buffer* b) {
  return b ? ByteView(signal_buffer_const_data(b), signal_buffer_len(b)) : ByteView();
}
inline Bytes copy(const signal_buffer* b) {
  ByteView v = view(b);
  return Bytes(v.begin(), v.end());
}

// The libsignal global context with sotto's OpenSSL crypto provider and a recursive lock.
// Thread-safe: libsignal takes the lock around its own shared state.
class Context {
 public:
  static Result<std::shared_ptr<Context>> create();
  ~Context();
  Context(const Context&) = delete;
  Context& operator=(const Context&) = delete;

  signal_context* get() const noexcept { return ctx_; }

 private:
  Context() = default;
  static void lock(void* user_data);
  static void unlock(void* user_data);

  signal_context* ctx_ = nullptr;
  std::recursive_mutex mu_;
};

// Turns a libsignal return code into a typed error. `what` names the operation, e.g.
// "decrypting a message from bob.2".
Error signal_error(int rc, std::string_view what);

// Decode a serialized (0x05-prefixed, 33-byte) Curve25519 public key.
Result<Ref<ec_public_key>> decode_public_key(const Context& ctx, ByteView key,
                                             std::string_view what);
Result<Bytes> serialize_public_key(const ec_public_key* key);

}  // namespace sotto::keys
