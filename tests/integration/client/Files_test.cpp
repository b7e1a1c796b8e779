// Files through a real relay: a 20 MiB round trip with its digest checked, a download that is
// interrupted (cancelled, or the process killed) and resumed, a blob altered on the relay's
// disk or in the profile, the size limit, a full disk, and files that stay encrypted in the
// profile, including plain copies an earlier version left there.
#include <gtest/gtest.h>
#include <sodium.h>

#include <fstream>
#include <thread>

#include "ChildProcess.h"
#include "ClientHarness.h"
#include "Database.h"
#include "FaultyProxy.h"
#include "platform/Platform.h"
#ifndef _WIN32
#include "SmallTmpfs.h"  // a tmpfs mount: Linux only
#endif

#ifndef SOTTO_CLIENT_DRIVER
#error "SOTTO_CLIENT_DRIVER must name the client_driver executable"
#endif

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

// Every file under `dir` that holds `needle`.
std::vector<fs::path> files_holding(const fs::path& dir, std::string_view needle) {
  std::vector<fs::path> out;
  for (const auto& [path, bytes] : read_tree(dir))
    if (contains(bytes, needle)) out.push_back(path);
  return out;
}

std::string text_of(const Bytes& b) { return std::string(b.begin(), b.end()); }

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
  EXPECT_FALSE(m.attachments[0].stored);

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
  auto downloaded = bob->download_attachment(m.conversation, m.id, 0, [&](uint64_t done, uint64_t) {
    if (resumed_from == 0) resumed_from = done;
  });
  ASSERT_TRUE(downloaded.ok()) << downloaded.error().message;
  EXPECT_GE(resumed_from, first_done / 2);
  // Kept from now on, without another download; saved where the app says, with progress.
  EXPECT_TRUE(bob->message(m.conversation, m.id).value().attachments[0].stored);
  uint64_t saved_done = 0, saved_total = 0;
  auto saved = bob->save_attachment(m.conversation, m.id, 0, files / "saved.bin",
                                    [&](uint64_t done, uint64_t total) {
                                      EXPECT_GE(done, saved_done);
                                      saved_done = done;
                                      saved_total = total;
                                    });
  ASSERT_TRUE(saved.ok()) << saved.error().message;
  EXPECT_EQ(saved_done, saved_total);
  EXPECT_EQ(read_file(files / "saved.bin"), content);
  // The sender has it too, from the blob it uploaded.
  EXPECT_TRUE(alice.find(ab, *id)->attachments[0].stored);
  ASSERT_TRUE(alice->save_attachment(ab, *id, 0, files / "sent.bin").ok());
  EXPECT_EQ(read_file(files / "sent.bin"), content);
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
#ifdef _WIN32
  // Windows names files in UTF-16: no file can have a name that is not UTF-8 there.
  const bool not_utf8_names = false;
#else
  const bool not_utf8_names = true;
#endif
  fs::path long_name = files.path() / platform::from_utf8(japanese);
  random_file(long_name, 100);
  if (not_utf8_names) {
    random_file(files / latin1, 100);
    ASSERT_TRUE(alice->send_file(ab, files / latin1, {}).ok());
  }
  EXPECT_EQ(alice->send_file(ab, long_name, FileOptions{"\xFF", "", "", 0, 0, {}}).code(),
            ErrorCode::kInvalidArgument);
  ASSERT_TRUE(alice->send_file(ab, long_name, {}).ok());

  auto names = [&] {
    std::vector<std::string> out;
    for (const auto& m : bob.events().messages())
      if (!m.outgoing && !m.attachments.empty()) out.push_back(m.attachments[0].file_name);
    return out;
  };
  size_t sent = not_utf8_names ? 2 : 1;
  ASSERT_TRUE(eventually([&] { return names().size() == sent; }));
  if (not_utf8_names) {
    EXPECT_EQ(names()[0], "r\xEF\xBF\xBDsum\xEF\xBF\xBD.pdf");
  }
  std::string kept;  // the end of the name, whole characters, at most 120 bytes
  for (int i = 0; i < 38; ++i) kept += "\xE6\x97\xA5";
  EXPECT_EQ(names().back(), kept + ".txt");
  auto m = file_message(bob);
  ASSERT_TRUE(m);
  ASSERT_TRUE(bob->download_attachment(m->conversation, m->id, 0).ok());
  auto read = bob->read_attachment(m->conversation, m->id, 0);
  ASSERT_TRUE(read.ok()) << read.error().message;
  EXPECT_EQ(read->size(), 100u);
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
  EXPECT_FALSE(bob->message(m.conversation, m.id)->attachments[0].stored);
  for (const auto& e : fs::recursive_directory_iterator(bob.dir() / "attachments"))
    EXPECT_FALSE(e.is_regular_file()) << "a file was kept: " << e.path();
  EXPECT_EQ(bob->save_attachment(m.conversation, m.id, 0, files / "out.jpg").code(),
            ErrorCode::kInvalidState);
  EXPECT_FALSE(fs::exists(files / "out.jpg"));
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

// A file sent, and the same file downloaded, are kept only encrypted in the profiles, under
// names that say nothing, and outlive the sender deleting the original. Their plaintext is
// written only where the app saves it.
TEST(Files, ASentFileStaysEncryptedInTheProfile) {
  RelayProcess relay;
  TestClient alice(relay, "alice"), bob(relay, "bob");
  alice.register_account();
  bob.register_account();
  ConversationId ab = alice.conversation_with(bob);
  TempDir files, elsewhere;
  Bytes tag(8);
  randombytes_buf(tag.data(), tag.size());
  const std::string secret = "the-plans-of-" + to_hex(tag);
  const std::string name = "plans-" + to_hex(tag) + ".txt";
  std::string content;
  for (int i = 0; i < 5000; ++i) content += secret + " line " + std::to_string(i) + "\n";
  std::ofstream(files / name, std::ios::binary) << content;
  auto id = alice->send_file(ab, files / name);
  ASSERT_TRUE(id.ok()) << id.error().message;
  fs::remove(files / name);  // the user deletes the original
  ASSERT_TRUE(eventually([&] { return file_message(bob).has_value(); }));
  Message m = *file_message(bob);
  ASSERT_TRUE(bob->download_attachment(m.conversation, m.id, 0).ok());

  auto check = [&](TestClient& c) {
    EXPECT_EQ(files_holding(c.dir(), secret), std::vector<fs::path>()) << "plaintext in a file";
    size_t kept = 0;
    for (const auto& e : fs::recursive_directory_iterator(c.dir())) {
      std::string file = e.path().filename().string();
      EXPECT_EQ(file.find("plans"), std::string::npos) << "a name that says what it holds";
      if (e.is_regular_file() && e.path().parent_path() == c.dir() / "attachments" / "blobs") {
        EXPECT_EQ(file.size(), 32u) << file;
        EXPECT_EQ(file.find_first_not_of("0123456789abcdef"), std::string::npos) << file;
        ++kept;
      }
    }
    EXPECT_EQ(kept, 1u);
  };
  check(alice);
  check(bob);
  ASSERT_TRUE(alice->save_attachment(ab, *id, 0, elsewhere / "from-alice.txt").ok());
  ASSERT_TRUE(bob->save_attachment(m.conversation, m.id, 0, elsewhere / "from-bob.txt").ok());
  EXPECT_EQ(text_of(read_file(elsewhere / "from-alice.txt")), content);
  EXPECT_EQ(text_of(read_file(elsewhere / "from-bob.txt")), content);
  // And once the clients have stopped (their databases checkpointed).
  alice.close();
  bob.close();
  check(alice);
  check(bob);
}

TEST(Files, SavingRefusesWhatWouldLeakOrFailAndSaysWhy) {
  RelayProcess relay;
  TestClient alice(relay, "alice"), bob(relay, "bob");
  alice.register_account();
  bob.register_account();
  ConversationId ab = alice.conversation_with(bob);
  TempDir files;
  Bytes content = random_file(files / "notes.bin", 70000);
  ASSERT_TRUE(alice->send_file(ab, files / "notes.bin").ok());
  ASSERT_TRUE(eventually([&] { return file_message(bob).has_value(); }));
  Message m = *file_message(bob);

  auto before = bob->save_attachment(m.conversation, m.id, 0, files / "out.bin");
  ASSERT_EQ(before.code(), ErrorCode::kInvalidState);
  EXPECT_NE(before.error().message.find("download_attachment()"), std::string::npos)
      << before.error().message;
  EXPECT_EQ(bob->read_attachment(m.conversation, m.id, 0).code(), ErrorCode::kInvalidState);
  ASSERT_TRUE(bob->download_attachment(m.conversation, m.id, 0).ok());

  for (const fs::path& inside : {bob.dir() / "notes.bin", bob.dir() / "attachments" / "x.bin"}) {
    auto r = bob->save_attachment(m.conversation, m.id, 0, inside);
    ASSERT_EQ(r.code(), ErrorCode::kInvalidArgument) << inside;
    EXPECT_NE(r.error().message.find("profile"), std::string::npos) << r.error().message;
    EXPECT_FALSE(fs::exists(inside));
  }
  auto missing = bob->save_attachment(m.conversation, m.id, 0, files / "no-such-dir" / "x.bin");
  ASSERT_EQ(missing.code(), ErrorCode::kNotFound);
  EXPECT_NE(missing.error().message.find("no-such-dir"), std::string::npos)
      << missing.error().message;
  EXPECT_EQ(bob->save_attachment(m.conversation, m.id, 0, files.path()).code(),
            ErrorCode::kInvalidArgument);
  EXPECT_EQ(bob->save_attachment(m.conversation, m.id, 3, files / "x.bin").code(),
            ErrorCode::kNotFound);
  auto large = bob->read_attachment(m.conversation, m.id, 0, content.size() - 1);
  ASSERT_EQ(large.code(), ErrorCode::kTooLarge);
  EXPECT_NE(large.error().message.find("save_attachment()"), std::string::npos);

  // An existing file is replaced as a whole.
  std::ofstream(files / "out.bin") << "an older file";
  ASSERT_TRUE(bob->save_attachment(m.conversation, m.id, 0, files / "out.bin").ok());
  EXPECT_EQ(read_file(files / "out.bin"), content);
  EXPECT_EQ(bob->read_attachment(m.conversation, m.id, 0, content.size()).value(), content);
}

TEST(Files, ACopyDamagedInTheProfileIsRefusedAndCanBeDownloadedAgain) {
  RelayProcess relay;
  TestClient alice(relay, "alice"), bob(relay, "bob");
  alice.register_account();
  bob.register_account();
  ConversationId ab = alice.conversation_with(bob);
  TempDir files;
  Bytes content = random_file(files / "notes.bin", 200000);
  ASSERT_TRUE(alice->send_file(ab, files / "notes.bin").ok());
  ASSERT_TRUE(eventually([&] { return file_message(bob).has_value(); }));
  Message m = *file_message(bob);
  ASSERT_TRUE(bob->download_attachment(m.conversation, m.id, 0).ok());

  auto kept = read_tree(bob.dir() / "attachments" / "blobs");
  ASSERT_EQ(kept.size(), 1u);
  {
    std::fstream f(kept[0].first, std::ios::in | std::ios::out | std::ios::binary);
    f.seekp(5000);
    f.put('\x5a');
  }
  auto r = bob->save_attachment(m.conversation, m.id, 0, files / "out.bin");
  ASSERT_EQ(r.code(), ErrorCode::kInvalidMessage);
  EXPECT_NE(r.error().message.find("download it again"), std::string::npos) << r.error().message;
  EXPECT_FALSE(fs::exists(files / "out.bin"));
  EXPECT_FALSE(bob->message(m.conversation, m.id)->attachments[0].stored);
  EXPECT_FALSE(fs::exists(kept[0].first));

  ASSERT_TRUE(bob->download_attachment(m.conversation, m.id, 0).ok());
  ASSERT_TRUE(bob->save_attachment(m.conversation, m.id, 0, files / "out.bin").ok());
  EXPECT_EQ(read_file(files / "out.bin"), content);
}

// A profile an earlier version wrote: plain copies of files in attachments/<conversation>/,
// their absolute paths in the database (one from before the profile moved), schema 8. They
// are usable at once, encrypted in the background, and then gone, with nothing lost; so is a
// plain file there that no message names. The relay is not needed for any of it.
TEST(Files, PlainCopiesFromAnEarlierVersionAreEncryptedThenRemoved) {
  RelayProcess relay;
  TestClient alice(relay, "alice"), bob(relay, "bob");
  alice.register_account();
  bob.register_account();
  ConversationId ab = alice.conversation_with(bob);
  TempDir files;
  Bytes tag(8);
  randombytes_buf(tag.data(), tag.size());
  std::vector<std::string> contents;
  std::vector<std::string> ids;
  for (int i = 0; i < 2; ++i) {
    std::string c;
    for (int line = 0; line < 3000; ++line)
      c += "legacy-" + std::to_string(i) + "-" + to_hex(tag) + " " + std::to_string(line) + "\n";
    contents.push_back(c);
    std::ofstream(files / ("f" + std::to_string(i) + ".txt"), std::ios::binary) << c;
    auto id = alice->send_file(ab, files / ("f" + std::to_string(i) + ".txt"));
    ASSERT_TRUE(id.ok()) << id.error().message;
    ids.push_back(*id);
  }
  ASSERT_TRUE(eventually([&] {
    size_t n = 0;
    for (const auto& m : bob.events().messages()) n += !m.outgoing && !m.attachments.empty();
    return n == 2;
  }));
  ConversationId ba = file_message(bob)->conversation;
  bob.close();

  fs::path legacy = bob.dir() / "attachments" / std::to_string(ba);
  fs::create_directories(legacy);
  std::vector<std::string> stored_paths = {(legacy / (ids[0].substr(0, 12) + "-f0.txt")).string(),
                                           "/home/someone/old-place/attachments/" +
                                               std::to_string(ba) + "/" + ids[1].substr(0, 12) +
                                               "-f1.txt"};
  std::ofstream(legacy / (ids[0].substr(0, 12) + "-f0.txt"), std::ios::binary) << contents[0];
  std::ofstream(legacy / (ids[1].substr(0, 12) + "-f1.txt"), std::ios::binary) << contents[1];
  const std::string stray = "stray-" + to_hex(tag);
  std::ofstream(legacy / "stray.txt") << stray;
  {
    auto db =
        db::Database::open(bob.dir() / "profile.db", bob.key(), {false, db::Durability::kFull});
    ASSERT_TRUE(db.ok()) << db.error().message;
    for (int i = 0; i < 2; ++i)
      ASSERT_TRUE((*db)
                      ->exec("UPDATE attachments SET local_path = '" + stored_paths[i] +
                             "' WHERE message = (SELECT id FROM messages WHERE message_id = x'" +
                             ids[i] + "')")
                      .ok());
    ASSERT_TRUE((*db)->exec("DROP TABLE attachment_blobs").ok());
    ASSERT_TRUE((*db)->set_user_version(8).ok());
  }
  relay.terminate();
  bob.reopen(/*connect=*/false);

  for (int i = 0; i < 2; ++i) {
    auto m = bob.find(ba, ids[i]);
    ASSERT_TRUE(m);
    EXPECT_TRUE(m->attachments[0].stored);
  }
  ASSERT_TRUE(eventually([&] {
    return files_holding(bob.dir(), to_hex(tag)).empty() && !fs::exists(legacy);
  })) << "still in plain form: "
      << ::testing::PrintToString(files_holding(bob.dir(), to_hex(tag)));
  EXPECT_EQ(read_tree(bob.dir() / "attachments" / "blobs").size(), 2u);
  bob.reopen(/*connect=*/false);
  for (int i = 0; i < 2; ++i) {
    fs::path out = files / ("saved" + std::to_string(i) + ".txt");
    auto saved = bob->save_attachment(ba, ids[i], 0, out);
    ASSERT_TRUE(saved.ok()) << saved.error().message;
    EXPECT_EQ(text_of(read_file(out)), contents[i]);
  }
}

// kill -9 in the middle of a download: what arrived stays in the profile (encrypted, as the
// relay sent it) and the next download goes on from there.
TEST(Files, ADownloadKilledHalfWayGoesOnFromWhereItStopped) {
  RelayProcess relay;
  TestClient alice(relay, "alice"), bob(relay, "bob");
  alice.register_account();
  bob.register_account();
  ConversationId ab = alice.conversation_with(bob);
  TempDir files;
  Bytes content = random_file(files / "big.bin", 8 << 20);
  ASSERT_TRUE(alice->send_file(ab, files / "big.bin").ok());
  ASSERT_TRUE(eventually([&] { return file_message(bob).has_value(); }));
  Message m = *file_message(bob);
  bob.close();  // the driver process takes the profile over

  // Through a proxy that stops forwarding once 1 MiB came from the relay, so the kill always
  // lands in the middle of the download.
  std::atomic<FaultyProxy*> self{nullptr};
  std::atomic<uint64_t> from_relay{0};
  FaultyProxy proxy(relay.port(), [&](uint64_t, bool to_upstream, const char*, size_t n) {
    if (!to_upstream && (from_relay += n) > (1u << 20) && self.load()) self.load()->stall(60s);
  });
  self = &proxy;
  uint64_t killed_at = 0;
  {
    ChildProcess driver({SOTTO_CLIENT_DRIVER, bob.dir().string(), to_hex(bob.key().span()),
                         "ws://127.0.0.1:" + std::to_string(proxy.port()) + "/v1/ws", "download",
                         std::to_string(m.conversation), m.id});
    auto line = driver.read_line(30s);
    ASSERT_TRUE(line && line->rfind("AT ", 0) == 0) << line.value_or("no output");
    driver.kill9();
    killed_at = std::stoull(line->substr(3));
  }
  self = nullptr;
  proxy.stall(0ms);
  bob.reopen();
  uint64_t resumed_from = 0;
  auto downloaded = bob->download_attachment(m.conversation, m.id, 0, [&](uint64_t done, uint64_t) {
    if (resumed_from == 0) resumed_from = done;
  });
  ASSERT_TRUE(downloaded.ok()) << downloaded.error().message;
  EXPECT_GE(resumed_from, killed_at / 2) << "started over after the kill";
  ASSERT_TRUE(bob->save_attachment(m.conversation, m.id, 0, files / "out.bin").ok());
  EXPECT_EQ(read_file(files / "out.bin"), content);
  EXPECT_TRUE(read_tree(bob.dir() / "attachments" / "partial").empty());
}

#ifndef _WIN32  // not on Windows: a tmpfs mount
// A full disk under the profile stops a download and a send with kStorageFull and loses
// nothing: the download goes on once there is room, the send leaves no trace. A full disk
// where the app saves leaves the stored copy as it was.
TEST(FullDisk, FilesLoseNothingWhenTheDiskFills) {
  RelayProcess relay;
  TestClient alice(relay, "alice"), bob(relay, "bob");
  alice.register_account();
  bob.register_account();
  ConversationId ab = alice.conversation_with(bob);
  TempDir files, out;
  Bytes content = random_file(files / "data.bin", 2 << 20);
  ASSERT_TRUE(alice->send_file(ab, files / "data.bin").ok());
  ASSERT_TRUE(eventually([&] { return file_message(bob).has_value(); }));
  Message m = *file_message(bob);

  // Bob's profile onto a 32 MiB tmpfs mounted over its directory.
  bob.close();
  TempDir aside;
  fs::copy(bob.dir(), aside.path(), fs::copy_options::recursive);
  std::string why;
  auto disk = SmallTmpfs::mount(bob.dir(), "32m", why);
  ASSERT_TRUE(disk) << why << ": this full-disk test of attachment files needs root";
  fs::copy(aside.path(), bob.dir(), fs::copy_options::recursive);
  bob.reopen();
  ASSERT_TRUE(bob->wait_online(20s));

  disk->fill(512 << 10);
  auto cut = bob->download_attachment(m.conversation, m.id, 0);
  ASSERT_EQ(cut.code(), ErrorCode::kStorageFull) << cut.error().message;
  EXPECT_FALSE(bob->message(m.conversation, m.id)->attachments[0].stored);
  disk->fill();
  size_t shown = bob.history(m.conversation).size();
  auto refused = bob->send_file(m.conversation, files / "data.bin");
  ASSERT_EQ(refused.code(), ErrorCode::kStorageFull) << refused.error().message;
  EXPECT_EQ(bob.history(m.conversation).size(), shown);

  disk->make_room();
  uint64_t resumed_from = 0;
  auto downloaded = bob->download_attachment(m.conversation, m.id, 0, [&](uint64_t done, uint64_t) {
    if (resumed_from == 0) resumed_from = done;
  });
  ASSERT_TRUE(downloaded.ok()) << downloaded.error().message;
  EXPECT_GT(resumed_from, 128u << 10) << "started over";
  ASSERT_TRUE(bob->send_file(m.conversation, files / "data.bin").ok());
  EXPECT_TRUE(read_tree(bob.dir() / "attachments" / "tmp").empty());

  // Saving onto a full disk: kStorageFull, nothing left there, the stored copy unharmed.
  auto small = SmallTmpfs::mount(out.path(), "1m", why);
  ASSERT_TRUE(small) << why;
  auto full = bob->save_attachment(m.conversation, m.id, 0, out / "data.bin");
  ASSERT_EQ(full.code(), ErrorCode::kStorageFull) << full.error().message;
  EXPECT_TRUE(read_tree(out.path()).empty());
  small.reset();
  ASSERT_TRUE(bob->save_attachment(m.conversation, m.id, 0, out / "data.bin").ok());
  EXPECT_EQ(read_file(out / "data.bin"), content);
  bob.close();
}
#endif

}  // namespace
}  // namespace sotto::test
