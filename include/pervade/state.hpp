#pragma once
// Task states, with Parsl's names and numeric values (parsl/dataflow/states.py).
#include <cstdint>
#include <string_view>

namespace pervade {

enum class TaskState : std::int8_t {
  unsched = -1,
  pending = 0,
  running = 2,
  exec_done = 3,
  failed = 4,
  dep_fail = 5,
  launched = 7,
  fail_retryable = 8,
  memo_done = 9,
  joining = 10,
  running_ended = 11,
  cancelled = 12,  // pervade only (Parsl cannot cancel): DataFlowKernel::cancel, never retried
};

constexpr bool is_final(TaskState s) {
  return s == TaskState::exec_done || s == TaskState::failed || s == TaskState::dep_fail ||
         s == TaskState::memo_done || s == TaskState::cancelled;
}
// A cancelled task counts as failed: its dependents get DependencyError.
constexpr bool is_failure(TaskState s) {
  return s == TaskState::failed || s == TaskState::dep_fail || s == TaskState::cancelled;
}

std::string_view to_string(TaskState s);

}  // namespace pervade
