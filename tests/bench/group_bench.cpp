// group_bench: what a group message costs its sender with Sender Keys against pairwise
// encryption, how long 1,000 members take to have one, and how fast files go up.
//
//   group_bench [--members N] [--sizes 10,100,1000] [--file-mib M] [--quick] [--relay PATH]
//
// Prints:
//   - sender cost of one group message at each size: Sender Key (one encryption, the relay
//     fans it out) against pairwise (one encryption per member device), both on a real
//     SQLCipher profile with every step committed, in the same run;
//   - time from send_text() until every one of N member clients (one process, each with its
//     own profile and connection) has stored the message, through a real relay on loopback;
//   - a file's encrypt + upload rate through Client::send_file.
#include <sodium.h>

#include <algorithm>
#include <atomic>
#include <cstdio>
#include <fstream>
#include <map>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "BenchSupport.h"
#include "MemoryProtocolStore.h"
#include "ProfileAccess.h"
#include "SendMulti.h"
#include "SessionCrypto.h"
#include "sotto/proto/content.pb.h"
#include "sotto/proto/wire.pb.h"

#ifndef SOTTO_RELAY_BINARY
#error "SOTTO_RELAY_BINARY must name the sotto-relay executable"
#endif

using namespace sotto;
using namespace sotto::bench;

namespace {

// A group message as the Client makes it: a DataMessage with its group context.
Bytes group_message(const Bytes& gid) {
  content::Content c;
  auto* dm = c.mutable_data_message();
  dm->set_message_id(std::string(16, 'm'));
  dm->set_timestamp_ms(1);
  dm->set_text("a message of ordinary length for a group of people, with a few words more");
  dm->mutable_group()->set_group_id(std::string(gid.begin(), gid.end()));
  dm->set_expire_timer_s(0);
  std::string s = c.SerializeAsString();
  return Bytes(s.begin(), s.end());
}

struct SenderCost {
  double sender_key_ms = 0;  // per message: encryption and the request, no commit
  double pairwise_ms = 0;
  double commit_ms = 0;  // one group message encrypted and committed durably
};

// One sender profile (SQLCipher, durable) with sessions to `members` devices and a sender key.
SenderCost sender_cost(const fs::path& dir, int members, int rounds) {
  ProfileOptions po;
  po.initial_prekeys = 0;
  auto profile =
      Profile::open_with_key(dir, SecureBytes::from_string(std::string(32, 'k')), po).value();
  if (!profile->create_identity("sender", 1).ok()) die("identity");
  ProfileParts parts = ProfileAccess::parts(*profile);
  auto ctx = keys::Context::create().value();
  // The members only hand out bundles: in-memory, one prekey each.
  // The members' account ids are hex like real ones, the sender's own sorts first.
  auto account_of = [](int i) {
    Bytes id(16, 0);
    for (int b = 0; b < 4; ++b) id[static_cast<size_t>(b)] = static_cast<uint8_t>(i >> (8 * b));
    return to_hex(id);
  };
  std::string self = to_hex(Bytes(16, 0xee));
  std::vector<Address> peers;
  {
    std::lock_guard lock(parts.mu);
    Status s = parts.crypto.transaction([&]() -> Status {
      for (int i = 0; i < members; ++i) {
        MemoryProtocolStore store;
        auto member = SessionCrypto::create(ctx, store).value();
        std::string name = account_of(i);
        SOTTO_TRY(member->create_identity(name, 1, 1));
        SOTTO_TRY_ASSIGN(auto bundle, member->issue_bundle());
        SOTTO_TRY(parts.crypto.start_session(Address{name, 1}, bundle));
        peers.push_back(Address{name, 1});
      }
      return {};
    });
    if (!s.ok()) die(s.error().message);
  }
  // The Client keeps every device's registration id in memory (ClientOutbox.cpp).
  std::map<std::pair<std::string, uint32_t>, uint32_t> registration_ids;
  {
    std::lock_guard lock(parts.mu);
    for (const auto& p : peers)
      registration_ids[{p.account, p.device_id}] = parts.crypto.remote_registration_id(p).value();
  }
  auto registration_id = [&](const Address& d) -> Result<uint32_t> {
    auto it = registration_ids.find({d.account, d.device_id});
    if (it == registration_ids.end()) return make_error(ErrorCode::kNoSession, d.account);
    return it->second;
  };
  Bytes gid(32, 7);
  Bytes plain = group_message(gid);
  if (!profile->group_sender_key(gid).ok()) die("sender key");

  SenderCost cost;
  // Each method's rounds share one transaction, so the figures are the work per message; the
  // one commit (an fsync, the same for both methods) is measured on its own below. Both build
  // the request frame as the Client does (ClientGroups.cpp, ClientOutbox.cpp); reading the
  // members' devices from the profile, the same for both, is left out.
  std::lock_guard lock(parts.mu);
  // Sender Key: one encryption, one SEND_MULTI naming every device. The Client keeps the
  // encoded recipient list of a group's last send and reuses it while the devices stay the
  // same, so every round but the first reuses it here too.
  GroupRecipients recipients;
  auto t = Steady::now();
  Status s = parts.crypto.transaction([&]() -> Status {
    for (int r = 0; r < rounds; ++r) {
      SOTTO_TRY_ASSIGN(auto ct, parts.crypto.group_encrypt(gid, plain));
      SOTTO_TRY(recipients.assign(peers, self, 0, registration_id, 1000));
      for (uint32_t batch = 0; batch < recipients.batches().size(); ++batch) {
        wire::SendMultiRequest body;
        body.set_message_id(std::string(16, 'm'));
        body.set_type(wire::Envelope::SENDER_KEY);
        body.set_ciphertext(std::string(ct.begin(), ct.end()));
        body.set_batch(batch);
        wire::Request head;
        head.set_id(static_cast<uint64_t>(r) + 1);
        head.set_op(wire::OP_SEND_MULTI);
        if (encode_request_frame(head, send_multi_body(body, recipients.batches()[batch])).empty())
          return make_error(ErrorCode::kInternal, "empty");
      }
    }
    return {};
  });
  if (!s.ok()) die(s.error().message);
  cost.sender_key_ms = seconds_since(t) * 1000 / rounds;
  // Pairwise: one encryption per device, one SEND of them all.
  int pairwise_rounds = std::max(2, rounds / std::max(1, members / 10));
  t = Steady::now();
  s = parts.crypto.transaction([&]() -> Status {
    for (int r = 0; r < pairwise_rounds; ++r) {
      wire::Frame frame;
      auto* req = frame.mutable_request();
      req->set_id(static_cast<uint64_t>(r) + 1);
      req->set_op(wire::OP_SEND);
      auto* send = req->mutable_send();
      send->set_message_id(std::string(16, 'm'));
      for (const auto& p : peers) {
        SOTTO_TRY_ASSIGN(auto ct, parts.crypto.encrypt(p, plain));
        SOTTO_TRY_ASSIGN(uint32_t reg, registration_id(p));
        auto* m = send->add_messages();
        Bytes acct;
        from_hex(p.account, acct);
        m->set_account_id(std::string(acct.begin(), acct.end()));
        m->set_device_id(p.device_id);
        m->set_registration_id(reg);
        m->set_type(ct.type == CiphertextType::kPreKey ? wire::Envelope::PREKEY_MESSAGE
                                                       : wire::Envelope::MESSAGE);
        m->set_ciphertext(std::string(ct.bytes.begin(), ct.bytes.end()));
      }
      Bytes bytes(frame.ByteSizeLong());
      if (!frame.SerializeToArray(bytes.data(), static_cast<int>(bytes.size())))
        return make_error(ErrorCode::kInternal, "serializing");
    }
    return {};
  });
  if (!s.ok()) die(s.error().message);
  cost.pairwise_ms = seconds_since(t) * 1000 / pairwise_rounds;
  // One durable commit of one group message.
  t = Steady::now();
  s = parts.crypto.transaction([&]() -> Status {
    SOTTO_TRY(parts.crypto.group_encrypt(gid, plain));
    return {};
  });
  if (!s.ok()) die(s.error().message);
  cost.commit_ms = seconds_since(t) * 1000;
  return cost;
}

}  // namespace

int main(int argc, char** argv) {
  int members = 1000, file_mib = 64;
  std::vector<int> sizes = {10, 100, 1000};
  bool quick = false;
  fs::path relay_bin = SOTTO_RELAY_BINARY;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    if (a == "--members" && i + 1 < argc) {
      members = std::stoi(argv[++i]);
    } else if (a == "--file-mib" && i + 1 < argc) {
      file_mib = std::stoi(argv[++i]);
    } else if (a == "--sizes" && i + 1 < argc) {
      sizes.clear();
      std::stringstream ss(argv[++i]);
      for (std::string n; std::getline(ss, n, ',');) sizes.push_back(std::stoi(n));
    } else if (a == "--relay" && i + 1 < argc) {
      relay_bin = argv[++i];
    } else if (a == "--quick") {
      quick = true;
      members = 20;
      file_mib = 4;
      sizes = {10, 50};
    } else {
      die("usage: group_bench [--members N] [--sizes 10,100,1000] [--file-mib M] [--quick]");
    }
  }
  if (sodium_init() < 0) die("libsodium");
  fs::path dir = fs::temp_directory_path() / ("sotto-group-bench-" + std::to_string(::getpid()));
  fs::remove_all(dir);

  std::printf("group_bench: sender cost at %zu sizes, delivery to %d members, %d MiB file\n\n",
              sizes.size(), members, file_mib);
  std::printf("%-44s %12s %12s %10s\n", "sender cost of one group message", "Sender Key",
              "pairwise", "ratio");
  double commit_ms = 0;
  for (int n : sizes) {
    auto c = sender_cost(dir / ("cost" + std::to_string(n)), n, quick ? 20 : 200);
    std::printf("%-44s %9.3f ms %9.3f ms %9.0fx\n", (std::to_string(n) + " members").c_str(),
                c.sender_key_ms, c.pairwise_ms, c.pairwise_ms / c.sender_key_ms);
    commit_ms = c.commit_ms;
  }
  std::printf("%-44s %9.3f ms  (one fsync; the same for both methods)\n",
              "+ committing the ratchet step durably", commit_ms);

  {
    BenchRelay relay(relay_bin, dir / "relay");
    // Members register in a few threads; their profiles skip fsync (they never lose power
    // here), the sender's keeps it.
    std::vector<Peer> peers(static_cast<size_t>(members));
    auto t = Steady::now();
    {
      std::atomic<int> next{0};
      std::vector<std::thread> workers;
      for (int w = 0; w < 4; ++w)
        workers.emplace_back([&] {
          for (int i; (i = next++) < members;) {
            PeerOptions po;
            po.durable = i == 0;
            po.prekeys = 2;
            peers[static_cast<size_t>(i)] = make_peer(dir / ("m" + std::to_string(i)), relay.url(),
                                                      "member" + std::to_string(i), po);
          }
        });
      for (auto& w : workers) w.join();
    }
    double setup_s = seconds_since(t);
    std::vector<std::string> accounts;
    for (int i = 1; i < members; ++i)
      accounts.push_back(peers[static_cast<size_t>(i)].info.account);
    auto group = peers[0].client->create_group("Everyone", accounts);
    if (!group.ok()) die(group.error().message);
    // The first message pays for sessions and sender-key distribution; the second is a
    // message in an established group, which is what is measured.
    t = Steady::now();
    auto warm = peers[0].client->send_text(*group, "warm-up");
    if (!warm.ok()) die("send");
    for (int i = 1; i < members; ++i)
      if (!peers[static_cast<size_t>(i)].events->arrived("warm-up", 600s)) die("warm-up lost");
    double first_s = seconds_since(t);
    // A message sent while the sender takes in the warm-up's 999 delivered receipts: how long
    // the app's send_text() call and the relay's acknowledgement take under that load.
    auto busy_at = Steady::now();
    auto busy = peers[0].client->send_text(*group, "busy");
    if (!busy.ok()) die("send");
    double busy_call_ms =
        std::chrono::duration<double, std::milli>(Steady::now() - busy_at).count();
    auto busy_acked = peers[0].events->sent(*busy, 120s);
    if (!busy_acked) die("the relay never acknowledged the message");
    // The measured message goes into a quiet group: every member has both earlier messages and
    // their delivered receipts have reached the sender, so no other work shares the cores.
    for (auto until = Steady::now() + 120s;;) {
      auto w = peers[0].client->message(*group, *warm);
      auto b = peers[0].client->message(*group, *busy);
      auto all = static_cast<uint32_t>(members - 1);
      if (w.ok() && b.ok() && w->delivered_to >= all && b->delivered_to >= all) break;
      if (Steady::now() > until) die("the earlier messages' receipts never all arrived");
      std::this_thread::sleep_for(20ms);
    }
    auto sent = Steady::now();
    auto measured = peers[0].client->send_text(*group, "measured");
    if (!measured.ok()) die("send");
    double call_ms = std::chrono::duration<double, std::milli>(Steady::now() - sent).count();
    Steady::time_point last = sent;
    std::vector<double> each;
    for (int i = 1; i < members; ++i) {
      auto at = peers[static_cast<size_t>(i)].events->arrived("measured", 120s);
      if (!at) die("a member never got the message");
      each.push_back(std::chrono::duration<double, std::milli>(*at - sent).count());
      last = std::max(last, *at);
    }
    auto acked = peers[0].events->sent(*measured, 120s);
    if (!acked) die("the relay never acknowledged the message");
    std::sort(each.begin(), each.end());
    std::printf("\n%-58s %10s\n", "group delivery, loopback, one process for all members", "ms");
    std::printf("%-58s %10.0f\n",
                ("all " + std::to_string(members - 1) + " members have the message").c_str(),
                std::chrono::duration<double, std::milli>(last - sent).count());
    std::printf("%-58s %10.0f\n", "median member", each[each.size() / 2]);
    std::printf("%-58s %10.2f\n", "sender: send_text() returned (history + outbox committed)",
                call_ms);
    std::printf("%-58s %10.1f\n", "sender: relay acknowledged it (status sent)",
                std::chrono::duration<double, std::milli>(*acked - sent).count());
    std::printf("%-58s %10.2f\n", "while 999 receipts arrive: send_text() returned", busy_call_ms);
    std::printf("%-58s %10.1f\n", "while 999 receipts arrive: relay acknowledged it",
                std::chrono::duration<double, std::milli>(*busy_acked - busy_at).count());
    std::printf("%-58s %10.0f\n", "first message (sessions + sender keys)", first_s * 1000);
    std::printf("%-58s %10.1f\n", "(setup: registering the members, s)", setup_s);

    // Files: encrypt + upload through the Client.
    fs::path file = dir / "payload.bin";
    {
      std::vector<uint8_t> chunk(1 << 20);
      std::ofstream out(file, std::ios::binary);
      for (int i = 0; i < file_mib; ++i) {
        randombytes_buf(chunk.data(), chunk.size());
        out.write(reinterpret_cast<const char*>(chunk.data()),
                  static_cast<std::streamsize>(chunk.size()));
      }
    }
    auto contact = peers[0].client->direct_conversation(peers[1].info.account);
    if (!contact.ok()) die(contact.error().message);
    t = Steady::now();
    auto id = peers[0].client->send_file(*contact, file);
    if (!id.ok()) die(id.error().message);
    double up_s = seconds_since(t);
    std::printf("\n%-58s %10s\n", "attachment", "MiB/s");
    std::printf("%-58s %10.0f\n",
                ("encrypt + upload, " + std::to_string(file_mib) + " MiB file").c_str(),
                file_mib / up_s);
  }
  fs::remove_all(dir);
  return 0;
}
