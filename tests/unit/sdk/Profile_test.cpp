#include "sotto/Profile.h"

#include <gtest/gtest.h>

#include <fstream>
#include <set>

#include "Devices.h"
#include "TestSupport.h"
#include "sotto/proto/wire.pb.h"

namespace sotto {
namespace {
namespace fs = std::filesystem;
using test::TempDir;

const SecureBytes kPass = SecureBytes::from_string("correct horse battery staple");

TEST(Profile, CreatesWithPassphraseAndReopensWithIdentityIntact) {
  TempDir dir;
  Bytes identity_key;
  {
    auto p = Profile::open(dir.path(), kPass);
    ASSERT_TRUE(p.ok()) << p.error().message;
    EXPECT_FALSE((*p)->has_identity());
    ASSERT_TRUE((*p)->create_identity("alice", 1).ok());
    identity_key = (*p)->identity()->identity_key;
    EXPECT_EQ(*(*p)->prekey_count(), 100u);
  }
  auto p = Profile::open(dir.path(), kPass);
  ASSERT_TRUE(p.ok()) << p.error().message;
  ASSERT_TRUE((*p)->has_identity());
  EXPECT_EQ((*p)->identity()->account, "alice");
  EXPECT_EQ((*p)->identity()->identity_key, identity_key);
  EXPECT_EQ((*p)->create_identity("alice", 1).code(), ErrorCode::kAlreadyExists);
}

TEST(Profile, DatabaseIsEncryptedOnDisk) {
  TempDir dir;
  { ASSERT_TRUE(Profile::open(dir.path(), kPass).ok()); }
  Bytes file = test::read_file(dir / "profile.db");
  ASSERT_GE(file.size(), 4096u);
  EXPECT_FALSE(test::contains(file, "SQLite format 3"));
  EXPECT_FALSE(test::contains(file, "CREATE TABLE"));
}

TEST(Profile, WrongPassphraseSaysSoAndChangesNoByte) {
  TempDir dir;
  {
    auto p = Profile::open(dir.path(), kPass);
    ASSERT_TRUE(p.ok());
    ASSERT_TRUE((*p)->create_identity("alice", 1).ok());
  }
  auto before = test::read_tree(dir.path());
  auto wrong = Profile::open(dir.path(), SecureBytes::from_string("Correct horse battery staple"));
  ASSERT_FALSE(wrong.ok());
  EXPECT_EQ(wrong.code(), ErrorCode::kWrongKey);
  EXPECT_NE(wrong.error().message.find("wrong passphrase"), std::string::npos)
      << wrong.error().message;
  EXPECT_EQ(wrong.error().message.find("correct horse"), std::string::npos);
  auto after = test::read_tree(dir.path());
  EXPECT_EQ(before, after);  // every file, byte for byte
  EXPECT_TRUE(Profile::open(dir.path(), kPass).ok());
}

TEST(Profile, AppKeyProfilesRefuseWrongKeysAndPassphrases) {
  TempDir dir;
  SecureBytes key = test::test_key("app");
  { ASSERT_TRUE(Profile::open_with_key(dir.path(), key).ok()); }
  auto before = test::read_file(dir / "profile.db");
  EXPECT_EQ(Profile::open_with_key(dir.path(), test::test_key("other")).code(),
            ErrorCode::kWrongKey);
  auto as_pass = Profile::open(dir.path(), kPass);
  EXPECT_EQ(as_pass.code(), ErrorCode::kWrongKey);
  EXPECT_NE(as_pass.error().message.find("app-supplied key"), std::string::npos);
  EXPECT_EQ(Profile::open_with_key(dir.path(), SecureBytes(16)).code(),
            ErrorCode::kInvalidArgument);
  EXPECT_EQ(before, test::read_file(dir / "profile.db"));
  EXPECT_TRUE(Profile::open_with_key(dir.path(), key).ok());
}

TEST(Profile, EmptyPassphraseAndMissingProfileAreClearErrors) {
  TempDir dir;
  EXPECT_EQ(Profile::open(dir.path(), SecureBytes()).code(), ErrorCode::kInvalidArgument);
  ProfileOptions no_create;
  no_create.create_if_missing = false;
  EXPECT_EQ(Profile::open(dir / "nothing", kPass, no_create).code(), ErrorCode::kNotFound);
  EXPECT_EQ(Profile::open(dir.path(), kPass, no_create).code(), ErrorCode::kNotFound);
}

TEST(Profile, OnlyOneOpenerAtATime) {
  TempDir dir;
  auto first = Profile::open_with_key(dir.path(), test::test_key("k"));
  ASSERT_TRUE(first.ok());
  auto second = Profile::open_with_key(dir.path(), test::test_key("k"));
  EXPECT_EQ(second.code(), ErrorCode::kBusy);
  first->reset();
  EXPECT_TRUE(Profile::open_with_key(dir.path(), test::test_key("k")).ok());
}

TEST(Profile, ChangePassphraseRekeysTheDatabase) {
  TempDir dir;
  const SecureBytes next = SecureBytes::from_string("a new passphrase");
  {
    auto p = Profile::open(dir.path(), kPass);
    ASSERT_TRUE((*p)->create_identity("alice", 1).ok());
    ASSERT_TRUE((*p)->change_passphrase(next).ok());
    EXPECT_TRUE((*p)->identity().ok());  // still usable after the rekey
  }
  EXPECT_EQ(Profile::open(dir.path(), kPass).code(), ErrorCode::kWrongKey);
  auto p = Profile::open(dir.path(), next);
  ASSERT_TRUE(p.ok()) << p.error().message;
  EXPECT_EQ((*p)->identity()->account, "alice");
  // From passphrase to an app key and back.
  SecureBytes key = test::test_key("keystore");
  ASSERT_TRUE((*p)->change_key(key).ok());
  p->reset();
  EXPECT_EQ(Profile::open(dir.path(), next).code(), ErrorCode::kWrongKey);
  EXPECT_TRUE(Profile::open_with_key(dir.path(), key).ok());
}

TEST(Profile, KeyChangeInterruptedBeforeTheRekeyKeepsTheOldSecret) {
  TempDir dir;
  { ASSERT_TRUE(Profile::open(dir.path(), kPass).ok()); }
  // A crash right after profile.kdf.next was written: the database still has the old key.
  fs::copy_file(dir / "profile.kdf", dir / "profile.kdf.next");
  std::ofstream(dir / "profile.kdf.next", std::ios::trunc)
      << "sotto-profile-kdf 1\nargon2id13 2 67108864 00112233445566778899aabbccddeeff\n";
  auto p = Profile::open(dir.path(), kPass);
  ASSERT_TRUE(p.ok()) << p.error().message;
  EXPECT_FALSE(fs::exists(dir / "profile.kdf.next"));
}

TEST(Profile, KeyChangeInterruptedAfterTheRekeyFinishesOnOpen) {
  TempDir dir;
  const SecureBytes next = SecureBytes::from_string("the new one");
  std::string old_kdf;
  {
    auto p = Profile::open(dir.path(), kPass);
    ASSERT_TRUE(p.ok());
    old_kdf = test::text(test::read_file(dir / "profile.kdf"));
    ASSERT_TRUE((*p)->change_passphrase(next).ok());
  }
  // Recreate the state of a crash between the rekey and the final rename.
  fs::rename(dir / "profile.kdf", dir / "profile.kdf.next");
  std::ofstream(dir / "profile.kdf", std::ios::trunc) << old_kdf;
  EXPECT_EQ(Profile::open(dir.path(), kPass).code(), ErrorCode::kWrongKey);
  auto p = Profile::open(dir.path(), next);
  ASSERT_TRUE(p.ok()) << p.error().message;
  EXPECT_FALSE(fs::exists(dir / "profile.kdf.next"));
  p->reset();
  EXPECT_TRUE(Profile::open(dir.path(), next).ok());
}

TEST(Profile, DamagedKdfFileIsReportedNotGuessed) {
  TempDir dir;
  { ASSERT_TRUE(Profile::open(dir.path(), kPass).ok()); }
  std::ofstream(dir / "profile.kdf", std::ios::trunc) << "garbage\n";
  auto p = Profile::open(dir.path(), kPass);
  EXPECT_EQ(p.code(), ErrorCode::kStorageCorrupt);
  fs::remove(dir / "profile.kdf");
  EXPECT_EQ(Profile::open(dir.path(), kPass).code(), ErrorCode::kStorageCorrupt);
}

TEST(Profile, IssuedBundlesNeverRepeatAOneTimePreKey) {
  test::Device bob("bob", 1);
  std::set<uint32_t> ids;
  for (int i = 0; i < 10; ++i) {
    auto b = bob->issue_bundle();
    ASSERT_TRUE(b.ok());
    wire::PreKeyBundle parsed;
    ASSERT_TRUE(parsed.ParseFromArray(b->data(), static_cast<int>(b->size())));
    ASSERT_TRUE(parsed.has_one_time_prekey());
    EXPECT_TRUE(ids.insert(parsed.one_time_prekey().id()).second);
  }
  // The pool of 10 is exhausted: the bundle comes with the signed prekey only.
  auto b = bob->issue_bundle();
  wire::PreKeyBundle parsed;
  ASSERT_TRUE(parsed.ParseFromArray(b->data(), static_cast<int>(b->size())));
  EXPECT_FALSE(parsed.has_one_time_prekey());
  ASSERT_TRUE(bob->generate_prekeys(5).ok());
  b = bob->issue_bundle();
  ASSERT_TRUE(parsed.ParseFromArray(b->data(), static_cast<int>(b->size())));
  EXPECT_TRUE(parsed.has_one_time_prekey());
  EXPECT_EQ(ids.count(parsed.one_time_prekey().id()), 0u);
}

}  // namespace
}  // namespace sotto
