// sotto::Client, receiving: the worker loop, decrypting and storing envelopes, receipts,
// sync from own devices, session repair and held messages from a changed identity.

#include <algorithm>

#include "ClientImpl.h"
#include "SearchIndex.h"

namespace sotto {

using namespace std::chrono_literals;

void Client::Impl::worker_main() {
  std::unique_lock lock(mu);
  rebuild_due_ms = now();       // whether one was left unfinished: asked once at start
  plain_copies_due_ms = now();  // likewise whether an earlier version left plain files
  resend_asks_due_ms = now();   // and whether messages were still to be asked for again
  while (!stopping) {
    auto due = std::chrono::steady_clock::now() + 1s;
    uint64_t t = now();
    auto at = [&](uint64_t ms) {
      return std::chrono::steady_clock::now() + std::chrono::milliseconds(ms > t ? ms - t : 0);
    };
    if (receipts_due_ms) due = std::min(due, at(receipts_due_ms));
    if (outbox_due_ms) due = std::min(due, at(outbox_due_ms));
    if (purge_due_ms) due = std::min(due, at(purge_due_ms));
    if (rebuild_due_ms) due = std::min(due, at(rebuild_due_ms));
    if (plain_copies_due_ms) due = std::min(due, at(plain_copies_due_ms));
    if (inbound_retry_ms) due = std::min(due, at(inbound_retry_ms));
    if (names_due_ms) due = std::min(due, at(names_due_ms));
    if (ack_retry_ms) due = std::min(due, at(ack_retry_ms));
    if (resend_asks_due_ms) due = std::min(due, at(resend_asks_due_ms));
    auto inbound_ready = [&] {
      return !inbound.empty() && (!inbound_retry_ms || inbound_retry_ms <= now());
    };
    cv.wait_until(lock, due,
                  [&] { return stopping || !tasks.empty() || inbound_ready() || outbox_kick; });
    if (stopping) break;
    auto work = std::move(tasks);
    tasks.clear();
    std::vector<wire::Envelope> envs;
    while (inbound_ready() && envs.size() < kInboundBatch) {
      envs.push_back(std::move(inbound.front()));
      inbound.pop_front();
    }
    t = now();
    bool flush = receipts_due_ms && receipts_due_ms <= t;
    if (flush) receipts_due_ms = 0;
    bool send = outbox_kick.exchange(false) || (outbox_due_ms && outbox_due_ms <= t);
    // Purge only when nothing else waits: it rewrites index pages.
    bool purge = purge_due_ms && purge_due_ms <= t && inbound.empty() && tasks.empty();
    if (purge) purge_due_ms = 0;
    bool rebuild = rebuild_due_ms && rebuild_due_ms <= t && inbound.empty() && tasks.empty();
    if (rebuild) rebuild_due_ms = 0;
    bool plain_copies =
        plain_copies_due_ms && plain_copies_due_ms <= t && inbound.empty() && tasks.empty();
    if (plain_copies) plain_copies_due_ms = 0;
    std::vector<uint64_t> acks_again;
    if (ack_retry_ms && ack_retry_ms <= t) {
      acks_again.assign(acks_unconfirmed.begin(), acks_unconfirmed.end());
      acks_unconfirmed.clear();
      ack_retry_ms = 0;
    }
    lock.unlock();

    if (!acks_again.empty()) send_acks(acks_again);

    for (auto& task : work) task();
    // The user's own sends first: a send_text() waits for the relay's acknowledgement (its
    // "sent" tick) behind at most the rest of one batch of received envelopes.
    if (send) run_outbox();
    if (!envs.empty()) process_inbound(envs);
    // After the batch: every message of it that failed goes in one request per device.
    if (resend_asks_due_ms && now() >= resend_asks_due_ms) ask_resends();
    if (uint64_t n = history.shown_changes(); n != names_mark) {
      names_mark = n;
      if (!names_due_ms) names_due_ms = now() + kNamesDelayMs;
    }
    if (flush) flush_receipts();
    // A purge also folds the search index's recent part into the archive once it is large;
    // without edits, deletes or expiry none would be asked for while that part grew.
    if (uint64_t n = history.inserted();
        n - purge_mark >= static_cast<uint64_t>(search::kRecentFoldAt)) {
      purge_mark = n;
      schedule_purge();
    }
    sweep_expired();
    expire_typing();
    if (names_due_ms && now() >= names_due_ms) resolve_names();
    if (purge) {
      log_failure(profile->purge_search_index(), "purging the search index");
      // Deletions the purge left in the archive part wait at most a day (kArchiveEraseWithinMs)
      // for the purge that erases them, even when nothing else asks for one meanwhile.
      auto status = profile->search_index_status();
      if (status.ok() && status->pending_purge_archive > 0) {
        std::lock_guard relock(mu);
        uint64_t erase_at = now() + static_cast<uint64_t>(search::kArchiveEraseWithinMs) + 1000;
        if (purge_due_ms == 0 || erase_at < purge_due_ms) purge_due_ms = erase_at;
      }
    }
    if (rebuild) continue_rebuild();
    bool more_plain = plain_copies && continue_plain_copies();

    lock.lock();
    if (more_plain && !plain_copies_due_ms) plain_copies_due_ms = now();
  }
}

void Client::Impl::process_inbound(std::vector<wire::Envelope>& envs) {
  std::vector<uint64_t> acks;
  Effects effects;
  auto done_before = [&](const wire::Envelope& e) {
    return e.sequence() && done_sequences.count(e.sequence());
  };
  for (const auto& e : envs)
    if (done_before(e)) acks.push_back(e.sequence());
  if (!acks.empty()) {
    envs.erase(std::remove_if(envs.begin(), envs.end(), done_before), envs.end());
    if (envs.empty()) return send_acks(acks);
  }
  auto done = [&](uint64_t sequence) {
    if (!sequence) return;
    acks.push_back(sequence);
    if (!done_sequences.insert(sequence).second) return;
    done_order.push_back(sequence);
    if (done_order.size() > kDoneSequences) {
      done_sequences.erase(done_order.front());
      done_order.pop_front();
    }
  };
  // Fast path: the whole batch in one transaction (one disk sync). If any envelope fails,
  // nothing of the batch is kept and each is handled on its own below. An app call waiting
  // for the profile (a send, a history query) or a new send in the outbox cuts the batch
  // short: what is done commits, the rest goes back to the front of the queue, and the call
  // or the send does not wait for 256 messages.
  size_t applied = 0;
  Status batch = txn([&]() -> Status {
    for (applied = 0; applied < envs.size(); ++applied) {
      if (applied > 0 && (parts.mu.others_waiting() || outbox_kick.load())) break;
      SOTTO_TRY(decrypt_and_apply(envs[applied], effects));
    }
    changed_counts(effects);
    return {};
  });
  if (batch.ok() && applied > 0) inbound_stored_again();
  if (batch.ok()) {
    for (size_t i = 0; i < applied; ++i) done(envs[i].sequence());
    if (applied < envs.size()) {
      std::lock_guard lock(mu);
      for (size_t i = envs.size(); i-- > applied;) inbound.push_front(std::move(envs[i]));
    }
  } else {
    effects = {};
    for (auto& env : envs) {
      Effects one;
      Status s = txn([&]() -> Status {
        SOTTO_TRY(decrypt_and_apply(env, one));
        changed_counts(one);
        return {};
      });
      if (!s.ok() && is_crypto_failure(s.code())) {
        one = {};
        s = handle_failure(env, s.error(), one);
      }
      if (!s.ok() && is_storage_trouble(s.code())) {
        // A full disk, say: this envelope and every later one stay unacknowledged and wait,
        // in order, to be tried again (the relay keeps them too). Receiving resumes by itself
        // once the profile can write, without a reconnect.
        size_t at = static_cast<size_t>(&env - envs.data());
        inbound_backoff_ms = inbound_backoff_ms
                                 ? std::min(inbound_backoff_ms * 2, kInboundRetryMaxMs)
                                 : kInboundRetryFirstMs;
        inbound_retry_ms = now() + inbound_backoff_ms;
        {
          std::lock_guard lock(mu);  // `inbound` is shared with the loop thread
          for (size_t j = envs.size(); j-- > at;) inbound.push_front(std::move(envs[j]));
        }
        set_state(ConnectionState::kSyncing, "a received message could not be stored (" +
                                                 s.error().message + "); trying again in " +
                                                 std::to_string(inbound_backoff_ms) + " ms");
        break;
      }
      if (!s.ok()) {
        // Not storage trouble and not a crypto failure: left unacknowledged, so the relay
        // keeps it and pushes it again on the next connection.
        set_state(ConnectionState::kSyncing,
                  "a received message could not be stored: " + s.error().message);
        continue;
      }
      inbound_stored_again();
      done(env.sequence());
      for (auto& e : one.events) effects.events.push_back(std::move(e));
      effects.kick_outbox |= one.kick_outbox;
      effects.receipts_owed |= one.receipts_owed;
      effects.purge |= one.purge;
      std::move(one.removed_files.begin(), one.removed_files.end(),
                std::back_inserter(effects.removed_files));
    }
  }
  send_acks(acks);
  remove_files(effects.removed_files);
  emit(std::move(effects.events));
  if (effects.receipts_owed) owe_receipts();
  if (effects.kick_outbox) kick_outbox();
  if (effects.purge) schedule_purge();
}

void Client::Impl::inbound_stored_again() {
  if (!inbound_backoff_ms) return;
  inbound_backoff_ms = 0;
  inbound_retry_ms = 0;
  if (connection()) set_state(ConnectionState::kOnline, "received messages are stored again");
}

void Client::Impl::send_acks(const std::vector<uint64_t>& acks) {
  auto c = connection();
  if (!c) {
    // Offline: sent once there is a connection again (on_connected).
    std::lock_guard lock(mu);
    acks_unconfirmed.insert(acks.begin(), acks.end());
    return;
  }
  for (size_t i = 0; i < acks.size(); i += kMaxAckSequences) {
    auto req = make_request(wire::OP_ACK);
    std::vector<uint64_t> part(
        acks.begin() + static_cast<std::ptrdiff_t>(i),
        acks.begin() + static_cast<std::ptrdiff_t>(std::min(acks.size(), i + kMaxAckSequences)));
    for (uint64_t s : part) req.mutable_ack()->add_sequences(s);
    c->request(std::move(req), [this, part = std::move(part)](Result<wire::Response> r) {
      if (r.ok() && r->status() == wire::OK) {
        std::lock_guard lock(mu);
        ack_backoff_ms = 0;
        return;
      }
      // Refused (the relay's storage is down: UNAVAILABLE) or unanswered. The envelope stays
      // in the relay's queue while this connection lasts and comes again only on a later one,
      // perhaps after more of the conversation than the session can still tell a duplicate
      // from a message it cannot decrypt (which would reset the session): send it again.
      if (!r.ok() || r->status() == wire::UNAVAILABLE || r->status() == wire::RATE_LIMITED)
        ack_unconfirmed(part);
    });
  }
}

void Client::Impl::ack_unconfirmed(const std::vector<uint64_t>& sequences) {
  std::lock_guard lock(mu);
  if (stopping) return;
  acks_unconfirmed.insert(sequences.begin(), sequences.end());
  ack_backoff_ms =
      ack_backoff_ms ? std::min(ack_backoff_ms * 2, kAckRetryMaxMs) : kAckRetryFirstMs;
  if (!ack_retry_ms) ack_retry_ms = now() + ack_backoff_ms;
  cv.notify_one();
}

// Inside a transaction, mutex held. Errors: crypto failures of the envelope (the caller
// handles them outside the transaction) or storage errors.
Status Client::Impl::decrypt_and_apply(const wire::Envelope& env, Effects& fx) {
  if (env.sender_account_id().size() != 16 || env.sender_device_id() == 0)
    return make_error(ErrorCode::kInvalidMessage, "an envelope without a valid sender");
  Address from{to_hex(view_of(env.sender_account_id())), env.sender_device_id()};
  // An envelope that comes again because its ack was lost (the relay's store was down, its
  // node died) can come after more of the conversation than libsignal still tells from a
  // broken session, and decrypting it would reset a healthy one. A message envelope carries
  // its message's id: one already stored is done, without decrypting.
  SOTTO_TRY_ASSIGN(bool stored, history.has_message(from.account, view_of(env.message_id())));
  if (stored) return {};
  if (env.type() == wire::Envelope::SENDER_KEY) return decrypt_group_and_apply(from, env, fx);
  if (env.type() != wire::Envelope::MESSAGE && env.type() != wire::Envelope::PREKEY_MESSAGE)
    return {};  // an unknown kind from a newer sender: acknowledge and drop
  Ciphertext ct{env.type() == wire::Envelope::PREKEY_MESSAGE ? CiphertextType::kPreKey
                                                             : CiphertextType::kSignal,
                bytes_of(env.ciphertext())};
  std::optional<Error> apply_error;
  auto plain = parts.crypto.decrypt(from, ct, [&](ByteView plaintext) -> Status {
    content::Content c;
    if (Status read = parse_from_peer(plaintext, c); !read.ok()) {
      // Authentic but unreadable: nothing to apply, and nothing to ask again for.
      diagnose("a message from device " + std::to_string(from.device_id) + " of " +
               from.account + " was dropped: " + read.error().message);
      return {};
    }
    Status s = apply_content(from, env, c, fx);
    if (!s.ok()) apply_error = s.error();
    return s;
  });
  if (!plain.ok()) {
    // A storage failure inside the hook must not pass for a crypto failure.
    if (apply_error) return std::move(*apply_error);
    return std::move(plain).error();
  }
  return {};
}

Status Client::Impl::apply_content(const Address& from, const wire::Envelope& env,
                                   const content::Content& c, Effects& fx) {
  const std::string& me = parts.crypto.identity().account;
  bool from_self = from.account == me;
  switch (c.body_case()) {
    case content::Content::kDataMessage:
      if (from_self) return {};  // own devices send transcripts, not data messages
      return apply_data(from, env, c.data_message(), fx);
    case content::Content::kReceipt:
      return apply_receipt(from, c.receipt(), fx);
    case content::Content::kSync:
      if (!from_self) return {};  // only an account's own devices may sync it
      return apply_sync(from, env, c.sync(), fx);
    case content::Content::kSessionReset:
      return apply_session_reset(from, c.session_reset(), fx);
    case content::Content::kGroupUpdate:
      return apply_group_update(from, c.group_update(), serialize(c.group_update()),
                                env.server_timestamp_ms(), fx);
    case content::Content::kSenderKeyDistribution:
      return apply_sender_key_distribution(from, c.sender_key_distribution(), fx);
    case content::Content::kTyping:
      if (c.typing().group_id().empty()) apply_typing(from, c.typing(), fx);
      return {};
    default:
      return {};  // bodies from newer versions
  }
}

Status Client::Impl::apply_receipt(const Address& from, const content::Receipt& r, Effects& fx) {
  MessageStatus status;
  if (r.type() == content::Receipt::DELIVERED)
    status = MessageStatus::kDelivered;
  else if (r.type() == content::Receipt::READ)
    status = MessageStatus::kRead;
  else
    return {};
  const std::string& me = parts.crypto.identity().account;
  uint64_t at = r.timestamp_ms() ? r.timestamp_ms() : now();
  // Only an account a message went to can have it: its 1:1 peer, or a member of its group.
  auto sent_to = [&](ConversationId conv) -> Result<bool> {
    SOTTO_TRY_ASSIGN(auto c, history.conversation(conv));
    if (!c) return false;
    if (c->kind == ConversationKind::kDirect) return c->peer == from.account;
    return history.is_group_member(conv, from.account);
  };
  for (const auto& id : r.message_ids()) {
    if (id.size() != 16) continue;
    SOTTO_TRY_ASSIGN(auto m, history.find_message(me, view_of(id)));
    if (!m || !m->message.outgoing) continue;
    if (from.account == me) continue;  // own devices do not deliver to themselves
    SOTTO_TRY_ASSIGN(bool recipient, sent_to(m->message.conversation));
    if (!recipient) continue;
    SOTTO_TRY_ASSIGN(bool changed, history.record_receipt(m->row, from.account, status, at));
    if (changed) {
      Receipt rec{from.account, status, at};
      ConversationId conv = m->message.conversation;
      std::string mid = m->message.id;
      fx.events.push_back([conv, mid, rec](ClientListener& l) { l.on_receipt(conv, mid, rec); });
      // A group message's "delivered to X of Y, read by Z of Y" moved.
      if (m->message.recipients > 1) fx.counts_moved.insert(m->row);
    }
    SOTTO_TRY_ASSIGN(bool raised, history.raise_status(m->row, status));
    if (raised) {
      ConversationId conv = m->message.conversation;
      std::string mid = m->message.id;
      fx.events.push_back(
          [conv, mid, status](ClientListener& l) { l.on_message_status(conv, mid, status); });
    }
  }
  return {};
}

void Client::Impl::changed_counts(Effects& fx) {
  for (int64_t row : fx.counts_moved) emit_changed(row, fx);
  fx.counts_moved.clear();
}

Status Client::Impl::enqueue_sync_reply(const Address& device, const content::Content& reply,
                                        Effects& fx) {
  OutboxItem item;
  item.message_id = new_message_id(now());
  item.kind = OutboxKind::kSyncReply;
  item.target = device.account;
  item.target_device = device.device_id;
  item.content = serialize(reply);
  SOTTO_TRY(history.enqueue(item, now()));
  fx.kick_outbox = true;
  return {};
}

Status Client::Impl::apply_sync(const Address& from, const wire::Envelope& env,
                                const content::Sync& s, Effects& fx) {
  switch (s.kind_case()) {
    case content::Sync::kSent: {
      // What another device of this account sent in a 1:1 conversation (group messages reach
      // own devices under the sender key instead).
      const auto& t = s.sent();
      const auto& dm = t.message();
      if (t.destination_account_id().size() != 16 || dm.message_id().size() != 16) return {};
      std::string dest = to_hex(view_of(t.destination_account_id()));
      SOTTO_TRY(history.upsert_contact(dest, t.destination_handle(), {}, now()));
      SOTTO_TRY_ASSIGN(auto conv, history.direct_conversation(dest, now()));
      uint64_t sort_ms = env.server_timestamp_ms() ? env.server_timestamp_ms() : now();
      SOTTO_TRY_ASSIGN(uint64_t first_ms,
                       history.take_failed_position(from.account, view_of(dm.message_id())));
      if (first_ms) sort_ms = first_ms;
      return apply_message(conv, from, true, dm, sort_ms, 1, fx);
    }
    case content::Sync::kRead: {
      for (const auto& rec : s.read().records()) {
        if (rec.sender_account_id().size() != 16 || rec.message_id().size() != 16) continue;
        SOTTO_TRY_ASSIGN(auto m, history.find_message(to_hex(view_of(rec.sender_account_id())),
                                                      view_of(rec.message_id())));
        if (!m) continue;
        SOTTO_TRY_ASSIGN(bool changed, history.mark_one_read(m->row));
        if (changed) {
          ConversationId conv = m->message.conversation;
          std::string mid = m->message.id;
          fx.events.push_back([conv, mid](ClientListener& l) {
            l.on_message_status(conv, mid, MessageStatus::kSeen);
          });
        }
      }
      return {};
    }
    case content::Sync::kRequest: {
      if (s.request().kind() == content::SyncRequest::GROUPS) return reply_groups(from, fx);
      if (s.request().kind() != content::SyncRequest::CONTACTS) return {};
      SOTTO_TRY_ASSIGN(auto list, history.contacts());
      content::Content reply;
      auto* contacts = reply.mutable_sync()->mutable_contacts();
      for (const auto& k : list) {
        auto* c = contacts->add_contacts();
        Bytes id;
        from_hex(k.account, id);
        c->set_account_id(str_of(id));
        c->set_handle(k.handle);
        SOTTO_TRY_ASSIGN(auto key, parts.crypto.peer_identity(k.account));
        if (key) c->set_identity_key(str_of(*key));
      }
      contacts->set_complete(true);
      return enqueue_sync_reply(from, reply, fx);
    }
    case content::Sync::kGroups: {
      for (const auto& g : s.groups().groups()) SOTTO_TRY(apply_group_sync(g, fx));
      return {};
    }
    case content::Sync::kContacts: {
      for (const auto& c : s.contacts().contacts()) {
        if (c.account_id().size() != 16) continue;
        SOTTO_TRY(history.upsert_contact(to_hex(view_of(c.account_id())), c.handle(),
                                         view_of(c.identity_key()), now()));
      }
      return {};
    }
    default:
      return {};
  }
}

Status Client::Impl::apply_session_reset(const Address& from, const content::SessionReset& r,
                                         Effects& fx) {
  // libsignal already replaced the session with the one this PreKey message started; resend
  // what the peer could not read, over it.
  const std::string& me = parts.crypto.identity().account;
  uint64_t t = now();
  int count = 0;
  // Resent in the order this device wrote them, whatever the order asked: the receiver places
  // each at its original relay time, and two sent within one millisecond keep their order
  // only by arriving in it.
  std::vector<StoredMessage> asked;
  for (const auto& id : r.failed_message_ids()) {
    if (id.size() != 16 || ++count > 100) continue;
    SOTTO_TRY_ASSIGN(auto m, history.find_message(me, view_of(id)));
    if (m) asked.push_back(std::move(*m));
  }
  std::sort(asked.begin(), asked.end(),
            [](const StoredMessage& a, const StoredMessage& b) { return a.row < b.row; });
  for (const StoredMessage& m : asked) {
    if (!m.message.outgoing || m.extra.empty() || m.message.deleted) continue;
    if (m.message.sent_ms + kResendWindow < t) continue;
    content::DataMessage dm;
    if (!dm.ParseFromArray(m.extra.data(), static_cast<int>(m.extra.size()))) continue;
    if (dm.has_group()) {
      // Only to a current member; and its next group message brings it the sender key again.
      SOTTO_TRY_ASSIGN(auto g, history.group(m.message.conversation));
      if (!g || !g->member) continue;
      SOTTO_TRY_ASSIGN(bool member, history.is_group_member(g->conversation, from.account));
      if (!member) continue;
      SOTTO_TRY_ASSIGN(auto q,
                       parts.db.query("DELETE FROM sender_key_holders WHERE "
                                      "conversation_id = ? AND account = ? AND device = ?"));
      q.bind(1, g->conversation);
      q.bind_text(2, from.account);
      q.bind(3, int64_t{from.device_id});
      SOTTO_TRY(q.run());
    }
    content::Content c;
    if (from.account == me && !dm.has_group()) {
      // Another device of this account: it takes a 1:1 message of ours only as the
      // transcript it missed (a data message from its own account is not for it).
      SOTTO_TRY_ASSIGN(auto conv, history.conversation(m.message.conversation));
      if (!conv || conv->peer.empty()) continue;
      c = sent_transcript(*conv, std::move(dm), m.message.sent_ms);
    } else {
      *c.mutable_data_message() = std::move(dm);
    }
    OutboxItem item;
    item.message_id = new_message_id(t);
    item.kind = OutboxKind::kResend;
    item.target = from.account;
    item.target_device = from.device_id;
    item.content = serialize(c);
    item.message = m.row;
    SOTTO_TRY(history.enqueue(item, t));
    fx.kick_outbox = true;
  }
  return {};
}

// Outside any transaction: what to do with an envelope that did not decrypt.
Status Client::Impl::handle_failure(const wire::Envelope& env, const Error& err, Effects& fx) {
  if (env.sender_account_id().size() != 16 || env.sender_device_id() == 0) return {};
  Address from{to_hex(view_of(env.sender_account_id())), env.sender_device_id()};
  if (err.code == ErrorCode::kDuplicateMessage) return {};  // already stored once
  // Typing and the like are not worth a repair: the next real message will do.
  if (env.ephemeral()) return {};
  if (env.type() == wire::Envelope::SENDER_KEY) {
    // The pairwise session is fine; this device lacks (or lost) the sender's group key. The
    // message is asked for again over the pairwise session, with the others that failed,
    // after this batch (ask_resends()), and shown where it was when it comes back.
    uint64_t t = now();
    SOTTO_TRY(txn([&] {
      return history.record_failed_envelope(from.account, from.device_id, view_of(env.message_id()),
                                            env.server_timestamp_ms(), false, t, kResendWindow);
    }));
    resend_asks_due_ms = t;  // a device asked less than a minute ago waits its turn there
    return {};
  }
  if (err.code == ErrorCode::kUntrustedIdentity) return hold_untrusted(from, env, fx);
  std::lock_guard lock(parts.mu);
  uint64_t t = now();
  return parts.crypto.transaction([&]() -> Status {
    SOTTO_TRY_ASSIGN(auto last, history.last_reset(from.account, from.device_id));
    bool recent = last && *last + kResetInterval > t;
    if (!recent) {
      // Throw our side away; the reset (a PreKey message) starts a new session.
      SOTTO_TRY(parts.crypto.delete_session(from));
      SOTTO_TRY(history.record_reset(from.account, from.device_id, t));
      SOTTO_TRY_ASSIGN(auto conv, history.direct_conversation(from.account, t));
      SOTTO_TRY(add_notice(conv,
                           "A message could not be decrypted. The secure session was "
                           "reset and the sender was asked to send it again.",
                           env.server_timestamp_ms(), fx));
    }
    // Within the hour a reset was already made: only ask for this message again.
    SOTTO_TRY(history.record_failed_envelope(from.account, from.device_id,
                                             view_of(env.message_id()), env.server_timestamp_ms(),
                                             true, t, kResendWindow));
    content::Content c;
    c.mutable_session_reset()->add_failed_message_ids(env.message_id());
    c.mutable_session_reset()->set_timestamp_ms(t);
    OutboxItem item;
    item.message_id = new_message_id(t);
    item.kind = OutboxKind::kSessionReset;
    item.target = from.account;
    item.target_device = from.device_id;
    item.content = serialize(c);
    SOTTO_TRY(history.enqueue(item, t));
    fx.kick_outbox = true;
    return {};
  });
}

void Client::Impl::ask_resends() {
  // Each id is asked for once; the interval only gathers what fails over a few batches (a
  // burst split by the worker's batching) into one request. A minute made a burst that
  // straddled two batches wait that long for its second half.
  constexpr uint64_t kAskInterval = 2'000;
  resend_asks_due_ms = 0;
  uint64_t t = now();
  auto later = [&](uint64_t at) {
    if (!resend_asks_due_ms || at < resend_asks_due_ms) resend_asks_due_ms = at;
  };
  auto devices = locked([&] { return history.devices_owing_asks(); });
  if (!devices.ok()) {
    diagnose("could not read the messages to ask for again: " + devices.error().message);
    return later(t + kAskInterval);
  }
  bool asked = false;
  for (const auto& [account, device] : *devices) {
    auto key = std::make_pair(account, device);
    if (auto it = group_resend_asked_ms.find(key);
        it != group_resend_asked_ms.end() && it->second + kAskInterval > t) {
      later(it->second + kAskInterval);
      continue;
    }
    Status s = txn([&]() -> Status {
      SOTTO_TRY_ASSIGN(auto ids, history.take_unasked(account, device, 100));
      if (ids.empty()) return {};
      content::Content c;
      for (const auto& id : ids) c.mutable_session_reset()->add_failed_message_ids(str_of(id));
      c.mutable_session_reset()->set_timestamp_ms(t);
      OutboxItem item;
      item.message_id = new_message_id(t);
      item.kind = OutboxKind::kSessionReset;
      item.target = account;
      item.target_device = device;
      item.content = serialize(c);
      SOTTO_TRY(history.enqueue(item, t));
      asked = true;
      return {};
    });
    if (!s.ok()) {
      diagnose("could not ask device " + std::to_string(device) + " of " + account +
               " for messages again: " + s.error().message);
      later(t + kAskInterval);
      continue;
    }
    group_resend_asked_ms[key] = t;
    // The next round: what did not fit in this request, and what fails meanwhile.
    later(t + kAskInterval);
  }
  if (asked) kick_outbox();
}

Status Client::Impl::add_notice(ConversationId conv, const std::string& text, uint64_t sort_ms,
                                Effects& fx) {
  NewMessage n;
  n.conversation = conv;
  n.message_id = new_message_id(now());
  n.sender = parts.crypto.identity().account;
  n.sender_device = parts.crypto.identity().device_id;
  n.kind = MessageKind::kNotice;
  n.body = text;
  n.sent_ms = now();
  n.sort_ms = sort_ms ? sort_ms : now();
  n.status = MessageStatus::kSeen;
  SOTTO_TRY_ASSIGN(auto row, history.insert_message(n));
  if (!row) return {};
  SOTTO_TRY_ASSIGN(auto stored, history.message(*row));
  if (stored) {
    Message msg = stored->message;
    fx.events.push_back([msg](ClientListener& l) { l.on_message(msg); });
  }
  return {};
}

Status Client::Impl::hold_untrusted(const Address& from, const wire::Envelope& env, Effects& fx) {
  std::lock_guard lock(parts.mu);
  Bytes new_key;
  if (env.type() == wire::Envelope::PREKEY_MESSAGE) {
    auto k = parts.crypto.prekey_message_identity(view_of(env.ciphertext()));
    if (k.ok()) new_key = std::move(*k);
  }
  bool first = false;
  SOTTO_TRY(parts.crypto.transaction([&]() -> Status {
    SOTTO_TRY_ASSIGN(auto held, history.held_envelopes(from.account));
    first = held.empty();
    SOTTO_TRY(history.hold_envelope(from.account, serialize(env), now()));
    if (first) {
      SOTTO_TRY_ASSIGN(auto conv, history.direct_conversation(from.account, now()));
      SOTTO_TRY(add_notice(conv,
                           "The safety number with this contact changed. Messages from them "
                           "are kept unread until you accept the new safety number.",
                           env.server_timestamp_ms(), fx));
    }
    return {};
  }));
  if (first && !new_key.empty()) identity_changed_event(from.account, new_key, fx);
  return {};
}

// Mutex held.
void Client::Impl::identity_changed_event(const std::string& account, const Bytes& new_key,
                                          Effects& fx) {
  const auto& id = parts.crypto.identity();
  auto sn = keys::safety_number(parts.ctx, id.account, id.public_key, account, new_key);
  auto contact = history.contact(account);
  IdentityChange change;
  change.account = account;
  if (contact.ok() && *contact) change.handle = (*contact)->handle;
  if (sn.ok()) change.safety_number = SafetyNumber{sn->digits, sn->scannable};
  fx.events.push_back([change](ClientListener& l) { l.on_identity_changed(change); });
}

void Client::Impl::flush_receipts() {
  for (int round = 0; round < 50; ++round) {
    bool more = false;
    Status s = txn([&]() -> Status {
      SOTTO_TRY_ASSIGN(auto owed, history.pending_receipts(1000));
      more = owed.size() == 1000;
      std::map<std::pair<std::string, int>, std::vector<PendingReceipt>> groups;
      for (auto& r : owed) groups[{r.author, r.type}].push_back(std::move(r));
      for (auto& [key, list] : groups) {
        for (size_t i = 0; i < list.size(); i += 100) {
          content::Content c;
          auto* rec = c.mutable_receipt();
          rec->set_type(static_cast<content::Receipt::Type>(key.second));
          rec->set_timestamp_ms(now());
          for (size_t j = i; j < std::min(list.size(), i + 100); ++j) {
            rec->add_message_ids(str_of(list[j].message_id));
            SOTTO_TRY(history.remove_pending_receipt(list[j]));
          }
          OutboxItem item;
          item.message_id = new_message_id(now());
          item.kind = OutboxKind::kReceipt;
          item.target = key.first;
          item.content = serialize(c);
          SOTTO_TRY(history.enqueue(item, now()));
        }
      }
      return {};
    });
    if (!s.ok() || !more) break;
  }
  kick_outbox();
}

Status Client::Impl::accept_identity(const std::string& account) {
  SOTTO_TRY(parse_account(account));
  SOTTO_TRY(txn([&]() -> Status {
    SOTTO_TRY(parts.crypto.forget_identity(account));
    SOTTO_TRY(history.hold_outbox(account, false));
    // The group messages and changes the member missed while its number was in doubt, in the
    // order they were sent, pairwise to all its devices; then the groups' current states.
    uint64_t t = now();
    SOTTO_TRY_ASSIGN(auto owed, history.take_owed_group_sends(
                                    account, t > kResendWindow ? t - kResendWindow : 0));
    for (auto& o : owed) {
      OutboxItem item;
      item.message_id = new_message_id(t);
      item.kind = OutboxKind::kResend;
      item.target = account;
      item.content = std::move(o.content);
      SOTTO_TRY(history.enqueue(item, t));
    }
    return resend_group_states(account);
  }));
  post_task([this, account] {
    auto held = locked([&] { return history.held_envelopes(account); });
    if (!held.ok()) return;
    Effects fx;
    std::vector<uint64_t> acks;
    for (const auto& h : *held) {
      wire::Envelope env;
      if (!env.ParseFromArray(h.envelope.data(), static_cast<int>(h.envelope.size()))) continue;
      Effects one;
      Status s = txn([&]() -> Status {
        SOTTO_TRY(decrypt_and_apply(env, one));
        changed_counts(one);
        return history.remove_held(h.id);
      });
      if (!s.ok() && is_crypto_failure(s.code())) {
        one = {};
        s = handle_failure(env, s.error(), one);
        if (s.ok()) s = txn([&] { return history.remove_held(h.id); });
        log_failure(s, "handling a held message that did not decrypt");
      }
      for (auto& e : one.events) fx.events.push_back(std::move(e));
      fx.receipts_owed |= one.receipts_owed;
      if (s.ok()) remove_files(one.removed_files);
    }
    emit(std::move(fx.events));
    if (fx.receipts_owed) owe_receipts();
    kick_outbox();
  });
  return {};
}

}  // namespace sotto
