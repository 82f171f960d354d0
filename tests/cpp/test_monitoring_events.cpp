// Event emission by the kernel's state machine (observer.hpp), driven synchronously with fake
// executors: every submission, dependency and state change reaches the observers, in order.
#include <gtest/gtest.h>

#include <fcntl.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <mutex>
#include <string>
#include <vector>

#include "core/kernel_core.hpp"
#include "fake_executor.hpp"
#include "pervade/dataflow_kernel.hpp"
#include "pervade/future.hpp"
#include "interchange/dispatcher.hpp"
#include "observe/proc_usage.hpp"
#include "pervade/remote.hpp"

using namespace pervade;

namespace {

class NoopBody : public TaskBody {
 public:
  Outcome run(TaskContext&) override { return Outcome::success({}); }
};

// What a TaskEvent said, copied (its strings are valid only during the call).
struct Seen {
  TaskEvent::Kind kind;
  std::uint64_t task;
  std::uint32_t try_id;
  TaskState state;
  std::string func_name, executor, error;
  std::uint64_t dependency;
  int fail_count;
  bool memoized;
};

class Recorder : public Observer {
 public:
  void on_task(const TaskEvent& e) override {
    std::lock_guard lock(mutex);
    tasks.push_back(Seen{e.kind, e.task.value, e.try_id, e.state, std::string(e.func_name), std::string(e.executor),
                         std::string(e.error), e.dependency.value, e.fail_count, e.memoized});
  }
  void on_workflow(const WorkflowEvent& e) override {
    std::lock_guard lock(mutex);
    workflows.push_back(e);
    run_ids.emplace_back(e.run_id);
  }
  void close() override {
    std::lock_guard lock(mutex);
    ++closed;
  }
  std::vector<TaskState> states_of(std::uint64_t task) {
    std::lock_guard lock(mutex);
    std::vector<TaskState> out;
    for (const auto& s : tasks)
      if (s.task == task && s.kind == TaskEvent::Kind::state) out.push_back(s.state);
    return out;
  }
  std::mutex mutex;
  std::vector<Seen> tasks;
  std::vector<WorkflowEvent> workflows;
  std::vector<std::string> run_ids;
  int closed = 0;
};

using fakes::FakeExecutor;

class KernelEventsTest : public ::testing::Test {
 protected:
  void make(int retries = 0, bool observed = true) {
    detail::KernelOptions o;
    o.retries = retries;
    if (observed) o.observers = std::make_shared<const Observers>(std::vector<ObserverPtr>{recorder});
    core = std::make_unique<detail::KernelCore>(o, std::vector<ExecutorPtr>{a, internal});
  }
  TaskRecordPtr submit(std::vector<TaskRecordPtr> deps = {}) {
    TaskSpec spec;
    spec.body = std::make_shared<NoopBody>();
    spec.dependencies = std::move(deps);
    spec.executors = {"a"};
    spec.func_name = "f";
    auto t = std::make_shared<TaskRecord>(TaskId{next_id++}, std::move(spec));
    core->submit(t);
    core->flush();
    return t;
  }
  void finish_next(Outcome outcome) {
    ASSERT_FALSE(a->launched.empty());
    Launch l = std::move(a->launched.front());
    a->launched.pop_front();
    core->complete(Completion{l.task, l.try_id, std::move(outcome)});
    core->flush();
  }
  static std::exception_ptr boom() { return std::make_exception_ptr(std::runtime_error("boom")); }

  std::shared_ptr<Recorder> recorder = std::make_shared<Recorder>();
  std::shared_ptr<FakeExecutor> a = std::make_shared<FakeExecutor>("a");
  std::shared_ptr<FakeExecutor> internal = std::make_shared<FakeExecutor>("_parsl_internal");
  std::unique_ptr<detail::KernelCore> core;
  std::uint64_t next_id = 0;
};

TEST_F(KernelEventsTest, SuccessfulTaskReportsSubmitLaunchAndDone) {
  make();
  auto t = submit();
  finish_next(Outcome::success(1));
  ASSERT_GE(recorder->tasks.size(), 1u);
  const Seen& sub = recorder->tasks[0];
  EXPECT_EQ(sub.kind, TaskEvent::Kind::submitted);
  EXPECT_EQ(sub.state, TaskState::pending);
  EXPECT_EQ(sub.func_name, "f");
  EXPECT_EQ(sub.try_id, 0u);
  EXPECT_EQ(recorder->states_of(0), (std::vector<TaskState>{TaskState::launched, TaskState::exec_done}));
  const Seen& launched = recorder->tasks[1];
  EXPECT_EQ(launched.executor, "a");
  EXPECT_EQ(launched.try_id, 1u);
  EXPECT_EQ(core->tasks_completed(), 1);
  EXPECT_EQ(core->tasks_failed(), 0);
}

TEST_F(KernelEventsTest, RetriesReportFailRetryableWithErrorAndFailCount) {
  make(/*retries=*/1);
  submit();
  finish_next(Outcome::failure(boom()));
  finish_next(Outcome::failure(boom()));
  EXPECT_EQ(recorder->states_of(0), (std::vector<TaskState>{TaskState::launched, TaskState::fail_retryable,
                                                            TaskState::launched, TaskState::failed}));
  std::vector<Seen> states;
  for (const auto& s : recorder->tasks)
    if (s.kind == TaskEvent::Kind::state) states.push_back(s);
  ASSERT_EQ(states.size(), 4u);
  EXPECT_EQ(states[1].error, "boom");
  EXPECT_EQ(states[1].fail_count, 1);
  EXPECT_EQ(states[2].try_id, 2u);  // the second try
  EXPECT_EQ(states[3].error, "boom");
  EXPECT_EQ(states[3].fail_count, 2);
  EXPECT_EQ(core->tasks_failed(), 1);
}

TEST_F(KernelEventsTest, DependenciesAndDependencyFailureAreReported) {
  make();
  auto first = submit();
  auto second = submit({first});
  finish_next(Outcome::failure(boom()));
  std::vector<Seen> deps;
  for (const auto& s : recorder->tasks)
    if (s.kind == TaskEvent::Kind::dependency) deps.push_back(s);
  ASSERT_EQ(deps.size(), 1u);
  EXPECT_EQ(deps[0].task, 1u);
  EXPECT_EQ(deps[0].dependency, 0u);
  EXPECT_EQ(recorder->states_of(1), std::vector<TaskState>{TaskState::dep_fail});
  const Seen& last = recorder->tasks.back();
  EXPECT_EQ(last.state, TaskState::dep_fail);
  EXPECT_NE(last.error.find("task 0"), std::string::npos) << last.error;  // the DependencyError's text
  EXPECT_EQ(core->tasks_failed(), 2);
}

// A task that raised on a pool worker: its error text is the remote traceback's last line, read
// from the pickle (pickle.dumps((ValueError("bad input"), traceback_text), protocol=5)).
TEST_F(KernelEventsTest, RemoteErrorTextIsTheTracebacksLastLine) {
  make();
  submit();
  const std::string pickle = std::string("\x80\x05\x95\x85\x00\x00\x00\x00\x00\x00\x00\x8c\x08\x62\x75\x69\x6c\x74\x69\x6e\x73\x94\x8c\x0a\x56\x61\x6c\x75\x65\x45\x72\x72\x6f\x72\x94\x93\x94\x8c\x09\x62\x61\x64\x20\x69\x6e\x70\x75\x74\x94\x85\x94\x52\x94\x8c\x55\x54\x72\x61\x63\x65\x62\x61\x63\x6b\x20\x28\x6d\x6f\x73\x74\x20\x72\x65\x63\x65\x6e\x74\x20\x63\x61\x6c\x6c\x20\x6c\x61\x73\x74\x29\x3a\x0a\x20\x20\x46\x69\x6c\x65\x20\x22\x78\x2e\x70\x79\x22\x2c\x20\x6c\x69\x6e\x65\x20\x31\x2c\x20\x69\x6e\x20\x66\x0a\x56\x61\x6c\x75\x65\x45\x72\x72\x6f\x72\x3a\x20\x62\x61\x64\x20\x69\x6e\x70\x75\x74\x0a\x94\x86\x94\x2e", 144);
  finish_next(Outcome::failure(std::make_exception_ptr(RemoteTaskError(pickle))));
  EXPECT_EQ(recorder->tasks.back().state, TaskState::failed);
  EXPECT_EQ(recorder->tasks.back().error, "ValueError: bad input");
}

TEST_F(KernelEventsTest, CancelAndCloseAreReported) {
  make();
  auto running = submit();
  auto waiting = submit({running});
  EXPECT_TRUE(core->cancel(running));
  EXPECT_EQ(recorder->states_of(0), (std::vector<TaskState>{TaskState::launched, TaskState::cancelled}));
  EXPECT_EQ(recorder->states_of(1), std::vector<TaskState>{TaskState::dep_fail});
}

TEST_F(KernelEventsTest, NoObserverNoEvents) {
  make(0, /*observed=*/false);
  submit();
  finish_next(Outcome::success(1));
  EXPECT_TRUE(recorder->tasks.empty());
  EXPECT_EQ(core->tasks_completed(), 1);
}

// The whole kernel: workflow start and end, running/running_ended from the thread-pool
// executor's threads, close() once after the last event.
TEST(DataFlowKernelEvents, WorkflowAndExecutorThreadEvents) {
  auto recorder = std::make_shared<Recorder>();
  Config cfg;
  cfg.observers.push_back(recorder);
  cfg.run_dir = "/tmp/run";
  std::string run_id;
  {
    DataFlowKernel dfk(std::move(cfg));
    run_id = dfk.run_id();
    auto ok = dfk.submit([] { return 1; });
    auto bad = dfk.submit([]() -> int { throw std::runtime_error("bad"); });
    EXPECT_EQ(ok.get(), 1);
    EXPECT_THROW(bad.get(), std::runtime_error);
    dfk.cleanup();
  }
  EXPECT_EQ(run_id.size(), 36u);
  ASSERT_EQ(recorder->workflows.size(), 2u);
  EXPECT_EQ(recorder->workflows[0].kind, WorkflowEvent::Kind::started);
  EXPECT_EQ(recorder->workflows[1].kind, WorkflowEvent::Kind::ended);
  EXPECT_EQ(recorder->run_ids[0], run_id);
  EXPECT_EQ(recorder->workflows[1].tasks_completed, 1);
  EXPECT_EQ(recorder->workflows[1].tasks_failed, 1);
  EXPECT_EQ(recorder->closed, 1);
  EXPECT_EQ(recorder->states_of(0), (std::vector<TaskState>{TaskState::launched, TaskState::running,
                                                            TaskState::running_ended, TaskState::exec_done}));
}

}  // namespace

// The dispatcher's part of the events: with report_places it names each result's pool, turns
// heartbeats into events, asks pools for resource samples and passes their USAGE on; without,
// none of that.
namespace {
namespace ix = pervade::interchange;

std::vector<ix::PoolEvent::Kind> kinds(std::vector<ix::PoolEvent> events) {
  std::vector<ix::PoolEvent::Kind> out;
  for (const auto& e : events) out.push_back(e.kind);
  return out;
}

// Pool "a" registers, runs task 41 and reports it; returns what REGISTERED asked of it.
double run_pool(ix::Dispatcher& d, ix::TimePoint now) {
  protocol::Register r;
  r.pervade_version = "0.1.0";
  r.python_version = "3.11.2";
  r.pool_id = "pool-a";
  r.block_id = "3";
  r.hostname = "node7";
  r.worker_count = 2;
  r.cpu_count = 8;
  r.total_memory = 1 << 30;
  d.on_message("a", r, now);
  ix::DispatchTask t;
  t.task_id = 41;
  t.fn_hash = "h";
  d.submit(std::move(t), now);
  double asked = -2;
  for (auto& [to, m] : d.take_outbox())
    if (auto* reg = std::get_if<protocol::Registered>(&m)) asked = reg->resource_interval;
  d.on_message("a", protocol::Heartbeat{}, now);
  d.on_message("a", protocol::Usage{{protocol::UsageSample{41, 5, 100, 0, 0.5, 0.1, 1, 2, 3, 4, 5, 6, true, false}}},
               now);
  d.on_message("a", protocol::Results{{protocol::TaskResult{41, protocol::kStatusOk, "r"}}}, now);
  return asked;
}
}  // namespace

TEST(DispatcherEvents, ObservedDispatcherReportsPlacesHeartbeatsAndUsage) {
  ix::DispatcherConfig cfg{10, 30, "0.1.0", "3.11.7", 7, 0};
  cfg.report_places = true;
  cfg.resource_interval = 2.5;
  ix::Dispatcher d(cfg);
  ix::TimePoint now{};
  EXPECT_EQ(run_pool(d, now), 2.5);
  auto events = d.take_events();
  // busy when its first task is sent, idle when its last comes back (Parsl's node rows).
  EXPECT_EQ(kinds(events), (std::vector<ix::PoolEvent::Kind>{ix::PoolEvent::registered, ix::PoolEvent::busy,
                                                             ix::PoolEvent::heartbeat, ix::PoolEvent::working,
                                                             ix::PoolEvent::idle}));
  EXPECT_EQ(events[0].hostname, "node7");
  EXPECT_EQ(events[0].cpu_count, 8);
  EXPECT_EQ(events[0].total_memory, 1u << 30);
  const auto done = d.take_completed();
  ASSERT_EQ(done.size(), 1u);
  EXPECT_EQ(done[0].pool_id, "pool-a");
  const auto usage = d.take_usage();
  ASSERT_EQ(usage.size(), 1u);
  EXPECT_EQ(usage[0].pool_id, "pool-a");
  EXPECT_EQ(usage[0].samples.at(0).task_id, 41u);
}

TEST(DispatcherEvents, UnobservedDispatcherAddsNothing) {
  ix::Dispatcher d(ix::DispatcherConfig{10, 30, "0.1.0", "3.11.7", 7, 0});
  ix::TimePoint now{};
  EXPECT_LT(run_pool(d, now), 0);  // REGISTERED asks for no samples
  const auto seen = kinds(d.take_events());
  EXPECT_EQ(std::count(seen.begin(), seen.end(), ix::PoolEvent::heartbeat), 0);
  const auto done = d.take_completed();
  ASSERT_EQ(done.size(), 1u);
  EXPECT_TRUE(done[0].pool_id.empty());
}

// The pool's per-task sample: /proc/<pid>/stat of a worker, read through a kept-open descriptor.
// A process whose name holds ") " and "(" (the stat line's second field) that has burned 50 ms
// of CPU: the fields after the name are found, and a second read of the same descriptor is fresh.
TEST(ProcUsage, StatOfAProcessWithAnAwkwardNameIsReadAgainThroughTheSameDescriptor) {
  int ready[2], go[2];
  ASSERT_EQ(::pipe(ready), 0);
  ASSERT_EQ(::pipe(go), 0);
  const pid_t child = ::fork();
  ASSERT_GE(child, 0);
  if (child == 0) {
    ::prctl(PR_SET_NAME, "we) ir (d", 0, 0, 0);
    timespec t{};
    volatile double x = 0;
    do {
      for (int i = 0; i < 100000; ++i) x = x + i * 0.5;
      ::clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t);
    } while (t.tv_sec == 0 && t.tv_nsec < 50'000'000);
    char c = 'r';
    (void)!::write(ready[1], &c, 1);
    (void)!::read(go[0], &c, 1);  // until the parent has read its stat
    ::_exit(0);
  }
  char c;
  ASSERT_EQ(::read(ready[0], &c, 1), 1);
  const int fd = ::open(("/proc/" + std::to_string(child) + "/stat").c_str(), O_RDONLY | O_CLOEXEC);
  ASSERT_GE(fd, 0);
  pervade::detail::ProcUsage first, again;
  ASSERT_TRUE(pervade::detail::read_stat_fd(fd, &first));
  ASSERT_TRUE(pervade::detail::read_stat_fd(fd, &again));
  EXPECT_EQ(first.processes, 1);
  EXPECT_GE(first.cpu_user + first.cpu_system, 0.04);  // 50 ms burned, counted in clock ticks
  EXPECT_LT(first.cpu_user + first.cpu_system, 5.0);
  EXPECT_GT(first.rss, 0u);
  EXPECT_GE(first.vms, first.rss);
  EXPECT_GE(again.cpu_user + again.cpu_system, first.cpu_user + first.cpu_system);
  ::close(fd);
  ASSERT_EQ(::write(go[1], "g", 1), 1);
  int status = 0;
  ASSERT_EQ(::waitpid(child, &status, 0), child);
  EXPECT_TRUE(WIFEXITED(status));
  for (int f : {ready[0], ready[1], go[0], go[1]}) ::close(f);
}
