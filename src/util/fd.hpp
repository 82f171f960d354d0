#pragma once
// An owned file descriptor, closed on destruction. Any thread (one owner at a time).
#include <unistd.h>

#include <utility>

namespace pervade::detail {

class Fd {
 public:
  Fd() = default;
  explicit Fd(int fd) : fd_(fd) {}
  Fd(Fd&& o) noexcept : fd_(std::exchange(o.fd_, -1)) {}
  Fd& operator=(Fd&& o) noexcept {
    if (this != &o) {
      reset();
      fd_ = std::exchange(o.fd_, -1);
    }
    return *this;
  }
  Fd(const Fd&) = delete;
  Fd& operator=(const Fd&) = delete;
  ~Fd() { reset(); }

  int get() const { return fd_; }
  bool valid() const { return fd_ >= 0; }
  void reset() {
    if (fd_ >= 0) ::close(fd_);  // no EINTR retry: on Linux the fd is released regardless
    fd_ = -1;
  }

 private:
  int fd_ = -1;
};

}  // namespace pervade::detail
