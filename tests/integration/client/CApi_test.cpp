// The C API (sotto.h) beyond the basics of sdk/examples/hello.c: groups, files, edits, search
// and the callbacks that report them, against a real relay.
#include <gtest/gtest.h>
#include <sodium.h>

#include <algorithm>
#include <atomic>
#include <fstream>
#include <mutex>
#include <thread>

#include "ClientHarness.h"
#include "platform/Platform.h"
#include "sotto.h"

namespace sotto::test {
namespace {

// A path as the C API takes it: UTF-8 (on Windows a path's own characters are UTF-16).
std::string utf8(const std::filesystem::path& p) { return platform::to_utf8(p); }

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
    std::string url = relay.ws_url();
    sotto_options o{};
    o.relay_url = url.c_str();
    o.device_name = name.c_str();
    Bytes key(32, static_cast<uint8_t>(name[0]));
    sotto_error err;
    c = sotto_client_open(utf8(dir.path() / name).c_str(), nullptr, key.data(), &o, &err);
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
  char id[SOTTO_MESSAGE_ID_LEN];
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
  ASSERT_TRUE(
      sotto_send_file(alice.c, group, utf8(path).c_str(), &fo, keep_going, &finished, id, &err))
      << sotto_error_string();
  EXPECT_GT(finished, 0u);
  std::string file_id;
  ASSERT_TRUE(eventually([&] {
    std::lock_guard lock(carol.seen.mu);
    if (!carol.seen.files.empty()) file_id = carol.seen.files[0].first;
    return !file_id.empty();
  }));
  auto saved = dir.path() / "saved.bin";
  EXPECT_FALSE(sotto_save_attachment(carol.c, carol.group(), file_id.c_str(), 0,
                                     utf8(saved).c_str(), nullptr, nullptr, &err));
  EXPECT_EQ(err, SOTTO_ERR_INVALID_STATE) << "saved before it was downloaded";
  ASSERT_TRUE(sotto_download_attachment(carol.c, carol.group(), file_id.c_str(), 0, nullptr,
                                        nullptr, &err))
      << sotto_error_string();
  ASSERT_TRUE(sotto_save_attachment(carol.c, carol.group(), file_id.c_str(), 0, utf8(saved).c_str(),
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

// What the C++ API offers beside messaging: contacts, one message, per-recipient receipts, the
// read-receipt setting, devices, a passphrase change, the options and the log, the end of an
// account and of its profile.
TEST(CApi, ContactsReceiptsDevicesOptionsAndTheEndOfAnAccount) {
  RelayProcess relay;
  TempDir dir;
  CClient alice(relay, dir, "calice2"), bob(relay, dir, "cbob2");
  sotto_error err;

  char bob_id[SOTTO_ACCOUNT_ID_LEN];
  ASSERT_TRUE(sotto_add_contact(alice.c, bob.me.handle, bob_id, &err)) << sotto_error_string();
  sotto_contact_list* contacts = sotto_contacts(alice.c, &err);
  ASSERT_NE(contacts, nullptr) << sotto_error_string();
  ASSERT_EQ(contacts->count, 1u);
  EXPECT_STREQ(contacts->items[0].account, bob.me.account);
  EXPECT_STREQ(contacts->items[0].handle, bob.me.handle);
  sotto_contact_list_free(contacts);

  int64_t conv = sotto_direct_conversation(alice.c, bob_id, &err);
  ASSERT_GE(conv, 0) << sotto_error_string();
  EXPECT_FALSE(sotto_is_verified(alice.c, bob_id, &err));
  EXPECT_EQ(err, SOTTO_OK) << sotto_error_string();
  ASSERT_TRUE(sotto_set_verified(alice.c, bob_id, true, &err)) << sotto_error_string();
  EXPECT_TRUE(sotto_is_verified(alice.c, bob_id, &err));
  EXPECT_EQ(sotto_messages(alice.c, conv, nullptr, 0, &err), nullptr);
  EXPECT_EQ(err, SOTTO_ERR_INVALID_ARGUMENT);
  EXPECT_EQ(sotto_messages(alice.c, conv, nullptr, 1001, &err), nullptr);

  // Bob reads it: alice's copy turns read, with bob's receipt.
  char id[SOTTO_MESSAGE_ID_LEN];
  ASSERT_TRUE(sotto_send_text(alice.c, conv, "read me", id, &err));
  ASSERT_TRUE(eventually([&] { return bob.texts() == 1; }));
  int64_t bob_conv = sotto_direct_conversation(bob.c, alice.me.account, &err);
  ASSERT_TRUE(sotto_mark_read(bob.c, bob_conv, id, &err)) << sotto_error_string();
  ASSERT_TRUE(eventually([&] {
    sotto_message* m = sotto_message_get(alice.c, conv, id, &err);
    bool read = m && m->status == SOTTO_STATUS_READ && m->read_by == 1;
    sotto_message_free(m);
    return read;
  }));
  sotto_receipt_list* receipts = sotto_receipts(alice.c, conv, id, &err);
  ASSERT_NE(receipts, nullptr) << sotto_error_string();
  ASSERT_EQ(receipts->count, 1u);
  EXPECT_STREQ(receipts->items[0].account, bob.me.account);
  EXPECT_EQ(receipts->items[0].status, SOTTO_STATUS_READ);
  EXPECT_GT(receipts->items[0].at_ms, 0u);
  sotto_receipt_list_free(receipts);
  EXPECT_EQ(sotto_message_get(alice.c, conv, "00000000000000000000000000000000", &err), nullptr);
  EXPECT_EQ(err, SOTTO_ERR_NOT_FOUND);

  // With read receipts off, bob reading the next one leaves it delivered.
  ASSERT_TRUE(sotto_set_read_receipts(bob.c, false, &err));
  ASSERT_TRUE(sotto_send_text(alice.c, conv, "and this", id, &err));
  ASSERT_TRUE(eventually([&] {
    sotto_message* m = sotto_message_get(alice.c, conv, id, &err);
    bool delivered = m && m->status == SOTTO_STATUS_DELIVERED;
    sotto_message_free(m);
    return delivered;
  }));
  ASSERT_TRUE(sotto_mark_read(bob.c, bob_conv, id, &err));
  std::this_thread::sleep_for(500ms);
  sotto_message* unread = sotto_message_get(alice.c, conv, id, &err);
  ASSERT_NE(unread, nullptr);
  EXPECT_EQ(unread->status, SOTTO_STATUS_DELIVERED);
  sotto_message_free(unread);

  sotto_device_list* devices = sotto_devices(alice.c, &err);
  ASSERT_NE(devices, nullptr) << sotto_error_string();
  ASSERT_EQ(devices->count, 1u);
  EXPECT_TRUE(devices->items[0].this_device);
  EXPECT_STREQ(devices->items[0].name, "calice2");
  EXPECT_EQ(devices->items[0].device_id, alice.me.device_id);
  sotto_device_list_free(devices);
  EXPECT_FALSE(sotto_unlink_this_device(alice.c, &err));
  EXPECT_EQ(err, SOTTO_ERR_FORBIDDEN);
  EXPECT_FALSE(sotto_remove_device(alice.c, 99, &err));
  EXPECT_EQ(err, SOTTO_ERR_NOT_FOUND) << sotto_error_string();

  // Bob deletes his account; his profile is erased once closed.
  ASSERT_TRUE(sotto_delete_account(bob.c, &err)) << sotto_error_string();
  EXPECT_EQ(sotto_connection(bob.c), SOTTO_LOGGED_OUT);
  EXPECT_FALSE(sotto_add_contact(alice.c, bob.me.handle, bob_id, &err));
  EXPECT_EQ(err, SOTTO_ERR_NOT_FOUND);
  const std::string bob_dir = utf8(dir.path() / "cbob2");
  EXPECT_FALSE(sotto_profile_erase(bob_dir.c_str(), &err));
  EXPECT_EQ(err, SOTTO_ERR_BUSY);
  sotto_client_close(bob.c);
  bob.c = nullptr;
  ASSERT_TRUE(sotto_profile_erase(bob_dir.c_str(), &err)) << sotto_error_string();
  EXPECT_FALSE(std::filesystem::exists(bob_dir));

  // A passphrase change: the profile opens with the new one only. The options' log hears the
  // connection come and go.
  ASSERT_TRUE(sotto_change_passphrase(alice.c, "a new passphrase", &err)) << sotto_error_string();
  sotto_client_close(alice.c);
  alice.c = nullptr;
  const std::string alice_dir = utf8(dir.path() / "calice2");
  std::string url = relay.ws_url();
  sotto_options o{};
  o.relay_url = url.c_str();
  o.backoff_initial_ms = 2000;
  o.backoff_max_ms = 1000;
  EXPECT_EQ(sotto_client_open(alice_dir.c_str(), "a new passphrase", nullptr, &o, &err), nullptr);
  EXPECT_EQ(err, SOTTO_ERR_INVALID_ARGUMENT);
  EXPECT_NE(std::string(sotto_error_string()).find("backoff_max_ms"), std::string::npos);
  o.backoff_max_ms = 0;
  struct Lines {
    std::mutex mu;
    std::vector<std::string> lines;
  } log;
  o.log = [](void* user, const char* line) {
    auto* l = static_cast<Lines*>(user);
    std::lock_guard lock(l->mu);
    l->lines.emplace_back(line);
  };
  o.log_user_data = &log;
  Bytes old_key(32, static_cast<uint8_t>('c'));
  EXPECT_EQ(sotto_client_open(alice_dir.c_str(), nullptr, old_key.data(), &o, &err), nullptr);
  EXPECT_EQ(err, SOTTO_ERR_WRONG_KEY);
  sotto_client* reopened = sotto_client_open(alice_dir.c_str(), "a new passphrase", nullptr, &o, &err);
  ASSERT_NE(reopened, nullptr) << sotto_error_string();
  ASSERT_TRUE(sotto_connect(reopened, &err)) << sotto_error_string();
  EXPECT_TRUE(sotto_wait_online(reopened, 20000));
  sotto_client_close(reopened);
  std::lock_guard lock(log.mu);
  EXPECT_TRUE(std::any_of(log.lines.begin(), log.lines.end(), [](const std::string& l) {
    return l.find("connection") != std::string::npos;
  })) << log.lines.size() << " log lines";
}

// Plain ws:// to another machine is refused when the client is opened, unless the app asked
// for it as a development option. Nothing connects here: the address is never dialed.
TEST(CApi, PlainWebSocketToAnotherMachineNeedsTheDevelopmentOption) {
  TempDir dir;
  Bytes key(32, 7);
  sotto_options o{};
  o.relay_url = "ws://192.0.2.10:8080/v1/ws";
  o.device_name = "c";
  sotto_error err = SOTTO_OK;
  sotto_client* c =
      sotto_client_open(utf8(dir.path() / "a").c_str(), nullptr, key.data(), &o, &err);
  EXPECT_EQ(c, nullptr);
  EXPECT_EQ(err, SOTTO_ERR_INVALID_ARGUMENT);
  EXPECT_NE(std::string(sotto_error_string()).find("dangerously_allow_plaintext_relay"),
            std::string::npos)
      << sotto_error_string();
  sotto_client_close(c);

  o.dangerously_allow_plaintext_relay = true;
  c = sotto_client_open(utf8(dir.path() / "a").c_str(), nullptr, key.data(), &o, &err);
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
  const std::string path = utf8(dir.path()) + "/" + name;  // the name stays UTF-8
  sotto_options o{};
  o.relay_url = "ws://127.0.0.1:9/v1/ws";
  o.device_name = "d";
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
