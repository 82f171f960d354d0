// The DataFlowKernel shell around KernelCore: one reactor thread fed by an inbox.
#include "pervade/dataflow_kernel.hpp"

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <future>
#include <limits>
#include <mutex>
#include <optional>
#include <random>
#include <thread>
#include <utility>
#include <variant>

#include <fmt/format.h>

#include "core/kernel_core.hpp"
#include "util/spin_wait.hpp"
#include "pervade/errors.hpp"
#include "pervade/thread_pool_executor.hpp"
#include "util/thread_name.hpp"

namespace pervade {

CheckpointMode parse_checkpoint_mode(std::string_view name) {
  static constexpr std::pair<std::string_view, CheckpointMode> kModes[] = {
      {"task_exit", CheckpointMode::task_exit},
      {"periodic", CheckpointMode::periodic},
      {"dfk_exit", CheckpointMode::dfk_exit},
      {"manual", CheckpointMode::manual}};
  for (const auto& [known, mode] : kModes)
    if (name == known) return mode;
  throw ConfigurationError(fmt::format(
      "unknown checkpoint_mode '{}': expected 'task_exit', 'periodic', 'dfk_exit', 'manual' or none", name));
}

namespace {
struct SubmitEvent {
  TaskRecordPtr task;
};
struct ExternalEvent {
  TaskRecordPtr task;
};
struct CallbackEvent {
  TaskRecordPtr task;
  std::function<void(const TaskRecordPtr&)> fn;
};
struct CloseEvent {
  std::promise<void>* done;
};
struct CancelEvent {
  TaskRecordPtr task;
  std::promise<bool>* done;
};
struct MemoKeyEvent {
  TaskRecordPtr task;
  std::string key;
  std::exception_ptr error;
};
struct MemoValueEvent {
  TaskRecordPtr task;
  std::string bytes;
};
struct CheckpointEvent {
  std::promise<std::size_t>* done;
};
struct StartedEvent {  // a try with a walltime started running (WalltimeClock::from_start)
  TaskRecordPtr task;
  std::uint32_t try_id;
};
struct StopEvent {};
using Event = std::variant<SubmitEvent, Completion, ExternalEvent, CallbackEvent, CloseEvent, CancelEvent,
                           MemoKeyEvent, MemoValueEvent, CheckpointEvent, StartedEvent, StopEvent>;

thread_local const void* t_reactor_of = nullptr;  // which kernel's reactor runs on this thread

// A random (version 4) UUID, as Parsl names its runs.
std::string make_uuid() {
  std::random_device rd;
  std::uint8_t b[16];
  for (auto& x : b) x = static_cast<std::uint8_t>(rd());
  b[6] = (b[6] & 0x0f) | 0x40;
  b[8] = (b[8] & 0x3f) | 0x80;
  std::string s;
  for (int i = 0; i < 16; ++i) {
    if (i == 4 || i == 6 || i == 8 || i == 10) s += '-';
    s += fmt::format("{:02x}", b[i]);
  }
  return s;
}
}  // namespace

struct DataFlowKernel::Impl final : CompletionSink {
  std::vector<ExecutorPtr> executors;
  ObserversPtr observers;
  std::string run_id;
  std::string run_dir;
  std::unique_ptr<detail::MemoStore> memo;  // before core, which uses it
  std::unique_ptr<detail::KernelCore> core;
  std::thread reactor;

  std::mutex inbox_mutex;
  std::condition_variable inbox_cv;
  std::vector<Event> inbox;
  bool reactor_sleeping = false;
  std::atomic<bool> inbox_filled{false};  // lock-free hint for the reactor's spin

  std::atomic<std::uint64_t> next_id{0};
  std::atomic<std::int64_t> unfinished{0};
  std::mutex idle_mutex;
  std::condition_variable idle_cv;
  std::atomic<bool> closed{false};
  std::mutex cleanup_mutex;
  bool cleaned_up = false;

  // Back-pressure (Config::max_unfinished_tasks). Finishing tasks take the mutex only while a
  // submitter waits: waiters is raised before the waiter checks `unfinished`, and task_final
  // lowers `unfinished` before it reads waiters, so one of the two always sees the other.
  std::int64_t max_unfinished = 0;  // 0: no limit
  std::mutex capacity_mutex;
  std::condition_variable capacity_cv;
  std::atomic<int> capacity_waiters{0};

  WorkflowEvent workflow_event(WorkflowEvent::Kind kind) const {
    WorkflowEvent e{};
    e.kind = kind;
    e.time = std::chrono::system_clock::now();
    e.run_id = run_id;
    e.run_dir = run_dir;
    return e;
  }

  bool at_capacity() const { return max_unfinished > 0 && unfinished.load() >= max_unfinished; }

  // Waits until a submit may go ahead; false if `deadline` passed first.
  bool wait_capacity(std::optional<std::chrono::steady_clock::time_point> deadline) {
    if (!at_capacity() || is_engine_thread() || t_reactor_of == this) return true;
    std::unique_lock lock(capacity_mutex);
    capacity_waiters.fetch_add(1);
    auto ready = [&] { return !at_capacity() || closed.load(); };
    bool ok = true;
    if (deadline)
      ok = capacity_cv.wait_until(lock, *deadline, ready);
    else
      capacity_cv.wait(lock, ready);
    capacity_waiters.fetch_sub(1);
    return ok;
  }

  void wake_capacity_waiters() {
    std::lock_guard lock(capacity_mutex);
    capacity_cv.notify_all();
  }

  void push(Event ev) {
    bool wake;
    {
      std::lock_guard lock(inbox_mutex);
      inbox.push_back(std::move(ev));
      inbox_filled.store(true, std::memory_order_release);
      wake = reactor_sleeping;
    }
    if (wake) inbox_cv.notify_one();
  }

  void post(std::vector<Completion>&& done) override {
    bool wake;
    {
      std::lock_guard lock(inbox_mutex);
      for (auto& c : done) inbox.emplace_back(std::move(c));
      inbox_filled.store(true, std::memory_order_release);
      wake = reactor_sleeping;
    }
    if (wake) inbox_cv.notify_one();
  }

  void started(const TaskRecordPtr& task, std::uint32_t try_id) override { push(StartedEvent{task, try_id}); }

  void task_final() {
    const std::int64_t left = unfinished.fetch_sub(1) - 1;
    if (capacity_waiters.load() > 0 && left < max_unfinished) wake_capacity_waiters();
    if (left == 0) {
      std::lock_guard lock(idle_mutex);
      idle_cv.notify_all();
    }
  }

  void run_reactor() {
    t_reactor_of = this;
    set_engine_thread(true);
    std::vector<Event> batch;
    bool stopping = false;
    detail::AdaptiveSpin spin;
    while (!stopping) {
      if (!core->next_deadline()) spin.spin([&] { return inbox_filled.load(std::memory_order_acquire); });
      {
        std::unique_lock lock(inbox_mutex);
        while (inbox.empty()) {
          reactor_sleeping = true;
          if (auto deadline = core->next_deadline()) {
            if (inbox_cv.wait_until(lock, *deadline) == std::cv_status::timeout) break;
          } else {
            inbox_cv.wait(lock);
          }
        }
        reactor_sleeping = false;
        batch.swap(inbox);
        inbox_filled.store(false, std::memory_order_relaxed);
      }
      for (auto& ev : batch) {
        std::visit(
            [&](auto& e) {
              using E = std::decay_t<decltype(e)>;
              if constexpr (std::is_same_v<E, SubmitEvent>) {
                core->submit(e.task);
              } else if constexpr (std::is_same_v<E, Completion>) {
                core->complete(std::move(e));
              } else if constexpr (std::is_same_v<E, ExternalEvent>) {
                core->add_external(e.task);
              } else if constexpr (std::is_same_v<E, CallbackEvent>) {
                core->add_callback(e.task, std::move(e.fn));
              } else if constexpr (std::is_same_v<E, CancelEvent>) {
                e.done->set_value(core->cancel(e.task));
              } else if constexpr (std::is_same_v<E, MemoKeyEvent>) {
                core->memo_key_ready(e.task, std::move(e.key), std::move(e.error));
              } else if constexpr (std::is_same_v<E, MemoValueEvent>) {
                core->memo_value_ready(e.task, std::move(e.bytes));
              } else if constexpr (std::is_same_v<E, StartedEvent>) {
                core->try_started(e.task, e.try_id);
              } else if constexpr (std::is_same_v<E, CheckpointEvent>) {
                e.done->set_value(core->checkpoint());
              } else if constexpr (std::is_same_v<E, CloseEvent>) {
                core->close();
                e.done->set_value();
              } else {
                stopping = true;
              }
            },
            ev);
      }
      batch.clear();
      core->fire_timers(std::chrono::steady_clock::now());
      core->flush();
    }
    t_reactor_of = nullptr;
  }
};

DataFlowKernel::DataFlowKernel(Config config) : impl_(std::make_unique<Impl>()) {
  auto& im = *impl_;
  im.executors = std::move(config.executors);
  if (im.executors.empty()) im.executors.push_back(std::make_shared<ThreadPoolExecutor>(2, "threads"));
  for (std::size_t i = 0; i < im.executors.size(); ++i) {
    if (!im.executors[i]) throw ConfigurationError("Config.executors[" + std::to_string(i) + "] is null");
    for (std::size_t j = 0; j < i; ++j)
      if (im.executors[j]->label() == im.executors[i]->label())
        throw ConfigurationError("two executors share the label '" + im.executors[i]->label() +
                                 "': executor labels must be unique");
    if (im.executors[i]->label() == "_parsl_internal")
      throw ConfigurationError("the executor label '_parsl_internal' is reserved");
  }
  im.executors.push_back(
      std::make_shared<ThreadPoolExecutor>(std::max(1, config.internal_tasks_max_threads), "_parsl_internal"));

  detail::KernelOptions opts;
  opts.retries = config.retries;
  opts.retry_handler = std::move(config.retry_handler);
  im.max_unfinished = static_cast<std::int64_t>(
      std::min<std::size_t>(config.max_unfinished_tasks, std::numeric_limits<std::int64_t>::max()));
  im.observers = std::make_shared<const Observers>(std::move(config.observers));
  im.run_id = config.run_id.empty() ? make_uuid() : std::move(config.run_id);
  im.run_dir = std::move(config.run_dir);
  opts.observers = im.observers;
  opts.close_fails_external_waits = config.cleanup_fails_external_waits;
  Impl* raw = &im;
  opts.on_final = [raw](const TaskRecordPtr&) { raw->task_final(); };
  if (config.checkpoint.memoize) {
    im.memo = std::make_unique<detail::MemoStore>(config.checkpoint);  // may throw BadCheckpoint
    opts.memo = im.memo.get();
    opts.post_memo_key = [raw](const TaskRecordPtr& task, std::string key, std::exception_ptr error) {
      raw->push(MemoKeyEvent{task, std::move(key), std::move(error)});
    };
    opts.post_serialized = [raw](const TaskRecordPtr& task, std::string bytes) {
      raw->push(MemoValueEvent{task, std::move(bytes)});
    };
  }
  im.core = std::make_unique<detail::KernelCore>(std::move(opts), im.executors);
  if (im.observers->active()) im.observers->workflow(im.workflow_event(WorkflowEvent::Kind::started));
  for (auto& ex : im.executors) {
    ex->set_observers(im.observers);
    if (ex->walltime_clock() == WalltimeClock::from_start) ex->set_start_sink(&im);
    ex->start(im);
  }
  im.reactor = std::thread([raw] {
    detail::name_this_thread("pv-reactor");
    raw->run_reactor();
  });
}

DataFlowKernel::~DataFlowKernel() {
  try {
    cleanup();
  } catch (...) {
    // A destructor must not throw; cleanup errors were already reported through futures.
  }
}

TaskRecordPtr DataFlowKernel::submit(TaskSpec spec) { return submit(std::move(spec), reserve_task_id()); }

TaskId DataFlowKernel::reserve_task_id() { return TaskId{impl_->next_id.fetch_add(1)}; }

std::uint64_t DataFlowKernel::task_count() const { return impl_->next_id.load(); }

TaskRecordPtr DataFlowKernel::submit(TaskSpec spec, TaskId id) {
  auto& im = *impl_;
  im.wait_capacity(std::nullopt);
  if (im.closed.load()) throw DataFlowKernelClosed("cannot submit: the DataFlowKernel has been cleaned up");
  if (!spec.body) throw ConfigurationError("task " + spec.func_name + " has no body");
  for (const auto& dep : spec.dependencies)
    if (!dep) throw ConfigurationError("task " + spec.func_name + " has a null dependency");
  auto task = std::make_shared<TaskRecord>(id, std::move(spec));
  im.unfinished.fetch_add(1);
  im.push(SubmitEvent{task});
  return task;
}

TaskRecordPtr DataFlowKernel::create_external(std::string name) {
  TaskSpec spec;
  spec.func_name = std::move(name);
  auto task = std::make_shared<TaskRecord>(TaskId{impl_->next_id.fetch_add(1)}, std::move(spec));
  impl_->push(ExternalEvent{task});
  return task;
}

void DataFlowKernel::complete_external(const TaskRecordPtr& task, Outcome outcome) {
  impl_->push(Completion{task, 0, std::move(outcome)});
}

void DataFlowKernel::add_done_callback(const TaskRecordPtr& task, std::function<void(const TaskRecordPtr&)> fn) {
  impl_->push(CallbackEvent{task, std::move(fn)});
}

void DataFlowKernel::wait_for_current_tasks() {
  auto& im = *impl_;
  if (t_reactor_of == &im) throw Error("wait_for_current_tasks() called from the kernel's own thread");
  std::unique_lock lock(im.idle_mutex);
  im.idle_cv.wait(lock, [&] { return im.unfinished.load() <= 0; });
}

bool DataFlowKernel::wait_for_current_tasks(std::chrono::duration<double> timeout) {
  auto& im = *impl_;
  if (t_reactor_of == &im) throw Error("wait_for_current_tasks() called from the kernel's own thread");
  std::unique_lock lock(im.idle_mutex);
  return im.idle_cv.wait_for(lock, timeout, [&] { return im.unfinished.load() <= 0; });
}

std::int64_t DataFlowKernel::tasks_in_state(TaskState s) const { return impl_->core->tasks_in_state(s); }

void DataFlowKernel::cleanup() {
  auto& im = *impl_;
  if (t_reactor_of == &im) throw Error("cleanup() called from the kernel's own thread");
  std::lock_guard guard(im.cleanup_mutex);
  if (im.cleaned_up) return;
  im.closed.store(true);
  im.wake_capacity_waiters();  // they find the kernel closed
  std::promise<void> closed;
  im.push(CloseEvent{&closed});
  closed.get_future().wait();
  // Executors report what they still hold (running tries finish; queued ones fail), and the
  // reactor keeps processing those completions until every task is final.
  for (auto& ex : im.executors) ex->shutdown();
  wait_for_current_tasks();
  if (im.memo) write_checkpoint();  // dfk_exit, and what periodic/manual modes have not written yet
  im.push(StopEvent{});
  im.reactor.join();
  if (im.memo) im.memo->close();  // the reactor is gone: this thread is the store's only user
  if (im.observers->active()) {
    // After the executors and the reactor stopped: nothing reports after this.
    WorkflowEvent ended = im.workflow_event(WorkflowEvent::Kind::ended);
    ended.tasks_completed = im.core->tasks_completed();
    ended.tasks_failed = im.core->tasks_failed();
    im.observers->workflow(ended);
    im.observers->close();
  }
  im.cleaned_up = true;
}

bool DataFlowKernel::cancel(const TaskRecordPtr& task) {
  auto& im = *impl_;
  if (t_reactor_of == &im) throw Error("cancel() called from the kernel's own thread");
  if (!task || task->done()) return false;
  std::lock_guard guard(im.cleanup_mutex);  // the reactor runs until cleanup() has finished
  if (im.cleaned_up) return false;
  std::promise<bool> done;
  im.push(CancelEvent{task, &done});
  return done.get_future().get();
}

std::size_t DataFlowKernel::checkpoint() {
  auto& im = *impl_;
  if (t_reactor_of == &im) throw Error("checkpoint() called from the kernel's own thread");
  std::lock_guard guard(im.cleanup_mutex);  // the reactor runs until cleanup() has finished
  if (im.cleaned_up || !im.memo) return 0;
  return write_checkpoint();
}

std::size_t DataFlowKernel::write_checkpoint() {
  std::promise<std::size_t> done;
  impl_->push(CheckpointEvent{&done});
  return done.get_future().get();
}

bool DataFlowKernel::wait_for_capacity(std::chrono::duration<double> timeout) {
  if (!impl_->at_capacity()) return true;  // no clock read on the common path
  return impl_->wait_capacity(std::chrono::steady_clock::now() +
                              std::chrono::duration_cast<std::chrono::steady_clock::duration>(timeout));
}

bool DataFlowKernel::wait_for_capacity(std::chrono::duration<double> timeout, const BacklogBelow& backlog_below) {
  if (impl_->max_unfinished == 0 || is_engine_thread()) return true;
  return wait_for_capacity(timeout) && backlog_below(static_cast<std::size_t>(impl_->max_unfinished), timeout);
}

std::size_t DataFlowKernel::waiting_submitters() const {
  return static_cast<std::size_t>(std::max(0, impl_->capacity_waiters.load()));
}

bool DataFlowKernel::closed() const { return impl_->closed.load(); }

std::size_t DataFlowKernel::outstanding_tasks() const {
  return static_cast<std::size_t>(std::max<std::int64_t>(0, impl_->unfinished.load()));
}

const std::string& DataFlowKernel::run_id() const { return impl_->run_id; }

std::vector<std::string> DataFlowKernel::executor_labels() const {
  std::vector<std::string> labels;
  for (const auto& ex : impl_->executors) labels.push_back(ex->label());
  return labels;
}

ExecutorPtr DataFlowKernel::executor(const std::string& label) const {
  for (const auto& ex : impl_->executors)
    if (ex->label() == label) return ex;
  return nullptr;
}

}  // namespace pervade
