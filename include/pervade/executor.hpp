#pragma once
// The executor interface. The kernel calls submit/cancel from its reactor thread; an
// executor reports every launched try exactly once through the CompletionSink, from any thread.
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "pervade/observer.hpp"
#include "pervade/task.hpp"

namespace pervade {

// One try of a task, handed to an executor. It carries its own references to the body and
// the inputs so that the try can finish safely even if the kernel gives up on it (walltime).
struct Launch {
  TaskRecordPtr task;
  std::uint32_t try_id;
  std::shared_ptr<TaskBody> body;
  std::vector<TaskRecordPtr> inputs;  // the dependencies, in submit order (all finished, unless follower)
  // Launched before one of its inputs finished, because that input runs on this same
  // executor (see Executor::accepts_followers): the executor hands the task to wherever that
  // input runs, which starts it the moment the input's result is there, without a round trip
  // through the kernel. If it cannot, it reports Outcome::not_started_yet().
  bool follower = false;
};

struct Completion {
  TaskRecordPtr task;
  std::uint32_t try_id;
  Outcome outcome;
};

class CompletionSink {
 public:
  virtual ~CompletionSink() = default;
  virtual void post(std::vector<Completion>&& done) = 0;  // thread-safe
  // A try with a walltime started running on an executor whose clock is WalltimeClock::from_start
  // (Executor::report_running calls it): its walltime counts from now. Thread-safe.
  virtual void started(const TaskRecordPtr& /*task*/, std::uint32_t /*try_id*/) {}
};

// Where a try's walltime is counted from, as Parsl counts it: from when the task starts running,
// not from its launch (a task queued behind busy workers does not time out in the queue).
enum class WalltimeClock {
  from_launch,   // the kernel's timer starts at the launch (an executor that runs tries at once)
  from_start,    // the kernel's timer starts when the executor reports the try running
  where_it_runs  // the executor enforces walltime where the task runs (a pool); the kernel times nothing
};

class Executor {
 public:
  explicit Executor(std::string label) : label_(std::move(label)) {}
  virtual ~Executor() = default;
  const std::string& label() const { return label_; }

  // Called once by the kernel before any submit.
  virtual void start(CompletionSink& sink) = 0;
  // Must not block. Each launch is later reported through the sink exactly once.
  virtual void submit(std::span<Launch> launches) = 0;
  // Best-effort: stop a try the kernel has already failed (walltime expiry, DataFlowKernel::cancel);
  // `reason` says why (a body may report it). Must not block.
  virtual void cancel(const TaskRecordPtr& task, std::uint32_t try_id, StopReason reason) = 0;
  // Stop: launched tries that have not started are reported as failed with
  // DataFlowKernelClosed; running ones are interrupted (StopReason::shutdown) and waited
  // for. Blocks; idempotent.
  virtual void shutdown() = 0;
  // True if this executor takes followers (Launch::follower). The kernel launches a task as a
  // follower only when its one unfinished dependency is a launched task of this executor.
  virtual bool accepts_followers() const { return false; }
  virtual WalltimeClock walltime_clock() const { return WalltimeClock::from_launch; }
  // Called once by the kernel before start(): where this executor reports its events (tries
  // placed on pools and hosts, blocks, pools, resource samples). Never null; may be inactive.
  void set_observers(ObserversPtr observers) { observers_ = std::move(observers); }
  const Observers& observers() const { return *observers_; }
  // Called once by the kernel before start() when walltime_clock() is from_start: where
  // report_running says that a try with a walltime started.
  void set_start_sink(CompletionSink* sink) { start_sink_ = sink; }
  // Executor threads: advance a try to running / running_ended (TaskRecord::mark_running) and
  // tell the observers (and, for a try with a walltime, the start sink) when it did. Costs one
  // branch more than mark_running without observers and walltime.
  void report_running(TaskRecord& task, std::uint32_t try_id) const;
  void report_running_ended(TaskRecord& task, std::uint32_t try_id) const;

 private:
  std::string label_;
  ObserversPtr observers_ = std::make_shared<const Observers>();
  CompletionSink* start_sink_ = nullptr;
};

using ExecutorPtr = std::shared_ptr<Executor>;

// Bodies may keep a per-thread resource across consecutive tasks (the Python binding keeps the
// GIL while a worker runs a batch of Python tasks). Executor threads call
// release_thread_resources() after each batch and before they block, which runs the hook the
// body installed on that thread.
void set_thread_release_hook(void (*hook)());
void release_thread_resources();

// Engine threads (executor workers, the kernel's reactor, a front end's completion thread) call
// set_engine_thread(true) once when they start: tasks they submit are never held back by
// Config::max_unfinished_tasks, because waiting there could deadlock (the tasks being waited
// for may need this very thread). Returns the previous setting, so it can also be scoped.
bool set_engine_thread(bool on);
bool is_engine_thread();

}  // namespace pervade
