// search_bench: what client-side search costs on a large history.
//   A deterministic corpus of chat messages (several languages including Chinese, Japanese and
//   Korean, Zipf-distributed vocabularies, log-normal lengths, attachments, a few late-arriving
//   ones) is written the way the Client writes history, and then searched.
//   Prints: indexing rate (live, through the triggers, against the same writes without search;
//   and a rebuild of existing history), database and index size, query latency p50/p95/p99
//   per query kind and order, and maintenance costs (purge, integrity check) - once on an
//   encrypted (SQLCipher) database and once on an unkeyed one, to show what encryption costs.
//
// usage: search_bench [--messages N] [--queries N] [--batch N] [--quick] [--cache-mib N]
//                     [--keep DIR] [--reuse DIR]
//   --cache-mib N: the page cache of both databases (default: a profile's, 64 MiB).
//   --keep DIR: write the databases there and leave them; --reuse DIR: only run the queries
//   again on databases a --keep run left.
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "BenchCommon.h"
#include "BenchCorpus.h"
#include "Database.h"
#include "Schema.h"
#include "SearchIndex.h"

namespace {
using namespace sotto;
namespace fs = std::filesystem;
using bench::Steady;

using bench::check;
using bench::Corpus;
using bench::CorpusMessage;
using bench::die;
using bench::kConversations;
using bench::kStartMs;
using bench::Rng;
using bench::seconds_since;

// ---- one database ----

struct Store {
  std::unique_ptr<db::Database> db;
  std::unique_ptr<search::SearchIndex> index;
};

const uint64_t kNowMs = kStartMs + 4 * 365 * 86'400'000ull;

uint32_t g_cache_mib = 0;  // --cache-mib; 0: the profile's default

Store open_store(const fs::path& path, bool encrypted) {
  Store s;
  SecureBytes key(32);
  for (size_t i = 0; i < 32; ++i) key.data()[i] = static_cast<uint8_t>(i * 7 + 1);
  db::Database::Options o;
  o.unencrypted = !encrypted;
  if (g_cache_mib) o.cache_kib = g_cache_mib * 1024;
  s.db = check(db::Database::open(path, key, o), "open " + path.string());
  check(db::migrate(*s.db), "migrate");
  s.index = std::make_unique<search::SearchIndex>(*s.db, [] { return kNowMs; });
  s.db->set_before_commit([index = s.index.get()] { return index->flush_queue(); });
  return s;
}

// Writes messages the way the Client does (INSERT OR IGNORE, `batch` per transaction).
// Wall-clock and this process's CPU time: the reference machine is shared, and the CPU time
// does not count the time other work had the cores.
struct Timing {
  double wall_s = 0, cpu_s = 0;
};
double process_cpu_s() {
  timespec ts{};
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
  return static_cast<double>(ts.tv_sec) + static_cast<double>(ts.tv_nsec) / 1e9;
}
class Stopwatch {
 public:
  Stopwatch() : wall_(Steady::now()), cpu_(process_cpu_s()) {}
  Timing elapsed() const { return {seconds_since(wall_), process_cpu_s() - cpu_}; }

 private:
  Steady::time_point wall_;
  double cpu_;
};

struct Purges {
  int count = 0;
  double wall_s = 0;
};

// Writes messages the way the Client does (INSERT OR IGNORE, `batch` per transaction). With
// `purges`, calls purge() every 20,000 messages as the Client does when idle after deletes
// (here: to move older messages to the archive part); that time is counted apart.
Timing write_history(Store& s, size_t messages, size_t batch, Purges* purges = nullptr) {
  check(s.db->begin(), "begin");
  for (int c = 1; c <= kConversations; ++c)
    check(s.db->exec("INSERT INTO conversations (id, kind, peer, created_ms) VALUES (" +
                     std::to_string(c) + ", 1, '" + std::to_string(c) + "', 0)"),
          "conversation");
  check(s.db->commit(), "commit");
  Corpus corpus(messages);
  Timing total;
  Stopwatch watch;
  for (size_t i = 0; i < messages; ++i) {
    if (i % batch == 0) check(s.db->begin(), "begin");
    CorpusMessage m = corpus.next(i);
    auto q = check(s.db->query("INSERT OR IGNORE INTO messages (conversation_id, message_id, "
                               "sender, sender_device, outgoing, kind, body, attachment_names, "
                               "has_attachment, sent_ms, sort_ms, status, expires_ms) VALUES (?, "
                               "?, ?, 1, 0, 1, ?, ?, ?, ?, ?, 10, ?)"),
                   "insert");
    uint8_t id[16] = {};
    for (int k = 0; k < 8; ++k) id[15 - k] = static_cast<uint8_t>(i >> (8 * k));
    q.bind(1, m.conversation).bind(2, ByteView(id, 16)).bind_text(3, m.sender);
    q.bind_text(4, m.body);
    if (m.attachment_names.empty())
      q.bind_null(5);
    else
      q.bind_text(5, m.attachment_names);
    q.bind(6, int64_t{!m.attachment_names.empty()});
    q.bind(7, static_cast<int64_t>(m.sort_ms)).bind(8, static_cast<int64_t>(m.sort_ms));
    if (m.expires_ms)
      q.bind(9, static_cast<int64_t>(*m.expires_ms));
    else
      q.bind_null(9);
    check(q.run(), "insert");
    if (i % batch == batch - 1 || i + 1 == messages) check(s.db->commit(), "commit");
    if (purges && i % 20'000 == 19'999) {
      Timing t = watch.elapsed();
      total.wall_s += t.wall_s;
      total.cpu_s += t.cpu_s;
      auto p0 = Steady::now();
      check(s.index->purge(), "purge");
      purges->wall_s += seconds_since(p0);
      ++purges->count;
      watch = Stopwatch();
    }
  }
  Timing t = watch.elapsed();
  total.wall_s += t.wall_s;
  total.cpu_s += t.cpu_s;
  return total;
}

uint64_t file_bytes(const fs::path& p) {
  std::error_code ec;
  uint64_t n = fs::file_size(p, ec);
  return ec ? 0 : n;
}

struct Kind {
  std::string name;
  std::vector<SearchQuery> queries;
};

// This thread's CPU time: unlike the wall clock, it does not count time the machine spent on
// other work (the reference machine is shared).
double cpu_ms() {
  timespec ts{};
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return static_cast<double>(ts.tv_sec) * 1000 + static_cast<double>(ts.tv_nsec) / 1e6;
}

struct Latency {
  double p50 = 0, p95 = 0, p99 = 0, hits = 0, cpu_p95 = 0;
};

Latency measure(Store& s, const std::vector<SearchQuery>& queries, SearchOrder order) {
  std::vector<double> ms, cpu;
  double hits = 0;
  for (SearchQuery q : queries) {
    q.order = order;
    auto t0 = Steady::now();
    double c0 = cpu_ms();
    auto page = check(s.index->search(q), "search \"" + q.text + "\"");
    cpu.push_back(cpu_ms() - c0);
    ms.push_back(1000 * seconds_since(t0));
    hits += static_cast<double>(page.hits.size());
  }
  std::sort(ms.begin(), ms.end());
  std::sort(cpu.begin(), cpu.end());
  auto at = [](const std::vector<double>& v, double p) {
    return v[std::min(v.size() - 1, static_cast<size_t>(p * static_cast<double>(v.size())))];
  };
  return {at(ms, 0.50), at(ms, 0.95), at(ms, 0.99), hits / static_cast<double>(queries.size()),
          at(cpu, 0.95)};
}

struct Figures {
  Timing base, live, rebuild;
  Purges purges;
  uint64_t db_bytes = 0, free_bytes = 0, base_db_bytes = 0, index_bytes = 0;
  std::map<std::string, std::pair<Latency, Latency>> latency;  // newest, relevance
  double purge_recent_ms = 0, purge_archive_ms = 0, check_s = 0;
};

void progress(const std::string& what) { std::fprintf(stderr, "search_bench: %s\n", what.c_str()); }

void report(const std::string& tag, const std::string& kind, const std::pair<Latency, Latency>& l) {
  std::fprintf(
      stderr, "search_bench: %s %s: p95 %.2f / %.2f ms (newest / relevance), CPU %.2f / %.2f\n",
      tag.c_str(), kind.c_str(), l.first.p95, l.second.p95, l.first.cpu_p95, l.second.cpu_p95);
}

Figures run(const fs::path& root, bool encrypted, size_t messages, size_t batch,
            const std::vector<Kind>& kinds, bool reuse) {
  Figures f;
  std::string tag = encrypted ? "encrypted" : "unkeyed";
  fs::path live_path = root / (tag + "-live.db"), base_path = root / (tag + "-base.db");
  if (reuse) {
    Store s = open_store(live_path, encrypted);
    for (const Kind& k : kinds) {
      f.latency[k.name] = {measure(s, k.queries, SearchOrder::kNewest),
                           measure(s, k.queries, SearchOrder::kRelevance)};
      report(tag, k.name, f.latency[k.name]);
    }
    return f;
  }
  {
    // The same writes without search: its triggers dropped.
    Store base = open_store(base_path, encrypted);
    for (const char* t : {"search_insert", "search_update_recent", "search_update_archive",
                          "search_update_queue", "search_delete_recent", "search_delete_archive",
                          "search_delete_queue", "search_time_insert", "search_time_update"})
      check(base.db->exec(std::string("DROP TRIGGER ") + t), "drop trigger");
    progress(tag + ": writing history without search");
    f.base = write_history(base, messages, batch);
    check(base.db->exec("PRAGMA wal_checkpoint(TRUNCATE)"), "checkpoint");
    f.base_db_bytes = file_bytes(base_path);
    // Existing history indexed by a rebuild.
    progress(tag + ": rebuilding");
    Stopwatch watch;
    check(base.index->rebuild({}), "rebuild");
    f.rebuild = watch.elapsed();
  }
  Store s = open_store(live_path, encrypted);
  progress(tag + ": writing history with search");
  f.live = write_history(s, messages, batch, &f.purges);
  check(s.index->purge(), "purge");
  f.db_bytes = file_bytes(live_path) + file_bytes(live_path.string() + "-wal");
  {
    auto q = check(s.db->query("PRAGMA freelist_count"), "freelist");
    check(q.step(), "freelist");
    f.free_bytes = static_cast<uint64_t>(q.column_int(0)) * 4096;
  }
  f.index_bytes = check(s.index->status(), "status").index_bytes;

  for (const Kind& k : kinds) {
    f.latency[k.name] = {measure(s, k.queries, SearchOrder::kNewest),
                         measure(s, k.queries, SearchOrder::kRelevance)};
    report(tag, k.name, f.latency[k.name]);
  }

  // Maintenance: the Client edits and deletes recent messages, then an old one.
  auto max_id = [&] {
    auto q = check(s.db->query("SELECT max(id) FROM messages"), "max");
    check(q.step(), "max");
    return q.column_int(0);
  }();
  check(s.db->begin(), "begin");
  for (int64_t i = 0; i < 100; ++i)
    check(s.db->exec("UPDATE messages SET body = 'edited text " + std::to_string(i) +
                     "' WHERE id = " + std::to_string(max_id - i)),
          "edit");
  check(s.db->commit(), "commit");
  auto t0 = Steady::now();
  check(s.index->purge(), "purge recent");
  f.purge_recent_ms = 1000 * seconds_since(t0);
  check(s.db->exec("UPDATE messages SET body = NULL, deleted = 1 WHERE id = 10"), "delete old");
  t0 = Steady::now();
  check(s.index->purge(), "purge archive");
  f.purge_archive_ms = 1000 * seconds_since(t0);
  t0 = Steady::now();
  auto c = check(s.index->check({}), "check");
  f.check_s = seconds_since(t0);
  if (c.damaged) {
    std::fprintf(stderr, "search_bench: the index check found damage: %s\n", c.problem.c_str());
    std::exit(1);
  }
  return f;
}

std::vector<Kind> make_kinds(size_t messages, size_t per_kind) {
  Corpus corpus(messages);
  for (size_t i = 0; i < messages; ++i) corpus.next(i);
  double n = static_cast<double>(messages);
  Rng rng(99);
  auto sample = [&](const std::vector<std::string>& pool, const std::string& what) {
    if (pool.empty()) {
      std::fprintf(stderr, "search_bench: no %s in a corpus this small\n", what.c_str());
      std::exit(1);
    }
    std::vector<std::string> out;
    for (size_t i = 0; i < per_kind; ++i) out.push_back(pool[rng.below(pool.size())]);
    return out;
  };
  auto queries = [](const std::vector<std::string>& texts) {
    std::vector<SearchQuery> out;
    for (const auto& t : texts) {
      SearchQuery q;
      q.text = t;
      out.push_back(q);
    }
    return out;
  };
  std::vector<Kind> kinds;
  auto rare = sample(corpus.words_with_df(3, std::max(30.0, n / 20000), false, 3), "rare words");
  auto common = sample(corpus.words_with_df(n * 0.01, n * 0.05, false), "common words");
  auto stopwords = sample(corpus.words_with_df(n * 0.10, n, false), "very common words");
  std::vector<std::string> phrases;
  for (const auto& p : sample(corpus.phrases(), "phrases")) phrases.push_back("\"" + p + "\"");
  std::vector<std::string> prefixes;
  for (const auto& w : sample(corpus.words_with_df(n * 0.001, n * 0.05, false, 5), "prefixes")) {
    // Three or four letters, cut at a character boundary.
    size_t len = 0, chars = 0, want = 3 + rng.below(2);
    while (len < w.size() && chars < want) {
      ++len;
      while (len < w.size() && (static_cast<unsigned char>(w[len]) & 0xC0) == 0x80) ++len;
      ++chars;
    }
    prefixes.push_back(w.substr(0, len) + "*");
  }
  auto cjk = sample(corpus.words_with_df(n * 0.0005, n * 0.02, true), "CJK words");
  kinds.push_back({"rare word", queries(rare)});
  kinds.push_back({"common word (1-5% of messages)", queries(common)});
  kinds.push_back({"phrase", queries(phrases)});
  kinds.push_back({"prefix (3-4 letters*)", queries(prefixes)});
  std::vector<SearchQuery> filtered = queries(common);
  for (auto& q : filtered) q.conversations = {1 + static_cast<int64_t>(rng.below(20))};
  kinds.push_back({"filtered (common word, 1 chat)", filtered});
  std::vector<SearchQuery> timed = queries(common);
  const uint64_t span_ms = static_cast<uint64_t>(messages) * 90'000;
  for (auto& q : timed) {
    q.since_ms = kStartMs + rng.below(std::max<uint64_t>(span_ms, 1));
    q.until_ms = q.since_ms + 30 * 86'400'000ull;
  }
  kinds.push_back({"filtered (common word, 1 month)", timed});
  kinds.push_back({"CJK word (2 characters)", queries(cjk)});
  // One character: every indexed pair that starts with it (3 bytes of UTF-8).
  std::vector<std::string> cjk_chars;
  for (const auto& w : cjk) cjk_chars.push_back(w.substr(0, 3));
  kinds.push_back({"CJK character (1 of a word)", queries(cjk_chars)});
  kinds.push_back({"very common word (>10%)", queries(stopwords)});
  return kinds;
}

}  // namespace

int main(int argc, char** argv) {
  size_t messages = 1'000'000, per_kind = 300, batch = 1000;
  bool quick = false, reuse = false;
  std::string keep;
  for (int i = 1; i < argc; ++i) {
    std::string arg = argv[i];
    if (arg == "--messages" && i + 1 < argc)
      messages = std::strtoul(argv[++i], nullptr, 10);
    else if (arg == "--queries" && i + 1 < argc)
      per_kind = std::strtoul(argv[++i], nullptr, 10);
    else if (arg == "--batch" && i + 1 < argc)
      batch = std::strtoul(argv[++i], nullptr, 10);
    else if (arg == "--keep" && i + 1 < argc)
      keep = argv[++i];
    else if (arg == "--quick")
      quick = true;
    else if (arg == "--cache-mib" && i + 1 < argc)
      g_cache_mib = static_cast<uint32_t>(std::strtoul(argv[++i], nullptr, 10));
    else if (arg == "--reuse" && i + 1 < argc) {
      keep = argv[++i];
      reuse = true;
    } else {
      std::fprintf(stderr,
                   "usage: search_bench [--messages N] [--queries N] [--batch N] [--quick] "
                   "[--cache-mib N] [--keep DIR] [--reuse DIR]\n");
      return 2;
    }
  }
  if (quick) {
    messages = std::min<size_t>(messages, 4000);
    per_kind = std::min<size_t>(per_kind, 10);
  }
  if (messages < 1000 || batch < 1 || per_kind < 1) {
    std::fprintf(stderr, "search_bench: --messages must be >= 1000, --batch and --queries >= 1\n");
    return 2;
  }
  fs::path root = keep.empty() ? fs::temp_directory_path() /
                                     ("sotto-search-bench-" + std::to_string(::getpid()))
                               : fs::path(keep);
  if (!reuse) {
    fs::remove_all(root);
    fs::create_directories(root);
  }

  std::printf(
      "sotto search_bench: %zu messages, %zu queries per kind, transactions of %zu, page cache "
      "%u MiB\n\n",
      messages, per_kind, batch,
      g_cache_mib ? g_cache_mib : db::Database::Options{}.cache_kib / 1024);
  std::vector<Kind> kinds = make_kinds(messages, per_kind);
  Figures enc = run(root, true, messages, batch, kinds, reuse);
  Figures plain =
      run(root, false, messages, batch, kinds, reuse && fs::exists(root / "unkeyed-live.db"));
  if (reuse) return 0;

  const double n = static_cast<double>(messages);
  // Search's own share of the writes: the time they took with search minus without.
  auto share = [&](double with, double without) {
    return with > without ? n / (with - without) : 0;
  };
  std::printf("%-50s %13s %13s %8s\n", "indexing (wall clock | per CPU-second)", "encrypted",
              "unkeyed", "enc/unk");
  // `decimals`: digits after the point for both columns; the ratio is encrypted / unkeyed.
  auto row = [](const char* label, double e, double p, int decimals) {
    std::printf("%-50s %13.*f %13.*f %7.2fx\n", label, decimals, e, decimals, p,
                p > 0 ? e / p : 0.0);
  };
  row("history writes without search, messages/s", n / enc.base.wall_s, n / plain.base.wall_s, 0);
  row("  per CPU-second", n / enc.base.cpu_s, n / plain.base.cpu_s, 0);
  row("history writes with search, messages/s", n / enc.live.wall_s, n / plain.live.wall_s, 0);
  row("  per CPU-second", n / enc.live.cpu_s, n / plain.live.cpu_s, 0);
  row("search's share: messages indexed/s", share(enc.live.wall_s, enc.base.wall_s),
      share(plain.live.wall_s, plain.base.wall_s), 0);
  row("  per CPU-second", share(enc.live.cpu_s, enc.base.cpu_s),
      share(plain.live.cpu_s, plain.base.cpu_s), 0);
  row("rebuild of existing history, messages/s", n / enc.rebuild.wall_s, n / plain.rebuild.wall_s,
      0);
  row("  per CPU-second", n / enc.rebuild.cpu_s, n / plain.rebuild.cpu_s, 0);
  row("purge every 20,000 writes (moves to archive), ms",
      enc.purges.count ? 1000 * enc.purges.wall_s / enc.purges.count : 0,
      plain.purges.count ? 1000 * plain.purges.wall_s / plain.purges.count : 0, 1);
  std::printf("\n%-50s %13s %13s %8s\n", "size", "encrypted", "unkeyed", "enc/unk");
  row("database without search, MB", enc.base_db_bytes / 1e6, plain.base_db_bytes / 1e6, 1);
  row("database with search, MB", enc.db_bytes / 1e6, plain.db_bytes / 1e6, 1);
  row("  of which free pages (reused by later writes), MB", enc.free_bytes / 1e6,
      plain.free_bytes / 1e6, 1);
  row("  index data (postings, document sizes), MB", enc.index_bytes / 1e6, plain.index_bytes / 1e6,
      1);

  for (int order = 0; order < 2; ++order) {
    std::printf("\nquery latency, first page of 20, %s (ms)\n",
                order == 0 ? "newest first" : "by relevance");
    std::printf("%-32s %6s %6s %6s %7s %5s | %6s %6s %7s | %7s\n", "", "p50", "p95", "p99",
                "CPU p95", "hits", "p50", "p95", "CPU p95", "p95 e/u");
    std::printf("%-32s %34s | %22s |\n", "", "encrypted", "unkeyed");
    for (const Kind& k : kinds) {
      const Latency& e = order == 0 ? enc.latency[k.name].first : enc.latency[k.name].second;
      const Latency& p = order == 0 ? plain.latency[k.name].first : plain.latency[k.name].second;
      std::printf("%-32s %6.2f %6.2f %6.2f %7.2f %5.1f | %6.2f %6.2f %7.2f | %6.2fx\n",
                  k.name.c_str(), e.p50, e.p95, e.p99, e.cpu_p95, e.hits, p.p50, p.p95, p.cpu_p95,
                  p.p95 > 0 ? e.p95 / p.p95 : 0);
    }
  }
  std::printf("\n%-46s %14s %14s %8s\n", "maintenance", "encrypted", "unkeyed", "enc/unk");
  row("purge after 100 edits of recent messages, ms", enc.purge_recent_ms, plain.purge_recent_ms,
      1);
  row("purge after deleting one old message, ms", enc.purge_archive_ms, plain.purge_archive_ms, 1);
  row("integrity check (whole index), s", enc.check_s, plain.check_s, 2);
  if (keep.empty()) {
    std::error_code ec;
    fs::remove_all(root, ec);
  }
  return 0;
}
