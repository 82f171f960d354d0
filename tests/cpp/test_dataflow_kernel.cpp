// The DataFlowKernel end to end with real threads: typed C++ API, shell commands, failures,
// retries, walltime, cleanup. Waits are on futures (with timeouts), never on sleeps.
#include <gtest/gtest.h>

#include <atomic>
#include <condition_variable>
#include <filesystem>
#include <mutex>
#include <optional>
#include <fstream>
#include <thread>

#include "pervade/pervade.hpp"

using namespace pervade;
using namespace std::chrono_literals;

namespace {

std::filesystem::path temp_dir() {
  auto dir = std::filesystem::temp_directory_path() /
             ("pervade_dfk_" + std::to_string(::getpid()) + "_" +
              ::testing::UnitTest::GetInstance()->current_test_info()->name());
  std::filesystem::remove_all(dir);
  std::filesystem::create_directories(dir);
  return dir;
}

TEST(DataFlowKernel, ChainOfCallablesPassesValues) {
  DataFlowKernel dfk;
  auto a = dfk.submit([](int x) { return 2 * x; }, 21);
  auto b = dfk.submit([](int y, const std::string& s) { return s + std::to_string(y); }, a, std::string("v="));
  ASSERT_TRUE(b.wait_for(30s));
  EXPECT_EQ(b.get(), "v=42");
  EXPECT_EQ(b.state(), TaskState::exec_done);
}

TEST(DataFlowKernel, FanOutAndReduce) {
  DataFlowKernel dfk(Config{.executors = {std::make_shared<ThreadPoolExecutor>(4, "pool")}});
  std::vector<Future<long>> parts;
  for (long i = 0; i < 1000; ++i) parts.push_back(dfk.submit([](long v) { return v * v; }, i));
  long sum = 0;
  for (auto& p : parts) sum += p.get();
  EXPECT_EQ(sum, 332833500L);
}

TEST(DataFlowKernel, ExceptionTravelsThroughFutureAndDependents) {
  DataFlowKernel dfk;
  auto bad = dfk.submit([]() -> int { throw std::invalid_argument("no good"); });
  auto dep = dfk.submit([](int v) { return v + 1; }, bad);
  EXPECT_THROW(bad.get(), std::invalid_argument);
  EXPECT_THROW(dep.get(), DependencyError);
  EXPECT_EQ(dep.state(), TaskState::dep_fail);
}

TEST(DataFlowKernel, CountsTasksPerStateAndTimesThem) {
  DataFlowKernel dfk;
  auto bad = dfk.submit([]() -> int { throw std::invalid_argument("no good"); });
  auto dep = dfk.submit([](int v) { return v + 1; }, bad);
  auto dep2 = dfk.submit([](int v) { return v + 1; }, dep);
  auto good = dfk.submit([] { return 1; });
  EXPECT_NE(good.record()->time_invoked(), std::chrono::system_clock::time_point{});  // from submission on
  dfk.wait_for_current_tasks();
  EXPECT_EQ(dfk.tasks_in_state(TaskState::failed), 1);
  EXPECT_EQ(dfk.tasks_in_state(TaskState::dep_fail), 2);
  EXPECT_EQ(dfk.tasks_in_state(TaskState::exec_done), 1);
  for (auto s : {TaskState::pending, TaskState::launched, TaskState::running, TaskState::fail_retryable})
    EXPECT_EQ(dfk.tasks_in_state(s), 0) << static_cast<int>(s);
  EXPECT_LE(good.record()->time_invoked(), good.record()->time_returned());
  EXPECT_TRUE(dfk.wait_for_current_tasks(0s));
}

TEST(DataFlowKernel, RetriesEventuallySucceed) {
  std::atomic<int> calls{0};
  DataFlowKernel dfk(Config{.retries = 3});
  auto f = dfk.submit([&calls]() {
    if (calls.fetch_add(1) < 2) throw std::runtime_error("flaky");
    return 5;
  });
  EXPECT_EQ(f.get(), 5);
  EXPECT_EQ(calls.load(), 3);
  EXPECT_EQ(f.record()->fail_count(), 2);
}

TEST(DataFlowKernel, UnknownExecutorLabelFailsTheFutureAtLaunch) {
  DataFlowKernel dfk;
  auto f = dfk.submit(AppOptions{.executors = {"gpu"}}, [] { return 1; });
  try {
    f.get();
    FAIL() << "expected UnknownExecutor";
  } catch (const UnknownExecutor& e) {
    EXPECT_NE(std::string(e.what()).find("'gpu'"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("threads"), std::string::npos) << e.what();
  }
}

TEST(DataFlowKernel, DuplicateLabelsAreRejected) {
  EXPECT_THROW(DataFlowKernel(Config{.executors = {std::make_shared<ThreadPoolExecutor>(1, "x"),
                                                   std::make_shared<ThreadPoolExecutor>(1, "x")}}),
               ConfigurationError);
}

TEST(DataFlowKernel, ExecutorLabelsSelectExecutor) {
  DataFlowKernel dfk(Config{.executors = {std::make_shared<ThreadPoolExecutor>(1, "left"),
                                          std::make_shared<ThreadPoolExecutor>(1, "right")}});
  auto f = dfk.submit(AppOptions{.executors = {"right"}}, [] { return 1; });
  f.get();
  EXPECT_EQ(f.record()->executor_label(), "right");
}

TEST(DataFlowKernel, ShellCommandsChainThroughFiles) {
  auto dir = temp_dir();
  DataFlowKernel dfk;
  auto write = dfk.submit(Shell{"echo hello > " + (dir / "a.txt").string()});
  auto copy = dfk.submit(Shell{"tr a-z A-Z < a.txt > b.txt", {}, {}, dir.string()}, write);
  EXPECT_EQ(copy.get(), 0);
  std::ifstream in(dir / "b.txt");
  std::string line;
  std::getline(in, line);
  EXPECT_EQ(line, "HELLO");
}

TEST(DataFlowKernel, ShellFailureIsBashExitFailure) {
  DataFlowKernel dfk;
  auto f = dfk.submit(AppOptions{.name = "exits"}, Shell{"exit 3"});
  try {
    f.get();
    FAIL();
  } catch (const BashExitFailure& e) {
    EXPECT_EQ(e.exitcode(), 3);
    EXPECT_EQ(e.app_name(), "exits");
  }
}

TEST(DataFlowKernel, ShellWalltimeRaisesAppTimeoutAndKillsTheCommand) {
  auto dir = temp_dir();
  DataFlowKernel dfk;
  const auto marker = dir / "finished";
  auto f = dfk.submit(AppOptions{.walltime = 0.5s}, Shell{"sleep 20; touch " + marker.string()});
  ASSERT_TRUE(f.wait_for(15s));
  EXPECT_THROW(f.get(), AppTimeout);
  dfk.cleanup();  // joins the worker: the killed command has been reaped
  EXPECT_FALSE(std::filesystem::exists(marker));
}

TEST(DataFlowKernel, CancelFailsAPendingTaskAndItsDependentsButNotItsDependency) {
  DataFlowKernel dfk;
  std::atomic<bool> release{false};
  auto head = dfk.submit([&release] {
    while (!release.load()) std::this_thread::yield();
    return 1;
  });
  auto pending = dfk.submit([](int x) { return x + 1; }, head);
  auto after = dfk.submit([](int x) { return x + 1; }, pending);
  EXPECT_TRUE(dfk.cancel(pending.record()));
  ASSERT_TRUE(after.wait_for(15s));
  EXPECT_THROW(pending.get(), TaskCancelled);
  EXPECT_THROW(after.get(), DependencyError);
  release.store(true);
  EXPECT_EQ(head.get(), 1);
  EXPECT_FALSE(dfk.cancel(head.record()));  // finished
}

TEST(DataFlowKernel, CancelKillsARunningShellCommand) {
  auto dir = temp_dir();
  DataFlowKernel dfk;
  const auto started = dir / "started", marker = dir / "finished";
  auto f = dfk.submit(Shell{"touch " + started.string() + "; sleep 20; touch " + marker.string()});
  const auto deadline = std::chrono::steady_clock::now() + 15s;
  while (!std::filesystem::exists(started) && std::chrono::steady_clock::now() < deadline) std::this_thread::yield();
  ASSERT_TRUE(std::filesystem::exists(started));
  EXPECT_TRUE(dfk.cancel(f.record()));
  ASSERT_TRUE(f.wait_for(1s));  // failed at once, not when the command would have ended
  EXPECT_THROW(f.get(), TaskCancelled);
  const auto t0 = std::chrono::steady_clock::now();
  dfk.cleanup();  // joins the worker thread: the command was killed, not waited for
  EXPECT_LT(std::chrono::steady_clock::now() - t0, 10s);
  EXPECT_FALSE(std::filesystem::exists(marker));
}

// A body that runs until it is interrupted, and records why.
class StoppableBody final : public TaskBody {
 public:
  Outcome run(TaskContext&) override {
    runs.fetch_add(1);
    std::unique_lock lock(mutex);
    cv.wait(lock, [&] { return stopped; });
    return Outcome::failure(std::make_exception_ptr(Error("stopped")));
  }
  void interrupt(StopReason r) override {
    std::lock_guard lock(mutex);
    if (!reason) reason = r;  // the first stop; cleanup() may interrupt again before run() returns
    stopped = true;
    cv.notify_all();
  }
  std::atomic<int> runs{0};
  std::mutex mutex;
  std::condition_variable cv;
  bool stopped = false;
  std::optional<StopReason> reason;  // why it was first stopped
};

TaskRecordPtr submit_body(DataFlowKernel& dfk, std::shared_ptr<TaskBody> body) {
  TaskSpec spec;
  spec.body = std::move(body);
  spec.func_name = "stoppable";
  return dfk.submit(std::move(spec));
}

bool wait_state(const TaskRecordPtr& t, TaskState s) {
  const auto deadline = std::chrono::steady_clock::now() + 30s;
  while (t->state() != s && std::chrono::steady_clock::now() < deadline) std::this_thread::yield();
  return t->state() == s;
}

TEST(DataFlowKernel, CancelInterruptsARunningBodyWithReasonCancelled) {
  DataFlowKernel dfk;
  auto body = std::make_shared<StoppableBody>();
  Future<int> f(submit_body(dfk, body));
  ASSERT_TRUE(wait_state(f.record(), TaskState::running));
  EXPECT_TRUE(dfk.cancel(f));  // the typed convenience
  EXPECT_EQ(f.state(), TaskState::cancelled);
  EXPECT_THROW(f.get(), TaskCancelled);
  dfk.cleanup();  // joins the thread: the body has returned
  std::lock_guard lock(body->mutex);
  ASSERT_TRUE(body->reason.has_value());
  EXPECT_EQ(*body->reason, StopReason::cancelled) << "stopped as if for walltime";
  EXPECT_FALSE(dfk.cancel(f));
}

TEST(DataFlowKernel, CancelOfATryQueuedOnTheExecutorNeverRunsIt) {
  DataFlowKernel dfk(Config{.executors = {std::make_shared<ThreadPoolExecutor>(1, "one")}});
  auto blocker = std::make_shared<StoppableBody>();
  auto queued = std::make_shared<StoppableBody>();
  auto first = submit_body(dfk, blocker);
  ASSERT_TRUE(wait_state(first, TaskState::running));
  auto second = submit_body(dfk, queued);  // handed to the executor, waits for its only thread
  ASSERT_TRUE(wait_state(second, TaskState::launched));
  EXPECT_TRUE(dfk.cancel(second));
  blocker->interrupt(StopReason::walltime);  // frees the thread
  dfk.wait_for_current_tasks();
  dfk.cleanup();
  EXPECT_EQ(queued->runs.load(), 0);
  EXPECT_EQ(second->state(), TaskState::cancelled);
}

// A body that ignores interrupts until the test releases it, as Python code blocked in a C call.
class DeafBody final : public TaskBody {
 public:
  Outcome run(TaskContext&) override {
    running.store(true);
    std::unique_lock lock(mutex);
    cv.wait(lock, [&] { return released; });
    returned.store(true);
    return Outcome::success(1);
  }
  void release() {
    std::lock_guard lock(mutex);
    released = true;
    cv.notify_all();
  }
  std::atomic<bool> running{false}, returned{false};
  std::mutex mutex;
  std::condition_variable cv;
  bool released = false;
};

TEST(DataFlowKernel, CleanupAbandonsATryThatCannotBeInterruptedAfterTheGrace) {
  auto body = std::make_shared<DeafBody>();
  std::optional<DataFlowKernel> dfk(std::in_place,
                                    Config{.executors = {std::make_shared<ThreadPoolExecutor>(2, "pool", 100ms)}});
  auto stuck = submit_body(*dfk, body);
  auto fine = dfk->submit([] { return 7; });
  ASSERT_TRUE(fine.wait_for(30s));
  const auto deadline = std::chrono::steady_clock::now() + 30s;
  while (!body->running.load() && std::chrono::steady_clock::now() < deadline) std::this_thread::yield();
  ASSERT_TRUE(body->running.load());
  dfk->cleanup();  // returns after the grace instead of waiting for the body
  EXPECT_EQ(stuck->state(), TaskState::failed);
  EXPECT_THROW(std::rethrow_exception(stuck->error()), DataFlowKernelClosed);
  dfk.reset();     // the kernel and the executor are gone; the abandoned thread still runs
  body->release();  // and returns into state it shares with nobody: nothing is posted or reported
  while (!body->returned.load() && std::chrono::steady_clock::now() < deadline) std::this_thread::yield();
  EXPECT_TRUE(body->returned.load());
}

TEST(DataFlowKernel, CleanupWithTasksInTheThreadsSharesEndsEveryTask) {
  // Threads take shares of the queue; cleanup() right after a burst refuses what they have not
  // started. Every task must end, each with its own record (a refused one once lost its record).
  std::vector<Future<int>> futures;
  {
    DataFlowKernel dfk(Config{.executors = {std::make_shared<ThreadPoolExecutor>(2, "pool")}});
    auto work = [](int v) {  // long enough that cleanup() finds threads half way through their shares
      volatile int x = 0;
      for (int k = 0; k < 20000; ++k) x = x + k;
      return v;
    };
    for (int i = 0; i < 20000; ++i) futures.push_back(dfk.submit(work, i));
    dfk.cleanup();
  }
  for (auto& f : futures) {
    ASSERT_TRUE(f.wait_for(0s));
    EXPECT_TRUE(f.state() == TaskState::exec_done || f.state() == TaskState::failed) << to_string(f.state());
  }
}

TEST(DataFlowKernel, SubmitWaitsWhileMaxUnfinishedTasksAreUnfinished) {
  DataFlowKernel dfk(Config{.executors = {std::make_shared<ThreadPoolExecutor>(4, "pool")}, .max_unfinished_tasks = 2});
  std::vector<std::shared_ptr<StoppableBody>> bodies{std::make_shared<StoppableBody>(),
                                                     std::make_shared<StoppableBody>()};
  for (auto& b : bodies) submit_body(dfk, b);
  EXPECT_FALSE(dfk.wait_for_capacity(0s));
  std::atomic<bool> returned{false};
  std::thread submitter([&] {
    dfk.submit([] { return 1; });
    returned.store(true);
  });
  const auto deadline = std::chrono::steady_clock::now() + 30s;
  while (dfk.waiting_submitters() == 0 && std::chrono::steady_clock::now() < deadline) std::this_thread::yield();
  ASSERT_EQ(dfk.waiting_submitters(), 1u);
  EXPECT_FALSE(returned.load()) << "the third submit returned while two tasks were unfinished";
  EXPECT_EQ(dfk.outstanding_tasks(), 2u);
  bodies[0]->interrupt(StopReason::walltime);  // one task finishes
  submitter.join();
  EXPECT_TRUE(returned.load());
  bodies[1]->interrupt(StopReason::walltime);
  dfk.wait_for_current_tasks();
  EXPECT_TRUE(dfk.wait_for_capacity(0s));
}

TEST(DataFlowKernel, BackPressureAlsoBoundsAFrontEndsDeliveryBacklog) {
  std::vector<std::size_t> asked;  // the limits the front end was asked about
  bool backlog_small = false;
  const DataFlowKernel::BacklogBelow backlog_below = [&](std::size_t limit, std::chrono::duration<double>) {
    asked.push_back(limit);
    return backlog_small;
  };
  DataFlowKernel limited(Config{.executors = {std::make_shared<ThreadPoolExecutor>(1, "pool")}, .max_unfinished_tasks = 3});
  EXPECT_FALSE(limited.wait_for_capacity(0s, backlog_below)) << "the kernel has room but the backlog is full";
  backlog_small = true;
  EXPECT_TRUE(limited.wait_for_capacity(0s, backlog_below));
  EXPECT_EQ(asked, (std::vector<std::size_t>{3, 3}));

  DataFlowKernel unlimited(Config{.executors = {std::make_shared<ThreadPoolExecutor>(1, "pool")}});
  backlog_small = false;
  EXPECT_TRUE(unlimited.wait_for_capacity(0s, backlog_below));
  EXPECT_EQ(asked.size(), 2u) << "without a limit the backlog is not asked about";
}

TEST(DataFlowKernel, SubmitFromATaskBodyIsNotHeldBackByTheLimit) {
  // With a limit of 1 the outer task fills the kernel: a nested submit that waited would deadlock.
  DataFlowKernel dfk(Config{.max_unfinished_tasks = 1});
  auto outer = dfk.submit([&dfk] { return dfk.submit([] { return 20; }).get() + 1; });
  ASSERT_TRUE(outer.wait_for(60s));
  EXPECT_EQ(outer.get(), 21);
}

TEST(DataFlowKernel, CleanupReleasesAWaitingSubmitter) {
  auto dfk = std::make_unique<DataFlowKernel>(Config{.max_unfinished_tasks = 1});
  auto body = std::make_shared<StoppableBody>();
  submit_body(*dfk, body);
  std::atomic<bool> closed_error{false};
  std::thread submitter([&] {
    try {
      dfk->submit([] { return 1; });
    } catch (const DataFlowKernelClosed&) {
      closed_error.store(true);
    }
  });
  const auto deadline = std::chrono::steady_clock::now() + 30s;
  while (dfk->waiting_submitters() == 0 && std::chrono::steady_clock::now() < deadline) std::this_thread::yield();
  ASSERT_EQ(dfk->waiting_submitters(), 1u);
  dfk->cleanup();  // interrupts the running body (StopReason::shutdown), wakes the submitter
  submitter.join();
  EXPECT_TRUE(closed_error.load());
}

TEST(DataFlowKernel, CallableWalltimeFailsTheFutureOnTime) {
  DataFlowKernel dfk;
  std::atomic<bool> release{false};
  auto f = dfk.submit(AppOptions{.walltime = 0.2s}, [&release] {
    while (!release.load()) std::this_thread::yield();
    return 1;
  });
  ASSERT_TRUE(f.wait_for(15s)) << "walltime must fail the future even if the callable keeps running";
  EXPECT_THROW(f.get(), AppTimeout);
  release.store(true);
}

TEST(DataFlowKernel, WaitForCurrentTasksAndCallbacks) {
  DataFlowKernel dfk;
  std::atomic<int> callbacks{0};
  std::vector<Future<int>> fs;
  for (int i = 0; i < 100; ++i) {
    fs.push_back(dfk.submit([i] { return i; }));
    dfk.add_done_callback(fs.back().record(), [&callbacks](const TaskRecordPtr& r) {
      if (r->state() == TaskState::exec_done) callbacks.fetch_add(1);
    });
  }
  dfk.wait_for_current_tasks();
  EXPECT_EQ(dfk.outstanding_tasks(), 0u);
  for (auto& f : fs) EXPECT_TRUE(f.done());
  dfk.cleanup();  // callbacks run on the kernel thread, all before it stops
  EXPECT_EQ(callbacks.load(), 100);
}

TEST(DataFlowKernel, ExternalDependency) {
  DataFlowKernel dfk;
  auto ext = dfk.create_external("outside");
  auto f = dfk.submit([](int v) { return v * 3; }, Future<int>(ext));
  EXPECT_FALSE(f.wait_for(10ms));
  dfk.complete_external(ext, Outcome::success(4));
  EXPECT_EQ(f.get(), 12);
}

TEST(DataFlowKernel, CleanupFailsTasksThatNeverRanAndRefusesNewOnes) {
  DataFlowKernel dfk;
  auto ext = dfk.create_external("never");
  auto waiting = dfk.submit([](int v) { return v; }, Future<int>(ext));
  dfk.cleanup();
  EXPECT_THROW(waiting.get(), DataFlowKernelClosed);
  EXPECT_THROW(dfk.submit([] { return 1; }), DataFlowKernelClosed);
  dfk.cleanup();  // idempotent
}

TEST(DataFlowKernel, CleanupCanLeaveTasksWaitingForAnExternalFutureUnfinishedAsParsl) {
  DataFlowKernel dfk(Config{.cleanup_fails_external_waits = false});
  auto ext = dfk.create_external("never");
  auto waiting = dfk.submit([](int v) { return v; }, Future<int>(ext));
  auto behind = dfk.submit([](int v) { return v; }, waiting);  // waits through `waiting`
  auto done = dfk.submit([] { return 7; });
  auto after_done = dfk.submit([](int v) { return v; }, done);
  EXPECT_EQ(after_done.get(), 7);
  dfk.cleanup();  // returns: the tasks left are not waited for
  EXPECT_FALSE(waiting.done());
  EXPECT_FALSE(behind.done());
  EXPECT_EQ(dfk.outstanding_tasks(), 0u);
  dfk.complete_external(ext, Outcome::success(1));  // after cleanup: nothing runs, nothing breaks
  EXPECT_FALSE(waiting.done());
}

TEST(DataFlowKernel, CleanupWaitsForRunningTasks) {
  DataFlowKernel dfk(Config{.executors = {std::make_shared<ThreadPoolExecutor>(1, "one")}});
  std::atomic<bool> started{false};
  auto running = dfk.submit([&started] {
    started.store(true);
    std::this_thread::sleep_for(100ms);  // the work itself, not synchronisation
    return 1;
  });
  while (!started.load()) std::this_thread::yield();
  dfk.cleanup();
  EXPECT_EQ(running.get(), 1);
}

TEST(DataFlowKernel, CleanupStopsRunningShellCommand) {
  auto dir = temp_dir();
  const auto marker = dir / "started";
  DataFlowKernel dfk;
  auto running = dfk.submit(Shell{"touch " + marker.string() + " && sleep 1000"});
  const auto deadline = std::chrono::steady_clock::now() + 30s;
  while (!std::filesystem::exists(marker) && std::chrono::steady_clock::now() < deadline)
    std::this_thread::yield();
  ASSERT_TRUE(std::filesystem::exists(marker));
  const auto t0 = std::chrono::steady_clock::now();
  dfk.cleanup();
  EXPECT_LT(std::chrono::steady_clock::now() - t0, 30s) << "cleanup must not wait for sleep 1000";
  EXPECT_THROW(running.get(), DataFlowKernelClosed);
}

TEST(DataFlowKernel, ManyTasksAreGarbageCollected) {
  DataFlowKernel dfk;
  std::weak_ptr<TaskRecord> first;
  {
    auto f = dfk.submit([] { return 0; });
    first = f.record();
    for (int i = 0; i < 10000; ++i) f = dfk.submit([](int v) { return v + 1; }, f);
    EXPECT_EQ(f.get(), 10000);
  }
  dfk.wait_for_current_tasks();
  EXPECT_TRUE(first.expired()) << "finished records are freed once no future refers to them";
}

}  // namespace
