#pragma once
// Brief spinning before a thread sleeps on a condition variable. Between the kernel's threads
// work arrives in bursts a few microseconds apart; sleeping and being woken costs a futex
// round trip each time (measured: about half the time of a no-op task), so a thread first
// watches for work for a short while. Internal: any thread.
#include <chrono>
#include <thread>

namespace pervade::detail {

constexpr auto kSpinBeforeSleep = std::chrono::microseconds(50);

// Returns true as soon as ready() is true, false after kSpinBeforeSleep without it.
template <class Ready>
bool spin_briefly(Ready&& ready) {
  const auto until = std::chrono::steady_clock::now() + kSpinBeforeSleep;
  for (unsigned i = 1;; ++i) {
    if (ready()) return true;
    if (i % 64 == 0) {
      if (std::chrono::steady_clock::now() >= until) return false;
      std::this_thread::yield();  // let a producer on the same core run
    } else {
#if defined(__x86_64__) || defined(__i386__)
      __builtin_ia32_pause();
#endif
    }
  }
}

// spin_briefly for a thread whose work may or may not come in quick bursts: after a spin
// that found nothing it backs off (skips spinning for 1, 3, 7, ... up to 63 waits), so a
// thread fed at long intervals (the reactor under a HighThroughputExecutor chain) does not
// burn a core that the pool and its workers need. One per thread.
class AdaptiveSpin {
 public:
  template <class Ready>
  bool spin(Ready&& ready) {
    if (skip_ > 0) {
      --skip_;
      return ready();
    }
    if (spin_briefly(ready)) {
      misses_ = 0;
      return true;
    }
    misses_ = misses_ < 6 ? misses_ + 1 : 6;
    skip_ = (1u << misses_) - 1;
    return false;
  }

 private:
  unsigned misses_ = 0;
  unsigned skip_ = 0;
};

}  // namespace pervade::detail
