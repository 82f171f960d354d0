#include "pervade/thread_pool_executor.hpp"

#include <algorithm>
#include <cmath>
#include <iterator>
#include <chrono>
#include <condition_variable>
#include <atomic>
#include <deque>
#include <mutex>
#include <thread>

#include <fmt/format.h>
#include <unistd.h>
#include <sys/syscall.h>

#include "observe/proc_usage.hpp"
#include "pervade/errors.hpp"
#include "util/spin_wait.hpp"
#include "util/thread_name.hpp"

namespace pervade {

namespace {
// A worker takes a share of the queue at once (fewer lock round trips for tiny tasks) and posts
// the completions of tiny tasks together. While one of its tasks runs longer than kFlushAfter,
// the flusher thread posts the completions it holds and puts the rest of its share back on the
// queue for the other threads: a quick task never waits for a long one that ran before it.
constexpr std::size_t kMaxBatch = 64;
constexpr auto kReportAfter = std::chrono::microseconds(500);
constexpr auto kFlushAfter = std::chrono::milliseconds(2);
using Clock = std::chrono::steady_clock;
}  // namespace

struct ThreadPoolExecutor::Impl {
  int max_threads;
  std::chrono::duration<double> shutdown_grace;
  const Executor* owner = nullptr;  // reports running/running_ended to its observers
  CompletionSink* sink = nullptr;
  std::vector<std::thread> threads;

  std::mutex mutex;
  std::condition_variable cv;
  std::deque<Launch> queue;
  int sleeping = 0;
  std::atomic<std::size_t> queued{0};  // queue.size(), readable without the lock
  std::atomic<bool> stopping{false};
  bool stopped = false;
  int exited = 0;                        // worker threads that returned (under mutex)
  std::condition_variable exited_cv;
  // Each thread's share of the queue, what it is running and the completions it has not posted
  // yet, under one lock per thread (off the queue's lock): cancel() interrupts the running try,
  // the flusher posts held completions, and shutdown() takes over a thread stuck in a task.
  struct Slot {
    std::mutex mutex;
    std::vector<Launch> batch;   // taken from the queue, not started; batch[next..] remain
    std::size_t next = 0;
    const TaskRecord* task = nullptr;
    std::uint32_t try_id = 0;
    TaskBody* body = nullptr;
    pid_t tid = 0;               // resource sampling: the thread running the task
    detail::ProcUsage start{};   // and its usage when the task started
    std::optional<EventTime> first_sample;  // when it started, until its first sample is reported (ResourceSample)
    std::vector<Completion> done;  // not posted yet; the oldest finished at done_since
    Clock::time_point done_since{};
    Clock::time_point started{};   // when the running task began: the share's take or the last task's end
    bool exited = false;
    bool abandoned = false;      // shutdown() gave up on this thread: it touches nothing more
  };
  std::unique_ptr<Slot[]> slots;

  // The flusher sleeps until a thread starts a task while it holds completions or unstarted
  // launches (armed), then posts the completions that have waited kFlushAfter and requeues the
  // launches held behind a task that has run that long.
  std::thread flusher;
  std::mutex flush_mutex;
  std::condition_variable flush_cv;
  bool flush_armed = false;  // under flush_mutex
  std::atomic<bool> flush_wanted{false};
  bool flush_stop = false;   // under flush_mutex

  // Resource sampling, only when an observer asks for it (Observers::resource_interval): the
  // thread running a task is read from /proc at the task's start and end, and every
  // interval by the sampler thread. CPU, I/O and context switches count from the task's start;
  // memory is the process's (the task shares it).
  bool sampling = false;
  double sample_interval = 0;
  std::thread sampler;
  std::mutex sampler_mutex;
  std::condition_variable sampler_cv;
  bool sampler_stop = false;  // under sampler_mutex

  void report_sample(const TaskRecord& task, std::uint32_t try_id, const detail::ProcUsage& used, bool first,
                     bool last, EventTime time = std::chrono::system_clock::now()) const {
    ResourceSample s{};
    s.time = time;
    s.task = task.id();
    s.try_id = try_id;
    s.executor = owner->label();
    s.pid = static_cast<int>(::getpid());
    copy_usage(used, s);
    s.interval = sample_interval;
    s.first = first;
    s.last = last;
    owner->observers().resource(s);
  }

  // The first sample of a slot's task, taken at its start, reported before the task's next one
  // (under the slot's lock); dropped when that is the end of a task shorter than kFirstSampleAfter.
  void report_first_sample(Slot& slot, bool at_end) {
    if (!slot.first_sample) return;
    if (reports_first_sample(std::chrono::system_clock::now() - *slot.first_sample, at_end))
      report_sample(*slot.task, slot.try_id, slot.start.since(slot.start), true, false, *slot.first_sample);
    slot.first_sample.reset();
  }

  void sample_loop() {
    const auto period = std::chrono::duration<double>(sample_interval);
    std::unique_lock lock(sampler_mutex);
    while (!sampler_cv.wait_for(lock, period, [&] { return sampler_stop; })) {
      for (int i = 0; i < max_threads; ++i) {
        auto& slot = slots[i];
        std::lock_guard slot_lock(slot.mutex);  // the task stays alive while it is in its slot
        detail::ProcUsage now;
        if (slot.task && slot.tid && detail::read_usage(::getpid(), slot.tid, &now)) {
          report_first_sample(slot, /*at_end=*/false);
          report_sample(*slot.task, slot.try_id, now.since(slot.start), false, false);
        }
      }
    }
  }

  void flush_loop() {
    std::unique_lock lock(flush_mutex);
    for (;;) {
      flush_cv.wait(lock, [&] { return flush_armed || flush_stop; });
      if (flush_stop) return;
      flush_cv.wait_for(lock, kFlushAfter, [&] { return flush_stop; });
      flush_armed = false;
      flush_wanted.store(false, std::memory_order_relaxed);
      lock.unlock();
      std::vector<Completion> due;
      std::vector<Launch> requeue;
      const auto now = Clock::now();
      bool pending = false;
      for (int i = 0; i < max_threads; ++i) {
        auto& slot = slots[i];
        std::lock_guard slot_lock(slot.mutex);
        if (slot.abandoned) continue;
        if (!slot.done.empty()) {
          if (now - slot.done_since >= kFlushAfter) {
            std::move(slot.done.begin(), slot.done.end(), std::back_inserter(due));
            slot.done.clear();
          } else {
            pending = true;
          }
        }
        if (slot.task && slot.next < slot.batch.size()) {
          if (now - slot.started >= kFlushAfter) {
            std::move(slot.batch.begin() + static_cast<std::ptrdiff_t>(slot.next), slot.batch.end(),
                      std::back_inserter(requeue));
            slot.next = slot.batch.size();
          } else {
            pending = true;
          }
        }
      }
      if (!requeue.empty()) {
        {
          std::lock_guard queue_lock(mutex);
          if (stopping) {
            for (auto& l : requeue) due.push_back(closed_completion(l));
          } else {
            queue.insert(queue.begin(), std::make_move_iterator(requeue.begin()),
                         std::make_move_iterator(requeue.end()));
            queued.store(queue.size(), std::memory_order_release);
          }
        }
        cv.notify_all();
      }
      if (!due.empty()) sink->post(std::move(due));
      lock.lock();
      if (pending) flush_armed = true;
    }
  }

  // A worker that starts a task while it holds completions or launches asks the flusher to watch; one
  // atomic load per task while the flusher is already watching.
  void want_flush() {
    if (flush_wanted.load(std::memory_order_relaxed)) return;
    flush_wanted.store(true, std::memory_order_relaxed);
    {
      std::lock_guard lock(flush_mutex);
      flush_armed = true;
    }
    flush_cv.notify_one();
  }

  static Outcome closed_outcome() {
    return Outcome::failure(
        std::make_exception_ptr(DataFlowKernelClosed("the executor was shut down before the task started")));
  }
  static Completion closed_completion(Launch& l) { return Completion{std::move(l.task), l.try_id, closed_outcome()}; }

  // Takes a share of the queue into the thread's slot; false when stopping and nothing is left.
  bool take_share(Slot& slot) {
    std::vector<Launch> taken;
    {
      std::unique_lock lock(mutex);
      while (queue.empty() && !stopping) {
        ++sleeping;
        cv.wait(lock);
        --sleeping;
      }
      if (queue.empty()) return false;  // stopping and nothing left
      const std::size_t share =
          std::clamp<std::size_t>(queue.size() / static_cast<std::size_t>(max_threads), 1, kMaxBatch);
      taken.reserve(share);
      for (std::size_t i = 0; i < share; ++i) {
        taken.push_back(std::move(queue.front()));
        queue.pop_front();
      }
      queued.store(queue.size(), std::memory_order_release);
      // Others may take the rest.
      if (!queue.empty() && sleeping > 0) cv.notify_one();
    }
    const auto now = Clock::now();
    std::lock_guard lock(slot.mutex);
    slot.batch = std::move(taken);
    slot.next = 0;
    slot.started = now;
    return true;
  }

  // Runs one launch of the slot's batch; false when the slot was abandoned meanwhile (then this
  // thread must return at once, touching nothing of the executor's owner or sink).
  bool run_next(Slot& slot) {
    Launch launch;
    bool holding;
    {
      std::lock_guard lock(slot.mutex);
      launch = std::move(slot.batch[slot.next++]);
      holding = !slot.done.empty() || slot.next < slot.batch.size();
      // Published before the check: the kernel makes a task final before it asks for the try
      // to be stopped, so either cancel() finds this slot or this thread sees the task final.
      slot.task = launch.task.get();
      slot.try_id = launch.try_id;
      slot.body = launch.body.get();
    }
    TaskRecord& task = *launch.task;
    Outcome outcome;
    bool ran = false;
    detail::ProcUsage start;
    if (stopping.load()) {
      outcome = closed_outcome();
    } else if (task.try_id() != launch.try_id || task.done()) {
      // The kernel already gave up on this try (walltime, cancel): do not run it.
      outcome = Outcome::failure(std::make_exception_ptr(AppTimeout("try abandoned before it started")));
    } else {
      if (holding) want_flush();
      owner->report_running(task, launch.try_id);
      if (sampling) {
        start = detail::this_thread_usage();
        {
          std::lock_guard slot_lock(slot.mutex);
          static thread_local const pid_t tid = static_cast<pid_t>(::syscall(SYS_gettid));
          slot.tid = tid;
          slot.start = start;
          slot.first_sample = std::chrono::system_clock::now();
        }
      }
      TaskContext ctx(task, launch.try_id, launch.inputs);
      try {
        outcome = launch.body->run(ctx);
      } catch (...) {
        outcome = Outcome::failure(std::current_exception());
      }
      ran = true;
    }
    std::vector<Completion> due;
    bool abandoned, last_of_share = false;
    {
      // One lock for the end of the try: shutdown() abandons a slot under it, so past the check
      // the executor (owner, observers, sink) is still there for what follows.
      std::lock_guard lock(slot.mutex);
      abandoned = slot.abandoned;  // then shutdown() already failed this try: touch nothing more
      if (!abandoned) {
        if (ran) {
          owner->report_running_ended(task, launch.try_id);
          if (sampling) {
            report_first_sample(slot, /*at_end=*/true);
            report_sample(task, launch.try_id, detail::this_thread_usage().since(start), false, true);
          }
        }
        slot.task = nullptr;
        slot.body = nullptr;
        slot.tid = 0;
        const auto now = Clock::now();
        slot.started = now;  // the next task of the share starts now
        if (slot.done.empty()) slot.done_since = now;
        slot.done.push_back(Completion{std::move(launch.task), launch.try_id, std::move(outcome)});
        last_of_share = slot.next == slot.batch.size();
        if (last_of_share || now - slot.done_since > kReportAfter) due.swap(slot.done);
      }
    }
    // Dropped once the slot no longer names the body (cancel() may interrupt it until then), and
    // outside the lock: dropping a body may run arbitrary code (Python's __del__).
    launch.body.reset();
    launch.inputs.clear();
    if (abandoned) {
      release_thread_resources();
      return false;
    }
    if (!due.empty()) {
      if (last_of_share) release_thread_resources();
      sink->post(std::move(due));
    }
    return true;
  }

  void worker(std::size_t index) {
    set_engine_thread(true);
    Slot& slot = slots[index];
    while (take_share(slot)) {
      for (;;) {
        {
          std::lock_guard lock(slot.mutex);
          if (slot.next == slot.batch.size()) break;
        }
        if (!run_next(slot)) return;  // abandoned by shutdown()
      }
      release_thread_resources();
    }
    {
      std::lock_guard lock(slot.mutex);
      slot.exited = true;
    }
    std::lock_guard lock(mutex);
    ++exited;
    exited_cv.notify_all();
  }

  // shutdown() after the grace period: the tries still running are failed, the rest of the
  // stuck threads' shares refused and their held completions posted; those threads are left
  // to finish or to die with the process, and touch nothing of ours when they return.
  void abandon_stuck_threads() {
    std::vector<Completion> out;
    for (int i = 0; i < max_threads; ++i) {
      auto& slot = slots[i];
      std::lock_guard lock(slot.mutex);
      if (slot.exited) continue;
      slot.abandoned = true;
      std::move(slot.done.begin(), slot.done.end(), std::back_inserter(out));
      slot.done.clear();
      for (std::size_t k = slot.next; k < slot.batch.size(); ++k) out.push_back(closed_completion(slot.batch[k]));
      slot.next = slot.batch.size();
      if (slot.task) {
        if (sampling) report_first_sample(slot, /*at_end=*/true);  // the only sample it will have
        out.push_back(Completion{
            std::const_pointer_cast<TaskRecord>(slot.task->shared_from_this()), slot.try_id,
            Outcome::failure(std::make_exception_ptr(DataFlowKernelClosed(
                fmt::format("the task was still running {:g} s after the executor began to shut down and could "
                            "not be interrupted: its thread was abandoned",
                            shutdown_grace.count()))))});
        slot.task = nullptr;
        slot.body = nullptr;
      }
    }
    if (!out.empty()) sink->post(std::move(out));
  }
};

ThreadPoolExecutor::ThreadPoolExecutor(int max_threads, std::string label, std::chrono::duration<double> shutdown_grace)
    : Executor(std::move(label)), impl_(std::make_shared<Impl>()) {
  if (max_threads < 1)
    throw ConfigurationError("ThreadPoolExecutor(max_threads=" + std::to_string(max_threads) + "): must be >= 1");
  if (!(shutdown_grace.count() >= 0) || !std::isfinite(shutdown_grace.count()))
    throw ConfigurationError(fmt::format("ThreadPoolExecutor(shutdown_grace={}): must be a finite number of seconds >= 0",
                                         shutdown_grace.count()));
  impl_->max_threads = max_threads;
  impl_->shutdown_grace = shutdown_grace;
}

ThreadPoolExecutor::~ThreadPoolExecutor() { shutdown(); }

int ThreadPoolExecutor::max_threads() const { return impl_->max_threads; }

void ThreadPoolExecutor::start(CompletionSink& sink) {
  auto& im = *impl_;
  std::lock_guard lock(im.mutex);
  if (im.sink) throw ConfigurationError("executor '" + label() + "' is already in use by a DataFlowKernel");
  im.sink = &sink;
  im.owner = this;
  if (auto interval = observers().resource_interval()) {
    im.sampling = true;
    im.sample_interval = *interval;
  }
  im.slots = std::make_unique<Impl::Slot[]>(im.max_threads);
  im.threads.reserve(im.max_threads);
  // The threads share the state: one abandoned by shutdown() may outlive this executor.
  for (int i = 0; i < im.max_threads; ++i)
    im.threads.emplace_back([impl = impl_, i] {
      detail::name_this_thread("pv-thread-" + std::to_string(i));
      impl->worker(static_cast<std::size_t>(i));
    });
  im.flusher = std::thread([this] {
    detail::name_this_thread("pv-flush");
    impl_->flush_loop();
  });
  if (im.sampling && im.sample_interval > 0)
    im.sampler = std::thread([this] {
      detail::name_this_thread("pv-sampler");
      impl_->sample_loop();
    });
}

void ThreadPoolExecutor::submit(std::span<Launch> launches) {
  auto& im = *impl_;
  std::vector<Completion> refused;
  bool wake;
  {
    std::lock_guard lock(im.mutex);
    if (im.stopping) {
      for (auto& l : launches) refused.push_back(Impl::closed_completion(l));
    } else {
      for (auto& l : launches) im.queue.push_back(std::move(l));
      im.queued.store(im.queue.size(), std::memory_order_release);
    }
    wake = im.sleeping > 0;
  }
  if (!refused.empty()) im.sink->post(std::move(refused));
  if (wake) im.cv.notify_one();
}

void ThreadPoolExecutor::cancel(const TaskRecordPtr& task, std::uint32_t try_id, StopReason reason) {
  auto& im = *impl_;
  if (!im.slots) return;
  // interrupt() must not block, so calling it under the slot's lock is safe; the body stays
  // alive because the running thread holds its Launch until it clears its slot.
  for (int i = 0; i < im.max_threads; ++i) {
    auto& slot = im.slots[i];
    std::lock_guard lock(slot.mutex);
    if (slot.task == task.get() && slot.try_id == try_id && slot.body) slot.body->interrupt(reason);
  }
}

void ThreadPoolExecutor::shutdown() {
  auto& im = *impl_;
  std::vector<Completion> refused;
  {
    std::lock_guard lock(im.mutex);
    if (im.stopped || !im.sink) {
      im.stopped = true;
      return;
    }
    im.stopping = true;
    for (auto& l : im.queue) refused.push_back(Impl::closed_completion(l));
    im.queue.clear();
    im.queued.store(0);
  }
  if (!refused.empty()) im.sink->post(std::move(refused));
  im.cv.notify_all();
  // Running tries are stopped where they can be (their processes killed, Python code
  // interrupted); plain C++ callables run to their end. A try that cannot be stopped (Python
  // blocked in an uninterruptible call) is given up after the grace period: cleanup never hangs.
  for (int i = 0; i < im.max_threads; ++i) {
    auto& slot = im.slots[i];
    std::lock_guard lock(slot.mutex);
    if (slot.body) slot.body->interrupt(StopReason::shutdown);
  }
  bool all_exited;
  {
    std::unique_lock lock(im.mutex);
    all_exited = im.exited_cv.wait_for(lock, im.shutdown_grace, [&] { return im.exited == im.max_threads; });
  }
  if (!all_exited) im.abandon_stuck_threads();
  for (int i = 0; i < im.max_threads; ++i) {
    bool exited;
    {
      std::lock_guard lock(im.slots[i].mutex);
      exited = im.slots[i].exited;
    }
    if (exited)
      im.threads[i].join();
    else
      im.threads[i].detach();
  }
  {
    std::lock_guard lock(im.flush_mutex);
    im.flush_stop = true;
  }
  im.flush_cv.notify_all();
  im.flusher.join();
  if (im.sampler.joinable()) {
    {
      std::lock_guard lock(im.sampler_mutex);
      im.sampler_stop = true;
    }
    im.sampler_cv.notify_all();
    im.sampler.join();
  }
  std::lock_guard lock(im.mutex);
  im.stopped = true;
}

}  // namespace pervade
