#include "History.h"

#include <sqlcipher/sqlite3.h>

#include <charconv>

namespace sotto {

namespace {

// Columns read_message() expects, in this order.
#define SOTTO_MESSAGE_COLUMNS                                                              \
  "m.id, m.conversation_id, m.message_id, m.sender, m.sender_device, m.outgoing, m.kind, " \
  "m.body, m.sent_ms, m.sort_ms, m.status, m.recipients, m.extra"

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
  return static_cast<ConversationId>(sqlite3_last_insert_rowid(db_.handle()));
}

Result<std::optional<Conversation>> History::conversation(ConversationId id) {
  SOTTO_TRY_ASSIGN(auto q, db_.query("SELECT c.id, c.kind, c.peer, coalesce(k.handle, ''), "
                                     "c.unread, c.last_message, c.last_activity_ms FROM "
                                     "conversations c LEFT JOIN contacts k ON k.account = c.peer "
                                     "WHERE c.id = ?"));
  q.bind(1, id);
  SOTTO_TRY_ASSIGN(bool row, q.step());
  if (!row) return std::optional<Conversation>();
  Conversation c;
  c.id = q.column_int(0);
  c.kind = static_cast<ConversationKind>(q.column_int(1));
  c.peer = std::string(q.column_text(2));
  std::string handle(q.column_text(3));
  c.title = handle.empty() ? c.peer : "@" + handle;
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
  SOTTO_TRY_ASSIGN(auto q, db_.query("UPDATE conversations SET last_activity_ms = "
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
                                     "sent_ms, sort_ms, status, extra, recipients) VALUES (?, ?, "
                                     "?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"));
  q.bind(1, m.conversation);
  q.bind(2, m.message_id);
  q.bind_text(3, m.sender);
  q.bind(4, int64_t{m.sender_device});
  q.bind(5, int64_t{m.outgoing});
  q.bind(6, static_cast<int64_t>(m.kind));
  q.bind_text(7, m.body);
  q.bind(8, static_cast<int64_t>(m.sent_ms));
  q.bind(9, static_cast<int64_t>(m.sort_ms));
  q.bind(10, static_cast<int64_t>(m.status));
  if (m.extra.empty())
    q.bind_null(11);
  else
    q.bind(11, m.extra);
  q.bind(12, int64_t{m.recipients});
  SOTTO_TRY(q.run());
  if (sqlite3_changes(db_.handle()) == 0) return std::optional<int64_t>();
  int64_t row = sqlite3_last_insert_rowid(db_.handle());
  if (m.status == MessageStatus::kUnread) {
    SOTTO_TRY_ASSIGN(auto u,
                     db_.query("UPDATE conversations SET unread = unread + 1 WHERE id = ?"));
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

Result<bool> History::raise_status(int64_t row, MessageStatus status) {
  SOTTO_TRY_ASSIGN(auto q, db_.query("UPDATE messages SET status = ? WHERE id = ? AND outgoing = 1 "
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
  SOTTO_TRY_ASSIGN(auto q, db_.query("UPDATE message_receipts SET status = ?3, at_ms = ?4 WHERE "
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
    SOTTO_TRY_ASSIGN(auto u, db_.query("UPDATE messages SET status = 11 WHERE id = ?"));
    u.bind(1, s.row);
    SOTTO_TRY(u.run());
  }
  SOTTO_TRY_ASSIGN(auto c, db_.query("UPDATE conversations SET unread = (SELECT count(*) FROM "
                                     "messages WHERE conversation_id = ?1 AND status = 10) WHERE "
                                     "id = ?1"));
  c.bind(1, conversation);
  SOTTO_TRY(c.run());
  return out;
}

Result<bool> History::mark_one_read(int64_t row) {
  SOTTO_TRY_ASSIGN(auto q,
                   db_.query("UPDATE messages SET status = 11 WHERE id = ? AND status = 10"));
  q.bind(1, row);
  SOTTO_TRY(q.run());
  if (sqlite3_changes(db_.handle()) == 0) return false;
  SOTTO_TRY_ASSIGN(auto c, db_.query("UPDATE conversations SET unread = max(unread - 1, 0) WHERE "
                                     "id = (SELECT conversation_id FROM messages WHERE id = ?)"));
  c.bind(1, row);
  SOTTO_TRY(c.run());
  return true;
}

// ---- outbox ----

Result<int64_t> History::enqueue(const OutboxItem& item, uint64_t now_ms) {
  SOTTO_TRY_ASSIGN(auto q, db_.query("INSERT INTO outbox (message_id, kind, target, "
                                     "target_device, content, own_content, urgent, message, "
                                     "not_before_ms, created_ms) VALUES (?, ?, ?, ?, ?, ?, ?, ?, "
                                     "?, ?)"));
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
  SOTTO_TRY(q.run());
  return sqlite3_last_insert_rowid(db_.handle());
}

Result<std::optional<OutboxItem>> History::next_outbox(uint64_t now_ms) {
  SOTTO_TRY_ASSIGN(auto q, db_.query("SELECT id, message_id, kind, target, target_device, content, "
                                     "own_content, urgent, message, attempts, not_before_ms FROM "
                                     "outbox WHERE held = 0 AND not_before_ms <= ? ORDER BY id "
                                     "LIMIT 1"));
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
  return std::optional<OutboxItem>(std::move(it));
}

Result<std::optional<uint64_t>> History::next_outbox_due() {
  SOTTO_TRY_ASSIGN(auto q, db_.query("SELECT min(not_before_ms) FROM outbox WHERE held = 0"));
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
  SOTTO_TRY_ASSIGN(auto q, db_.query("UPDATE outbox SET attempts = attempts + 1, not_before_ms = "
                                     "?, last_error = ? WHERE id = ?"));
  q.bind(1, static_cast<int64_t>(not_before_ms));
  q.bind_text(2, error);
  q.bind(3, id);
  return q.run();
}

Status History::hold_outbox(const std::string& target, bool held) {
  SOTTO_TRY_ASSIGN(auto q, db_.query("UPDATE outbox SET held = ? WHERE target = ?"));
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
