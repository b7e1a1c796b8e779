#include "AttachmentCipher.h"

#include <gtest/gtest.h>
#include <sodium.h>

#include <fstream>

#include "TestSupport.h"

namespace sotto {
namespace {
namespace fs = std::filesystem;

Bytes random_bytes(size_t n) {
  Bytes b(n);
  if (n) randombytes_buf(b.data(), b.size());  // an empty vector's data() may be null
  return b;
}

void write_file(const fs::path& p, const Bytes& b) {
  std::ofstream(p, std::ios::binary)
      .write(reinterpret_cast<const char*>(b.data()), static_cast<std::streamsize>(b.size()));
}

// Rewrites a blob and returns the digest a sender would have announced for the new bytes.
Bytes rewrite_with_digest(const fs::path& p, const Bytes& blob) {
  write_file(p, blob);
  Bytes d(crypto_hash_sha256_BYTES);
  crypto_hash_sha256(d.data(), blob.data(), blob.size());
  return d;
}

class AttachmentCipher : public ::testing::Test {
 protected:
  void SetUp() override { ASSERT_GE(sodium_init(), 0); }
  AttachmentSecrets encrypt(const Bytes& content) {
    write_file(dir / "in", content);
    auto s = encrypt_attachment(dir / "in", dir / "blob");
    EXPECT_TRUE(s.ok()) << s.error().message;
    return std::move(s).value();
  }
  test::TempDir dir;
};

TEST_F(AttachmentCipher, RoundTripsEverySizeAroundChunkEdges) {
  for (size_t n : {size_t{0}, size_t{1}, kAttachmentChunk - 1, kAttachmentChunk,
                   kAttachmentChunk + 1, 3 * kAttachmentChunk + 5}) {
    Bytes content = random_bytes(n);
    auto s = encrypt(content);
    EXPECT_EQ(s.size, n);
    EXPECT_EQ(s.key.size(), 32u);
    EXPECT_EQ(fs::file_size(dir / "blob"), attachment_blob_size(n)) << n;
    EXPECT_EQ(s.blob_size, attachment_blob_size(n));
    auto st = decrypt_attachment(dir / "blob", dir / "out", s.key, s.digest, n);
    ASSERT_TRUE(st.ok()) << n << ": " << st.error().message;
    EXPECT_EQ(test::read_file(dir / "out"), content) << n;
    EXPECT_FALSE(fs::exists(dir / "out.part"));
  }
}

// Into memory, a chunk at a time and in order; a sink that fails stops it with its error.
TEST_F(AttachmentCipher, DecryptsIntoASinkThatCanStopIt) {
  Bytes content = random_bytes(3 * kAttachmentChunk + 7);
  auto s = encrypt(content);
  Bytes got;
  size_t calls = 0;
  auto st = decrypt_attachment_to(
      dir / "blob",
      [&](ByteView chunk) -> Status {
        ++calls;
        got.insert(got.end(), chunk.begin(), chunk.end());
        return {};
      },
      s.key, s.digest, s.size);
  ASSERT_TRUE(st.ok()) << st.error().message;
  EXPECT_EQ(got, content);
  EXPECT_EQ(calls, 4u);
  calls = 0;
  st = decrypt_attachment_to(
      dir / "blob",
      [&](ByteView) -> Status {
        ++calls;
        return make_error(ErrorCode::kStorageFull, "no room");
      },
      s.key, s.digest, s.size);
  EXPECT_EQ(st.code(), ErrorCode::kStorageFull);
  EXPECT_EQ(calls, 1u);
}

TEST_F(AttachmentCipher, BlobHidesContentAndKeysDiffer) {
  Bytes content(5000, 'A');
  auto a = encrypt(content);
  Bytes blob_a = test::read_file(dir / "blob");
  auto b = encrypt(content);
  EXPECT_FALSE(a.key == b.key);
  EXPECT_NE(a.digest, b.digest);
  EXPECT_FALSE(test::contains(blob_a, std::string(64, 'A')));
}

TEST_F(AttachmentCipher, TamperedBlobIsRefusedBeforeDecrypting) {
  Bytes content = random_bytes(2 * kAttachmentChunk + 100);
  auto s = encrypt(content);
  Bytes blob = test::read_file(dir / "blob");
  for (size_t at : {size_t{0}, size_t{30}, blob.size() / 2, blob.size() - 1}) {
    Bytes bad = blob;
    bad[at] ^= 0x01;
    write_file(dir / "blob", bad);
    auto st = decrypt_attachment(dir / "blob", dir / "out", s.key, s.digest, s.size);
    EXPECT_EQ(st.code(), ErrorCode::kInvalidMessage) << at;
    EXPECT_NE(st.error().message.find("digest"), std::string::npos) << st.error().message;
    EXPECT_FALSE(fs::exists(dir / "out")) << at;
    EXPECT_FALSE(fs::exists(dir / "out.part")) << at;
  }
}

TEST_F(AttachmentCipher, ForgedBlobsWithMatchingDigestsStillFail) {
  Bytes content = random_bytes(2 * kAttachmentChunk + 100);
  auto s = encrypt(content);
  Bytes blob = test::read_file(dir / "blob");
  const size_t sealed = kAttachmentChunk + crypto_secretstream_xchacha20poly1305_ABYTES;

  // Whoever can rewrite the pointer's digest still cannot forge chunks without the key...
  Bytes flipped = blob;
  flipped[24 + 10] ^= 0x01;
  auto d = rewrite_with_digest(dir / "blob", flipped);
  EXPECT_EQ(decrypt_attachment(dir / "blob", dir / "out", s.key, d, s.size).code(),
            ErrorCode::kInvalidMessage);
  // ...nor drop the final chunk (size and TAG_FINAL are both checked)...
  Bytes cut(blob.begin(), blob.begin() + static_cast<long>(24 + 2 * sealed));
  d = rewrite_with_digest(dir / "blob", cut);
  EXPECT_EQ(decrypt_attachment(dir / "blob", dir / "out", s.key, d, 2 * kAttachmentChunk).code(),
            ErrorCode::kInvalidMessage);
  // ...nor append bytes after it.
  Bytes longer = blob;
  longer.push_back(0);
  d = rewrite_with_digest(dir / "blob", longer);
  EXPECT_EQ(decrypt_attachment(dir / "blob", dir / "out", s.key, d, s.size).code(),
            ErrorCode::kInvalidMessage);
  // And the wrong key fails even with the right digest.
  d = rewrite_with_digest(dir / "blob", blob);
  SecureBytes wrong(32);
  EXPECT_EQ(decrypt_attachment(dir / "blob", dir / "out", wrong, d, s.size).code(),
            ErrorCode::kInvalidMessage);
  EXPECT_FALSE(fs::exists(dir / "out"));
  ASSERT_TRUE(decrypt_attachment(dir / "blob", dir / "out", s.key, d, s.size).ok());
}

TEST_F(AttachmentCipher, ProgressIsMonotonicAndCancelLeavesNothing) {
  Bytes content = random_bytes(5 * kAttachmentChunk);
  write_file(dir / "in", content);
  uint64_t last = 0, calls = 0;
  auto s = encrypt_attachment(dir / "in", dir / "blob", [&](uint64_t done, uint64_t total) {
    EXPECT_GE(done, last);
    EXPECT_EQ(total, content.size());
    last = done;
    ++calls;
  });
  ASSERT_TRUE(s.ok());
  EXPECT_EQ(last, content.size());
  EXPECT_EQ(calls, 5u);

  std::atomic<bool> cancel{false};
  auto st = decrypt_attachment(
      dir / "blob", dir / "out", s->key, s->digest, s->size,
      [&](uint64_t done, uint64_t total) {
        if (done > total / 2) cancel = true;
      },
      &cancel);
  EXPECT_EQ(st.code(), ErrorCode::kCancelled);
  EXPECT_FALSE(fs::exists(dir / "out"));
  EXPECT_FALSE(fs::exists(dir / "out.part"));

  cancel = true;
  auto again = encrypt_attachment(dir / "in", dir / "blob2", {}, &cancel);
  EXPECT_EQ(again.code(), ErrorCode::kCancelled);
  EXPECT_FALSE(fs::exists(dir / "blob2"));
  EXPECT_FALSE(fs::exists(dir / "blob2.part"));
}

TEST_F(AttachmentCipher, MissingFilesAndBadArgumentsAreClearErrors) {
  EXPECT_EQ(encrypt_attachment(dir / "nope", dir / "blob").code(), ErrorCode::kNotFound);
  SecureBytes key(32);
  Bytes digest(32);
  EXPECT_EQ(decrypt_attachment(dir / "nope", dir / "out", key, digest, 1).code(),
            ErrorCode::kNotFound);
  EXPECT_EQ(decrypt_attachment(dir / "nope", dir / "out", SecureBytes(3), digest, 1).code(),
            ErrorCode::kInvalidArgument);
}

}  // namespace
}  // namespace sotto
