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

}  // namespace pervade::detail
