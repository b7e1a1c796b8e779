#include "Screen.h"

#include <sys/ioctl.h>
#include <termios.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cwchar>
#include <iterator>

namespace sotto::chat {
namespace {

// Decodes one UTF-8 character at `s[i]`; advances `i`. Malformed bytes come back as U+FFFD.
char32_t decode_utf8(const std::string& s, size_t& i) {
  auto c = static_cast<unsigned char>(s[i++]);
  if (c < 0x80) return c;
  int extra = c >= 0xf0 ? 3 : c >= 0xe0 ? 2 : c >= 0xc0 ? 1 : -1;
  if (extra < 0) return 0xfffd;
  char32_t cp = c & (0x3f >> extra);
  for (int k = 0; k < extra; ++k) {
    if (i >= s.size() || (static_cast<unsigned char>(s[i]) & 0xc0) != 0x80) return 0xfffd;
    cp = cp << 6 | (static_cast<unsigned char>(s[i++]) & 0x3f);
  }
  return cp;
}

// Bytes a UTF-8 character starting with `c` needs; 0 for a continuation byte.
size_t utf8_length(unsigned char c) {
  if (c < 0x80) return 1;
  if (c >= 0xf0) return 4;
  if (c >= 0xe0) return 3;
  if (c >= 0xc0) return 2;
  return 0;
}

void append_utf8(std::string& out, char32_t cp) {
  if (cp < 0x80) {
    out += static_cast<char>(cp);
  } else if (cp < 0x800) {
    out += static_cast<char>(0xc0 | (cp >> 6));
    out += static_cast<char>(0x80 | (cp & 0x3f));
  } else if (cp < 0x10000) {
    out += static_cast<char>(0xe0 | (cp >> 12));
    out += static_cast<char>(0x80 | ((cp >> 6) & 0x3f));
    out += static_cast<char>(0x80 | (cp & 0x3f));
  } else {
    out += static_cast<char>(0xf0 | (cp >> 18));
    out += static_cast<char>(0x80 | ((cp >> 12) & 0x3f));
    out += static_cast<char>(0x80 | ((cp >> 6) & 0x3f));
    out += static_cast<char>(0x80 | (cp & 0x3f));
  }
}

std::string to_utf8(const std::u32string& s, size_t begin = 0, size_t end = std::u32string::npos) {
  std::string out;
  end = std::min(end, s.size());
  for (size_t i = begin; i < end; ++i) append_utf8(out, s[i]);
  return out;
}

int char_width(char32_t c) {
  if (c < 0x20 || c == 0x7f) return 0;
  if (c < 0x7f) return 1;
  int w = ::wcwidth(static_cast<wchar_t>(c));
  return w < 0 ? 1 : w;
}

// `text` cut to at most `cols` columns (ANSI sequences kept, and a reset added when cut).
std::string fit(const std::string& text, size_t cols) {
  std::string out;
  size_t used = 0, i = 0;
  while (i < text.size()) {
    if (text[i] == '\x1b') {
      size_t j = i + 1;
      if (j < text.size() && text[j] == '[') {
        ++j;
        while (j < text.size() && !(text[j] >= '@' && text[j] <= '~')) ++j;
      }
      out.append(text, i, j + 1 - i);
      i = j + 1;
      continue;
    }
    size_t start = i;
    int w = char_width(decode_utf8(text, i));
    if (used + static_cast<size_t>(w) > cols) {
      out += "\x1b[0m";
      break;
    }
    used += static_cast<size_t>(w);
    out.append(text, start, i - start);
  }
  return out;
}

}  // namespace

size_t display_width(const std::string& text) {
  size_t w = 0, i = 0;
  while (i < text.size()) {
    if (text[i] == '\x1b') {
      ++i;
      if (i < text.size() && text[i] == '[') {
        ++i;
        while (i < text.size() && !(text[i] >= '@' && text[i] <= '~')) ++i;
      }
      ++i;
      continue;
    }
    w += static_cast<size_t>(char_width(decode_utf8(text, i)));
  }
  return w;
}

struct Screen::TermiosSave {
  termios original{};
};

Screen::Screen(bool interactive, bool color) : interactive_(interactive), color_(color) {
  if (!interactive_) return;
  saved_ = new TermiosSave;
  if (tcgetattr(STDIN_FILENO, &saved_->original) != 0) {
    interactive_ = false;
    return;
  }
  termios raw = saved_->original;
  // Byte at a time, no echo, no signals from Ctrl-C (it clears the line instead), no CR/LF
  // translation on input; output processing stays on so "\n" still returns the carriage.
  raw.c_lflag &= ~static_cast<tcflag_t>(ICANON | ECHO | ISIG | IEXTEN);
  raw.c_iflag &= ~static_cast<tcflag_t>(IXON | ICRNL | INLCR | ISTRIP);
  raw.c_cc[VMIN] = 1;
  raw.c_cc[VTIME] = 0;
  raw_ = tcsetattr(STDIN_FILENO, TCSAFLUSH, &raw) == 0;
  if (!raw_) interactive_ = false;
}

Screen::~Screen() {
  if (raw_) {
    std::string out;
    clear_drawn(out);
    write_out(out);
    tcsetattr(STDIN_FILENO, TCSAFLUSH, &saved_->original);
  }
  delete saved_;
}

int Screen::columns() const {
  winsize ws{};
  if (ioctl(STDOUT_FILENO, TIOCGWINSZ, &ws) == 0 && ws.ws_col > 0) return ws.ws_col;
  return 80;
}

int Screen::rows() const {
  winsize ws{};
  if (ioctl(STDOUT_FILENO, TIOCGWINSZ, &ws) == 0 && ws.ws_row > 0) return ws.ws_row;
  return 24;
}

// Rows a printed line takes once the terminal wrapped it ("\n" starts a row of its own).
size_t Screen::rows_of(const std::string& line, size_t cols) const {
  size_t rows = 0, begin = 0;
  for (;;) {
    size_t nl = line.find('\n', begin);
    size_t w = display_width(line.substr(begin, nl == std::string::npos ? nl : nl - begin));
    rows += w == 0 ? 1 : (w + cols - 1) / cols;
    if (nl == std::string::npos) return rows;
    begin = nl + 1;
  }
}

void Screen::write_out(const std::string& s) {
  size_t off = 0;
  while (off < s.size()) {
    ssize_t n = ::write(STDOUT_FILENO, s.data() + off, s.size() - off);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return;
    off += static_cast<size_t>(n);
  }
}

std::string Screen::paint(const std::string& sgr, const std::string& text) const {
  if (!color_) return text;
  return "\x1b[" + sgr + "m" + text + "\x1b[0m";
}

void Screen::clear_drawn(std::string& out) {
  if (drawn_) out += "\r\x1b[K";
  for (size_t i = 0; i < drawn_footer_; ++i) out += "\x1b[1A\r\x1b[K";
  drawn_ = false;
  drawn_footer_ = 0;
}

void Screen::draw(std::string& out) {
  size_t cols = static_cast<size_t>(columns());
  drawn_widths_.clear();
  for (const auto& row : footer_) {
    std::string fitted = fit(row, cols - 1);
    drawn_widths_.push_back(display_width(fitted));
    out += fitted;
    out += "\r\n";
  }
  drawn_footer_ = footer_.size();
  footer_max_ = std::max(footer_max_, drawn_footer_);
  // The prompt row never wraps: when the line is longer than the room left, show the part
  // around the cursor.
  std::string prompt = fit(prompt_, cols / 2);
  size_t room = cols - 1 - display_width(prompt);
  size_t start = 0, width = 0;
  for (size_t i = cursor_; i > 0; --i) {
    width += static_cast<size_t>(char_width(buf_[i - 1]));
    if (width > room - 1) {
      start = i;
      break;
    }
  }
  size_t end = start, shown = 0, cursor_col = 0;
  while (end < buf_.size()) {
    size_t w = static_cast<size_t>(char_width(buf_[end]));
    if (shown + w > room) break;
    if (end < cursor_) cursor_col += w;
    shown += w;
    ++end;
  }
  out += prompt;
  out += to_utf8(buf_, start, end);
  out += "\r";
  size_t col = display_width(prompt) + cursor_col;
  if (col > 0) out += "\x1b[" + std::to_string(col) + "C";
  drawn_widths_.push_back(display_width(prompt) + shown);
  drawn_cursor_col_ = col;
  drawn_ = true;
}

void Screen::redraw() {
  if (!interactive_) return;
  std::string out;
  clear_drawn(out);
  draw(out);
  write_out(out);
}

void Screen::resized() {
  if (!interactive_) return;
  // Lines printed for the old width may have been rewrapped: rewrite() no longer knows where
  // they are.
  printed_.clear();
  size_t cols = static_cast<size_t>(columns());
  std::string out;
  if (drawn_ && !drawn_widths_.empty()) {
    // A terminal that rewraps on a resize (most do) has moved the cursor to the row of the
    // prompt's rewrapped line where its column fell; the footer rows above may have grown too.
    size_t up = drawn_cursor_col_ / cols;
    for (size_t i = 0; i + 1 < drawn_widths_.size(); ++i)
      up += drawn_widths_[i] == 0 ? 1 : (drawn_widths_[i] + cols - 1) / cols;
    out += "\r";
    if (up > 0) out += "\x1b[" + std::to_string(up) + "A";
    out += "\x1b[J";
  }
  drawn_ = false;
  drawn_footer_ = 0;
  draw(out);
  write_out(out);
}

uint64_t Screen::print(const std::string& line) {
  if (!interactive_) {
    write_out(line + "\n");
    return 0;
  }
  std::string out;
  clear_drawn(out);
  out += line;
  out += "\x1b[0m\r\n";
  uint64_t handle = next_handle_++;
  printed_.push_back({handle, rows_of(line, static_cast<size_t>(columns()))});
  if (printed_.size() > 1000) printed_.pop_front();  // far off the screen by then
  draw(out);
  write_out(out);
  return handle;
}

bool Screen::rewrite(uint64_t handle, const std::string& line) {
  if (!interactive_ || handle == 0 || line.find('\n') != std::string::npos) return false;
  size_t below = 0;  // rows printed after the line
  auto it = printed_.end();
  for (auto r = printed_.rbegin(); r != printed_.rend(); ++r) {
    if (r->handle == handle) {
      it = std::prev(r.base());
      break;
    }
    below += r->rows;
  }
  if (it == printed_.end()) return false;
  size_t cols = static_cast<size_t>(columns());
  size_t height = static_cast<size_t>(rows());
  size_t new_rows = rows_of(line, cols);
  bool last = std::next(it) == printed_.end();
  // The rows above the footer and the prompt that are surely still on the screen: the footer
  // may have been taller once, and scrolled the screen by as much.
  size_t room = height > footer_max_ + 1 ? height - footer_max_ - 1 : 0;
  if (below + it->rows > room || new_rows > room) return false;
  // An earlier line can only be overwritten row for row: the lines below it stay where they
  // are.
  if (!last && new_rows != it->rows) return false;
  std::string out;
  clear_drawn(out);
  out += "\x1b[" + std::to_string(below + it->rows) + "A\r";
  if (last) {
    out += "\x1b[J";
    out += line;
    out += "\x1b[0m\r\n";
    it->rows = new_rows;
  } else {
    for (size_t r = 0; r < it->rows; ++r) {
      out += "\x1b[2K";
      if (r + 1 < it->rows) out += "\x1b[1B";
    }
    if (it->rows > 1) out += "\x1b[" + std::to_string(it->rows - 1) + "A";
    out += line;
    out += "\x1b[0m\r\x1b[" + std::to_string(below + 1) + "B";
  }
  draw(out);
  write_out(out);
  return true;
}

void Screen::set_prompt(const std::string& prompt) {
  if (prompt == prompt_) return;
  prompt_ = prompt;
  redraw();
}

void Screen::set_footer(std::vector<std::string> rows) {
  if (rows == footer_) return;
  if (!interactive_) return;
  std::string out;
  clear_drawn(out);
  footer_ = std::move(rows);
  // Whatever was the last line is no longer right above the footer's first row.
  draw(out);
  write_out(out);
}

void Screen::edited() {
  line_utf8_ = to_utf8(buf_);
  redraw();
  if (on_edit) on_edit();
}

void Screen::submit() {
  std::string line = to_utf8(buf_);
  if (!line.empty() && (history_.empty() || history_.back() != line)) history_.push_back(line);
  if (history_.size() > 500) history_.erase(history_.begin());
  history_pos_ = history_.size();
  buf_.clear();
  cursor_ = 0;
  line_utf8_.clear();
  redraw();
  if (on_edit) on_edit();
  if (on_line) on_line(line);
}

void Screen::end_of_input() {
  if (!interactive_ && !plain_pending_.empty()) {
    std::string line;
    line.swap(plain_pending_);
    if (on_line) on_line(line);
  }
  if (on_eof) on_eof();
}

void Screen::feed(const char* data, size_t size) {
  if (!interactive_) {
    plain_pending_.append(data, size);
    size_t nl;
    while ((nl = plain_pending_.find('\n')) != std::string::npos) {
      std::string line = plain_pending_.substr(0, nl);
      plain_pending_.erase(0, nl + 1);
      if (!line.empty() && line.back() == '\r') line.pop_back();
      if (on_line) on_line(line);
    }
    return;
  }
  pending_.append(data, size);
  size_t i = 0;
  while (i < pending_.size()) {
    unsigned char c = static_cast<unsigned char>(pending_[i]);
    if (c == 0x1b) {
      // ESC [ params final, ESC O x, or a lone ESC (ignored).
      if (i + 1 >= pending_.size()) break;
      char kind = pending_[i + 1];
      if (kind == '[') {
        size_t j = i + 2;
        while (j < pending_.size() && !(pending_[j] >= '@' && pending_[j] <= '~')) ++j;
        if (j >= pending_.size()) break;
        key_escape(pending_.substr(i + 1, j - i));
        i = j + 1;
      } else if (kind == 'O') {
        if (i + 2 >= pending_.size()) break;
        key_escape(pending_.substr(i + 1, 2));
        i += 3;
      } else {
        i += 1;
      }
      continue;
    }
    size_t len = utf8_length(c);
    if (len == 0) {
      ++i;
      continue;
    }
    if (i + len > pending_.size()) break;
    size_t k = i;
    char32_t cp = decode_utf8(pending_, k);
    i = k;
    key_char(cp);
  }
  pending_.erase(0, i);
}

void Screen::key_escape(const std::string& seq) {
  if (seq == "[D" || seq == "OD") {
    if (cursor_ > 0) --cursor_;
    redraw();
  } else if (seq == "[C" || seq == "OC") {
    if (cursor_ < buf_.size()) ++cursor_;
    redraw();
  } else if (seq == "[H" || seq == "OH" || seq == "[1~" || seq == "[7~") {
    cursor_ = 0;
    redraw();
  } else if (seq == "[F" || seq == "OF" || seq == "[4~" || seq == "[8~") {
    cursor_ = buf_.size();
    redraw();
  } else if (seq == "[3~") {
    if (cursor_ < buf_.size()) {
      buf_.erase(cursor_, 1);
      edited();
    }
  } else if (seq == "[A" || seq == "OA") {
    if (history_pos_ == 0) return;
    if (history_pos_ == history_.size()) history_draft_ = buf_;
    --history_pos_;
    buf_.clear();
    for (size_t i = 0; i < history_[history_pos_].size();)
      buf_ += decode_utf8(history_[history_pos_], i);
    cursor_ = buf_.size();
    edited();
  } else if (seq == "[B" || seq == "OB") {
    if (history_pos_ >= history_.size()) return;
    ++history_pos_;
    buf_.clear();
    if (history_pos_ == history_.size()) {
      buf_ = history_draft_;
    } else {
      for (size_t i = 0; i < history_[history_pos_].size();)
        buf_ += decode_utf8(history_[history_pos_], i);
    }
    cursor_ = buf_.size();
    edited();
  }
}

void Screen::key_char(char32_t c) {
  switch (c) {
    case '\r':
    case '\n':
      submit();
      return;
    case 0x7f:  // Backspace
    case 0x08:  // Ctrl-H
      if (cursor_ > 0) {
        buf_.erase(--cursor_, 1);
        edited();
      }
      return;
    case 0x01:  // Ctrl-A
      cursor_ = 0;
      redraw();
      return;
    case 0x05:  // Ctrl-E
      cursor_ = buf_.size();
      redraw();
      return;
    case 0x02:  // Ctrl-B
      if (cursor_ > 0) --cursor_;
      redraw();
      return;
    case 0x06:  // Ctrl-F
      if (cursor_ < buf_.size()) ++cursor_;
      redraw();
      return;
    case 0x0b:  // Ctrl-K
      buf_.erase(cursor_);
      edited();
      return;
    case 0x15:  // Ctrl-U
      buf_.erase(0, cursor_);
      cursor_ = 0;
      edited();
      return;
    case 0x17: {  // Ctrl-W: the word before the cursor
      size_t i = cursor_;
      while (i > 0 && buf_[i - 1] == ' ') --i;
      while (i > 0 && buf_[i - 1] != ' ') --i;
      buf_.erase(i, cursor_ - i);
      cursor_ = i;
      edited();
      return;
    }
    case 0x03:  // Ctrl-C: drop the line
      buf_.clear();
      cursor_ = 0;
      edited();
      return;
    case 0x04:  // Ctrl-D: quit on an empty line, else delete forward
      if (buf_.empty()) {
        if (on_eof) on_eof();
      } else if (cursor_ < buf_.size()) {
        buf_.erase(cursor_, 1);
        edited();
      }
      return;
    case 0x0c: {  // Ctrl-L
      write_out("\x1b[H\x1b[2J");
      drawn_ = false;
      drawn_footer_ = 0;
      printed_.clear();
      redraw();
      return;
    }
    default:
      break;
  }
  if (c < 0x20) return;
  buf_.insert(buf_.begin() + static_cast<std::ptrdiff_t>(cursor_), c);
  ++cursor_;
  edited();
}

}  // namespace sotto::chat
