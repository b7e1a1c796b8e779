// sotto::Result<T>: a value or an Error. Expected failures are values; exceptions are
// reserved for bugs. Result<void> (alias Status) carries only success or an Error.
#pragma once

#include <optional>
#include <utility>
#include <variant>

#include "sotto/Error.h"

namespace sotto {

template <class T>
class [[nodiscard]] Result {
 public:
  Result(T value) : v_(std::move(value)) {}      // NOLINT(google-explicit-constructor)
  Result(Error error) : v_(std::move(error)) {}  // NOLINT(google-explicit-constructor)

  bool ok() const noexcept { return v_.index() == 0; }
  explicit operator bool() const noexcept { return ok(); }

  // NB: only when ok().
  T& value() & { return std::get<0>(v_); }
  const T& value() const& { return std::get<0>(v_); }
  T&& value() && { return std::get<0>(std::move(v_)); }
  T* operator->() { return &value(); }
  const T* operator->() const { return &value(); }
  T& operator*() & { return value(); }
  const T& operator*() const& { return value(); }

  // NB: only when !ok().
  const Error& error() const& { return std::get<1>(v_); }
  Error&& error() && { return std::get<1>(std::move(v_)); }
  ErrorCode code() const noexcept { return ok() ? ErrorCode::kOk : std::get<1>(v_).code; }

 private:
  std::variant<T, Error> v_;
};

template <>
class [[nodiscard]] Result<void> {
 public:
  Result() = default;
  Result(Error error) : error_(std::move(error)) {}  // NOLINT(google-explicit-constructor)

  bool ok() const noexcept { return !error_.has_value(); }
  explicit operator bool() const noexcept { return ok(); }
  const Error& error() const& { return *error_; }
  Error&& error() && { return std::move(*error_); }
  ErrorCode code() const noexcept { return ok() ? ErrorCode::kOk : error_->code; }

 private:
  std::optional<Error> error_;
};

using Status = Result<void>;

inline Error make_error(ErrorCode code, std::string message) {
  return Error{code, std::move(message)};
}

}  // namespace sotto

#define SOTTO_CONCAT_INNER(a, b) a##b
#define SOTTO_CONCAT(a, b) SOTTO_CONCAT_INNER(a, b)

// SOTTO_TRY(expr): evaluate a Result-returning expr; on error return the error.
#define SOTTO_TRY(expr) SOTTO_TRY_IMPL(SOTTO_CONCAT(sotto_try_, __COUNTER__), expr)
#define SOTTO_TRY_IMPL(tmp, expr)                 \
  do {                                            \
    auto&& tmp = (expr);                          \
    if (!tmp.ok()) return std::move(tmp).error(); \
  } while (0)

// SOTTO_TRY_ASSIGN(decl, expr): `decl = value` of expr, or return its error.
#define SOTTO_TRY_ASSIGN(decl, expr) \
  SOTTO_TRY_ASSIGN_IMPL(SOTTO_CONCAT(sotto_try_, __COUNTER__), decl, expr)
#define SOTTO_TRY_ASSIGN_IMPL(tmp, decl, expr)  \
  auto tmp = (expr);                            \
  if (!tmp.ok()) return std::move(tmp).error(); \
  decl = std::move(tmp).value()
