#pragma once
// The engine's one event stream (design rule 9). The kernel, the executors, the interchange and
// the block/strategy code report every event here; logging, the monitoring database, progress
// views and users' hooks are observers of it, so they never disagree.
//
// Threads: an observer is called on the thread that made the event (the kernel's reactor, an
// executor thread, the interchange thread, the strategy thread), possibly on several at once.
// It must be quick, thread-safe and must not block or call back into the kernel: copy what it
// needs into its own buffer and return. Strings in events are valid only during the call.
// Python never runs on this path.
//
// Example (C++ API): count failures.
//   struct Failures : pervade::Observer {
//     std::atomic<int> n{0};
//     void on_task(const pervade::TaskEvent& e) override {
//       if (e.state == pervade::TaskState::failed) ++n;
//     }
//   };
//   pervade::Config cfg;
//   auto failures = std::make_shared<Failures>();
//   cfg.observers.push_back(failures);
#include <algorithm>
#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <string_view>
#include <vector>

#include "pervade/ids.hpp"
#include "pervade/state.hpp"

namespace pervade {

// Wall-clock time of an event (the monitoring database stores wall-clock times, as Parsl does).
using EventTime = std::chrono::system_clock::time_point;

// The workflow (one DataFlowKernel) starts or ends, or wrote a checkpoint pass.
struct WorkflowEvent {
  enum class Kind : std::uint8_t { started, ended, checkpointed };
  Kind kind;
  EventTime time;
  std::string_view run_id;   // unique per DataFlowKernel (a UUID string)
  std::string_view run_dir;  // run_dir/NNN of this run ("" when none)
  int tasks_completed = 0;   // ended: tasks that finished successfully (exec_done, memo_done)
  int tasks_failed = 0;      // ended: tasks that failed (failed, dep_fail, cancelled)
  std::size_t checkpointed = 0;  // checkpointed: results the pass wrote (0: a pass with none)
};

// A task was submitted, changed state, or (kind = dependency) was found to depend on another;
// kind = described: the front end describes the call (only task, time, inputs and outputs are set).
struct TaskEvent {
  enum class Kind : std::uint8_t { submitted, state, dependency, described };
  Kind kind;
  EventTime time;
  TaskId task;
  std::uint32_t try_id = 0;     // the current try (0 before the first launch)
  TaskState state;              // the new state (submitted: pending or unsched)
  std::string_view func_name;   // the app's name
  std::string_view executor;    // label of the executor of the current try ("" before launch)
  TaskId dependency{};          // kind = dependency: the task this one waits for
  int fail_count = 0;
  double fail_cost = 0;
  std::string_view error;       // failed/dep_fail/fail_retryable: the error's text
  bool memoized = false;        // the task has a memo key (submitted)
  std::string_view stdout_path; // submitted: where its stdout/stderr go ("" if not named)
  std::string_view stderr_path;
  std::string_view memo_key;    // state: the memo key (raw digest bytes) once known; "" if none
  // described: the call's inputs= and outputs= as text (Parsl's task_inputs and task_outputs:
  // Python's str() of them; "" leaves one unsaid). The Python front end sends them at submission
  // and again with the futures among the inputs replaced by their values once those are done.
  std::string_view inputs, outputs;
};

// A try of a task reached a place (executor, block, pool, host): the HighThroughputExecutor
// reports which pool took it and on which host it ran.
struct TryEvent {
  EventTime time;
  TaskId task;
  std::uint32_t try_id;
  std::string_view executor;
  std::string_view block;       // block id ("" for in-process executors)
  std::string_view pool;        // pool (manager) id ("" for in-process executors)
  std::string_view hostname;
};

// A block of an executor changed state (Parsl's JobState names: PENDING, RUNNING, ...).
struct BlockEvent {
  EventTime time;
  std::string_view executor;
  std::string_view block;       // block id
  std::string_view job_id;      // the provider's job id ("" before submission)
  std::string_view status;      // Parsl's JobState name
  std::string_view message;     // why (failed blocks), else ""
};

// A pool (one per node and block) joined, sent a heartbeat, got a task while it held none (busy),
// saw its last task come back (idle), or left an executor. As Parsl's node rows: Parsl writes one
// when a manager registers, is sent tasks, returns results and leaves.
struct PoolEvent {
  enum class Kind : std::uint8_t { joined, heartbeat, busy, idle, left };
  Kind kind;
  EventTime time;
  std::string_view executor;
  std::string_view pool;        // manager id
  std::string_view block;
  std::string_view hostname;
  int worker_count = 0;
  int cpu_count = 0;
  std::uint64_t total_memory = 0;  // bytes
  std::string_view python_version;
  std::string_view reason;      // left: why ("" on a clean shutdown)
};

// One resource sample of a task's process tree (read from /proc by the pool, or in process
// by the thread-pool executor).
//
// A task is sampled at its start, every interval, and at its end. Its first sample (taken at
// the start) is reported only if the task runs at least kFirstSampleAfter: a task that ends
// sooner has one sample, its last, as in Parsl, whose per-task monitor process is not yet
// sampling a task that short. Two rows per task of microseconds were most of what resource
// monitoring cost (docs/monitoring.md).
inline constexpr std::chrono::milliseconds kFirstSampleAfter{10};

// Whether a task's held first sample is reported, `ran` after the task started: always before a
// later sample of the task; when the task has ended (its last sample, or its death), only if it
// ran kFirstSampleAfter or more. The pool and the thread-pool executor both follow this.
inline bool reports_first_sample(std::chrono::nanoseconds ran, bool task_ended) {
  return !task_ended || ran >= kFirstSampleAfter;
}

struct ResourceSample {
  EventTime time;
  TaskId task;
  std::uint32_t try_id;
  std::string_view executor;
  std::string_view hostname;
  int pid = 0;
  int children = 0;
  double cpu_user = 0;          // seconds, summed over the tree
  double cpu_system = 0;
  std::uint64_t rss = 0;        // bytes
  std::uint64_t vms = 0;
  std::uint64_t read_bytes = 0;
  std::uint64_t write_bytes = 0;
  std::uint64_t ctx_voluntary = 0;
  std::uint64_t ctx_involuntary = 0;
  double interval = 0;          // seconds between samples
  bool first = false, last = false;
};

// Copies the usage counters into a sample from any struct that names them as ResourceSample
// does (the pool's wire sample, the in-process reading).
template <class Usage>
void copy_usage(const Usage& u, ResourceSample& s) {
  s.cpu_user = u.cpu_user;
  s.cpu_system = u.cpu_system;
  s.rss = u.rss;
  s.vms = u.vms;
  s.read_bytes = u.read_bytes;
  s.write_bytes = u.write_bytes;
  s.ctx_voluntary = u.ctx_voluntary;
  s.ctx_involuntary = u.ctx_involuntary;
}

// Receives events; every method has an empty default so an observer overrides what it needs.
class Observer {
 public:
  virtual ~Observer() = default;
  virtual void on_workflow(const WorkflowEvent&) {}
  virtual void on_task(const TaskEvent&) {}
  virtual void on_try(const TryEvent&) {}
  virtual void on_block(const BlockEvent&) {}
  virtual void on_pool(const PoolEvent&) {}
  virtual void on_resource(const ResourceSample&) {}
  // Called once when the kernel is cleaned up, after the last event: flush and close.
  virtual void close() {}
  // Resource sampling this observer wants (on_resource): seconds between samples of each
  // running task (0: only a first and a last sample), or nullopt for none. Asked once, before
  // the kernel starts.
  virtual std::optional<double> resource_interval() const { return std::nullopt; }
};

using ObserverPtr = std::shared_ptr<Observer>;

// The observers of one kernel, shared with its executors (Executor::set_observers). Emitting
// costs one branch when there are none: check `active()` before building an event.
// The list is fixed before the kernel starts; any thread may emit.
class Observers {
 public:
  Observers() = default;
  explicit Observers(std::vector<ObserverPtr> list) : list_(std::move(list)) {
    for (const auto& o : list_)
      if (auto i = o->resource_interval()) resource_interval_ = std::min(resource_interval_.value_or(*i), *i);
  }
  bool active() const { return !list_.empty(); }
  // The shortest resource interval an observer asked for; nullopt: executors sample nothing.
  std::optional<double> resource_interval() const { return resource_interval_; }
  void workflow(const WorkflowEvent& e) const { for (auto& o : list_) o->on_workflow(e); }
  void task(const TaskEvent& e) const { for (auto& o : list_) o->on_task(e); }
  void attempt(const TryEvent& e) const { for (auto& o : list_) o->on_try(e); }
  void block(const BlockEvent& e) const { for (auto& o : list_) o->on_block(e); }
  void pool(const PoolEvent& e) const { for (auto& o : list_) o->on_pool(e); }
  void resource(const ResourceSample& e) const { for (auto& o : list_) o->on_resource(e); }
  void close() const { for (auto& o : list_) o->close(); }

 private:
  std::vector<ObserverPtr> list_;
  std::optional<double> resource_interval_;
};

using ObserversPtr = std::shared_ptr<const Observers>;

}  // namespace pervade
