// Files through a real relay: a 20 MiB round trip with its digest checked, a download that is
// interrupted and resumed, a blob altered on the relay's disk, and the size limit.
#include <gtest/gtest.h>
#include <sodium.h>

#include <fstream>

#include "ClientHarness.h"

namespace sotto::test {
namespace {

namespace fs = std::filesystem;

Bytes random_file(const fs::path& p, size_t n) {
  Bytes b(n);
  randombytes_buf(b.data(), b.size());
  std::ofstream(p, std::ios::binary)
      .write(reinterpret_cast<const char*>(b.data()), static_cast<std::streamsize>(b.size()));
  return b;
}

// The newest incoming message with an attachment.
std::optional<Message> file_message(TestClient& c) {
  auto all = c.events().messages();
  for (auto it = all.rbegin(); it != all.rend(); ++it)
    if (!it->outgoing && !it->attachments.empty()) return *it;
  return std::nullopt;
}

TEST(Files, TwentyMiBRoundTripWithAnInterruptedAndResumedDownload) {
  RelayProcess relay;
  TestClient alice(relay, "alice"), bob(relay, "bob");
  alice.register_account();
  bob.register_account();
  ConversationId ab = alice.conversation_with(bob);
  TempDir files;
  Bytes content = random_file(files / "report.bin", 20 << 20);

  uint64_t last_done = 0, last_total = 0;
  auto id = alice->send_file(ab, files / "report.bin", FileOptions{"the report", "", "", 0, 0, {}},
                             [&](uint64_t done, uint64_t total) {
                               EXPECT_GE(done, last_done);
                               last_done = done;
                               last_total = total;
                             });
  ASSERT_TRUE(id.ok()) << id.error().message;
  EXPECT_EQ(last_done, last_total);
  EXPECT_GT(last_total, 20u << 20);  // the blob: content plus the stream's overhead
  auto sent = alice.find(ab, *id);
  ASSERT_TRUE(sent);
  ASSERT_EQ(sent->attachments.size(), 1u);
  EXPECT_EQ(sent->attachments[0].file_name, "report.bin");
  EXPECT_EQ(sent->text, "the report");

  ASSERT_TRUE(eventually([&] { return file_message(bob).has_value(); }));
  Message m = *file_message(bob);
  ASSERT_EQ(m.attachments.size(), 1u);
  EXPECT_EQ(m.attachments[0].size, 20u << 20);
  EXPECT_TRUE(m.attachments[0].local_path.empty());

  // Interrupted half-way...
  std::atomic<bool> cancel{false};
  uint64_t first_done = 0;
  auto cut = bob->download_attachment(
      m.conversation, m.id, 0,
      [&](uint64_t done, uint64_t total) {
        first_done = done;
        if (done > total / 2) cancel = true;
      },
      &cancel);
  EXPECT_EQ(cut.code(), ErrorCode::kCancelled);
  EXPECT_GT(first_done, 0u);
  // ...and resumed where it stopped: the first progress report is already past the cut.
  uint64_t resumed_from = 0;
  auto path = bob->download_attachment(m.conversation, m.id, 0, [&](uint64_t done, uint64_t) {
    if (resumed_from == 0) resumed_from = done;
  });
  ASSERT_TRUE(path.ok()) << path.error().message;
  EXPECT_GE(resumed_from, first_done / 2);
  EXPECT_EQ(read_file(*path), content);
  // Known from now on, without another download.
  auto again = bob->message(m.conversation, m.id).value();
  EXPECT_EQ(again.attachments[0].local_path, path->string());
}

// File names come from the file system, which allows any bytes: a Latin-1 name, and a long
// Japanese one that must be shortened, arrive under names in well-formed UTF-8 instead of
// being dropped by the receiver. A caption that is not UTF-8 is refused before the upload.
TEST(Files, NamesThatAreNotUtf8OrTooLongArriveRepaired) {
  RelayProcess relay;
  TestClient alice(relay, "alice"), bob(relay, "bob");
  alice.register_account();
  bob.register_account();
  ConversationId ab = alice.conversation_with(bob);
  TempDir files;
  std::string latin1 = "r\xE9sum\xE9.pdf";
  std::string japanese;
  for (int i = 0; i < 50; ++i) japanese += "\xE6\x97\xA5";  // 150 bytes of U+65E5
  japanese += ".txt";
  random_file(files / latin1, 100);
  random_file(files / japanese, 100);
  EXPECT_EQ(alice->send_file(ab, files / latin1, FileOptions{"\xFF", "", "", 0, 0, {}}).code(),
            ErrorCode::kInvalidArgument);
  ASSERT_TRUE(alice->send_file(ab, files / latin1, {}).ok());
  ASSERT_TRUE(alice->send_file(ab, files / japanese, {}).ok());

  auto names = [&] {
    std::vector<std::string> out;
    for (const auto& m : bob.events().messages())
      if (!m.outgoing && !m.attachments.empty()) out.push_back(m.attachments[0].file_name);
    return out;
  };
  ASSERT_TRUE(eventually([&] { return names().size() == 2; }));
  EXPECT_EQ(names()[0], "r\xEF\xBF\xBDsum\xEF\xBF\xBD.pdf");
  std::string kept;  // the end of the name, whole characters, at most 120 bytes
  for (int i = 0; i < 38; ++i) kept += "\xE6\x97\xA5";
  EXPECT_EQ(names()[1], kept + ".txt");
  auto m = file_message(bob);
  ASSERT_TRUE(m);
  auto path = bob->download_attachment(m->conversation, m->id, 0);
  ASSERT_TRUE(path.ok()) << path.error().message;
  EXPECT_EQ(read_file(*path).size(), 100u);
}

TEST(Files, ABlobAlteredOnTheRelayIsRefusedWithAClearError) {
  RelayProcess relay;
  TestClient alice(relay, "alice"), bob(relay, "bob");
  alice.register_account();
  bob.register_account();
  ConversationId ab = alice.conversation_with(bob);
  TempDir files;
  random_file(files / "photo.jpg", 300000);
  ASSERT_TRUE(alice->send_file(ab, files / "photo.jpg").ok());
  ASSERT_TRUE(eventually([&] { return file_message(bob).has_value(); }));
  Message m = *file_message(bob);

  // Flip one byte of the stored blob, as a malicious or broken relay would.
  fs::path blob;
  for (const auto& e : fs::recursive_directory_iterator(relay.data_dir() / "attachments"))
    if (e.is_regular_file() && e.path().parent_path().filename() != "tmp") blob = e.path();
  ASSERT_FALSE(blob.empty());
  {
    std::fstream f(blob, std::ios::in | std::ios::out | std::ios::binary);
    f.seekg(1000);
    char c = 0;
    f.read(&c, 1);
    c = static_cast<char>(c ^ 0x40);
    f.seekp(1000);
    f.write(&c, 1);
  }
  auto r = bob->download_attachment(m.conversation, m.id, 0);
  ASSERT_EQ(r.code(), ErrorCode::kInvalidMessage);
  EXPECT_NE(r.error().message.find("altered"), std::string::npos) << r.error().message;
  EXPECT_TRUE(bob->message(m.conversation, m.id)->attachments[0].local_path.empty());
  for (const auto& e : fs::recursive_directory_iterator(bob.dir() / "attachments"))
    EXPECT_FALSE(e.is_regular_file() &&
                 e.path().filename().string().find("photo") != std::string::npos)
        << "a file was kept: " << e.path();
}

TEST(Files, AFileOverTheRelaysLimitIsRefusedBeforeUploading) {
  RelayProcess relay(RelayProcess::Options{{"--attachment-max-bytes=1048576"}, true, {}});
  TestClient alice(relay, "alice"), bob(relay, "bob");
  alice.register_account();
  bob.register_account();
  ConversationId ab = alice.conversation_with(bob);
  TempDir files;
  random_file(files / "big.bin", 2 << 20);
  auto r = alice->send_file(ab, files / "big.bin");
  ASSERT_EQ(r.code(), ErrorCode::kTooLarge);
  EXPECT_NE(r.error().message.find("1 MiB"), std::string::npos) << r.error().message;
  EXPECT_TRUE(alice.history(ab).empty());
  EXPECT_EQ(alice->send_file(ab, files / "missing.bin").code(), ErrorCode::kNotFound);
  random_file(files / "small.png", 1000);
  ASSERT_TRUE(alice->send_file(ab, files / "small.png").ok());
}

}  // namespace
}  // namespace sotto::test
