// Untrusted bytes: an attachment as the sender describes it and the relay serves it. The key,
// digest and size come from the sender's message, the blob from the relay; a sender who wants
// to hurt the receiver chooses all four, and so gets past the digest check at will.
//
// Input: a mode byte, then
//   even: key (32), digest (32), size (u64 LE), blob (the rest), taken as they are;
//   odd:  u16 plaintext length (in 64-byte units, filled from the input's own bytes), then
//         edits to the blob the target encrypts from it (each: a byte picking truncate, flip a
//         bit, append, or change the announced size, and a u32 operand); the digest is then
//         computed over the edited blob, as a sender who edits it would.
//
// Checked: a blob that decrypts matches its digest and the announced size, and (odd mode)
// is exactly what was encrypted, so an edited blob is refused; a refused one leaves no file
// behind (neither the plaintext nor a partial file); progress never goes back or past its
// total.
#include <sodium.h>
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>

#include "AttachmentCipher.h"

namespace {

using namespace sotto;
namespace fs = std::filesystem;

[[noreturn]] void violated(const std::string& what) {
  std::fprintf(stderr, "attachment invariant violated: %s\n", what.c_str());
  std::abort();
}

class Input {
 public:
  Input(const uint8_t* data, size_t size) : data_(data), size_(size) {}
  bool done() const { return pos_ >= size_; }
  uint8_t byte() { return pos_ < size_ ? data_[pos_++] : 0; }
  uint64_t le(int bytes) {
    uint64_t v = 0;
    for (int i = 0; i < bytes; ++i) v |= uint64_t{byte()} << (8 * i);
    return v;
  }
  Bytes take(size_t n) {
    n = std::min(n, size_ - std::min(pos_, size_));
    Bytes out(data_ + pos_, data_ + pos_ + n);
    pos_ += n;
    return out;
  }
  Bytes rest() { return take(size_); }

 private:
  const uint8_t* data_;
  size_t size_;
  size_t pos_ = 0;
};

struct Dir {
  fs::path path;
  Dir() {
    const char* tmp = std::getenv("TMPDIR");
    std::string pattern = std::string(tmp && *tmp ? tmp : "/tmp") + "/sotto-fuzz-attach-XXXXXX";
    if (!::mkdtemp(pattern.data())) violated("cannot make a directory in TMPDIR");
    path = pattern;
    static fs::path for_exit;
    for_exit = path;
    std::atexit([] {
      std::error_code ec;
      fs::remove_all(for_exit, ec);
    });
  }
};

void write(const fs::path& p, const Bytes& b) {
  std::ofstream out(p, std::ios::binary | std::ios::trunc);
  out.write(reinterpret_cast<const char*>(b.data()), static_cast<std::streamsize>(b.size()));
  if (!out) violated("cannot write " + p.string());
}

Bytes read(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  return Bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
}

Bytes sha256(const Bytes& b) {
  Bytes d(crypto_hash_sha256_BYTES);
  crypto_hash_sha256(d.data(), b.data(), b.size());
  return d;
}

// Decrypts and checks what every outcome must satisfy; the plaintext when it decrypted.
std::optional<Bytes> open(const Dir& dir, const Bytes& blob_bytes, const SecureBytes& key,
                          const Bytes& digest, uint64_t size) {
  fs::path blob = dir.path / "blob", plain = dir.path / "plain";
  std::error_code ec;
  fs::remove(plain, ec);
  write(blob, blob_bytes);
  uint64_t last_done = 0, last_total = 0;
  Status s = decrypt_attachment(blob, plain, key, digest, size, [&](uint64_t done, uint64_t total) {
    if (done > total || (total == last_total && done < last_done))
      violated("progress " + std::to_string(done) + " of " + std::to_string(total) + " after " +
               std::to_string(last_done) + " of " + std::to_string(last_total));
    last_done = done;
    last_total = total;
  });
  fs::path partial = plain;
  partial += ".part";
  if (fs::exists(partial, ec)) violated("a partial file was left behind");
  if (!s.ok()) {
    if (fs::exists(plain, ec)) violated("a refused attachment left its plaintext behind");
    if (s.code() == ErrorCode::kStorageIo || s.code() == ErrorCode::kStorageFull)
      violated("the target's own files failed: " + s.error().message);
    return std::nullopt;
  }
  if (sha256(blob_bytes) != digest) violated("a blob that does not match its digest decrypted");
  Bytes out = read(plain);
  if (out.size() != size)
    violated("decrypted to " + std::to_string(out.size()) + " bytes, the sender announced " +
             std::to_string(size));
  return out;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static Dir dir;
  if (size == 0) return 0;
  Input in(data, size);
  if (in.byte() % 2 == 0) {
    Bytes key = in.take(32), digest = in.take(32);
    uint64_t announced = in.le(8);
    if (key.size() != 32 || digest.size() != 32) return 0;
    (void)open(dir, in.rest(), SecureBytes(key.data(), key.size()), digest, announced);
    return 0;
  }
  // The sender encrypts a file, then edits the blob and computes its digest anew.
  size_t length = static_cast<size_t>(in.le(2)) * 64 % (3 * kAttachmentChunk + 1000);
  Bytes plaintext(length);
  for (size_t i = 0; i < length; ++i) plaintext[i] = data[i % size];
  write(dir.path / "file", plaintext);
  auto secrets = encrypt_attachment(dir.path / "file", dir.path / "sent");
  if (!secrets.ok()) violated("cannot encrypt: " + secrets.error().message);
  Bytes blob = read(dir.path / "sent");
  const Bytes original = blob;
  uint64_t announced = secrets->size;
  for (int edits = 0; edits < 8 && !in.done(); ++edits) {
    uint8_t kind = in.byte();
    uint32_t operand = static_cast<uint32_t>(in.le(4));
    switch (kind % 4) {
      case 0:
        if (!blob.empty()) blob.resize(operand % blob.size());
        break;
      case 1:
        if (!blob.empty()) blob[operand % blob.size()] ^= static_cast<uint8_t>(1u << (kind >> 5));
        break;
      case 2: {
        Bytes more = in.take(operand % 256);
        blob.insert(blob.end(), more.begin(), more.end());
        break;
      }
      case 3:
        // Announced sizes near the top of the range wrap the blob size arithmetic.
        announced = (kind & 0x80) ? ~uint64_t{0} - operand : announced + operand % 70000;
        break;
    }
  }
  auto out = open(dir, blob, secrets->key, sha256(blob), announced);
  if (out && blob != original) violated("an edited blob decrypted");
  if (blob == original && announced == secrets->size && out != plaintext)
    violated("the blob as sent did not decrypt to the file");
  return 0;
}
