#include "core/kernel_core.hpp"

#include <algorithm>
#include <cassert>
#include <cstdio>
#include <cstdlib>
#include <unordered_set>

#include "pervade/errors.hpp"
#include "pervade/remote.hpp"

namespace pervade::detail {

namespace {
bool is_launched(TaskState s) {
  return s == TaskState::launched || s == TaskState::running || s == TaskState::running_ended;
}

// The last line of the remote traceback ("ValueError: bad input") of a task that raised on a
// pool worker, read without Python: the payload is the pickle of (exception, traceback text)
// (pervade.serialize.serialize_exception), so the text is the pickle's last string, just
// before MEMOIZE, TUPLE2, MEMOIZE, STOP. Empty if the layout is not that.
std::string remote_error_summary(const std::string& pickle) {
  std::size_t end = pickle.size();
  for (const int op : {0x2e, 0x94, 0x86, 0x94}) {  // STOP, MEMOIZE, TUPLE2, MEMOIZE, from the end
    if (end > 0 && static_cast<unsigned char>(pickle[end - 1]) == static_cast<unsigned char>(op)) --end;
  }
  std::string_view text;
  for (std::size_t p = end; p-- > 0 && end - p < (std::size_t{1} << 20);) {
    const auto op = static_cast<unsigned char>(pickle[p]);
    if (op == 0x8c && p + 2 <= end && static_cast<unsigned char>(pickle[p + 1]) == end - p - 2) {
      text = std::string_view(pickle).substr(p + 2, end - p - 2);  // SHORT_BINUNICODE
      break;
    }
    if (op == 'X' && p + 5 <= end) {  // BINUNICODE, 4-byte little-endian length
      std::uint32_t n = 0;
      for (int i = 3; i >= 0; --i) n = n << 8 | static_cast<unsigned char>(pickle[p + 1 + i]);
      if (n == end - p - 5) {
        text = std::string_view(pickle).substr(p + 5, n);
        break;
      }
    }
  }
  while (!text.empty() && (text.back() == '\n' || text.back() == ' ')) text.remove_suffix(1);
  const auto nl = text.rfind('\n');
  return std::string(nl == std::string_view::npos ? text : text.substr(nl + 1));
}

std::string error_text(const std::exception_ptr& error) {
  try {
    std::rethrow_exception(error);
  } catch (const RemoteTaskError& remote) {
    std::string summary = remote_error_summary(remote.payload());
    if (!summary.empty()) return summary;
  } catch (...) {
  }
  return describe(error);
}
}  // namespace

KernelCore::KernelCore(KernelOptions options, std::vector<ExecutorPtr> executors)
    : options_(std::move(options)),
      observed_(options_.observers->active()),
      executors_(std::move(executors)),
      outbox_(executors_.size()) {
  if (!options_.now) options_.now = [] { return std::chrono::steady_clock::now(); };
  for (std::size_t i = 0; i < executors_.size(); ++i) {
    by_label_.emplace(executors_[i]->label(), i);
    if (executors_[i]->label() != options_.internal_label) user_executors_.push_back(i);
  }
  if (options_.memo) options_.memo->schedule_next(options_.now());
}


void KernelCore::submit(const TaskRecordPtr& task) {
  TaskRecord& t = *task;
  t.live_ = true;
  ++live_;
  count_state(t, TaskState::pending);
  if (observed_) report_submitted(t);
  for (const auto& dep : t.spec_.dependencies) {
    if (dep->done()) {
      if (is_failure(dep->state())) t.failed_deps_.emplace_back(dep->error(), dep->id());
    } else {
      dep->dependents_.push_back(task);
      ++t.pending_deps_;
    }
  }
  if (t.pending_deps_ == 0)
    deps_ready(t);
  else if (may_follow(t))
    launch(t, /*follower=*/true);
  else
    wait_in_table(t);
  drain_finished();
}

bool KernelCore::may_follow(const TaskRecord& t) {
  // Only what a pool can do on its own: one input still to come, no walltime (its clock
  // would start before the task can), no memo key (it needs the inputs' values), no failed input.
  if (closed_ || t.pending_deps_ != 1 || !t.spec_.body || t.spec_.walltime.count() > 0 || !t.failed_deps_.empty() ||
      (options_.memo && (!t.spec_.memo_key.empty() || t.spec_.memo_key_later)))
    return false;
  // The executor must be the one the task would run on anyway, and that of its input.
  std::size_t ex;
  const auto& labels = t.spec_.executors;
  if (labels.size() == 1) {
    const auto it = by_label_.find(labels[0]);
    if (it == by_label_.end()) return false;  // launch() fails it with UnknownExecutor
    ex = it->second;
  } else if (labels.empty() && user_executors_.size() == 1)
    ex = user_executors_[0];
  else
    return false;
  if (!executors_[ex]->accepts_followers()) return false;
  for (const auto& dep : t.spec_.dependencies) {
    if (dep->done()) continue;
    // One follower per task: a fan-out after one task must spread over every pool, not queue
    // behind it on one.
    if (dep->followed_ || dep->external_ || !is_launched(dep->state()) || dep->executor_label_ != executors_[ex]->label())
      return false;
    dep->followed_ = true;
    return true;
  }
  return false;
}

void KernelCore::wait_in_table(TaskRecord& t) {
  if (t.waiting_) return;
  waiting_.emplace(t.id(), t.shared_from_this());
  t.waiting_ = true;
}

void KernelCore::leave_table(TaskRecord& t) {
  if (!t.waiting_) return;
  waiting_.erase(t.id());
  t.waiting_ = false;
}

void KernelCore::add_external(const TaskRecordPtr& task) {
  // Not a task of this workflow (Parsl does not monitor outside futures either): no event.
  task->external_ = true;
  count_state(*task, TaskState::launched);
}

void KernelCore::deps_ready(TaskRecord& t) {
  if (t.follower_) {
    // Already launched where its input ran; it only needs stopping if that input failed.
    if (t.failed_deps_.empty()) return;
    const std::uint32_t try_id = t.try_id_;
    auto failed = std::move(t.failed_deps_);
    finish(t, TaskState::dep_fail, {}, std::make_exception_ptr(DependencyError(std::move(failed), t.id())));
    withdraw(t.shared_from_this(), try_id, StopReason::cancelled);
  } else if (t.state() == TaskState::joining) {
    finish_join(t);
  } else if (!t.failed_deps_.empty()) {
    auto failed = std::move(t.failed_deps_);
    finish(t, TaskState::dep_fail, {}, std::make_exception_ptr(DependencyError(std::move(failed), t.id())));
  } else if (options_.memo && (!t.spec_.memo_key.empty() || t.spec_.memo_key_later)) {
    launch_or_recall(t);
  } else {
    launch(t);
  }
}

std::size_t KernelCore::pick_executor(const TaskRecord& t) {
  const auto& labels = t.spec_.executors;
  if (labels.empty()) {
    if (user_executors_.size() == 1) return user_executors_[0];
    return user_executors_[rng_() % user_executors_.size()];
  }
  if (labels.size() == 1) return by_label_.at(labels[0]);
  return by_label_.at(labels[rng_() % labels.size()]);
}

void KernelCore::launch(TaskRecord& t, bool follower) {
  t.follower_ = follower;
  if (closed_) {
    finish(t, TaskState::failed, {},
           std::make_exception_ptr(DataFlowKernelClosed(
               "task " + std::to_string(t.id().value) + " was not run: the DataFlowKernel was cleaned up")));
    return;
  }
  if (user_executors_.empty() && t.spec_.executors.empty()) {
    finish(t, TaskState::failed, {}, std::make_exception_ptr(ConfigurationError("no executor is configured")));
    return;
  }
  leave_table(t);
  for (const auto& label : t.spec_.executors) {
    if (!by_label_.contains(label)) {
      std::string known;
      for (const auto& e : executors_) known += (known.empty() ? "" : ", ") + e->label();
      finish(t, TaskState::failed, {},
             std::make_exception_ptr(UnknownExecutor("task " + std::to_string(t.id().value) + " (" +
                                                     t.spec_.func_name + ") requested unknown executor '" +
                                                     label + "'; configured executors: " + known)));
      return;
    }
  }
  const std::size_t ex = pick_executor(t);
  t.executor_label_ = executors_[ex]->label();
  t.try_id_.fetch_add(1, std::memory_order_release);
  set_state(t, TaskState::launched);
  if (t.spec_.walltime.count() > 0 && executors_[ex]->walltime_clock() == WalltimeClock::from_launch) start_walltime(t);
  outbox_[ex].push_back(Launch{t.shared_from_this(), t.try_id_, t.spec_.body, t.spec_.dependencies, follower});
  if (!t.dependents_.empty()) launch_waiting_followers(t);
}

void KernelCore::start_walltime(TaskRecord& t) {
  auto deadline = options_.now() + std::chrono::duration_cast<std::chrono::steady_clock::duration>(t.spec_.walltime);
  auto it = timers_.emplace(deadline, Timer{t.shared_from_this(), t.try_id_});
  auto [slot, fresh] = timer_of_.try_emplace(&t, it);
  if (!fresh) {
    timers_.erase(slot->second);
    slot->second = it;
  }
}

void KernelCore::try_started(const TaskRecordPtr& task, std::uint32_t try_id) {
  TaskRecord& t = *task;
  // A stale report (the try already failed, was retried or cancelled) starts no clock.
  if (t.try_id_ == try_id && is_launched(t.state()) && t.spec_.walltime.count() > 0) start_walltime(t);
}

void KernelCore::launch_waiting_followers(TaskRecord& t) {
  // Who waits here: a dependent submitted while t itself waited, or whose follower try was not
  // started (its input had just finished on the pool, or a pool was lost). Without this, one
  // follower not started would make every later link of a chain wait for a round trip.
  newly_launched_.push_back(&t);
  if (launching_followers_) return;  // a call further up is going through the list
  launching_followers_ = true;
  while (!newly_launched_.empty()) {
    TaskRecord& launched = *newly_launched_.back();
    newly_launched_.pop_back();
    for (std::size_t i = 0; i < launched.dependents_.size() && !launched.followed_; ++i) {  // one follower each
      TaskRecord& d = *launched.dependents_[i];
      if (d.waiting_ && d.state() == TaskState::pending && may_follow(d)) launch(d, /*follower=*/true);
    }
  }
  launching_followers_ = false;
}

void KernelCore::flush() {
  commit_memoized();
  for (std::size_t i = 0; i < outbox_.size(); ++i) {
    if (outbox_[i].empty()) continue;
    // Swap out first: an executor may complete synchronously (fakes in tests do).
    std::vector<Launch> batch;
    batch.swap(outbox_[i]);
    executors_[i]->submit(batch);
  }
}

void KernelCore::complete(Completion&& done) {
  TaskRecord& t = *done.task;
  if (t.external_) {
    if (t.done()) return;
    if (done.outcome.error)
      finish(t, TaskState::failed, {}, std::move(done.outcome.error));
    else
      finish(t, TaskState::exec_done, std::move(done.outcome.value), nullptr);
    drain_finished();
    return;
  }
  // A try that is no longer current (timed out, or the task was finished otherwise) is ignored.
  if (done.try_id != t.try_id_ || !is_launched(t.state())) return;
  Outcome& out = done.outcome;
  if (out.not_started) {
    // A follower that its executor could not start: launched again once its inputs are done,
    // or as a follower again when the input it waits for is launched anew.
    t.follower_ = false;
    for (const auto& dep : t.spec_.dependencies)
      if (!dep->done()) dep->followed_ = false;
    set_state(t, TaskState::pending);
    if (t.pending_deps_ == 0)
      deps_ready(t);
    else
      wait_in_table(t);
    drain_finished();
    return;
  }
  if (!out.join && t.spec_.body) t.spec_.body->decode_result(out);
  if (out.error) {
    fail_try(t, std::move(out.error));
  } else if (out.join) {
    set_state(t, TaskState::joining);
    t.spec_.dependencies = std::move(out.join_on);
    if (t.spec_.memo_key.empty()) t.spec_.body.reset();  // a memoized join's body serializes its value
    t.pending_deps_ = 0;
    t.failed_deps_.clear();
    for (const auto& dep : t.spec_.dependencies) {
      if (!dep->done()) {
        dep->dependents_.push_back(t.shared_from_this());
        ++t.pending_deps_;
      }
    }
    t.join_as_list_ = out.join_as_list;
    if (t.pending_deps_ == 0)
      finish_join(t);
    else
      wait_in_table(t);
  } else {
    finish_success(t, out);
  }
  drain_finished();
}

void KernelCore::finish_join(TaskRecord& t) {
  std::vector<std::pair<std::exception_ptr, TaskId>> failed;
  for (const auto& dep : t.spec_.dependencies)
    if (is_failure(dep->state())) failed.emplace_back(dep->error(), dep->id());
  if (!failed.empty()) {
    // The inner tasks already had their own retries; the join itself is not run again.
    finish(t, TaskState::failed, {}, std::make_exception_ptr(JoinError(std::move(failed), t.id())));
    return;
  }
  std::any value;
  if (t.join_as_list_) {
    ValueList list;
    list.values.reserve(t.spec_.dependencies.size());
    for (const auto& dep : t.spec_.dependencies) list.values.push_back(dep->value());
    value = std::move(list);
  } else {
    value = t.spec_.dependencies.at(0)->value();
  }
  if (options_.memo && !t.spec_.memo_key.empty()) return memoize_join(t, std::move(value));
  finish(t, TaskState::exec_done, std::move(value), nullptr);
}

void KernelCore::memoize_join(TaskRecord& t, std::any value) {
  const auto* remote = std::any_cast<RemoteBytes>(&value);
  if (remote || !t.spec_.body || !options_.post_serialized) {
    // Bytes from a pool are stored as they are (not with out-of-band buffers: see finish_success).
    if (remote && remote->buffers.empty()) options_.memo->record(to_memo_key(t.spec_.memo_key), remote->bytes);
    t.spec_.body.reset();
    finish(t, TaskState::exec_done, std::move(value), nullptr,
           options_.memo->mode() == CheckpointMode::task_exit && options_.memo->has_unwritten());
    return;
  }
  // The value lives in this process: its bytes are made where Python runs. The join stays
  // `joining` until they are back, so the memo table has it before anyone sees the result.
  t.value_ = std::move(value);
  auto body = std::move(t.spec_.body);
  body->request_serialized(t.value_, [post = options_.post_serialized, task = t.shared_from_this()](std::string bytes) {
    post(task, std::move(bytes));
  });
}

void KernelCore::memo_value_ready(const TaskRecordPtr& task, std::string bytes) {
  TaskRecord& t = *task;
  if (t.done()) return;  // cancelled, or failed by close(), meanwhile
  MemoStore* memo = options_.memo;
  if (!bytes.empty()) memo->record(to_memo_key(t.spec_.memo_key), std::move(bytes));
  finish(t, TaskState::exec_done, std::move(t.value_), nullptr,
         memo->mode() == CheckpointMode::task_exit && memo->has_unwritten());
  drain_finished();
}

void KernelCore::fail_try(TaskRecord& t, std::exception_ptr error) {
  ++t.fail_count_;
  double cost = 1;
  if (options_.retry_handler) {
    try {
      cost = options_.retry_handler(error, t);
    } catch (...) {
      // As in Parsl: a broken retry handler stops retries, and its own error is reported.
      cost = std::numeric_limits<double>::infinity();
      error = std::current_exception();
    }
  }
  t.fail_cost_ += cost;
  if (t.fail_cost_ <= options_.retries) {
    set_state(t, TaskState::fail_retryable, error);
    if (t.pending_deps_ > 0) {  // a follower that failed before its input's completion arrived here
      t.follower_ = false;
      wait_in_table(t);
      return;
    }
    launch(t);
  } else {
    if (options_.memo && !t.spec_.memo_key.empty())
      options_.memo->record_failure(to_memo_key(t.spec_.memo_key), error);
    finish(t, TaskState::failed, {}, std::move(error));
  }
}

void KernelCore::finish(TaskRecord& t, TaskState state, std::any value, std::exception_ptr error,
                        bool after_commit) {
  assert(!t.done());
  t.value_ = std::move(value);
  t.error_ = std::move(error);
  t.time_returned_ = std::chrono::system_clock::now();
  set_state(t, state, t.error_);
  (after_commit ? committing_ : finishing_).push_back(t.shared_from_this());
}

// ---- memoization

void KernelCore::launch_or_recall(TaskRecord& t) {
  if (t.spec_.memo_key_later) {
    if (closed_) return launch(t);  // fails it with DataFlowKernelClosed
    // The key depends on the inputs' values: the body computes it off the reactor.
    wait_in_table(t);
    TaskContext ctx(t, t.try_id_, t.spec_.dependencies);
    t.spec_.body->request_memo_key(ctx, [post = options_.post_memo_key, task = t.shared_from_this()](
                                            std::string key, std::exception_ptr error) {
      post(task, std::move(key), std::move(error));
    });
    return;
  }
  const MemoKey key = to_memo_key(t.spec_.memo_key);
  if (const std::string* bytes = options_.memo->find(key); bytes && !closed_) {
    leave_table(t);
    options_.memo->record_recalled(key);
    // task_exit: as a result just computed, the future completes once it is in this run's file.
    finish(t, TaskState::memo_done, RemoteBytes{*bytes}, nullptr,
           options_.memo->mode() == CheckpointMode::task_exit && options_.memo->has_unwritten());
    return;
  }
  if (const std::exception_ptr* error = options_.memo->find_failure(key); error && !closed_) {
    leave_table(t);
    finish(t, TaskState::failed, {}, *error);  // not retried: each try would recall the same failure
    return;
  }
  launch(t);
}

void KernelCore::memo_key_ready(const TaskRecordPtr& task, std::string key, std::exception_ptr error) {
  TaskRecord& t = *task;
  if (t.done()) return;  // cancelled, or failed by close(), while the key was computed
  t.spec_.memo_key_later = false;
  if (!error && key.empty()) {  // the body decided against memoizing this call (a memoizer plug-in)
    launch(t);
  } else if (error || key.size() != kMemoKeySize) {
    if (!error)
      error = std::make_exception_ptr(Error("memo key of task " + std::to_string(t.id().value) + " has " +
                                            std::to_string(key.size()) + " bytes, not " + std::to_string(kMemoKeySize)));
    leave_table(t);
    finish(t, TaskState::failed, {}, std::move(error));
  } else {
    t.spec_.memo_key = std::move(key);
    launch_or_recall(t);
  }
  drain_finished();
}

void KernelCore::finish_success(TaskRecord& t, Outcome& out) {
  MemoStore* memo = options_.memo;
  if (!memo || t.spec_.memo_key.empty()) return finish(t, TaskState::exec_done, std::move(out.value), nullptr);
  // Results that arrived from a pool are already bytes; a local body serialized its own.
  // A result with out-of-band buffers (a big bytes-like value) is not memoized: its bytes
  // alone do not unpickle (docs/htex.md, "Big results").
  std::string bytes;
  if (const auto* remote = std::any_cast<RemoteBytes>(&out.value))
    bytes = remote->buffers.empty() ? remote->bytes : std::string();
  else
    bytes = std::move(out.serialized);
  if (bytes.empty()) return finish(t, TaskState::exec_done, std::move(out.value), nullptr);
  memo->record(to_memo_key(t.spec_.memo_key), std::move(bytes));
  // task_exit: the future completes only once its result is in the file (commit_memoized).
  finish(t, TaskState::exec_done, std::move(out.value), nullptr,
         memo->mode() == CheckpointMode::task_exit && memo->has_unwritten());
}

void KernelCore::commit_memoized() {
  if (committing_.empty()) return;
  write_checkpoint();  // one transaction for the whole batch (group commit)
  for (auto& t : committing_) finishing_.push_back(std::move(t));
  committing_.clear();
  drain_finished();
}

std::size_t KernelCore::checkpoint() {
  if (!options_.memo) return 0;
  const bool committing = !committing_.empty();
  const std::size_t n = write_checkpoint();
  if (committing) commit_memoized();
  return n;
}

std::size_t KernelCore::write_checkpoint() {
  const std::size_t n = options_.memo->write();
  if (observed_ && options_.memo->mode() != CheckpointMode::none) {
    WorkflowEvent e{WorkflowEvent::Kind::checkpointed, std::chrono::system_clock::now(), {}, {}};
    e.checkpointed = n;
    options_.observers->workflow(e);
  }
  return n;
}

void KernelCore::drain_finished() {
  if (draining_) return;
  draining_ = true;
  while (!finishing_.empty()) {
    TaskRecordPtr task = std::move(finishing_.back());
    finishing_.pop_back();
    TaskRecord& t = *task;
    if (auto it = timer_of_.find(&t); it != timer_of_.end()) {
      timers_.erase(it->second);
      timer_of_.erase(it);
    }
    // Release what a finished task no longer needs: its body and its inputs.
    t.spec_.body.reset();
    t.spec_.dependencies.clear();
    t.spec_.dependencies.shrink_to_fit();
    t.notify_done();
    if (t.spec_.listener) std::exchange(t.spec_.listener, nullptr)->task_final(task);
    for (auto& cb : std::exchange(t.callbacks_, {})) cb(task);
    const bool failed = is_failure(t.state());
    for (auto& d : std::exchange(t.dependents_, {})) {
      if (d->done()) continue;  // failed by close() while it waited
      if (failed) d->failed_deps_.emplace_back(t.error_, t.id());
      if (--d->pending_deps_ == 0) deps_ready(*d);
    }
    leave_table(t);
    if (t.live_) {
      t.live_ = false;
      --live_;
      ++(failed ? tasks_failed_ : tasks_completed_);
      if (options_.on_final) options_.on_final(task);
    }
  }
  draining_ = false;
}

void KernelCore::add_callback(const TaskRecordPtr& task, std::function<void(const TaskRecordPtr&)> fn) {
  if (task->done())
    fn(task);
  else
    task->callbacks_.push_back(std::move(fn));
}

void KernelCore::fire_timers(TimePoint now) {
  if (options_.memo && options_.memo->next_write() <= now) {
    write_checkpoint();
    options_.memo->schedule_next(now);
  }
  while (!timers_.empty() && timers_.begin()->first <= now) {
    Timer timer = std::move(timers_.begin()->second);
    timers_.erase(timers_.begin());
    TaskRecord& t = *timer.task;
    timer_of_.erase(&t);
    if (timer.try_id != t.try_id_ || !is_launched(t.state())) continue;
    const std::size_t ex = by_label_.at(t.executor_label_);
    fail_try(t, std::make_exception_ptr(AppTimeout(
                    "task " + std::to_string(t.id().value) + " (" + t.func_name() + ") exceeded its walltime of " +
                    std::to_string(t.spec_.walltime.count()) + " s")));
    executors_[ex]->cancel(timer.task, timer.try_id, StopReason::walltime);
    drain_finished();
  }
}

std::optional<TimePoint> KernelCore::next_deadline() const {
  std::optional<TimePoint> next;
  if (!timers_.empty()) next = timers_.begin()->first;
  if (options_.memo && options_.memo->next_write() != TimePoint::max())
    next = std::min(next.value_or(TimePoint::max()), options_.memo->next_write());
  return next;
}

bool KernelCore::cancel(const TaskRecordPtr& task) {
  TaskRecord& t = *task;
  if (t.done() || t.external_) return false;
  const bool launched = is_launched(t.state());
  const std::uint32_t try_id = t.try_id_;
  // Final first, then the executor: an executor thread that publishes the try as running after
  // this point sees the task final and does not run it (see ThreadPoolExecutor::worker).
  finish(t, TaskState::cancelled, {},
         std::make_exception_ptr(TaskCancelled("task " + std::to_string(t.id().value) + " (" + t.func_name() +
                                               ") was cancelled")));
  if (launched) withdraw(task, try_id, StopReason::cancelled);
  drain_finished();
  return true;
}

void KernelCore::withdraw(const TaskRecordPtr& task, std::uint32_t try_id, StopReason reason) {
  const std::size_t ex = by_label_.at(task->executor_label_);
  auto& pending = outbox_[ex];
  auto it = std::find_if(pending.begin(), pending.end(), [&](const Launch& l) { return l.task == task; });
  if (it != pending.end())
    pending.erase(it);  // never handed over
  else
    executors_[ex]->cancel(task, try_id, reason);
}

// ---- observers

void KernelCore::report_submitted(const TaskRecord& t) {
  const Observers& obs = *options_.observers;
  TaskEvent e{};
  e.kind = TaskEvent::Kind::submitted;
  e.time = std::chrono::system_clock::now();
  e.task = t.id();
  e.state = TaskState::pending;
  e.func_name = t.spec_.func_name;
  e.memoized = !t.spec_.memo_key.empty() || t.spec_.memo_key_later;
  if (const auto& streams = t.spec_.std_streams) {
    e.stdout_path = streams->stdout_path;
    e.stderr_path = streams->stderr_path;
  }
  obs.task(e);
  e.kind = TaskEvent::Kind::dependency;
  for (const auto& dep : t.spec_.dependencies) {
    if (dep->external_) continue;  // not a task of this workflow
    e.dependency = dep->id();
    obs.task(e);
  }
}

void KernelCore::report_state(const TaskRecord& t, TaskState s, const std::exception_ptr& error) {
  if (t.external_) return;
  TaskEvent e{};
  e.kind = TaskEvent::Kind::state;
  e.time = std::chrono::system_clock::now();
  e.task = t.id();
  e.try_id = t.try_id_.load(std::memory_order_relaxed);
  e.state = s;
  e.func_name = t.spec_.func_name;
  e.executor = t.executor_label_;
  e.fail_count = t.fail_count_;
  e.fail_cost = t.fail_cost_;
  e.memo_key = t.spec_.memo_key;
  std::string text;
  if (error) {
    text = error_text(error);
    e.error = text;
  }
  options_.observers->task(e);
}

void KernelCore::close() {
  closed_ = true;
  std::vector<TaskRecordPtr> waiting;
  for (const auto& [id, task] : waiting_) waiting.push_back(task);
  // A dependency has a lower id than its dependents: one pass in id order finds every task that
  // waits, directly or through others, for an external future not completed yet.
  std::sort(waiting.begin(), waiting.end(), [](const auto& a, const auto& b) { return a->id().value < b->id().value; });
  std::unordered_set<const TaskRecord*> left;
  const auto waits_for_external = [&left](const TaskRecord& t) {
    for (const auto& d : t.spec_.dependencies)
      if (!d->done() && (d->external_ || left.contains(d.get()))) return true;
    return false;
  };
  for (const auto& task : waiting) {
    if (task->done()) continue;
    if (!options_.close_fails_external_waits && waits_for_external(*task)) {
      // Left unfinished, and no longer counted as live: cleanup() does not wait for it.
      left.insert(task.get());
      task->live_ = false;
      --live_;
      if (options_.on_final) options_.on_final(task);
      continue;
    }
    finish(*task, TaskState::failed, {},
           std::make_exception_ptr(DataFlowKernelClosed("task " + std::to_string(task->id().value) +
                                                        " was not run: the DataFlowKernel was cleaned up")));
  }
  drain_finished();
}

}  // namespace pervade::detail
