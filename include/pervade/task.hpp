#pragma once
// Task records, bodies and outcomes: the vocabulary shared by the kernel and the executors.
// A TaskRecord's state/value/error are written only by the kernel's reactor thread; any
// thread may read them once is_final(state()) has been observed (acquire).
#include <any>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <exception>
#include <functional>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

#include "pervade/ids.hpp"
#include "pervade/state.hpp"

namespace pervade {

class TaskRecord;
struct RemoteTask;  // pervade/remote.hpp
namespace detail { class KernelCore; }
using TaskRecordPtr = std::shared_ptr<TaskRecord>;

// The result of a join task over a list of futures: one value per inner task, in order.
struct ValueList {
  std::vector<std::any> values;
};

// Passed to TaskBody::run on the executor thread that runs the task.
class TaskContext {
 public:
  TaskContext(const TaskRecord& task, std::uint32_t try_id, const std::vector<TaskRecordPtr>& inputs)
      : task_(task), try_id_(try_id), inputs_(inputs) {}
  const TaskRecord& task() const { return task_; }
  std::uint32_t try_id() const { return try_id_; }
  // Results of the task's dependencies, in the order given at submit. All of them succeeded
  // (but see dependency_done).
  std::size_t dependency_count() const { return inputs_.size(); }
  const std::any& dependency(std::size_t i) const;
  // False only for the input a follower (Launch::follower) waits for; its value is not there.
  bool dependency_done(std::size_t i) const;

 private:
  const TaskRecord& task_;
  std::uint32_t try_id_;
  const std::vector<TaskRecordPtr>& inputs_;
};

// What running a task produced: a value, an error, or (join apps) tasks to wait for.
struct Outcome {
  std::any value;
  std::exception_ptr error;
  bool join = false;                   // join apps: the result is that of the tasks in join_on
  bool join_as_list = false;           // true: a ValueList of their values; false: join_on[0]'s value
  std::vector<TaskRecordPtr> join_on;
  // Memoized tasks: the value serialized by the body (a RemoteBytes value needs none). Empty
  // when it could not be serialized: the result is then not memoized.
  std::string serialized;
  // A follower (Launch::follower) that did not run because the input it was waiting for did
  // not reach it (that dependency failed, or its pool was lost, or it had already left): the
  // kernel launches the task again, the ordinary way, once its dependencies are done.
  bool not_started = false;

  static Outcome success(std::any v) { return Outcome{std::move(v), nullptr, false, false, {}, {}}; }
  static Outcome not_started_yet() {
    Outcome o;
    o.not_started = true;
    return o;
  }
  static Outcome failure(std::exception_ptr e) { return Outcome{{}, std::move(e), false, false, {}, {}}; }
  static Outcome join_tasks(std::vector<TaskRecordPtr> tasks, bool as_list) {
    return Outcome{{}, nullptr, true, as_list, std::move(tasks), {}};
  }
};

// Why a running try is being stopped.
enum class StopReason : std::uint8_t {
  walltime,  // the try ran past its walltime: it fails with AppTimeout
  shutdown,  // the kernel is being cleaned up: it fails with DataFlowKernelClosed
  cancelled, // DataFlowKernel::cancel: the task fails with TaskCancelled and is never run again
};

// The stops a task body was asked for (TaskBody::interrupt) and the reason a stopped try
// reports, for bodies that run commands (shell tasks, Python apps): the kernel's shutdown
// first, then a cancellation (which stays for every later try, even when a walltime stop came
// after it), else walltime. Any thread.
class StopRequests {
 public:
  void request(StopReason reason) noexcept {
    last_.store(reason);
    if (reason == StopReason::cancelled) cancelled_.store(true);
    requested_.store(true);
  }
  // A try starts: a stop aimed at an earlier try must not stop it; a cancellation stays.
  void new_try() noexcept { requested_.store(false); }
  bool requested() const noexcept { return requested_.load() || cancelled_.load(); }
  bool cancelled() const noexcept { return cancelled_.load(); }
  StopReason reason() const noexcept {
    if (last_.load() == StopReason::shutdown) return StopReason::shutdown;
    return cancelled_.load() ? StopReason::cancelled : StopReason::walltime;
  }

 private:
  std::atomic<StopReason> last_{StopReason::walltime};
  std::atomic<bool> cancelled_{false};
  std::atomic<bool> requested_{false};
};

// The error a try stopped for `reason` fails with (AppTimeout, DataFlowKernelClosed or
// TaskCancelled), carrying `message`.
std::exception_ptr stop_error(StopReason reason, std::string message);
// The error of a shell command whose process group was killed for `reason`; `command` names it
// in the message. Example: command_stop_error(StopReason::walltime, "shell task hello").
std::exception_ptr command_stop_error(StopReason reason, const std::string& command);

// The work of one task. run() is called on an executor thread, once per try.
class TaskBody {
 public:
  virtual ~TaskBody() = default;
  virtual Outcome run(TaskContext& ctx) = 0;
  // Best-effort stop of a running try: kill the processes it started, raise in its code.
  // Called from another thread while run() may be executing, or just before it starts (so a
  // body should remember a StopReason::cancelled: the task never runs again); must not block.
  virtual void interrupt(StopReason) {}
  // For executors that run tasks in other processes: fills *out with the task as it goes on
  // the wire. False if this body can only run in this process (a C++ callable). Called on
  // the executor's own thread, never on the kernel's; may block briefly (the GIL).
  virtual bool encode_remote(const TaskContext& ctx, RemoteTask* out) {
    (void)ctx;
    (void)out;
    return false;
  }
  // The same, called on the kernel's reactor thread, so it must not block (no GIL): false
  // means "not possible now", and the executor calls encode_remote on its own thread. Bodies
  // that are already serialized (Python apps pickled at the call) save a thread hop this way.
  virtual bool encode_remote_now(const TaskContext& ctx, RemoteTask* out) {
    (void)ctx;
    (void)out;
    return false;
  }
  // Called on the reactor with each try's outcome (not for joins) before the kernel uses it:
  // a body whose tries ran remotely may turn what came back from the pool (a RemoteBytes
  // value, a RemoteTaskError) into its own value or error, as a shell command turns an exit
  // code into 0 or BashExitFailure. Must be cheap and must not block. Default: unchanged (a
  // Python app's value stays serialized until a Python future decodes it).
  virtual void decode_result(Outcome& out) { (void)out; }
  // Memoized tasks whose key depends on their inputs (TaskSpec::memo_key_later): called on the
  // reactor once the dependencies succeeded; must not block. The body computes the key
  // elsewhere and calls reply(key) or reply with an error, from any thread, exactly once.
  using MemoKeyReply = std::function<void(std::string key, std::exception_ptr error)>;
  virtual void request_memo_key(const TaskContext& ctx, MemoKeyReply reply) {
    (void)ctx;
    reply({}, std::make_exception_ptr(std::logic_error("this task body cannot compute a memo key")));
  }
  // A memoized join whose value is not bytes already (it came from this process): called on the
  // reactor with that value once the join succeeded; must not block. The body serializes it
  // elsewhere and calls reply(bytes) from any thread, exactly once; empty bytes: the value
  // cannot be memoized (the join still succeeds with it).
  using SerializeReply = std::function<void(std::string bytes)>;
  virtual void request_serialized(const std::any& value, SerializeReply reply) {
    (void)value;
    reply({});
  }
};

// Receives a task when it reaches a final state. Called on the reactor thread; must not block.
class TaskListener {
 public:
  virtual ~TaskListener() = default;
  virtual void task_final(const TaskRecordPtr& task) = 0;
};

// Everything the kernel needs to run a task.
struct TaskSpec {
  std::shared_ptr<TaskBody> body;
  std::vector<TaskRecordPtr> dependencies;   // launch waits for these
  std::vector<std::string> executors;        // allowed labels; empty means any user executor
  std::string func_name;                     // for logs, retry handlers and error texts
  std::chrono::duration<double> walltime{0}; // 0 = none; expiry fails the try with AppTimeout
  std::shared_ptr<TaskListener> listener;    // told once, when the task is final
  // Memoization (Config::checkpoint.memoize): a kMemoKeySize digest of the function and its
  // arguments; a task with a key is answered from the memo table (state memo_done) when its
  // key is there, and its successful result is recorded. Empty: not memoized.
  std::string memo_key;
  bool memo_key_later = false;  // the key is asked of the body once the dependencies are done
  // For observers (the monitoring database's task_stdout/task_stderr): where the task's
  // standard output and error go, when the app names them (bash apps' stdout=/stderr=).
  struct StdStreams {
    std::string stdout_path, stderr_path;
  };
  std::shared_ptr<const StdStreams> std_streams;  // null: none named
};

class TaskRecord : public std::enable_shared_from_this<TaskRecord> {
 public:
  TaskRecord(TaskId id, TaskSpec spec)
      : id_(id), time_invoked_(std::chrono::system_clock::now()), spec_(std::move(spec)) {}
  TaskRecord(const TaskRecord&) = delete;
  TaskRecord& operator=(const TaskRecord&) = delete;

  TaskId id() const { return id_; }
  TaskState state() const { return state_.load(std::memory_order_acquire); }
  bool done() const { return is_final(state()); }
  // Valid once done(): the value (success) or the error (failure).
  const std::any& value() const { return value_; }
  const std::exception_ptr& error() const { return error_; }
  const std::string& func_name() const { return spec_.func_name; }
  // The body until the task is final (then released). Reactor thread only (retry handlers).
  const std::shared_ptr<TaskBody>& body() const { return spec_.body; }
  const std::string& memo_key() const { return spec_.memo_key; }  // empty: not memoized (yet)
  // Parsl's task_record["hashsum"]: the memo key in lowercase hex once the task has left
  // pending (a key made from its inputs' values is written before it does); empty until then
  // and for a task that is not memoized.
  std::string hashsum() const;
  // Wall-clock times of submission (the record's creation) and of reaching a final state
  // (epoch 0 until then).
  std::chrono::system_clock::time_point time_invoked() const { return time_invoked_; }
  std::chrono::system_clock::time_point time_returned() const { return time_returned_; }
  const std::string& executor_label() const { return executor_label_; }
  std::chrono::duration<double> walltime() const { return spec_.walltime; }  // 0: none
  int fail_count() const { return fail_count_; }
  double fail_cost() const { return fail_cost_; }
  std::uint32_t try_id() const { return try_id_.load(std::memory_order_acquire); }
  // Stands for a future outside the kernel (DataFlowKernel::create_external); func_name() names it.
  bool external() const { return external_; }
  // A word for the executor running the current try (the HighThroughputExecutor keeps the
  // try's wire id here, so that a follower can name the task it follows). Any thread.
  std::uint64_t executor_tag() const { return executor_tag_.load(std::memory_order_acquire); }
  void set_executor_tag(std::uint64_t tag) { executor_tag_.store(tag, std::memory_order_release); }

  // Blocks the calling thread until the task is final. Never call from the reactor thread.
  void wait() const;
  // Same, with a timeout; returns done().
  bool wait_for(std::chrono::duration<double> timeout) const;

  // Executor threads report progress with these (launched -> running -> running_ended).
  // They only advance the state of the try that is current; stale tries are ignored. True if
  // the state changed (Executor::report_running tells observers only then).
  bool mark_running(std::uint32_t try_id) { return advance(try_id, TaskState::launched, TaskState::running); }
  bool mark_running_ended(std::uint32_t try_id) {
    return advance(try_id, TaskState::running, TaskState::running_ended);
  }

 private:
  friend class detail::KernelCore;
  bool advance(std::uint32_t try_id, TaskState from, TaskState to);
  void notify_done();  // reactor: after the final state, value and error are written

  TaskId id_;
  std::atomic<TaskState> state_{TaskState::unsched};
  std::atomic<std::uint32_t> done_flag_{0};  // futex word for wait()
  std::atomic<std::uint32_t> try_id_{0};     // written by the reactor before each launch
  std::atomic<std::uint64_t> executor_tag_{0};
  int fail_count_ = 0;
  double fail_cost_ = 0;
  std::chrono::system_clock::time_point time_invoked_;
  std::chrono::system_clock::time_point time_returned_{};
  std::any value_;
  std::exception_ptr error_;
  std::string executor_label_;
  TaskSpec spec_;  // body and dependencies are released when the task is final

  // Reactor-only bookkeeping.
  std::vector<TaskRecordPtr> dependents_;  // tasks waiting on this one; cleared when final
  std::vector<std::pair<std::exception_ptr, TaskId>> failed_deps_;
  std::vector<std::function<void(const TaskRecordPtr&)>> callbacks_;
  std::uint32_t pending_deps_ = 0;
  bool external_ = false;
  bool join_as_list_ = false;
  bool live_ = false;     // a kernel task (not external) that is not final yet
  bool waiting_ = false;  // in the kernel's table of tasks waiting for dependencies or a join
  bool follower_ = false; // its current try was launched before its last dependency finished
  bool followed_ = false; // a follower was launched after it (one per task: see KernelCore::may_follow)
};

}  // namespace pervade
