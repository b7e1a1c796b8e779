// Searching a profile's history: result sets and order for each query form and filter,
// snippets, edits, deletes, expiry and pagination, on real SQLCipher profiles.
#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <set>
#include <thread>

#include "SearchFixture.h"

namespace sotto {
namespace {

using test::NewRow;
using R = std::vector<int64_t>;

class Search : public test::SearchFixture {
 protected:
  // A small history in two conversations, one row per line, times increasing with the row.
  void corpus() {
    a = conversation(std::string(32, 'a'));
    b = conversation(std::string(32, 'c'));
    m[0] = add(a, "Lunch at the café tomorrow?", 1000);
    m[1] = add(a, "Let's meet at the CAFE near the station", 2000);
    m[2] = add(b, "The meeting moved to next Friday", 3000);
    m[3] = add(b, "next week then, not Friday", 4000);
    m[4] = add(a, "我在北京工作，下周去上海", 5000);
    m[5] = add(b, "東京に住んでいます", 6000);
    m[6] = add(a, "학교에서 공부해요", 7000);
    m[7] = add(b, "Meetings, meetings, meetings: restaurant booked", 8000);
    m[8] = add(a, "naïve Ærø résumé", 9000);
    m[9] = add(b, "e-mail me the iPhone手机 photos", 10000);
  }
  int64_t a = 0, b = 0;
  int64_t m[10] = {};
};

TEST_F(Search, WordsAreFoundCaseAndAccentInsensitivelyNewestFirst) {
  corpus();
  EXPECT_EQ(rows("cafe"), (R{m[1], m[0]}));
  EXPECT_EQ(rows("CAFÉ"), (R{m[1], m[0]}));
  EXPECT_EQ(rows("naive resume"), (R{m[8]}));
  EXPECT_EQ(rows("friday"), (R{m[3], m[2]}));
  EXPECT_EQ(rows("nothing-like-this"), R{});
}

TEST_F(Search, AllWordsMustMatch) {
  corpus();
  EXPECT_EQ(rows("next friday"), (R{m[3], m[2]}));
  EXPECT_EQ(rows("friday meeting"), (R{m[2]}));
  EXPECT_EQ(rows("cafe station"), (R{m[1]}));
}

TEST_F(Search, PhrasesMatchExactly) {
  corpus();
  EXPECT_EQ(rows("\"next Friday\""), (R{m[2]}));
  EXPECT_EQ(rows("\"friday next\""), R{});
  EXPECT_EQ(rows("\"at the cafe\""), (R{m[1], m[0]}));
  EXPECT_EQ(rows("e-mail"), (R{m[9]}));  // a word with a hyphen is a phrase: e, mail
  EXPECT_EQ(rows("\"mail me\""), (R{m[9]}));
}

TEST_F(Search, PrefixesMatchWordBeginnings) {
  corpus();
  EXPECT_EQ(rows("meet*"), (R{m[7], m[2], m[1]}));
  EXPECT_EQ(rows("restau*"), (R{m[7]}));
  EXPECT_EQ(rows("\"next fri*\""), (R{m[2]}));
}

TEST_F(Search, ExclusionsLeaveWordsAndPhrasesOut) {
  corpus();
  EXPECT_EQ(rows("friday -week"), (R{m[2]}));
  EXPECT_EQ(rows("cafe -\"the station\""), (R{m[0]}));
  EXPECT_EQ(rows("meet* -meetings"), (R{m[2], m[1]}));
  EXPECT_EQ(rows("cafe -tomorrow -station"), R{});
}

TEST_F(Search, ChineseJapaneseAndKoreanWordsAreFoundInsideSentences) {
  corpus();
  EXPECT_EQ(rows("北京"), (R{m[4]}));
  EXPECT_EQ(rows("上海"), (R{m[4]}));
  EXPECT_EQ(rows("工作"), (R{m[4]}));
  EXPECT_EQ(rows("北京工作"), (R{m[4]}));
  EXPECT_EQ(rows("京"), (R{m[5], m[4]}));  // one character: wherever it stands
  EXPECT_EQ(rows("海"), (R{m[4]}));        // also as the last character of a run
  EXPECT_EQ(rows("京北"), R{});
  EXPECT_EQ(rows("東京"), (R{m[5]}));
  EXPECT_EQ(rows("住んで"), (R{m[5]}));
  EXPECT_EQ(rows("학교"), (R{m[6]}));
  EXPECT_EQ(rows("공부"), (R{m[6]}));
  EXPECT_EQ(rows("手机"), (R{m[9]}));
  EXPECT_EQ(rows("iphone"), (R{m[9]}));
  EXPECT_EQ(rows("\"iphone手机\""), (R{m[9]}));
  EXPECT_EQ(rows("北京 -上海"), R{});
}

TEST_F(Search, NoticesAndDeletedMessagesAreNeverSearchable) {
  int64_t c = conversation(std::string(32, 'a'));
  NewRow notice;
  notice.body = "Alice changed the group name to Picnic";
  notice.kind = 2;
  notice.sort_ms = 10;
  add(c, notice);
  int64_t kept = add(c, "Picnic on Sunday", 20);
  EXPECT_EQ(rows("picnic"), (R{kept}));
}

TEST_F(Search, EditedMessageIsFoundByItsNewTextOnly) {
  int64_t c = conversation(std::string(32, 'a'));
  int64_t id = add(c, "see you at the harbour", 10);
  int64_t other = add(c, "the harbour is closed", 20);
  edit(id, "see you at the station");
  EXPECT_EQ(rows("harbour"), (R{other}));
  EXPECT_EQ(rows("station"), (R{id}));
  EXPECT_EQ(rows("\"see you\""), (R{id}));
  // Edited twice in one transaction: only the last text counts.
  ASSERT_TRUE(profile
                  ->transaction([&]() -> Status {
                    SOTTO_TRY(db().exec("UPDATE messages SET body = 'first draft' WHERE id = " +
                                        std::to_string(id)));
                    return db().exec("UPDATE messages SET body = 'final words' WHERE id = " +
                                     std::to_string(id));
                  })
                  .ok());
  EXPECT_EQ(rows("station"), R{});
  EXPECT_EQ(rows("draft"), R{});
  EXPECT_EQ(rows("final"), (R{id}));
}

TEST_F(Search, DeletedForEveryoneIsNeverReturned) {
  int64_t c = conversation(std::string(32, 'a'));
  NewRow with_file;
  with_file.body = "the secret plan";
  with_file.attachment_names = "plan.pdf";
  with_file.sort_ms = 10;
  int64_t id = add(c, with_file);
  int64_t other = add(c, "no plan at all", 20);
  delete_for_everyone(id);
  EXPECT_EQ(rows("plan"), (R{other}));
  EXPECT_EQ(rows("secret"), R{});
  EXPECT_EQ(rows("pdf"), R{});
}

TEST_F(Search, ExpiredMessagesAreNeverReturnedEvenBeforeTheSweep) {
  int64_t c = conversation(std::string(32, 'a'));
  NewRow vanishing;
  vanishing.body = "meet me at midnight";
  vanishing.sort_ms = 10;
  vanishing.expires_ms = now + 60'000;
  int64_t id = add(c, vanishing);
  int64_t lasting = add(c, "midnight snack", 20);
  EXPECT_EQ(rows("midnight"), (R{lasting, id}));
  now += 60'000;  // the profile's clock reaches expires_ms
  EXPECT_EQ(rows("midnight"), (R{lasting}));
  EXPECT_EQ(rows("midnight", SearchOrder::kRelevance), (R{lasting}));
  sweep_expired();
  EXPECT_EQ(rows("midnight"), (R{lasting}));
  EXPECT_EQ(rows("meet"), R{});
}

TEST_F(Search, RolledBackMessagesAreNotIndexed) {
  int64_t c = conversation(std::string(32, 'a'));
  auto s = profile->transaction([&]() -> Status {
    add(c, "rolled back words", 10);
    return make_error(ErrorCode::kInternal, "abort");
  });
  EXPECT_FALSE(s.ok());
  EXPECT_EQ(rows("rolled"), R{});
  int64_t id = add(c, "rolled forward", 20);
  EXPECT_EQ(rows("rolled"), (R{id}));
}

TEST_F(Search, MessagesWrittenOutsideATransactionAreFoundToo) {
  int64_t c = conversation(std::string(32, 'a'));
  // An autocommit INSERT skips the before-commit hook; search indexes the queue first.
  exec(
      "INSERT INTO messages (conversation_id, message_id, sender, sender_device, outgoing, kind, "
      "body, sent_ms, sort_ms, status) VALUES (" +
      std::to_string(c) + ", x'00000000000000000000000000000099', '" + std::string(32, 'b') +
      "', 1, 0, 1, 'written alone', 5, 5, 10)");
  EXPECT_EQ(rows("alone").size(), 1u);
}

TEST_F(Search, FiltersNarrowByConversationSenderTimeAndAttachments) {
  int64_t c1 = conversation(std::string(32, '1'));
  int64_t c2 = conversation(std::string(32, '2'));
  std::string alice(32, 'a'), bob(32, 'b');
  auto row = [&](int64_t conv, const std::string& sender, uint64_t t, const std::string& names) {
    NewRow r;
    r.body = "report number " + std::to_string(t);
    r.sender = sender;
    r.sort_ms = t;
    r.attachment_names = names;
    return add(conv, r);
  };
  int64_t r1 = row(c1, alice, 100, "");
  int64_t r2 = row(c1, bob, 200, "q1.pdf");
  int64_t r3 = row(c2, alice, 300, "");
  int64_t r4 = row(c2, bob, 400, "q2.xlsx\nnotes.txt");
  SearchQuery q;
  q.text = "report";
  EXPECT_EQ(rows(q), (R{r4, r3, r2, r1}));
  q.conversations = {c1};
  EXPECT_EQ(rows(q), (R{r2, r1}));
  q.conversations = {c1, c2};
  q.senders = {bob};
  EXPECT_EQ(rows(q), (R{r4, r2}));
  q.senders = {std::string(32, 'A')};  // account ids compare without case
  EXPECT_EQ(rows(q), (R{r3, r1}));
  q.senders.clear();
  q.conversations.clear();
  q.since_ms = 200;
  q.until_ms = 400;
  EXPECT_EQ(rows(q), (R{r3, r2}));
  q.order = SearchOrder::kRelevance;
  EXPECT_EQ(rows(q).size(), 2u);
  q = {};
  q.text = "report";
  q.with_attachments_only = true;
  EXPECT_EQ(rows(q), (R{r4, r2}));
  q.conversations = {c2};
  EXPECT_EQ(rows(q), (R{r4}));
  // A filter token cannot be typed: "c1" is looked for as text, and no message has it.
  q = {};
  q.text = "c" + std::to_string(c1);
  EXPECT_EQ(rows(q), R{});
}

TEST_F(Search, AttachmentNamesAreSearchedAndShownAsTheSnippet) {
  int64_t c = conversation(std::string(32, 'a'));
  NewRow r;
  r.body = "here are the files";
  r.attachment_names = "holiday-photos.zip\nBudget_2024.xlsx";
  r.sort_ms = 10;
  int64_t id = add(c, r);
  SearchQuery q;
  q.text = "budget";
  SearchPage p = page(q);
  ASSERT_EQ(p.hits.size(), 1u);
  EXPECT_EQ(p.hits[0].row, id);
  EXPECT_TRUE(p.hits[0].snippet_from_attachment);
  EXPECT_EQ(p.hits[0].snippet, "Budget_2024.xlsx");
  ASSERT_EQ(p.hits[0].highlights.size(), 1u);
  EXPECT_EQ(p.hits[0].highlights[0].begin, 0u);
  EXPECT_EQ(p.hits[0].highlights[0].end, 6u);
  q.text = "files";
  p = page(q);
  ASSERT_EQ(p.hits.size(), 1u);
  EXPECT_FALSE(p.hits[0].snippet_from_attachment);
}

TEST_F(Search, HitsCarryTheMessageAndHighlightsInTheOriginalText) {
  int64_t c = conversation(std::string(32, 'a'));
  int64_t id = add(c, "Rendez-vous au Café de Flore, près du café", 1234);
  SearchQuery q;
  q.text = "cafe";
  SearchPage p = page(q);
  ASSERT_EQ(p.hits.size(), 1u);
  const SearchHit& h = p.hits[0];
  EXPECT_EQ(h.row, id);
  EXPECT_EQ(h.conversation, c);
  EXPECT_EQ(h.sender, std::string(32, 'b'));
  EXPECT_EQ(h.sort_ms, 1234u);
  EXPECT_EQ(h.message_id.size(), 32u);
  EXPECT_EQ(h.snippet, "Rendez-vous au Café de Flore, près du café");
  ASSERT_EQ(h.highlights.size(), 2u);
  EXPECT_EQ(h.snippet.substr(h.highlights[0].begin, h.highlights[0].end - h.highlights[0].begin),
            "Café");
  EXPECT_EQ(h.snippet.substr(h.highlights[1].begin, h.highlights[1].end - h.highlights[1].begin),
            "café");
  EXPECT_GT(h.score, 0);

  int64_t cjk = add(c, "明天我们在北京大学门口见面吧", 2000);
  q.text = "北京大学";
  p = page(q);
  ASSERT_EQ(p.hits.size(), 1u);
  EXPECT_EQ(p.hits[0].row, cjk);
  ASSERT_EQ(p.hits[0].highlights.size(), 1u);
  const auto& hl = p.hits[0].highlights[0];
  EXPECT_EQ(p.hits[0].snippet.substr(hl.begin, hl.end - hl.begin), "北京大学");
}

TEST_F(Search, LongMessagesGetASnippetAroundTheMatch) {
  int64_t c = conversation(std::string(32, 'a'));
  std::string body;
  for (int i = 0; i < 100; ++i) body += "word" + std::to_string(i) + " ";
  body += "the hidden treasure is buried here ";
  for (int i = 0; i < 100; ++i) body += "more" + std::to_string(i) + " ";
  add(c, body, 10);
  SearchQuery q;
  q.text = "treasure";
  q.snippet_bytes = 60;
  SearchPage p = page(q);
  ASSERT_EQ(p.hits.size(), 1u);
  const SearchHit& h = p.hits[0];
  EXPECT_LE(h.snippet.size(), 60u);
  EXPECT_NE(h.snippet.find("hidden treasure is buried"), std::string::npos) << h.snippet;
  ASSERT_EQ(h.highlights.size(), 1u);
  EXPECT_EQ(h.snippet.substr(h.highlights[0].begin, h.highlights[0].end - h.highlights[0].begin),
            "treasure");
}

TEST_F(Search, RelevanceRanksByBm25) {
  int64_t c = conversation(std::string(32, 'a'));
  // Background documents give "pizza" a low document frequency and "tonight" a high one.
  for (int i = 0; i < 20; ++i) add(c, "tonight we stay home number " + std::to_string(i), 10 + i);
  int64_t twice = add(c, "pizza pizza tonight", 100);
  int64_t short_one = add(c, "pizza tonight", 101);
  int64_t long_one =
      add(c, "we could maybe order some pizza for everyone at the party tonight", 102);
  int64_t only_common = add(c, "tonight tonight tonight", 103);
  SearchQuery q;
  q.text = "pizza";
  q.order = SearchOrder::kRelevance;
  EXPECT_EQ(rows(q), (R{twice, short_one, long_one}));
  // The rare word weighs more than the common one.
  q.text = "tonight";
  auto all = rows(q);
  ASSERT_EQ(all.size(), 24u);
  EXPECT_EQ(all[0], only_common);
  // Scores come with the hits, best first.
  q.text = "pizza tonight";
  SearchPage p = page(q);
  ASSERT_EQ(p.hits.size(), 3u);
  EXPECT_EQ(p.hits[0].row, twice);
  EXPECT_EQ(p.hits[1].row, short_one);
  EXPECT_EQ(p.hits[2].row, long_one);
  EXPECT_GT(p.hits[0].score, p.hits[1].score);
  EXPECT_GT(p.hits[1].score, p.hits[2].score);
  // The same message scores the same in either order.
  q.order = SearchOrder::kNewest;
  SearchPage newest = page(q);
  ASSERT_EQ(newest.hits.size(), 3u);
  EXPECT_EQ(newest.hits[2].row, twice);
  EXPECT_DOUBLE_EQ(newest.hits[2].score, p.hits[0].score);
}

TEST_F(Search, NewestFirstFollowsMessageTimeNotRowOrder) {
  int64_t c = conversation(std::string(32, 'a'));
  // Rows written out of time order (history arriving late), and ties in time.
  std::vector<std::pair<int64_t, uint64_t>> written;
  for (int i = 0; i < 30; ++i) {
    uint64_t t = static_cast<uint64_t>((i * 7919) % 31) * 10;
    written.emplace_back(add(c, "status update " + std::to_string(i), t), t);
  }
  std::sort(written.begin(), written.end(), [](const auto& x, const auto& y) {
    return x.second != y.second ? x.second > y.second : x.first > y.first;
  });
  R expected;
  for (const auto& w : written) expected.push_back(w.first);
  SearchQuery q;
  q.text = "status";
  q.limit = 7;
  EXPECT_EQ(rows(q), expected);
}

TEST_F(Search, NewestFirstFindsTheNewestTimesInAnOldBlockPastManyNewerRows) {
  // Eight blocks of 1,024 rows in time order, except 40 rows of block 2 whose times are newer
  // than everything else (history imported from another device), several of them tied. The
  // newest pages must come from block 2 although thousands of matches lie between it and the
  // newest row, and every page must follow (time, row) order exactly.
  int64_t c = conversation(std::string(32, 'a'));
  std::vector<std::pair<uint64_t, int64_t>> all;  // (time, row)
  ASSERT_TRUE(profile
                  ->transaction([&]() -> Status {
                    for (int i = 0; i < 8 * 1024; ++i) {
                      int64_t next_id = i + 1;
                      bool imported = (next_id >> 10) == 2 && (next_id & 1023) % 25 == 0;
                      uint64_t t = imported ? 1'000'000 + static_cast<uint64_t>(next_id % 7)
                                            : static_cast<uint64_t>(i) * 10;
                      int64_t id = add(c, "apple " + std::to_string(i), t);
                      EXPECT_EQ(id, next_id);
                      all.emplace_back(t, id);
                    }
                    return {};
                  })
                  .ok());
  std::sort(all.begin(), all.end(), std::greater<>());
  R expected;
  for (const auto& [time, row] : all) expected.push_back(row);

  SearchQuery q;
  q.text = "apple";
  q.limit = 20;
  SearchPage first = page(q);
  ASSERT_EQ(first.hits.size(), 20u);
  for (size_t i = 0; i < 20; ++i) EXPECT_EQ(first.hits[i].row, expected[i]) << i;
  q.limit = 199;
  EXPECT_EQ(rows(q), expected);
}

TEST_F(Search, PaginationReturnsEveryMatchExactlyOnceWhileMessagesArrive) {
  int64_t c = conversation(std::string(32, 'a'));
  std::set<int64_t> existing;
  for (int i = 0; i < 95; ++i)
    existing.insert(add(c, "ping " + std::to_string(i) + (i % 3 ? " pong" : ""),
                        1000 + static_cast<uint64_t>(i / 4)));
  for (SearchOrder order : {SearchOrder::kNewest, SearchOrder::kRelevance}) {
    SearchQuery q;
    q.text = "ping";
    q.order = order;
    q.limit = 10;
    std::vector<int64_t> seen;
    uint64_t t = 5000;
    for (int pages = 0; pages < 50; ++pages) {
      SearchPage p = page(q);
      for (const auto& h : p.hits) seen.push_back(h.row);
      if (p.next_cursor.empty()) break;
      q.cursor = p.next_cursor;
      // New matches arrive between pages, newer and (imported history) older.
      add(c, "ping late " + std::to_string(pages), t++);
      add(c, "ping imported " + std::to_string(pages), 10 + static_cast<uint64_t>(pages));
    }
    std::multiset<int64_t> once(seen.begin(), seen.end());
    for (int64_t id : existing) EXPECT_EQ(once.count(id), 1u) << "row " << id;
    for (int64_t id : seen) EXPECT_EQ(once.count(id), 1u) << "row " << id << " repeated";
  }
}

TEST_F(Search, RelevanceRanksWindowsOfTheNewest500MatchesInTurn) {
  int64_t c = conversation(std::string(32, 'a'));
  ASSERT_TRUE(profile
                  ->transaction([&]() -> Status {
                    for (int i = 0; i < 1250; ++i)
                      add(c, i % 250 == 0 ? "apple apple" : "apple " + std::to_string(i),
                          static_cast<uint64_t>(i));
                    return {};
                  })
                  .ok());
  SearchQuery q;
  q.text = "apple";
  q.order = SearchOrder::kRelevance;
  q.limit = 100;
  auto all = rows(q);
  ASSERT_EQ(all.size(), 1250u);
  EXPECT_EQ(std::set<int64_t>(all.begin(), all.end()).size(), 1250u);
  // The newest 500 (rows 750..1249) hold two "apple apple", which lead; the next window
  // (250..749) starts at the 501st hit with its own two; the last one has the rest.
  for (size_t i : {0u, 1u, 500u, 501u, 1000u}) EXPECT_EQ(text_of(all[i]), "apple apple") << i;
  for (size_t i : {2u, 499u, 502u, 999u, 1001u}) EXPECT_NE(text_of(all[i]), "apple apple") << i;
}

TEST_F(Search, TimeFiltersFindLateHistoryScatteredOverManyBlocks) {
  // 20 blocks of 1,024 rows in time order, but every other block starts with 100 rows of old
  // history that arrived late: a filter on the old times must find those in ten separate
  // blocks (more ranges than a scan reads one by one) and the first rows, and nothing else.
  int64_t c = conversation(std::string(32, 'a'));
  std::vector<std::pair<uint64_t, int64_t>> wanted;  // (time, row) in the filter
  const uint64_t since = 5, until = 300;
  ASSERT_TRUE(profile
                  ->transaction([&]() -> Status {
                    for (int i = 0; i < 20 * 1024; ++i) {
                      int64_t next_id = i + 1;  // a fresh profile numbers rows from 1
                      int64_t block = next_id >> 10;
                      bool old = block % 2 == 1 && (next_id & 1023) < 100;
                      uint64_t t = old ? 7 + static_cast<uint64_t>(next_id % 250)
                                       : static_cast<uint64_t>(i) * 10;
                      std::string text = i % 7 == 0 ? "apple apple " : "apple ";
                      int64_t id = add(c, text + std::to_string(i), t);
                      EXPECT_EQ(id, next_id);
                      if (t >= since && t < until) wanted.emplace_back(t, id);
                    }
                    return {};
                  })
                  .ok());
  ASSERT_GT(wanted.size(), 1000u);
  std::sort(wanted.begin(), wanted.end(), std::greater<>());
  R newest;
  for (const auto& w : wanted) newest.push_back(w.second);

  SearchQuery q;
  q.text = "apple";
  q.since_ms = since;
  q.until_ms = until;
  q.limit = 97;
  EXPECT_EQ(rows(q), newest);
  q.order = SearchOrder::kRelevance;
  R ranked = rows(q);
  EXPECT_EQ(ranked.size(), newest.size());
  EXPECT_EQ(std::set<int64_t>(ranked.begin(), ranked.end()),
            std::set<int64_t>(newest.begin(), newest.end()));
}

TEST_F(Search, ACursorOnlyWorksForItsOwnSearch) {
  int64_t c = conversation(std::string(32, 'a'));
  for (int i = 0; i < 5; ++i) add(c, "alpha beta", static_cast<uint64_t>(i));
  SearchQuery q;
  q.text = "alpha";
  q.limit = 2;
  SearchPage p = page(q);
  ASSERT_FALSE(p.next_cursor.empty());
  q.cursor = p.next_cursor;
  q.text = "beta";
  auto other = profile->search(q);
  ASSERT_FALSE(other.ok());
  EXPECT_EQ(other.code(), ErrorCode::kInvalidArgument);
  EXPECT_NE(other.error().message.find("different search"), std::string::npos);
  q.text = "alpha";
  q.cursor = "00ff";
  EXPECT_EQ(profile->search(q).code(), ErrorCode::kInvalidArgument);
  q.cursor = p.next_cursor;
  q.order = SearchOrder::kRelevance;
  EXPECT_EQ(profile->search(q).code(), ErrorCode::kInvalidArgument);
}

TEST_F(Search, BadRequestsAreInvalidArgumentsWithAMessage) {
  auto expect_invalid = [&](const SearchQuery& q, const std::string& says) {
    auto r = profile->search(q);
    ASSERT_FALSE(r.ok());
    EXPECT_EQ(r.code(), ErrorCode::kInvalidArgument);
    EXPECT_NE(r.error().message.find(says), std::string::npos) << r.error().message;
    EXPECT_EQ(r.error().message.find("fts"), std::string::npos) << r.error().message;
    EXPECT_EQ(r.error().message.find("SQL"), std::string::npos) << r.error().message;
  };
  SearchQuery q;
  q.text = "\"open";
  expect_invalid(q, "quote is not closed");
  q.text = "ok";
  q.limit = 0;
  expect_invalid(q, "hits per page");
  q.limit = 10;
  q.senders = {"bob"};
  expect_invalid(q, "not an account id");
  q.senders.clear();
  q.since_ms = 10;
  q.until_ms = 5;
  expect_invalid(q, "earlier than");
  q.until_ms = 0;
  q.conversations = {0};
  expect_invalid(q, "conversation ids are positive");
}

TEST_F(Search, SearchesWhileAnotherThreadWritesHistory) {
  int64_t c = conversation(std::string(32, 'a'));
  std::atomic<bool> done{false};
  std::thread writer([&] {
    for (int i = 0; i < 100; ++i) {
      test::NewRow r;
      r.body = "parallel entry " + std::to_string(i);
      r.sort_ms = 10 + static_cast<uint64_t>(i);
      int64_t id = 0;
      EXPECT_TRUE(profile->transaction([&] { return insert(c, r, id); }).ok());
    }
    done = true;
  });
  size_t last = 0;
  SearchQuery q;
  q.text = "parallel";
  q.limit = 200;
  while (!done) {
    auto p = profile->search(q);
    ASSERT_TRUE(p.ok()) << p.error().message;
    EXPECT_GE(p->hits.size(), last);  // committed messages never disappear from the results
    last = p->hits.size();
  }
  writer.join();
  EXPECT_EQ(page(q).hits.size(), 100u);
}

TEST_F(Search, IndexFollowsSchemaDefinitionUsedForRebuilds) {
  // The tables a rebuild re-creates must be the ones the migration created.
  auto definitions = [&] {
    std::string out;
    auto q = db().query(
        "SELECT sql FROM sqlite_master WHERE name IN ('search_recent', "
        "'search_archive') ORDER BY name");
    EXPECT_TRUE(q.ok());
    while (q.ok() && q->step().value()) out += std::string(q->column_text(0)) + "\n";
    return out;
  };
  std::string created = definitions();
  EXPECT_NE(created.find("tokenize=sotto"), std::string::npos);
  ASSERT_TRUE(profile->rebuild_search_index().ok());
  EXPECT_EQ(definitions(), created);
}

}  // namespace
}  // namespace sotto
