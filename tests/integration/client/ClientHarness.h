// Clients for integration tests: each with its own profile directory (a real SQLCipher file),
// talking to a real sotto-relay process over real sockets, with connection timings shortened
// so reconnects and liveness happen within a test's patience.
#pragma once

#include <gtest/gtest.h>

#include <chrono>
#include <condition_variable>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "FastOptions.h"
#include "RelayProcess.h"
#include "TestSupport.h"
#include "sotto/Client.h"

namespace sotto::test {

using namespace std::chrono_literals;

// Records what a Client reports, for tests to wait on.
class Recorder : public ClientListener {
 public:
  void on_message(const Message& m) override;
  void on_message_status(ConversationId c, const std::string& id, MessageStatus s) override;
  void on_identity_changed(const IdentityChange& change) override;
  void on_connection_state(ConnectionState s, const std::string& detail) override;
  void on_message_changed(const Message& m) override;
  void on_message_removed(ConversationId c, const std::string& id) override;
  void on_typing(ConversationId c, const std::string& account, bool typing) override;
  void on_presence(const std::string& account, bool online, uint64_t last_seen_ms) override;

  struct Presence {
    std::string account;
    bool online = false;
    uint64_t last_seen_ms = 0;
  };
  struct TypingEvent {
    ConversationId conversation = 0;
    std::string account;
    bool typing = false;
  };
  std::vector<Message> changed() const;
  std::vector<std::string> removed() const;
  std::vector<TypingEvent> typing() const;
  std::vector<Presence> presence() const;

  std::vector<Message> messages() const;
  std::vector<std::string> texts() const;  // received text messages, in arrival order
  size_t count() const;
  std::vector<IdentityChange> identity_changes() const;
  // Every connection state reported with its detail, oldest first.
  std::vector<std::pair<ConnectionState, std::string>> states() const;

 private:
  mutable std::mutex mu_;
  std::vector<Message> messages_;
  std::vector<IdentityChange> identity_changes_;
  std::vector<Message> changed_;
  std::vector<std::string> removed_;
  std::vector<TypingEvent> typing_;
  std::vector<Presence> presence_;
  std::vector<std::pair<ConnectionState, std::string>> states_;
};

// Polls `pred` until it holds or `timeout` passes.
bool eventually(const std::function<bool()>& pred, std::chrono::milliseconds timeout = 20s);

class TestClient {
 public:
  // A fresh profile in its own temp dir. `durable` false: commits are not synced to disk
  // (for tests with hundreds of clients that never lose power).
  TestClient(const RelayProcess& relay, std::string name, bool durable = true);
  // A client of the relay at `relay_url` (through a proxy, say) whose device is called
  // `device_name` in its account's device list.
  TestClient(std::string relay_url, std::string name, std::string device_name);
  ~TestClient();
  TestClient(const TestClient&) = delete;
  TestClient& operator=(const TestClient&) = delete;

  // Changes the options of every later open (reopen()), after the tests' fast ones.
  std::function<void(ClientOptions&)> tweak_options;
  // Registers "<name>_<n>" and waits until online.
  AccountInfo register_account();
  // Closes the client (as an app quitting) and opens it again on the same profile.
  void close();
  void reopen(bool connect = true);

  Client* operator->() { return client_.get(); }
  Client& client() { return *client_; }
  Recorder& events() { return *recorder_; }
  const std::filesystem::path& dir() const { return dir_.path(); }
  const SecureBytes& key() const { return key_; }
  const std::string& relay_url() const { return url_; }
  const AccountInfo& info() const { return info_; }
  const std::string& handle() const { return info_.handle; }

  // The 1:1 conversation with `peer`, after looking it up by handle.
  ConversationId conversation_with(TestClient& peer);
  // Texts of a conversation oldest first (all pages).
  std::vector<Message> history(ConversationId conversation);
  std::optional<Message> find(ConversationId conversation, const std::string& id);

 private:
  void open();

  std::string name_;
  std::string url_;
  std::string device_name_;
  bool durable_ = true;
  TempDir dir_;
  SecureBytes key_;
  std::shared_ptr<Recorder> recorder_ = std::make_shared<Recorder>();
  std::unique_ptr<Client> client_;
  AccountInfo info_;
};

// Links `fresh` to `existing`'s account (`typed`: the invite's text form, else its URI) and
// waits until it is online.
void link_device(TestClient& existing, TestClient& fresh, bool typed = false);

// Runs `sql` on a closed client's profile database, to break or fake stored state; at least
// one row must change.
void poke(TestClient& c, const std::string& sql);
// As if the relay now served someone else's identity key for `peer`: closes `c`, gives it a
// random stored key for `peer` and no sessions with it, and opens it again. What `c` sends
// `peer` then waits until the user accepts the new safety number.
void fake_changed_identity(TestClient& c, const std::string& peer);

}  // namespace sotto::test
