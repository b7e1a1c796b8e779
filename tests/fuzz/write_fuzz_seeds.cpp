// Writes the seed corpora of the SDK's fuzz targets into DIR/<target>/ (tests/fuzz/seeds when
// run from the source tree): a few valid inputs per target, so that the fuzzers start from
// what real peers and relays send. The files are committed; run this again when a target's
// input format changes:
//   build/tests/fuzz/write_fuzz_seeds tests/fuzz/seeds
#include <sodium.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "AttachmentCipher.h"
#include "ContentScript.h"
#include "MemoryProtocolStore.h"
#include "Provisioning.h"
#include "SessionCrypto.h"
#include "sotto/keys/KeyGen.h"
#include "sotto/proto/content.pb.h"
#include "sotto/proto/wire.pb.h"

namespace {

using namespace sotto;
using namespace sotto::fuzz;
namespace fs = std::filesystem;

fs::path g_root;

void put(const std::string& target, const std::string& name, const std::string& bytes) {
  fs::create_directories(g_root / target);
  std::ofstream out(g_root / target / name, std::ios::binary | std::ios::trunc);
  out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  if (!out) {
    std::fprintf(stderr, "cannot write %s/%s\n", target.c_str(), name.c_str());
    std::exit(1);
  }
}

// ---- fuzz_content ----

class ContentSeed {
 public:
  ContentSeed& message(ContentOp op, ContentSender from, const content::Content& c,
                       uint8_t flags = 0) {
    std::string bytes = c.SerializeAsString();
    out_ += char(op);
    out_ += char(from);
    out_ += char(flags);
    u16(bytes.size());
    out_ += bytes;
    return *this;
  }
  ContentSeed& garbage(ContentSender from, uint8_t type, const std::string& bytes) {
    out_ += char(kGarbage);
    out_ += char(from);
    out_ += char(type);
    u16(bytes.size());
    out_ += bytes;
    return *this;
  }
  ContentSeed& deliver() {
    out_ += char(kDeliver);
    return *this;
  }
  ContentSeed& relay(const wire::Frame& f) {
    std::string bytes = f.SerializeAsString();
    out_ += char(kRelay);
    u16(bytes.size());
    out_ += bytes;
    return *this;
  }
  ContentSeed& clock(uint16_t tens_of_seconds) {
    out_ += char(kClock);
    u16(tens_of_seconds);
    return *this;
  }
  void write(const std::string& name) {
    put("fuzz_content", name, out_);
    everything() += out_;
  }
  // Every seed's steps in one input: long inputs from the start, so the fuzzer's length
  // limit (which grows from the longest seed) leaves room for many steps.
  static std::string& everything() {
    static std::string all;
    return all;
  }

 private:
  void u16(size_t n) {
    out_ += char(n & 0xff);
    out_ += char((n >> 8) & 0xff);
  }
  std::string out_;
};

content::Content text(const std::string& id, const std::string& body, uint64_t at_ms) {
  content::Content c;
  auto* dm = c.mutable_data_message();
  dm->set_message_id(id);
  dm->set_timestamp_ms(at_ms);
  dm->set_text(body);
  return c;
}

content::Content in_group(content::Content c) {
  c.mutable_data_message()->mutable_group()->set_group_id(kGroupId);
  c.mutable_data_message()->mutable_group()->set_revision(1);
  return c;
}

content::GroupUpdate group(uint32_t revision, const std::string& name,
                           const std::vector<std::pair<std::string, std::string>>& members,
                           const std::string& by) {
  content::GroupUpdate u;
  u.set_group_id(kGroupId);
  u.set_revision(revision);
  u.set_name(name);
  for (const auto& [account, handle] : members) {
    auto* m = u.add_members();
    m->set_account_id(account);
    m->set_handle(handle);
  }
  u.add_admins(kPeer);
  u.set_changed_by(by);
  u.set_timestamp_ms(kInputStartMs);
  return u;
}

content::Content receipt(content::Receipt::Type type, const std::vector<std::string>& ids) {
  content::Content c;
  c.mutable_receipt()->set_type(type);
  for (const auto& id : ids) c.mutable_receipt()->add_message_ids(id);
  c.mutable_receipt()->set_timestamp_ms(kInputStartMs);
  return c;
}

void content_seeds() {
  const uint64_t t = kInputStartMs;
  {
    auto c = text(message_id(20), "a reply, @carol", t);
    auto* q = c.mutable_data_message()->mutable_quote();
    q->set_message_id(kPeerMessage);
    q->set_author_account_id(kPeer);
    q->set_text("hello from alice");
    auto* m = c.mutable_data_message()->add_mentions();
    m->set_start(9);
    m->set_length(6);
    m->set_account_id(kStranger);
    ContentSeed().message(kPairwise, kFromPeer, c).deliver().write("reply_with_quote");
  }
  {
    auto edit = text(message_id(21), "hello from alice, edited", t + 1000);
    edit.mutable_data_message()->set_edit_of(kPeerMessage);
    content::Content del;
    del.mutable_data_message()->set_message_id(message_id(22));
    del.mutable_data_message()->set_timestamp_ms(t + 2000);
    del.mutable_data_message()->set_delete_of(kPeerMessage);
    ContentSeed()
        .message(kPairwise, kFromPeer, edit)
        .deliver()
        .message(kPairwise, kFromPeer, del)
        .deliver()
        .write("edit_then_delete");
  }
  {
    ContentSeed()
        .message(kPairwise, kFromPeer,
                 receipt(content::Receipt::DELIVERED, {kOwnToPeerMessage, kOwnGroupMessage}))
        .message(kPairwise, kFromStranger, receipt(content::Receipt::DELIVERED, {kOwnGroupMessage}))
        .deliver()
        .message(kPairwise, kFromPeer,
                 receipt(content::Receipt::READ, {kOwnToPeerMessage, kOwnGroupMessage}))
        .deliver()
        .write("receipts");
  }
  {
    content::Content c;
    *c.mutable_group_update() =
        group(2, "fuzz, renamed", {{kPeer, "alice"}, {kMe, "me"}, {account_bytes('\xdd'), "dave"}},
              kPeer);
    ContentSeed()
        .message(kPairwise, kFromPeer, c)
        .deliver()
        .message(kGroup, kFromStranger, in_group(text(message_id(23), "still here?", t)))
        .message(kGroup, kFromPeer, in_group(text(message_id(24), "carol is gone", t)))
        .deliver()
        .write("group_update");
  }
  {
    content::Content typing;
    typing.mutable_typing()->set_action(content::Typing::STARTED);
    typing.mutable_typing()->set_group_id(kGroupId);
    typing.mutable_typing()->set_timestamp_ms(t);
    ContentSeed()
        .message(kGroup, kFromPeer, in_group(text(message_id(25), "group hello", t)))
        .message(kGroup, kFromOwnDevice, in_group(text(message_id(26), "from my laptop", t)))
        .message(kGroup, kFromStranger, typing, kEphemeral)
        .deliver()
        .write("group_messages");
  }
  {
    content::Content sent;
    auto* s = sent.mutable_sync()->mutable_sent();
    s->set_destination_account_id(kPeer);
    s->set_destination_handle("alice");
    s->set_message_id(message_id(27));
    s->set_timestamp_ms(t);
    *s->mutable_message() = text(message_id(27), "sent from my laptop", t).data_message();
    content::Content read;
    auto* r = read.mutable_sync()->mutable_read()->add_records();
    r->set_sender_account_id(kPeer);
    r->set_message_id(kPeerMessage);
    r->set_read_at_ms(t);
    content::Content contacts;
    auto* k = contacts.mutable_sync()->mutable_contacts()->add_contacts();
    k->set_account_id(account_bytes('\xdd'));
    k->set_handle("dave");
    contacts.mutable_sync()->mutable_contacts()->set_complete(true);
    content::Content groups;
    *groups.mutable_sync()->mutable_groups()->add_groups() =
        group(3, "fuzz", {{kPeer, "alice"}, {kMe, "me"}}, kPeer);
    groups.mutable_sync()->mutable_groups()->set_complete(true);
    content::Content ask;
    ask.mutable_sync()->mutable_request()->set_kind(content::SyncRequest::GROUPS);
    ContentSeed()
        .message(kPairwise, kFromOwnDevice, sent)
        .message(kPairwise, kFromOwnDevice, read)
        .message(kPairwise, kFromOwnDevice, contacts)
        .deliver()
        .message(kPairwise, kFromOwnDevice, groups)
        .message(kPairwise, kFromOwnDevice, ask)
        .deliver()
        .write("sync");
  }
  {
    content::Content typing;
    typing.mutable_typing()->set_action(content::Typing::STARTED);
    typing.mutable_typing()->set_timestamp_ms(t);
    auto timer = text(message_id(28), "", t);
    timer.mutable_data_message()->set_expire_timer_s(30);
    timer.mutable_data_message()->set_expire_timer_update(true);
    auto fleeting = text(message_id(29), "this will disappear", t);
    fleeting.mutable_data_message()->set_expire_timer_s(30);
    content::Content read;
    auto* r = read.mutable_sync()->mutable_read()->add_records();
    r->set_sender_account_id(kPeer);
    r->set_message_id(message_id(29));
    r->set_read_at_ms(t);
    ContentSeed()
        .message(kPairwise, kFromPeer, typing, kEphemeral)
        .message(kPairwise, kFromPeer, timer)
        .message(kPairwise, kFromPeer, fleeting)
        .deliver()
        .message(kPairwise, kFromOwnDevice, read)
        .deliver()
        .clock(10)
        .write("typing_and_timer");
  }
  {
    content::Content reset;
    reset.mutable_session_reset()->add_failed_message_ids(kOwnToPeerMessage);
    reset.mutable_session_reset()->set_timestamp_ms(t);
    ContentSeed()
        .message(kPairwise, kFromPeer, reset)
        .garbage(kFromStranger, 1, std::string(40, '\x33'))
        .message(kPairwise, kFromPeer, text(message_id(30), "after the garbage", t))
        .deliver()
        .write("reset_and_garbage");
  }
  {
    auto c = text(message_id(31), "two files", t);
    for (int i = 0; i < 2; ++i) {
      auto* a = c.mutable_data_message()->add_attachments();
      a->set_id("0123456789abcdef0123456789abcdef");
      a->set_key(std::string(32, char('k' + i)));
      a->set_digest(std::string(32, char('d' + i)));
      a->set_size(1000 + i);
      a->set_content_type(i ? "image/png" : "text/plain");
      a->set_file_name(i ? "picture.png" : "notes.txt");
      a->set_width(i ? 640 : 0);
      a->set_height(i ? 480 : 0);
    }
    content::Content del;
    del.mutable_data_message()->set_message_id(message_id(32));
    del.mutable_data_message()->set_timestamp_ms(t);
    del.mutable_data_message()->set_delete_of(message_id(31));
    ContentSeed()
        .message(kPairwise, kFromStranger, c)
        .deliver()
        .message(kPairwise, kFromStranger, del)
        .deliver()
        .write("attachments_then_delete");
  }
  {
    auto react = text(message_id(33), "", t);
    auto* r = react.mutable_data_message()->mutable_reaction();
    r->set_emoji("\xF0\x9F\x91\x8D");
    r->set_target_author_account_id(kMe);
    r->set_target_message_id(kOwnToPeerMessage);
    content::Content skd;
    skd.mutable_sender_key_distribution()->set_group_id(std::string(32, 'H'));
    skd.mutable_sender_key_distribution()->set_distribution_message(std::string(10, '\x33'));
    ContentSeed()
        .message(kPairwise, kFromPeer, react)
        .message(kPairwise, kFromStranger, skd)
        .deliver()
        .write("reaction_and_sender_key");
  }
  {
    wire::Frame envelope;
    auto* env = envelope.mutable_push()->mutable_envelope();
    env->set_type(wire::Envelope::MESSAGE);
    env->set_sender_account_id(kPeer);
    env->set_sender_device_id(1);
    env->set_message_id(message_id(40));
    env->set_sequence(7);
    env->set_server_timestamp_ms(t);
    env->set_ciphertext(std::string(60, '\x44'));
    wire::Frame devices;
    devices.mutable_push()->mutable_devices_changed()->add_devices()->set_device_id(1);
    wire::Frame presence;
    presence.mutable_push()->mutable_presence()->set_account_id(kPeer);
    presence.mutable_push()->mutable_presence()->set_online(true);
    ContentSeed()
        .relay(envelope)
        .relay(presence)
        .relay(devices)
        .message(kPairwise, kFromOwnDevice, text(message_id(41), "after the device list", t))
        .deliver()
        .write("relay_pushes");
  }
  {
    std::vector<std::pair<std::string, std::string>> members = {
        {kPeer, "alice"}, {kMe, "me"}, {kStranger, "carol"}};
    for (int i = 0; i < 60; ++i)
      members.emplace_back(std::string(15, '\x70') + char(i), "member" + std::to_string(i));
    content::Content c;
    *c.mutable_group_update() = group(2, "a bigger group", members, kPeer);
    c.mutable_group_update()->add_admins(kStranger);
    ContentSeed()
        .message(kPairwise, kFromPeer, c)
        .deliver()
        .message(kGroup, kFromStranger, in_group(text(message_id(42), "welcome, all", t)))
        .deliver()
        .write("bigger_group");
  }
  put("fuzz_content", "everything_at_once", ContentSeed::everything());
}

// ---- fuzz_search ----

void search_seeds() {
  auto seed = [](const std::string& name, uint8_t length, const std::string& query,
                 const std::string& text) {
    put("fuzz_search", name, std::string(1, char(length)) + query + std::string(1, '\0') + text);
  };
  seed("words", 32, "hello wor*", "Hello, World! A word to the world.");
  seed("phrase_and_exclusion", 0, "\"see you\" -never", "See you tomorrow\nor never");
  seed("diacritics", 0, "cafe", "Caf\xC3\xA9 au lait at the caf\xC3\xA9");
  seed("cjk", 8, "\xE6\x9D\xB1\xE4\xBA\xAC",
       "\xE6\x9D\xB1\xE4\xBA\xAC\xE9\x83\xBD\xE3\x81\xAB\xE4\xBD\x8F\xE3\x82\x93\xE3\x81\xA7"
       "\xE3\x81\x84\xE3\x81\xBE\xE3\x81\x99");
  seed("kana_marks", 0, "\xE3\x81\x8B\xE3\x82\x99",
       "\xE3\x81\x8B\xE3\x82\x99\xE3\x81\x8D \xE3\x81\x8C");
  std::string long_text;
  for (int i = 0; i < 60; ++i) long_text += "lorem ipsum dolor " + std::to_string(i) + " ";
  long_text += "needle in the \xE2\x80\xA6 haystack";
  for (int i = 0; i < 30; ++i) long_text += " sit amet \xC3\xA9t\xC3\xA9";
  seed("long_text_snippet", 10, "needle haystack", long_text);
  seed("not_utf8", 4, "abc", "abc \xFF\xFE def \xC3 ghi \xE2\x82 abc");
  seed("filter_mark", 0, "c12",
       "\x02"
       "c12 and \x01 control");
}

// ---- fuzz_provisioning ----

void provisioning_seeds() {
  auto ctx = keys::Context::create().value();
  LinkKeys link = new_link_keys().value();
  const std::string code = "K7M2QX9B";
  put("fuzz_provisioning", "invite_text", std::string(1, '\0') + link_text(code, link.public_key));
  put("fuzz_provisioning", "invite_uri", std::string(1, '\0') + link_uri(code, link.public_key));
  put("fuzz_provisioning", "invite_typed_loosely",
      std::string(1, '\0') + " k7m2 qx9b-" + link_fingerprint(link.public_key) + "\n");
  auto pair = keys::generate_identity(*ctx).value();
  content::ProvisionMessage msg;
  msg.set_account_id(std::string(16, 'A'));
  msg.set_handle("alice");
  msg.set_identity_key(std::string(pair.public_key.begin(), pair.public_key.end()));
  msg.set_identity_key_pair(
      std::string(pair.serialized.span().begin(), pair.serialized.span().end()));
  msg.set_approver_device_id(1);
  msg.set_link_code(code);
  msg.set_timestamp_ms(kInputStartMs);
  put("fuzz_provisioning", "approval", std::string(1, '\2') + msg.SerializeAsString());
  auto env = seal_provision(msg, link.public_key, code).value();
  put("fuzz_provisioning", "envelope_for_another_device",
      std::string(1, '\1') + env.SerializeAsString());
  put("fuzz_provisioning", "replaced_key_pair",
      std::string(1, '\3') + std::string(1, '\0') + msg.identity_key_pair());
  put("fuzz_provisioning", "replaced_public_key",
      std::string(1, '\3') + std::string(1, '\1') + msg.identity_key());
  put("fuzz_provisioning", "device_name", std::string(1, '\4') + "Alice's laptop");
}

// ---- fuzz_attachment ----

void attachment_seeds() {
  fs::path dir = fs::temp_directory_path() / "sotto-write-fuzz-seeds";
  fs::create_directories(dir);
  {
    std::ofstream f(dir / "file", std::ios::binary);
    f << "a small file that was sent";
  }
  auto secrets = encrypt_attachment(dir / "file", dir / "blob").value();
  std::ifstream in(dir / "blob", std::ios::binary);
  std::ostringstream read;
  read << in.rdbuf();
  std::string blob = read.str();
  std::string size(8, '\0');
  for (int i = 0; i < 8; ++i) size[i] = char((secrets.size >> (8 * i)) & 0xff);
  put("fuzz_attachment", "as_sent",
      std::string(1, '\0') + std::string(secrets.key.span().begin(), secrets.key.span().end()) +
          std::string(secrets.digest.begin(), secrets.digest.end()) + size + blob);
  fs::remove_all(dir);
  // Odd mode: u16 length in 64-byte units, then edits (kind, u32 operand).
  auto edited = [](uint16_t units, const std::string& edits) {
    return std::string(1, '\1') + char(units & 0xff) + char(units >> 8) + edits;
  };
  put("fuzz_attachment", "unedited_two_chunks", edited(1500, ""));
  put("fuzz_attachment", "truncated", edited(1100, std::string("\0\x10\x00\x01\x00", 5)));
  put("fuzz_attachment", "bit_flipped", edited(20, std::string("\x21\x30\x00\x00\x00", 5)));
  put("fuzz_attachment", "appended",
      edited(3, std::string("\x02\x05\x00\x00\x00"
                            "extra",
                            10)));
  put("fuzz_attachment", "size_near_the_top", edited(2, std::string("\x83\x10\x00\x00\x00", 5)));
}

// ---- fuzz_client_http ----

void client_http_seeds() {
  auto seed = [](const std::string& name, uint8_t offset_index, const std::string& head) {
    put("fuzz_client_http", name, std::string(1, char(offset_index)) + head);
  };
  seed("whole_blob", 0,
       "HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\nContent-Length: 300000\r\n"
       "\r\n");
  seed("resumed", 2,
       "HTTP/1.1 206 Partial Content\r\nContent-Range: bytes 65536-299999/300000\r\n"
       "Content-Length: 234464\r\n\r\n");
  seed("resumed_elsewhere", 2,
       "HTTP/1.1 206 Partial Content\r\nContent-Range: bytes 0-65535/300000\r\n"
       "Content-Length: 65536\r\n\r\n");
  seed("unsatisfiable", 3,
       "HTTP/1.1 416 Range Not Satisfiable\r\nContent-Range: bytes */300000\r\n"
       "Content-Length: 0\r\n\r\n");
  seed("rate_limited", 0,
       "HTTP/1.1 429 Too Many Requests\r\nRetry-After: 30\r\nContent-Length: 12\r\n\r\n"
       "slow down...");
  seed("uploaded", 0, "HTTP/1.1 201 Created\r\nContent-Length: 0\r\n\r\n");
}

// ---- fuzz_bundle ----

void bundle_seeds() {
  auto ctx = keys::Context::create().value();
  MemoryProtocolStore store;
  auto crypto = SessionCrypto::create(ctx, store).value();
  if (!crypto->create_identity(std::string(32, 'b'), 3, 2).ok()) std::exit(1);
  for (const char* name : {"with_one_time_prekey", "another_one_time_prekey"})
    put("fuzz_bundle", name, crypto->issue_bundle().value().SerializeAsString());
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: %s DIR (e.g. tests/fuzz/seeds)\n", argv[0]);
    return 2;
  }
  if (sodium_init() < 0) return 1;
  g_root = argv[1];
  content_seeds();
  search_seeds();
  provisioning_seeds();
  attachment_seeds();
  client_http_seeds();
  bundle_seeds();
  std::printf("wrote the seeds under %s\n", argv[1]);
  return 0;
}
