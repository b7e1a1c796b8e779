#include "Schema.h"

#include <sqlcipher/sqlite3.h>

#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include "ScopedTransaction.h"

namespace sotto::db {
namespace {

// Each entry takes the schema from version i to i+1. Append only; never edit a shipped step.
constexpr const char* kMigrations[] = {
    // 0 -> 1: libsignal's five stores and the local identity.
    R"sql(
CREATE TABLE local_identity (
  id              INTEGER PRIMARY KEY CHECK (id = 1),
  account         TEXT    NOT NULL,
  device_id       INTEGER NOT NULL,
  registration_id INTEGER NOT NULL,
  public_key      BLOB    NOT NULL,
  key_pair        BLOB    NOT NULL
);
CREATE TABLE identities (
  name TEXT PRIMARY KEY,
  key  BLOB NOT NULL
) WITHOUT ROWID;
-- A rowid table, not WITHOUT ROWID: a session record is 1-3 KiB, above what an index b-tree
-- keeps on the leaf page, so it would spill to overflow pages rewritten on every message.
CREATE TABLE sessions (
  id     INTEGER PRIMARY KEY,
  name   TEXT    NOT NULL,
  device INTEGER NOT NULL,
  record BLOB    NOT NULL,
  UNIQUE (name, device)
);
CREATE TABLE prekeys (
  id     INTEGER PRIMARY KEY,
  record BLOB NOT NULL
);
CREATE TABLE signed_prekeys (
  id     INTEGER PRIMARY KEY,
  record BLOB NOT NULL
);
CREATE TABLE sender_keys (
  id       INTEGER PRIMARY KEY,
  group_id BLOB    NOT NULL,
  name     TEXT    NOT NULL,
  device   INTEGER NOT NULL,
  record   BLOB    NOT NULL,
  UNIQUE (group_id, name, device)
);
CREATE TABLE counters (
  name  TEXT PRIMARY KEY,
  value INTEGER NOT NULL
) WITHOUT ROWID;
)sql",
    // 1 -> 2: conversations and message history. The search index (a later step) is kept in
    // step with `messages` by triggers, so every column it reads is named here with its rule.
    R"sql(
CREATE TABLE conversations (
  id               INTEGER PRIMARY KEY,
  kind             INTEGER NOT NULL,            -- 1 direct (one peer account), 2 group
  peer             TEXT UNIQUE,                 -- direct: the other account's id (32 hex)
  group_id         BLOB UNIQUE,                 -- group: the 32-byte group id
  expire_timer_s   INTEGER NOT NULL DEFAULT 0,  -- disappearing-message timer; 0 = off
  unread           INTEGER NOT NULL DEFAULT 0,  -- incoming messages not yet marked read
  last_message     INTEGER,                     -- messages.id of the newest message shown
  last_activity_ms INTEGER NOT NULL DEFAULT 0,
  created_ms       INTEGER NOT NULL
);
-- One row per message shown in a conversation, sent or received. `id` is the local row id
-- and the search index's docid. Searchable rows: kind = 1, deleted = 0, body or
-- attachment_names not NULL. A deleted or edited message rewrites body/attachment_names in
-- place (NULL when deleted); an expired message's row is deleted.
CREATE TABLE messages (
  id               INTEGER PRIMARY KEY,
  conversation_id  INTEGER NOT NULL REFERENCES conversations (id),
  message_id       BLOB    NOT NULL,            -- 16 bytes, chosen by the author
  sender           TEXT    NOT NULL,            -- the author's account id (32 hex)
  sender_device    INTEGER NOT NULL,
  outgoing         INTEGER NOT NULL,            -- 1: written by this account
  kind             INTEGER NOT NULL,            -- 1 message, 2 notice (group change, reset, ...)
  body             TEXT,                        -- current text; NULL when deleted or none
  attachment_names TEXT,                        -- attachment file names, one per line
  has_attachment   INTEGER NOT NULL DEFAULT 0,
  sent_ms          INTEGER NOT NULL,            -- the author's clock
  sort_ms          INTEGER NOT NULL,            -- relay time (local time while pending)
  status           INTEGER NOT NULL,
  edited_ms        INTEGER,                     -- last edit, NULL if never edited
  deleted          INTEGER NOT NULL DEFAULT 0,  -- 1: deleted for everyone (a tombstone)
  expire_timer_s   INTEGER NOT NULL DEFAULT 0,
  expires_ms       INTEGER,                     -- when it disappears; NULL: never or not yet
  quote            BLOB,                        -- message id it replies to
  extra            BLOB,                        -- serialized details (attachments, notice)
  recipients       INTEGER NOT NULL DEFAULT 0,  -- outgoing: accounts it was sent to
  UNIQUE (sender, message_id)
);
CREATE INDEX messages_by_conversation ON messages (conversation_id, sort_ms, id);
CREATE INDEX messages_expiring ON messages (expires_ms) WHERE expires_ms IS NOT NULL;
-- Delivered / read receipts per recipient account of an outgoing message.
CREATE TABLE message_receipts (
  message INTEGER NOT NULL,                     -- messages.id
  account TEXT    NOT NULL,                     -- who delivered or read it
  status  INTEGER NOT NULL,                     -- 2 delivered, 3 read
  at_ms   INTEGER NOT NULL,
  PRIMARY KEY (message, account)
) WITHOUT ROWID;
-- This device's account at the relay.
CREATE TABLE account (
  id              INTEGER PRIMARY KEY CHECK (id = 1),
  account         TEXT,                         -- 32 hex; NULL until the relay assigned it
  device_id       INTEGER,
  handle          TEXT,
  auth_secret     BLOB    NOT NULL,             -- this device's 32-byte relay password
  state           INTEGER NOT NULL,             -- 0 registering, 1 registered, 2 removed
  presence_hidden INTEGER NOT NULL DEFAULT 0,
  read_receipts   INTEGER NOT NULL DEFAULT 1
);
CREATE TABLE contacts (
  account      TEXT PRIMARY KEY,
  handle       TEXT,
  identity_key BLOB,                            -- as the relay reported it at lookup
  added_ms     INTEGER NOT NULL,
  blocked      INTEGER NOT NULL DEFAULT 0
) WITHOUT ROWID;
-- What waits to be sent, in order. A row is written in the same transaction as the history
-- row it sends, and deleted in the transaction that records the relay's OK.
CREATE TABLE outbox (
  id            INTEGER PRIMARY KEY,
  message_id    BLOB    NOT NULL UNIQUE,        -- envelope message id: the relay's idempotency key
  kind          INTEGER NOT NULL,               -- see Outbox.h
  target        TEXT,                           -- recipient account; NULL: own devices only
  target_device INTEGER,                        -- set: a targeted send to this one device
  content       BLOB    NOT NULL,               -- serialized Content for the recipient
  own_content   BLOB,                           -- serialized Content for own other devices
  urgent        INTEGER NOT NULL,
  message       INTEGER,                        -- messages.id whose status follows this send
  attempts      INTEGER NOT NULL DEFAULT 0,
  not_before_ms INTEGER NOT NULL DEFAULT 0,
  held          INTEGER NOT NULL DEFAULT 0,     -- 1: the target's identity key changed
  last_error    TEXT,
  created_ms    INTEGER NOT NULL
);
-- Receipts owed to authors, batched into Receipt messages.
CREATE TABLE pending_receipts (
  author     TEXT    NOT NULL,
  type       INTEGER NOT NULL,                  -- 1 delivered, 2 read
  message_id BLOB    NOT NULL,
  at_ms      INTEGER NOT NULL,
  PRIMARY KEY (author, type, message_id)
) WITHOUT ROWID;
-- Envelopes from an account whose identity key changed, kept until the user accepts the new
-- key (then decrypted) or deletes the conversation.
CREATE TABLE held_envelopes (
  id          INTEGER PRIMARY KEY,
  sender      TEXT    NOT NULL,
  envelope    BLOB    NOT NULL,                 -- serialized wire.Envelope
  received_ms INTEGER NOT NULL
);
-- When this device last asked a peer device to rebuild a session (at most one per hour).
CREATE TABLE session_resets (
  account TEXT    NOT NULL,
  device  INTEGER NOT NULL,
  sent_ms INTEGER NOT NULL,
  PRIMARY KEY (account, device)
) WITHOUT ROWID;
)sql",
    // 2 -> 3: full-text search over `messages`; SearchIndex.h says how it keeps in step.
    R"sql(
CREATE TABLE search_state (
  id            INTEGER PRIMARY KEY CHECK (id = 1),
  recent_from   INTEGER NOT NULL,            -- messages.id >= recent_from: in search_recent
  rebuild_next  INTEGER,                     -- NULL: complete; else ids >= it await a rebuild
  rebuild_total INTEGER NOT NULL DEFAULT 0,  -- messages when the rebuild started (progress)
  purge_recent  INTEGER NOT NULL DEFAULT 0,  -- documents taken out since the last purge
  purge_archive INTEGER NOT NULL DEFAULT 0
);
-- History written before search existed is indexed by a rebuild.
INSERT INTO search_state (id, recent_from, rebuild_next, rebuild_total)
  SELECT 1, coalesce(max(id), 0) + 1, min(id), count(*) FROM messages;
-- Searchable messages written in the current transaction, indexed just before it commits.
CREATE TABLE search_queue (id INTEGER PRIMARY KEY);
-- Bounds of sort_ms per 1,024 message ids (block = id >> 10). Only ever widened: a bound, not
-- an exact range.
CREATE TABLE search_time_blocks (
  block       INTEGER PRIMARY KEY,
  min_sort_ms INTEGER NOT NULL,
  max_sort_ms INTEGER NOT NULL
);
INSERT INTO search_time_blocks
  SELECT id >> 10, min(sort_ms), max(sort_ms) FROM messages GROUP BY id >> 10;
-- What the index holds for a message: its text and, for filters, its conversation, author and
-- attachments as the tokens \x02c<id>, \x02s<account>, \x02a, which no typed text produces.
CREATE VIEW search_source AS
  SELECT id AS docid, body, attachment_names,
         char(2) || 'c' || conversation_id || ' ' || char(2) || 's' || sender ||
           CASE WHEN has_attachment THEN ' ' || char(2) || 'a' ELSE '' END AS meta
  FROM messages
  WHERE kind = 1 AND deleted = 0 AND (body IS NOT NULL OR attachment_names IS NOT NULL);
-- What each part of the index holds right now: FTS reads a document's old text back through
-- these to take it out, and 'integrity-check' compares the index with them.
CREATE VIEW search_recent_docs AS
  SELECT s.docid AS rowid, s.body, s.attachment_names, s.meta
  FROM search_source s, search_state t
  WHERE s.docid >= t.recent_from AND (t.rebuild_next IS NULL OR s.docid < t.rebuild_next)
    AND s.docid NOT IN (SELECT id FROM search_queue);
CREATE VIEW search_archive_docs AS
  SELECT s.docid AS rowid, s.body, s.attachment_names, s.meta
  FROM search_source s, search_state t
  WHERE s.docid < t.recent_from AND (t.rebuild_next IS NULL OR s.docid < t.rebuild_next)
    AND s.docid NOT IN (SELECT id FROM search_queue);
CREATE VIRTUAL TABLE search_recent USING fts4(content="search_recent_docs", body,
  attachment_names, meta, tokenize=sotto, order=desc, prefix="3");
CREATE VIRTUAL TABLE search_archive USING fts4(content="search_archive_docs", body,
  attachment_names, meta, tokenize=sotto, order=desc, prefix="3");
CREATE TRIGGER search_insert AFTER INSERT ON messages
  WHEN new.kind = 1 AND new.deleted = 0
   AND (new.body IS NOT NULL OR new.attachment_names IS NOT NULL)
   AND new.id < coalesce((SELECT rebuild_next FROM search_state), new.id + 1)
BEGIN
  INSERT OR IGNORE INTO search_queue (id) VALUES (new.id);
END;
-- BEFORE: an external-content index reads the old text from the row to take it out.
CREATE TRIGGER search_update_recent
  BEFORE UPDATE OF kind, deleted, body, attachment_names, conversation_id, sender,
    has_attachment ON messages
  WHEN EXISTS (SELECT 1 FROM search_recent_docs WHERE rowid = old.id)
BEGIN
  DELETE FROM search_recent WHERE docid = old.id;
  UPDATE search_state SET purge_recent = purge_recent + 1;
END;
CREATE TRIGGER search_update_archive
  BEFORE UPDATE OF kind, deleted, body, attachment_names, conversation_id, sender,
    has_attachment ON messages
  WHEN EXISTS (SELECT 1 FROM search_archive_docs WHERE rowid = old.id)
BEGIN
  DELETE FROM search_archive WHERE docid = old.id;
  UPDATE search_state SET purge_archive = purge_archive + 1;
END;
CREATE TRIGGER search_update_queue
  AFTER UPDATE OF kind, deleted, body, attachment_names, conversation_id, sender,
    has_attachment ON messages
  WHEN new.kind = 1 AND new.deleted = 0
   AND (new.body IS NOT NULL OR new.attachment_names IS NOT NULL)
   AND new.id < coalesce((SELECT rebuild_next FROM search_state), new.id + 1)
BEGIN
  INSERT OR IGNORE INTO search_queue (id) VALUES (new.id);
END;
CREATE TRIGGER search_delete_recent BEFORE DELETE ON messages
  WHEN EXISTS (SELECT 1 FROM search_recent_docs WHERE rowid = old.id)
BEGIN
  DELETE FROM search_recent WHERE docid = old.id;
  UPDATE search_state SET purge_recent = purge_recent + 1;
END;
CREATE TRIGGER search_delete_archive BEFORE DELETE ON messages
  WHEN EXISTS (SELECT 1 FROM search_archive_docs WHERE rowid = old.id)
BEGIN
  DELETE FROM search_archive WHERE docid = old.id;
  UPDATE search_state SET purge_archive = purge_archive + 1;
END;
CREATE TRIGGER search_delete_queue AFTER DELETE ON messages BEGIN
  DELETE FROM search_queue WHERE id = old.id;
END;
CREATE TRIGGER search_time_insert AFTER INSERT ON messages BEGIN
  INSERT OR IGNORE INTO search_time_blocks VALUES (new.id >> 10, new.sort_ms, new.sort_ms);
  UPDATE search_time_blocks SET min_sort_ms = min(min_sort_ms, new.sort_ms),
                                max_sort_ms = max(max_sort_ms, new.sort_ms)
    WHERE block = new.id >> 10 AND (new.sort_ms < min_sort_ms OR new.sort_ms > max_sort_ms);
END;
CREATE TRIGGER search_time_update AFTER UPDATE OF sort_ms ON messages BEGIN
  INSERT OR IGNORE INTO search_time_blocks VALUES (new.id >> 10, new.sort_ms, new.sort_ms);
  UPDATE search_time_blocks SET min_sort_ms = min(min_sort_ms, new.sort_ms),
                                max_sort_ms = max(max_sort_ms, new.sort_ms)
    WHERE block = new.id >> 10 AND (new.sort_ms < min_sort_ms OR new.sort_ms > max_sort_ms);
END;
)sql",
    // 3 -> 4: groups, sender-key bookkeeping and attachments.
    R"sql(
-- Group state lives only here and in other members' profiles; the relay never sees it.
CREATE TABLE groups (
  conversation_id INTEGER PRIMARY KEY,          -- conversations.id (kind 2)
  group_id        BLOB    NOT NULL UNIQUE,      -- 32 random bytes chosen by the creator
  revision        INTEGER NOT NULL,
  snapshot        BLOB    NOT NULL,             -- the serialized GroupUpdate in force
  name            TEXT    NOT NULL DEFAULT '',
  member          INTEGER NOT NULL DEFAULT 1    -- 0: this account left or was removed
);
CREATE TABLE group_members (
  conversation_id INTEGER NOT NULL,
  account         TEXT    NOT NULL,
  handle          TEXT    NOT NULL DEFAULT '',
  admin           INTEGER NOT NULL DEFAULT 0,
  PRIMARY KEY (conversation_id, account)
) WITHOUT ROWID;
-- Devices that hold this device's current sender key for a group (cleared on rotation).
CREATE TABLE sender_key_holders (
  conversation_id INTEGER NOT NULL,
  account         TEXT    NOT NULL,
  device          INTEGER NOT NULL,
  PRIMARY KEY (conversation_id, account, device)
) WITHOUT ROWID;
-- A SENDER_KEY envelope names no group: the sender's key id says which one it is.
CREATE TABLE sender_key_ids (
  account  TEXT    NOT NULL,
  device   INTEGER NOT NULL,
  key_id   INTEGER NOT NULL,
  group_id BLOB    NOT NULL,
  PRIMARY KEY (account, device, key_id)
) WITHOUT ROWID;
-- Files sent and received. The pointer holds the blob's key: it never leaves this
-- encrypted file except inside end-to-end encrypted messages.
CREATE TABLE attachments (
  message    INTEGER NOT NULL,                  -- messages.id
  idx        INTEGER NOT NULL,
  pointer    BLOB    NOT NULL,                  -- serialized content.AttachmentPointer
  local_path TEXT,                              -- the decrypted file, once there is one
  PRIMARY KEY (message, idx)
) WITHOUT ROWID;
ALTER TABLE outbox ADD COLUMN group_conv INTEGER;  -- group sends: the group's conversation
ALTER TABLE outbox ADD COLUMN accounts TEXT;       -- GroupUpdate sends: recipients, one per line
)sql",
    // 4 -> 5: messages.conversation_id DEFERRABLE INITIALLY DEFERRED; done by
    // defer_message_conversation_key() below, since SQLite cannot alter a constraint.
    "",
    // 5 -> 6: the search index without FTS4's prefix index, and each CJK character a word of
    // its own (SearchTokenizer.h). The old index cannot answer the new queries: it is emptied
    // and every message waits for a rebuild, as SearchIndex::start_rebuild() does.
    R"sql(
DROP TABLE search_recent;
DROP TABLE search_archive;
CREATE VIRTUAL TABLE search_recent USING fts4(content="search_recent_docs", body,
  attachment_names, meta, tokenize=sotto, order=desc);
CREATE VIRTUAL TABLE search_archive USING fts4(content="search_archive_docs", body,
  attachment_names, meta, tokenize=sotto, order=desc);
DELETE FROM search_queue;
UPDATE search_state SET recent_from = coalesce((SELECT max(id) FROM messages), 0) + 1,
  rebuild_next = (SELECT min(id) FROM messages), rebuild_total = (SELECT count(*) FROM messages),
  purge_recent = 0, purge_archive = 0 WHERE id = 1;
)sql",
    // 6 -> 7: group messages for a group this device does not know yet.
    R"sql(
-- A newly linked device learns its account's groups from another device's answer; a group
-- message that arrives first waits here (decrypted: the ratchet has moved on) until the
-- group is known, then goes through the usual checks. Bounded in count and age (History).
-- IF NOT EXISTS: tests that take a profile back to an older user_version keep newer tables.
CREATE TABLE IF NOT EXISTS held_group_messages (
  id          INTEGER PRIMARY KEY,
  group_id    BLOB    NOT NULL,
  sender      TEXT    NOT NULL,
  device      INTEGER NOT NULL,
  sort_ms     INTEGER NOT NULL,
  message     BLOB    NOT NULL,                 -- serialized content.DataMessage
  received_ms INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS held_group_messages_by_group ON held_group_messages (group_id, id);
)sql",
    // 7 -> 8: the outbox sends each lane (a recipient account, a group) in order.
    R"sql(
CREATE INDEX IF NOT EXISTS outbox_by_lane ON outbox (target, group_conv, id);
)sql",
    // 8 -> 9: files stay encrypted in the profile.
    R"sql(
-- The file of each attachment this device keeps (sent from here, or downloaded), encrypted, as
-- attachments/blobs/<name>: a random name that says nothing about the file. A file sent or
-- downloaded is kept as the blob the relay holds, under the pointer's key; one an earlier
-- version kept in plain form (attachments.local_path) is encrypted under a key of its own and
-- its plain copy removed (ClientFiles.cpp). Only save_attachment() and read_attachment()
-- decrypt it, to where the app asks.
CREATE TABLE IF NOT EXISTS attachment_blobs (
  message INTEGER NOT NULL,                     -- attachments.message
  idx     INTEGER NOT NULL,                     -- attachments.idx
  name    TEXT    NOT NULL UNIQUE,              -- 32 random hex digits
  key     BLOB    NOT NULL,                     -- 32 bytes (secretstream)
  digest  BLOB    NOT NULL,                     -- SHA-256 of the whole encrypted file
  size    INTEGER NOT NULL,                     -- plaintext bytes
  PRIMARY KEY (message, idx)
) WITHOUT ROWID;
)sql",
    // 9 -> 10: safety numbers the user verified.
    R"sql(
-- The safety number with an account as it was when the user verified it (compared in person
-- or scanned): the account counts as verified while its current number is this one, so a
-- changed identity key undoes a verification by itself.
CREATE TABLE IF NOT EXISTS verified_numbers (
  account     TEXT    PRIMARY KEY,
  digits      TEXT    NOT NULL,
  verified_ms INTEGER NOT NULL
) WITHOUT ROWID;
)sql",
    // 10 -> 11: what a peer missed (group sends while its safety number was in doubt) and
    // what this device missed (envelopes asked for again); and search_state's
    // purge_archive_since_ms, when a purge first deferred erasing the archive's deletions
    // (SearchIndex.h), added by add_purge_archive_since() below: ALTER TABLE has no IF NOT
    // EXISTS, and tests take profiles back to older versions.
    R"sql(
-- A group message or change this device sent while `account`'s new identity key was not yet
-- accepted: that member got no copy (no session can be made with a key in doubt). After
-- accept_identity() each goes to it again, pairwise, in this order; rows older than the
-- resend window are dropped unsent.
CREATE TABLE IF NOT EXISTS owed_group_sends (
  id              INTEGER PRIMARY KEY,
  account         TEXT    NOT NULL,
  message_id      BLOB    NOT NULL,             -- the send's outbox message id
  conversation_id INTEGER NOT NULL,
  content         BLOB    NOT NULL,             -- serialized content.Content
  created_ms      INTEGER NOT NULL,
  UNIQUE (account, message_id)
);
-- Envelopes from a peer that did not decrypt and are asked for again (SessionReset): where
-- the message belongs when it comes back (the relay time of the original, not of the
-- resend), and for group messages the ids not asked for yet (a device is asked at most once
-- a minute, with every id it owes in one request). Rows older than the resend window go.
CREATE TABLE IF NOT EXISTS failed_envelopes (
  sender     TEXT    NOT NULL,
  device     INTEGER NOT NULL,
  message_id BLOB    NOT NULL,
  server_ms  INTEGER NOT NULL,
  asked      INTEGER NOT NULL,                  -- 0: waiting for the next request
  created_ms INTEGER NOT NULL,
  PRIMARY KEY (sender, message_id)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS failed_envelopes_unasked ON failed_envelopes (asked, sender, device);
)sql",
    // 11 -> 12: the group revision each message was sent at (messages.group_revision) and the
    // revision that last removed this account from a group (groups.left_revision), both added
    // by add_column() below, for the reason given at step 10 -> 11. A member gets exactly the
    // messages sent at revisions that had it: one sent before its removal but received after
    // it is shown, not dropped.
    R"sql(
SELECT 1;
)sql",
};
static_assert(std::size(kMigrations) == kSchemaVersion);

// An immediate foreign key on a table with triggers makes every INSERT keep a statement
// journal (the triggers make it a multi-row write, the key check may abort it), and SQLCipher
// encrypts every page copied there: history writes with search ran at a quarter of their
// unkeyed speed. A deferred key is checked at COMMIT instead and needs no statement journal.
// Deferral does not change the file format, so the declaration is edited in place, the way
// SQLite's ALTER TABLE documentation describes, and the schema cookie bumped so that other
// connections read the schema again (migrate() makes this one do so too). Returns the new
// cookie.
Result<int64_t> defer_message_conversation_key(Database& db) {
  constexpr const char* kFrom = "REFERENCES conversations (id),";
  constexpr const char* kTo = "REFERENCES conversations (id) DEFERRABLE INITIALLY DEFERRED,";
  int64_t version = 0;
  {
    SOTTO_TRY_ASSIGN(auto cookie, db.query("PRAGMA schema_version"));
    SOTTO_TRY_ASSIGN(bool row, cookie.step());
    if (!row) return make_error(ErrorCode::kStorageCorrupt, "the database has no schema version");
    version = cookie.column_int(0);
  }
  SOTTO_TRY(db.exec("PRAGMA writable_schema = ON"));
  Status edited = [&]() -> Status {
    SOTTO_TRY_ASSIGN(auto q, db.query("UPDATE sqlite_master SET sql = replace(sql, ?1, ?2) "
                                      "WHERE type = 'table' AND name = 'messages' AND "
                                      "instr(sql, ?1) > 0 AND instr(sql, ?2) = 0"));
    q.bind_text(1, kFrom).bind_text(2, kTo);
    SOTTO_TRY(q.run());
    if (sqlite3_changes(db.handle()) != 1)
      return make_error(ErrorCode::kStorageCorrupt,
                        "the messages table of this profile is not declared as expected; the "
                        "profile cannot be upgraded");
    return db.exec("PRAGMA schema_version = " + std::to_string(version + 1));
  }();
  Status off = db.exec("PRAGMA writable_schema = OFF");
  SOTTO_TRY(edited);
  SOTTO_TRY(off);
  return version + 1;
}

// Adds `column` to `table` with `declaration` unless the table has it already.
Status add_column(Database& db, const std::string& table, std::string_view column,
                  const std::string& declaration) {
  // PRAGMA table_info, not pragma_table_info(): SQLite 3.15 has no pragma functions. The
  // statement is not cached (Database::query caches by address): the table varies.
  std::string info = "PRAGMA table_info(" + table + ")";
  sqlite3_stmt* raw = nullptr;
  int rc = sqlite3_prepare_v2(db.handle(), info.c_str(), -1, &raw, nullptr);
  std::unique_ptr<sqlite3_stmt, int (*)(sqlite3_stmt*)> stmt(raw, sqlite3_finalize);
  while (rc == SQLITE_OK || rc == SQLITE_ROW) {
    rc = sqlite3_step(stmt.get());
    if (rc != SQLITE_ROW) break;
    const auto* name = reinterpret_cast<const char*>(sqlite3_column_text(stmt.get(), 1));
    if (name && column == name) return {};
  }
  if (rc != SQLITE_DONE) return db.error(rc, "reading the columns of " + table);
  return db.exec("ALTER TABLE " + table + " ADD COLUMN " + std::string(column) + " " + declaration);
}

}  // namespace

Status migrate(Database& db) {
  int64_t version = db.user_version();
  if (version < 0)
    return make_error(ErrorCode::kStorageCorrupt,
                      "cannot read the schema version of " + db.path().string());
  if (version > kSchemaVersion)
    return make_error(ErrorCode::kIncompatibleVersion,
                      "the profile was written by a newer sotto (schema " +
                          std::to_string(version) + ", this build knows " +
                          std::to_string(kSchemaVersion) + "); upgrade the app");
  // One transaction, or two when step 4 -> 5 edits sqlite_master in place: this connection
  // must read the schema again before a later step alters an edited table (ALTER TABLE ADD
  // COLUMN splices the new column in at an offset taken from the declaration it parsed).
  while (version < kSchemaVersion) {
    ScopedTransaction txn(db);
    SOTTO_TRY(txn.begin());
    std::optional<int64_t> edited_cookie;  // set when a step edited sqlite_master in place
    for (; version < kSchemaVersion && !edited_cookie; ++version) {
      SOTTO_TRY(db.exec(kMigrations[version]));
      if (version == 4) {
        SOTTO_TRY_ASSIGN(edited_cookie, defer_message_conversation_key(db));
      }
      // NULL: no purge has deferred the archive's deletions yet (SearchIndex.h).
      if (version == 10)
        SOTTO_TRY(add_column(db, "search_state", "purge_archive_since_ms", "INTEGER"));
      if (version == 11) {
        SOTTO_TRY(add_column(db, "messages", "group_revision", "INTEGER NOT NULL DEFAULT 0"));
        SOTTO_TRY(add_column(db, "groups", "left_revision", "INTEGER NOT NULL DEFAULT 0"));
      }
    }
    SOTTO_TRY(db.set_user_version(version));
    SOTTO_TRY(txn.commit());
    if (!edited_cookie) continue;
    // This connection set the new schema cookie itself, so it would go on with the
    // declarations it parsed before the edit. Writing the cookie in a transaction that then
    // rolls back makes SQLite drop its parsed schema (and expire prepared statements): the
    // next statement reads sqlite_master again.
    SOTTO_TRY(db.exec("BEGIN"));
    Status set = db.exec("PRAGMA schema_version = " + std::to_string(*edited_cookie));
    Status back = db.exec("ROLLBACK");
    SOTTO_TRY(set);
    SOTTO_TRY(back);
  }
  return {};
}

}  // namespace sotto::db
