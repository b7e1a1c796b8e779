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

}  // namespace
}  // namespace sotto::test
