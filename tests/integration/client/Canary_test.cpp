// Canaries: distinct random strings go through real Clients and a real relay process as every
// kind of user content (message text, an edit, a file's caption, name and content, a group
// name, device names, search queries), on the sending and the receiving side, the receiver
// downloading and saving the file. Then every byte this leaves behind is searched for them,
// in the encodings a careless component might use: every file of the three profiles and of
// the relay's data dir (and the names of those files), the relay's log, and every byte that
// crossed the TCP proxy between the clients and the relay; once while the clients run and
// again after everything stopped.
// docs/threat-model.md says what this proves and what it does not.
#include <gtest/gtest.h>
#include <sodium.h>

#include <cstring>
#include <fstream>
#include <map>
#include <mutex>

#include "ClientHarness.h"
#include "FaultyProxy.h"

namespace sotto::test {
namespace {

namespace fs = std::filesystem;

// 32 random letters and digits, mixed case so that a lower-cased copy (a search index, say)
// is a different byte string; 190 bits, so no byte string matches one by accident.
std::string canary() {
  static const char kAlphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
  std::string out;
  while (out.size() < 32) {
    uint8_t b = 0;
    randombytes_buf(&b, 1);
    if (b < 248) out += kAlphabet[b % 62];  // 248 = 4 * 62: no bias
  }
  return out;
}

std::string lower(std::string s) {
  for (char& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return s;
}

std::string utf16(const std::string& s, bool big_endian) {
  std::string out;
  for (char c : s) {
    if (big_endian) out += '\0';
    out += c;
    if (!big_endian) out += '\0';
  }
  return out;
}

std::string base64(const std::string& s, int variant) {
  std::string out(sodium_base64_encoded_len(s.size(), variant), '\0');
  sodium_bin2base64(out.data(), out.size(), reinterpret_cast<const unsigned char*>(s.data()),
                    s.size(), variant);
  out.resize(std::strlen(out.c_str()));
  return out;
}

std::string hex(const std::string& s, bool upper) {
  std::string out = to_hex(as_bytes(s));
  if (upper)
    for (char& c : out) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  return out;
}

// What a copy of `c` looks like in each encoding. Base64 depends on where `c` starts relative
// to the 3-byte groups of the encoded text: for each of the three offsets, the characters that
// encode whole groups inside `c` (and so appear whatever surrounds it).
std::vector<std::pair<std::string, std::string>> forms_of(const std::string& c) {
  std::vector<std::pair<std::string, std::string>> out = {
      {"as is", c},
      {"lower-cased", lower(c)},
      {"UTF-16LE", utf16(c, false)},
      {"UTF-16BE", utf16(c, true)},
      {"hex", hex(c, false)},
      {"HEX", hex(c, true)},
  };
  for (size_t offset = 0; offset < 3; ++offset) {
    size_t skip = (3 - offset) % 3;
    std::string whole = c.substr(skip, (c.size() - skip) / 3 * 3);
    out.emplace_back("base64 at offset " + std::to_string(offset),
                     base64(whole, sodium_base64_VARIANT_ORIGINAL_NO_PADDING));
    out.emplace_back("base64url at offset " + std::to_string(offset),
                     base64(whole, sodium_base64_VARIANT_URLSAFE_NO_PADDING));
  }
  return out;
}

struct Canary {
  std::string what;
  std::string text;
  std::vector<std::pair<std::string, std::string>> forms;
};

struct Haystack {
  std::string where;
  std::string bytes;
};

// Where any form of any canary occurs, one line each.
std::vector<std::string> leaks(const std::vector<Canary>& canaries,
                               const std::vector<Haystack>& haystacks) {
  std::vector<std::string> out;
  for (const auto& h : haystacks)
    for (const auto& c : canaries)
      for (const auto& [form, bytes] : c.forms)
        if (std::string_view(h.bytes).find(bytes) != std::string_view::npos)
          out.push_back(c.what + " (" + form + ") in " + h.where);
  return out;
}

// Every regular file under `dir`, read as it is now, and the names of everything there;
// files that vanish meanwhile are skipped (the clients may be running).
void add_tree(std::vector<Haystack>& out, const fs::path& dir, const std::string& label) {
  std::error_code ec;
  std::string names;
  for (auto it = fs::recursive_directory_iterator(dir, ec);
       !ec && it != fs::recursive_directory_iterator(); it.increment(ec)) {
    std::string name = fs::relative(it->path(), dir, ec).string();
    names += name + "\n";
    if (!it->is_regular_file(ec)) continue;
    Bytes bytes = read_file(it->path());
    out.push_back({label + ": " + name, std::string(bytes.begin(), bytes.end())});
  }
  out.push_back({label + ": the names of its files", std::move(names)});
}

// Every byte the proxy carried, one stream per connection and direction, so that a canary
// split over two reads of the same stream is still found.
class Wire {
 public:
  void record(uint64_t connection, bool to_relay, const char* data, size_t n) {
    std::lock_guard lock(mu_);
    streams_[{connection, to_relay}].append(data, n);
  }
  void add_to(std::vector<Haystack>& out) const {
    std::lock_guard lock(mu_);
    for (const auto& [key, bytes] : streams_)
      out.push_back({"connection " + std::to_string(key.first) +
                         (key.second ? ", client to relay" : ", relay to client"),
                     bytes});
  }
  size_t bytes() const {
    std::lock_guard lock(mu_);
    size_t n = 0;
    for (const auto& [key, bytes] : streams_) n += bytes.size();
    return n;
  }

 private:
  mutable std::mutex mu_;
  std::map<std::pair<uint64_t, bool>, std::string> streams_;
};

std::optional<Message> received(TestClient& c, const std::function<bool(const Message&)>& pred) {
  for (const auto& m : c.events().messages())
    if (!m.outgoing && pred(m)) return m;
  return std::nullopt;
}

bool has_received(TestClient& c, const std::function<bool(const Message&)>& pred) {
  return received(c, pred).has_value();
}

size_t hits(TestClient& c, const std::string& text) {
  SearchQuery q;
  q.text = text;
  auto page = c->search(q);
  EXPECT_TRUE(page.ok()) << page.error().message;
  return page.ok() ? page->hits.size() : 0;
}

// The scanner itself: each form is found wherever the canary sits, base64 at every offset.
TEST(Canary, TheScannerFindsEveryEncodingAtEveryOffset) {
  Canary c{"test", canary(), {}};
  c.forms = forms_of(c.text);
  for (size_t offset = 0; offset < 3; ++offset) {
    std::string around = std::string(offset, '#') + "before " + c.text + " after";
    for (const std::string& encoded :
         {around, lower(around), utf16(around, false), utf16(around, true), hex(around, false),
          hex(around, true), base64(around, sodium_base64_VARIANT_ORIGINAL),
          base64(around, sodium_base64_VARIANT_URLSAFE)})
      EXPECT_EQ(leaks({c}, {{"sample", encoded}}).size() > 0, true)
          << "missed at offset " << offset << " in " << encoded;
  }
  EXPECT_TRUE(leaks({c}, {{"other", "before " + canary() + " after"}}).empty());
}

TEST(Canary, NoUserContentReachesAProfileTheRelayOrTheWireInAnyForm) {
  RelayProcess relay;
  Wire wire;
  FaultyProxy proxy(relay.port(), [&](uint64_t connection, bool to_relay, const char* data,
                                      size_t n) { wire.record(connection, to_relay, data, n); });
  const std::string url = "ws://127.0.0.1:" + std::to_string(proxy.port()) + "/v1/ws";

  std::vector<Canary> canaries;
  auto make = [&](const std::string& what) -> std::string {
    canaries.push_back({what, canary(), {}});
    canaries.back().forms = forms_of(canaries.back().text);
    return canaries.back().text;
  };
  const std::string text = make("message text");
  const std::string reply = make("the receiver's reply");
  const std::string edit = make("edited text");
  const std::string caption = make("file caption");
  const std::string file_name = make("file name") + ".txt";
  const std::string file_word = make("file content");
  const std::string group_name = make("group name");
  const std::string group_text = make("group message");
  const std::string alice_device = make("device name");
  const std::string laptop_device = make("linked device name");
  const std::string bob_device = make("receiver's device name");
  const std::string alice_query = make("sender's search query");
  const std::string bob_query = make("receiver's search query");

  TestClient alice(url, "alice", alice_device), laptop(url, "laptop", laptop_device),
      bob(url, "bob", bob_device);
  alice.register_account();
  bob.register_account();
  {
    auto invite = laptop->start_link();
    ASSERT_TRUE(invite.ok()) << invite.error().message;
    ASSERT_TRUE(alice->approve_link(invite->text).ok());
    auto linked = laptop->finish_link(20s);
    ASSERT_TRUE(linked.ok()) << linked.error().message;
    ASSERT_TRUE(laptop->wait_online(20s));
  }

  // Text, a reply and an edit.
  ConversationId ab = alice.conversation_with(bob);
  auto id = alice->send_text(ab, "hello " + text);
  ASSERT_TRUE(id.ok()) << id.error().message;
  ASSERT_TRUE(eventually([&] { return has_received(bob, [&](auto& m) { return m.id == *id; }); }));
  ConversationId ba = received(bob, [&](auto& m) { return m.id == *id; })->conversation;
  ASSERT_TRUE(bob->send_text(ba, "hi " + reply).ok());
  ASSERT_TRUE(eventually(
      [&] { return has_received(alice, [&](auto& m) { return m.text == "hi " + reply; }); }));
  ASSERT_TRUE(alice->edit_message(ab, *id, "hello " + edit).ok());
  ASSERT_TRUE(eventually([&] { return bob->message(ba, *id).value().text == "hello " + edit; }));

  // A file: its caption, name and content; the sender deletes the original; the receiver
  // and the sender's other device download it, and the receiver saves it outside its profile.
  TempDir originals, saved;
  std::string content;
  for (int i = 0; i < 4000; ++i) content += "line " + std::to_string(i) + ": " + file_word + "\n";
  std::ofstream(originals / file_name, std::ios::binary) << content;
  FileOptions fo;
  fo.caption = "see " + caption;
  auto file_id = alice->send_file(ab, originals / file_name, fo);
  ASSERT_TRUE(file_id.ok()) << file_id.error().message;
  fs::remove(originals / file_name);
  ASSERT_TRUE(
      eventually([&] { return has_received(bob, [&](auto& m) { return m.id == *file_id; }); }));
  Message file = *received(bob, [&](auto& m) { return m.id == *file_id; });
  ASSERT_EQ(file.attachments.size(), 1u);
  EXPECT_EQ(file.attachments[0].file_name, file_name);
  EXPECT_EQ(file.text, "see " + caption);
  ASSERT_TRUE(bob->download_attachment(ba, *file_id, 0).ok());
  ASSERT_TRUE(bob->save_attachment(ba, *file_id, 0, saved / file_name).ok());
  auto in_memory = bob->read_attachment(ba, *file_id, 0);
  ASSERT_TRUE(in_memory.ok()) << in_memory.error().message;
  EXPECT_EQ(std::string(in_memory->begin(), in_memory->end()), content);
  std::optional<Message> on_laptop;
  ASSERT_TRUE(eventually([&] {
    auto convs = laptop->conversations();
    for (const auto& conv : convs.ok() ? *convs : std::vector<Conversation>{})
      if (auto m = laptop.find(conv.id, *file_id)) on_laptop = m;
    return on_laptop.has_value();
  }));
  ASSERT_TRUE(laptop->download_attachment(on_laptop->conversation, *file_id, 0).ok());

  // A group, named and written to.
  auto group = alice->create_group(group_name, {bob.info().account});
  ASSERT_TRUE(group.ok()) << group.error().message;
  ASSERT_TRUE(alice->send_text(*group, "all: " + group_text).ok());
  ASSERT_TRUE(eventually(
      [&] { return has_received(bob, [&](auto& m) { return m.text == "all: " + group_text; }); }));
  ConversationId bob_group =
      received(bob, [&](auto& m) { return m.text == "all: " + group_text; })->conversation;
  EXPECT_EQ(bob->group(bob_group).value().name, group_name);

  // Device names, decrypted on the account's own devices.
  auto names = [](TestClient& c) {
    std::vector<std::string> out;
    auto devices = c->devices();
    EXPECT_TRUE(devices.ok()) << devices.error().message;
    if (devices.ok())
      for (const auto& d : *devices) out.push_back(d.name);
    std::sort(out.begin(), out.end());
    return out;
  };
  auto expected = std::vector<std::string>{alice_device, laptop_device};
  std::sort(expected.begin(), expected.end());
  EXPECT_EQ(names(alice), expected);
  EXPECT_EQ(names(bob), std::vector<std::string>{bob_device});

  // Searches on both sides: queries that find nothing, and ones that find what was sent.
  EXPECT_EQ(hits(alice, alice_query), 0u);
  EXPECT_EQ(hits(bob, bob_query), 0u);
  EXPECT_EQ(hits(bob, edit), 1u);
  EXPECT_EQ(hits(alice, caption), 1u);

  // The file's name and content did go somewhere: where the receiver saved it, outside its
  // profile. The scan finds them there.
  std::vector<Haystack> control;
  add_tree(control, saved.path(), "the receiver's folder");
  EXPECT_EQ(leaks(canaries, control),
            (std::vector<std::string>{
                "file content (as is) in the receiver's folder: " + file_name,
                "file name (as is) in the receiver's folder: the names of its files"}));

  auto everything = [&] {
    std::vector<Haystack> out;
    add_tree(out, alice.dir(), "alice's profile");
    add_tree(out, laptop.dir(), "alice's linked device's profile");
    add_tree(out, bob.dir(), "bob's profile");
    add_tree(out, relay.data_dir(), "the relay's data dir");
    out.push_back({"the relay's log", relay.log()});
    wire.add_to(out);
    return out;
  };
  EXPECT_GT(wire.bytes(), 3 * content.size()) << "the file went up once and down twice";
  EXPECT_EQ(leaks(canaries, everything()), std::vector<std::string>())
      << "with the clients running";

  // Everything stopped: databases checkpointed, the relay shut down cleanly.
  alice.close();
  laptop.close();
  bob.close();
  EXPECT_EQ(relay.terminate(), 0);
  auto after = everything();
  size_t relay_files = 0;
  for (const auto& h : after) relay_files += h.where.rfind("the relay's data dir", 0) == 0;
  EXPECT_GT(relay_files, 0u);
  EXPECT_EQ(leaks(canaries, after), std::vector<std::string>()) << "after everything stopped";
}

}  // namespace
}  // namespace sotto::test
