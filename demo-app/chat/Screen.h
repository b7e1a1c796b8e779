// The terminal of sotto-chat: a small line editor in raw mode that keeps the line being typed
// at the bottom while messages and events print above it, with a footer of status rows
// (transfers, who is typing) between the two. Without a terminal (stdin not a tty) it reads
// plain lines and prints plain lines, for scripts.
//
// Thread rule: main thread only. Other threads hand their output to the main loop first.
#pragma once

#include <cstddef>
#include <cstdint>
#include <deque>
#include <functional>
#include <string>
#include <vector>

namespace sotto::chat {

// Columns `text` takes on a terminal, ANSI colour sequences not counted.
size_t display_width(const std::string& text);

class Screen {
 public:
  // `interactive`: stdin and stdout are a terminal (raw mode, prompt, in-place updates).
  Screen(bool interactive, bool color);
  ~Screen();  // restores the terminal
  Screen(const Screen&) = delete;
  Screen& operator=(const Screen&) = delete;

  bool interactive() const { return interactive_; }
  bool color() const { return color_; }

  // Bytes read from stdin. Completed lines go to on_line; Ctrl-D on an empty line (or the end
  // of piped input) to on_eof; every change of the line being typed to on_edit.
  void feed(const char* data, size_t size);
  void end_of_input();
  std::function<void(const std::string&)> on_line;
  std::function<void()> on_eof;
  std::function<void()> on_edit;

  // Prints a line above the footer and the prompt. Returns a handle for rewrite() (0 without
  // a terminal, where nothing can be rewritten).
  uint64_t print(const std::string& line);
  // Rewrites a printed line in place (a message whose ticks moved on) when it is still on the
  // screen: the last line whatever its rows, an earlier one when the new text takes as many
  // rows as the old. False (nothing written) otherwise, and always after a resize or Ctrl-L,
  // which move lines where this cannot follow them.
  bool rewrite(uint64_t handle, const std::string& line);
  void set_prompt(const std::string& prompt);
  void set_footer(std::vector<std::string> rows);
  const std::string& line() const { return line_utf8_; }
  // Redraws after something else wrote to the terminal (or on Ctrl-L).
  void redraw();
  // The terminal changed size (SIGWINCH): the footer and the prompt row, drawn for the old
  // width and maybe rewrapped by the terminal, are cleared and drawn again for the new one.
  void resized();

  // Wraps `text` in an ANSI SGR sequence when colour is on ("1;32", "2", ...).
  std::string paint(const std::string& sgr, const std::string& text) const;

 private:
  void key_char(char32_t c);
  void key_escape(const std::string& seq);
  void submit();
  void clear_drawn(std::string& out);
  void draw(std::string& out);
  void edited();
  void write_out(const std::string& s);
  int columns() const;
  int rows() const;
  size_t rows_of(const std::string& line, size_t cols) const;

  bool interactive_;
  bool color_;
  bool raw_ = false;
  struct TermiosSave;
  TermiosSave* saved_ = nullptr;

  std::u32string buf_;
  size_t cursor_ = 0;
  std::string line_utf8_;
  std::string prompt_ = "> ";
  std::vector<std::string> footer_;
  size_t drawn_footer_ = 0;  // footer rows on screen now
  bool drawn_ = false;       // prompt row on screen now
  // What is on the screen above the footer, for rewrite(): the last lines printed, oldest
  // first, with the rows each takes.
  struct Printed {
    uint64_t handle;
    size_t rows;
  };
  std::deque<Printed> printed_;
  uint64_t next_handle_ = 1;
  size_t footer_max_ = 0;  // the most footer rows drawn: how far the screen may have scrolled
  // The footer rows' and prompt row's widths and the cursor's column as last drawn, and the
  // width they were drawn for: what a resize has to clear.
  std::vector<size_t> drawn_widths_;
  size_t drawn_cursor_col_ = 0;
  std::string pending_;        // an incomplete escape sequence or UTF-8 character
  std::string plain_pending_;  // non-interactive: a partial line
  std::vector<std::string> history_;
  size_t history_pos_ = 0;
  std::u32string history_draft_;
};

}  // namespace sotto::chat
