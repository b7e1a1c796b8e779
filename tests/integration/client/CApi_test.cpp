// The C API (sotto.h) beyond the basics of sdk/examples/hello.c: groups, files, edits, search
// and the callbacks that report them, against a real relay.
#include <gtest/gtest.h>
#include <sodium.h>

#include <atomic>
#include <fstream>
#include <mutex>

#include "ClientHarness.h"
#include "sotto.h"

namespace sotto::test {
namespace {

struct Seen {
  std::mutex mu;
  std::vector<std::string> texts;
  std::vector<std::pair<std::string, size_t>> files;  // message id, attachment count
  std::vector<std::string> changed;
  int64_t group = -1;
};

void on_message(void* user, const sotto_message* m) {
  auto* s = static_cast<Seen*>(user);
  std::lock_guard lock(s->mu);
  if (m->outgoing || m->kind != SOTTO_KIND_TEXT) return;
  s->texts.emplace_back(m->text);
  if (m->attachment_count) s->files.emplace_back(m->id, m->attachment_count);
}
void on_changed(void* user, const sotto_message* m) {
  auto* s = static_cast<Seen*>(user);
  std::lock_guard lock(s->mu);
  s->changed.emplace_back(m->text);
}
void on_conversation(void* user, int64_t conversation) {
  auto* s = static_cast<Seen*>(user);
  std::lock_guard lock(s->mu);
  s->group = conversation;
}

struct CClient {
  CClient(const RelayProcess& relay, const TempDir& dir, const std::string& name) {
    sotto_options o{nullptr, name.c_str(), false};
    std::string url = relay.ws_url();
    o.relay_url = url.c_str();
    Bytes key(32, static_cast<uint8_t>(name[0]));
    sotto_error err;
    c = sotto_client_open((dir.path() / name).c_str(), nullptr, key.data(), &o, &err);
    EXPECT_NE(c, nullptr) << sotto_error_string();
    sotto_callbacks cb{};
    cb.user_data = &seen;
    cb.on_message = on_message;
    cb.on_message_changed = on_changed;
    cb.on_conversation_changed = on_conversation;
    sotto_client_set_callbacks(c, &cb);
    EXPECT_TRUE(sotto_register(c, name.c_str(), &me, &err)) << sotto_error_string();
    EXPECT_TRUE(sotto_wait_online(c, 20000));
  }
  ~CClient() { sotto_client_close(c); }
  // `seen` is written by callbacks on the client's event thread: read it under its lock.
  size_t texts() {
    std::lock_guard lock(seen.mu);
    return seen.texts.size();
  }
  int64_t group() {
    std::lock_guard lock(seen.mu);
    return seen.group;
  }
  sotto_client* c = nullptr;
  sotto_account me{};
  Seen seen;
};

bool keep_going(void* user, uint64_t done, uint64_t total) {
  *static_cast<uint64_t*>(user) = done == total ? total : 0;
  return true;
}

TEST(CApi, GroupsFilesEditsAndSearch) {
  RelayProcess relay;
  TempDir dir;
  CClient alice(relay, dir, "calice"), bob(relay, dir, "cbob"), carol(relay, dir, "ccarol");
  sotto_error err;
  const char* members[] = {bob.me.account, carol.me.account};
  int64_t group = sotto_create_group(alice.c, "C friends", members, 2, &err);
  ASSERT_GE(group, 0) << sotto_error_string();
  char id[33];
  ASSERT_TRUE(sotto_send_text(alice.c, group, "hello from the C API", id, &err));
  ASSERT_TRUE(eventually([&] { return bob.texts() == 1 && carol.texts() == 1; }));
  sotto_group* info = sotto_group_info(bob.c, bob.group(), &err);
  ASSERT_NE(info, nullptr) << sotto_error_string();
  EXPECT_STREQ(info->name, "C friends");
  EXPECT_EQ(info->member_count, 3u);
  EXPECT_FALSE(info->is_admin);
  sotto_group_free(info);
  EXPECT_FALSE(sotto_rename_group(bob.c, bob.group(), "mine now", &err));
  EXPECT_EQ(err, SOTTO_ERR_FORBIDDEN);
  EXPECT_NE(std::string(sotto_error_string()).find("admin"), std::string::npos);

  // A file, with progress.
  Bytes content(100000);
  randombytes_buf(content.data(), content.size());
  auto path = dir.path() / "notes.bin";
  std::ofstream(path, std::ios::binary)
      .write(reinterpret_cast<const char*>(content.data()),
             static_cast<std::streamsize>(content.size()));
  uint64_t finished = 0;
  sotto_file_options fo{};
  fo.caption = "the notes";
  ASSERT_TRUE(sotto_send_file(alice.c, group, path.c_str(), &fo, keep_going, &finished, id, &err))
      << sotto_error_string();
  EXPECT_GT(finished, 0u);
  std::string file_id;
  ASSERT_TRUE(eventually([&] {
    std::lock_guard lock(carol.seen.mu);
    if (!carol.seen.files.empty()) file_id = carol.seen.files[0].first;
    return !file_id.empty();
  }));
  auto saved = dir.path() / "saved.bin";
  EXPECT_FALSE(sotto_save_attachment(carol.c, carol.group(), file_id.c_str(), 0, saved.c_str(),
                                     nullptr, nullptr, &err));
  EXPECT_EQ(err, SOTTO_ERR_INVALID_STATE) << "saved before it was downloaded";
  ASSERT_TRUE(sotto_download_attachment(carol.c, carol.group(), file_id.c_str(), 0, nullptr,
                                        nullptr, &err))
      << sotto_error_string();
  ASSERT_TRUE(sotto_save_attachment(carol.c, carol.group(), file_id.c_str(), 0, saved.c_str(),
                                    nullptr, nullptr, &err))
      << sotto_error_string();
  EXPECT_EQ(read_file(saved), content);
  size_t size = 0;
  uint8_t* bytes = sotto_read_attachment(carol.c, carol.group(), file_id.c_str(), 0,
                                         content.size(), &size, &err);
  ASSERT_NE(bytes, nullptr) << sotto_error_string();
  EXPECT_EQ(Bytes(bytes, bytes + size), content);
  sotto_bytes_free(bytes);
  EXPECT_EQ(sotto_read_attachment(carol.c, carol.group(), file_id.c_str(), 0, content.size() - 1,
                                  &size, &err),
            nullptr);
  EXPECT_EQ(err, SOTTO_ERR_TOO_LARGE);

  // An edit reaches the others; search finds the new words only.
  ASSERT_TRUE(sotto_send_text(alice.c, group, "the meeting is on tuesday", id, &err));
  ASSERT_TRUE(eventually([&] { return bob.texts() == 3; }));
  ASSERT_TRUE(sotto_edit_message(alice.c, group, id, "the meeting is on friday", &err));
  ASSERT_TRUE(eventually([&] {
    std::lock_guard lock(bob.seen.mu);
    return !bob.seen.changed.empty() && bob.seen.changed.back() == "the meeting is on friday";
  }));
  sotto_search_query q{};
  q.text = "friday";
  sotto_search_page* page = sotto_search(bob.c, &q, &err);
  ASSERT_NE(page, nullptr) << sotto_error_string();
  ASSERT_EQ(page->count, 1u);
  EXPECT_EQ(page->hits[0].conversation, bob.group());
  EXPECT_EQ(page->hits[0].highlight_count, 1u);
  sotto_search_page_free(page);
  q.text = "tuesday";
  page = sotto_search(bob.c, &q, &err);
  ASSERT_NE(page, nullptr);
  EXPECT_EQ(page->count, 0u);
  sotto_search_page_free(page);
  q.text = "\"unclosed";
  EXPECT_EQ(sotto_search(bob.c, &q, &err), nullptr);
  EXPECT_EQ(err, SOTTO_ERR_INVALID_ARGUMENT);

  // Leaving: carol is out, and says so.
  ASSERT_TRUE(sotto_leave_group(carol.c, carol.group(), &err)) << sotto_error_string();
  ASSERT_TRUE(eventually([&] {
    sotto_group* g = sotto_group_info(alice.c, group, &err);
    bool two = g && g->member_count == 2;
    sotto_group_free(g);
    return two;
  }));
  EXPECT_FALSE(sotto_send_text(carol.c, carol.group(), "still here?", id, &err));
  EXPECT_EQ(err, SOTTO_ERR_FORBIDDEN);
}

// Plain ws:// to another machine is refused when the client is opened, unless the app asked
// for it as a development option. Nothing connects here: the address is never dialed.
TEST(CApi, PlainWebSocketToAnotherMachineNeedsTheDevelopmentOption) {
  TempDir dir;
  Bytes key(32, 7);
  sotto_options o{"ws://192.0.2.10:8080/v1/ws", "c", false};
  sotto_error err = SOTTO_OK;
  sotto_client* c = sotto_client_open((dir.path() / "a").c_str(), nullptr, key.data(), &o, &err);
  EXPECT_EQ(c, nullptr);
  EXPECT_EQ(err, SOTTO_ERR_INVALID_ARGUMENT);
  EXPECT_NE(std::string(sotto_error_string()).find("dangerously_allow_plaintext_relay"),
            std::string::npos)
      << sotto_error_string();
  sotto_client_close(c);

  o.dangerously_allow_plaintext_relay = true;
  c = sotto_client_open((dir.path() / "a").c_str(), nullptr, key.data(), &o, &err);
  EXPECT_NE(c, nullptr) << sotto_error_string();
  EXPECT_EQ(err, SOTTO_OK);
  sotto_client_close(c);
}

// A folder name in UTF-8 reaches the disk as those letters, whatever the system's own narrow
// encoding (Windows would read the bytes in its ANSI code page), and opens again.
TEST(CApi, AProfileFolderWithANonAsciiNameKeepsItsName) {
  TempDir dir;
  const std::string name =
      "pr\xc3\xb8"
      "fil-\xe6\x97\xa5\xe6\x9c\xac";  // "prøfil-日本"
  const std::string path = (dir.path() / name).string();
  sotto_options o{"ws://127.0.0.1:9/v1/ws", "d", false};
  for (int round = 0; round < 2; ++round) {
    sotto_error err = SOTTO_OK;
    sotto_client* c = sotto_client_open(path.c_str(), "a passphrase", nullptr, &o, &err);
    ASSERT_NE(c, nullptr) << sotto_error_string();
    sotto_client_close(c);
  }
  std::vector<std::string> names;
  for (const auto& entry : std::filesystem::directory_iterator(dir.path()))
    names.push_back(entry.path().filename().string());
  EXPECT_EQ(names, std::vector<std::string>{name});
}

}  // namespace
}  // namespace sotto::test
