// The demo's transcript: one line per event, "[ 0.412s] alice  -> bob  ...", aligned, with
// colours only when stdout is a terminal.
//
// Thread rule: every method may be called from any thread; lines never interleave.
#pragma once

#include <chrono>
#include <cstdint>
#include <mutex>
#include <string>
#include <string_view>

namespace sotto::demo {

enum class Paint { kNone, kBold, kDim, kRed, kGreen, kYellow, kBlue, kMagenta, kCyan, kInverse };

class Transcript {
 public:
  Transcript();

  void set_color(bool on) { color_ = on; }
  bool color() const { return color_; }

  // `text` in a colour (unchanged without colours).
  std::string paint(Paint p, std::string_view text) const;
  // A person's name padded to the actor column, in that person's colour.
  std::string actor(std::string_view name) const;
  // "✓ ..." in green.
  std::string ok(std::string_view text) const;

  // Seconds since the transcript was created.
  double elapsed() const;

  // "[ 0.412s] <actor> <text>".
  void event(std::string_view who, std::string_view text);
  // A step's title, with a blank line before it.
  void heading(int step, std::string_view title);
  // A line without a time stamp.
  void line(std::string_view text);

  // Width of `text` on a terminal (code points; the demo's strings have no wide characters).
  static size_t width(std::string_view text);
  // `text` cut to `width` columns (with "…") and padded with spaces to exactly `width`.
  static std::string fit(std::string_view text, size_t width);
  // "\"text\"" cut to `width` columns (with "…" inside the quotes) and padded.
  static std::string quote(std::string_view text, size_t width);

 private:
  void write(const std::string& s);

  bool color_ = false;
  std::chrono::steady_clock::time_point start_;
  std::mutex mu_;
};

// The one transcript of the process.
Transcript& out();

}  // namespace sotto::demo
