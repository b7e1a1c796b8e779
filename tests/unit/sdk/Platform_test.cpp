// The platform layer (sdk/src/platform): what the SDK asks of the operating system, checked on
// whichever system runs the tests (natively, under qemu), and the profile's answer to paths
// and names that only some systems refuse.
#include "platform/Platform.h"

#include <gtest/gtest.h>

#include <fstream>

#include "TestSupport.h"
#include "sotto/Profile.h"

namespace sotto::test {
namespace {

namespace fs = std::filesystem;

TEST(Platform, Utf8NamesReachTheDiskAsTheSameLetters) {
  TempDir dir;
  const std::string name = "d\xc3\xa9j\xc3\xa0-\xe6\x97\xa5\xe6\x9c\xac.txt";  // "déjà-日本.txt"
  EXPECT_EQ(platform::to_utf8(platform::from_utf8(name)), name);
  platform::File f = platform::open_file(dir.path() / platform::from_utf8(name), "wb");
  ASSERT_TRUE(f);
  f.reset();
  std::vector<std::string> names;
  for (const auto& entry : fs::directory_iterator(dir.path()))
    names.push_back(platform::to_utf8(entry.path().filename()));
  EXPECT_EQ(names, std::vector<std::string>{name});
}

TEST(Platform, ALockIsRefusedToASecondHolderUntilReleased) {
  TempDir dir;
  auto first = platform::FileLock::acquire(dir / "lock");
  ASSERT_TRUE(first.ok()) << first.error().message;
  auto second = platform::FileLock::acquire(dir / "lock");
  EXPECT_EQ(second.code(), ErrorCode::kBusy);
  { platform::FileLock released = std::move(*first); }
  auto third = platform::FileLock::acquire(dir / "lock");
  EXPECT_TRUE(third.ok()) << third.error().message;
}

TEST(Platform, AReplacedFileHasTheNewContentsOnly) {
  TempDir dir;
  std::ofstream(dir / "target") << "old contents, longer than the new";
  {
    auto f = platform::create_private_file(dir / "target.tmp");
    ASSERT_TRUE(f.ok()) << f.error().message;
    std::fputs("new", f->get());
    ASSERT_TRUE(platform::sync_file(f->get(), dir / "target.tmp").ok());
  }
  ASSERT_TRUE(platform::replace_file(dir / "target.tmp", dir / "target").ok());
  ASSERT_TRUE(platform::sync_directory(dir.path()).ok());
  EXPECT_EQ(read_file(dir / "target"), Bytes({'n', 'e', 'w'}));
  EXPECT_FALSE(fs::exists(dir / "target.tmp"));
}

// Non-ASCII letters in the folder's path (Windows: UTF-16 on disk, UTF-8 in the API).
TEST(Platform, AProfileInAFolderWithNonAsciiLettersOpensAndReopens) {
  TempDir dir;
  fs::path folder =
      dir.path() / platform::from_utf8("profil-d\xc3\xa9j\xc3\xa0-\xe6\x97\xa5\xe6\x9c\xac");
  ProfileOptions options;
  options.initial_prekeys = 1;
  {
    auto p = Profile::open(folder, SecureBytes::from_string("a passphrase"), options);
    ASSERT_TRUE(p.ok()) << p.error().message;
    ASSERT_TRUE((*p)->create_identity("alice", 1).ok());
  }
  EXPECT_TRUE(fs::exists(folder / "profile.db"));
  options.create_if_missing = false;
  auto again = Profile::open(folder, SecureBytes::from_string("a passphrase"), options);
  ASSERT_TRUE(again.ok()) << again.error().message;
}

#if defined(_WIN32)

// Windows refuses device names with any extension, < > : " / \ | ? *, control characters and a
// trailing dot or space; the error says why and what to do, and ordinary names pass.
TEST(Platform, FileNamesWindowsForbidsAreRefusedWithTheReason) {
  for (const char* name : {"notes.txt", "r\xc3\xa9sum\xc3\xa9.pdf", ".hidden", "CONSOLE", "COM0",
                           "LPT10", "con-notes.txt", "a.b.c"}) {
    Status s = platform::check_file_name(platform::from_utf8(name));
    EXPECT_TRUE(s.ok()) << name << ": " << s.error().message;
  }
  for (const char* name :
       {"CON", "con.txt", "NUL", "nul.tar.gz", "COM1", "lpt9.log", "Aux", "PRN", "a:b", "what?",
        "x*y", "a<b", "a>b", "a|b", "say \"hi\"", "notes.", "trailing ", "tab\there", ""}) {
    Status s = platform::check_file_name(platform::from_utf8(name));
    ASSERT_FALSE(s.ok()) << name;
    EXPECT_EQ(s.code(), ErrorCode::kInvalidArgument) << name;
    EXPECT_NE(s.error().message.find("cannot name a file on Windows"), std::string::npos)
        << s.error().message;
    EXPECT_NE(s.error().message.find("another name"), std::string::npos) << s.error().message;
  }
}

// A folder whose files would pass Windows' 260 characters is refused before anything is
// created, with the length it may have.
TEST(Platform, AProfileFolderLongerThanWindowsAllowsIsRefusedBeforeAnythingIsCreated) {
  TempDir dir;
  fs::path deep = dir.path() / std::string(100, 'a') / std::string(100, 'b') /
                  std::string(100, 'c') / "profile";
  ASSERT_GT(fs::absolute(deep).native().size(), 260u);
  ProfileOptions options;
  options.initial_prekeys = 1;
  auto p = Profile::open(deep, SecureBytes::from_string("a passphrase"), options);
  ASSERT_FALSE(p.ok());
  EXPECT_EQ(p.code(), ErrorCode::kInvalidArgument);
  EXPECT_NE(p.error().message.find("choose a folder of at most"), std::string::npos)
      << p.error().message;
  EXPECT_FALSE(fs::exists(dir.path() / std::string(100, 'a')));
}

#else

// Names other systems forbid (Windows' devices, streams and trailing dots) are names here.
TEST(Platform, FileNamesOtherSystemsForbidAreFineHere) {
  for (const char* name :
       {"notes.txt", "r\xc3\xa9sum\xc3\xa9.pdf", ".hidden", "CON", "con.txt", "NUL", "COM1",
        "lpt9.log", "a:b", "what?", "x*y", "a<b", "notes.", "trailing ", "tab\there"}) {
    Status s = platform::check_file_name(platform::from_utf8(name));
    EXPECT_TRUE(s.ok()) << name << ": " << s.error().message;
  }
}

// POSIX checks nothing ahead: a profile folder deeper than Windows' 260 characters opens.
TEST(Platform, AProfileFolderLongerThanWindowsAllowsOpensHere) {
  TempDir dir;
  fs::path deep = dir.path() / std::string(100, 'a') / std::string(100, 'b') /
                  std::string(100, 'c') / "profile";
  ASSERT_GT(platform::to_utf8(fs::absolute(deep)).size(), 260u);
  ProfileOptions options;
  options.initial_prekeys = 1;
  auto p = Profile::open(deep, SecureBytes::from_string("a passphrase"), options);
  ASSERT_TRUE(p.ok()) << p.error().message;
  EXPECT_TRUE(fs::exists(deep / "profile.db"));
}

#endif

}  // namespace
}  // namespace sotto::test
