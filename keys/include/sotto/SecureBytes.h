// sotto::SecureBytes: a byte buffer for secrets (keys, passphrases) that is wiped when it
// is destroyed, resized or moved from, and compared in constant time.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <string_view>

#include "sotto/export.h"

namespace sotto {

class SOTTO_API SecureBytes {
 public:
  SecureBytes() = default;
  explicit SecureBytes(size_t size);  // zero-filled
  SecureBytes(const uint8_t* data, size_t size);
  explicit SecureBytes(std::span<const uint8_t> data) : SecureBytes(data.data(), data.size()) {}
  // NB: copies the characters; the caller still owns (and should wipe) its own string.
  static SecureBytes from_string(std::string_view text);

  SecureBytes(const SecureBytes& other);
  SecureBytes& operator=(const SecureBytes& other);
  SecureBytes(SecureBytes&& other) noexcept;
  SecureBytes& operator=(SecureBytes&& other) noexcept;
  ~SecureBytes();

  uint8_t* data() noexcept { return data_; }
  const uint8_t* data() const noexcept { return data_; }
  size_t size() const noexcept { return size_; }
  bool empty() const noexcept { return size_ == 0; }
  std::span<const uint8_t> span() const noexcept { return {data_, size_}; }
  std::string_view view() const noexcept { return {reinterpret_cast<const char*>(data_), size_}; }

  // Constant-time for equal sizes; sizes are not secret.
  bool operator==(const SecureBytes& other) const noexcept;

  void wipe() noexcept;  // zero and release

 private:
  uint8_t* data_ = nullptr;
  size_t size_ = 0;
};

}  // namespace sotto
