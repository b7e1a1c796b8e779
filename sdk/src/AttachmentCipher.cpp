#include "AttachmentCipher.h"

#include <sodium.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "platform/Platform.h"

namespace sotto {
namespace fs = std::filesystem;

namespace {

constexpr size_t kHeader = crypto_secretstream_xchacha20poly1305_HEADERBYTES;
constexpr size_t kOverhead = crypto_secretstream_xchacha20poly1305_ABYTES;

using platform::File;

Error io_error(const fs::path& path, const char* what) {
  int err = errno;
  return make_error(err == ENOSPC ? ErrorCode::kStorageFull : ErrorCode::kStorageIo,
                    std::string(what) + " " + path.string() + ": " + std::strerror(err));
}

Result<File> open_file(const fs::path& path, const char* mode) {
  File f = platform::open_file(path, mode);
  if (!f) return io_error(path, "cannot open");
  return f;
}

// Reads up to n bytes; fewer only at the end of the file.
Result<size_t> read_some(std::FILE* f, uint8_t* buf, size_t n, const fs::path& path) {
  size_t got = std::fread(buf, 1, n, f);
  if (got < n && std::ferror(f)) return io_error(path, "cannot read");
  return got;
}

Status write_all(std::FILE* f, const uint8_t* buf, size_t n, const fs::path& path) {
  if (n && std::fwrite(buf, 1, n, f) != n) return io_error(path, "cannot write");
  return {};
}

bool cancelled(const std::atomic<bool>* cancel) { return cancel && cancel->load(); }

Error cancel_error() {
  return make_error(ErrorCode::kCancelled, "the attachment transfer was cancelled");
}

// Writes into `target` through a temporary file that is renamed into place by commit() and
// removed if the writer is dropped before that.
class AtomicOutput {
 public:
  explicit AtomicOutput(fs::path target) : target_(std::move(target)) {
    tmp_ = target_;
    tmp_ += ".part";
  }
  ~AtomicOutput() {
    file_.reset();
    if (!committed_) {
      std::error_code ec;
      fs::remove(tmp_, ec);
    }
  }
  Status open() {
    SOTTO_TRY_ASSIGN(file_, open_file(tmp_, "wb"));
    return {};
  }
  std::FILE* get() { return file_.get(); }
  const fs::path& path() const { return tmp_; }
  Status commit() {
    SOTTO_TRY(platform::sync_file(file_.get(), tmp_));
    file_.reset();
    std::error_code ec;
    fs::rename(tmp_, target_, ec);
    if (ec)
      return make_error(ErrorCode::kStorageIo,
                        "cannot move " + tmp_.string() + " into place: " + ec.message());
    committed_ = true;
    return {};
  }

 private:
  fs::path target_, tmp_;
  File file_;
  bool committed_ = false;
};

Result<Bytes> sha256_file(const fs::path& path, const Progress& progress, uint64_t total,
                          const std::atomic<bool>* cancel) {
  SOTTO_TRY_ASSIGN(File f, open_file(path, "rb"));
  crypto_hash_sha256_state st;
  crypto_hash_sha256_init(&st);
  std::vector<uint8_t> buf(kAttachmentChunk + kOverhead);
  uint64_t done = 0;
  for (;;) {
    if (cancelled(cancel)) return cancel_error();
    SOTTO_TRY_ASSIGN(size_t n, read_some(f.get(), buf.data(), buf.size(), path));
    if (n == 0) break;
    crypto_hash_sha256_update(&st, buf.data(), n);
    done += n;
    if (progress) progress(done, total);
  }
  Bytes digest(crypto_hash_sha256_BYTES);
  crypto_hash_sha256_final(&st, digest.data());
  return digest;
}

}  // namespace

uint64_t attachment_blob_size(uint64_t size) {
  uint64_t chunks = size == 0 ? 1 : (size + kAttachmentChunk - 1) / kAttachmentChunk;
  return kHeader + size + kOverhead * chunks;
}

Result<AttachmentSecrets> encrypt_attachment(const fs::path& plain, const fs::path& blob,
                                             const Progress& progress,
                                             const std::atomic<bool>* cancel) {
  if (sodium_init() < 0)
    return make_error(ErrorCode::kCryptoFailure, "libsodium could not be initialised");
  std::error_code ec;
  uint64_t size = fs::file_size(plain, ec);
  if (ec)
    return make_error(ErrorCode::kNotFound, "cannot read " + plain.string() + ": " + ec.message());
  SOTTO_TRY_ASSIGN(File in, open_file(plain, "rb"));
  AtomicOutput out(blob);
  SOTTO_TRY(out.open());

  AttachmentSecrets secrets;
  secrets.key = SecureBytes(crypto_secretstream_xchacha20poly1305_KEYBYTES);
  crypto_secretstream_xchacha20poly1305_keygen(secrets.key.data());
  crypto_secretstream_xchacha20poly1305_state st;
  uint8_t header[kHeader];
  crypto_secretstream_xchacha20poly1305_init_push(&st, header, secrets.key.data());
  crypto_hash_sha256_state hash;
  crypto_hash_sha256_init(&hash);
  SOTTO_TRY(write_all(out.get(), header, kHeader, out.path()));
  crypto_hash_sha256_update(&hash, header, kHeader);

  SecureBytes chunk(kAttachmentChunk);
  std::vector<uint8_t> sealed(kAttachmentChunk + kOverhead);
  uint64_t done = 0;
  for (;;) {
    if (cancelled(cancel)) return cancel_error();
    SOTTO_TRY_ASSIGN(size_t n, read_some(in.get(), chunk.data(), kAttachmentChunk, plain));
    done += n;
    // The file may have grown since it was measured; the pointer must describe what was sent.
    if (done > size)
      return make_error(ErrorCode::kInvalidState,
                        plain.string() + " changed while it was being encrypted; send it again");
    bool last = done == size;
    unsigned long long sealed_len = 0;
    crypto_secretstream_xchacha20poly1305_push(
        &st, sealed.data(), &sealed_len, chunk.data(), n, nullptr, 0,
        last ? crypto_secretstream_xchacha20poly1305_TAG_FINAL
             : crypto_secretstream_xchacha20poly1305_TAG_MESSAGE);
    SOTTO_TRY(write_all(out.get(), sealed.data(), sealed_len, out.path()));
    crypto_hash_sha256_update(&hash, sealed.data(), sealed_len);
    if (progress) progress(done, size);
    if (last) break;
    if (n == 0)
      return make_error(ErrorCode::kInvalidState,
                        plain.string() + " shrank while it was being encrypted; send it again");
  }
  sodium_memzero(&st, sizeof st);
  secrets.digest.resize(crypto_hash_sha256_BYTES);
  crypto_hash_sha256_final(&hash, secrets.digest.data());
  secrets.size = size;
  secrets.blob_size = attachment_blob_size(size);
  SOTTO_TRY(out.commit());
  return secrets;
}

Status decrypt_attachment_to(const fs::path& blob, const PlainSink& sink, const SecureBytes& key,
                             ByteView digest, uint64_t expected_size, const Progress& progress,
                             const std::atomic<bool>* cancel) {
  if (sodium_init() < 0)
    return make_error(ErrorCode::kCryptoFailure, "libsodium could not be initialised");
  if (key.size() != crypto_secretstream_xchacha20poly1305_KEYBYTES ||
      digest.size() != crypto_hash_sha256_BYTES)
    return make_error(ErrorCode::kInvalidArgument,
                      "an attachment key and digest are 32 bytes each");
  auto damaged = [&](const std::string& why) {
    return make_error(ErrorCode::kInvalidMessage,
                      "the attachment " + why + ": it was altered or damaged; download it again");
  };
  std::error_code ec;
  uint64_t blob_size = fs::file_size(blob, ec);
  if (ec) return make_error(ErrorCode::kNotFound, "cannot read " + blob.string());
  if (blob_size != attachment_blob_size(expected_size))
    return damaged("is " + std::to_string(blob_size) + " bytes, not the " +
                   std::to_string(attachment_blob_size(expected_size)) + " its pointer announces");

  // Nothing is decrypted, let alone shown, before the whole blob matches its digest. The
  // digest pass counts as the first half of the progress.
  Progress half =
      progress ? Progress([&](uint64_t d, uint64_t) { progress(d / 2, blob_size); }) : Progress();
  SOTTO_TRY_ASSIGN(Bytes actual, sha256_file(blob, half, blob_size, cancel));
  if (sodium_memcmp(actual.data(), digest.data(), actual.size()) != 0)
    return damaged("does not match its digest");

  SOTTO_TRY_ASSIGN(File in, open_file(blob, "rb"));
  uint8_t header[kHeader];
  SOTTO_TRY_ASSIGN(size_t got, read_some(in.get(), header, kHeader, blob));
  crypto_secretstream_xchacha20poly1305_state st;
  if (got != kHeader ||
      crypto_secretstream_xchacha20poly1305_init_pull(&st, header, key.data()) != 0)
    return damaged("has a bad header");

  std::vector<uint8_t> sealed(kAttachmentChunk + kOverhead);
  SecureBytes chunk(kAttachmentChunk);
  uint64_t done = kHeader, written = 0;
  bool final_seen = false;
  while (!final_seen) {
    if (cancelled(cancel)) return cancel_error();
    SOTTO_TRY_ASSIGN(size_t n, read_some(in.get(), sealed.data(), sealed.size(), blob));
    if (n < kOverhead) return damaged("ends before its final chunk");
    unsigned long long len = 0;
    unsigned char tag = 0;
    if (crypto_secretstream_xchacha20poly1305_pull(&st, chunk.data(), &len, &tag, sealed.data(), n,
                                                   nullptr, 0) != 0)
      return damaged("does not decrypt with its key");
    final_seen = tag == crypto_secretstream_xchacha20poly1305_TAG_FINAL;
    if (!final_seen && n != sealed.size()) return damaged("ends before its final chunk");
    SOTTO_TRY(sink(ByteView(chunk.data(), static_cast<size_t>(len))));
    written += len;
    done += n;
    if (progress) progress(blob_size / 2 + done / 2, blob_size);
  }
  sodium_memzero(&st, sizeof st);
  if (progress) progress(blob_size, blob_size);
  uint8_t extra = 0;
  SOTTO_TRY_ASSIGN(size_t trailing, read_some(in.get(), &extra, 1, blob));
  if (trailing != 0) return damaged("has data after its final chunk");
  if (written != expected_size)
    return damaged("decrypts to " + std::to_string(written) + " bytes, not " +
                   std::to_string(expected_size));
  return {};
}

Status decrypt_attachment(const fs::path& blob, const fs::path& plain, const SecureBytes& key,
                          ByteView digest, uint64_t expected_size, const Progress& progress,
                          const std::atomic<bool>* cancel) {
  AtomicOutput out(plain);
  SOTTO_TRY(out.open());
  SOTTO_TRY(decrypt_attachment_to(
      blob,
      [&](ByteView chunk) { return write_all(out.get(), chunk.data(), chunk.size(), out.path()); },
      key, digest, expected_size, progress, cancel));
  return out.commit();
}

}  // namespace sotto
