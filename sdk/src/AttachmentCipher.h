// Attachment encryption (docs/protocol.md 14.8): libsodium secretstream (XChaCha20-Poly1305)
// in 64 KiB chunks under a fresh random key, streamed file to file so an attachment is never
// whole in memory. The SHA-256 digest of the encrypted blob travels in the AttachmentPointer;
// a download is checked against it before anything is decrypted.
//
// Thread rule: free functions, no shared state; any thread.
#pragma once

#include <atomic>
#include <cstdint>
#include <filesystem>
#include <functional>

#include "sotto/Bytes.h"
#include "sotto/Result.h"
#include "sotto/SecureBytes.h"

namespace sotto {

inline constexpr size_t kAttachmentChunk = 65536;

// Called with (bytes done, bytes total) after every chunk.
using Progress = std::function<void(uint64_t done, uint64_t total)>;

struct AttachmentSecrets {
  SecureBytes key;    // 32 bytes
  Bytes digest;       // SHA-256 of the whole blob
  uint64_t size = 0;  // plaintext bytes
  uint64_t blob_size = 0;
};

// The size of the blob for a plaintext of `size` bytes.
uint64_t attachment_blob_size(uint64_t size);

// Encrypts `plain` into `blob` (written to a temporary file beside it and renamed into place
// when complete). kCancelled when `cancel` became true; nothing is left behind on failure.
Result<AttachmentSecrets> encrypt_attachment(const std::filesystem::path& plain,
                                             const std::filesystem::path& blob,
                                             const Progress& progress = {},
                                             const std::atomic<bool>* cancel = nullptr);

// Receives the decrypted bytes in order, a chunk at a time (the buffer is wiped after the call);
// an error stops the decryption and is returned as it is.
using PlainSink = std::function<Status(ByteView chunk)>;

// Checks `blob` against `digest` first (kInvalidMessage when it differs: altered or damaged),
// then decrypts it into `sink`. kInvalidMessage also for a blob that is cut short, has bytes
// after its final chunk, does not decrypt under `key` or is not `expected_size` bytes of
// plaintext; the sink may have had part of it by then.
Status decrypt_attachment_to(const std::filesystem::path& blob, const PlainSink& sink,
                             const SecureBytes& key, ByteView digest, uint64_t expected_size,
                             const Progress& progress = {},
                             const std::atomic<bool>* cancel = nullptr);

// decrypt_attachment_to() into the file `plain`, written beside it and renamed into place only
// when the whole blob decrypted: `plain` is complete or untouched.
Status decrypt_attachment(const std::filesystem::path& blob, const std::filesystem::path& plain,
                          const SecureBytes& key, ByteView digest, uint64_t expected_size,
                          const Progress& progress = {}, const std::atomic<bool>* cancel = nullptr);

}  // namespace sotto
