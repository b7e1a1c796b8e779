// A deterministic corpus of chat messages, shared by the benchmarks that write or send text:
// several languages including Chinese, Japanese and Korean, Zipf-distributed vocabularies,
// log-normal lengths, attachments with file names, and some late-arriving messages. The same
// seed gives the same messages on every platform, so runs and benchmarks can be compared.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <optional>
#include <string>
#include <vector>

namespace sotto::bench {

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

inline void append_utf8(std::string& out, char32_t c) {
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

inline std::vector<std::string> split(const std::string& s) {
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
inline std::vector<Language> make_languages() {
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

struct CorpusMessage {
  int64_t conversation;
  std::string sender;
  std::string body;
  std::string attachment_names;
  uint64_t sort_ms;
  std::optional<uint64_t> expires_ms;
};

inline constexpr int kConversations = 300;
inline constexpr uint64_t kStartMs = 1'672'531'200'000;  // 2023-01-01

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

  CorpusMessage next(size_t i) {
    CorpusMessage m;
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

}  // namespace sotto::bench
