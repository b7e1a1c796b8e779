// sotto::Client, messages: queueing them (1:1 and groups), edits, deletes for everyone,
// disappearing timers, reading, typing and presence.
#include "ClientImpl.h"

namespace sotto {

using namespace std::chrono_literals;

namespace {

constexpr uint64_t kEditWindowMs = 24 * 3600'000;
constexpr uint64_t kTypingRepeatMs = 10'000;  // protocol.md: STARTED is repeated every 10 s
constexpr uint64_t kTypingExpiryMs = 15'000;  // ... and a STARTED older than 15 s is stale
constexpr size_t kMaxAttachments = 32;
constexpr size_t kMaxPresenceWatch = 256;

std::string describe_timer(uint32_t seconds) {
  if (seconds == 0) return "off";
  if (seconds % 86400 == 0) return std::to_string(seconds / 86400) + " day(s)";
  if (seconds % 3600 == 0) return std::to_string(seconds / 3600) + " hour(s)";
  if (seconds % 60 == 0) return std::to_string(seconds / 60) + " minute(s)";
  return std::to_string(seconds) + " second(s)";
}

std::string attachment_names(const content::DataMessage& dm) {
  std::string names;
  for (const auto& a : dm.attachments())
    if (!a.file_name().empty()) names += a.file_name() + "\n";
  if (!names.empty()) names.pop_back();
  return names;
}

}  // namespace

content::Content sent_transcript(const Conversation& conv, content::DataMessage dm,
                                 uint64_t sent_ms) {
  content::Content own;
  auto* sent = own.mutable_sync()->mutable_sent();
  Bytes peer;
  from_hex(conv.peer, peer);
  sent->set_destination_account_id(str_of(peer));
  if (conv.title.size() > 1 && conv.title[0] == '@')
    sent->set_destination_handle(conv.title.substr(1));
  sent->set_message_id(dm.message_id());
  sent->set_timestamp_ms(sent_ms);
  *sent->mutable_message() = std::move(dm);
  return own;
}

// ---- queueing ----

Status Client::Impl::queue_data_locked(ConversationId conversation, Outgoing& out,
                                       const AccountRow& me, int64_t* row_out) {
  SOTTO_TRY_ASSIGN(auto conv, history.conversation(conversation));
  if (!conv)
    return make_error(ErrorCode::kNotFound, "no conversation " + std::to_string(conversation));
  auto& dm = out.dm;
  uint64_t t = dm.timestamp_ms() ? dm.timestamp_ms() : now();
  dm.set_timestamp_ms(t);
  if (dm.message_id().empty()) dm.set_message_id(str_of(new_message_id(t)));
  if (!dm.expire_timer_update()) dm.set_expire_timer_s(conv->expire_timer_s);

  uint32_t recipients = 1;
  std::optional<GroupRow> group;
  if (conv->kind == ConversationKind::kGroup) {
    SOTTO_TRY_ASSIGN(group, history.group(conversation));
    if (!group || !group->member)
      return make_error(ErrorCode::kForbidden,
                        "this account is no longer a member of the group; nothing was sent");
    dm.mutable_group()->set_group_id(str_of(group->group_id));
    dm.mutable_group()->set_revision(group->revision);
    SOTTO_TRY_ASSIGN(recipients, history.group_member_count(conversation, me.account));
  }

  std::optional<int64_t> row;
  if (out.history) {
    NewMessage m;
    m.conversation = conversation;
    m.message_id = bytes_of(dm.message_id());
    m.sender = me.account;
    m.sender_device = me.device_id;
    m.outgoing = true;
    m.body = dm.text();
    m.sent_ms = t;
    m.sort_ms = t;
    m.status = MessageStatus::kPending;
    m.extra = serialize(dm);
    m.recipients = recipients;
    m.attachment_names = attachment_names(dm);
    m.has_attachment = dm.attachments_size() > 0;
    m.expire_timer_s = dm.expire_timer_s();
    if (group) m.group_revision = group->revision;
    // On the sender's devices the countdown starts when it is sent.
    if (dm.expire_timer_s()) m.expires_ms = t + uint64_t{dm.expire_timer_s()} * 1000;
    SOTTO_TRY_ASSIGN(row, history.insert_message(m));
    if (!row) return make_error(ErrorCode::kInternal, "a fresh message id collided");
    for (size_t i = 0; i < out.files.size(); ++i) {
      const auto& [pointer, blob] = out.files[i];
      SOTTO_TRY(history.add_attachment(*row, static_cast<uint32_t>(i), serialize(pointer)));
      if (blob) SOTTO_TRY(history.add_attachment_blob(*row, static_cast<uint32_t>(i), *blob));
    }
    if (row_out) *row_out = *row;
  }

  content::Content c;
  *c.mutable_data_message() = dm;
  OutboxItem item;
  item.message_id = bytes_of(dm.message_id());
  if (!out.history) item.message_id = new_message_id(t);  // edits and deletes: fresh envelopes
  item.content = serialize(c);
  item.urgent = true;
  if (row) item.message = *row;
  if (group) {
    item.kind = OutboxKind::kGroupData;
    item.group_conv = conversation;
  } else {
    content::Content own = sent_transcript(*conv, dm, t);
    item.kind = OutboxKind::kData;
    item.target = conv->peer;
    item.own_content = serialize(own);
  }
  SOTTO_TRY(history.enqueue(item, now()));
  return {};
}

Result<std::string> Client::Impl::queue_data(ConversationId conversation, Outgoing out) {
  SOTTO_TRY_ASSIGN(auto me, registered_account());
  SOTTO_TRY(txn([&] { return queue_data_locked(conversation, out, me, nullptr); }));
  kick_outbox();
  return to_hex(view_of(out.dm.message_id()));
}

Result<std::string> Client::Impl::send_text(ConversationId conversation, const std::string& text) {
  if (text.empty())
    return make_error(ErrorCode::kInvalidArgument, "the message is empty; nothing was sent");
  if (!is_valid_utf8(text))
    return make_error(ErrorCode::kInvalidArgument,
                      "the text is not valid UTF-8; nothing was sent (convert it to UTF-8)");
  if (text.size() > kMaxText)
    return make_error(ErrorCode::kTooLarge,
                      "the text is " + std::to_string(text.size()) +
                          " bytes; at most 16 KiB fit in a message (send longer text as a file)");
  Outgoing out;
  out.dm.set_text(text);
  auto id = queue_data(conversation, std::move(out));
  if (id.ok())
    post_task([this, conversation] {
      if (typing_sent_ms.erase(conversation)) send_typing(conversation, false);
      typing_until_ms.erase(conversation);
    });
  return id;
}

Status Client::Impl::edit_message(ConversationId conversation, const std::string& message_id,
                                  const std::string& text) {
  SOTTO_TRY_ASSIGN(Bytes id, parse_message_id(message_id));
  if (text.empty())
    return make_error(ErrorCode::kInvalidArgument,
                      "the new text is empty; delete the message instead");
  if (text.size() > kMaxText)
    return make_error(ErrorCode::kTooLarge, "at most 16 KiB of text fit in a message");
  if (!is_valid_utf8(text))
    return make_error(ErrorCode::kInvalidArgument,
                      "the new text is not valid UTF-8; the message was not changed (convert it "
                      "to UTF-8)");
  SOTTO_TRY_ASSIGN(auto me, registered_account());
  Effects fx;
  SOTTO_TRY(txn([&]() -> Status {
    SOTTO_TRY_ASSIGN(auto m, history.find_message(me.account, id));
    if (!m || m->message.conversation != conversation || m->message.kind != MessageKind::kText)
      return make_error(ErrorCode::kNotFound,
                        "no message " + message_id + " of this account in that conversation");
    if (m->message.deleted)
      return make_error(ErrorCode::kInvalidState, "the message was deleted; it cannot be edited");
    if (m->message.sent_ms + kEditWindowMs < now())
      return make_error(ErrorCode::kInvalidState,
                        "messages can be edited for 24 hours after they were sent");
    uint64_t t = now();
    Outgoing out;
    out.history = false;
    out.dm.set_edit_of(str_of(id));
    out.dm.set_text(text);
    out.dm.set_timestamp_ms(t);
    SOTTO_TRY(queue_data_locked(conversation, out, me, nullptr));
    // The resend copy carries the new text, so a resend never brings the old one back.
    content::DataMessage copy;
    if (!m->extra.empty() &&
        copy.ParseFromArray(m->extra.data(), static_cast<int>(m->extra.size())))
      copy.set_text(text);
    SOTTO_TRY(history.edit_message(m->row, text, t, m->extra.empty() ? Bytes() : serialize(copy)));
    emit_changed(m->row, fx);
    return {};
  }));
  emit(std::move(fx.events));
  schedule_purge();
  kick_outbox();
  return {};
}

Status Client::Impl::delete_for_everyone(ConversationId conversation,
                                         const std::string& message_id) {
  SOTTO_TRY_ASSIGN(Bytes id, parse_message_id(message_id));
  SOTTO_TRY_ASSIGN(auto me, registered_account());
  uint64_t window = static_cast<uint64_t>(
      std::chrono::duration_cast<std::chrono::milliseconds>(options.delete_window).count());
  Effects fx;
  std::vector<StoredAttachment> files;
  SOTTO_TRY(txn([&]() -> Status {
    SOTTO_TRY_ASSIGN(auto m, history.find_message(me.account, id));
    if (!m || m->message.conversation != conversation || m->message.kind != MessageKind::kText)
      return make_error(ErrorCode::kNotFound,
                        "no message " + message_id + " of this account in that conversation");
    if (m->message.deleted) return {};
    if (m->message.sent_ms + window < now())
      return make_error(ErrorCode::kInvalidState,
                        "this message is too old to delete for everyone (the limit is " +
                            std::to_string(window / 3600'000) + " hours)");
    Outgoing out;
    out.history = false;
    out.dm.set_delete_of(str_of(id));
    SOTTO_TRY(queue_data_locked(conversation, out, me, nullptr));
    SOTTO_TRY_ASSIGN(files, history.delete_message_content(m->row));
    emit_changed(m->row, fx);
    return {};
  }));
  remove_files(files);
  emit(std::move(fx.events));
  schedule_purge();
  kick_outbox();
  return {};
}

Status Client::Impl::set_disappearing_timer(ConversationId conversation, uint32_t seconds) {
  if (seconds > 365u * 86400)
    return make_error(ErrorCode::kInvalidArgument, "a disappearing timer is at most one year");
  SOTTO_TRY_ASSIGN(auto me, registered_account());
  Effects fx;
  SOTTO_TRY(txn([&]() -> Status {
    SOTTO_TRY_ASSIGN(auto conv, history.conversation(conversation));
    if (!conv)
      return make_error(ErrorCode::kNotFound, "no conversation " + std::to_string(conversation));
    if (conv->expire_timer_s == seconds) return {};
    Outgoing out;
    out.history = false;
    out.dm.set_expire_timer_update(true);
    out.dm.set_expire_timer_s(seconds);
    SOTTO_TRY(queue_data_locked(conversation, out, me, nullptr));
    SOTTO_TRY(history.set_expire_timer(conversation, seconds));
    SOTTO_TRY(add_notice(conversation,
                         seconds ? "You set disappearing messages to " + describe_timer(seconds)
                                 : "You turned disappearing messages off",
                         0, fx));
    fx.events.push_back(
        [conversation](ClientListener& l) { l.on_conversation_changed(conversation); });
    return {};
  }));
  emit(std::move(fx.events));
  kick_outbox();
  return {};
}

Status Client::Impl::mark_read(ConversationId conversation, const std::string& up_to) {
  SOTTO_TRY_ASSIGN(Bytes id, parse_message_id(up_to));
  SOTTO_TRY_ASSIGN(auto account, registered_account());
  uint64_t t = now();
  bool receipts = false;
  Effects fx;
  SOTTO_TRY(txn([&]() -> Status {
    SOTTO_TRY_ASSIGN(auto m, history.find_in_conversation(conversation, id));
    if (!m)
      return make_error(ErrorCode::kNotFound,
                        "no message " + up_to + " in conversation " + std::to_string(conversation));
    SOTTO_TRY_ASSIGN(auto read, history.mark_read(conversation, m->row));
    if (read.empty()) return {};
    content::Content own;
    auto* read_state = own.mutable_sync()->mutable_read();
    for (const auto& r : read) {
      if (r.message.kind != MessageKind::kText) continue;
      // A disappearing message starts its countdown when it is first shown.
      if (r.message.expire_timer_s) {
        SOTTO_TRY(history.set_expiry(r.row, t + uint64_t{r.message.expire_timer_s} * 1000));
        emit_changed(r.row, fx);
      }
      if (account.read_receipts) {
        SOTTO_TRY(history.add_pending_receipt(
            PendingReceipt{r.message.sender, content::Receipt::READ, r.message_id, t}));
        receipts = true;
      }
      auto* rec = read_state->add_records();
      Bytes sender;
      from_hex(r.message.sender, sender);
      rec->set_sender_account_id(str_of(sender));
      rec->set_message_id(str_of(r.message_id));
      rec->set_read_at_ms(t);
      if (read_state->records_size() == 100) {
        SOTTO_TRY(enqueue_own_sync(own, t));
        read_state->clear_records();
      }
    }
    if (read_state->records_size() > 0) SOTTO_TRY(enqueue_own_sync(own, t));
    return {};
  }));
  emit(std::move(fx.events));
  if (receipts) owe_receipts();
  kick_outbox();
  return {};
}

Status Client::Impl::enqueue_own_sync(const content::Content& c, uint64_t t) {
  OutboxItem item;
  item.message_id = new_message_id(t);
  item.kind = OutboxKind::kOwnSync;
  item.content = serialize(c);
  SOTTO_TRY(history.enqueue(item, t));
  return {};
}

// ---- receiving ----

Status Client::Impl::apply_data(const Address& from, const wire::Envelope& env,
                                const content::DataMessage& dm, Effects& fx) {
  if (dm.message_id().size() != 16) return {};
  const std::string& me = parts.crypto.identity().account;
  bool from_self = from.account == me;
  uint64_t sort_ms = env.server_timestamp_ms() ? env.server_timestamp_ms() : now();
  // A message asked for again goes where its first copy was, not after what came meanwhile.
  SOTTO_TRY_ASSIGN(uint64_t first_ms,
                   history.take_failed_position(from.account, view_of(dm.message_id())));
  if (first_ms) sort_ms = first_ms;
  if (dm.has_group()) {
    SOTTO_TRY_ASSIGN(auto g, history.group_by_id(view_of(dm.group().group_id())));
    if (!g) {
      // A group this device has not heard of: on a newly linked device, the account's other
      // device may not have answered with its groups yet. Kept until it does (bounded).
      if (dm.group().group_id().size() != 32) return {};
      HeldGroupMessage held{from.account, from.device_id, sort_ms, serialize(dm)};
      SOTTO_TRY(history.hold_group_message(view_of(dm.group().group_id()), held, now()));
      return {};
    }
    // Sent at a revision that had this account: it is a member, or it was removed after the
    // sender sent (the sender had not seen the removal yet), and the message is shown like any
    // other. A member gets exactly what was sent while it was one.
    uint32_t revision = dm.group().revision();
    bool to_member = g->member || (revision != 0 && revision < g->left_revision);
    bool sender_is_member = false;
    if (to_member) {
      SOTTO_TRY_ASSIGN(sender_is_member, history.is_group_member(g->conversation, from.account));
    }
    if (!to_member || !sender_is_member) {
      // The sender knows a newer state of the group, in which it (or this account) may have
      // been added: the update that says so can come after the first messages (the admin
      // sends it to each member in turn). Kept until this device has that revision (bounded),
      // then applied again; a sender that is not a member at its own revision is not believed.
      if (revision > g->revision) {
        HeldGroupMessage held{from.account, from.device_id, sort_ms, serialize(dm)};
        SOTTO_TRY(history.hold_group_message(view_of(dm.group().group_id()), held, now()));
      }
      return {};
    }
    SOTTO_TRY_ASSIGN(uint32_t recipients, history.group_member_count(g->conversation, me));
    return apply_message(g->conversation, from, from_self, dm, sort_ms, recipients, fx);
  }
  if (from_self) return {};  // own devices send 1:1 messages as transcripts
  SOTTO_TRY(history.upsert_contact(from.account, "", {}, now()));
  SOTTO_TRY_ASSIGN(auto conv, history.direct_conversation(from.account, now()));
  return apply_message(conv, from, false, dm, sort_ms, 1, fx);
}

Status Client::Impl::apply_message(ConversationId conv, const Address& author, bool outgoing,
                                   const content::DataMessage& dm, uint64_t sort_ms,
                                   uint32_t recipients, Effects& fx) {
  if (dm.has_reaction()) return {};  // reactions are not shown by this version
  if (!dm.edit_of().empty()) return apply_edit(conv, author, dm, fx);
  if (!dm.delete_of().empty()) return apply_delete(conv, author, dm, fx);
  if (dm.expire_timer_update()) {
    if (dm.expire_timer_s() > 365u * 86400) return {};
    SOTTO_TRY(history.set_expire_timer(conv, dm.expire_timer_s()));
    std::string who = outgoing ? "You" : "A member";
    if (!outgoing) {
      SOTTO_TRY_ASSIGN(auto c, history.contact(author.account));
      if (c && !c->handle.empty()) who = "@" + c->handle;
    }
    SOTTO_TRY(add_notice(conv,
                         dm.expire_timer_s() ? who + " set disappearing messages to " +
                                                   describe_timer(dm.expire_timer_s())
                                             : who + " turned disappearing messages off",
                         sort_ms, fx));
    fx.events.push_back([conv](ClientListener& l) { l.on_conversation_changed(conv); });
    return {};
  }
  if (dm.text().size() > kMaxText || static_cast<size_t>(dm.attachments_size()) > kMaxAttachments)
    return {};
  if (dm.text().empty() && dm.attachments_size() == 0) return {};

  NewMessage m;
  m.conversation = conv;
  m.message_id = bytes_of(dm.message_id());
  m.sender = author.account;
  m.sender_device = author.device_id;
  m.outgoing = outgoing;
  m.body = dm.text();
  m.sent_ms = dm.timestamp_ms();
  m.sort_ms = sort_ms;
  m.status = outgoing ? MessageStatus::kSent : MessageStatus::kUnread;
  m.recipients = outgoing ? recipients : 0;
  m.attachment_names = attachment_names(dm);
  m.has_attachment = dm.attachments_size() > 0;
  m.expire_timer_s = dm.expire_timer_s();
  m.group_revision = dm.has_group() ? dm.group().revision() : 0;
  if (outgoing) {
    m.extra = serialize(dm);
    if (dm.expire_timer_s()) m.expires_ms = now() + uint64_t{dm.expire_timer_s()} * 1000;
  }
  SOTTO_TRY_ASSIGN(auto row, history.insert_message(m));
  if (!outgoing) {
    // A duplicate (a resend after a session reset, say) still earns its receipt.
    SOTTO_TRY(history.add_pending_receipt(
        PendingReceipt{author.account, content::Receipt::DELIVERED, m.message_id, now()}));
    fx.receipts_owed = true;
  }
  if (!row) return {};
  for (int i = 0; i < dm.attachments_size(); ++i)
    SOTTO_TRY(history.add_attachment(*row, static_cast<uint32_t>(i), serialize(dm.attachments(i))));
  SOTTO_TRY_ASSIGN(auto stored, history.message(*row));
  if (stored) {
    Message msg = stored->message;
    fx.events.push_back([msg](ClientListener& l) { l.on_message(msg); });
  }
  return {};
}

Status Client::Impl::apply_edit(ConversationId conv, const Address& author,
                                const content::DataMessage& dm, Effects& fx) {
  if (dm.edit_of().size() != 16 || dm.text().empty() || dm.text().size() > kMaxText) return {};
  // Only the author's own message, in the same conversation.
  SOTTO_TRY_ASSIGN(auto m, history.find_message(author.account, view_of(dm.edit_of())));
  if (!m || m->message.conversation != conv || m->message.deleted ||
      m->message.kind != MessageKind::kText)
    return {};
  if (dm.timestamp_ms() > m->message.sent_ms + kEditWindowMs) return {};
  if (m->message.edited_ms >= dm.timestamp_ms()) return {};  // an older edit arriving late
  Bytes extra;
  if (!m->extra.empty()) {
    content::DataMessage copy;
    if (copy.ParseFromArray(m->extra.data(), static_cast<int>(m->extra.size()))) {
      copy.set_text(dm.text());
      extra = serialize(copy);
    }
  }
  SOTTO_TRY(history.edit_message(m->row, dm.text(), dm.timestamp_ms(), extra));
  emit_changed(m->row, fx);
  fx.purge = true;
  return {};
}

Status Client::Impl::apply_delete(ConversationId conv, const Address& author,
                                  const content::DataMessage& dm, Effects& fx) {
  if (dm.delete_of().size() != 16) return {};
  SOTTO_TRY_ASSIGN(auto m, history.find_message(author.account, view_of(dm.delete_of())));
  if (!m || m->message.conversation != conv || m->message.deleted) return {};
  SOTTO_TRY_ASSIGN(auto files, history.delete_message_content(m->row));
  fx.removed_files.insert(fx.removed_files.end(), files.begin(), files.end());
  emit_changed(m->row, fx);
  fx.purge = true;
  return {};
}

void Client::Impl::emit_changed(int64_t row, Effects& fx) {
  auto m = history.message(row);
  if (!m.ok() || !*m) return;
  Message msg = (*m)->message;
  fx.events.push_back([msg](ClientListener& l) { l.on_message_changed(msg); });
}

void Client::Impl::schedule_purge() {
  std::lock_guard lock(mu);
  if (purge_due_ms == 0) purge_due_ms = now() + 2000;
  cv.notify_one();
}

void Client::Impl::schedule_rebuild(uint64_t delay_ms) {
  std::lock_guard lock(mu);
  uint64_t at = now() + delay_ms;
  if (rebuild_due_ms == 0 || at < rebuild_due_ms) rebuild_due_ms = at;
  cv.notify_one();
}

void Client::Impl::continue_rebuild() {
  auto status = profile->search_index_status();
  if (!status.ok()) {
    schedule_rebuild(60'000);
    return;
  }
  if (!status->rebuilding) return;
  // One batch (5,000 messages), then back to the loop: received messages wait for no more.
  Status s = profile->rebuild_search_index([](const SearchProgress&) { return false; });
  if (s.ok()) return;
  schedule_rebuild(s.error().code == ErrorCode::kCancelled ? 0 : 60'000);
}

void Client::Impl::sweep_expired() {
  auto due = locked([&] { return history.next_expiry(); });
  if (!due.ok() || !*due || **due > now()) return;
  std::vector<std::pair<ConversationId, std::string>> removed;
  std::vector<StoredAttachment> files;
  Status s = txn([&]() -> Status {
    SOTTO_TRY_ASSIGN(auto list, history.expired(now(), 500));
    for (const auto& m : list) {
      SOTTO_TRY_ASSIGN(auto gone, history.remove_message(m.row));
      files.insert(files.end(), gone.begin(), gone.end());
      removed.emplace_back(m.message.conversation, m.message.id);
    }
    return {};
  });
  if (!s.ok()) return;
  remove_files(files);
  std::vector<Event> events;
  for (const auto& [conv, id] : removed)
    events.push_back([conv = conv, id = id](ClientListener& l) { l.on_message_removed(conv, id); });
  emit(std::move(events));
  if (!removed.empty()) schedule_purge();
}

// ---- typing ----

Status Client::Impl::set_typing(ConversationId conversation, bool typing) {
  SOTTO_TRY(registered_account());
  auto conv = locked([&] { return history.conversation(conversation); });
  if (!conv.ok()) return std::move(conv).error();
  if (!*conv)
    return make_error(ErrorCode::kNotFound, "no conversation " + std::to_string(conversation));
  post_task([this, conversation, typing] {
    uint64_t t = now();
    if (typing) {
      typing_until_ms[conversation] = t + kTypingExpiryMs;
      auto it = typing_sent_ms.find(conversation);
      if (it != typing_sent_ms.end() && it->second + kTypingRepeatMs > t) return;  // throttled
      typing_sent_ms[conversation] = t;
      send_typing(conversation, true);
    } else {
      typing_until_ms.erase(conversation);
      if (typing_sent_ms.erase(conversation)) send_typing(conversation, false);
    }
  });
  return {};
}

void Client::Impl::send_typing(ConversationId conversation, bool started) {
  auto c = connection();
  if (!c || !c->connected()) return;  // typing is never queued
  content::Content content;
  auto* typing = content.mutable_typing();
  typing->set_action(started ? content::Typing::STARTED : content::Typing::STOPPED);
  typing->set_timestamp_ms(now());
  std::string me = self_account();
  uint32_t my_device = self_device();
  auto req = make_request(wire::OP_SEND);
  wire::Request multi;
  Status s = txn([&]() -> Status {
    SOTTO_TRY_ASSIGN(auto conv, history.conversation(conversation));
    if (!conv) return {};
    Bytes id = new_message_id(now());
    if (conv->kind == ConversationKind::kGroup) {
      SOTTO_TRY_ASSIGN(auto g, history.group(conversation));
      if (!g || !g->member) return {};
      typing->set_group_id(str_of(g->group_id));
      // Only devices that already hold this device's sender key can read it.
      SOTTO_TRY_ASSIGN(auto holders, history.sender_key_holders(conversation));
      if (holders.empty()) return {};
      SOTTO_TRY_ASSIGN(auto ct, parts.crypto.group_encrypt(g->group_id, serialize(content)));
      multi = make_request(wire::OP_SEND_MULTI);
      auto* sm = multi.mutable_send_multi();
      sm->set_message_id(str_of(id));
      sm->set_type(wire::Envelope::SENDER_KEY);
      sm->set_ciphertext(str_of(ct));
      sm->set_ephemeral(true);
      for (const auto& [account, device] : holders) {
        auto* r = sm->add_recipients();
        Bytes acct;
        from_hex(account, acct);
        r->set_account_id(str_of(acct));
        r->set_device_id(device);
      }
      return {};
    }
    auto* send = req.mutable_send();
    send->set_message_id(str_of(id));
    send->set_ephemeral(true);
    Bytes plain = serialize(content);
    std::vector<Address> targets;
    SOTTO_TRY_ASSIGN(auto peer_devices, parts.crypto.session_devices(conv->peer));
    for (uint32_t d : peer_devices) targets.push_back(Address{conv->peer, d});
    SOTTO_TRY_ASSIGN(auto own, parts.crypto.session_devices(me));
    for (uint32_t d : own)
      if (d != my_device) targets.push_back(Address{me, d});
    for (const auto& t : targets) {
      SOTTO_TRY_ASSIGN(auto ct, parts.crypto.encrypt(t, plain));
      auto* m = send->add_messages();
      Bytes acct;
      from_hex(t.account, acct);
      m->set_account_id(str_of(acct));
      m->set_device_id(t.device_id);
      m->set_type(ct.type == CiphertextType::kPreKey ? wire::Envelope::PREKEY_MESSAGE
                                                     : wire::Envelope::MESSAGE);
      m->set_ciphertext(str_of(ct.bytes));
    }
    return {};
  });
  if (!s.ok()) return;
  if (multi.has_send_multi())
    c->request(std::move(multi), [](Result<wire::Response>) {});
  else if (req.send().messages_size() > 0)
    c->request(std::move(req), [](Result<wire::Response>) {});
}

void Client::Impl::apply_typing(const Address& from, const content::Typing& t, Effects& fx) {
  if (from.account == parts.crypto.identity().account) return;
  ConversationId conv = 0;
  if (!t.group_id().empty()) {
    auto g = history.group_by_id(view_of(t.group_id()));
    if (!g.ok() || !*g || !(*g)->member) return;
    conv = (*g)->conversation;
    auto member = history.is_group_member(conv, from.account);
    if (!member.ok() || !*member) return;
  } else {
    auto c = history.find_direct_conversation(from.account);
    if (!c.ok() || !*c) return;
    conv = **c;
  }
  bool started = t.action() == content::Typing::STARTED;
  auto key = std::make_pair(conv, from.account);
  if (started)
    typing_seen_until_ms[key] = now() + kTypingExpiryMs;
  else if (!typing_seen_until_ms.erase(key))
    return;
  std::string account = from.account;
  fx.events.push_back(
      [conv, account, started](ClientListener& l) { l.on_typing(conv, account, started); });
}

void Client::Impl::expire_typing() {
  uint64_t t = now();
  std::vector<Event> events;
  for (auto it = typing_seen_until_ms.begin(); it != typing_seen_until_ms.end();) {
    if (it->second <= t) {
      auto [conv, account] = it->first;
      events.push_back([conv = conv, account = account](ClientListener& l) {
        l.on_typing(conv, account, false);
      });
      it = typing_seen_until_ms.erase(it);
    } else {
      ++it;
    }
  }
  emit(std::move(events));
  for (auto it = typing_until_ms.begin(); it != typing_until_ms.end();) {
    if (it->second <= t) {
      ConversationId conv = it->first;
      it = typing_until_ms.erase(it);
      if (typing_sent_ms.erase(conv)) send_typing(conv, false);
    } else {
      ++it;
    }
  }
}

// ---- presence ----

Status Client::Impl::watch_presence(const std::vector<ConversationId>& conversations) {
  SOTTO_TRY_ASSIGN(auto me, registered_account());
  std::set<std::string> accounts;
  SOTTO_TRY(locked([&]() -> Status {
    for (ConversationId id : conversations) {
      SOTTO_TRY_ASSIGN(auto conv, history.conversation(id));
      if (!conv) return make_error(ErrorCode::kNotFound, "no conversation " + std::to_string(id));
      if (conv->kind == ConversationKind::kDirect) {
        accounts.insert(conv->peer);
      } else {
        SOTTO_TRY_ASSIGN(auto members, history.group_members(id));
        for (const auto& m : members)
          if (m.account != me.account) accounts.insert(m.account);
      }
    }
    return {};
  }));
  std::vector<std::string> list(accounts.begin(), accounts.end());
  if (list.size() > kMaxPresenceWatch) list.resize(kMaxPresenceWatch);
  post_task([this, list = std::move(list)] {
    presence_watch = list;
    subscribe_presence();
  });
  return {};
}

void Client::Impl::subscribe_presence() {
  auto c = connection();
  if (!c || !c->connected()) return;  // resubscribed on the next connect
  auto req = make_request(wire::OP_PRESENCE_SUBSCRIBE);
  for (const auto& a : presence_watch) {
    Bytes id;
    if (from_hex(a, id)) req.mutable_presence_subscribe()->add_account_ids(str_of(id));
  }
  auto r = c->call(std::move(req));
  if (!r.ok() || r->status() != wire::OK) return;
  std::vector<Event> events;
  for (const auto& p : r->presence_subscribe().current()) {
    if (p.account_id().size() != 16) continue;
    std::string account = to_hex(view_of(p.account_id()));
    bool online = p.online();
    uint64_t seen = p.last_seen_ms();
    events.push_back(
        [account, online, seen](ClientListener& l) { l.on_presence(account, online, seen); });
  }
  emit(std::move(events));
}

Status Client::Impl::set_presence_hidden(bool hidden) {
  SOTTO_TRY(txn([&]() -> Status {
    SOTTO_TRY_ASSIGN(auto a, history.account());
    if (!a || a->state != AccountState::kRegistered)
      return make_error(ErrorCode::kInvalidState, "no account yet");
    a->presence_hidden = hidden;
    return history.save_account(*a);
  }));
  post_task([this] { send_presence_visibility(); });
  return {};
}

void Client::Impl::send_presence_visibility() {
  auto c = connection();
  if (!c || !c->connected()) return;  // sent again on the next connect
  auto a = locked([&] { return history.account(); });
  if (!a.ok() || !*a) return;
  auto req = make_request(wire::OP_PRESENCE_VISIBILITY);
  req.mutable_presence_visibility()->set_hidden((*a)->presence_hidden);
  c->request(std::move(req), [](Result<wire::Response>) {});
}

}  // namespace sotto
