#include "ClientHarness.h"

#include <sodium.h>
#include <sqlcipher/sqlite3.h>

#include <atomic>
#include <stdexcept>
#include <thread>

#include "Database.h"

namespace sotto::test {

void Recorder::on_message(const Message& m) {
  std::lock_guard lock(mu_);
  messages_.push_back(m);
}
void Recorder::on_message_status(ConversationId, const std::string&, MessageStatus) {}
void Recorder::on_identity_changed(const IdentityChange& change) {
  std::lock_guard lock(mu_);
  identity_changes_.push_back(change);
}
void Recorder::on_connection_state(ConnectionState s, const std::string& detail) {
  if (std::getenv("SOTTO_TEST_VERBOSE"))
    fprintf(stderr, "state %d: %s\n", static_cast<int>(s), detail.c_str());
  std::lock_guard lock(mu_);
  states_.emplace_back(s, detail);
}

std::vector<std::pair<ConnectionState, std::string>> Recorder::states() const {
  std::lock_guard lock(mu_);
  return states_;
}

void Recorder::on_message_changed(const Message& m) {
  std::lock_guard lock(mu_);
  changed_.push_back(m);
}
void Recorder::on_message_removed(ConversationId, const std::string& id) {
  std::lock_guard lock(mu_);
  removed_.push_back(id);
}
void Recorder::on_typing(ConversationId c, const std::string& account, bool typing) {
  std::lock_guard lock(mu_);
  typing_.push_back(TypingEvent{c, account, typing});
}
void Recorder::on_presence(const std::string& account, bool online, uint64_t last_seen_ms) {
  std::lock_guard lock(mu_);
  presence_.push_back(Presence{account, online, last_seen_ms});
}
std::vector<Message> Recorder::changed() const {
  std::lock_guard lock(mu_);
  return changed_;
}
std::vector<std::string> Recorder::removed() const {
  std::lock_guard lock(mu_);
  return removed_;
}
std::vector<Recorder::TypingEvent> Recorder::typing() const {
  std::lock_guard lock(mu_);
  return typing_;
}
std::vector<Recorder::Presence> Recorder::presence() const {
  std::lock_guard lock(mu_);
  return presence_;
}

std::vector<Message> Recorder::messages() const {
  std::lock_guard lock(mu_);
  return messages_;
}

std::vector<std::string> Recorder::texts() const {
  std::lock_guard lock(mu_);
  std::vector<std::string> out;
  for (const auto& m : messages_)
    if (!m.outgoing && m.kind == MessageKind::kText) out.push_back(m.text);
  return out;
}

size_t Recorder::count() const {
  std::lock_guard lock(mu_);
  return messages_.size();
}

std::vector<IdentityChange> Recorder::identity_changes() const {
  std::lock_guard lock(mu_);
  return identity_changes_;
}

bool eventually(const std::function<bool()>& pred, std::chrono::milliseconds timeout) {
  auto deadline = std::chrono::steady_clock::now() + timeout;
  while (std::chrono::steady_clock::now() < deadline) {
    if (pred()) return true;
    std::this_thread::sleep_for(10ms);
  }
  return pred();
}

TestClient::TestClient(const RelayProcess& relay, std::string name, bool durable)
    : name_(std::move(name)), url_(relay.ws_url()), durable_(durable), key_(test_key(name_)) {
  open();
}

TestClient::TestClient(std::string relay_url, std::string name, std::string device_name)
    : name_(std::move(name)),
      url_(std::move(relay_url)),
      device_name_(std::move(device_name)),
      key_(test_key(name_)) {
  open();
}

TestClient::~TestClient() { client_.reset(); }

void TestClient::open() {
  ProfileOptions po;
  po.initial_prekeys = 0;
  po.sync_every_commit = durable_;
  // A failure here ends the test (GoogleTest reports the exception) instead of leaving a
  // null client for the next line of the test to dereference.
  auto profile = Profile::open_with_key(dir_.path(), key_, po);
  if (!profile.ok())
    throw std::runtime_error(name_ + ": the profile did not open: " + profile.error().message);
  ClientOptions options = fast_options(url_);
  options.device_name = device_name_;
  if (tweak_options) tweak_options(options);
  auto client = Client::create(std::move(*profile), std::move(options));
  if (!client.ok())
    throw std::runtime_error(name_ + ": no client on the profile: " + client.error().message);
  client_ = std::move(*client);
  client_->set_listener(recorder_);
}

AccountInfo TestClient::register_account() {
  static std::atomic<int> counter{0};
  std::string handle = name_ + "_" + std::to_string(++counter);
  auto r = client_->register_account(handle);
  EXPECT_TRUE(r.ok()) << r.error().message;
  if (!r.ok()) return {};
  info_ = *r;
  EXPECT_TRUE(client_->wait_online(20s)) << name_ << " did not come online";
  return info_;
}

void TestClient::close() { client_.reset(); }

void TestClient::reopen(bool connect) {
  client_.reset();
  open();
  if (connect) {
    auto s = client_->connect();
    EXPECT_TRUE(s.ok()) << s.error().message;
  }
}

ConversationId TestClient::conversation_with(TestClient& peer) {
  auto contact = client_->add_contact(peer.handle());
  EXPECT_TRUE(contact.ok()) << contact.error().message;
  if (!contact.ok()) return 0;
  auto conv = client_->direct_conversation(contact->account);
  EXPECT_TRUE(conv.ok()) << conv.error().message;
  return conv.ok() ? *conv : 0;
}

std::vector<Message> TestClient::history(ConversationId conversation) {
  std::vector<Message> all;
  std::string cursor;
  for (;;) {
    auto page = client_->messages(conversation, cursor, 500);
    EXPECT_TRUE(page.ok()) << page.error().message;
    if (!page.ok()) break;
    all.insert(all.end(), page->messages.begin(), page->messages.end());
    if (page->next_cursor.empty()) break;
    cursor = page->next_cursor;
  }
  std::reverse(all.begin(), all.end());
  return all;
}

std::optional<Message> TestClient::find(ConversationId conversation, const std::string& id) {
  auto m = client_->message(conversation, id);
  if (!m.ok()) return std::nullopt;
  return *m;
}

void link_device(TestClient& existing, TestClient& fresh, bool typed) {
  auto invite = fresh->start_link();
  ASSERT_TRUE(invite.ok()) << invite.error().message;
  EXPECT_EQ(invite->code.size(), 8u);
  auto approved = existing->approve_link(typed ? invite->text : invite->uri);
  ASSERT_TRUE(approved.ok()) << approved.error().message;
  auto linked = fresh->finish_link(20s);
  ASSERT_TRUE(linked.ok()) << linked.error().message;
  EXPECT_EQ(linked->account, existing.info().account);
  EXPECT_GT(linked->device_id, existing.info().device_id);
  ASSERT_TRUE(fresh->wait_online(20s));
}

void poke(TestClient& c, const std::string& sql) {
  auto db = db::Database::open(c.dir() / "profile.db", c.key(), {false, db::Durability::kFull});
  ASSERT_TRUE(db.ok()) << db.error().message;
  auto s = (*db)->exec(sql);
  ASSERT_TRUE(s.ok()) << s.error().message;
  ASSERT_EQ(sqlite3_changes((*db)->handle()) > 0, true) << sql;
}

void fake_changed_identity(TestClient& c, const std::string& peer) {
  c.close();
  Bytes fake(33);
  fake[0] = 0x05;
  randombytes_buf(fake.data() + 1, 32);
  poke(c, "UPDATE identities SET key = x'" + to_hex(fake) + "' WHERE name = '" + peer + "'");
  poke(c, "DELETE FROM sessions WHERE name = '" + peer + "'");
  c.reopen();
}

}  // namespace sotto::test
