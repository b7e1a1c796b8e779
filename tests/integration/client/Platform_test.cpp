// What differs between operating systems, through a real relay: attachment names that one
// system allows and another forbids. "CON", "a:b" and "notes." cannot name a file on Windows
// (a device, an alternate data stream, a dot Windows drops): there save_attachment() refuses
// them with a reason and writes nothing, and the file saves under another name; on POSIX
// systems they save as they are, with the contents that were sent.
#include "platform/Platform.h"

#include <gtest/gtest.h>
#include <sodium.h>

#include <algorithm>
#include <fstream>

#include "ClientHarness.h"

namespace sotto::test {
namespace {

namespace fs = std::filesystem;

TEST(Platform, AttachmentsNamedWhatWindowsForbidsAreSavedOrRefusedByThisSystemsRules) {
  RelayProcess relay;
  TestClient alice(relay, "alice"), bob(relay, "bob");
  alice.register_account();
  bob.register_account();
  ConversationId ab = alice.conversation_with(bob);
  TempDir files, saved;
  Bytes content(5000);
  randombytes_buf(content.data(), content.size());
  std::ofstream(files / "payload.bin", std::ios::binary)
      .write(reinterpret_cast<const char*>(content.data()),
             static_cast<std::streamsize>(content.size()));

  const std::vector<std::string> names = {"CON", "a:b", "notes."};
  for (const std::string& name : names) {
    FileOptions options;
    options.file_name = name;
    ASSERT_TRUE(alice->send_file(ab, files / "payload.bin", options).ok()) << name;
  }
  auto incoming = [&] {
    std::vector<Message> out;
    for (const auto& m : bob.events().messages())
      if (!m.outgoing && !m.attachments.empty()) out.push_back(m);
    return out;
  };
  ASSERT_TRUE(eventually([&] { return incoming().size() == names.size(); }));

  for (const Message& m : incoming()) {
    const std::string& name = m.attachments[0].file_name;
    ASSERT_NE(std::find(names.begin(), names.end(), name), names.end())
        << "unexpected name " << name;
    ASSERT_TRUE(bob->download_attachment(m.conversation, m.id, 0).ok()) << name;
    // What an app does: the folder the user chose, the name the file came with. (Joined as
    // text: on Windows `folder / "a:b"` would read "a:" as a drive and drop the folder.)
    fs::path target = platform::from_utf8(platform::to_utf8(saved.path()) + "/" + name);
    Status s = bob->save_attachment(m.conversation, m.id, 0, target);
#ifdef _WIN32
    // Refused with a reason before anything is written; the app asks for another name.
    ASSERT_FALSE(s.ok()) << name;
    EXPECT_EQ(s.code(), ErrorCode::kInvalidArgument) << name << ": " << s.error().message;
    EXPECT_TRUE(fs::is_empty(saved.path())) << name;
    fs::path other = saved.path() / "renamed.bin";
    ASSERT_TRUE(bob->save_attachment(m.conversation, m.id, 0, other).ok()) << name;
    EXPECT_EQ(read_file(other), content) << name;
    fs::remove(other);
#else
    ASSERT_TRUE(s.ok()) << name << ": " << s.error().message;
    EXPECT_EQ(read_file(target), content) << name;
#endif
  }
}

}  // namespace
}  // namespace sotto::test
