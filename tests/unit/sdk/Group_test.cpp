// Sender Key groups between real profiles. Sender keys travel to each member over the 1:1
// sessions, as they do in the product.
#include <gtest/gtest.h>

#include <memory>
#include <vector>

#include "Devices.h"

namespace sotto {
namespace {
using test::Device;
using test::text;

const Bytes kGroup = {0x67, 0x72, 0x6f, 0x75, 0x70, 0x2d, 0x31};

// Sends `sender`'s distribution message to each member over a 1:1 session.
void distribute(Device& sender, const Bytes& distribution, std::vector<Device*> members) {
  for (Device* m : members) {
    if (m == &sender) continue;
    if (!*sender->has_session(m->address)) test::connect(sender, *m);
    auto ct = sender->encrypt(m->address, distribution);
    ASSERT_TRUE(ct.ok()) << ct.error().message;
    auto skdm = (*m)->decrypt(sender.address, *ct);
    ASSERT_TRUE(skdm.ok()) << skdm.error().message;
    auto s = (*m)->group_process_sender_key(kGroup, sender.address, *skdm);
    ASSERT_TRUE(s.ok()) << s.error().message;
  }
}

TEST(Group, FiftyMembersTalkThenARemovedMemberIsLockedOut) {
  constexpr int kMembers = 50, kSenders = 4;
  std::vector<std::unique_ptr<Device>> devices;
  std::vector<Device*> all;
  for (int i = 0; i < kMembers; ++i) {
    devices.push_back(std::make_unique<Device>("member" + std::to_string(i), 1));
    all.push_back(devices.back().get());
  }
  for (int s = 0; s < kSenders; ++s) {
    auto skdm = (*all[s])->group_sender_key(kGroup);
    ASSERT_TRUE(skdm.ok()) << skdm.error().message;
    distribute(*all[s], *skdm, all);
  }
  for (int round = 0; round < 3; ++round) {
    for (int s = 0; s < kSenders; ++s) {
      std::string msg = "round " + std::to_string(round) + " from " + std::to_string(s);
      auto ct = (*all[s])->group_encrypt(kGroup, as_bytes(msg));
      ASSERT_TRUE(ct.ok()) << ct.error().message;
      for (Device* m : all) {
        if (m == all[s]) continue;
        auto pt = (*m)->group_decrypt(kGroup, all[s]->address, *ct);
        ASSERT_TRUE(pt.ok()) << m->address.account << ": " << pt.error().message;
        EXPECT_EQ(text(*pt), msg);
      }
    }
  }

  // member49 is removed: every remaining sender rotates and redistributes to the rest only,
  // and everyone forgets member49's own sender key.
  Device& removed = *all.back();
  std::vector<Device*> remaining(all.begin(), all.end() - 1);
  auto removed_skdm = removed->group_sender_key(kGroup);
  ASSERT_TRUE(removed_skdm.ok());
  distribute(removed, *removed_skdm, {all[0]});  // member0 had it before the removal
  for (Device* m : remaining) ASSERT_TRUE((*m)->group_forget_sender(kGroup, removed.address).ok());
  for (int s = 0; s < kSenders; ++s) {
    auto fresh = (*all[s])->group_rotate_sender_key(kGroup);
    ASSERT_TRUE(fresh.ok()) << fresh.error().message;
    distribute(*all[s], *fresh, remaining);
  }
  for (int s = 0; s < kSenders; ++s) {
    std::string msg = "after the removal from " + std::to_string(s);
    auto ct = (*all[s])->group_encrypt(kGroup, as_bytes(msg));
    ASSERT_TRUE(ct.ok());
    for (Device* m : remaining) {
      if (m == all[s]) continue;
      auto pt = (*m)->group_decrypt(kGroup, all[s]->address, *ct);
      ASSERT_TRUE(pt.ok()) << pt.error().message;
      EXPECT_EQ(text(*pt), msg);
    }
    auto before = removed.dump();
    auto locked_out = removed->group_decrypt(kGroup, all[s]->address, *ct);
    EXPECT_EQ(locked_out.code(), ErrorCode::kUnknownKeyId) << locked_out.error().message;
    EXPECT_EQ(before, removed.dump());
  }
  // And what the removed member still sends with its old key is refused.
  auto stale = removed->group_encrypt(kGroup, as_bytes("still here?"));
  ASSERT_TRUE(stale.ok());
  EXPECT_EQ((*all[0])->group_decrypt(kGroup, removed.address, *stale).code(),
            ErrorCode::kNoSession);
}

TEST(Group, ReplayTamperAndUnknownSenderAreTypedErrors) {
  Device alice("alice", 1), bob("bob", 1), eve("eve", 1);
  distribute(alice, *alice->group_sender_key(kGroup), {&bob});
  auto ct = *alice->group_encrypt(kGroup, as_bytes("group hello"));
  ASSERT_TRUE(bob->group_decrypt(kGroup, alice.address, ct).ok());
  auto before = bob.dump();
  EXPECT_EQ(bob->group_decrypt(kGroup, alice.address, ct).code(), ErrorCode::kDuplicateMessage);
  auto next = *alice->group_encrypt(kGroup, as_bytes("second"));
  Bytes tampered = next;
  tampered[tampered.size() / 2] ^= 0x01;
  auto bad = bob->group_decrypt(kGroup, alice.address, tampered);
  EXPECT_EQ(bad.code(), ErrorCode::kInvalidMessage) << bad.error().message;
  Bytes truncated(next.begin(), next.begin() + 10);
  EXPECT_EQ(bob->group_decrypt(kGroup, alice.address, truncated).code(),
            ErrorCode::kInvalidMessage);
  // Eve's key was never distributed to bob; a message claiming to be alice's but signed by eve
  // fails the signature check.
  distribute(eve, *eve->group_sender_key(kGroup), {});
  auto from_eve = *eve->group_encrypt(kGroup, as_bytes("spoof"));
  EXPECT_EQ(bob->group_decrypt(kGroup, eve.address, from_eve).code(), ErrorCode::kNoSession);
  EXPECT_FALSE(bob->group_decrypt(kGroup, alice.address, from_eve).ok());
  EXPECT_EQ(before, bob.dump());
  EXPECT_EQ(text(*bob->group_decrypt(kGroup, alice.address, next)), "second");
  EXPECT_EQ(bob->group_process_sender_key(kGroup, alice.address, Bytes{1, 2, 3}).code(),
            ErrorCode::kInvalidMessage);
  EXPECT_EQ(alice->group_encrypt(Bytes{}, as_bytes("x")).code(), ErrorCode::kInvalidArgument);
  EXPECT_EQ(bob->group_encrypt(Bytes{9}, as_bytes("x")).code(), ErrorCode::kNoSession);
}

TEST(Group, SenderKeysSurviveReopen) {
  Device alice("alice", 1), bob("bob", 1);
  distribute(alice, *alice->group_sender_key(kGroup), {&bob});
  alice.close();
  bob.close();
  alice.open();
  bob.open();
  auto ct = *alice->group_encrypt(kGroup, as_bytes("still works"));
  EXPECT_EQ(text(*bob->group_decrypt(kGroup, alice.address, ct)), "still works");
}

// A unique plaintext, sent 1:1 and to a group, never appears in any byte of either profile
// directory: not in the database, not in its WAL, not in the files beside it.
TEST(Canary, PlaintextNeverReachesTheProfileDirectory) {
  const std::string canary = "CANARY-7f3a9c1e-sotto-plaintext-must-not-leak";
  Device alice("alice", 1), bob("bob", 1);
  test::connect(alice, bob);
  for (int i = 0; i < 20; ++i) {
    auto ct = alice->encrypt(bob.address, as_bytes(canary));
    ASSERT_FALSE(test::contains(ct->bytes, canary));
    ASSERT_EQ(text(*bob->decrypt(alice.address, *ct)), canary);
    test::deliver(bob, alice, canary);
  }
  distribute(alice, *alice->group_sender_key(kGroup), {&bob});
  auto gct = *alice->group_encrypt(kGroup, as_bytes(canary));
  ASSERT_FALSE(test::contains(gct, canary));
  ASSERT_EQ(text(*bob->group_decrypt(kGroup, alice.address, gct)), canary);

  auto check = [&](const Device& d, const char* when) {
    for (const auto& [path, bytes] : test::read_tree(d.dir.path()))
      EXPECT_FALSE(test::contains(bytes, canary)) << path << " " << when;
  };
  check(alice, "while open");  // the WAL holds the recent commits now
  check(bob, "while open");
  alice.close();
  bob.close();
  check(alice, "after close");
  check(bob, "after close");
}

}  // namespace
}  // namespace sotto
