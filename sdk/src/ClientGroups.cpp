// sotto::Client, groups (protocol.md 14.4): state as GroupUpdate snapshots over pairwise
// sessions, messages under Sender Keys fanned out with SEND_MULTI, and the bookkeeping of
// who holds which sender key.
#include "ClientImpl.h"

namespace sotto {

using namespace std::chrono_literals;

namespace {

constexpr size_t kMaxMembers = 1000;
constexpr size_t kMaxGroupName = 256;
constexpr size_t kMaxMultiRecipients = 1000;
// Groups whose recipient lists are kept encoded: the device list and its encoding, ~110 KB
// for 1,000 devices.
constexpr size_t kRecipientCacheGroups = 8;
constexpr size_t kParallelFetches = 16;
// What one SEND may carry: the relay's frame limit is 256 KiB; keep room for the envelope.
constexpr size_t kMaxSendBytes = 200 * 1024;

Bytes sha256(ByteView b) {
  Bytes out(crypto_hash_sha256_BYTES);
  crypto_hash_sha256(out.data(), b.data(), b.size());
  return out;
}

std::set<std::string> member_set(const content::GroupUpdate& u) {
  std::set<std::string> out;
  for (const auto& m : u.members()) out.insert(to_hex(view_of(m.account_id())));
  return out;
}

std::set<std::string> admin_set(const content::GroupUpdate& u) {
  std::set<std::string> out;
  for (const auto& a : u.admins()) out.insert(to_hex(view_of(a)));
  return out;
}

std::string handle_of(const content::GroupUpdate& u, const std::string& account) {
  for (const auto& m : u.members())
    if (to_hex(view_of(m.account_id())) == account) return m.handle();
  return {};
}

std::string who(const content::GroupUpdate& u, const std::string& account, const std::string& me) {
  if (account == me) return "You";
  std::string h = handle_of(u, account);
  return h.empty() ? "A member" : "@" + h;
}

// The same in object position: "@alice removed you".
std::string whom(const content::GroupUpdate& u, const std::string& account, const std::string& me) {
  return account == me ? "you" : who(u, account, me);
}

// Structural checks a receiver applies to any snapshot.
bool well_formed(const content::GroupUpdate& u) {
  if (u.group_id().size() != 32 || u.revision() == 0 || u.changed_by().size() != 16) return false;
  if (u.members_size() == 0 || static_cast<size_t>(u.members_size()) > kMaxMembers) return false;
  if (u.name().size() > kMaxGroupName) return false;
  std::set<std::string> seen;
  for (const auto& m : u.members())
    if (m.account_id().size() != 16 || !seen.insert(m.account_id()).second) return false;
  for (const auto& a : u.admins())
    if (a.size() != 16 || !seen.count(a)) return false;
  return true;
}

// A member taking itself out, and nothing else: allowed to any member.
bool only_leaves(const content::GroupUpdate& cur, const content::GroupUpdate& next,
                 const std::string& who_hex) {
  if (next.name() != cur.name()) return false;
  auto before = member_set(cur), after = member_set(next);
  if (!before.count(who_hex) || after.count(who_hex)) return false;
  before.erase(who_hex);
  if (before != after) return false;
  auto admins_before = admin_set(cur), admins_after = admin_set(next);
  admins_before.erase(who_hex);
  return admins_before == admins_after;
}

}  // namespace

// ---- local changes ----

Result<ConversationId> Client::Impl::create_group(const std::string& name,
                                                  const std::vector<std::string>& accounts) {
  if (name.empty() || name.size() > kMaxGroupName)
    return make_error(ErrorCode::kInvalidArgument, "a group name is 1 to 256 bytes");
  if (!is_valid_utf8(name))
    return make_error(ErrorCode::kInvalidArgument,
                      "the group name is not valid UTF-8; no group was created (convert it to "
                      "UTF-8)");
  if (accounts.size() + 1 > kMaxMembers)
    return make_error(ErrorCode::kTooLarge, "a group has at most 1,000 members");
  SOTTO_TRY_ASSIGN(auto me, registered_account());
  std::set<std::string> unique;
  for (const auto& a : accounts) {
    SOTTO_TRY(parse_account(a));
    if (a == me.account) continue;
    unique.insert(a);
  }
  Bytes gid(32);
  randombytes_buf(gid.data(), gid.size());
  ConversationId conv = 0;
  Effects fx;
  SOTTO_TRY(txn([&]() -> Status {
    content::GroupUpdate u;
    u.set_group_id(str_of(gid));
    u.set_revision(1);
    u.set_name(name);
    Bytes self;
    from_hex(me.account, self);
    auto* m = u.add_members();
    m->set_account_id(str_of(self));
    m->set_handle(me.handle);
    for (const auto& a : unique) {
      Bytes id;
      from_hex(a, id);
      auto* member = u.add_members();
      member->set_account_id(str_of(id));
      SOTTO_TRY_ASSIGN(auto c, history.contact(a));
      if (c) member->set_handle(c->handle);
    }
    u.add_admins(str_of(self));
    u.set_changed_by(str_of(self));
    u.set_timestamp_ms(now());
    SOTTO_TRY_ASSIGN(conv, history.group_conversation(gid, now()));
    Bytes raw = serialize(u);
    GroupRow row{conv, gid, 1, raw, name, true};
    SOTTO_TRY(history.save_group(row));
    std::vector<GroupMember> members;
    for (const auto& mm : u.members())
      members.push_back(GroupMember{to_hex(view_of(mm.account_id())), mm.handle(),
                                    mm.account_id() == str_of(self)});
    SOTTO_TRY(history.set_group_members(conv, members));
    SOTTO_TRY(add_notice(conv, "You created the group \"" + name + "\"", 0, fx));
    content::Content c;
    *c.mutable_group_update() = u;
    OutboxItem item;
    item.message_id = new_message_id(now());
    item.kind = OutboxKind::kGroupUpdate;
    item.group_conv = conv;
    item.accounts.assign(unique.begin(), unique.end());
    item.content = serialize(c);
    item.urgent = true;
    SOTTO_TRY(history.enqueue(item, now()));
    return {};
  }));
  emit(std::move(fx.events));
  kick_outbox();
  return conv;
}

Result<GroupInfo> Client::Impl::group_info(ConversationId conversation) {
  SOTTO_TRY_ASSIGN(auto me, registered_account());
  return locked([&]() -> Result<GroupInfo> {
    SOTTO_TRY_ASSIGN(auto g, history.group(conversation));
    if (!g)
      return make_error(ErrorCode::kNotFound,
                        "conversation " + std::to_string(conversation) + " is not a group");
    GroupInfo info;
    info.conversation = conversation;
    info.group_id = to_hex(g->group_id);
    info.name = g->name;
    info.revision = g->revision;
    SOTTO_TRY_ASSIGN(info.members, history.group_members(conversation));
    info.is_member = g->member;
    for (const auto& m : info.members)
      if (m.account == me.account) info.is_admin = m.admin && g->member;
    return info;
  });
}

Status Client::Impl::change_group(ConversationId conversation,
                                  const std::function<Status(content::GroupUpdate&)>& change,
                                  bool leaving) {
  SOTTO_TRY_ASSIGN(auto me, registered_account());
  Effects fx;
  SOTTO_TRY(txn([&]() -> Status {
    SOTTO_TRY_ASSIGN(auto g, history.group(conversation));
    if (!g)
      return make_error(ErrorCode::kNotFound,
                        "conversation " + std::to_string(conversation) + " is not a group");
    if (!g->member)
      return make_error(ErrorCode::kForbidden, "this account is no longer in the group");
    content::GroupUpdate cur;
    if (!cur.ParseFromArray(g->snapshot.data(), static_cast<int>(g->snapshot.size())))
      return make_error(ErrorCode::kStorageCorrupt, "the stored group state does not parse");
    if (!leaving && !admin_set(cur).count(me.account))
      return make_error(ErrorCode::kForbidden,
                        "only the group's admins may change it; ask one of them");
    content::GroupUpdate next = cur;
    next.set_revision(cur.revision() + 1);
    Bytes self;
    from_hex(me.account, self);
    next.set_changed_by(str_of(self));
    next.set_timestamp_ms(now());
    SOTTO_TRY(change(next));
    if (!well_formed(next))
      return make_error(ErrorCode::kInvalidArgument,
                        "the change would leave the group without members, with unknown admins "
                        "or with more than 1,000 members");
    if (next.SerializeAsString() == cur.SerializeAsString()) return {};
    std::set<std::string> recipients = member_set(cur);
    for (const auto& a : member_set(next)) recipients.insert(a);
    recipients.erase(me.account);
    Address self_address{me.account, me.device_id};
    SOTTO_TRY(apply_group_update(self_address, next, serialize(next), 0, fx));
    content::Content c;
    *c.mutable_group_update() = next;
    OutboxItem item;
    item.message_id = new_message_id(now());
    item.kind = OutboxKind::kGroupUpdate;
    item.group_conv = conversation;
    item.accounts.assign(recipients.begin(), recipients.end());
    item.content = serialize(c);
    item.urgent = true;
    SOTTO_TRY(history.enqueue(item, now()));
    return {};
  }));
  emit(std::move(fx.events));
  kick_outbox();
  return {};
}

// ---- received state ----

Result<std::vector<std::string>> Client::Impl::store_group_state(
    ConversationId conv, const content::GroupUpdate& u, ByteView raw,
    const std::set<std::string>& old_members, uint32_t left_revision) {
  const std::string& me = parts.crypto.identity().account;
  auto next_members = member_set(u);
  bool is_member = next_members.count(me) > 0;
  GroupRow row{conv,         bytes_of(u.group_id()),
               u.revision(), Bytes(raw.begin(), raw.end()),
               u.name(),     is_member};
  row.left_revision = old_members.count(me) && !is_member ? u.revision() : left_revision;
  SOTTO_TRY(history.save_group(row));
  auto admins = admin_set(u);
  std::vector<GroupMember> members;
  for (const auto& m : u.members()) {
    std::string a = to_hex(view_of(m.account_id()));
    members.push_back(GroupMember{a, m.handle(), admins.count(a) > 0});
  }
  SOTTO_TRY(history.set_group_members(conv, members));

  std::vector<std::string> removed;
  for (const auto& a : old_members)
    if (!next_members.count(a)) removed.push_back(a);
  Bytes gid = bytes_of(u.group_id());
  if (is_member && !removed.empty()) {
    // Whoever left must not read what this device sends from now on: a new sender key, given
    // only to the remaining members. Nothing the departed send is accepted any more, because
    // every group message and typing indicator is checked against the members. Their keys
    // are kept: an update can arrive late, after the member was added back and sent its key
    // again, and forgetting that key would leave its messages unreadable here.
    SOTTO_TRY(parts.crypto.group_rotate_sender_key(gid));
    SOTTO_TRY(history.clear_sender_key_holders(conv));
  }
  if (!is_member) SOTTO_TRY(history.clear_sender_key_holders(conv));
  return removed;
}

Status Client::Impl::apply_group_update(const Address& from, const content::GroupUpdate& u,
                                        ByteView raw, uint64_t sort_ms, Effects& fx) {
  if (!well_formed(u)) return {};
  // The snapshot says who made it; only that account's devices may send it.
  if (to_hex(view_of(u.changed_by())) != from.account) return {};
  const std::string& me = parts.crypto.identity().account;
  auto next_members = member_set(u);
  SOTTO_TRY_ASSIGN(auto existing, history.group_by_id(view_of(u.group_id())));
  std::optional<content::GroupUpdate> cur;
  ConversationId conv = 0;
  bool own_change = from.account == me && from.device_id == parts.crypto.identity().device_id;
  if (!existing) {
    // A group we do not know: we were added. Accept it from one of its admins.
    if (!next_members.count(me) || !admin_set(u).count(from.account)) return {};
    SOTTO_TRY_ASSIGN(conv, history.group_conversation(view_of(u.group_id()), now()));
  } else {
    conv = existing->conversation;
    cur.emplace();
    if (!cur->ParseFromArray(existing->snapshot.data(),
                             static_cast<int>(existing->snapshot.size())))
      return make_error(ErrorCode::kStorageCorrupt, "the stored group state does not parse");
    if (!own_change) {
      if (u.revision() < cur->revision()) return {};
      bool allowed = admin_set(*cur).count(from.account) > 0 ||
                     (u.revision() == cur->revision() + 1 && only_leaves(*cur, u, from.account));
      if (!allowed) return {};
      if (u.revision() == cur->revision()) {
        // Two changes to the same revision: the smaller SHA-256 of the snapshot wins, so
        // every member ends with the same state whatever order they arrived in.
        Bytes mine = sha256(existing->snapshot), theirs = sha256(raw);
        if (theirs >= mine) return {};
      }
    }
  }
  auto old_members = cur ? member_set(*cur) : std::set<std::string>{};
  bool was_member = existing && existing->member;
  bool is_member = next_members.count(me) > 0;

  SOTTO_TRY_ASSIGN(auto removed, store_group_state(conv, u, raw, old_members,
                                                   existing ? existing->left_revision : 0));
  if (is_member) SOTTO_TRY(apply_held_group_messages(view_of(u.group_id()), fx));
  std::vector<std::string> added;
  for (const auto& a : next_members)
    if (cur && !old_members.count(a)) added.push_back(a);

  std::string author = who(u, from.account, me);
  if (!existing) {
    // From another device of this account: the group was made there (or changed there before
    // this device knew it), and "You added you" would be nonsense.
    std::string text = from.account != me  ? author + " added you to the group"
                       : u.revision() == 1 ? std::string("You created the group")
                                           : std::string("You are in the group");
    SOTTO_TRY(add_notice(conv, text + " \"" + u.name() + "\"", sort_ms, fx));
  } else {
    if (cur && cur->name() != u.name())
      SOTTO_TRY(
          add_notice(conv, author + " renamed the group to \"" + u.name() + "\"", sort_ms, fx));
    for (const auto& a : added)
      SOTTO_TRY(add_notice(conv, author + " added " + whom(u, a, me), sort_ms, fx));
    for (const auto& a : removed) {
      std::string text = a == from.account ? who(*cur, a, me) + " left the group"
                                           : author + " removed " + whom(*cur, a, me);
      SOTTO_TRY(add_notice(conv, text, sort_ms, fx));
    }
    if (was_member && !is_member && from.account != me)
      SOTTO_TRY(add_notice(conv, "You are no longer in this group", sort_ms, fx));
  }
  fx.events.push_back([conv](ClientListener& l) { l.on_conversation_changed(conv); });
  return {};
}

Status Client::Impl::reply_groups(const Address& device, Effects& fx) {
  SOTTO_TRY_ASSIGN(auto groups, history.member_groups());
  // Snapshots of up to 1,000 members are ~40 KB: several go in one message, well under the
  // relay's envelope limit.
  constexpr size_t kSyncBytes = 128 * 1024;
  content::Content reply;
  size_t bytes = 0;
  auto flush = [&](bool complete) -> Status {
    reply.mutable_sync()->mutable_groups()->set_complete(complete);
    SOTTO_TRY(enqueue_sync_reply(device, reply, fx));
    reply.Clear();
    bytes = 0;
    return {};
  };
  for (const auto& g : groups) {
    content::GroupUpdate u;
    if (!u.ParseFromArray(g.snapshot.data(), static_cast<int>(g.snapshot.size()))) continue;
    if (bytes > 0 && bytes + g.snapshot.size() > kSyncBytes) SOTTO_TRY(flush(false));
    *reply.mutable_sync()->mutable_groups()->add_groups() = std::move(u);
    bytes += g.snapshot.size();
  }
  return flush(true);
}

Status Client::Impl::resend_group_states(const std::string& account) {
  SOTTO_TRY_ASSIGN(auto groups, history.member_groups());
  const std::string& me = parts.crypto.identity().account;
  for (const auto& g : groups) {
    content::Content c;
    content::GroupUpdate& u = *c.mutable_group_update();
    if (!u.ParseFromArray(g.snapshot.data(), static_cast<int>(g.snapshot.size()))) continue;
    // Only the member who made a change may send it (apply_group_update); an older change by
    // someone else reaches `account` from them.
    if (to_hex(view_of(u.changed_by())) != me || !member_set(u).count(account)) continue;
    OutboxItem item;
    item.message_id = new_message_id(now());
    item.kind = OutboxKind::kGroupUpdate;
    item.group_conv = g.conversation;
    item.accounts = {account};
    item.content = serialize(c);
    item.urgent = true;
    SOTTO_TRY(history.enqueue(item, now()));
  }
  return {};
}

Status Client::Impl::apply_group_sync(const content::GroupUpdate& u, Effects& fx) {
  if (!well_formed(u)) return {};
  const std::string& me = parts.crypto.identity().account;
  auto next_members = member_set(u);
  bool is_member = next_members.count(me) > 0;
  SOTTO_TRY_ASSIGN(auto existing, history.group_by_id(view_of(u.group_id())));
  ConversationId conv = 0;
  std::set<std::string> old_members;
  if (!existing) {
    if (!is_member) return {};  // nothing to show for a group this account is not in
    SOTTO_TRY_ASSIGN(conv, history.group_conversation(view_of(u.group_id()), now()));
  } else {
    // The other device only knows more if its revision is higher; the same revision from
    // two admins is settled as for any update, by the received GroupUpdates themselves.
    if (u.revision() <= existing->revision) return {};
    conv = existing->conversation;
    content::GroupUpdate cur;
    if (cur.ParseFromArray(existing->snapshot.data(), static_cast<int>(existing->snapshot.size())))
      old_members = member_set(cur);
  }
  SOTTO_TRY(store_group_state(conv, u, serialize(u), old_members,
                              existing ? existing->left_revision : 0));
  if (is_member) SOTTO_TRY(apply_held_group_messages(view_of(u.group_id()), fx));
  fx.events.push_back([conv](ClientListener& l) { l.on_conversation_changed(conv); });
  return {};
}

Status Client::Impl::apply_held_group_messages(ByteView group_id, Effects& fx) {
  SOTTO_TRY_ASSIGN(auto held, history.take_held_group_messages(group_id));
  for (const auto& h : held) {
    content::DataMessage dm;
    if (!dm.ParseFromArray(h.message.data(), static_cast<int>(h.message.size()))) continue;
    wire::Envelope env;  // apply_data reads only the relay's timestamp from it
    env.set_server_timestamp_ms(h.sort_ms);
    SOTTO_TRY(apply_data(Address{h.sender, h.device}, env, dm, fx));
  }
  return {};
}

Status Client::Impl::apply_sender_key_distribution(const Address& from,
                                                   const content::SenderKeyDistribution& d,
                                                   Effects& fx) {
  (void)fx;
  if (d.group_id().size() != 32 || d.distribution_message().empty()) return {};
  // Taken from anyone with a pairwise session, member or not: membership is checked for
  // every message that decrypts under the key (apply_data). A member added in a revision
  // this device has not received yet sends its key before the update arrives, and refusing
  // it would make its messages undecryptable here.
  auto key_id = parts.crypto.sender_key_distribution_id(view_of(d.distribution_message()));
  if (!key_id.ok()) return {};  // authentic but malformed: nothing to keep
  SOTTO_TRY(parts.crypto.group_process_sender_key(bytes_of(d.group_id()), from,
                                                  view_of(d.distribution_message())));
  return history.record_sender_key_id(from.account, from.device_id, *key_id, view_of(d.group_id()));
}

Status Client::Impl::decrypt_group_and_apply(const Address& from, const wire::Envelope& env,
                                             Effects& fx) {
  ByteView ct = view_of(env.ciphertext());
  SOTTO_TRY_ASSIGN(uint32_t key_id, parts.crypto.sender_key_message_id(ct));
  SOTTO_TRY_ASSIGN(auto gid, history.group_for_sender_key(from.account, from.device_id, key_id));
  if (!gid)
    return make_error(ErrorCode::kNoSession,
                      "a group message under a sender key this device never received");
  std::optional<Error> apply_error;
  auto plain = parts.crypto.group_decrypt(*gid, from, ct, [&](ByteView plaintext) -> Status {
    content::Content c;
    if (Status read = parse_from_peer(plaintext, c); !read.ok()) {
      diagnose("a group message from device " + std::to_string(from.device_id) + " of " +
               from.account + " was dropped: " + read.error().message);
      return {};
    }
    Status s;
    if (c.has_data_message()) {
      // The sender key is for one group: a message naming another one is not believed.
      if (c.data_message().group().group_id() != str_of(*gid)) return {};
      s = apply_data(from, env, c.data_message(), fx);
    } else if (c.has_typing()) {
      if (c.typing().group_id() != str_of(*gid)) return {};
      apply_typing(from, c.typing(), fx);
    }
    if (!s.ok()) apply_error = s.error();
    return s;
  });
  if (!plain.ok()) {
    if (apply_error) return std::move(*apply_error);
    return std::move(plain).error();
  }
  return {};
}

// ---- sessions in bulk ----

Status Client::Impl::ensure_sessions(const std::vector<std::string>& accounts,
                                     std::vector<std::string>* in_doubt) {
  std::vector<std::string> missing;
  SOTTO_TRY(locked([&]() -> Status {
    for (const auto& a : accounts) {
      SOTTO_TRY_ASSIGN(auto devs, parts.crypto.session_devices(a));
      if (devs.empty()) missing.push_back(a);
    }
    return {};
  }));
  if (missing.empty()) return {};
  auto c = connection();
  if (!c || !c->connected())
    return make_error(ErrorCode::kUnavailable, "not connected to the relay");
  // Pipelined: a 1,000-member group needs 1,000 bundle fetches before its first message.
  struct Batch {
    std::mutex mu;
    std::condition_variable cv;
    size_t done = 0;
    std::vector<std::optional<Result<wire::Response>>> results;
  };
  for (size_t start = 0; start < missing.size(); start += 200) {
    size_t end = std::min(missing.size(), start + 200);
    auto batch = std::make_shared<Batch>();
    batch->results.resize(end - start);
    size_t issued = 0;
    auto issue = [&](size_t i) {
      Bytes id;
      from_hex(missing[start + i], id);
      auto req = make_request(wire::OP_GET_BUNDLES);
      req.mutable_get_bundles()->set_account_id(str_of(id));
      c->request(std::move(req), [batch, i](Result<wire::Response> r) {
        std::lock_guard lock(batch->mu);
        batch->results[i] = std::move(r);
        ++batch->done;
        batch->cv.notify_all();
      });
    };
    {
      std::unique_lock lock(batch->mu);
      while (batch->done < end - start) {
        while (issued < end - start && issued - batch->done < kParallelFetches) {
          lock.unlock();
          issue(issued++);
          lock.lock();
        }
        batch->cv.wait(lock);
      }
    }
    Effects fx;
    Status s = locked([&]() -> Status {
      for (size_t i = 0; i < batch->results.size(); ++i) {
        const auto& r = *batch->results[i];
        if (!r.ok()) return r.error();
        if (r->status() != wire::OK) continue;  // that account is gone: left out of sends
        const std::string& account = missing[start + i];
        for (const auto& b : r->get_bundles().bundles()) {
          Status st = parts.crypto.start_session(Address{account, b.device_id()}, b);
          if (st.code() == ErrorCode::kUntrustedIdentity) {
            identity_changed_event(account, bytes_of(b.identity_key()), fx);
            if (in_doubt) in_doubt->push_back(account);
            break;
          }
          if (!st.ok() && !is_crypto_failure(st.code())) return st;
        }
      }
      return {};
    });
    emit(std::move(fx.events));
    SOTTO_TRY(std::move(s));
  }
  return {};
}

Result<std::vector<Address>> Client::Impl::own_other_devices() {
  std::string me = self_account();
  uint32_t my_device = self_device();
  std::vector<uint32_t> missing;
  auto devs = locked([&] { return parts.crypto.session_devices(me); });
  if (!devs.ok()) return std::move(devs).error();
  for (uint32_t d : own_devices)
    if (!std::count(devs->begin(), devs->end(), d)) missing.push_back(d);
  if (!missing.empty()) {
    SOTTO_TRY(fetch_sessions(me, missing));
    devs = locked([&] { return parts.crypto.session_devices(me); });
    if (!devs.ok()) return std::move(devs).error();
  }
  std::vector<Address> out;
  for (uint32_t d : *devs)
    if (d != my_device) out.push_back(Address{me, d});
  return out;
}

// ---- sending ----

Result<wire::Response> Client::Impl::send_batched(const Bytes& message_id,
                                                  std::vector<wire::OutgoingMessage> messages,
                                                  bool urgent, bool targeted) {
  // Own account first (batch 0 must cover it for urgent sends), then by account.
  std::string self_id;
  {
    Bytes id;
    from_hex(self_account(), id);
    self_id = str_of(id);
  }
  std::stable_sort(messages.begin(), messages.end(),
                   [&](const wire::OutgoingMessage& a, const wire::OutgoingMessage& b) {
                     bool sa = a.account_id() == self_id, sb = b.account_id() == self_id;
                     if (sa != sb) return sa;
                     return a.account_id() < b.account_id();
                   });
  auto c = connection();
  if (!c) return make_error(ErrorCode::kUnavailable, "not connected to the relay");
  uint32_t batch = 0;
  for (size_t i = 0; i < messages.size();) {
    // Whole accounts, up to 100 messages and well inside the relay's frame limit (a group
    // change for 1,000 members is some 30 KiB per copy).
    size_t j = i, bytes = 0;
    while (j < messages.size()) {
      size_t k = j, account_bytes = 0;
      while (k < messages.size() && messages[k].account_id() == messages[j].account_id())
        account_bytes += messages[k++].ByteSizeLong() + 16;
      if (j > i && (k - i > kMaxSendMessages || bytes + account_bytes > kMaxSendBytes)) break;
      bytes += account_bytes;
      j = k;
    }
    auto req = make_request(wire::OP_SEND);
    auto* send = req.mutable_send();
    send->set_message_id(str_of(message_id));
    send->set_urgent(urgent);
    send->set_targeted(targeted);
    send->set_batch(batch++);
    for (size_t k = i; k < j; ++k) *send->add_messages() = messages[k];
    SOTTO_TRY_ASSIGN(auto r, c->call(std::move(req)));
    if (r.status() != wire::OK) return r;
    i = j;
    if (i >= messages.size()) return r;
  }
  wire::Response ok;
  ok.set_status(wire::OK);
  return ok;
}

Status Client::Impl::owe_group_send(const OutboxItem& item,
                                    const std::vector<std::string>& accounts) {
  if (accounts.empty() || !item.group_conv) return {};
  return txn([&]() -> Status {
    for (const auto& a : accounts)
      SOTTO_TRY(history.owe_group_send(a, item.message_id, *item.group_conv, item.content, now(),
                                       kResendWindow));
    return {};
  });
}

Client::Impl::Outcome Client::Impl::send_group_update(const OutboxItem& item) {
  // A member whose safety number is in doubt gets this change once the user accepts it (a
  // removal too: the removed member must learn of it).
  std::vector<std::string> in_doubt;
  Status ensured = ensure_sessions(item.accounts, &in_doubt);
  if (ensured.ok()) ensured = owe_group_send(item, in_doubt);
  if (!ensured.ok()) return on_send_error(item, ensured.error());
  for (int attempt = 0; attempt < 6; ++attempt) {
    auto own = own_other_devices();
    if (!own.ok()) return on_send_error(item, own.error());
    std::vector<Address> targets = *own;
    {
      auto s = locked([&]() -> Status {
        for (const auto& a : item.accounts) {
          SOTTO_TRY_ASSIGN(auto devs, parts.crypto.session_devices(a));
          for (uint32_t d : devs) targets.push_back(Address{a, d});
        }
        return {};
      });
      if (!s.ok()) return retry_later(item, s.error(), 0);
    }
    if (targets.empty()) {
      Status done = txn([&] { return history.outbox_done(item.id); });
      if (!done.ok()) return retry_later(item, done.error(), 0);
      return Outcome::kDone;
    }
    std::vector<wire::OutgoingMessage> messages;
    std::optional<Address> broken;
    Status enc = txn([&]() -> Status {
      messages.clear();
      for (const auto& t : targets) {
        auto ct = parts.crypto.encrypt(t, item.content);
        if (!ct.ok()) {
          broken = t;
          return std::move(ct).error();
        }
        SOTTO_TRY_ASSIGN(uint32_t reg, registration_id(t));
        wire::OutgoingMessage m;
        Bytes acct;
        from_hex(t.account, acct);
        m.set_account_id(str_of(acct));
        m.set_device_id(t.device_id);
        m.set_registration_id(reg);
        m.set_type(ct->type == CiphertextType::kPreKey ? wire::Envelope::PREKEY_MESSAGE
                                                       : wire::Envelope::MESSAGE);
        m.set_ciphertext(str_of(ct->bytes));
        messages.push_back(std::move(m));
      }
      return {};
    });
    if (!enc.ok()) {
      if (broken && is_crypto_failure(enc.code())) {
        Status dropped = locked([&] { return parts.crypto.delete_session(*broken); });
        if (!dropped.ok()) return retry_later(item, dropped.error(), 0);
        // Not fetched now (offline, say): the next attempt fetches what is missing.
        log_failure(ensure_sessions({broken->account}),
                    "starting a new session after a broken one");
        continue;
      }
      return retry_later(item, enc.error(), 0);
    }
    auto r = send_batched(item.message_id, std::move(messages), true, false);
    if (!r.ok()) {
      if (r.code() == ErrorCode::kTimeout) return retry_later(item, r.error(), 2000);
      return Outcome::kStop;
    }
    if (r->status() == wire::OK) return item_sent(item, 0);
    if (r->status() == wire::STALE_DEVICES) {
      std::vector<std::string> doubted;
      Status s = apply_mismatch(r->stale_devices(), self_account(), &doubted);
      if (s.ok()) s = owe_group_send(item, doubted);
      if (!s.ok()) return on_send_error(item, s.error());
      continue;
    }
    return on_send_error(item, status_error(*r, "sending a group change"));
  }
  return retry_later(
      item,
      make_error(ErrorCode::kUnavailable, "the members' devices kept changing during the send"), 0);
}

Status Client::Impl::distribute_sender_key(ConversationId conversation, ByteView group_id,
                                           const std::vector<Address>& devices,
                                           std::vector<std::string>* in_doubt) {
  if (devices.empty()) return {};
  std::vector<wire::OutgoingMessage> messages;
  Bytes gid(group_id.begin(), group_id.end());
  SOTTO_TRY(txn([&]() -> Status {
    SOTTO_TRY_ASSIGN(Bytes skdm, parts.crypto.group_sender_key(gid));
    content::Content c;
    c.mutable_sender_key_distribution()->set_group_id(str_of(gid));
    c.mutable_sender_key_distribution()->set_distribution_message(str_of(skdm));
    Bytes plain = serialize(c);
    for (const auto& t : devices) {
      SOTTO_TRY_ASSIGN(auto ct, parts.crypto.encrypt(t, plain));
      SOTTO_TRY_ASSIGN(uint32_t reg, registration_id(t));
      wire::OutgoingMessage m;
      Bytes acct;
      from_hex(t.account, acct);
      m.set_account_id(str_of(acct));
      m.set_device_id(t.device_id);
      m.set_registration_id(reg);
      m.set_type(ct.type == CiphertextType::kPreKey ? wire::Envelope::PREKEY_MESSAGE
                                                    : wire::Envelope::MESSAGE);
      m.set_ciphertext(str_of(ct.bytes));
      messages.push_back(std::move(m));
    }
    return {};
  }));
  // The group message that needs this key goes out only after the relay committed it: queues
  // are FIFO, so every device reads the key first (protocol.md 14.4).
  SOTTO_TRY_ASSIGN(auto r, send_batched(new_message_id(now()), std::move(messages), false, true));
  if (r.status() == wire::STALE_DEVICES) {
    SOTTO_TRY(apply_mismatch(r.stale_devices(), self_account(), in_doubt));
    return make_error(ErrorCode::kConflict, "device lists changed; distributing again");
  }
  if (r.status() != wire::OK) return status_error(r, "distributing a sender key");
  return txn([&]() -> Status {
    for (const auto& t : devices)
      SOTTO_TRY(history.add_sender_key_holder(conversation, t.account, t.device_id));
    return {};
  });
}

GroupRecipients& Client::Impl::group_recipients(ConversationId group) {
  auto it = recipient_cache.find(group);
  if (it != recipient_cache.end()) return it->second;
  if (recipient_cache_order.size() >= kRecipientCacheGroups) {
    recipient_cache.erase(recipient_cache_order.front());
    recipient_cache_order.pop_front();
  }
  recipient_cache_order.push_back(group);
  return recipient_cache[group];
}

Client::Impl::Outcome Client::Impl::send_group_data(const OutboxItem& item) {
  if (!item.group_conv)
    return fail_item(item, make_error(ErrorCode::kInternal, "a group send without a group"));
  ConversationId conv = *item.group_conv;
  std::string me = self_account();
  content::Content content;
  if (!content.ParseFromArray(item.content.data(), static_cast<int>(item.content.size())) ||
      !content.has_data_message())
    return fail_item(
        item, make_error(ErrorCode::kStorageCorrupt, "a queued group message does not parse"));
  // The revision the message's history row says it went at (set when it was written).
  uint32_t row_revision = content.data_message().group().revision();
  auto restamp_row = [&](uint32_t revision) -> Status {
    if (!item.message || revision == row_revision) return {};
    // The row's own copy (an edit made while the message waited is in it), with the revision.
    SOTTO_TRY_ASSIGN(auto stored, history.message(*item.message));
    if (!stored || stored->extra.empty()) return {};  // deleted meanwhile
    content::DataMessage dm;
    if (!dm.ParseFromArray(stored->extra.data(), static_cast<int>(stored->extra.size()))) return {};
    dm.mutable_group()->set_revision(revision);
    return history.set_group_revision(*item.message, revision, serialize(dm));
  };
  // Members and the devices this device has sessions with, one query; members without any
  // get sessions first.
  uint64_t saves = history.group_saves();
  auto member_devices = locked([&] { return history.group_session_devices(conv, me); });
  if (!member_devices.ok()) return retry_later(item, member_devices.error(), 0);
  std::vector<std::string> missing;
  for (const auto& [account, devs] : *member_devices)
    if (devs.empty()) missing.push_back(account);
  // What was read serves the first attempt unless sessions were made or the group changed; a
  // retry reads again.
  std::optional<std::vector<std::pair<std::string, std::vector<uint32_t>>>> known;
  if (missing.empty()) {
    known = std::move(*member_devices);
  } else {
    std::vector<std::string> in_doubt;
    Status ensured = ensure_sessions(missing, &in_doubt);
    if (ensured.ok()) ensured = owe_group_send(item, in_doubt);
    if (!ensured.ok()) return on_send_error(item, ensured.error());
  }

  for (int attempt = 0; attempt < 6; ++attempt) {
    auto own = own_other_devices();
    if (!own.ok()) return on_send_error(item, own.error());
    std::vector<Address> devices = *own;
    std::vector<std::pair<std::string, uint32_t>> holders;
    // The message goes at the group's revision now, to that revision's members: a member
    // removed since it was written does not get it, one added since does (and the message
    // says which revision it went at, so each member can tell it was meant for it).
    std::optional<GroupRow> group;
    Status s = locked([&]() -> Status {
      SOTTO_TRY_ASSIGN(group, history.group(conv));
      if (!group || !group->member) return {};
      auto members = std::exchange(known, std::nullopt);
      if (!members || history.group_saves() != saves) {
        saves = history.group_saves();
        SOTTO_TRY_ASSIGN(members, history.group_session_devices(conv, me));
      }
      for (const auto& [account, devs] : *members)
        for (uint32_t d : devs) devices.push_back(Address{account, d});
      SOTTO_TRY_ASSIGN(holders, history.sender_key_holders(conv));
      return {};
    });
    if (!s.ok()) return retry_later(item, s.error(), 0);
    if (!group || !group->member)
      return fail_item(item,
                       make_error(ErrorCode::kForbidden, "this account is no longer in the group"));
    content.mutable_data_message()->mutable_group()->set_revision(group->revision);
    Bytes stamped = serialize(content);
    if (devices.empty()) {
      // Nobody else in the group (and no other own devices): it is sent to no one.
      Status kept = txn([&] { return restamp_row(group->revision); });
      if (!kept.ok()) return retry_later(item, kept.error(), 0);
      return item_sent(item, 0);
    }
    std::set<std::pair<std::string, uint32_t>> have(holders.begin(), holders.end());
    std::vector<Address> need;
    for (const auto& d : devices)
      if (!have.count({d.account, d.device_id})) need.push_back(d);
    std::vector<std::string> in_doubt;
    Status dist = distribute_sender_key(conv, group->group_id, need, &in_doubt);
    if (dist.code() == ErrorCode::kConflict) {
      dist = owe_group_send(item, in_doubt);
      if (!dist.ok()) return on_send_error(item, dist.error());
      continue;
    }
    if (!dist.ok()) return on_send_error(item, dist.error());

    // One ciphertext for everyone, and the recipients encoded in batches: those of this
    // group's last send when the devices are the same. A group change applied since the
    // members were read (its sender key rotation too) sends again at the new revision.
    Bytes ct;
    bool changed = false;
    GroupRecipients& recipients = group_recipients(conv);
    Status enc = txn([&]() -> Status {
      if (history.group_saves() != saves) {
        changed = true;
        return {};
      }
      SOTTO_TRY_ASSIGN(ct, parts.crypto.group_encrypt(group->group_id, stamped));
      SOTTO_TRY(restamp_row(group->revision));
      SOTTO_TRY(recipients.assign(
          devices, me, registration_epoch, [&](const Address& d) { return registration_id(d); },
          kMaxMultiRecipients));
      return {};
    });
    if (!enc.ok()) return retry_later(item, enc.error(), 0);
    if (changed) continue;
    row_revision = group->revision;
    auto c = connection();
    if (!c) return Outcome::kStop;
    bool stale = false;
    for (uint32_t batch = 0; batch < recipients.batches().size(); ++batch) {
      wire::SendMultiRequest body;
      body.set_message_id(str_of(item.message_id));
      body.set_type(wire::Envelope::SENDER_KEY);
      body.set_ciphertext(str_of(ct));
      body.set_urgent(item.urgent);
      body.set_batch(batch);
      wire::Request head;
      head.set_op(wire::OP_SEND_MULTI);
      auto r = c->call_encoded(std::move(head), send_multi_body(body, recipients.batches()[batch]));
      if (!r.ok()) {
        if (r.code() == ErrorCode::kTimeout) return retry_later(item, r.error(), 2000);
        return Outcome::kStop;
      }
      if (r->status() == wire::STALE_DEVICES) {
        std::vector<std::string> doubted;
        Status m = apply_mismatch(r->stale_devices(), me, &doubted);
        if (m.ok()) m = owe_group_send(item, doubted);
        if (!m.ok()) return on_send_error(item, m.error());
        stale = true;
        break;
      }
      if (r->status() != wire::OK)
        return on_send_error(item, status_error(*r, "sending to the group"));
    }
    if (!stale) return item_sent(item, 0);
  }
  return retry_later(
      item,
      make_error(ErrorCode::kUnavailable, "the members' devices kept changing during the send"), 0);
}

}  // namespace sotto
