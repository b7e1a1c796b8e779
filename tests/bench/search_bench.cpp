// search_bench: what client-side search costs on a large history.
//   A deterministic corpus of chat messages (BenchCorpus.h: several languages including
//   Chinese, Japanese and Korean, Zipf-distributed vocabularies, log-normal lengths,
//   attachments, a few late-arriving ones) is written the way the Client writes history, and
//   then searched.
//   Prints: indexing rate (live, through the triggers, against the same writes without search;
//   and a rebuild of existing history), database and index size, query latency p50/p95/p99
//   per query kind and order, warm and cold, and maintenance costs (purge, integrity check) -
//   once on an encrypted (SQLCipher) database and once on an unkeyed one, to show what
//   encryption costs.
//   Queries never run on the connection that wrote the history. No query is asked twice in a
//   run, and the newest-first and relevance runs ask different ones. Cold: each run on the
//   database reopened after its files were dropped from the OS page cache. Warm: one
//   connection for every run, the file in the OS page cache.
//
// usage: search_bench [--messages N] [--queries N] [--batch N] [--quick] [--cache-mib N]
//                     [--keep DIR] [--reuse DIR]
//   --queries N: up to N queries per kind and order (fewer when the corpus has fewer).
//   --cache-mib N: the page cache of both databases (default: a profile's, 64 MiB).
//   --keep DIR: write the databases there and leave them; --reuse DIR: only run the queries
//   again on databases a --keep run left.
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "BenchCommon.h"
#include "BenchCorpus.h"
#include "BenchReference.h"
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
  // Distinct queries, none in both lists: no query of a run was answered before on the same
  // connection, so its own pages are never in SQLite's cache from an earlier run.
  std::vector<SearchQuery> newest, relevance;
  const std::vector<SearchQuery>& queries(SearchOrder order) const {
    return order == SearchOrder::kNewest ? newest : relevance;
  }
};

struct Queries {
  std::vector<Kind> kinds;
  // Rare words that no measured run uses: they fill the warm connection's cache first.
  std::vector<SearchQuery> warmup;
};

// This thread's CPU time: unlike the wall clock, it does not count time the machine spent on
// other work (the reference machine is shared), nor waiting for the disk.
double cpu_ms() {
  timespec ts{};
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return static_cast<double>(ts.tv_sec) * 1000 + static_cast<double>(ts.tv_nsec) / 1e6;
}

struct Latency {
  double p50 = 0, p95 = 0, p99 = 0, hits = 0, cpu_p95 = 0;
  size_t n = 0;  // queries run
  // Pages of two or more hits whose hits are in score order, and in time order (newest
  // first): a relevance page is in score order, and in time order only by chance.
  size_t ordered_pages = 0, by_score = 0, by_time = 0;
};

// A query's text and filters: two queries with the same key read the same pages.
std::string query_key(const SearchQuery& q) {
  std::string key = q.text + "|" + std::to_string(q.since_ms) + "|" + std::to_string(q.until_ms);
  for (int64_t c : q.conversations) key += "|c" + std::to_string(c);
  return key;
}

Latency measure(Store& s, const std::vector<SearchQuery>& queries, SearchOrder order) {
  std::vector<double> ms, cpu;
  Latency l;
  double hits = 0;
  std::set<std::string> asked;
  for (SearchQuery q : queries) {
    // A repeated query would find its pages in the cache and make the run look warmer.
    if (!asked.insert(query_key(q)).second) die("query \"" + q.text + "\" twice in one run");
    q.order = order;
    auto t0 = Steady::now();
    double c0 = cpu_ms();
    auto page = check(s.index->search(q), "search \"" + q.text + "\"");
    cpu.push_back(cpu_ms() - c0);
    ms.push_back(1000 * seconds_since(t0));
    hits += static_cast<double>(page.hits.size());
    if (page.hits.size() < 2) continue;
    bool by_score = true, by_time = true;
    for (size_t i = 1; i < page.hits.size(); ++i) {
      by_score = by_score && page.hits[i - 1].score >= page.hits[i].score;
      by_time = by_time && page.hits[i - 1].sort_ms >= page.hits[i].sort_ms;
    }
    ++l.ordered_pages;
    l.by_score += by_score;
    l.by_time += by_time;
  }
  std::sort(ms.begin(), ms.end());
  std::sort(cpu.begin(), cpu.end());
  auto at = [](const std::vector<double>& v, double p) {
    return v[std::min(v.size() - 1, static_cast<size_t>(p * static_cast<double>(v.size())))];
  };
  l.p50 = at(ms, 0.50);
  l.p95 = at(ms, 0.95);
  l.p99 = at(ms, 0.99);
  l.hits = hits / static_cast<double>(queries.size());
  l.cpu_p95 = at(cpu, 0.95);
  l.n = queries.size();
  return l;
}

// ---- the OS page cache, for the cold runs ----

// The share of a file's pages in the OS page cache (mincore on a mapping of it); -1 when it
// cannot be read, 0 for a missing or empty file.
double resident_share(const fs::path& path) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return errno == ENOENT ? 0 : -1;
  struct stat st {};
  if (::fstat(fd, &st) != 0 || st.st_size <= 0) {
    ::close(fd);
    return st.st_size == 0 ? 0 : -1;
  }
  size_t len = static_cast<size_t>(st.st_size);
  void* map = ::mmap(nullptr, len, PROT_READ, MAP_SHARED, fd, 0);
  ::close(fd);
  if (map == MAP_FAILED) return -1;
  size_t page = static_cast<size_t>(::sysconf(_SC_PAGESIZE));
  std::vector<unsigned char> in((len + page - 1) / page);
  int rc = ::mincore(map, len, in.data());
  ::munmap(map, len);
  if (rc != 0) return -1;
  size_t resident = 0;
  for (unsigned char c : in) resident += c & 1;
  return static_cast<double>(resident) / static_cast<double>(in.size());
}

// What the cold runs could do to the OS page cache.
struct CacheDrops {
  int runs = 0;
  int global_drops = 0;       // runs that needed drop_caches
  double worst_resident = 0;  // the largest share of the database still cached at a cold start
  std::string problem;        // why the cache could not be dropped; empty when it could
};

// Evicts the database's files from the OS page cache: each file is synced, then dropped with
// POSIX_FADV_DONTNEED, which needs no privileges and leaves the rest of the machine's cache
// alone. If pages stay cached, and only then, drops the whole page cache (root only:
// sync, then 1 into /proc/sys/vm/drop_caches). mincore() says what is left.
void drop_from_os_cache(const fs::path& db, CacheDrops& drops) {
  const std::vector<fs::path> files = {db, db.string() + "-wal", db.string() + "-shm"};
  for (const fs::path& p : files) {
    int fd = ::open(p.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) continue;
    if (::fdatasync(fd) != 0 || ::posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED) != 0)
      drops.problem = "posix_fadvise(DONTNEED) failed on " + p.filename().string();
    ::close(fd);
  }
  double resident = resident_share(db);
  if (resident > 0.01) {
    ::sync();
    int fd = ::open("/proc/sys/vm/drop_caches", O_WRONLY | O_CLOEXEC);
    if (fd >= 0 && ::write(fd, "1", 1) == 1) {
      ++drops.global_drops;
    } else {
      drops.problem = std::string("the database stayed in the OS page cache and drop_caches ") +
                      "could not be written (" + std::strerror(errno) + "; needs root)";
    }
    if (fd >= 0) ::close(fd);
    resident = resident_share(db);
  }
  if (resident < 0) drops.problem = "mincore() could not tell what stayed cached";
  ++drops.runs;
  drops.worst_resident = std::max(drops.worst_resident, resident);
}

// Reads a whole file, so that it is in the OS page cache; the share cached afterwards.
double load_into_os_cache(const fs::path& path) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return 0;
  std::vector<char> buf(1 << 20);
  while (::read(fd, buf.data(), buf.size()) > 0) {
  }
  ::close(fd);
  return resident_share(path);
}

// Warm and cold figures of one kind, for each order (index: SearchOrder).
struct KindFigures {
  Latency warm[2], cold[2];
};

struct Figures {
  Timing base, live, rebuild;
  Purges purges;
  uint64_t db_bytes = 0, free_bytes = 0, base_db_bytes = 0, index_bytes = 0;
  std::map<std::string, KindFigures> latency;
  CacheDrops drops;
  double warm_resident = 0;  // share of the database in the OS page cache for the warm runs
  double purge_recent_ms = 0, purge_archive_ms = 0, check_s = 0;
  // One deletion, then a purge, as the Client does when idle: per deletion in the recent part
  // (the mean of kRecentDeletes), and in the archive until its rewrite came due and ran.
  double delete_recent_ms = 0;
  int archive_deletes = 0;        // deletions (each with its purge) up to the archive's rewrite
  double delete_archive_ms = 0;   // the mean of the purges that deferred the archive's erasure
  double archive_rewrite_ms = 0;  // the purge that rewrote the archive
  double delete_archive_amortized_ms = 0;  // every purge of the series / archive_deletes
  // One more old deletion, purged with SearchPurge::kEverything: what every purge after a
  // deletion in the archive cost before purges deferred the archive's rewrite.
  double delete_archive_everything_ms = 0;
  // The same in this process's CPU time, which leaves out the waits for a core.
  double delete_recent_cpu_ms = 0, delete_archive_amortized_cpu_ms = 0,
         delete_archive_everything_cpu_ms = 0;
};

constexpr int kRecentDeletes = 20;

void progress(const std::string& what) { std::fprintf(stderr, "search_bench: %s\n", what.c_str()); }

void report(const std::string& tag, const std::string& kind, const KindFigures& l) {
  std::fprintf(stderr,
               "search_bench: %s %s: p95 warm %.2f / %.2f ms, cold %.2f / %.2f ms (newest / "
               "relevance)\n",
               tag.c_str(), kind.c_str(), l.warm[0].p95, l.warm[1].p95, l.cold[0].p95,
               l.cold[1].p95);
}

constexpr SearchOrder kOrders[2] = {SearchOrder::kNewest, SearchOrder::kRelevance};

// Cold, then warm, query runs on the database at `path`; returns the warm connection.
Store measure_queries(const fs::path& path, bool encrypted, const Queries& queries, Figures& f) {
  // Cold: each run on a database closed and reopened, out of the OS page cache.
  for (const Kind& k : queries.kinds)
    for (int o = 0; o < 2; ++o) {
      drop_from_os_cache(path, f.drops);
      Store s = open_store(path, encrypted);
      f.latency[k.name].cold[o] = measure(s, k.queries(kOrders[o]), kOrders[o]);
    }
  // Warm: the file in the OS page cache and one connection for every run, its cache filled
  // by the warm-up queries and then by the runs before.
  f.warm_resident = load_into_os_cache(path);
  Store s = open_store(path, encrypted);
  if (!queries.warmup.empty()) measure(s, queries.warmup, SearchOrder::kNewest);
  for (const Kind& k : queries.kinds)
    for (int o = 0; o < 2; ++o)
      f.latency[k.name].warm[o] = measure(s, k.queries(kOrders[o]), kOrders[o]);
  return s;
}

Figures run(const fs::path& root, bool encrypted, size_t messages, size_t batch,
            const Queries& queries, bool reuse) {
  Figures f;
  std::string tag = encrypted ? "encrypted" : "unkeyed";
  fs::path live_path = root / (tag + "-live.db"), base_path = root / (tag + "-base.db");
  if (reuse) {
    progress(tag + ": queries, cold and warm");
    measure_queries(live_path, encrypted, queries, f);
    for (const Kind& k : queries.kinds) report(tag, k.name, f.latency[k.name]);
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
  {
    Store s = open_store(live_path, encrypted);
    progress(tag + ": writing history with search");
    f.live = write_history(s, messages, batch, &f.purges);
    check(s.index->purge(), "purge");
    f.db_bytes = file_bytes(live_path) + file_bytes(live_path.string() + "-wal");
    auto q = check(s.db->query("PRAGMA freelist_count"), "freelist");
    check(q.step(), "freelist");
    f.free_bytes = static_cast<uint64_t>(q.column_int(0)) * 4096;
    f.index_bytes = check(s.index->status(), "status").index_bytes;
  }  // closed: no query runs on the connection whose cache the writes filled

  progress(tag + ": queries, cold and warm");
  Store s = measure_queries(live_path, encrypted, queries, f);
  for (const Kind& k : queries.kinds) report(tag, k.name, f.latency[k.name]);

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
  // One deletion at a time, each followed by its purge: in the recent part, then in the archive
  // (oldest first) until a purge finds the archive's rewrite due and erases them all. The
  // series' total over its deletions is what each one costs, amortized.
  auto delete_and_purge = [&](int64_t id) {
    check(s.db->exec("UPDATE messages SET body = NULL, attachment_names = NULL, deleted = 1 "
                     "WHERE id = " +
                     std::to_string(id)),
          "delete");
    Stopwatch watch;
    check(s.index->purge(), "purge");
    return watch.elapsed();
  };
  double recent_total = 0, recent_cpu = 0;
  for (int i = 0; i < kRecentDeletes; ++i) {
    Timing t = delete_and_purge(max_id - 1000 - i);
    recent_total += 1000 * t.wall_s;
    recent_cpu += 1000 * t.cpu_s;
  }
  f.delete_recent_ms = recent_total / kRecentDeletes;
  f.delete_recent_cpu_ms = recent_cpu / kRecentDeletes;
  double deferred_total = 0, archive_total = 0, archive_cpu = 0;
  for (int64_t id = 10; id < max_id - 20'000; ++id) {
    Timing t = delete_and_purge(id);
    double ms = 1000 * t.wall_s;
    archive_total += ms;
    archive_cpu += 1000 * t.cpu_s;
    ++f.archive_deletes;
    if (f.archive_deletes == 1) f.purge_archive_ms = ms;
    if (check(s.index->status(), "status").pending_purge_archive == 0) {
      f.archive_rewrite_ms = ms;
      break;
    }
    deferred_total += ms;
  }
  if (f.archive_deletes > 1) f.delete_archive_ms = deferred_total / (f.archive_deletes - 1);
  f.delete_archive_amortized_ms = archive_total / std::max(f.archive_deletes, 1);
  f.delete_archive_amortized_cpu_ms = archive_cpu / std::max(f.archive_deletes, 1);
  check(s.db->exec("UPDATE messages SET body = NULL, attachment_names = NULL, deleted = 1 WHERE "
                   "id = " +
                   std::to_string(10 + f.archive_deletes)),
        "delete");
  {
    Stopwatch watch;
    check(s.index->purge(SearchPurge::kEverything), "purge everything");
    Timing t = watch.elapsed();
    f.delete_archive_everything_ms = 1000 * t.wall_s;
    f.delete_archive_everything_cpu_ms = 1000 * t.cpu_s;
  }
  t0 = Steady::now();
  auto c = check(s.index->check({}), "check");
  f.check_s = seconds_since(t0);
  if (c.damaged) {
    std::fprintf(stderr, "search_bench: the index check found damage: %s\n", c.problem.c_str());
    std::exit(1);
  }
  return f;
}

Queries make_kinds(size_t messages, size_t per_kind) {
  Corpus corpus(messages);
  for (size_t i = 0; i < messages; ++i) corpus.next(i);
  double n = static_cast<double>(messages);
  Rng rng(99);
  // Drawn without replacement from a pool without duplicates: up to `per_kind` queries for
  // each order, none repeated, and none in both. A pool smaller than twice that is shared
  // out evenly, and the tables print how many queries a run had.
  auto shuffled = [&](std::vector<std::string> pool, const std::string& what) {
    std::sort(pool.begin(), pool.end());
    pool.erase(std::unique(pool.begin(), pool.end()), pool.end());
    if (pool.size() < 2) {
      std::fprintf(stderr, "search_bench: fewer than two %s in a corpus this small\n",
                   what.c_str());
      std::exit(1);
    }
    for (size_t i = pool.size() - 1; i > 0; --i) std::swap(pool[i], pool[rng.below(i + 1)]);
    return pool;
  };
  auto take = [&](const std::vector<std::string>& pool, int part) {
    size_t each = std::min(per_kind, pool.size() / 2);
    return std::vector<std::string>(pool.begin() + static_cast<long>(part * each),
                                    pool.begin() + static_cast<long>((part + 1) * each));
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
  auto kind = [&](const std::string& name, const std::vector<std::string>& pool) {
    return Kind{name, queries(take(pool, 0)), queries(take(pool, 1))};
  };
  // The relevance run must not find the pages of the newest-first run's queries cached.
  auto check_disjoint = [](const Kind& k) {
    std::set<std::string> newest;
    for (const auto& q : k.newest) newest.insert(query_key(q));
    for (const auto& q : k.relevance)
      if (newest.count(query_key(q)))
        die(k.name + ": query \"" + q.text + "\" in both the newest-first and relevance runs");
  };
  Queries out;
  std::vector<Kind>& kinds = out.kinds;
  auto rare = shuffled(corpus.words_with_df(3, std::max(30.0, n / 20000), false, 3), "rare words");
  auto common_words = corpus.words_with_df(n * 0.01, n * 0.05, false);
  auto common = shuffled(common_words, "common words");
  auto stopwords = shuffled(corpus.words_with_df(n * 0.10, n, false), "very common words");
  std::vector<std::string> phrases;
  for (const auto& p : corpus.phrases()) phrases.push_back("\"" + p + "\"");
  phrases = shuffled(phrases, "phrases");
  std::vector<std::string> prefixes;
  for (const auto& w : corpus.words_with_df(n * 0.001, n * 0.05, false, 5)) {
    // Three or four letters, cut at a character boundary.
    size_t len = 0, chars = 0, want = 3 + rng.below(2);
    while (len < w.size() && chars < want) {
      ++len;
      while (len < w.size() && (static_cast<unsigned char>(w[len]) & 0xC0) == 0x80) ++len;
      ++chars;
    }
    prefixes.push_back(w.substr(0, len) + "*");
  }
  prefixes = shuffled(prefixes, "prefixes");
  auto cjk_words = corpus.words_with_df(n * 0.0005, n * 0.02, true);
  // One character: every indexed pair that starts with it (3 bytes of UTF-8).
  std::vector<std::string> cjk_chars;
  for (const auto& w : cjk_words) cjk_chars.push_back(w.substr(0, 3));
  auto cjk = shuffled(cjk_words, "CJK words");
  cjk_chars = shuffled(cjk_chars, "CJK characters");

  kinds.push_back(kind("rare word", rare));
  kinds.push_back(kind("common word (1-5% of messages)", common));
  kinds.push_back(kind("phrase", phrases));
  kinds.push_back(kind("prefix (3-4 letters*)", prefixes));
  // The filtered kinds draw the common words again, in an order of their own.
  Kind filtered = kind("filtered (common word, 1 chat)", shuffled(common_words, "common words"));
  for (auto* list : {&filtered.newest, &filtered.relevance})
    for (auto& q : *list) q.conversations = {1 + static_cast<int64_t>(rng.below(20))};
  kinds.push_back(filtered);
  Kind timed = kind("filtered (common word, 1 month)", shuffled(common_words, "common words"));
  const uint64_t span_ms = static_cast<uint64_t>(messages) * 90'000;
  for (auto* list : {&timed.newest, &timed.relevance})
    for (auto& q : *list) {
      q.since_ms = kStartMs + rng.below(std::max<uint64_t>(span_ms, 1));
      q.until_ms = q.since_ms + 30 * 86'400'000ull;
    }
  kinds.push_back(timed);
  kinds.push_back(kind("CJK word (2 characters)", cjk));
  kinds.push_back(kind("CJK character (1 of a word)", cjk_chars));
  kinds.push_back(kind("very common word (>10%)", stopwords));
  for (const Kind& k : kinds) check_disjoint(k);
  // The warm-up: rare words past those the runs took.
  size_t used = 2 * std::min(per_kind, rare.size() / 2);
  std::vector<std::string> rest(rare.begin() + static_cast<long>(used),
                                rare.begin() + static_cast<long>(std::min(rare.size(), used + 50)));
  out.warmup = queries(rest);
  return out;
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
      "%u MiB\n",
      messages, per_kind, batch,
      g_cache_mib ? g_cache_mib : db::Database::Options{}.cache_kib / 1024);
  bench::print_machine("start", bench::measure_machine(root));
  std::printf("\n");
  Queries queries = make_kinds(messages, per_kind);
  Figures enc = run(root, true, messages, batch, queries, reuse);
  Figures plain =
      run(root, false, messages, batch, queries, reuse && fs::exists(root / "unkeyed-live.db"));

  const double n = static_cast<double>(messages);
  // `decimals`: digits after the point for both columns; the ratio is encrypted / unkeyed.
  auto row = [](const char* label, double e, double p, int decimals) {
    std::printf("%-50s %13.*f %13.*f %7.2fx\n", label, decimals, e, decimals, p,
                p > 0 ? e / p : 0.0);
  };
  if (!reuse) {
    // Search's own share of the writes: the time they took with search minus without.
    auto share = [&](double with, double without) {
      return with > without ? n / (with - without) : 0;
    };
    std::printf("%-50s %13s %13s %8s\n", "indexing (wall clock | per CPU-second)", "encrypted",
                "unkeyed", "enc/unk");
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
    row("  index data (postings, document sizes), MB", enc.index_bytes / 1e6,
        plain.index_bytes / 1e6, 1);
    std::printf("\n");
  }

  std::printf("query runs: no query twice in a run, and none in both orders\n");
  std::printf(
      "  warm: one connection for every run, after %zu warm-up queries; the database file in "
      "the OS page cache (%.0f%% / %.0f%%, encrypted / unkeyed)\n",
      queries.warmup.size(), 100 * enc.warm_resident, 100 * plain.warm_resident);
  for (const Figures* f : {&enc, &plain}) {
    const char* tag = f == &enc ? "encrypted" : "unkeyed";
    if (f->drops.problem.empty())
      std::printf(
          "  cold (%s): each run on the database reopened and out of the OS page cache: at "
          "most %.1f%% of it still cached; drop_caches needed in %d of %d runs\n",
          tag, 100 * f->drops.worst_resident, f->drops.global_drops, f->drops.runs);
    else
      std::printf(
          "  cold (%s): each run on the database reopened; the OS page cache could NOT be "
          "dropped: %s (up to %.0f%% of the database still cached)\n",
          tag, f->drops.problem.c_str(), 100 * f->drops.worst_resident);
  }
  auto pct = [](size_t part, size_t whole) {
    return whole ? 100.0 * static_cast<double>(part) / static_cast<double>(whole) : 0.0;
  };
  for (int order = 0; order < 2; ++order) {
    std::printf("\nquery latency, first page of 20, %s (ms)\n",
                order == 0 ? "newest first" : "by relevance");
    // The ratios compare CPU time: on a machine shared with other work the wall clock also
    // counts the waits for a core, which have nothing to do with encryption.
    std::printf("%-32s %4s %5s | %-27s | %-27s | %-20s | %-20s | %s\n", "", "", "",
                "encrypted, warm", "encrypted, cold", "unkeyed, warm", "unkeyed, cold",
                "CPU95 enc/unk");
    std::printf(
        "%-32s %4s %5s | %6s %6s %6s %6s | %6s %6s %6s %6s | %6s %6s %6s | %6s %6s %6s | %6s "
        "%6s\n",
        "", "n", "hits", "p50", "p95", "p99", "CPU95", "p50", "p95", "p99", "CPU95", "p50", "p95",
        "CPU95", "p50", "p95", "CPU95", "warm", "cold");
    size_t pages = 0, by_score = 0, by_time = 0;
    for (const Kind& k : queries.kinds) {
      const KindFigures& e = enc.latency[k.name];
      const KindFigures& p = plain.latency[k.name];
      const Latency &ew = e.warm[order], &ec = e.cold[order], &pw = p.warm[order],
                    &pc = p.cold[order];
      std::printf(
          "%-32s %4zu %5.1f | %6.2f %6.2f %6.2f %6.2f | %6.2f %6.2f %6.2f %6.2f | "
          "%6.2f %6.2f %6.2f | %6.2f %6.2f %6.2f | %5.2fx %5.2fx\n",
          k.name.c_str(), ew.n, ew.hits, ew.p50, ew.p95, ew.p99, ew.cpu_p95, ec.p50, ec.p95, ec.p99,
          ec.cpu_p95, pw.p50, pw.p95, pw.cpu_p95, pc.p50, pc.p95, pc.cpu_p95,
          pw.cpu_p95 > 0 ? ew.cpu_p95 / pw.cpu_p95 : 0,
          pc.cpu_p95 > 0 ? ec.cpu_p95 / pc.cpu_p95 : 0);
      for (const Latency* l : {&ew, &ec, &pw, &pc}) {
        pages += l->ordered_pages;
        by_score += l->by_score;
        by_time += l->by_time;
      }
    }
    std::printf("%-32s pages of 2+ hits in score order: %.0f%%, in time order: %.0f%%\n", "",
                pct(by_score, pages), pct(by_time, pages));
  }
  if (reuse) {
    std::printf("\n");
    bench::print_machine("end", bench::measure_machine(root));
    return 0;
  }
  std::printf("\n%-46s %14s %14s %8s\n", "maintenance", "encrypted", "unkeyed", "enc/unk");
  row("purge after 100 edits of recent messages, ms", enc.purge_recent_ms, plain.purge_recent_ms,
      1);
  row("purge after deleting one old message, ms", enc.purge_archive_ms, plain.purge_archive_ms, 1);
  std::printf("one deletion, then a purge, as the Client does\n");
  auto ratio = [](double a, double b) { return b > 0 ? a / b : 0; };
  row("  per deletion in the recent part (mean of 20), ms", enc.delete_recent_ms,
      plain.delete_recent_ms, 1);
  row("    CPU, ms", enc.delete_recent_cpu_ms, plain.delete_recent_cpu_ms, 1);
  row("  in the archive: deletions until its rewrite", enc.archive_deletes, plain.archive_deletes,
      0);
  row("    purge that left the old text pending, ms", enc.delete_archive_ms,
      plain.delete_archive_ms, 1);
  row("    purge that rewrote the archive, ms", enc.archive_rewrite_ms, plain.archive_rewrite_ms,
      1);
  row("  per deletion in the archive (amortized), ms", enc.delete_archive_amortized_ms,
      plain.delete_archive_amortized_ms, 1);
  row("    CPU, ms", enc.delete_archive_amortized_cpu_ms, plain.delete_archive_amortized_cpu_ms, 1);
  row("  archive / recent per deletion (target <= 2)",
      ratio(enc.delete_archive_amortized_ms, enc.delete_recent_ms),
      ratio(plain.delete_archive_amortized_ms, plain.delete_recent_ms), 2);
  row("    CPU", ratio(enc.delete_archive_amortized_cpu_ms, enc.delete_recent_cpu_ms),
      ratio(plain.delete_archive_amortized_cpu_ms, plain.delete_recent_cpu_ms), 2);
  row("  per deletion in the archive, rewritten at once, ms", enc.delete_archive_everything_ms,
      plain.delete_archive_everything_ms, 1);
  row("    CPU, ms", enc.delete_archive_everything_cpu_ms, plain.delete_archive_everything_cpu_ms,
      1);
  row("  at once / recent per deletion (before), CPU",
      ratio(enc.delete_archive_everything_cpu_ms, enc.delete_recent_cpu_ms),
      ratio(plain.delete_archive_everything_cpu_ms, plain.delete_recent_cpu_ms), 2);
  row("integrity check (whole index), s", enc.check_s, plain.check_s, 2);
  std::printf("\n");
  bench::print_machine("end", bench::measure_machine(root));
  if (keep.empty()) {
    std::error_code ec;
    fs::remove_all(root, ec);
  }
  return 0;
}
