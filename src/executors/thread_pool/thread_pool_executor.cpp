#include "pervade/thread_pool_executor.hpp"

#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <atomic>
#include <deque>
#include <mutex>
#include <thread>

#include <unistd.h>
#include <sys/syscall.h>

#include "observe/proc_usage.hpp"
#include "pervade/errors.hpp"
#include "util/spin_wait.hpp"
#include "util/thread_name.hpp"

namespace pervade {

namespace {
// A worker takes a share of the queue at once (fewer lock round trips for tiny tasks) but
// reports completions as soon as a task has run for a while, so long tasks are not delayed.
constexpr std::size_t kMaxBatch = 64;
constexpr auto kReportAfter = std::chrono::microseconds(500);
}  // namespace

struct ThreadPoolExecutor::Impl {
  int max_threads;
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
  // What each thread is running, so cancel() can interrupt it. One lock per thread keeps
  // this off the queue's lock.
  struct Slot {
    std::mutex mutex;
    const TaskRecord* task = nullptr;
    std::uint32_t try_id = 0;
    TaskBody* body = nullptr;
    pid_t tid = 0;               // resource sampling: the thread running the task
    detail::ProcUsage start{};   // and its usage when the task started
    void set(const TaskRecord* t, std::uint32_t id, TaskBody* b) {
      std::lock_guard lock(mutex);
      task = t;
      try_id = id;
      body = b;
    }
  };
  std::unique_ptr<Slot[]> slots;

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
                     bool last) const {
    ResourceSample s{};
    s.time = std::chrono::system_clock::now();
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

  void sample_loop() {
    const auto period = std::chrono::duration<double>(sample_interval);
    std::unique_lock lock(sampler_mutex);
    while (!sampler_cv.wait_for(lock, period, [&] { return sampler_stop; })) {
      for (int i = 0; i < max_threads; ++i) {
        auto& slot = slots[i];
        std::lock_guard slot_lock(slot.mutex);  // the task stays alive while it is in its slot
        detail::ProcUsage now;
        if (slot.task && slot.tid && detail::read_usage(::getpid(), slot.tid, &now))
          report_sample(*slot.task, slot.try_id, now.since(slot.start), false, false);
      }
    }
  }

  static Completion closed_completion(Launch& l) {
    return Completion{std::move(l.task), l.try_id,
                      Outcome::failure(std::make_exception_ptr(
                          DataFlowKernelClosed("the executor was shut down before the task started")))};
  }

  void worker(std::size_t index) {
    set_engine_thread(true);
    std::vector<Launch> batch;
    std::vector<Completion> done;
    for (;;) {
      detail::spin_briefly([&] { return queued.load(std::memory_order_acquire) > 0 || stopping.load(); });
      {
        std::unique_lock lock(mutex);
        while (queue.empty() && !stopping) {
          ++sleeping;
          cv.wait(lock);
          --sleeping;
        }
        if (queue.empty()) return;  // stopping and nothing left
        const std::size_t share = std::clamp<std::size_t>(queue.size() / static_cast<std::size_t>(max_threads), 1, kMaxBatch);
        for (std::size_t i = 0; i < share; ++i) {
          batch.push_back(std::move(queue.front()));
          queue.pop_front();
        }
        queued.store(queue.size(), std::memory_order_release);
        // Others may take the rest.
        if (!queue.empty() && sleeping > 0) cv.notify_one();
      }
      auto since_report = std::chrono::steady_clock::now();
      for (auto& launch : batch) {
        TaskRecord& task = *launch.task;
        if (stopping.load()) {
          done.push_back(closed_completion(launch));
          continue;
        }
        Outcome outcome;
        // Published before the check: the kernel makes a task final before it asks for the try
        // to be stopped, so either cancel() finds this slot or this thread sees the task final.
        slots[index].set(&task, launch.try_id, launch.body.get());
        if (task.try_id() != launch.try_id || task.done()) {
          // The kernel already gave up on this try (walltime, cancel): do not run it.
          slots[index].set(nullptr, 0, nullptr);
          outcome = Outcome::failure(std::make_exception_ptr(AppTimeout("try abandoned before it started")));
        } else {
          owner->report_running(task, launch.try_id);
          detail::ProcUsage start;
          if (sampling) {
            start = detail::this_thread_usage();
            {
              std::lock_guard slot_lock(slots[index].mutex);
              static thread_local const pid_t tid = static_cast<pid_t>(::syscall(SYS_gettid));
              slots[index].tid = tid;
              slots[index].start = start;
            }
            report_sample(task, launch.try_id, start.since(start), true, false);
          }
          TaskContext ctx(task, launch.try_id, launch.inputs);
          try {
            outcome = launch.body->run(ctx);
          } catch (...) {
            outcome = Outcome::failure(std::current_exception());
          }
          owner->report_running_ended(task, launch.try_id);
          if (sampling) {
            report_sample(task, launch.try_id, detail::this_thread_usage().since(start), false, true);
            std::lock_guard slot_lock(slots[index].mutex);
            slots[index].tid = 0;
          }
          slots[index].set(nullptr, 0, nullptr);
        }
        launch.body.reset();
        launch.inputs.clear();
        done.push_back(Completion{std::move(launch.task), launch.try_id, std::move(outcome)});
        const auto now = std::chrono::steady_clock::now();
        if (now - since_report > kReportAfter) {
          sink->post(std::move(done));
          done.clear();
          since_report = now;
        }
      }
      batch.clear();
      release_thread_resources();
      if (!done.empty()) {
        sink->post(std::move(done));
        done.clear();
      }
    }
  }
};

ThreadPoolExecutor::ThreadPoolExecutor(int max_threads, std::string label)
    : Executor(std::move(label)), impl_(std::make_unique<Impl>()) {
  if (max_threads < 1)
    throw ConfigurationError("ThreadPoolExecutor(max_threads=" + std::to_string(max_threads) + "): must be >= 1");
  impl_->max_threads = max_threads;
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
  for (int i = 0; i < im.max_threads; ++i)
    im.threads.emplace_back([this, i] {
      detail::name_this_thread("pv-thread-" + std::to_string(i));
      impl_->worker(static_cast<std::size_t>(i));
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
  // interrupted); plain C++ callables run to their end.
  if (im.slots) {
    for (int i = 0; i < im.max_threads; ++i) {
      auto& slot = im.slots[i];
      std::lock_guard lock(slot.mutex);
      if (slot.body) slot.body->interrupt(StopReason::shutdown);
    }
  }
  for (auto& t : im.threads)
    if (t.joinable()) t.join();
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
