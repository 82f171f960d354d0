#pragma once
// PoolCore: what pervade-pool decides, without any I/O. Which task runs on which worker and
// when: the queue, followers (tasks that wait here for the task they follow), how many tasks a
// worker holds at once (pipeline depth), cancellation, drain, what a dead worker's tasks
// become. The shell (pool.cpp) owns the processes and sockets: it tells the core what happened
// (tasks arrived, a worker is ready, sent a result, died) with the time, and carries out what
// the core returns (tasks to write to workers, shell commands to start, results for the
// interchange). Unit tests (tests/cpp/test_pool_core.cpp) drive it with fake workers and time.
// Single-threaded: only the pool's main thread (or a test) calls it.
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <optional>
#include <set>
#include <string>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include "pool/mpi_nodes.hpp"
#include "pool/node_ledger.hpp"
#include "protocol/messages.hpp"

namespace pervade::pool {

using Clock = std::chrono::steady_clock;
using TimePoint = Clock::time_point;

// A worker gets a second task to hold only if its last one ran shorter than kPipelineBelow and
// the second is no bigger than kPipelineMaxBytes (the core keeps a copy of it, to requeue it if
// the worker dies). Beyond that second task, a worker whose tasks take microseconds gets more,
// as long as what it holds adds up to at most kPipelineBudget of its recent task time (and
// kPipelineMaxDepth tasks): it then never waits for the pool between tasks. Tasks of a
// millisecond or more keep the depth of 2, so the load balance between workers is unchanged.
constexpr auto kPipelineBelow = std::chrono::milliseconds(10);
constexpr std::size_t kPipelineMaxBytes = 64 * 1024;
constexpr auto kPipelineBudget = std::chrono::microseconds(1000);
constexpr std::size_t kPipelineMaxDepth = 16;
// Tasks that asked for resources (cores, memory, gpus) start in arrival order, except that a
// later one may start while the oldest waiting does not fit yet; after kMaxPasses such starts,
// none may pass it any more, so it runs once running tasks give back enough (docs/htex.md,
// "Resources"). A dispatch skips at most kMaxScan of them that do not fit, so a long queue of
// such tasks costs little per round.
constexpr std::size_t kMaxPasses = 64;
constexpr std::size_t kMaxScan = 256;

struct PoolCoreConfig {
  std::string pool_id;   // for the texts of refused tasks
  int workers = 0;       // worker slots, ranks 0..workers-1 (0 with --no-python)
  bool python = true;    // false (--no-python): Python tasks are refused
  // The nodes that tasks asking for resources are placed on, and each worker slot's node
  // (empty: all on node 0). No nodes: such tasks are refused.
  std::vector<NodeCapacity> nodes;
  std::vector<int> slot_node;
  bool pin_task_cpus = false;  // --cpu-affinity: a task that asked for cores runs on its own CPUs
  // MPI mode (--mpi-launcher): the block's nodes, which MPI tasks get (docs/mpi.md). Unset: MPI
  // tasks are refused.
  std::optional<MpiBlock> mpi;
  // When the pool stops running tasks (its block's walltime less the grace): a task declaring a
  // running_time that would end later is not started. max(): the block has no known end.
  TimePoint stop_tasks_at = TimePoint::max();
};

// A task for the shell to write to worker `rank`. `starts`: the worker has nothing else, so it
// starts this task now (resource sampling begins); otherwise it holds it next in its socket.
struct WorkerSend {
  int rank = 0;
  protocol::WorkerTask task;
  bool starts = false;
};

// A shell command (task kind 1) for the shell's command runner.
struct ShellStart {
  std::uint64_t task_id = 0;
  protocol::Bytes payload;
};

// What cancel() found.
enum class CancelOutcome {
  answered,   // it was waiting here: answered kStatusCancelled (in results())
  on_worker,  // a worker holds it: read that worker's socket, then call stop_if_cancelled()
  on_shell,   // a shell command: the runner stops it, and answers
  not_here,   // finished already (or never came)
};

// What a dead worker's running task became (worker_died()).
enum class DeathOutcome { idle, cancelled, lost };

class PoolCore {
 public:
  explicit PoolCore(PoolCoreConfig config);

  // ---- the interchange
  // TASKS: each task is queued, held as a follower, started (shell commands) or refused.
  void accept(protocol::Tasks& tasks);
  // CANCEL of one task. With on_worker, *rank is the worker holding it.
  CancelOutcome cancel(std::uint64_t task_id, int* rank);
  // DRAIN: tasks that arrive from now on are refused; drained() says when all are done.
  void drain() { draining_ = true; }
  bool draining() const { return draining_; }
  // Nothing is held, queued or running and every result was taken.
  bool drained() const;

  // ---- workers (by rank)
  // A new process in this slot, not ready yet (it knows no function).
  void worker_started(int rank);
  // READY arrived: it takes tasks from now on.
  void worker_ready(int rank);
  bool is_ready(int rank) const { return slots_[static_cast<std::size_t>(rank)].ready; }
  // It was killed, or its socket closed: it gets no more tasks (its death follows).
  void worker_unavailable(int rank);
  // Whether a result for `task_id` from this worker is the one expected (the task it runs).
  bool expects_result(int rank, std::uint64_t task_id) const;
  // The result of the task it runs (expects_result() was true): reported, its followers
  // released, and the task it held next (if any) starts now.
  void worker_result(int rank, protocol::WorkerResult&& result, TimePoint now);
  // After a worker's socket was read: if the task it runs was cancelled, returns why it must be
  // killed (the shell kills it; worker_died() then answers the task as cancelled).
  std::optional<std::string> stop_if_cancelled(int rank);
  bool cancels_pending() const { return !cancelled_on_workers_.empty(); }
  // The process is gone. `who` says which and how ("worker 2 (pid 7) died with signal 9"),
  // `kill_reason` why the pool killed it (empty: it was not killed). The task it ran fails with
  // kStatusWorkerLost (or is answered cancelled); the tasks it held next go back to the front of
  // the queue in their order (a follower among them comes back not started).
  DeathOutcome worker_died(int rank, const std::string& who, const std::string& kill_reason);
  // The task the worker runs now, if any.
  std::optional<std::uint64_t> running(int rank) const;

  // ---- shell commands
  // A shell command's result (with its run_time, timed by the runner); `succeeded` (exit code
  // 0) decides whether its followers start.
  void shell_result(protocol::TaskResult&& result, bool succeeded);

  // ---- decisions
  // Hands queued tasks (and held followers) to workers: appends to sends().
  void dispatch(TimePoint now);

  // Outputs: the shell takes them (and clears the vectors) after each round.
  std::vector<WorkerSend>& sends() { return sends_; }
  std::vector<ShellStart>& shell_starts() { return shell_starts_; }
  std::vector<protocol::TaskResult>& results() { return results_; }

  // Tasks wait for a worker here (queued, or followers held): dispatch() has something to do.
  bool has_waiting() const {
    return !queue_.empty() || !followers_.empty() || !resource_queue_.empty() || !mpi_queue_.empty();
  }
  std::size_t queued() const { return queue_.size() + resource_queue_.size() + mpi_queue_.size(); }
  // MPI mode: the block's nodes and their free cores (tests, logs).
  const std::optional<MpiNodes>& mpi_nodes() const { return mpi_; }

 private:
  struct Slot {
    bool alive = false;      // a process is in the slot
    bool ready = false;      // it sent READY
    bool available = false;  // not killed, socket open
    // Tasks sent to it, in order: the first runs, the others wait in its socket so that each
    // starts the moment the one before ends.
    std::deque<std::uint64_t> tasks;
    std::deque<protocol::Task> waiting;  // copies of tasks[1..], requeued if it dies
    std::size_t fill_to = 0;             // dispatch(): how many tasks it should hold
    std::optional<std::uint64_t> cancelled;  // killed to stop this task
    TimePoint started{};                      // when tasks.front() started
    Clock::duration last_run = Clock::duration::max();  // how long its last task took
    std::unordered_set<protocol::Bytes> fns_sent;
    int node = 0;
    bool counted_idle = false;  // counted in node_idle_
    std::optional<Grant> grant;  // what the task it runs asked for (resources)
    std::optional<MpiGrant> mpi_grant;  // the nodes of the MPI task it runs
    // Its latest result, for a follower that arrives after the task it follows finished here.
    std::uint64_t last_task = 0;
    std::optional<protocol::Bytes> last_value;  // when that task succeeded with a small result
  };

  static bool takes_tasks(const Slot& s) { return s.alive && s.ready && s.available; }
  // After anything that may change whether the slot is idle (ready, nothing held).
  void update_idle(Slot& s);
  void place_resource_tasks(TimePoint now);
  // `it` leaves a queue that tasks may pass (resource_queue_, mpi_queue_), `started` or not:
  // counts a start ahead of the queue's oldest task in `head_passes` (kMaxPasses), and resets
  // the count when the oldest itself leaves. Returns the next task.
  static std::deque<protocol::Task>::iterator leave_queue(std::deque<protocol::Task>& queue, std::size_t& head_passes,
                                                          std::deque<protocol::Task>::iterator it, bool started);
  int find_node(const ResourceRequest& r) const;
  bool too_late(const protocol::Task& t, TimePoint now);
  std::optional<protocol::Task> next_startable(TimePoint now);
  void release_grant(Slot& s);
  ResourceRequest largest_node() const;  // what the biggest node offers (nothing without nodes)
  std::size_t fill_to(const Slot& s) const;
  void refuse(std::uint64_t task_id, std::string why);
  // The task can never run here: InvalidResourceSpecification naming `key` in the driver.
  void refuse_invalid(std::uint64_t task_id, const std::string& key, const std::string& why);
  void place_mpi_tasks(TimePoint now);
  // Every result leaves through here: the followers held for that task get its value (or, if
  // it failed or its value has out-of-band buffers, go back to the driver as not started).
  // `run_time`: how long it ran, for tasks that ran to their end (TaskResult::run_time).
  void report(std::uint64_t task_id, int status, protocol::Bytes payload, bool succeeded,
              std::vector<protocol::SharedBuffer> buffers = {},
              std::optional<std::chrono::microseconds> run_time = std::nullopt);
  bool holds(std::uint64_t task_id) const;
  void accept_follower(protocol::Task&& t);
  void release_followers(std::uint64_t task_id, const protocol::Bytes* value);
  void start_task(protocol::Task&& t, bool front = false);
  void send_followers(TimePoint now);
  void send_task(int rank, protocol::Task&& t, TimePoint now);

  PoolCoreConfig config_;
  std::vector<Slot> slots_;
  std::deque<protocol::Task> queue_;
  std::deque<protocol::Task> resource_queue_;  // tasks that asked for resources, oldest first
  std::size_t head_passes_ = 0;                // tasks started ahead of resource_queue_.front()
  std::optional<MpiNodes> mpi_;
  std::deque<protocol::Task> mpi_queue_;       // MPI tasks, oldest first
  std::size_t mpi_head_passes_ = 0;            // tasks started ahead of mpi_queue_.front()
  std::vector<NodeLedger> nodes_;
  std::vector<std::vector<int>> node_slots_;   // ranks per node
  std::vector<int> node_idle_;                 // idle workers per node
  int idle_ = 0;                               // idle workers in all
  std::set<std::pair<int, int>> by_free_cores_;  // (free cores, node) of every node
  std::unordered_set<std::uint64_t> cancelled_on_workers_;  // cancelled while held by a worker, not yet stopped
  std::unordered_map<std::uint64_t, std::vector<protocol::Task>> followers_;  // held, by the task they follow
  std::unordered_map<std::uint64_t, std::uint64_t> follower_of_;           // held follower -> that task
  std::unordered_set<std::uint64_t> shell_tasks_;                           // started, result not back
  std::unordered_map<protocol::Bytes, protocol::Bytes> fns_;
  bool draining_ = false;
  std::vector<WorkerSend> sends_;
  std::vector<ShellStart> shell_starts_;
  std::vector<protocol::TaskResult> results_;
};

}  // namespace pervade::pool
