#pragma once
// Names the engine's threads ("pv-reactor", "pv-interchange", ...) so that top -H, perf and
// /proc/<pid>/task/*/comm show which part of pervade is busy. Internal: any thread.
#include <pthread.h>

#include <string>

namespace pervade::detail {

inline void name_this_thread(const std::string& name) {
  // Linux keeps at most 15 characters.
  ::pthread_setname_np(::pthread_self(), name.substr(0, 15).c_str());
}

}  // namespace pervade::detail
