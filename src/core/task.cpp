#include "pervade/task.hpp"

#include <utility>

#include "pervade/errors.hpp"
#include "pervade/executor.hpp"
#include "pervade/remote.hpp"
#include "util/hex.hpp"

#include <condition_variable>
#include <mutex>

namespace pervade {

std::string_view to_string(TaskState s) {
  switch (s) {
    case TaskState::unsched: return "unsched";
    case TaskState::pending: return "pending";
    case TaskState::running: return "running";
    case TaskState::exec_done: return "exec_done";
    case TaskState::failed: return "failed";
    case TaskState::dep_fail: return "dep_fail";
    case TaskState::launched: return "launched";
    case TaskState::fail_retryable: return "fail_retryable";
    case TaskState::memo_done: return "memo_done";
    case TaskState::joining: return "joining";
    case TaskState::running_ended: return "running_ended";
    case TaskState::cancelled: return "cancelled";
  }
  return "unknown";
}

const std::any& TaskContext::dependency(std::size_t i) const { return inputs_.at(i)->value(); }
bool TaskContext::dependency_done(std::size_t i) const { return inputs_.at(i)->done(); }

void TaskRecord::wait() const {
  while (done_flag_.load(std::memory_order_acquire) == 0) done_flag_.wait(0, std::memory_order_acquire);
}

namespace {
// Timed waits share one condition variable; completions touch it only while someone waits,
// so the common path (no timed waiter) costs one atomic load.
std::mutex g_timed_mutex;
std::condition_variable g_timed_cv;
std::atomic<int> g_timed_waiters{0};
}  // namespace

bool TaskRecord::wait_for(std::chrono::duration<double> timeout) const {
  if (done_flag_.load(std::memory_order_acquire)) return true;
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::duration_cast<std::chrono::nanoseconds>(timeout);
  g_timed_waiters.fetch_add(1);
  bool done;
  {
    std::unique_lock lock(g_timed_mutex);
    done = g_timed_cv.wait_until(lock, deadline, [this] { return done_flag_.load() != 0; });
  }
  g_timed_waiters.fetch_sub(1);
  return done;
}

void TaskRecord::notify_done() {
  done_flag_.store(1);
  done_flag_.notify_all();
  if (g_timed_waiters.load() > 0) {
    std::lock_guard lock(g_timed_mutex);
    g_timed_cv.notify_all();
  }
}

namespace {
thread_local void (*t_release_hook)() = nullptr;
thread_local bool t_engine_thread = false;
}  // namespace

bool set_engine_thread(bool on) { return std::exchange(t_engine_thread, on); }
bool is_engine_thread() { return t_engine_thread; }

void set_thread_release_hook(void (*hook)()) { t_release_hook = hook; }

void release_thread_resources() {
  if (auto hook = std::exchange(t_release_hook, nullptr)) hook();
}

namespace {
std::atomic<ResultBufferHook> g_result_buffer_hook{nullptr};
}  // namespace

void set_result_buffer_hook(ResultBufferHook hook) { g_result_buffer_hook.store(hook); }
ResultBufferHook result_buffer_hook() { return g_result_buffer_hook.load(std::memory_order_relaxed); }

bool TaskRecord::advance(std::uint32_t try_id, TaskState from, TaskState to) {
  // try_id_ is written by the reactor before the launch is handed over, so this read is ordered.
  if (try_id != try_id_.load(std::memory_order_acquire)) return false;
  return state_.compare_exchange_strong(from, to, std::memory_order_acq_rel);
}

namespace {
void report_state(const Observers& observers, const TaskRecord& task, std::uint32_t try_id, TaskState state) {
  TaskEvent e{};
  e.kind = TaskEvent::Kind::state;
  e.time = std::chrono::system_clock::now();
  e.task = task.id();
  e.try_id = try_id;
  e.state = state;
  e.func_name = task.func_name();
  e.executor = task.executor_label();  // written before the launch was handed over: safe to read
  observers.task(e);
}
}  // namespace

void Executor::report_running(TaskRecord& task, std::uint32_t try_id) const {
  if (!task.mark_running(try_id)) return;
  if (observers_->active()) report_state(*observers_, task, try_id, TaskState::running);
  if (start_sink_ && task.walltime().count() > 0) start_sink_->started(task.shared_from_this(), try_id);
}

void Executor::report_running_ended(TaskRecord& task, std::uint32_t try_id) const {
  if (task.mark_running_ended(try_id) && observers_->active())
    report_state(*observers_, task, try_id, TaskState::running_ended);
}

std::string TaskRecord::hashsum() const {
  const TaskState s = state();
  if (s == TaskState::pending || s == TaskState::unsched) return {};
  return detail::to_hex(spec_.memo_key);
}

std::exception_ptr stop_error(StopReason reason, std::string message) {
  switch (reason) {
    case StopReason::shutdown: return std::make_exception_ptr(DataFlowKernelClosed(std::move(message)));
    case StopReason::cancelled: return std::make_exception_ptr(TaskCancelled(std::move(message)));
    case StopReason::walltime: break;
  }
  return std::make_exception_ptr(AppTimeout(std::move(message)));
}

std::exception_ptr command_stop_error(StopReason reason, const std::string& command) {
  switch (reason) {
    case StopReason::shutdown:
      return stop_error(reason, command + " was stopped (process group killed): the DataFlowKernel was cleaned up");
    case StopReason::cancelled: return stop_error(reason, command + " was cancelled (process group killed)");
    case StopReason::walltime: break;
  }
  return stop_error(reason, command + " exceeded its walltime (process group killed)");
}

}  // namespace pervade
