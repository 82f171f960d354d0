#pragma once
// The DataFlowKernel: owns the task graph and runs it on executors. Thread-safe: any thread
// may submit; cleanup() and wait_for_current_tasks() must not be called from kernel or
// executor threads (callbacks, task bodies).
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "pervade/executor.hpp"
#include "pervade/observer.hpp"
#include "pervade/task.hpp"

namespace pervade {

// When memoized results are written to this run's checkpoint (Parsl's checkpoint_mode).
enum class CheckpointMode : std::uint8_t {
  none,       // results are memoized in memory only
  task_exit,  // each result is in the file before its future completes (group commit)
  periodic,   // every CheckpointConfig::period
  dfk_exit,   // at cleanup()
  manual,     // at DataFlowKernel::checkpoint() (and at cleanup())
};

// The mode of Parsl's checkpoint_mode name: "task_exit", "periodic", "dfk_exit" or "manual" (its
// None is CheckpointMode::none, which has no name). Throws ConfigurationError naming any other
// and the valid ones. The one list of the names: Python's BasicMemoizer asks this too.
// Example: parse_checkpoint_mode("manual").
CheckpointMode parse_checkpoint_mode(std::string_view name);

// Size of a memo key: a digest of the function and its arguments made by the front end.
inline constexpr std::size_t kMemoKeySize = 32;

// Memoization and checkpoints. Example (reuse the results of earlier runs, write this run's):
//   cfg.checkpoint.memoize = true;
//   cfg.checkpoint.mode = pervade::CheckpointMode::task_exit;
//   cfg.checkpoint.dir = "runinfo/001/checkpoint";
//   cfg.checkpoint.files = {"runinfo/000/checkpoint"};
struct CheckpointConfig {
  bool memoize = false;           // keep a memo table: tasks with a memo key may be answered from it
  CheckpointMode mode = CheckpointMode::none;
  std::chrono::duration<double> period{0};  // periodic mode
  std::string dir;                // this run's checkpoint directory (tasks.db is written inside)
  std::vector<std::string> files; // checkpoints loaded at start: directories holding tasks.db, or files
  // Also append each checkpointed result to <dir>/tasks.pkl in Parsl's format (one pickled
  // {'hash', 'exception', 'result'} per result), for tools that read Parsl's checkpoints. Only for
  // values that are Python pickles (the Python front end's); tasks.db stays what is loaded.
  bool parsl_pickle_copy = false;
};

template <class T>
class Future;

struct Config {
  std::vector<ExecutorPtr> executors;  // empty: one ThreadPoolExecutor labelled "threads"
  int retries = 0;                     // a task is retried while its summed failure cost <= retries
  // Cost of a failure (default 1). Called on the kernel thread; must not block for long.
  std::function<double(const std::exception_ptr&, const TaskRecord&)> retry_handler;
  int internal_tasks_max_threads = 10;  // threads of the "_parsl_internal" executor (join apps)
  CheckpointConfig checkpoint;          // memoization; loading the files may throw BadCheckpoint
  // Back-pressure: at most this many tasks submitted and not yet final (0: no limit). A submit
  // beyond it waits until a task finishes, so a loop submitting millions of tasks runs in
  // bounded memory. Submissions from engine threads (task bodies, join bodies, done-callbacks)
  // never wait, so they may pass the limit: waiting there could deadlock.
  std::size_t max_unfinished_tasks = 0;
  // cleanup() fails a task still waiting, directly or through other tasks, for an external
  // future (create_external) that never completed, with DataFlowKernelClosed. false: it is left
  // unfinished, as Parsl leaves it (the Python front end's choice); the external's completion
  // after cleanup() changes nothing.
  bool cleanup_fails_external_waits = true;
  // Told of every event of this kernel and its executors (observer.hpp): logging, monitoring
  // and users' hooks.
  std::vector<ObserverPtr> observers;
  // Names this run in WorkflowEvent (the monitoring database's run_id and rundir). Empty run_id:
  // a random UUID is made.
  std::string run_id;
  std::string run_dir;
};

class DataFlowKernel {
 public:
  // Example:
  //   pervade::DataFlowKernel dfk;                       // one thread-pool executor
  //   auto a = dfk.submit([](int x) { return 2 * x; }, 21);
  //   auto b = dfk.submit([](int y) { return y + 1; }, a);  // runs after a, gets 42
  //   int r = b.get();                                    // 43
  explicit DataFlowKernel(Config config = {});
  ~DataFlowKernel();  // cleanup()
  DataFlowKernel(const DataFlowKernel&) = delete;
  DataFlowKernel& operator=(const DataFlowKernel&) = delete;

  // Low-level submission used by the typed API and the Python binding. Throws
  // ConfigurationError for an unknown executor label, DataFlowKernelClosed after cleanup().
  // Waits first while Config::max_unfinished_tasks tasks are unfinished (not on engine threads).
  TaskRecordPtr submit(TaskSpec spec);
  // Submits under an id taken earlier with reserve_task_id() (for names that embed the id).
  TaskRecordPtr submit(TaskSpec spec, TaskId reserved);
  TaskId reserve_task_id();
  // How many task ids were handed out (the next task's id): Parsl's dfk.task_count.
  std::uint64_t task_count() const;
  // A placeholder for a future that lives outside the kernel; tasks may depend on it.
  TaskRecordPtr create_external(std::string name);
  void complete_external(const TaskRecordPtr& task, Outcome outcome);
  // fn runs on the kernel thread once the task is final (at once if it already is): keep it short.
  void add_done_callback(const TaskRecordPtr& task, std::function<void(const TaskRecordPtr&)> fn);

  // Blocks until every submitted task is final.
  void wait_for_current_tasks();
  // The same for at most `timeout`; true if every submitted task is final.
  bool wait_for_current_tasks(std::chrono::duration<double> timeout);
  // Tasks not yet running fail with DataFlowKernelClosed; running tasks are interrupted where
  // possible (shell commands' process groups are killed) and waited for; executors are shut
  // down and all kernel threads joined. Idempotent.
  void cleanup();
  // Cancels a task that is not final: it fails with TaskCancelled, its dependents with
  // DependencyError, and a try already on an executor is stopped there (a HighThroughputExecutor
  // kills the worker running it). Returns false if the task had already finished. Blocks
  // until the kernel's thread has done it; must not be called from that thread.
  bool cancel(const TaskRecordPtr& task);
  // The same for a typed future (defined in future.hpp):
  //   auto slow = dfk.submit(pervade::Shell{"sleep 600"});
  //   dfk.cancel(slow);   // true; slow.get() throws TaskCancelled, slow.state() is cancelled
  template <class T>
  bool cancel(const Future<T>& future);
  // Back-pressure: waits up to `timeout` until fewer than Config::max_unfinished_tasks tasks are
  // unfinished or the kernel is closed; false on timeout. True at once without a limit or on an
  // engine thread. submit() waits the same way, without a timeout.
  bool wait_for_capacity(std::chrono::duration<double> timeout);
  // For a front end that completes its futures on a thread of its own: true once fewer than
  // `limit` final tasks await delivery there, waiting up to `timeout`. Back-pressure then bounds
  // that queue too, so that a submitting loop cannot outrun the thread.
  using BacklogBelow = std::function<bool(std::size_t limit, std::chrono::duration<double> timeout)>;
  // Back-pressure for such a front end: wait_for_capacity(timeout), then its backlog below the
  // limit. True at once without a limit or on an engine thread (no call of backlog_below).
  bool wait_for_capacity(std::chrono::duration<double> timeout, const BacklogBelow& backlog_below);
  std::size_t waiting_submitters() const;  // threads waiting in submit()/wait_for_capacity() now
  bool closed() const;
  // Writes the memoized results not yet in this run's checkpoint file (manual mode; any mode
  // with a checkpoint). Returns how many were written. Example: `dfk.checkpoint();`
  std::size_t checkpoint();

  std::size_t outstanding_tasks() const;  // submitted and not yet final
  // How many tasks are in state `s` now (Parsl's dfk.task_state_counts). Any thread.
  std::int64_t tasks_in_state(TaskState s) const;
  const std::string& run_id() const;      // Config::run_id, or the UUID made for this run
  std::vector<std::string> executor_labels() const;
  ExecutorPtr executor(const std::string& label) const;

  // Typed API, defined in future.hpp.
  template <class F, class... Args>
  auto submit(F&& fn, Args&&... args);

 private:
  std::size_t write_checkpoint();  // on the reactor; waits for it
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace pervade
