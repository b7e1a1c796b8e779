// RAII over anything with begin() / commit() / rollback(): rolls back unless commit() ran.
#pragma once

#include "sotto/Result.h"

namespace sotto {

template <class Store>
class ScopedTransaction {
 public:
  explicit ScopedTransaction(Store& store) : store_(store) {}
  ScopedTransaction(const ScopedTransaction&) = delete;
  ScopedTransaction& operator=(const ScopedTransaction&) = delete;
  ~ScopedTransaction() {
    if (open_) store_.rollback();
  }
  Status begin() {
    SOTTO_TRY(store_.begin());
    open_ = true;
    return {};
  }
  Status commit() {
    open_ = false;
    return store_.commit();
  }

 private:
  Store& store_;
  bool open_ = false;
};

}  // namespace sotto
