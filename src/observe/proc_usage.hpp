#pragma once
// Resource usage of a process, a process tree or one thread of this process, read from /proc
// (Linux). Used for ResourceSample: by the ThreadPoolExecutor for the thread running a task, by
// pervade-pool for each task's worker process and its children. Any thread; no state.
#include <sys/types.h>

#include <cstdint>
#include <vector>

namespace pervade::detail {

struct ProcUsage {
  double cpu_user = 0;  // seconds
  double cpu_system = 0;
  std::uint64_t rss = 0;  // bytes
  std::uint64_t vms = 0;
  std::uint64_t read_bytes = 0;  // 0 where the kernel keeps no I/O accounting
  std::uint64_t write_bytes = 0;
  std::uint64_t ctx_voluntary = 0;
  std::uint64_t ctx_involuntary = 0;
  int processes = 0;  // how many processes were summed (1 + children)

  // Counters (CPU, I/O, context switches) since `earlier`; memory stays as it is now.
  ProcUsage since(const ProcUsage& earlier) const;
  void add(const ProcUsage& other);  // sums everything (a process tree)
};

// /proc/<pid>[/task/<tid>]: false if it is gone. tid = 0: the whole process.
bool read_usage(pid_t pid, pid_t tid, ProcUsage* out);
// The process and all its descendants, summed (a task's worker and what it started).
bool read_tree_usage(pid_t pid, ProcUsage* out);
// This process's thread that calls it.
ProcUsage this_thread_usage();
// CPU and memory only, from an open /proc/<pid>/stat (read again from its start): the cheap
// sample of a process taken at each task's start and end, one pread and no open.
bool read_stat_fd(int fd, ProcUsage* out);

}  // namespace pervade::detail
