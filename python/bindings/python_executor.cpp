// pervade._native.python_executor: the engine's side of an executor written in Python (a subclass
// of Parsl's ParslExecutor). The kernel's reactor only queues launches; a thread of this executor
// takes the GIL, builds each try's call with its dependencies' values and hands it to the Python
// executor's submit(), and the done-callback of the future it returns posts the completion.
#include <nanobind/nanobind.h>
#include <nanobind/stl/string.h>

#include <chrono>
#include <condition_variable>
#include <deque>
#include <map>
#include <mutex>
#include <optional>
#include <thread>
#include <utility>
#include <vector>

#include <fmt/format.h>

#include "bindings.hpp"
#include "util/thread_name.hpp"

namespace nb = nanobind;

namespace pervade::bindings {
namespace {

Outcome closed(const std::string& why) { return Outcome::failure(stop_error(StopReason::shutdown, why)); }

// What the executor, its launch thread and the done-callbacks share (the callbacks may outlive the
// executor: a Python future keeps its callback). Every member is guarded by `mutex`, but the
// Python callables, which only the thread that starts the executor and then the launch thread use.
struct State : std::enable_shared_from_this<State> {
  State(nb::handle start_fn, nb::handle submit_fn, nb::handle shutdown_fn, double grace)
      : start(std::make_unique<OwnedPython>(start_fn)),
        submit(std::make_unique<OwnedPython>(submit_fn)),
        shutdown(std::make_unique<OwnedPython>(shutdown_fn)),
        grace(grace) {}

  using Key = std::pair<const TaskRecord*, std::uint32_t>;  // one try
  // A try taken by the launch thread and not reported yet.
  struct Entry {
    TaskRecordPtr task;
    std::shared_ptr<TaskBody> body;
    std::unique_ptr<OwnedPython> future;  // once the Python submit() returned it
  };

  // Released once Python's shutdown() returned: they hold the Python executor, which may hold
  // futures whose callbacks hold this State (a cycle Python's collector cannot see).
  std::unique_ptr<OwnedPython> start, submit, shutdown;
  const std::chrono::duration<double> grace;

  std::mutex mutex;
  std::condition_variable work_cv;  // the launch thread waits for launches and stops
  std::condition_variable done_cv;  // shutdown() waits for the tries and the launch thread
  CompletionSink* sink = nullptr;
  std::deque<Launch> queue;
  std::vector<Key> stops;           // tries the kernel gave up on: their futures are cancelled
  std::map<Key, Entry> entries;
  int posting = 0;                  // entries taken and not posted yet
  bool stopping = false;            // shutdown() began: nothing more goes to Python's submit()
  bool thread_done = false;         // the launch thread called Python's shutdown() and ended
  std::thread thread;

  void run();
  void launch(Launch& l);
  void cancel(const Key& key);
  void report(const Key& key, nb::handle future);
  std::optional<Entry> take(const Key& key);
  void post(Entry& entry, std::uint32_t try_id, Outcome outcome);
  void finish(const Key& key, Outcome outcome) {
    if (auto entry = take(key)) post(*entry, key.second, std::move(outcome));
  }
};

void State::run() {
  set_engine_thread(true);  // apps called inside submit() never wait for capacity
  for (;;) {
    std::vector<Launch> batch;
    std::vector<Key> stopped;
    bool stop;
    {
      std::unique_lock lock(mutex);
      work_cv.wait(lock, [&] { return !queue.empty() || !stops.empty() || stopping; });
      batch.assign(std::make_move_iterator(queue.begin()), std::make_move_iterator(queue.end()));
      queue.clear();
      // Listed at once, so that shutdown() finds every try this thread holds, even if it hangs.
      for (auto& l : batch) entries.emplace(Key{l.task.get(), l.try_id}, Entry{l.task, l.body, nullptr});
      stopped.swap(stops);
      stop = stopping;
    }
    if (python_exiting()) {
      for (auto& l : batch) finish(Key{l.task.get(), l.try_id}, closed("Python is exiting"));
    } else if (!batch.empty() || !stopped.empty()) {
      hold_engine_gil();
      for (auto& l : batch) launch(l);
      for (auto& key : stopped) cancel(key);
      batch.clear();  // the tries' references go with the GIL held
      release_engine_gil();
    }
    if (stop) break;
  }
  if (!python_exiting()) {
    hold_engine_gil();
    try {
      nb::borrow(shutdown->get())();
    } catch (nb::python_error& e) {  // pervade.executors logs it; this is a last resort
      e.discard_as_unraisable("pervade: shutting down an executor written in Python");
    }
    start.reset();
    submit.reset();
    shutdown.reset();
    release_engine_gil();
  }
  std::lock_guard lock(mutex);
  thread_done = true;
  done_cv.notify_all();
}

// GIL held. Hands one try to Python's submit(); it is reported exactly once, by finish() here
// or by the future's done-callback, unless shutdown() gave up on it first.
void State::launch(Launch& l) {
  const Key key{l.task.get(), l.try_id};
  bool closing;
  {
    std::lock_guard lock(mutex);
    if (!entries.count(key)) return;  // shutdown() gave up on it
    closing = stopping;
  }
  if (closing) return finish(key, closed("the executor was shut down before the task was submitted to it"));
  if (l.task->try_id() != l.try_id || l.task->done())  // the kernel gave up on this try (walltime, cancel)
    return finish(key, Outcome::failure(stop_error(StopReason::cancelled, "the try was given up before it was submitted")));
  try {
    TaskContext ctx(*l.task, l.try_id, l.inputs);
    nb::tuple call = python_call(*l.body, ctx);
    nb::object future = nb::borrow(submit->get())(call[0], call[1], call[2], call[3], call[4]);
    {
      std::lock_guard lock(mutex);
      auto it = entries.find(key);
      if (it == entries.end()) return;  // shutdown() gave up on it while submit() ran
      it->second.future = std::make_unique<OwnedPython>(future);
    }
    // Called at once if the future is done already, else on the thread that completes it.
    future.attr("add_done_callback")(
        nb::cpp_function([self = shared_from_this(), key](nb::handle f) { self->report(key, f); }));
  } catch (nb::python_error& e) {  // submit() raised: the try fails with its exception, as in Parsl
    e.restore();
    finish(key, Outcome::failure(take_python_error()));
  } catch (...) {
    finish(key, Outcome::failure(std::current_exception()));
  }
}

// GIL held. The kernel failed the try already; cancelling its future stops it if it has not started.
void State::cancel(const Key& key) {
  nb::object future;
  {
    std::lock_guard lock(mutex);
    auto it = entries.find(key);
    if (it == entries.end() || !it->second.future) return;
    future = nb::borrow(it->second.future->get());
  }
  try {
    future.attr("cancel")();
  } catch (nb::python_error& e) {
    e.discard_as_unraisable("pervade: cancelling a try's future on an executor written in Python");
  }
}

// GIL held (a done-callback, on any thread).
void State::report(const Key& key, nb::handle future) {
  auto entry = take(key);
  if (!entry) return;
  Outcome outcome;
  try {
    outcome = python_success(*entry->body, future.attr("result")());
  } catch (nb::python_error& e) {  // the task's exception, or CancelledError
    e.restore();
    outcome = Outcome::failure(take_python_error());
  } catch (...) {
    outcome = Outcome::failure(std::current_exception());
  }
  post(*entry, key.second, std::move(outcome));
}

std::optional<State::Entry> State::take(const Key& key) {
  std::lock_guard lock(mutex);
  auto it = entries.find(key);
  if (it == entries.end()) return std::nullopt;
  std::optional<Entry> entry(std::move(it->second));
  entries.erase(it);
  ++posting;  // shutdown() waits until it is posted: the sink must outlive the post
  return entry;
}

void State::post(Entry& entry, std::uint32_t try_id, Outcome outcome) {
  std::vector<Completion> done;
  done.push_back(Completion{std::move(entry.task), try_id, std::move(outcome)});
  sink->post(std::move(done));
  std::lock_guard lock(mutex);
  --posting;
  done_cv.notify_all();
}

// Called by the kernel: start/submit/cancel on the thread that made it and then its reactor,
// shutdown on the thread that cleans it up (any thread; it waits without the GIL).
class PythonExecutor final : public Executor {
 public:
  PythonExecutor(const std::string& label, nb::handle start, nb::handle submit, nb::handle shutdown, double grace)
      : Executor(label), state_(std::make_shared<State>(start, submit, shutdown, grace)) {}
  ~PythonExecutor() override { shutdown(); }

  // Calls Python's start() (its exception fails load()), then starts the launch thread.
  void start(CompletionSink& sink) override {
    {
      nb::gil_scoped_acquire gil;
      nb::borrow(state_->start->get())();
    }
    std::lock_guard lock(state_->mutex);
    state_->sink = &sink;
    state_->thread = std::thread([state = state_] {
      detail::name_this_thread("pv-pyexec");
      state->run();
    });
  }

  void submit(std::span<Launch> launches) override {
    State& s = *state_;
    std::vector<Completion> refused;
    {
      std::lock_guard lock(s.mutex);
      for (auto& l : launches) {
        if (s.stopping)
          refused.push_back(Completion{std::move(l.task), l.try_id, closed("the executor was shut down")});
        else
          s.queue.push_back(std::move(l));
      }
    }
    if (!refused.empty()) s.sink->post(std::move(refused));
    s.work_cv.notify_one();
  }

  void cancel(const TaskRecordPtr& task, std::uint32_t try_id, StopReason) override {
    {
      std::lock_guard lock(state_->mutex);
      if (state_->stopping) return;
      state_->stops.emplace_back(task.get(), try_id);
    }
    state_->work_cv.notify_one();
  }

  // Queued launches fail with DataFlowKernelClosed; the launch thread calls Python's shutdown();
  // tries submitted to Python are waited for until shutdown_grace has passed since the start,
  // then fail with DataFlowKernelClosed (a stuck launch thread is left to end with the process).
  void shutdown() override {
    State& s = *state_;
    std::vector<Completion> refused;
    {
      std::lock_guard lock(s.mutex);
      if (s.stopping || !s.thread.joinable()) return;
      s.stopping = true;
      for (auto& l : s.queue)
        refused.push_back(Completion{std::move(l.task), l.try_id,
                                     closed("the executor was shut down before the task was submitted to it")});
      s.queue.clear();
    }
    s.work_cv.notify_all();
    if (!refused.empty()) s.sink->post(std::move(refused));
    std::optional<nb::gil_scoped_release> unlocked;  // the launch thread and the callbacks need the GIL
    if (!python_exiting() && PyGILState_Check()) unlocked.emplace();
    std::map<State::Key, State::Entry> given_up;
    bool thread_done;
    {
      std::unique_lock lock(s.mutex);
      s.done_cv.wait_for(lock, s.grace, [&] { return s.thread_done && s.entries.empty(); });
      given_up.swap(s.entries);
      s.done_cv.wait(lock, [&] { return s.posting == 0; });  // a done-callback posting right now
      thread_done = s.thread_done;
    }
    if (!given_up.empty()) {
      std::vector<Completion> out;
      for (auto& [key, entry] : given_up)
        out.push_back(Completion{std::move(entry.task), key.second,
                                 closed(fmt::format("the task was still unfinished {:g} s after the executor '{}' began "
                                                    "to shut down: it was given up",
                                                    s.grace.count(), label()))});
      s.sink->post(std::move(out));
    }
    if (thread_done)
      s.thread.join();
    else
      s.thread.detach();  // stuck in Python; it touches nothing but State (kept alive by it)
  }

 private:
  std::shared_ptr<State> state_;
};

}  // namespace

ExecutorPtr make_python_executor(const std::string& label, nb::handle start, nb::handle submit, nb::handle shutdown,
                                 double shutdown_grace) {
  return std::make_shared<PythonExecutor>(label, start, submit, shutdown, shutdown_grace);
}

}  // namespace pervade::bindings
