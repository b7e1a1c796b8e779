#include "History.h"

#include <sqlcipher/sqlite3.h>

#include <charconv>

#include "sotto/proto/content.pb.h"

namespace sotto {

namespace {

// Columns read_message() expects, in this order.
#define SOTTO_MESSAGE_COLUMNS                                                               \
  "m.id, m.conversation_id, m.message_id, m.sender, m.sender_device, m.outgoing, m.kind, "  \
  "m.body, m.sent_ms, m.sort_ms, m.status, m.recipients, m.extra, m.edited_ms, m.deleted, " \
  "m.expire_timer_s, m.expires_ms, "                                                        \
  "(SELECT count(*) FROM message_receipts r WHERE r.message = m.id), "                      \
  "(SELECT count(*) FROM message_receipts r WHERE r.message = m.id AND r.status = 3), "     \
  "m.group_revision"

Bytes to_bytes(ByteView v) { return Bytes(v.begin(), v.end()); }

std::string make_cursor(uint64_t sort_ms, int64_t row) {
  return std::to_string(sort_ms) + "." + std::to_string(row);
}

bool parse_cursor(const std::string& c, int64_t& sort_ms, int64_t& row) {
  size_t dot = c.find('.');
  if (dot == std::string::npos) return false;
  auto a = std::from_chars(c.data(), c.data() + dot, sort_ms);
  auto b = std::from_chars(c.data() + dot + 1, c.data() + c.size(), row);
  return a.ec == std::errc() && a.ptr == c.data() + dot && b.ec == std::errc() &&
         b.ptr == c.data() + c.size();
}

}  // namespace

// ---- account ----

Result<std::optional<AccountRow>> History::account() {
  SOTTO_TRY_ASSIGN(auto q, db_.query("SELECT account, device_id, handle, auth_secret, state, "
                                     "presence_hidden, read_receipts FROM account WHERE id = 1"));
  SOTTO_TRY_ASSIGN(bool row, q.step());
  if (!row) return std::optional<AccountRow>();
  AccountRow a;
  a.account = std::string(q.column_text(0));
  a.device_id = static_cast<uint32_t>(q.column_int(1));
  a.handle = std::string(q.column_text(2));
  a.auth_secret = to_bytes(q.column_blob(3));
  a.state = static_cast<AccountState>(q.column_int(4));
  a.presence_hidden = q.column_int(5) != 0;
  a.read_receipts = q.column_int(6) != 0;
  return std::optional<AccountRow>(std::move(a));
}

Status History::save_account(const AccountRow& a) {
  SOTTO_TRY_ASSIGN(auto q, db_.query("INSERT OR REPLACE INTO account (id, account, device_id, "
                                     "handle, auth_secret, state, presence_hidden, read_receipts) "
                                     "VALUES (1, ?, ?, ?, ?, ?, ?, ?)"));
  if (a.account.empty())
    q.bind_null(1);
  else
    q.bind_text(1, a.account);
  q.bind(2, int64_t{a.device_id});
  q.bind_text(3, a.handle);
  q.bind(4, a.auth_secret);
  q.bind(5, static_cast<int64_t>(a.state));
  q.bind(6, int64_t{a.presence_hidden});
  q.bind(7, int64_t{a.read_receipts});
  return q.run();
}

// ---- contacts ----

Status History::upsert_contact(const std::string& account, const std::string& handle,
                               ByteView identity_key, uint64_t now_ms) {
  // SQLCipher 3.4.1 is SQLite 3.15: no UPSERT, so insert-or-ignore then update.
  {
    SOTTO_TRY_ASSIGN(auto q, db_.query("INSERT OR IGNORE INTO contacts (account, handle, "
                                       "added_ms) VALUES (?, ?, ?)"));
    q.bind_text(1, account);
    q.bind_text(2, handle);
    q.bind(3, static_cast<int64_t>(now_ms));
    SOTTO_TRY(q.run());
  }
  SOTTO_TRY_ASSIGN(auto q, db_.query("UPDATE contacts SET handle = CASE WHEN ?2 = '' THEN handle "
                                     "ELSE ?2 END, identity_key = coalesce(?3, identity_key) "
                                     "WHERE account = ?1"));
  q.bind_text(1, account);
  q.bind_text(2, handle);
  if (identity_key.empty())
    q.bind_null(3);
  else
    q.bind(3, identity_key);
  return q.run();
}

Result<std::optional<Contact>> History::contact(const std::string& account) {
  SOTTO_TRY_ASSIGN(auto q, db_.query("SELECT account, handle FROM contacts WHERE account = ?"));
  q.bind_text(1, account);
  SOTTO_TRY_ASSIGN(bool row, q.step());
  if (!row) return std::optional<Contact>();
  return std::optional<Contact>(
      Contact{std::string(q.column_text(0)), std::string(q.column_text(1))});
}

Result<std::vector<std::string>> History::accounts_without_handle(
    const std::string& self, const std::set<std::string>& skip, uint32_t limit) {
  SOTTO_TRY_ASSIGN(auto q, db_.query("SELECT a FROM (SELECT peer AS a FROM conversations WHERE "
                                     "kind = 1 UNION SELECT account FROM group_members) WHERE a "
                                     "!= ? AND a NOT IN (SELECT account FROM contacts WHERE "
                                     "coalesce(handle, '') != '')"));
  q.bind_text(1, self);
  std::vector<std::string> out;
  while (out.size() < limit) {
    SOTTO_TRY_ASSIGN(bool row, q.step());
    if (!row) break;
    std::string a(q.column_text(0));
    if (!skip.count(a)) out.push_back(std::move(a));
  }
  return out;
}

Result<std::string> History::verified_number(const std::string& account) {
  SOTTO_TRY_ASSIGN(auto q, db_.query("SELECT digits FROM verified_numbers WHERE account = ?"));
  q.bind_text(1, account);
  SOTTO_TRY_ASSIGN(bool row, q.step());
  return row ? std::string(q.column_text(0)) : std::string();
}

Status History::set_verified_number(const std::string& account, const std::string& digits,
                                    uint64_t now_ms) {
  if (digits.empty()) {
    SOTTO_TRY_ASSIGN(auto q, db_.query("DELETE FROM verified_numbers WHERE account = ?"));
    q.bind_text(1, account);
    return q.run();
  }
  SOTTO_TRY_ASSIGN(auto q, db_.query("INSERT OR REPLACE INTO verified_numbers (account, digits, "
                                     "verified_ms) VALUES (?, ?, ?)"));
  q.bind_text(1, account);
  q.bind_text(2, digits);
  q.bind(3, static_cast<int64_t>(now_ms));
  return q.run();
}

Result<std::vector<ConversationId>> History::conversations_showing(const std::string& account) {
  SOTTO_TRY_ASSIGN(auto q, db_.query("SELECT id FROM conversations WHERE peer = ?1 UNION SELECT "
                                     "conversation_id FROM group_members WHERE account = ?1"));
  q.bind_text(1, account);
  std::vector<ConversationId> out;
  for (;;) {
    SOTTO_TRY_ASSIGN(bool row, q.step());
    if (!row) break;
    out.push_back(q.column_int(0));
  }
  return out;
}

Result<Bytes> History::contact_identity_key(const std::string& account) {
  SOTTO_TRY_ASSIGN(auto q, db_.query("SELECT identity_key FROM contacts WHERE account = ?"));
  q.bind_text(1, account);
  SOTTO_TRY_ASSIGN(bool row, q.step());
  if (!row) return Bytes();
  ByteView key = q.column_blob(0);
  return Bytes(key.begin(), key.end());
}

Result<std::vector<Contact>> History::contacts() {
  SOTTO_TRY_ASSIGN(auto q, db_.query("SELECT account, handle FROM contacts ORDER BY handle"));
  std::vector<Contact> out;
  for (;;) {
    SOTTO_TRY_ASSIGN(bool row, q.step());
    if (!row) break;
    out.push_back(Contact{std::string(q.column_text(0)), std::string(q.column_text(1))});
  }
  return out;
}

// ---- conversations ----

Result<std::optional<ConversationId>> History::find_direct_conversation(const std::string& peer) {
  SOTTO_TRY_ASSIGN(auto q, db_.query("SELECT id FROM conversations WHERE peer = ?"));
  q.bind_text(1, peer);
  SOTTO_TRY_ASSIGN(bool row, q.step());
  if (!row) return std::optional<ConversationId>();
  return std::optional<ConversationId>(q.column_int(0));
}

Result<ConversationId> History::direct_conversation(const std::string& peer, uint64_t now_ms) {
  SOTTO_TRY_ASSIGN(auto found, find_direct_conversation(peer));
  if (found) return *found;
  SOTTO_TRY_ASSIGN(auto q, db_.query("INSERT INTO conversations (kind, peer, created_ms, "
                                     "last_activity_ms) VALUES (1, ?, ?, ?)"));
  q.bind_text(1, peer);
  q.bind(2, static_cast<int64_t>(now_ms));
  q.bind(3, static_cast<int64_t>(now_ms));
  SOTTO_TRY(q.run());
  shown_changes_.fetch_add(1, std::memory_order_relaxed);
  return static_cast<ConversationId>(sqlite3_last_insert_rowid(db_.handle()));
}

Result<std::optional<Conversation>> History::conversation(ConversationId id) {
  SOTTO_TRY_ASSIGN(auto q, db_.query("SELECT c.id, c.kind, c.peer, coalesce(k.handle, g.name, "
                                     "''), c.unread, c.last_message, c.last_activity_ms, "
                                     "c.expire_timer_s FROM conversations c LEFT JOIN contacts k "
                                     "ON k.account = c.peer LEFT JOIN groups g ON "
                                     "g.conversation_id = c.id WHERE c.id = ?"));
  q.bind(1, id);
  SOTTO_TRY_ASSIGN(bool row, q.step());
  if (!row) return std::optional<Conversation>();
  Conversation c;
  c.id = q.column_int(0);
  c.kind = static_cast<ConversationKind>(q.column_int(1));
  c.peer = std::string(q.column_text(2));
  std::string name(q.column_text(3));
  if (c.kind == ConversationKind::kGroup)
    c.title = name.empty() ? "Group" : name;
  else
    c.title = name.empty() ? c.peer : "@" + name;
  c.expire_timer_s = static_cast<uint32_t>(q.column_int(7));
  c.unread = static_cast<uint32_t>(q.column_int(4));
  std::optional<int64_t> last;
  if (!q.column_is_null(5)) last = q.column_int(5);
  c.last_activity_ms = static_cast<uint64_t>(q.column_int(6));
  if (last) {
    SOTTO_TRY_ASSIGN(auto m, message(*last));
    if (m) c.last_message = std::move(m->message);
  }
  return std::optional<Conversation>(std::move(c));
}

Result<std::vector<Conversation>> History::conversations() {
  std::vector<ConversationId> ids;
  {
    SOTTO_TRY_ASSIGN(auto q, db_.query("SELECT id FROM conversations ORDER BY last_activity_ms "
                                       "DESC, id DESC"));
    for (;;) {
      SOTTO_TRY_ASSIGN(bool row, q.step());
      if (!row) break;
      ids.push_back(q.column_int(0));
    }
  }
  std::vector<Conversation> out;
  for (ConversationId id : ids) {
    SOTTO_TRY_ASSIGN(auto c, conversation(id));
    if (c) out.push_back(std::move(*c));
  }
  return out;
}

Status History::touch_conversation(ConversationId id, int64_t row, uint64_t activity_ms) {
  // The newest message by position becomes the conversation's last message.
  SOTTO_TRY_ASSIGN(auto q, db_.query("UPDATE OR FAIL conversations SET last_activity_ms = "
                                     "max(last_activity_ms, ?), last_message = (SELECT id FROM "
                                     "messages WHERE conversation_id = ?2 ORDER BY sort_ms DESC, "
                                     "id DESC LIMIT 1) WHERE id = ?2"));
  (void)row;
  q.bind(1, static_cast<int64_t>(activity_ms));
  q.bind(2, id);
  return q.run();
}

// ---- messages ----

Result<std::optional<int64_t>> History::insert_message(const NewMessage& m) {
  SOTTO_TRY_ASSIGN(auto q, db_.query("INSERT OR IGNORE INTO messages (conversation_id, "
                                     "message_id, sender, sender_device, outgoing, kind, body, "
                                     "sent_ms, sort_ms, status, extra, recipients, "
                                     "attachment_names, has_attachment, expire_timer_s, "
                                     "expires_ms, group_revision) VALUES (?, ?, ?, ?, ?, ?, ?, ?, "
                                     "?, ?, ?, ?, ?, ?, ?, ?, ?)"));
  q.bind(1, m.conversation);
  q.bind(2, m.message_id);
  q.bind_text(3, m.sender);
  q.bind(4, int64_t{m.sender_device});
  q.bind(5, int64_t{m.outgoing});
  q.bind(6, static_cast<int64_t>(m.kind));
  if (m.body.empty() && m.kind == MessageKind::kText)
    q.bind_null(7);
  else
    q.bind_text(7, m.body);
  q.bind(8, static_cast<int64_t>(m.sent_ms));
  q.bind(9, static_cast<int64_t>(m.sort_ms));
  q.bind(10, static_cast<int64_t>(m.status));
  if (m.extra.empty())
    q.bind_null(11);
  else
    q.bind(11, m.extra);
  q.bind(12, int64_t{m.recipients});
  if (m.attachment_names.empty())
    q.bind_null(13);
  else
    q.bind_text(13, m.attachment_names);
  q.bind(14, int64_t{m.has_attachment});
  q.bind(15, int64_t{m.expire_timer_s});
  if (m.expires_ms)
    q.bind(16, static_cast<int64_t>(m.expires_ms));
  else
    q.bind_null(16);
  q.bind(17, int64_t{m.group_revision});
  SOTTO_TRY(q.run());
  if (sqlite3_changes(db_.handle()) == 0) return std::optional<int64_t>();
  int64_t row = sqlite3_last_insert_rowid(db_.handle());
  inserted_.fetch_add(1, std::memory_order_relaxed);
  if (m.status == MessageStatus::kUnread) {
    SOTTO_TRY_ASSIGN(
        auto u, db_.query("UPDATE OR FAIL conversations SET unread = unread + 1 WHERE id = ?"));
    u.bind(1, m.conversation);
    SOTTO_TRY(u.run());
  }
  SOTTO_TRY(touch_conversation(m.conversation, row, m.sort_ms));
  return std::optional<int64_t>(row);
}

Result<Message> History::read_message(db::Query& q, int c, StoredMessage* stored) {
  Message m;
  int64_t row = q.column_int(c + 0);
  m.conversation = q.column_int(c + 1);
  ByteView id = q.column_blob(c + 2);
  m.id = to_hex(id);
  m.sender = std::string(q.column_text(c + 3));
  m.sender_device = static_cast<uint32_t>(q.column_int(c + 4));
  m.outgoing = q.column_int(c + 5) != 0;
  m.kind = static_cast<MessageKind>(q.column_int(c + 6));
  m.text = std::string(q.column_text(c + 7));
  m.sent_ms = static_cast<uint64_t>(q.column_int(c + 8));
  m.sort_ms = static_cast<uint64_t>(q.column_int(c + 9));
  m.status = static_cast<MessageStatus>(q.column_int(c + 10));
  m.recipients = static_cast<uint32_t>(q.column_int(c + 11));
  if (stored) {
    stored->row = row;
    stored->message_id = to_bytes(id);
    stored->extra = to_bytes(q.column_blob(c + 12));
  }
  m.edited_ms = q.column_is_null(c + 13) ? 0 : static_cast<uint64_t>(q.column_int(c + 13));
  m.deleted = q.column_int(c + 14) != 0;
  m.expire_timer_s = static_cast<uint32_t>(q.column_int(c + 15));
  m.expires_ms = q.column_is_null(c + 16) ? 0 : static_cast<uint64_t>(q.column_int(c + 16));
  if (m.outgoing) {
    m.delivered_to = static_cast<uint32_t>(q.column_int(c + 17));
    m.read_by = static_cast<uint32_t>(q.column_int(c + 18));
  }
  m.group_revision = static_cast<uint32_t>(q.column_int(c + 19));
  SOTTO_TRY_ASSIGN(auto files, attachments(row));
  for (const auto& f : files) {
    content::AttachmentPointer p;
    if (!p.ParseFromArray(f.pointer.data(), static_cast<int>(f.pointer.size()))) continue;
    Attachment a;
    a.file_name = p.file_name();
    a.content_type = p.content_type();
    a.size = p.size();
    a.width = p.width();
    a.height = p.height();
    a.thumbnail.assign(p.thumbnail().begin(), p.thumbnail().end());
    a.stored = f.blob.has_value() || !f.local_path.empty();
    m.attachments.push_back(std::move(a));
  }
  return m;
}

Result<std::optional<StoredMessage>> History::message(int64_t row) {
  SOTTO_TRY_ASSIGN(auto q, db_.query("SELECT " SOTTO_MESSAGE_COLUMNS " FROM messages m WHERE "
                                     "m.id = ?"));
  q.bind(1, row);
  SOTTO_TRY_ASSIGN(bool found, q.step());
  if (!found) return std::optional<StoredMessage>();
  StoredMessage s;
  SOTTO_TRY_ASSIGN(s.message, read_message(q, 0, &s));
  return std::optional<StoredMessage>(std::move(s));
}

Result<bool> History::has_message(const std::string& sender, ByteView id) {
  SOTTO_TRY_ASSIGN(auto q, db_.query("SELECT 1 FROM messages WHERE sender = ? AND message_id = ?"));
  q.bind_text(1, sender);
  q.bind(2, id);
  return q.step();
}

Result<std::optional<StoredMessage>> History::find_message(const std::string& sender, ByteView id) {
  SOTTO_TRY_ASSIGN(auto q, db_.query("SELECT " SOTTO_MESSAGE_COLUMNS " FROM messages m WHERE "
                                     "m.sender = ? AND m.message_id = ?"));
  q.bind_text(1, sender);
  q.bind(2, id);
  SOTTO_TRY_ASSIGN(bool found, q.step());
  if (!found) return std::optional<StoredMessage>();
  StoredMessage s;
  SOTTO_TRY_ASSIGN(s.message, read_message(q, 0, &s));
  return std::optional<StoredMessage>(std::move(s));
}

Result<std::optional<StoredMessage>> History::find_in_conversation(ConversationId conversation,
                                                                   ByteView id) {
  SOTTO_TRY_ASSIGN(auto q, db_.query("SELECT " SOTTO_MESSAGE_COLUMNS " FROM messages m WHERE "
                                     "m.conversation_id = ? AND m.message_id = ? ORDER BY "
                                     "m.outgoing DESC LIMIT 1"));
  q.bind(1, conversation);
  q.bind(2, id);
  SOTTO_TRY_ASSIGN(bool found, q.step());
  if (!found) return std::optional<StoredMessage>();
  StoredMessage s;
  SOTTO_TRY_ASSIGN(s.message, read_message(q, 0, &s));
  return std::optional<StoredMessage>(std::move(s));
}

Status History::mark_failed(int64_t row) {
  SOTTO_TRY_ASSIGN(auto q, db_.query("UPDATE OR FAIL messages SET status = ? WHERE id = ?"));
  q.bind(1, static_cast<int64_t>(MessageStatus::kFailed));
  q.bind(2, row);
  return q.run();
}

Result<bool> History::raise_status(int64_t row, MessageStatus status) {
  SOTTO_TRY_ASSIGN(auto q,
                   db_.query("UPDATE OR FAIL messages SET status = ? WHERE id = ? AND outgoing = 1 "
                             "AND status < ?1 AND status != 4"));
  q.bind(1, static_cast<int64_t>(status));
  q.bind(2, row);
  SOTTO_TRY(q.run());
  return sqlite3_changes(db_.handle()) > 0;
}

Status History::set_sort_ms(int64_t row, uint64_t sort_ms) {
  SOTTO_TRY_ASSIGN(auto q, db_.query("UPDATE messages SET sort_ms = ? WHERE id = ?"));
  q.bind(1, static_cast<int64_t>(sort_ms));
  q.bind(2, row);
  SOTTO_TRY(q.run());
  SOTTO_TRY_ASSIGN(auto c, db_.query("SELECT conversation_id FROM messages WHERE id = ?"));
  c.bind(1, row);
  SOTTO_TRY_ASSIGN(bool found, c.step());
  if (!found) return {};
  return touch_conversation(c.column_int(0), row, 0);
}

Result<bool> History::record_receipt(int64_t row, const std::string& account, MessageStatus status,
                                     uint64_t at_ms) {
  {
    SOTTO_TRY_ASSIGN(auto q, db_.query("INSERT OR IGNORE INTO message_receipts (message, account, "
                                       "status, at_ms) VALUES (?, ?, ?, ?)"));
    q.bind(1, row);
    q.bind_text(2, account);
    q.bind(3, static_cast<int64_t>(status));
    q.bind(4, static_cast<int64_t>(at_ms));
    SOTTO_TRY(q.run());
    if (sqlite3_changes(db_.handle()) > 0) return true;
  }
  SOTTO_TRY_ASSIGN(auto q,
                   db_.query("UPDATE OR FAIL message_receipts SET status = ?3, at_ms = ?4 WHERE "
                             "message = ?1 AND account = ?2 AND status < ?3"));
  q.bind(1, row);
  q.bind_text(2, account);
  q.bind(3, static_cast<int64_t>(status));
  q.bind(4, static_cast<int64_t>(at_ms));
  SOTTO_TRY(q.run());
  return sqlite3_changes(db_.handle()) > 0;
}

Result<std::vector<Receipt>> History::receipts(int64_t row) {
  SOTTO_TRY_ASSIGN(auto q, db_.query("SELECT account, status, at_ms FROM message_receipts WHERE "
                                     "message = ? ORDER BY account"));
  q.bind(1, row);
  std::vector<Receipt> out;
  for (;;) {
    SOTTO_TRY_ASSIGN(bool found, q.step());
    if (!found) break;
    out.push_back(Receipt{std::string(q.column_text(0)),
                          static_cast<MessageStatus>(q.column_int(1)),
                          static_cast<uint64_t>(q.column_int(2))});
  }
  return out;
}

Result<MessagePage> History::page(ConversationId conversation, const std::string& cursor,
                                  uint32_t limit) {
  if (limit == 0 || limit > 1000)
    return make_error(ErrorCode::kInvalidArgument, "ask for 1..1000 messages per page");
  int64_t before_sort = INT64_MAX, before_row = INT64_MAX;
  if (!cursor.empty() && !parse_cursor(cursor, before_sort, before_row))
    return make_error(ErrorCode::kInvalidArgument,
                      "the cursor is not one that messages() returned; start again without one");
  SOTTO_TRY_ASSIGN(auto q, db_.query("SELECT " SOTTO_MESSAGE_COLUMNS " FROM messages m WHERE "
                                     "m.conversation_id = ? AND (m.sort_ms < ? OR (m.sort_ms = ?2 "
                                     "AND m.id < ?)) ORDER BY m.sort_ms DESC, m.id DESC LIMIT ?"));
  q.bind(1, conversation);
  q.bind(2, before_sort);
  q.bind(3, before_row);
  q.bind(4, int64_t{limit} + 1);
  MessagePage page;
  int64_t last_row = 0;
  for (;;) {
    SOTTO_TRY_ASSIGN(bool found, q.step());
    if (!found) break;
    if (page.messages.size() == limit) {
      page.next_cursor = make_cursor(page.messages.back().sort_ms, last_row);
      break;
    }
    StoredMessage s;
    SOTTO_TRY_ASSIGN(auto m, read_message(q, 0, &s));
    last_row = s.row;
    page.messages.push_back(std::move(m));
  }
  return page;
}

Result<std::vector<StoredMessage>> History::mark_read(ConversationId conversation,
                                                      int64_t up_to_row) {
  SOTTO_TRY_ASSIGN(auto pos, message(up_to_row));
  if (!pos) return make_error(ErrorCode::kNotFound, "no such message");
  int64_t sort = static_cast<int64_t>(pos->message.sort_ms);
  std::vector<StoredMessage> out;
  {
    SOTTO_TRY_ASSIGN(auto q, db_.query("SELECT " SOTTO_MESSAGE_COLUMNS " FROM messages m WHERE "
                                       "m.conversation_id = ? AND m.outgoing = 0 AND m.status = "
                                       "10 AND (m.sort_ms < ? OR (m.sort_ms = ?2 AND m.id <= ?)) "
                                       "ORDER BY m.sort_ms, m.id"));
    q.bind(1, conversation);
    q.bind(2, sort);
    q.bind(3, up_to_row);
    for (;;) {
      SOTTO_TRY_ASSIGN(bool found, q.step());
      if (!found) break;
      StoredMessage s;
      SOTTO_TRY_ASSIGN(s.message, read_message(q, 0, &s));
      out.push_back(std::move(s));
    }
  }
  for (const auto& s : out) {
    SOTTO_TRY_ASSIGN(auto u, db_.query("UPDATE OR FAIL messages SET status = 11 WHERE id = ?"));
    u.bind(1, s.row);
    SOTTO_TRY(u.run());
  }
  SOTTO_TRY_ASSIGN(auto c,
                   db_.query("UPDATE OR FAIL conversations SET unread = (SELECT count(*) FROM "
                             "messages WHERE conversation_id = ?1 AND status = 10) WHERE "
                             "id = ?1"));
  c.bind(1, conversation);
  SOTTO_TRY(c.run());
  return out;
}

Result<bool> History::mark_one_read(int64_t row) {
  SOTTO_TRY_ASSIGN(
      auto q, db_.query("UPDATE OR FAIL messages SET status = 11 WHERE id = ? AND status = 10"));
  q.bind(1, row);
  SOTTO_TRY(q.run());
  if (sqlite3_changes(db_.handle()) == 0) return false;
  SOTTO_TRY_ASSIGN(auto c,
                   db_.query("UPDATE OR FAIL conversations SET unread = max(unread - 1, 0) WHERE "
                             "id = (SELECT conversation_id FROM messages WHERE id = ?)"));
  c.bind(1, row);
  SOTTO_TRY(c.run());
  return true;
}

Status History::edit_message(int64_t row, const std::string& text, uint64_t edited_ms,
                             ByteView extra) {
  SOTTO_TRY_ASSIGN(auto q, db_.query("UPDATE messages SET body = ?, edited_ms = ?, extra = ? "
                                     "WHERE id = ?"));
  q.bind_text(1, text);
  q.bind(2, static_cast<int64_t>(edited_ms));
  if (extra.empty())
    q.bind_null(3);
  else
    q.bind(3, extra);
  q.bind(4, row);
  return q.run();
}

Status History::set_group_revision(int64_t row, uint32_t revision, ByteView extra) {
  SOTTO_TRY_ASSIGN(auto q, db_.query("UPDATE messages SET group_revision = ?, extra = ? WHERE "
                                     "id = ? AND extra IS NOT NULL"));
  q.bind(1, int64_t{revision});
  q.bind(2, extra);
  q.bind(3, row);
  return q.run();
}

Result<std::vector<StoredAttachment>> History::delete_message_content(int64_t row) {
  SOTTO_TRY_ASSIGN(auto files, attachments(row));
  for (const char* sql : {"DELETE FROM attachments WHERE message = ?",
                          "DELETE FROM attachment_blobs WHERE message = ?"}) {
    SOTTO_TRY_ASSIGN(auto q, db_.query(sql));
    q.bind(1, row);
    SOTTO_TRY(q.run());
  }
  SOTTO_TRY_ASSIGN(auto q, db_.query("UPDATE messages SET body = NULL, attachment_names = NULL, "
                                     "has_attachment = 0, extra = NULL, quote = NULL, deleted = "
                                     "1, expires_ms = NULL WHERE id = ?"));
  q.bind(1, row);
  SOTTO_TRY(q.run());
  return files;
}

Result<std::vector<StoredAttachment>> History::remove_message(int64_t row) {
  SOTTO_TRY_ASSIGN(auto m, message(row));
  if (!m) return std::vector<StoredAttachment>();
  SOTTO_TRY_ASSIGN(auto files, delete_message_content(row));
  for (const char* sql :
       {"DELETE FROM message_receipts WHERE message = ?", "DELETE FROM messages WHERE id = ?"}) {
    SOTTO_TRY_ASSIGN(auto q, db_.query(sql));
    q.bind(1, row);
    SOTTO_TRY(q.run());
  }
  SOTTO_TRY_ASSIGN(auto c,
                   db_.query("UPDATE OR FAIL conversations SET unread = (SELECT count(*) FROM "
                             "messages WHERE conversation_id = ?1 AND status = 10) WHERE "
                             "id = ?1"));
  c.bind(1, m->message.conversation);
  SOTTO_TRY(c.run());
  SOTTO_TRY(touch_conversation(m->message.conversation, 0, 0));
  return files;
}

Status History::set_expiry(int64_t row, uint64_t expires_ms) {
  SOTTO_TRY_ASSIGN(auto q, db_.query("UPDATE OR FAIL messages SET expires_ms = ? WHERE id = ? AND "
                                     "(expires_ms IS NULL OR expires_ms > ?1)"));
  q.bind(1, static_cast<int64_t>(expires_ms));
  q.bind(2, row);
  return q.run();
}

Result<std::vector<StoredMessage>> History::expired(uint64_t now_ms, size_t limit) {
  SOTTO_TRY_ASSIGN(auto q, db_.query("SELECT " SOTTO_MESSAGE_COLUMNS " FROM messages m WHERE "
                                     "m.expires_ms IS NOT NULL AND m.expires_ms <= ? ORDER BY "
                                     "m.expires_ms LIMIT ?"));
  q.bind(1, static_cast<int64_t>(now_ms));
  q.bind(2, static_cast<int64_t>(limit));
  std::vector<StoredMessage> out;
  for (;;) {
    SOTTO_TRY_ASSIGN(bool found, q.step());
    if (!found) break;
    StoredMessage s;
    SOTTO_TRY_ASSIGN(s.message, read_message(q, 0, &s));
    out.push_back(std::move(s));
  }
  return out;
}

Result<std::optional<uint64_t>> History::next_expiry() {
  SOTTO_TRY_ASSIGN(auto q, db_.query("SELECT min(expires_ms) FROM messages WHERE expires_ms IS "
                                     "NOT NULL"));
  SOTTO_TRY_ASSIGN(bool found, q.step());
  if (!found || q.column_is_null(0)) return std::optional<uint64_t>();
  return std::optional<uint64_t>(static_cast<uint64_t>(q.column_int(0)));
}

Status History::set_expire_timer(ConversationId conversation, uint32_t seconds) {
  SOTTO_TRY_ASSIGN(auto q,
                   db_.query("UPDATE OR FAIL conversations SET expire_timer_s = ? WHERE id = ?"));
  q.bind(1, int64_t{seconds});
  q.bind(2, conversation);
  return q.run();
}

// ---- attachments ----

Status History::add_attachment(int64_t row, uint32_t index, ByteView pointer) {
  SOTTO_TRY_ASSIGN(auto q, db_.query("INSERT OR REPLACE INTO attachments (message, idx, pointer) "
                                     "VALUES (?, ?, ?)"));
  q.bind(1, row);
  q.bind(2, int64_t{index});
  q.bind(3, pointer);
  return q.run();
}

#define SOTTO_ATTACHMENT_COLUMNS                                                              \
  "a.message, a.idx, a.pointer, coalesce(a.local_path, ''), b.name, b.key, b.digest, b.size " \
  "FROM attachments a LEFT JOIN attachment_blobs b ON b.message = a.message AND b.idx = a.idx"

namespace {

StoredAttachment read_attachment_row(db::Query& q) {
  StoredAttachment a;
  a.row = q.column_int(0);
  a.index = static_cast<uint32_t>(q.column_int(1));
  a.pointer = to_bytes(q.column_blob(2));
  a.local_path = std::string(q.column_text(3));
  if (!q.column_is_null(4)) {
    StoredBlob b;
    b.name = std::string(q.column_text(4));
    b.key = to_bytes(q.column_blob(5));
    b.digest = to_bytes(q.column_blob(6));
    b.size = static_cast<uint64_t>(q.column_int(7));
    a.blob = std::move(b);
  }
  return a;
}

}  // namespace

Result<std::vector<StoredAttachment>> History::attachments(int64_t row) {
  SOTTO_TRY_ASSIGN(
      auto q, db_.query("SELECT " SOTTO_ATTACHMENT_COLUMNS " WHERE a.message = ? ORDER BY a.idx"));
  q.bind(1, row);
  std::vector<StoredAttachment> out;
  for (;;) {
    SOTTO_TRY_ASSIGN(bool found, q.step());
    if (!found) break;
    out.push_back(read_attachment_row(q));
  }
  return out;
}

Result<bool> History::add_attachment_blob(int64_t row, uint32_t index, const StoredBlob& blob) {
  SOTTO_TRY_ASSIGN(auto q, db_.query("INSERT OR IGNORE INTO attachment_blobs (message, idx, name, "
                                     "key, digest, size) VALUES (?, ?, ?, ?, ?, ?)"));
  q.bind(1, row);
  q.bind(2, int64_t{index});
  q.bind_text(3, blob.name);
  q.bind(4, blob.key);
  q.bind(5, blob.digest);
  q.bind(6, static_cast<int64_t>(blob.size));
  SOTTO_TRY(q.run());
  return sqlite3_changes(db_.handle()) > 0;
}

Status History::remove_attachment_blob(int64_t row, uint32_t index) {
  SOTTO_TRY_ASSIGN(auto q, db_.query("DELETE FROM attachment_blobs WHERE message = ? AND idx = ?"));
  q.bind(1, row);
  q.bind(2, int64_t{index});
  return q.run();
}

Status History::clear_attachment_path(int64_t row, uint32_t index) {
  SOTTO_TRY_ASSIGN(auto q, db_.query("UPDATE attachments SET local_path = NULL WHERE message = ? "
                                     "AND idx = ?"));
  q.bind(1, row);
  q.bind(2, int64_t{index});
  return q.run();
}

Result<std::vector<StoredAttachment>> History::plain_attachments(size_t limit) {
  SOTTO_TRY_ASSIGN(auto q, db_.query("SELECT " SOTTO_ATTACHMENT_COLUMNS
                                     " WHERE a.local_path IS NOT NULL ORDER BY a.message, a.idx "
                                     "LIMIT ?"));
  q.bind(1, static_cast<int64_t>(limit));
  std::vector<StoredAttachment> out;
  for (;;) {
    SOTTO_TRY_ASSIGN(bool found, q.step());
    if (!found) break;
    out.push_back(read_attachment_row(q));
  }
  return out;
}

Result<std::vector<std::string>> History::blob_names() {
  SOTTO_TRY_ASSIGN(auto q, db_.query("SELECT name FROM attachment_blobs"));
  std::vector<std::string> out;
  for (;;) {
    SOTTO_TRY_ASSIGN(bool found, q.step());
    if (!found) break;
    out.emplace_back(q.column_text(0));
  }
  return out;
}

// ---- groups ----

Result<ConversationId> History::group_conversation(ByteView group_id, uint64_t now_ms) {
  {
    SOTTO_TRY_ASSIGN(auto q, db_.query("SELECT id FROM conversations WHERE group_id = ?"));
    q.bind(1, group_id);
    SOTTO_TRY_ASSIGN(bool found, q.step());
    if (found) return q.column_int(0);
  }
  SOTTO_TRY_ASSIGN(auto q, db_.query("INSERT INTO conversations (kind, group_id, created_ms, "
                                     "last_activity_ms) VALUES (2, ?, ?, ?)"));
  q.bind(1, group_id);
  q.bind(2, static_cast<int64_t>(now_ms));
  q.bind(3, static_cast<int64_t>(now_ms));
  SOTTO_TRY(q.run());
  return static_cast<ConversationId>(sqlite3_last_insert_rowid(db_.handle()));
}

namespace {
// The row the query stands on: conversation_id, group_id, revision, snapshot, name, member,
// left_revision.
GroupRow group_row(db::Query& q) {
  GroupRow g;
  g.conversation = q.column_int(0);
  g.group_id = to_bytes(q.column_blob(1));
  g.revision = static_cast<uint32_t>(q.column_int(2));
  g.snapshot = to_bytes(q.column_blob(3));
  g.name = std::string(q.column_text(4));
  g.member = q.column_int(5) != 0;
  g.left_revision = static_cast<uint32_t>(q.column_int(6));
  return g;
}

Result<std::optional<GroupRow>> read_group(db::Query& q) {
  SOTTO_TRY_ASSIGN(bool found, q.step());
  if (!found) return std::optional<GroupRow>();
  return std::optional<GroupRow>(group_row(q));
}
}  // namespace

Result<std::optional<GroupRow>> History::group(ConversationId conversation) {
  SOTTO_TRY_ASSIGN(auto q,
                   db_.query("SELECT conversation_id, group_id, revision, snapshot, name, "
                             "member, left_revision FROM groups WHERE conversation_id = ?"));
  q.bind(1, conversation);
  return read_group(q);
}

Result<std::optional<GroupRow>> History::group_by_id(ByteView group_id) {
  SOTTO_TRY_ASSIGN(auto q, db_.query("SELECT conversation_id, group_id, revision, snapshot, name, "
                                     "member, left_revision FROM groups WHERE group_id = ?"));
  q.bind(1, group_id);
  return read_group(q);
}

Result<std::vector<GroupRow>> History::member_groups() {
  SOTTO_TRY_ASSIGN(auto q, db_.query("SELECT conversation_id, group_id, revision, snapshot, name, "
                                     "member, left_revision FROM groups WHERE member = 1 ORDER BY "
                                     "conversation_id"));
  std::vector<GroupRow> out;
  for (;;) {
    SOTTO_TRY_ASSIGN(bool found, q.step());
    if (!found) return out;
    out.push_back(group_row(q));
  }
}

Status History::save_group(const GroupRow& g) {
  group_saves_.fetch_add(1, std::memory_order_relaxed);
  SOTTO_TRY_ASSIGN(auto q, db_.query("INSERT OR REPLACE INTO groups (conversation_id, group_id, "
                                     "revision, snapshot, name, member, left_revision) VALUES "
                                     "(?, ?, ?, ?, ?, ?, ?)"));
  q.bind(1, g.conversation);
  q.bind(2, g.group_id);
  q.bind(3, int64_t{g.revision});
  q.bind(4, g.snapshot);
  q.bind_text(5, g.name);
  q.bind(6, int64_t{g.member});
  q.bind(7, int64_t{g.left_revision});
  return q.run();
}

Status History::set_group_members(ConversationId conversation,
                                  const std::vector<GroupMember>& members) {
  shown_changes_.fetch_add(1, std::memory_order_relaxed);
  {
    SOTTO_TRY_ASSIGN(auto q, db_.query("DELETE FROM group_members WHERE conversation_id = ?"));
    q.bind(1, conversation);
    SOTTO_TRY(q.run());
  }
  for (const auto& m : members) {
    SOTTO_TRY_ASSIGN(auto q, db_.query("INSERT OR REPLACE INTO group_members (conversation_id, "
                                       "account, handle, admin) VALUES (?, ?, ?, ?)"));
    q.bind(1, conversation);
    q.bind_text(2, m.account);
    q.bind_text(3, m.handle);
    q.bind(4, int64_t{m.admin});
    SOTTO_TRY(q.run());
  }
  return {};
}

Result<std::vector<GroupMember>> History::group_members(ConversationId conversation) {
  SOTTO_TRY_ASSIGN(auto q, db_.query("SELECT g.account, coalesce(nullif(c.handle, ''), g.handle), "
                                     "g.admin FROM group_members g LEFT JOIN contacts c ON "
                                     "c.account = g.account WHERE g.conversation_id = ? ORDER BY "
                                     "g.account"));
  q.bind(1, conversation);
  std::vector<GroupMember> out;
  for (;;) {
    SOTTO_TRY_ASSIGN(bool found, q.step());
    if (!found) break;
    out.push_back(GroupMember{std::string(q.column_text(0)), std::string(q.column_text(1)),
                              q.column_int(2) != 0});
  }
  return out;
}

Result<bool> History::is_group_member(ConversationId conversation, const std::string& account) {
  SOTTO_TRY_ASSIGN(auto q, db_.query("SELECT 1 FROM group_members WHERE conversation_id = ? AND "
                                     "account = ?"));
  q.bind(1, conversation);
  q.bind_text(2, account);
  return q.step();
}

Result<uint32_t> History::group_member_count(ConversationId conversation,
                                             const std::string& except) {
  SOTTO_TRY_ASSIGN(auto q, db_.query("SELECT count(*) FROM group_members WHERE conversation_id = "
                                     "? AND account != ?"));
  q.bind(1, conversation);
  q.bind_text(2, except);
  SOTTO_TRY(q.step());
  return static_cast<uint32_t>(q.column_int(0));
}

Result<std::vector<std::pair<std::string, std::vector<uint32_t>>>> History::group_session_devices(
    ConversationId conversation, const std::string& except) {
  // `sessions` is the protocol store's table in the same database (name = account).
  SOTTO_TRY_ASSIGN(auto q, db_.query("SELECT g.account, s.device FROM group_members g LEFT JOIN "
                                     "sessions s ON s.name = g.account AND s.device > 0 WHERE "
                                     "g.conversation_id = ? AND g.account != ? ORDER BY "
                                     "g.account, s.device"));
  q.bind(1, conversation);
  q.bind_text(2, except);
  std::vector<std::pair<std::string, std::vector<uint32_t>>> out;
  for (;;) {
    SOTTO_TRY_ASSIGN(bool found, q.step());
    if (!found) break;
    std::string_view account = q.column_text(0);
    if (out.empty() || out.back().first != account)
      out.emplace_back(std::string(account), std::vector<uint32_t>{});
    if (!q.column_is_null(1)) out.back().second.push_back(static_cast<uint32_t>(q.column_int(1)));
  }
  return out;
}

Result<std::vector<std::pair<std::string, uint32_t>>> History::sender_key_holders(
    ConversationId conversation) {
  SOTTO_TRY_ASSIGN(auto q, db_.query("SELECT account, device FROM sender_key_holders WHERE "
                                     "conversation_id = ?"));
  q.bind(1, conversation);
  std::vector<std::pair<std::string, uint32_t>> out;
  for (;;) {
    SOTTO_TRY_ASSIGN(bool found, q.step());
    if (!found) break;
    out.emplace_back(std::string(q.column_text(0)), static_cast<uint32_t>(q.column_int(1)));
  }
  return out;
}

Status History::add_sender_key_holder(ConversationId conversation, const std::string& account,
                                      uint32_t device) {
  SOTTO_TRY_ASSIGN(auto q, db_.query("INSERT OR IGNORE INTO sender_key_holders (conversation_id, "
                                     "account, device) VALUES (?, ?, ?)"));
  q.bind(1, conversation);
  q.bind_text(2, account);
  q.bind(3, int64_t{device});
  return q.run();
}

Status History::clear_sender_key_holders(ConversationId conversation) {
  SOTTO_TRY_ASSIGN(auto q, db_.query("DELETE FROM sender_key_holders WHERE conversation_id = ?"));
  q.bind(1, conversation);
  return q.run();
}

Status History::record_sender_key_id(const std::string& account, uint32_t device, uint32_t key_id,
                                     ByteView group_id) {
  SOTTO_TRY_ASSIGN(auto q, db_.query("INSERT OR REPLACE INTO sender_key_ids (account, device, "
                                     "key_id, group_id) VALUES (?, ?, ?, ?)"));
  q.bind_text(1, account);
  q.bind(2, int64_t{device});
  q.bind(3, int64_t{key_id});
  q.bind(4, group_id);
  return q.run();
}

Result<std::optional<Bytes>> History::group_for_sender_key(const std::string& account,
                                                           uint32_t device, uint32_t key_id) {
  SOTTO_TRY_ASSIGN(auto q, db_.query("SELECT group_id FROM sender_key_ids WHERE account = ? AND "
                                     "device = ? AND key_id = ?"));
  q.bind_text(1, account);
  q.bind(2, int64_t{device});
  q.bind(3, int64_t{key_id});
  SOTTO_TRY_ASSIGN(bool found, q.step());
  if (!found) return std::optional<Bytes>();
  return std::optional<Bytes>(to_bytes(q.column_blob(0)));
}

// ---- outbox ----

// The outbox sends in lanes: the items to one account (target), those of one group
// (group_conv), and own-device syncs (neither). Within a lane the items leave strictly in the
// order they were queued, so an item that waits for a retry, or is held for an identity
// change, holds back the later ones of its lane and no others: the relay gives each message
// its position in the conversation when it commits it. This condition on `outbox o` is true
// for the oldest item of its lane (index outbox_by_lane). A macro, so that the queries stay
// string literals (Database caches statements by their text's address).
#define SOTTO_OUTBOX_LANE_HEAD                                                         \
  "NOT EXISTS (SELECT 1 FROM outbox e WHERE e.target IS o.target AND e.group_conv IS " \
  "o.group_conv AND e.id < o.id)"

Result<int64_t> History::enqueue(const OutboxItem& item, uint64_t now_ms) {
  SOTTO_TRY_ASSIGN(auto q, db_.query("INSERT INTO outbox (message_id, kind, target, "
                                     "target_device, content, own_content, urgent, message, "
                                     "not_before_ms, created_ms, group_conv, accounts) VALUES (?, "
                                     "?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"));
  q.bind(1, item.message_id);
  q.bind(2, static_cast<int64_t>(item.kind));
  if (item.target)
    q.bind_text(3, *item.target);
  else
    q.bind_null(3);
  if (item.target_device)
    q.bind(4, int64_t{*item.target_device});
  else
    q.bind_null(4);
  q.bind(5, item.content);
  if (item.own_content)
    q.bind(6, *item.own_content);
  else
    q.bind_null(6);
  q.bind(7, int64_t{item.urgent});
  if (item.message)
    q.bind(8, *item.message);
  else
    q.bind_null(8);
  q.bind(9, static_cast<int64_t>(item.not_before_ms));
  q.bind(10, static_cast<int64_t>(now_ms));
  if (item.group_conv)
    q.bind(11, *item.group_conv);
  else
    q.bind_null(11);
  // NB: bound without a copy, so it must outlive run().
  std::string joined;
  for (const auto& a : item.accounts) joined += a + "\n";
  if (item.accounts.empty())
    q.bind_null(12);
  else
    q.bind_text(12, joined);
  SOTTO_TRY(q.run());
  return sqlite3_last_insert_rowid(db_.handle());
}

Result<std::optional<OutboxItem>> History::next_outbox(uint64_t now_ms) {
  // Only the oldest item of each lane may go (SOTTO_OUTBOX_LANE_HEAD): a message postponed by a
  // failure must not be overtaken by a later one to the same recipient or group.
  SOTTO_TRY_ASSIGN(
      auto q, db_.query("SELECT id, message_id, kind, target, target_device, content, "
                        "own_content, urgent, message, attempts, not_before_ms, "
                        "group_conv, accounts FROM outbox o WHERE held = 0 AND "
                        "not_before_ms <= ? AND " SOTTO_OUTBOX_LANE_HEAD " ORDER BY id LIMIT 1"));
  q.bind(1, static_cast<int64_t>(now_ms));
  SOTTO_TRY_ASSIGN(bool found, q.step());
  if (!found) return std::optional<OutboxItem>();
  OutboxItem it;
  it.id = q.column_int(0);
  it.message_id = to_bytes(q.column_blob(1));
  it.kind = static_cast<OutboxKind>(q.column_int(2));
  if (!q.column_is_null(3)) it.target = std::string(q.column_text(3));
  if (!q.column_is_null(4)) it.target_device = static_cast<uint32_t>(q.column_int(4));
  it.content = to_bytes(q.column_blob(5));
  if (!q.column_is_null(6)) it.own_content = to_bytes(q.column_blob(6));
  it.urgent = q.column_int(7) != 0;
  if (!q.column_is_null(8)) it.message = q.column_int(8);
  it.attempts = static_cast<int>(q.column_int(9));
  it.not_before_ms = static_cast<uint64_t>(q.column_int(10));
  if (!q.column_is_null(11)) it.group_conv = q.column_int(11);
  std::string accounts(q.column_text(12));
  for (size_t pos = 0; pos < accounts.size();) {
    size_t nl = accounts.find('\n', pos);
    if (nl == std::string::npos) nl = accounts.size();
    if (nl > pos) it.accounts.push_back(accounts.substr(pos, nl - pos));
    pos = nl + 1;
  }
  return std::optional<OutboxItem>(std::move(it));
}

Result<std::optional<uint64_t>> History::next_outbox_due() {
  SOTTO_TRY_ASSIGN(auto q, db_.query("SELECT min(not_before_ms) FROM outbox o WHERE held = 0 "
                                     "AND " SOTTO_OUTBOX_LANE_HEAD));
  SOTTO_TRY_ASSIGN(bool found, q.step());
  if (!found || q.column_is_null(0)) return std::optional<uint64_t>();
  return std::optional<uint64_t>(static_cast<uint64_t>(q.column_int(0)));
}

Status History::outbox_done(int64_t id) {
  SOTTO_TRY_ASSIGN(auto q, db_.query("DELETE FROM outbox WHERE id = ?"));
  q.bind(1, id);
  return q.run();
}

Status History::outbox_retry(int64_t id, uint64_t not_before_ms, const std::string& error) {
  SOTTO_TRY_ASSIGN(auto q,
                   db_.query("UPDATE OR FAIL outbox SET attempts = attempts + 1, not_before_ms = "
                             "?, last_error = ? WHERE id = ?"));
  q.bind(1, static_cast<int64_t>(not_before_ms));
  q.bind_text(2, error);
  q.bind(3, id);
  return q.run();
}

Status History::hold_outbox(const std::string& target, bool held) {
  SOTTO_TRY_ASSIGN(auto q, db_.query("UPDATE OR FAIL outbox SET held = ? WHERE target = ?"));
  q.bind(1, int64_t{held});
  q.bind_text(2, target);
  return q.run();
}

Result<int64_t> History::outbox_size() {
  SOTTO_TRY_ASSIGN(auto q, db_.query("SELECT count(*) FROM outbox"));
  SOTTO_TRY(q.step());
  return q.column_int(0);
}

// ---- receipts owed ----

Status History::add_pending_receipt(const PendingReceipt& r) {
  SOTTO_TRY_ASSIGN(auto q, db_.query("INSERT OR IGNORE INTO pending_receipts (author, type, "
                                     "message_id, at_ms) VALUES (?, ?, ?, ?)"));
  q.bind_text(1, r.author);
  q.bind(2, int64_t{r.type});
  q.bind(3, r.message_id);
  q.bind(4, static_cast<int64_t>(r.at_ms));
  return q.run();
}

Result<std::vector<PendingReceipt>> History::pending_receipts(size_t limit) {
  SOTTO_TRY_ASSIGN(auto q, db_.query("SELECT author, type, message_id, at_ms FROM "
                                     "pending_receipts ORDER BY author, type LIMIT ?"));
  q.bind(1, static_cast<int64_t>(limit));
  std::vector<PendingReceipt> out;
  for (;;) {
    SOTTO_TRY_ASSIGN(bool found, q.step());
    if (!found) break;
    out.push_back(PendingReceipt{std::string(q.column_text(0)), static_cast<int>(q.column_int(1)),
                                 to_bytes(q.column_blob(2)),
                                 static_cast<uint64_t>(q.column_int(3))});
  }
  return out;
}

Status History::remove_pending_receipt(const PendingReceipt& r) {
  SOTTO_TRY_ASSIGN(auto q, db_.query("DELETE FROM pending_receipts WHERE author = ? AND type = ? "
                                     "AND message_id = ?"));
  q.bind_text(1, r.author);
  q.bind(2, int64_t{r.type});
  q.bind(3, r.message_id);
  return q.run();
}

// ---- held envelopes ----

Status History::hold_envelope(const std::string& sender, ByteView envelope, uint64_t now_ms) {
  SOTTO_TRY_ASSIGN(auto q, db_.query("INSERT INTO held_envelopes (sender, envelope, received_ms) "
                                     "VALUES (?, ?, ?)"));
  q.bind_text(1, sender);
  q.bind(2, envelope);
  q.bind(3, static_cast<int64_t>(now_ms));
  return q.run();
}

Result<std::vector<HeldEnvelope>> History::held_envelopes(const std::string& sender) {
  SOTTO_TRY_ASSIGN(auto q, db_.query("SELECT id, sender, envelope FROM held_envelopes WHERE "
                                     "sender = ? ORDER BY id"));
  q.bind_text(1, sender);
  std::vector<HeldEnvelope> out;
  for (;;) {
    SOTTO_TRY_ASSIGN(bool found, q.step());
    if (!found) break;
    out.push_back(
        HeldEnvelope{q.column_int(0), std::string(q.column_text(1)), to_bytes(q.column_blob(2))});
  }
  return out;
}

Status History::remove_held(int64_t id) {
  SOTTO_TRY_ASSIGN(auto q, db_.query("DELETE FROM held_envelopes WHERE id = ?"));
  q.bind(1, id);
  return q.run();
}

// ---- group messages for a group not known yet ----

Result<bool> History::hold_group_message(ByteView group_id, const HeldGroupMessage& m,
                                         uint64_t now_ms) {
  {
    SOTTO_TRY_ASSIGN(auto q, db_.query("DELETE FROM held_group_messages WHERE received_ms < ?"));
    q.bind(1, static_cast<int64_t>(now_ms > kHeldGroupMessageTtlMs ? now_ms - kHeldGroupMessageTtlMs
                                                                   : 0));
    SOTTO_TRY(q.run());
  }
  {
    SOTTO_TRY_ASSIGN(auto q, db_.query("SELECT count(*) FROM held_group_messages"));
    SOTTO_TRY_ASSIGN(bool row, q.step());
    if (row && q.column_int(0) >= kMaxHeldGroupMessages) return false;
  }
  SOTTO_TRY_ASSIGN(auto q, db_.query("INSERT INTO held_group_messages (group_id, sender, device, "
                                     "sort_ms, message, received_ms) VALUES (?, ?, ?, ?, ?, ?)"));
  q.bind(1, group_id);
  q.bind_text(2, m.sender);
  q.bind(3, int64_t{m.device});
  q.bind(4, static_cast<int64_t>(m.sort_ms));
  q.bind(5, m.message);
  q.bind(6, static_cast<int64_t>(now_ms));
  SOTTO_TRY(q.run());
  return true;
}

Result<std::vector<HeldGroupMessage>> History::take_held_group_messages(ByteView group_id) {
  std::vector<HeldGroupMessage> out;
  {
    SOTTO_TRY_ASSIGN(auto q, db_.query("SELECT sender, device, sort_ms, message FROM "
                                       "held_group_messages WHERE group_id = ? ORDER BY id"));
    q.bind(1, group_id);
    for (;;) {
      SOTTO_TRY_ASSIGN(bool found, q.step());
      if (!found) break;
      out.push_back(
          HeldGroupMessage{std::string(q.column_text(0)), static_cast<uint32_t>(q.column_int(1)),
                           static_cast<uint64_t>(q.column_int(2)), to_bytes(q.column_blob(3))});
    }
  }
  if (out.empty()) return out;
  SOTTO_TRY_ASSIGN(auto q, db_.query("DELETE FROM held_group_messages WHERE group_id = ?"));
  q.bind(1, group_id);
  SOTTO_TRY(q.run());
  return out;
}

// Runs `delete_sql` ("DELETE FROM t WHERE created_ms < ?", a literal: statements are cached
// by their address) for the rows created more than `keep_ms` before now.
Status History::drop_older_rows(const char* delete_sql, uint64_t now_ms, uint64_t keep_ms) {
  SOTTO_TRY_ASSIGN(auto q, db_.query(delete_sql));
  q.bind(1, static_cast<int64_t>(now_ms > keep_ms ? now_ms - keep_ms : 0));
  return q.run();
}

// ---- group sends owed to a member whose safety number is in doubt ----

Status History::owe_group_send(const std::string& account, ByteView message_id,
                               ConversationId group, ByteView content, uint64_t now_ms,
                               uint64_t keep_ms) {
  SOTTO_TRY(drop_older_rows("DELETE FROM owed_group_sends WHERE created_ms < ?", now_ms, keep_ms));
  SOTTO_TRY_ASSIGN(auto q, db_.query("INSERT OR IGNORE INTO owed_group_sends (account, "
                                     "message_id, conversation_id, content, created_ms) "
                                     "VALUES (?, ?, ?, ?, ?)"));
  q.bind_text(1, account);
  q.bind(2, message_id);
  q.bind(3, group);
  q.bind(4, content);
  q.bind(5, static_cast<int64_t>(now_ms));
  return q.run();
}

Result<std::vector<OwedGroupSend>> History::take_owed_group_sends(const std::string& account,
                                                                  uint64_t since_ms) {
  std::vector<OwedGroupSend> out;
  {
    SOTTO_TRY_ASSIGN(auto q, db_.query("SELECT conversation_id, content FROM owed_group_sends "
                                       "WHERE account = ? AND created_ms >= ? ORDER BY id"));
    q.bind_text(1, account);
    q.bind(2, static_cast<int64_t>(since_ms));
    for (;;) {
      SOTTO_TRY_ASSIGN(bool found, q.step());
      if (!found) break;
      out.push_back(OwedGroupSend{q.column_int(0), to_bytes(q.column_blob(1))});
    }
  }
  SOTTO_TRY_ASSIGN(auto q, db_.query("DELETE FROM owed_group_sends WHERE account = ?"));
  q.bind_text(1, account);
  SOTTO_TRY(q.run());
  return out;
}

// ---- envelopes that did not decrypt, asked for again ----

Status History::record_failed_envelope(const std::string& sender, uint32_t device,
                                       ByteView message_id, uint64_t server_ms, bool asked,
                                       uint64_t now_ms, uint64_t keep_ms) {
  SOTTO_TRY(drop_older_rows("DELETE FROM failed_envelopes WHERE created_ms < ?", now_ms, keep_ms));
  SOTTO_TRY_ASSIGN(auto q, db_.query("INSERT OR IGNORE INTO failed_envelopes (sender, device, "
                                     "message_id, server_ms, asked, created_ms) "
                                     "VALUES (?, ?, ?, ?, ?, ?)"));
  q.bind_text(1, sender);
  q.bind(2, int64_t{device});
  q.bind(3, message_id);
  q.bind(4, static_cast<int64_t>(server_ms));
  q.bind(5, int64_t{asked});
  q.bind(6, static_cast<int64_t>(now_ms));
  return q.run();
}

Result<std::vector<std::pair<std::string, uint32_t>>> History::devices_owing_asks() {
  std::vector<std::pair<std::string, uint32_t>> out;
  SOTTO_TRY_ASSIGN(auto q, db_.query("SELECT DISTINCT sender, device FROM failed_envelopes "
                                     "WHERE asked = 0"));
  for (;;) {
    SOTTO_TRY_ASSIGN(bool found, q.step());
    if (!found) break;
    out.emplace_back(std::string(q.column_text(0)), static_cast<uint32_t>(q.column_int(1)));
  }
  return out;
}

Result<std::vector<Bytes>> History::take_unasked(const std::string& sender, uint32_t device,
                                                 size_t limit) {
  std::vector<Bytes> out;
  {
    SOTTO_TRY_ASSIGN(auto q, db_.query("SELECT message_id FROM failed_envelopes WHERE asked = 0 "
                                       "AND sender = ? AND device = ? ORDER BY server_ms "
                                       "LIMIT ?"));
    q.bind_text(1, sender);
    q.bind(2, int64_t{device});
    q.bind(3, static_cast<int64_t>(limit));
    for (;;) {
      SOTTO_TRY_ASSIGN(bool found, q.step());
      if (!found) break;
      out.push_back(to_bytes(q.column_blob(0)));
    }
  }
  for (const auto& id : out) {
    SOTTO_TRY_ASSIGN(auto q, db_.query("UPDATE failed_envelopes SET asked = 1 WHERE sender = ? "
                                       "AND message_id = ?"));
    q.bind_text(1, sender);
    q.bind(2, id);
    SOTTO_TRY(q.run());
  }
  return out;
}

Result<uint64_t> History::take_failed_position(const std::string& sender, ByteView message_id) {
  uint64_t ms = 0;
  {
    SOTTO_TRY_ASSIGN(auto q, db_.query("SELECT server_ms FROM failed_envelopes WHERE "
                                       "sender = ? AND message_id = ?"));
    q.bind_text(1, sender);
    q.bind(2, message_id);
    SOTTO_TRY_ASSIGN(bool found, q.step());
    if (!found) return uint64_t{0};
    ms = static_cast<uint64_t>(q.column_int(0));
  }
  SOTTO_TRY_ASSIGN(auto q, db_.query("DELETE FROM failed_envelopes WHERE sender = ? AND "
                                     "message_id = ?"));
  q.bind_text(1, sender);
  q.bind(2, message_id);
  SOTTO_TRY(q.run());
  return ms;
}

// ---- session resets ----

Result<std::optional<uint64_t>> History::last_reset(const std::string& account, uint32_t device) {
  SOTTO_TRY_ASSIGN(auto q, db_.query("SELECT sent_ms FROM session_resets WHERE account = ? AND "
                                     "device = ?"));
  q.bind_text(1, account);
  q.bind(2, int64_t{device});
  SOTTO_TRY_ASSIGN(bool found, q.step());
  if (!found) return std::optional<uint64_t>();
  return std::optional<uint64_t>(static_cast<uint64_t>(q.column_int(0)));
}

Status History::record_reset(const std::string& account, uint32_t device, uint64_t now_ms) {
  SOTTO_TRY_ASSIGN(auto q, db_.query("INSERT OR REPLACE INTO session_resets (account, device, "
                                     "sent_ms) VALUES (?, ?, ?)"));
  q.bind_text(1, account);
  q.bind(2, int64_t{device});
  q.bind(3, static_cast<int64_t>(now_ms));
  return q.run();
}

}  // namespace sotto
