// 1:1 sessions between real profiles (real SQLCipher files in temp dirs), bytes handed across
// by hand as the relay would carry them.
#include <gtest/gtest.h>

#include <protocol.h>

#include <algorithm>
#include <atomic>
#include <memory>
#include <thread>
#include <vector>

#include "Devices.h"
#include "sotto/keys/Signal.h"
#include "sotto/proto/wire.pb.h"

namespace sotto {
namespace {
using test::deliver;
using test::Device;
using test::text;

TEST(Session, AliceAndBobTalkBothWaysAndAfterReopening) {
  Device alice("alice", 1), bob("bob", 1);
  test::connect(alice, bob);
  auto first = alice->encrypt(bob.address, as_bytes("hi bob"));
  ASSERT_TRUE(first.ok());
  EXPECT_EQ(first->type, CiphertextType::kPreKey);
  auto got = bob->decrypt(alice.address, *first);
  ASSERT_TRUE(got.ok()) << got.error().message;
  EXPECT_EQ(text(*got), "hi bob");
  deliver(bob, alice, "hi alice");
  for (int i = 0; i < 5; ++i) {
    deliver(alice, bob, "a" + std::to_string(i));
    deliver(alice, bob, "b" + std::to_string(i));
    deliver(bob, alice, "c" + std::to_string(i));
  }
  auto answered = alice->encrypt(bob.address, as_bytes("x"));
  EXPECT_EQ(answered->type, CiphertextType::kSignal);  // bob answered: no more prekey messages
  ASSERT_TRUE(bob->decrypt(alice.address, *answered).ok());

  alice.close();
  bob.close();
  alice.open();
  bob.open();
  for (int i = 0; i < 3; ++i) {
    deliver(bob, alice, "after reopen " + std::to_string(i));
    deliver(alice, bob, "and back " + std::to_string(i));
  }
}

TEST(Session, PassphraseProfilesContinueAfterReopen) {
  test::TempDir da, db;
  const auto pa = SecureBytes::from_string("alice's passphrase");
  const auto pb = SecureBytes::from_string("bob's passphrase");
  Ciphertext pending;
  {
    auto alice = Profile::open(da.path(), pa).value();
    auto bob = Profile::open(db.path(), pb).value();
    ASSERT_TRUE(alice->create_identity("alice", 1).ok());
    ASSERT_TRUE(bob->create_identity("bob", 1).ok());
    ASSERT_TRUE(alice->start_session({"bob", 1}, *bob->issue_bundle()).ok());
    auto ct = alice->encrypt({"bob", 1}, as_bytes("one"));
    ASSERT_EQ(text(*bob->decrypt({"alice", 1}, *ct)), "one");
    pending = *bob->encrypt({"alice", 1}, as_bytes("sent before the restart"));
  }
  auto alice = Profile::open(da.path(), pa).value();
  auto bob = Profile::open(db.path(), pb).value();
  auto got = alice->decrypt({"bob", 1}, pending);
  ASSERT_TRUE(got.ok()) << got.error().message;
  EXPECT_EQ(text(*got), "sent before the restart");
  auto ct = alice->encrypt({"bob", 1}, as_bytes("two"));
  EXPECT_EQ(text(*bob->decrypt({"alice", 1}, *ct)), "two");
}

TEST(Session, OutOfOrderMessagesDecrypt) {
  Device alice("alice", 1), bob("bob", 1);
  test::connect(alice, bob);
  deliver(alice, bob, "hello");
  deliver(bob, alice, "hello back");
  std::vector<Ciphertext> cts;
  for (int i = 0; i < 5; ++i)
    cts.push_back(*alice->encrypt(bob.address, as_bytes(std::to_string(i))));
  for (int i : {4, 0, 3, 1, 2}) {
    auto pt = bob->decrypt(alice.address, cts[static_cast<size_t>(i)]);
    ASSERT_TRUE(pt.ok()) << i << ": " << pt.error().message;
    EXPECT_EQ(text(*pt), std::to_string(i));
  }
}

class SessionAttack : public ::testing::Test {
 protected:
  void SetUp() override {
    test::connect(alice, bob);
    deliver(alice, bob, "setup");
    deliver(bob, alice, "setup reply");
  }
  // Decrypting `ct` must fail with `code` and leave bob's database exactly as it was.
  void expect_rejected(const Ciphertext& ct, ErrorCode code) {
    expect_rejected_from(alice.address, ct, code);
  }
  void expect_rejected_from(const Address& from, const Ciphertext& ct, ErrorCode code) {
    auto before = bob.dump();
    auto pt = bob->decrypt(from, ct);
    ASSERT_FALSE(pt.ok());
    EXPECT_EQ(pt.code(), code) << pt.error().message;
    EXPECT_FALSE(pt.error().message.empty());
    EXPECT_EQ(before, bob.dump());
  }
  Device alice{"alice", 1}, bob{"bob", 1};
};

TEST_F(SessionAttack, ReplayIsADuplicate) {
  auto ct = *alice->encrypt(bob.address, as_bytes("once"));
  ASSERT_TRUE(bob->decrypt(alice.address, ct).ok());
  expect_rejected(ct, ErrorCode::kDuplicateMessage);
}

TEST_F(SessionAttack, ReplayedPreKeyMessageIsADuplicate) {
  Device carol("carol", 1);
  test::connect(carol, bob);
  auto ct = *carol->encrypt(bob.address, as_bytes("first"));
  ASSERT_EQ(ct.type, CiphertextType::kPreKey);
  ASSERT_TRUE(bob->decrypt(carol.address, ct).ok());
  auto before = bob.dump();
  auto again = bob->decrypt(carol.address, ct);
  EXPECT_EQ(again.code(), ErrorCode::kDuplicateMessage) << again.error().message;
  EXPECT_EQ(before, bob.dump());
}

TEST_F(SessionAttack, EveryTamperedByteIsRejected) {
  auto ct = *alice->encrypt(bob.address, as_bytes("do not touch"));
  for (size_t i = 0; i < ct.bytes.size(); i += 7) {
    Ciphertext bad = ct;
    bad.bytes[i] ^= 0x20;
    auto before = bob.dump();
    auto pt = bob->decrypt(alice.address, bad);
    EXPECT_FALSE(pt.ok()) << "byte " << i;
    EXPECT_TRUE(pt.code() == ErrorCode::kInvalidMessage || pt.code() == ErrorCode::kLegacyMessage ||
                pt.code() == ErrorCode::kInvalidKey || pt.code() == ErrorCode::kDuplicateMessage)
        << "byte " << i << ": " << pt.error().message;
    EXPECT_EQ(before, bob.dump()) << "byte " << i;
  }
  // The untouched message still decrypts: nothing was consumed by the forgeries.
  auto pt = bob->decrypt(alice.address, ct);
  ASSERT_TRUE(pt.ok()) << pt.error().message;
  EXPECT_EQ(text(*pt), "do not touch");
}

// libsignal saves the sender's identity key while processing a PreKey message, before the
// MAC is checked; the transaction must undo that, or a forgery could plant an identity.
TEST_F(SessionAttack, TamperedPreKeyMessagePlantsNoIdentity) {
  Device carol("carol", 1);
  test::connect(carol, bob);
  auto ct = *carol->encrypt(bob.address, as_bytes("first contact"));
  ASSERT_EQ(ct.type, CiphertextType::kPreKey);
  // Flip the last byte of the inner message's MAC (the outer fields are not authenticated
  // on their own, so find the inner message first).
  auto ctx = *keys::Context::create();
  keys::Ref<pre_key_signal_message> outer;
  ASSERT_EQ(pre_key_signal_message_deserialize(outer.out(), ct.bytes.data(), ct.bytes.size(),
                                               ctx->get()),
            0);
  ByteView inner = keys::view(ciphertext_message_get_serialized(
      reinterpret_cast<ciphertext_message*>(pre_key_signal_message_get_signal_message(outer.get()))));
  auto at = std::search(ct.bytes.begin(), ct.bytes.end(), inner.begin(), inner.end());
  ASSERT_NE(at, ct.bytes.end());
  Ciphertext bad = ct;
  bad.bytes[static_cast<size_t>(at - ct.bytes.begin()) + inner.size() - 1] ^= 0x01;
  expect_rejected_from(carol.address, bad, ErrorCode::kInvalidMessage);
  EXPECT_EQ(bob->safety_number("carol").code(), ErrorCode::kNotFound);
  auto pt = bob->decrypt(carol.address, ct);
  ASSERT_TRUE(pt.ok()) << pt.error().message;
  EXPECT_TRUE(bob->safety_number("carol").ok());
}

TEST_F(SessionAttack, TruncatedAndEmptyAreInvalid) {
  auto ct = *alice->encrypt(bob.address, as_bytes("whole"));
  for (size_t keep : {size_t{0}, size_t{1}, ct.bytes.size() / 2, ct.bytes.size() - 1}) {
    Ciphertext cut = ct;
    cut.bytes.resize(keep);
    expect_rejected(cut, ErrorCode::kInvalidMessage);
  }
  EXPECT_TRUE(bob->decrypt(alice.address, ct).ok());
}

TEST_F(SessionAttack, WrongTypeTagIsInvalid) {
  auto ct = *alice->encrypt(bob.address, as_bytes("typed"));
  Ciphertext as_prekey = ct;
  as_prekey.type = CiphertextType::kPreKey;
  expect_rejected(as_prekey, ErrorCode::kInvalidMessage);
  Ciphertext as_group = ct;
  as_group.type = CiphertextType::kSenderKey;
  expect_rejected(as_group, ErrorCode::kInvalidMessage);
}

TEST_F(SessionAttack, UnknownPreKeyIdIsTypedAndHarmless) {
  Device mallory("mallory", 1);
  auto bundle_bytes = *bob->issue_bundle();
  wire::PreKeyBundle bundle;
  ASSERT_TRUE(bundle.ParseFromArray(bundle_bytes.data(), static_cast<int>(bundle_bytes.size())));
  bundle.mutable_one_time_prekey()->set_id(0x00ABCDEF);  // not covered by the signature
  std::string edited = bundle.SerializeAsString();
  ASSERT_TRUE(mallory->start_session(bob.address, as_bytes(edited)).ok());
  auto ct = *mallory->encrypt(bob.address, as_bytes("names a key bob never issued"));
  auto before = bob.dump();
  auto pt = bob->decrypt(mallory.address, ct);
  EXPECT_EQ(pt.code(), ErrorCode::kUnknownKeyId) << pt.error().message;
  EXPECT_EQ(before, bob.dump());
}

TEST_F(SessionAttack, MalformedBundlesAndBadSignaturesStoreNothing) {
  Device carol("carol", 1);
  auto good = *bob->issue_bundle();
  auto before = carol.dump();
  EXPECT_EQ(carol->start_session(bob.address, Bytes{}).code(), ErrorCode::kMalformedBundle);
  EXPECT_EQ(carol->start_session(bob.address, Bytes{0x0a, 0xff}).code(),
            ErrorCode::kMalformedBundle);
  wire::PreKeyBundle bundle;
  ASSERT_TRUE(bundle.ParseFromArray(good.data(), static_cast<int>(good.size())));
  auto forged = bundle;
  std::string sig = forged.signed_prekey().signature();
  sig[0] ^= 1;
  forged.mutable_signed_prekey()->set_signature(sig);
  EXPECT_EQ(carol->start_session(bob.address, as_bytes(forged.SerializeAsString())).code(),
            ErrorCode::kInvalidSignature);
  auto bad_key = bundle;
  bad_key.set_identity_key("not a key");
  EXPECT_EQ(carol->start_session(bob.address, as_bytes(bad_key.SerializeAsString())).code(),
            ErrorCode::kInvalidKey);
  EXPECT_EQ(carol->start_session({"bob", 2}, good).code(), ErrorCode::kMalformedBundle);
  EXPECT_EQ(before, carol.dump());
  EXPECT_FALSE(*carol->has_session(bob.address));
  // The good bundle still works afterwards.
  EXPECT_TRUE(carol->start_session(bob.address, good).ok());
}

TEST_F(SessionAttack, NoSessionIsTyped) {
  Device carol("carol", 1);
  EXPECT_EQ(carol->encrypt(bob.address, as_bytes("x")).code(), ErrorCode::kNoSession);
  auto ct = *alice->encrypt(bob.address, as_bytes("for bob only"));
  auto before = carol.dump();
  EXPECT_EQ(carol->decrypt(alice.address, ct).code(), ErrorCode::kNoSession);
  EXPECT_EQ(before, carol.dump());
}

TEST_F(SessionAttack, FailingHandlerRollsBackTheRatchetStep) {
  auto ct = *alice->encrypt(bob.address, as_bytes("store me"));
  auto before = bob.dump();
  auto pt = bob->decrypt(alice.address, ct, [](ByteView) -> Status {
    return make_error(ErrorCode::kStorageFull, "history is full");
  });
  EXPECT_EQ(pt.code(), ErrorCode::kStorageFull);
  EXPECT_EQ(before, bob.dump());
  // Nothing was consumed: the same ciphertext decrypts now, and the handler sees it in the
  // same transaction.
  std::string seen;
  pt = bob->decrypt(alice.address, ct, [&](ByteView p) -> Status {
    seen = std::string(as_chars(p));
    return {};
  });
  ASSERT_TRUE(pt.ok());
  EXPECT_EQ(seen, "store me");

  auto alice_before = alice.dump();
  auto failed = alice->encrypt(bob.address, as_bytes("x"), [](const Ciphertext&) -> Status {
    return make_error(ErrorCode::kStorageIo, "outbox write failed");
  });
  EXPECT_EQ(failed.code(), ErrorCode::kStorageIo);
  EXPECT_EQ(alice_before, alice.dump());
}

TEST_F(SessionAttack, ABatchWithAFailureSavesNothing) {
  auto good = *alice->encrypt(bob.address, as_bytes("good"));
  auto replayed = good;
  auto before = bob.dump();
  auto s = bob->transaction([&]() -> Status {
    EXPECT_TRUE(bob->decrypt(alice.address, good).ok());
    EXPECT_EQ(bob->decrypt(alice.address, replayed).code(), ErrorCode::kDuplicateMessage);
    return {};  // the body ignores the failure; the transaction does not
  });
  EXPECT_EQ(s.code(), ErrorCode::kInvalidState);
  EXPECT_EQ(before, bob.dump());
  auto pt = bob->decrypt(alice.address, good);
  ASSERT_TRUE(pt.ok()) << pt.error().message;
  EXPECT_EQ(text(*pt), "good");
}

TEST(Session, ChangedIdentityIsUntrustedUntilAccepted) {
  Device alice("alice", 1);
  Bytes old_identity;
  {
    Device bob("bob", 1);
    test::connect(alice, bob);
    deliver(alice, bob, "before");
  }
  Device bob_reinstalled("bob", 1);  // same account, new identity key
  auto bundle = *bob_reinstalled->issue_bundle();
  auto before = alice.dump();
  EXPECT_EQ(alice->start_session(bob_reinstalled.address, bundle).code(),
            ErrorCode::kUntrustedIdentity);
  EXPECT_EQ(before, alice.dump());
  ASSERT_TRUE(alice->forget_identity("bob").ok());
  ASSERT_TRUE(alice->start_session(bob_reinstalled.address, bundle).ok());
  deliver(alice, bob_reinstalled, "after");
}

// Profile's thread rule: any thread may call any method. Four threads share alice's profile,
// each talking to its own peer; every message must arrive and the ratchets stay consistent.
TEST(Session, OneProfileServesManyThreads) {
  constexpr int kThreads = 4, kMessages = 25;
  Device alice("alice", 1);
  std::vector<std::unique_ptr<Device>> peers;
  for (int i = 0; i < kThreads; ++i) {
    peers.push_back(std::make_unique<Device>("peer" + std::to_string(i), 1));
    test::connect(alice, *peers.back());
  }
  std::vector<std::thread> threads;
  std::atomic<int> delivered{0};
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      Device& peer = *peers[static_cast<size_t>(t)];
      for (int i = 0; i < kMessages; ++i) {
        std::string msg = std::to_string(t) + ":" + std::to_string(i);
        auto ct = alice->encrypt(peer.address, as_bytes(msg));
        if (!ct.ok()) continue;
        auto pt = peer->decrypt(alice.address, *ct);
        if (pt.ok() && text(*pt) == msg) ++delivered;
        // And back, so alice decrypts concurrently too.
        auto back = peer->encrypt(alice.address, as_bytes(msg));
        if (!back.ok()) continue;
        auto got = alice->decrypt(peer.address, *back);
        if (got.ok() && text(*got) == msg) ++delivered;
      }
    });
  }
  for (auto& th : threads) th.join();
  EXPECT_EQ(delivered.load(), kThreads * kMessages * 2);
}

TEST(Session, SafetyNumbersAgreeAndScanVerifies) {
  Device alice("alice", 1), bob("bob", 1), carol("carol", 1);
  test::connect(alice, bob);
  deliver(alice, bob, "hi");
  test::connect(alice, carol);
  auto a = alice->safety_number("bob");
  auto b = bob->safety_number("alice");
  ASSERT_TRUE(a.ok()) << a.error().message;
  ASSERT_TRUE(b.ok()) << b.error().message;
  EXPECT_EQ(a->digits, b->digits);
  EXPECT_EQ(a->digits.size(), 60u);
  EXPECT_TRUE(alice->verify_scanned("bob", b->scannable).ok());
  EXPECT_EQ(alice->verify_scanned("carol", b->scannable).code(), ErrorCode::kUntrustedIdentity);
  EXPECT_EQ(alice->safety_number("dave").code(), ErrorCode::kNotFound);
}

}  // namespace
}  // namespace sotto
