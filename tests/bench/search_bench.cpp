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
#include "Database.h"
#include "Schema.h"
#include "SearchIndex.h"

namespace {
using namespace sotto;
namespace fs = std::filesystem;
using bench::Steady;

using bench::check;
using bench::die;
using bench::seconds_since;

// ---- a deterministic corpus ----

// splitmix64: the same sequence on every platform (std distributions are not).
class Rng {
 public:
  explicit Rng(uint64_t seed) : s_(seed) {}
  uint64_t next() {
    uint64_t z = (s_ += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
  }
  double uniform() { return static_cast<double>(next() >> 11) * 0x1.0p-53; }
  uint64_t below(uint64_t n) { return next() % n; }
  double normal() {
    double u = std::max(uniform(), 1e-12), v = uniform();
    return std::sqrt(-2 * std::log(u)) * std::cos(2 * M_PI * v);
  }

 private:
  uint64_t s_;
};

void append_utf8(std::string& out, char32_t c) {
  if (c < 0x80) {
    out += static_cast<char>(c);
  } else if (c < 0x800) {
    out += static_cast<char>(0xC0 | (c >> 6));
    out += static_cast<char>(0x80 | (c & 0x3F));
  } else {
    out += static_cast<char>(0xE0 | (c >> 12));
    out += static_cast<char>(0x80 | ((c >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (c & 0x3F));
  }
}

std::vector<std::string> split(const std::string& s) {
  std::vector<std::string> out;
  size_t i = 0;
  while (i < s.size()) {
    size_t j = s.find(' ', i);
    if (j == std::string::npos) j = s.size();
    if (j > i) out.push_back(s.substr(i, j - i));
    i = j + 1;
  }
  return out;
}

struct Language {
  std::string name;
  double share;
  bool spaces;  // words separated by spaces (else CJK: written together)
  std::vector<std::string> words;
  std::vector<double> cdf;  // Zipf over `words`, most frequent first

  void finish() {
    double sum = 0;
    cdf.clear();
    for (size_t r = 0; r < words.size(); ++r) {
      sum += 1.0 / std::pow(static_cast<double>(r) + 1.5, 1.02);
      cdf.push_back(sum);
    }
    for (double& c : cdf) c /= sum;
  }
  size_t pick(Rng& rng) const {
    return static_cast<size_t>(std::lower_bound(cdf.begin(), cdf.end(), rng.uniform()) -
                               cdf.begin());
  }
};

// Real frequent words first, then a long synthetic tail shaped like the language.
std::vector<Language> make_languages() {
  std::vector<Language> langs;
  Rng rng(7);
  auto syllable_words = [&](const std::vector<std::string>& syllables, size_t count,
                            std::vector<std::string>& out) {
    while (out.size() < count) {
      std::string w;
      size_t n = 1 + rng.below(3) + (rng.below(4) == 0);
      for (size_t k = 0; k < n; ++k) w += syllables[rng.below(syllables.size())];
      out.push_back(w);
    }
  };
  {
    Language en{"English", 0.45, true, {}, {}};
    en.words = split(
        "i you the to a it and is that me my for in on so be have we just this what do not "
        "are no can your but at with was like get yes ok all know go up if good out there "
        "how will one about now see time when think they did got today tomorrow meeting lunch "
        "dinner call tonight work home later week weekend thanks sorry love back here then "
        "going need want come still send really right let well make last night day morning "
        "office train station photo photos plan party birthday coffee flight hotel ticket "
        "doctor school kids mom dad happy great nice sure maybe soon already again because "
        "something anything everyone meet meeting's restaurant cinema movie game match "
        "football weather rain sunny cold hot beach trip holiday vacation budget report "
        "project deadline client presentation review update draft invoice contract");
    syllable_words(
        {"ka", "lo", "mi", "ne", "ru", "sa", "to", "vi",  "ze",  "po",  "an",  "el", "or",
         "us", "qu", "ba", "de", "fi", "go", "hu", "ter", "son", "mar", "lin", "ber"},
        40000, en.words);
    langs.push_back(std::move(en));
  }
  {
    Language eu{"French/German/Spanish", 0.18, true, {}, {}};
    eu.words = split(
        "je tu il de la le et à un une est pas que qui très café déjà être où voilà merci "
        "bonjour demain ce soir français ich du und der die das nicht für über schön müssen "
        "grüße straße morgen danke gut yo tú el la de que y en qué cómo está mañana señor año "
        "niño gracias bien hola adiós también después reunión");
    syllable_words({"é",  "è",  "à",  "ü",   "ö",  "ä",  "ñ",  "ça", "le", "ra", "mo", "nu",
                    "ti", "be", "ch", "sch", "ei", "au", "ón", "ía", "ga", "vo", "ré", "ße"},
                   30000, eu.words);
    langs.push_back(std::move(eu));
  }
  {
    Language ru{"Russian", 0.10, true, {}, {}};
    ru.words = split(
        "я ты и в не на что это как да нет привет дела хорошо спасибо завтра сегодня встреча "
        "работа дом вечером утром можно нужно давай пока конечно фото поезд билет");
    syllable_words({"ка", "ло",  "ми", "не", "ру", "са", "то", "ви", "за", "по",
                    "ан", "ель", "ор", "ус", "ба", "де", "ги", "ду", "жи", "щи"},
                   30000, ru.words);
    langs.push_back(std::move(ru));
  }
  // CJK: words from common characters, written without spaces.
  std::vector<std::string> hanzi;
  {
    std::string pool =
        "的一是不了人我在有他这中大来上国个到说们为子和你地出道也时年得就那要下以生会自着去"
        "之过家学对可她里后小么心多天而能好都然没日于起还发成事只作当想看文无开手十用主行方"
        "又如前所本见经头面公同三已老从动两长知民样现分将外但身些与高意进把法此实回二理美点月"
        "明其种声全工己话儿者向情部正名定女问力机给等几很业最间新什打便位因重被走电四第门相次"
        "东政海口使教西再平真听世气信北少关并内加化由却代军产入先山五太水万市眼体别处总才场师"
        "书比住员九笑性通目华报立马命张活难神数件安表原车白应路期叫死常提感金何更反合放做系计";
    size_t len = 0;
    for (size_t i = 0; i < pool.size(); i += len) {
      len = 3;
      hanzi.push_back(pool.substr(i, 3));
    }
  }
  std::vector<std::string> hiragana;
  for (char32_t c = 0x3042; c <= 0x3093; ++c) {
    std::string s;
    append_utf8(s, c);
    hiragana.push_back(s);
  }
  {
    Language zh{"Chinese", 0.12, false, {}, {}};
    zh.words = split(
        "我 你 的 了 是 在 我们 你好 明天 今天 工作 北京 上海 会议 时间 朋友 谢谢 没有 什么 "
        "现在 晚上 中午 吃饭 电话 照片 周末 公司 项目 报告 生日 咖啡 火车站 机场 医生 学校");
    while (zh.words.size() < 25000) {
      std::string w;
      size_t n = 1 + (rng.below(10) < 7) + (rng.below(10) == 0);
      for (size_t k = 0; k < n; ++k) w += hanzi[rng.below(hanzi.size())];
      zh.words.push_back(w);
    }
    langs.push_back(std::move(zh));
  }
  {
    Language ja{"Japanese", 0.08, false, {}, {}};
    ja.words = split(
        "は が を に で と の です ます 東京 明日 今日 会議 ありがとう お疲れ様 よろしく 写真 "
        "電話 時間 大丈夫 駅 会社 友達 週末 ランチ");
    while (ja.words.size() < 20000) {
      std::string w = hanzi[rng.below(hanzi.size())];
      if (rng.below(2)) w += hanzi[rng.below(hanzi.size())];
      for (size_t k = rng.below(3); k > 0; --k) w += hiragana[rng.below(hiragana.size())];
      ja.words.push_back(w);
    }
    langs.push_back(std::move(ja));
  }
  {
    Language ko{"Korean", 0.07, true, {}, {}};
    ko.words = split(
        "안녕하세요 감사합니다 내일 오늘 회의 사진 점심 저녁 친구 학교 회사 주말 시간 괜찮아요 "
        "네 아니요 지금 어디 뭐 해요");
    std::vector<std::string> syllables;
    for (int i = 0; i < 400; ++i) {
      std::string s;
      append_utf8(s, static_cast<char32_t>(0xAC00 + (rng.below(19) * 21 + rng.below(21)) * 28 +
                                           (rng.below(3) == 0 ? rng.below(28) : 0)));
      syllables.push_back(s);
    }
    syllable_words(syllables, 25000, ko.words);
    langs.push_back(std::move(ko));
  }
  for (auto& l : langs) l.finish();
  return langs;
}

struct Message {
  int64_t conversation;
  std::string sender;
  std::string body;
  std::string attachment_names;
  uint64_t sort_ms;
  std::optional<uint64_t> expires_ms;
};

constexpr int kConversations = 300;
constexpr uint64_t kStartMs = 1'672'531'200'000;  // 2023-01-01

class Corpus {
 public:
  explicit Corpus(size_t messages) : languages_(make_languages()), rng_(42), total_(messages) {
    for (const auto& l : languages_) document_frequency_.emplace_back(l.words.size(), 0);
    double sum = 0;
    for (int c = 0; c < kConversations; ++c) {
      sum += 1.0 / (c + 2);
      conversation_cdf_.push_back(sum);
    }
    for (double& c : conversation_cdf_) c /= sum;
  }

  Message next(size_t i) {
    Message m;
    size_t conv = static_cast<size_t>(
        std::lower_bound(conversation_cdf_.begin(), conversation_cdf_.end(), rng_.uniform()) -
        conversation_cdf_.begin());
    m.conversation = static_cast<int64_t>(conv) + 1;
    char sender[33];
    std::snprintf(sender, sizeof sender, "%032llx",
                  static_cast<unsigned long long>(conv * 7 + rng_.below(2 + conv % 8)));
    m.sender = sender;
    // Each conversation mostly keeps one language.
    size_t lang = conv % 10 < 4    ? 0
                  : conv % 10 < 6  ? 1
                  : conv % 10 == 6 ? 2
                  : conv % 10 == 7 ? 3
                  : conv % 10 == 8 ? 4
                                   : 5;
    if (rng_.below(10) == 0) lang = rng_.below(languages_.size());
    const Language& l = languages_[lang];
    int words = static_cast<int>(std::lround(std::exp(1.6 + 0.9 * rng_.normal())));
    words = std::clamp(words, 1, 200);
    std::vector<size_t> ids;
    for (int w = 0; w < words; ++w) {
      size_t id = l.pick(rng_);
      ids.push_back(id);
      std::string word = l.words[id];
      if (l.spaces) {
        if (w == 0 && lang <= 1 && rng_.below(2) && word[0] >= 'a' && word[0] <= 'z')
          word[0] = static_cast<char>(word[0] - 32);
        if (w > 0) m.body += ' ';
      } else if (w > 0 && rng_.below(12) == 0) {
        m.body += lang == 3 ? "，" : "、";
      }
      m.body += word;
      if (l.spaces && words > 6 && rng_.below(9) == 0) m.body += rng_.below(2) ? "," : ".";
    }
    if (rng_.below(5) == 0) m.body += rng_.below(2) ? "?" : "!";
    std::sort(ids.begin(), ids.end());
    ids.erase(std::unique(ids.begin(), ids.end()), ids.end());
    for (size_t id : ids) ++document_frequency_[lang][id];
    if (l.spaces && ids.size() >= 2 && rng_.below(50) == 0 && phrases_.size() < 4000) {
      auto parts = split(m.body);
      size_t k = rng_.below(parts.size() - 1);
      auto clean = [](std::string s) {
        while (!s.empty() &&
               (s.back() == ',' || s.back() == '.' || s.back() == '?' || s.back() == '!'))
          s.pop_back();
        return s;
      };
      if (parts.size() >= 2) phrases_.push_back(clean(parts[k]) + " " + clean(parts[k + 1]));
    }
    if (rng_.below(25) == 0) {
      int files = 1 + (rng_.below(4) == 0);
      for (int f = 0; f < files; ++f) {
        if (f) m.attachment_names += '\n';
        switch (rng_.below(4)) {
          case 0:
            m.attachment_names += "IMG_" + std::to_string(20230000 + rng_.below(20000)) + ".jpg";
            break;
          case 1:
            m.attachment_names += languages_[0].words[languages_[0].pick(rng_)] + "-" +
                                  languages_[0].words[languages_[0].pick(rng_)] + ".pdf";
            break;
          case 2:
            m.attachment_names += "Scan " + std::to_string(rng_.below(500)) + ".png";
            break;
          default:
            m.attachment_names += "voice-" + std::to_string(rng_.below(10000)) + ".ogg";
        }
      }
    }
    // Three years of history, mostly written in time order. Out of order: now and then a
    // device comes back online with a backlog of a few hours to two days (a burst of older
    // messages), and once another device's history is imported: 0.5% of the history, from the
    // first year, written at 60% of it.
    uint64_t now = kStartMs + i * 90'000;
    m.sort_ms = now + rng_.below(60'000);
    size_t import_size = total_ / 200, import_at = total_ * 6 / 10;
    if (i >= import_at && i < import_at + import_size) {
      m.sort_ms = kStartMs + rng_.below(365 * 86'400'000ull);
    } else if (backlog_left_ > 0) {
      --backlog_left_;
      m.sort_ms = now - std::min(now - kStartMs, rng_.below(backlog_span_ms_));
    } else if (rng_.below(20'000) == 0) {
      backlog_left_ = 100 + rng_.below(300);
      backlog_span_ms_ = (2 + rng_.below(47)) * 3'600'000ull;
    }
    if (rng_.below(50) == 0) m.expires_ms = kStartMs + 10 * 365 * 86'400'000ull;
    return m;
  }

  // Query material, by document frequency in the generated history.
  std::vector<std::string> words_with_df(double lo, double hi, bool cjk, size_t min_bytes = 1) {
    std::vector<std::string> out;
    for (size_t lang = 0; lang < languages_.size(); ++lang) {
      if (cjk != (lang == 3 || lang == 4)) continue;
      for (size_t id = 0; id < languages_[lang].words.size(); ++id) {
        double df = document_frequency_[lang][id];
        const std::string& w = languages_[lang].words[id];
        if (df >= lo && df <= hi && w.size() >= min_bytes && (!cjk || w.size() == 6))
          out.push_back(w);
      }
    }
    return out;
  }
  const std::vector<std::string>& phrases() const { return phrases_; }
  size_t total() const { return total_; }

 private:
  std::vector<Language> languages_;
  std::vector<std::vector<uint32_t>> document_frequency_;
  std::vector<double> conversation_cdf_;
  std::vector<std::string> phrases_;
  Rng rng_;
  size_t total_;
  size_t backlog_left_ = 0;
  uint64_t backlog_span_ms_ = 0;
};

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
    Message m = corpus.next(i);
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
