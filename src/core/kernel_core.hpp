#pragma once
// The dataflow kernel's state machine: task table, dependency counting, launches, retries,
// joins, walltime timers. Single-threaded: only the DataFlowKernel's reactor thread (or a
// unit test driving it with fake executors and a fake clock) may call it.
#include <array>
#include <atomic>
#include <chrono>
#include <functional>
#include <limits>
#include <map>
#include <optional>
#include <random>
#include <string>
#include <unordered_map>
#include <vector>

#include "pervade/executor.hpp"
#include "pervade/task.hpp"
#include "core/memo_store.hpp"

namespace pervade::detail {

using TimePoint = std::chrono::steady_clock::time_point;

// Returns the cost of a failure; the task is retried while its summed cost <= retries.
using RetryHandler = std::function<double(const std::exception_ptr&, const TaskRecord&)>;

struct KernelOptions {
  int retries = 0;
  RetryHandler retry_handler;                        // empty: every failure costs 1
  std::function<TimePoint()> now;                    // the clock (fake in tests)
  // Told after each (non-external) task is final, or is left unfinished by close().
  std::function<void(const TaskRecordPtr&)> on_final;
  std::string internal_label = "_parsl_internal";    // never chosen for "any executor"
  MemoStore* memo = nullptr;                         // memoization on (owned by the caller)
  // Delivers a key asked of a body (TaskBody::request_memo_key) back to the core, which takes
  // it in memo_key_ready. Called on any thread.
  std::function<void(const TaskRecordPtr&, std::string, std::exception_ptr)> post_memo_key;
  // Delivers the bytes of a memoized join's value asked of its body
  // (TaskBody::request_serialized) back to the core (memo_value_ready). Called on any thread.
  std::function<void(const TaskRecordPtr&, std::string)> post_serialized;
  // Told of every task's submission, dependencies and state changes (never null).
  ObserversPtr observers = std::make_shared<const Observers>();
  bool close_fails_external_waits = true;  // Config::cleanup_fails_external_waits
};

class KernelCore {
 public:
  KernelCore(KernelOptions options, std::vector<ExecutorPtr> executors);

  // The executor labels are validated by the caller before records reach the core.
  void submit(const TaskRecordPtr& task);
  // External tasks stand for futures outside the kernel; complete() finishes them.
  void add_external(const TaskRecordPtr& task);
  void complete(Completion&& done);
  // Runs fn(task) when the task is final (immediately if it already is).
  void add_callback(const TaskRecordPtr& task, std::function<void(const TaskRecordPtr&)> fn);
  // Fails tries whose walltime expired by `now` with AppTimeout and asks their executor to stop them.
  void fire_timers(TimePoint now);
  // A try reported running by an executor whose walltime clock is from_start: its walltime
  // counts from now (ignored when that try is no longer the task's current one).
  void try_started(const TaskRecordPtr& task, std::uint32_t try_id);
  std::optional<TimePoint> next_deadline() const;
  // Makes a task that is not final `cancelled` with TaskCancelled (its dependents get
  // DependencyError); a launch not yet handed over is dropped, a try on an executor is stopped
  // there (StopReason::cancelled). False if the task is already final (or stands for an
  // external future).
  bool cancel(const TaskRecordPtr& task);
  // Fails every task that has not been launched with DataFlowKernelClosed (but those waiting for
  // an external future, unless KernelOptions::close_fails_external_waits); later launches fail too.
  void close();
  // Hands the launches gathered since the last flush to their executors, in batches. First
  // writes the results memoized in this batch (task_exit mode), then completes their tasks.
  void flush();
  // A key asked of a task's body arrived (or computing it failed, which fails the task). An
  // empty key without error: the call is not memoized after all (a memoizer plug-in said so);
  // it runs and is not recorded.
  void memo_key_ready(const TaskRecordPtr& task, std::string key, std::exception_ptr error);
  // The bytes of a memoized join's value (empty: not memoizable): recorded, then the join finishes.
  void memo_value_ready(const TaskRecordPtr& task, std::string bytes);
  // Writes the memoized results not yet in the checkpoint file; returns how many.
  std::size_t checkpoint();

  std::size_t live_tasks() const { return live_; }
  // How many tasks are in state s now (Parsl's task_state_counts). A try that an executor
  // marked running or running_ended counts as launched, the state the kernel gave it. Any thread.
  std::int64_t tasks_in_state(TaskState s) const {
    return state_counts_[static_cast<std::size_t>(s) + 1].load(std::memory_order_relaxed);
  }
  // Final tasks so far, as the workflow table counts them: succeeded (exec_done, memo_done) and
  // failed (failed, dep_fail, cancelled).
  int tasks_completed() const { return tasks_completed_; }
  int tasks_failed() const { return tasks_failed_; }

 private:
  void deps_ready(TaskRecord& t);
  void launch(TaskRecord& t, bool follower = false);
  // Arms the current try's walltime timer, counting from now.
  void start_walltime(TaskRecord& t);
  // Followers: a task whose one unfinished dependency runs on an executor that accepts
  // followers is launched right away, to wait there for that input (a chain of tasks then
  // runs back to back on a pool). True if t may follow; that dependency is then marked as followed.
  bool may_follow(const TaskRecord& t);
  // After t was launched: its dependents that wait in the table and may now follow it are
  // launched as followers, and theirs in turn (a worklist, not recursion: chains are long).
  void launch_waiting_followers(TaskRecord& t);
  // Takes a launched try back: dropped from the outbox if not handed over yet, else stopped
  // on its executor.
  void withdraw(const TaskRecordPtr& task, std::uint32_t try_id, StopReason reason);
  void fail_try(TaskRecord& t, std::exception_ptr error);
  void finish(TaskRecord& t, TaskState state, std::any value, std::exception_ptr error, bool after_commit = false);
  // Memoization (memo_store.hpp): answer from the table or launch; record a successful result.
  void launch_or_recall(TaskRecord& t);
  void finish_success(TaskRecord& t, Outcome& out);
  void commit_memoized();
  // One checkpoint pass (MemoStore::write), told to the observers: returns the results written.
  std::size_t write_checkpoint();
  void drain_finished();
  void finish_join(TaskRecord& t);
  // A memoized join succeeded with `value`: records it (asking the body for its bytes when it
  // has none), then finishes the join.
  void memoize_join(TaskRecord& t, std::any value);
  std::size_t pick_executor(const TaskRecord& t);
  static TaskState counted(TaskState s) {
    return s == TaskState::running || s == TaskState::running_ended ? TaskState::launched : s;
  }
  // Every state change goes through here: it keeps the per-state counts, and observers cost one
  // predictable branch when there are none.
  void set_state(TaskRecord& t, TaskState s, const std::exception_ptr& error = nullptr) {
    count_state(t, s);
    if (observed_) report_state(t, s, error);
  }
  // The same without an event (a submission is reported whole; external futures are not tasks).
  void count_state(TaskRecord& t, TaskState s) {
    const TaskState old = t.state_.load(std::memory_order_relaxed);
    if (old != TaskState::unsched)
      state_counts_[static_cast<std::size_t>(counted(old)) + 1].fetch_sub(1, std::memory_order_relaxed);
    state_counts_[static_cast<std::size_t>(s) + 1].fetch_add(1, std::memory_order_relaxed);
    t.state_.store(s, std::memory_order_release);
  }
  std::array<std::atomic<std::int64_t>, static_cast<std::size_t>(TaskState::cancelled) + 2> state_counts_{};
  void report_state(const TaskRecord& t, TaskState s, const std::exception_ptr& error);
  void report_submitted(const TaskRecord& t);

  KernelOptions options_;
  const bool observed_;  // options_.observers->active(), fixed before the first task
  int tasks_completed_ = 0;
  int tasks_failed_ = 0;
  std::vector<ExecutorPtr> executors_;
  std::unordered_map<std::string, std::size_t> by_label_;
  std::vector<std::size_t> user_executors_;
  std::vector<std::vector<Launch>> outbox_;  // per executor, until flush()
  // Only tasks that wait (for dependencies or a join) are in a table, for close(); a task that
  // is ready at submit, the common case, costs no hash-table work.
  void wait_in_table(TaskRecord& t);
  void leave_table(TaskRecord& t);
  std::unordered_map<TaskId, TaskRecordPtr> waiting_;
  std::size_t live_ = 0;
  std::vector<TaskRecordPtr> finishing_;     // worklist: avoids recursion through long chains
  std::vector<TaskRecordPtr> committing_;    // task_exit: final, completed once their results are written
  std::vector<TaskRecord*> newly_launched_;  // launch_waiting_followers's worklist
  bool launching_followers_ = false;
  bool draining_ = false;
  bool closed_ = false;
  struct Timer {
    TaskRecordPtr task;
    std::uint32_t try_id;
  };
  std::multimap<TimePoint, Timer> timers_;
  std::unordered_map<const TaskRecord*, std::multimap<TimePoint, Timer>::iterator> timer_of_;
  std::minstd_rand rng_{12345};
};

}  // namespace pervade::detail
