#include "sotto/SecureBytes.h"

#include <sodium.h>

#include <cstring>
#include <new>
#include <utility>

namespace sotto {

SecureBytes::SecureBytes(size_t size) : data_(size ? new uint8_t[size]() : nullptr), size_(size) {}

SecureBytes::SecureBytes(const uint8_t* data, size_t size) : SecureBytes(size) {
  if (size) std::memcpy(data_, data, size);
}

SecureBytes SecureBytes::from_string(std::string_view text) {
  return SecureBytes(reinterpret_cast<const uint8_t*>(text.data()), text.size());
}

SecureBytes::SecureBytes(const SecureBytes& other) : SecureBytes(other.data_, other.size_) {}

SecureBytes& SecureBytes::operator=(const SecureBytes& other) {
  if (this != &other) {
    SecureBytes copy(other);
    *this = std::move(copy);
  }
  return *this;
}

SecureBytes::SecureBytes(SecureBytes&& other) noexcept
    : data_(std::exchange(other.data_, nullptr)), size_(std::exchange(other.size_, 0)) {}

SecureBytes& SecureBytes::operator=(SecureBytes&& other) noexcept {
  if (this != &other) {
    wipe();
    data_ = std::exchange(other.data_, nullptr);
    size_ = std::exchange(other.size_, 0);
  }
  return *this;
}

SecureBytes::~SecureBytes() { wipe(); }

bool SecureBytes::operator==(const SecureBytes& other) const noexcept {
  if (size_ != other.size_) return false;
  if (size_ == 0) return true;
  return sodium_memcmp(data_, other.data_, size_) == 0;
}

void SecureBytes::wipe() noexcept {
  if (data_) {
    sodium_memzero(data_, size_);
    delete[] data_;
  }
  data_ = nullptr;
  size_ = 0;
}

}  // namespace sotto
