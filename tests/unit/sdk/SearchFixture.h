// A profile whose history the tests write with plain SQL, the way the Client writes it (the
// column rules in Schema.cpp step 1 -> 2), so search is tested against the table contract and
// nothing else of the Client.
#pragma once

#include <gtest/gtest.h>
#include <sqlcipher/sqlite3.h>

#include <atomic>
#include <map>
#include <mutex>
#include <string>
#include <vector>

#include "ProfileAccess.h"
#include "TestSupport.h"
#include "sotto/Profile.h"

namespace sotto::test {

struct NewRow {
  std::string body;  // empty: NULL
  uint64_t sort_ms = 0;
  std::string sender = std::string(32, 'b');
  std::string attachment_names;  // one per line; empty: NULL
  int kind = 1;
  std::optional<uint64_t> expires_ms;
};

class SearchFixture : public ::testing::Test {
 protected:
  void SetUp() override { open(); }

  void open() {
    ProfileOptions options;
    options.clock = [this] { return now; };
    auto p = Profile::open_with_key(dir.path(), key, options);
    ASSERT_TRUE(p.ok()) << p.error().message;
    profile = std::move(*p);
  }
  void close() { profile.reset(); }

  db::Database& db() { return ProfileAccess::parts(*profile).db; }

  void exec(const std::string& sql) {
    auto s = db().exec(sql);
    ASSERT_TRUE(s.ok()) << s.error().message << " in " << sql;
  }

  int64_t conversation(const std::string& peer) {
    auto q = db().query("INSERT INTO conversations (kind, peer, created_ms) VALUES (1, ?, 0)");
    EXPECT_TRUE(q.ok());
    q->bind_text(1, peer);
    EXPECT_TRUE(q->run().ok());
    return sqlite3_last_insert_rowid(db().handle());
  }

  // Writes one message row; NB: inside a transaction (hold the profile's lock).
  Status insert(int64_t conv, const NewRow& m, int64_t& id) {
    SOTTO_TRY_ASSIGN(
        auto q,
        db().query(
            "INSERT OR IGNORE INTO messages (conversation_id, message_id, sender, sender_device, "
            "outgoing, kind, body, attachment_names, has_attachment, sent_ms, sort_ms, status, "
            "expires_ms) VALUES (?, ?, ?, 1, 0, ?, ?, ?, ?, ?, ?, 10, ?)"));
    Bytes mid(16, 0);
    uint64_t n = ++next_message_;
    for (int i = 0; i < 8; ++i) mid[15 - i] = static_cast<uint8_t>(n >> (8 * i));
    q.bind(1, conv).bind(2, ByteView(mid)).bind_text(3, m.sender).bind(4, int64_t{m.kind});
    if (m.body.empty())
      q.bind_null(5);
    else
      q.bind_text(5, m.body);
    if (m.attachment_names.empty())
      q.bind_null(6);
    else
      q.bind_text(6, m.attachment_names);
    q.bind(7, int64_t{!m.attachment_names.empty()});
    q.bind(8, static_cast<int64_t>(m.sort_ms)).bind(9, static_cast<int64_t>(m.sort_ms));
    if (m.expires_ms)
      q.bind(10, static_cast<int64_t>(*m.expires_ms));
    else
      q.bind_null(10);
    SOTTO_TRY(q.run());
    id = sqlite3_last_insert_rowid(db().handle());
    std::lock_guard guard(texts_mu_);
    texts_[id] = m.body.empty() ? m.attachment_names : m.body;
    return {};
  }

  // Inserts one message row in its own transaction; returns its id. NB: from the test's thread
  // (inside a transaction already, it joins that one).
  int64_t add(int64_t conv, const NewRow& m) {
    int64_t id = 0;
    auto write = [&] { return insert(conv, m, id); };
    Status s = db().depth() > 0 ? write() : profile->transaction(write);
    EXPECT_TRUE(s.ok()) << s.error().message;
    return id;
  }
  int64_t add(int64_t conv, const std::string& body, uint64_t sort_ms) {
    NewRow m;
    m.body = body;
    m.sort_ms = sort_ms;
    return add(conv, m);
  }

  // The Client's edit, delete for everyone and expiry sweep.
  void edit(int64_t id, const std::string& body) {
    auto s = profile->transaction([&]() -> Status {
      SOTTO_TRY_ASSIGN(auto q,
                       db().query("UPDATE messages SET body = ?, edited_ms = 1 WHERE id = ?"));
      q.bind_text(1, body).bind(2, id);
      return q.run();
    });
    ASSERT_TRUE(s.ok()) << s.error().message;
    std::lock_guard guard(texts_mu_);
    texts_[id] = body;
  }
  void delete_for_everyone(int64_t id) {
    auto s = profile->transaction([&]() -> Status {
      SOTTO_TRY_ASSIGN(auto q, db().query("UPDATE messages SET body = NULL, attachment_names = "
                                          "NULL, deleted = 1 WHERE id = ?"));
      q.bind(1, id);
      return q.run();
    });
    ASSERT_TRUE(s.ok()) << s.error().message;
  }
  void sweep_expired() {
    auto s = profile->transaction([&]() -> Status {
      SOTTO_TRY_ASSIGN(auto q, db().query("DELETE FROM messages WHERE expires_ms <= ?"));
      q.bind(1, static_cast<int64_t>(now));
      return q.run();
    });
    ASSERT_TRUE(s.ok()) << s.error().message;
  }

  SearchPage page(SearchQuery q) {
    auto r = profile->search(q);
    EXPECT_TRUE(r.ok()) << r.error().message;
    return r.ok() ? *r : SearchPage{};
  }
  // The rows of every page of `q`, in order.
  std::vector<int64_t> rows(SearchQuery q) {
    std::vector<int64_t> out;
    for (int pages = 0; pages < 1000; ++pages) {
      SearchPage p = page(q);
      for (const auto& h : p.hits) out.push_back(h.row);
      if (p.next_cursor.empty()) break;
      q.cursor = p.next_cursor;
    }
    return out;
  }
  std::vector<int64_t> rows(const std::string& text, SearchOrder order = SearchOrder::kNewest) {
    SearchQuery q;
    q.text = text;
    q.order = order;
    return rows(q);
  }
  std::string text_of(int64_t id) {
    std::lock_guard guard(texts_mu_);
    return texts_[id];
  }

  TempDir dir;
  SecureBytes key = test_key("search");
  uint64_t now = 1'700'000'000'000;
  std::unique_ptr<Profile> profile;

 private:
  std::atomic<uint64_t> next_message_{0};
  std::mutex texts_mu_;
  std::map<int64_t, std::string> texts_;
};

}  // namespace sotto::test
