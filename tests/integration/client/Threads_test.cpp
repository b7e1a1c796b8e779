// The Client's threads and locks as the app meets them: app code that the Client calls (a
// listener, its destructor) may call the Client back without deadlocking it (the lock order
// is written beside the locks in sdk/src/ClientImpl.h).
#include <gtest/gtest.h>

#include <atomic>
#include <thread>

#include "ClientHarness.h"

namespace sotto::test {
namespace {

// Goes offline when the app drops it: its destructor calls the Client.
class LeavingListener : public ClientListener {
 public:
  explicit LeavingListener(Client& client) : client_(client) {}
  ~LeavingListener() override { client_.disconnect(); }

 private:
  Client& client_;
};

TEST(ClientThreads, ReplacingAListenerWhoseDestructorCallsTheClientDoesNotHang) {
  TempDir dir;
  ProfileOptions po;
  po.initial_prekeys = 0;
  Bytes key(32, 7);
  auto profile = Profile::open_with_key(dir.path(), SecureBytes(key.data(), key.size()), po);
  ASSERT_TRUE(profile.ok()) << profile.error().message;
  auto created = Client::create(std::move(*profile), ClientOptions{});
  ASSERT_TRUE(created.ok()) << created.error().message;
  std::unique_ptr<Client> client = std::move(*created);
  auto states = std::make_shared<Recorder>();
  client->set_listener(std::make_shared<LeavingListener>(*client));

  // The last reference to the old listener goes in set_listener(): its destructor's
  // disconnect() reports the state change to the new listener.
  auto done = std::make_shared<std::atomic<bool>>(false);
  std::thread replace([c = client.get(), states, done] {
    c->set_listener(states);
    *done = true;
  });
  if (!eventually([&] { return done->load(); }, 20s)) {
    // The Client is stuck on its own lock: it can neither be used nor destroyed any more.
    replace.detach();
    (void)client.release();
    FAIL() << "set_listener() did not return: the old listener's destructor waits for a lock "
              "that set_listener() holds";
  }
  replace.join();
  EXPECT_EQ(client->connection_state(), ConnectionState::kOffline);
}

}  // namespace
}  // namespace sotto::test
