#include "SearchTokenizer.h"

#include <sqlcipher/sqlite3.h>

#include <atomic>
#include <cstring>
#include <mutex>
#include <new>

namespace sotto::search {
namespace {

// The FTS3 tokenizer interface (SQLite's ext/fts3/fts3_tokenizer.h, which Debian does not
// install). Its layout is part of SQLite's documented, stable extension ABI.
struct TokenizerModule;
struct TokenizerBase {
  const TokenizerModule* module;
};
struct CursorBase {
  TokenizerBase* tokenizer;  // set by whoever called xOpen, not by xOpen itself
};
struct TokenizerModule {
  int version;
  int (*create)(int argc, const char* const* argv, TokenizerBase** out);
  int (*destroy)(TokenizerBase* tokenizer);
  int (*open)(TokenizerBase* tokenizer, const char* input, int bytes, CursorBase** out);
  int (*close)(CursorBase* cursor);
  int (*next)(CursorBase* cursor, const char** token, int* bytes, int* begin, int* end,
              int* position);
  int (*languageid)(CursorBase* cursor, int id);
};

// unicode61 as compiled into this SQLCipher, found once through fts3_tokenizer('unicode61').
std::atomic<const TokenizerModule*> g_unicode61{nullptr};

// Marks that belong to the character before them (a kana's voicing mark written apart,
// variation selectors, the zero-width joiner): never the start of a bigram.
bool is_attached_mark(char32_t c) {
  return (c >= 0x0300 && c <= 0x036F) || c == 0x3099 || c == 0x309A || c == 0x200D ||
         (c >= 0xFE00 && c <= 0xFE0F) || (c >= 0xE0100 && c <= 0xE01EF);
}

bool may_hold_cjk(const char* p, size_t n) {
  // Every character is_cjk() accepts is U+1100 or above: three or four UTF-8 bytes whose
  // first byte is 0xE1 or more. Most text has none and skips the decoding.
  for (size_t i = 0; i < n; ++i)
    if (static_cast<unsigned char>(p[i]) >= 0xE1) return true;
  return false;
}

struct Tokenizer {
  TokenizerBase base;  // first: SQLite casts between the two
  TokenizerBase* inner = nullptr;
};

struct Piece {
  uint32_t text_begin, text_size;  // in Cursor::text
  int begin, end;
  bool same_position;  // a CJK run's trailing character
};

struct Cursor {
  CursorBase base;  // first: SQLite casts between the two
  const char* input = nullptr;
  int size = 0;
  CursorBase* inner = nullptr;
  std::string text;  // folded text of the pieces waiting to be returned
  std::vector<Piece> pieces;
  size_t next_piece = 0;
  int position = -1;  // the last position handed out
};

const TokenizerModule* unicode61() { return g_unicode61.load(std::memory_order_acquire); }

int open_inner(Tokenizer* t, const char* input, int size, CursorBase** out) {
  const TokenizerModule* m = unicode61();
  int rc = m->open(t->inner, input, size, out);
  if (rc == SQLITE_OK) (*out)->tokenizer = t->inner;
  return rc;
}

int x_create(int argc, const char* const* argv, TokenizerBase** out) {
  (void)argc;
  (void)argv;
  const TokenizerModule* m = unicode61();
  if (!m) return SQLITE_ERROR;
  auto* t = new (std::nothrow) Tokenizer();
  if (!t) return SQLITE_NOMEM;
  // remove_diacritics=1: "é" and "e" are one word. (=2, which also folds letters such as
  // "ø", needs SQLite 3.27.)
  const char* args[] = {"remove_diacritics=1"};
  int rc = m->create(1, args, &t->inner);
  if (rc != SQLITE_OK) {
    delete t;
    return rc;
  }
  t->inner->module = m;
  *out = &t->base;
  return SQLITE_OK;
}

int x_destroy(TokenizerBase* base) {
  auto* t = reinterpret_cast<Tokenizer*>(base);
  if (t->inner) unicode61()->destroy(t->inner);
  delete t;
  return SQLITE_OK;
}

int x_open(TokenizerBase* base, const char* input, int size, CursorBase** out) {
  auto* t = reinterpret_cast<Tokenizer*>(base);
  if (!input) {
    input = "";
    size = 0;
  } else if (size < 0) {
    size = static_cast<int>(std::strlen(input));
  }
  auto* c = new (std::nothrow) Cursor();
  if (!c) return SQLITE_NOMEM;
  c->base.tokenizer = base;
  c->input = input;
  c->size = size;
  int rc = open_inner(t, input, size, &c->inner);
  if (rc != SQLITE_OK) {
    delete c;
    return rc;
  }
  *out = &c->base;
  return SQLITE_OK;
}

int x_close(CursorBase* base) {
  auto* c = reinterpret_cast<Cursor*>(base);
  if (c->inner) unicode61()->close(c->inner);
  delete c;
  return SQLITE_OK;
}

void add_piece(Cursor* c, const char* text, size_t n, int begin, int end, bool same_position) {
  c->pieces.push_back(
      {static_cast<uint32_t>(c->text.size()), static_cast<uint32_t>(n), begin, end, same_position});
  c->text.append(text, n);
}

template <typename Char>
bool same_text(const char* input, const Char& a, const Char& b) {
  return a.end - a.begin == b.end - b.begin &&
         std::memcmp(input + a.begin, input + b.begin, static_cast<size_t>(a.end - a.begin)) == 0;
}

// Splits the unicode61 token at input[begin, end) (folded: `folded`) into pieces: its
// non-CJK parts folded by unicode61 itself, its CJK runs as bigrams and single characters.
int split_token(Cursor* c, int begin, int end) {
  auto* t = reinterpret_cast<Tokenizer*>(c->base.tokenizer);
  struct Char {
    int begin, end;
    bool cjk;
  };
  std::vector<Char> chars;
  for (int i = begin; i < end;) {
    size_t len = 0;
    char32_t cp = decode_utf8(c->input + i, static_cast<size_t>(end - i), len);
    int next = i + static_cast<int>(len);
    if (is_attached_mark(cp) && !chars.empty()) {
      chars.back().end = next;
    } else {
      chars.push_back({i, next, is_cjk(cp)});
    }
    i = next;
  }
  for (size_t r = 0; r < chars.size();) {
    size_t s = r;
    while (r < chars.size() && chars[r].cjk == chars[s].cjk) ++r;
    int run_begin = chars[s].begin, run_end = chars[r - 1].end;
    if (!chars[s].cjk) {
      // Let unicode61 fold this part, exactly as it would have without the CJK around it.
      CursorBase* sub = nullptr;
      int rc = open_inner(t, c->input + run_begin, run_end - run_begin, &sub);
      if (rc != SQLITE_OK) return rc;
      const char* tok;
      int n, b, e, p;
      while ((rc = unicode61()->next(sub, &tok, &n, &b, &e, &p)) == SQLITE_OK)
        add_piece(c, tok, static_cast<size_t>(n), run_begin + b, run_begin + e, false);
      unicode61()->close(sub);
      if (rc != SQLITE_DONE) return rc;
      continue;
    }
    size_t count = r - s;
    if (count == 1) {
      add_piece(c, c->input + run_begin, static_cast<size_t>(run_end - run_begin), run_begin,
                run_end, false);
      continue;
    }
    bool query_phrase = run_end < c->size && c->input[run_end] == kNoUnigrams;
    auto unigram = [&](size_t i) {
      add_piece(c, c->input + chars[i].begin, static_cast<size_t>(chars[i].end - chars[i].begin),
                chars[i].begin, chars[i].end, true);
    };
    for (size_t i = s; i + 1 < r; ++i) {
      add_piece(c, c->input + chars[i].begin,
                static_cast<size_t>(chars[i + 1].end - chars[i].begin), chars[i].begin,
                chars[i + 1].end, false);
      if (!query_phrase) unigram(i);
    }
    // The last character shares the last bigram's position, unless the same character is
    // already a word there.
    if (!query_phrase && !same_text(c->input, chars[r - 2], chars[r - 1])) unigram(r - 1);
  }
  return SQLITE_OK;
}

int x_next(CursorBase* base, const char** token, int* bytes, int* begin, int* end, int* position) {
  auto* c = reinterpret_cast<Cursor*>(base);
  try {
    while (c->next_piece >= c->pieces.size()) {
      c->pieces.clear();
      c->text.clear();
      c->next_piece = 0;
      const char* tok;
      int n, b, e, p;
      int rc = unicode61()->next(c->inner, &tok, &n, &b, &e, &p);
      if (rc != SQLITE_OK) return rc;  // SQLITE_DONE at the end
      if (b > 0 && c->input[b - 1] == kFilterMark) {
        c->text.push_back(kFilterMark);
        c->text.append(tok, static_cast<size_t>(n));
        c->pieces.push_back({0, static_cast<uint32_t>(c->text.size()), b, e, false});
      } else if (!may_hold_cjk(c->input + b, static_cast<size_t>(e - b))) {
        // The common case: hand out unicode61's own buffer, no copy.
        *token = tok;
        *bytes = n;
        *begin = b;
        *end = e;
        *position = ++c->position;
        return SQLITE_OK;
      } else {
        rc = split_token(c, b, e);
        if (rc != SQLITE_OK) return rc;
      }
    }
    const Piece& piece = c->pieces[c->next_piece++];
    if (!piece.same_position || c->position < 0) ++c->position;
    *token = c->text.data() + piece.text_begin;
    *bytes = static_cast<int>(piece.text_size);
    *begin = piece.begin;
    *end = piece.end;
    *position = c->position;
    return SQLITE_OK;
  } catch (const std::bad_alloc&) {
    return SQLITE_NOMEM;
  }
}

const TokenizerModule kModule = {0, x_create, x_destroy, x_open, x_close, x_next, nullptr};

// Runs `sql` with one optional pointer-blob parameter; returns the blob column of the row.
int run_pointer_sql(sqlite3* db, const char* sql, const void* bind_pointer, const void** out) {
  sqlite3_stmt* stmt = nullptr;
  int rc = sqlite3_prepare_v2(db, sql, -1, &stmt, nullptr);
  if (rc != SQLITE_OK) return rc;
  if (bind_pointer)
    sqlite3_bind_blob(stmt, 1, &bind_pointer, sizeof(bind_pointer), SQLITE_TRANSIENT);
  rc = sqlite3_step(stmt);
  if (rc == SQLITE_ROW) {
    if (out && sqlite3_column_bytes(stmt, 0) == sizeof(void*))
      std::memcpy(static_cast<void*>(out), sqlite3_column_blob(stmt, 0), sizeof(void*));
    rc = SQLITE_OK;
  } else if (rc == SQLITE_DONE) {
    rc = SQLITE_OK;
  }
  sqlite3_finalize(stmt);
  return rc;
}

Error sqlite_failure(sqlite3* db, int rc, const char* what) {
  return make_error(ErrorCode::kInternal,
                    std::string("setting up the search tokenizer failed (") + what +
                        "): " + (db ? sqlite3_errmsg(db) : sqlite3_errstr(rc)));
}

// The process-wide tokenizer instance tokenize() uses; created on first use.
struct SharedTokenizer {
  TokenizerBase* tokenizer = nullptr;
  Status status;
};

const SharedTokenizer& shared_tokenizer() {
  static const SharedTokenizer shared = [] {
    SharedTokenizer s;
    if (!unicode61()) {
      // No profile was opened yet: look unicode61 up on a scratch connection.
      sqlite3* db = nullptr;
      int rc =
          sqlite3_open_v2(":memory:", &db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX, nullptr);
      Status r = rc == SQLITE_OK ? register_tokenizer(db) : Status(sqlite_failure(db, rc, "open"));
      sqlite3_close_v2(db);
      if (!r.ok()) {
        s.status = r;
        return s;
      }
    }
    int rc = x_create(0, nullptr, &s.tokenizer);
    if (rc != SQLITE_OK) s.status = sqlite_failure(nullptr, rc, "create");
    if (s.tokenizer) s.tokenizer->module = &kModule;
    return s;
  }();
  return shared;
}

}  // namespace

Status register_tokenizer(sqlite3* db) {
  int enabled = 0;
  int rc = sqlite3_db_config(db, SQLITE_DBCONFIG_ENABLE_FTS3_TOKENIZER, 1, &enabled);
  if (rc != SQLITE_OK || !enabled) return sqlite_failure(db, rc, "enable fts3_tokenizer");
  if (!unicode61()) {
    const void* found = nullptr;
    rc = run_pointer_sql(db, "SELECT fts3_tokenizer('unicode61')", nullptr, &found);
    if (rc != SQLITE_OK || !found) {
      sqlite3_db_config(db, SQLITE_DBCONFIG_ENABLE_FTS3_TOKENIZER, 0, nullptr);
      return sqlite_failure(db, rc, "find unicode61");
    }
    g_unicode61.store(static_cast<const TokenizerModule*>(found), std::memory_order_release);
  }
  rc = run_pointer_sql(db, "SELECT fts3_tokenizer('sotto', ?1)", &kModule, nullptr);
  // Registered tokenizers stay; the SQL function that registers them goes back off, so no
  // statement can plant a function pointer on this connection later.
  sqlite3_db_config(db, SQLITE_DBCONFIG_ENABLE_FTS3_TOKENIZER, 0, nullptr);
  if (rc != SQLITE_OK) return sqlite_failure(db, rc, "register");
  return {};
}

Result<std::vector<Token>> tokenize(std::string_view text) {
  // FTS hands its tokenizer each text as a C string, so the index ends a text at its first
  // NUL byte (a peer may send one); so must highlights, scores and the integrity check.
  text = text.substr(0, text.find('\0'));
  const SharedTokenizer& shared = shared_tokenizer();
  if (!shared.status.ok()) return shared.status.error();
  CursorBase* cursor = nullptr;
  int rc = x_open(shared.tokenizer, text.data(), static_cast<int>(text.size()), &cursor);
  if (rc != SQLITE_OK) return sqlite_failure(nullptr, rc, "open");
  cursor->tokenizer = shared.tokenizer;
  std::vector<Token> out;
  const char* tok;
  int n, b, e, p;
  while ((rc = x_next(cursor, &tok, &n, &b, &e, &p)) == SQLITE_OK) {
    Token t;
    t.text.assign(tok, static_cast<size_t>(n));
    t.begin = static_cast<uint32_t>(b);
    t.end = static_cast<uint32_t>(e);
    t.position = p;
    t.prefix = static_cast<size_t>(e) < text.size() && text[static_cast<size_t>(e)] == '*';
    out.push_back(std::move(t));
  }
  x_close(cursor);
  if (rc != SQLITE_DONE) return sqlite_failure(nullptr, rc, "tokenize");
  return out;
}

bool is_cjk(char32_t c) {
  return (c >= 0x1100 && c <= 0x11FF) ||  // Hangul Jamo
         (c >= 0x2E80 && c <= 0x2FDF) ||  // CJK and Kangxi radicals
         c == 0x3005 || c == 0x3006 ||    // 々 〆
         (c >= 0x3040 && c <= 0x30FF) ||  // Hiragana, Katakana
         (c >= 0x3130 && c <= 0x318F) ||  // Hangul compatibility Jamo
         (c >= 0x31F0 && c <= 0x31FF) ||  // Katakana phonetic extensions
         (c >= 0x3400 && c <= 0x4DBF) ||  // CJK extension A
         (c >= 0x4E00 && c <= 0x9FFF) ||  // CJK unified ideographs
         (c >= 0xA960 && c <= 0xA97F) ||  // Hangul Jamo extended A
         (c >= 0xAC00 && c <= 0xD7FF) ||  // Hangul syllables, Jamo extended B
         (c >= 0xF900 && c <= 0xFAFF) ||  // CJK compatibility ideographs
         (c >= 0xFF66 && c <= 0xFF9F) ||  // halfwidth Katakana
         (c >= 0x20000 && c <= 0x3134F);  // CJK extensions B-G, compatibility supplement
}

char32_t decode_utf8(const char* p, size_t n, size_t& len) {
  auto b = [&](size_t i) { return static_cast<unsigned char>(p[i]); };
  unsigned char c = b(0);
  len = 1;
  if (c < 0x80) return c;
  size_t need = c >= 0xF0 ? 4 : c >= 0xE0 ? 3 : c >= 0xC0 ? 2 : 0;
  if (need == 0 || need > n) return 0xFFFD;
  char32_t cp = c & (0x3F >> (need - 1));
  for (size_t i = 1; i < need; ++i) {
    if ((b(i) & 0xC0) != 0x80) return 0xFFFD;
    cp = (cp << 6) | (b(i) & 0x3F);
  }
  len = need;
  return cp;
}

}  // namespace sotto::search
