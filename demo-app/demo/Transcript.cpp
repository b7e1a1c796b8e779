#include "Transcript.h"

#include <unistd.h>

#include <cstdio>

namespace sotto::demo {
namespace {

constexpr size_t kActorWidth = 6;

const char* code(Paint p) {
  switch (p) {
    case Paint::kNone:
      return "";
    case Paint::kBold:
      return "\033[1m";
    case Paint::kDim:
      return "\033[2m";
    case Paint::kRed:
      return "\033[1;31m";
    case Paint::kGreen:
      return "\033[32m";
    case Paint::kYellow:
      return "\033[33m";
    case Paint::kBlue:
      return "\033[34m";
    case Paint::kMagenta:
      return "\033[35m";
    case Paint::kCyan:
      return "\033[36m";
    case Paint::kInverse:
      return "\033[7m";
  }
  return "";
}

Paint colour_of(std::string_view name) {
  if (name == "alice") return Paint::kCyan;
  if (name == "bob") return Paint::kMagenta;
  if (name == "carol") return Paint::kYellow;
  if (name == "relay") return Paint::kBlue;
  return Paint::kBold;
}

}  // namespace

Transcript::Transcript() : start_(std::chrono::steady_clock::now()) {}

Transcript& out() {
  static Transcript t;
  return t;
}

std::string Transcript::paint(Paint p, std::string_view text) const {
  if (!color_ || p == Paint::kNone) return std::string(text);
  return std::string(code(p)) + std::string(text) + "\033[0m";
}

std::string Transcript::actor(std::string_view name) const {
  return paint(colour_of(name), fit(name, kActorWidth));
}

std::string Transcript::ok(std::string_view text) const {
  return paint(Paint::kGreen, "✓ " + std::string(text));
}

double Transcript::elapsed() const {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
}

void Transcript::event(std::string_view who, std::string_view text) {
  char stamp[32];
  std::snprintf(stamp, sizeof stamp, "[%6.3fs] ", elapsed());
  std::string t(text);
  while (!t.empty() && t.back() == ' ') t.pop_back();
  write(paint(Paint::kDim, stamp) + actor(who) + " " + t + "\n");
}

void Transcript::heading(int step, std::string_view title) {
  write("\n" + paint(Paint::kBold, std::to_string(step) + ". " + std::string(title)) + "\n");
}

void Transcript::line(std::string_view text) { write(std::string(text) + "\n"); }

void Transcript::write(const std::string& s) {
  std::lock_guard lock(mu_);
  std::fwrite(s.data(), 1, s.size(), stdout);
  std::fflush(stdout);
}

size_t Transcript::width(std::string_view text) {
  size_t n = 0;
  for (char c : text)
    if ((static_cast<unsigned char>(c) & 0xC0) != 0x80) ++n;
  return n;
}

std::string Transcript::fit(std::string_view text, size_t w) {
  std::string s(text);
  if (width(s) > w) {
    // Cut at a code point boundary, leaving room for the ellipsis.
    size_t cols = 0, i = 0;
    for (; i < s.size(); ++i) {
      if ((static_cast<unsigned char>(s[i]) & 0xC0) != 0x80) {
        if (cols + 1 > w - 1) break;
        ++cols;
      }
    }
    s = s.substr(0, i) + "…";
  }
  size_t have = width(s);
  if (have < w) s.append(w - have, ' ');
  return s;
}

std::string Transcript::quote(std::string_view text, size_t w) {
  if (w < 3) return fit(text, w);
  std::string inner(text);
  if (width(inner) > w - 2) inner = fit(inner, w - 2);
  std::string s = "\"" + inner;
  while (!s.empty() && s.back() == ' ') s.pop_back();
  s += "\"";
  return fit(s, w);
}

}  // namespace sotto::demo
