// The kernel's state machine driven synchronously: a fake executor records launches and the
// test decides when and how each try ends; a fake clock drives walltime. No threads, no sleeps.
#include <gtest/gtest.h>

#include <algorithm>
#include <any>
#include <deque>

#include "core/kernel_core.hpp"
#include "fake_executor.hpp"
#include "pervade/errors.hpp"

using namespace pervade;
using namespace std::chrono_literals;

namespace {

class NoopBody : public TaskBody {
 public:
  Outcome run(TaskContext&) override { return Outcome::success({}); }
};

using fakes::FakeExecutor;

struct FakeClock {
  detail::TimePoint t{};
  void advance(std::chrono::duration<double> d) {
    t += std::chrono::duration_cast<std::chrono::steady_clock::duration>(d);
  }
};

class KernelCoreTest : public ::testing::Test {
 protected:
  void make(int retries = 0, detail::RetryHandler handler = {}) {
    detail::KernelOptions o;
    o.retries = retries;
    o.retry_handler = std::move(handler);
    o.now = [this] { return clock.t; };
    o.on_final = [this](const TaskRecordPtr& t) { finals.push_back(t->id()); };
    core = std::make_unique<detail::KernelCore>(o, std::vector<ExecutorPtr>{a, b, internal});
  }

  TaskRecordPtr submit(std::vector<TaskRecordPtr> deps = {}, std::vector<std::string> labels = {"a"},
                       double walltime = 0) {
    TaskSpec spec;
    spec.body = std::make_shared<NoopBody>();
    spec.dependencies = std::move(deps);
    spec.executors = std::move(labels);
    spec.func_name = "f";
    spec.walltime = std::chrono::duration<double>(walltime);
    auto t = std::make_shared<TaskRecord>(TaskId{next_id++}, std::move(spec));
    core->submit(t);
    core->flush();
    return t;
  }

  // Ends the oldest launched try on executor `ex`.
  TaskRecordPtr finish_next(FakeExecutor& ex, Outcome outcome) {
    EXPECT_FALSE(ex.launched.empty());
    Launch l = std::move(ex.launched.front());
    ex.launched.pop_front();
    TaskRecordPtr t = l.task;
    core->complete(Completion{l.task, l.try_id, std::move(outcome)});
    core->flush();
    return t;
  }

  // The executor could not start follower try `l` (its input was no longer there).
  void come_back_not_started(const Launch& l) {
    core->complete(Completion{l.task, l.try_id, Outcome::not_started_yet()});
  }

  static std::exception_ptr boom() { return std::make_exception_ptr(std::runtime_error("boom")); }

  std::shared_ptr<FakeExecutor> a = std::make_shared<FakeExecutor>("a");
  std::shared_ptr<FakeExecutor> b = std::make_shared<FakeExecutor>("b");
  std::shared_ptr<FakeExecutor> internal = std::make_shared<FakeExecutor>("_parsl_internal");
  FakeClock clock;
  std::unique_ptr<detail::KernelCore> core;
  std::vector<TaskId> finals;
  std::uint64_t next_id = 0;
};

// The error of a stopped try is chosen by the engine, so every front end reports it alike.
template <class E>
std::string stop_message(const std::exception_ptr& error) {
  try {
    std::rethrow_exception(error);
  } catch (const E& e) {
    return e.what();
  } catch (...) {
  }
  return "<another error type>";
}

TEST(TryNumbering, ParslCountsTriesFromZero) {
  EXPECT_EQ(parsl_try_id(0), 0u);  // not launched yet
  EXPECT_EQ(parsl_try_id(1), 0u);  // the first try
  EXPECT_EQ(parsl_try_id(3), 2u);  // after two retries
}

TEST(StopError, EachReasonHasItsErrorType) {
  EXPECT_EQ(stop_message<AppTimeout>(stop_error(StopReason::walltime, "late")), "late");
  EXPECT_EQ(stop_message<DataFlowKernelClosed>(stop_error(StopReason::shutdown, "closed")), "closed");
  EXPECT_EQ(stop_message<TaskCancelled>(stop_error(StopReason::cancelled, "gone")), "gone");
}

TEST(StopError, KilledCommandsNameTheCommandAndTheReason) {
  EXPECT_EQ(stop_message<AppTimeout>(command_stop_error(StopReason::walltime, "shell task t")),
            "shell task t exceeded its walltime (process group killed)");
  EXPECT_EQ(stop_message<DataFlowKernelClosed>(command_stop_error(StopReason::shutdown, "shell task t")),
            "shell task t was stopped (process group killed): the DataFlowKernel was cleaned up");
  EXPECT_EQ(stop_message<TaskCancelled>(command_stop_error(StopReason::cancelled, "shell task t")),
            "shell task t was cancelled (process group killed)");
}

TEST(StopRequests, ShutdownThenCancellationThenWalltimeDecideTheReason) {
  StopRequests stops;
  EXPECT_FALSE(stops.requested());
  stops.request(StopReason::walltime);
  EXPECT_TRUE(stops.requested());
  EXPECT_EQ(stops.reason(), StopReason::walltime);
  stops.new_try();  // a walltime stop was aimed at the earlier try
  EXPECT_FALSE(stops.requested());
  stops.request(StopReason::cancelled);
  stops.request(StopReason::walltime);  // late: the cancellation stays the reason
  EXPECT_EQ(stops.reason(), StopReason::cancelled);
  stops.new_try();
  EXPECT_TRUE(stops.requested() && stops.cancelled());  // a cancelled task never runs again
  stops.request(StopReason::shutdown);
  EXPECT_EQ(stops.reason(), StopReason::shutdown);
}

TEST_F(KernelCoreTest, TaskWithoutDependenciesLaunchesAndCompletes) {
  make();
  auto t = submit();
  EXPECT_EQ(t->state(), TaskState::launched);
  ASSERT_EQ(a->launched.size(), 1u);
  EXPECT_EQ(core->live_tasks(), 1u);
  finish_next(*a, Outcome::success(42));
  EXPECT_EQ(t->state(), TaskState::exec_done);
  EXPECT_EQ(std::any_cast<int>(t->value()), 42);
  EXPECT_EQ(core->live_tasks(), 0u);
  EXPECT_EQ(finals, std::vector<TaskId>{t->id()});
}

TEST_F(KernelCoreTest, DependentWaitsForAllDependenciesAndSeesTheirValues) {
  make();
  auto x = submit();
  auto y = submit();
  auto z = submit({x, y});
  EXPECT_EQ(z->state(), TaskState::pending);
  EXPECT_EQ(a->launched.size(), 2u);
  finish_next(*a, Outcome::success(1));
  EXPECT_EQ(z->state(), TaskState::pending);
  finish_next(*a, Outcome::success(2));
  ASSERT_EQ(a->launched.size(), 1u);
  Launch& l = a->launched.front();
  EXPECT_EQ(l.task, z);
  TaskContext ctx(*l.task, l.try_id, l.inputs);
  ASSERT_EQ(ctx.dependency_count(), 2u);
  EXPECT_EQ(std::any_cast<int>(ctx.dependency(0)), 1);
  EXPECT_EQ(std::any_cast<int>(ctx.dependency(1)), 2);
}

TEST_F(KernelCoreTest, DependencyAlreadyFinishedCountsAsSatisfied) {
  make();
  auto x = submit();
  finish_next(*a, Outcome::success(5));
  auto y = submit({x});
  EXPECT_EQ(y->state(), TaskState::launched);
}

TEST_F(KernelCoreTest, FailurePropagatesAsDependencyErrorNamingTheFailedTasks) {
  make();
  auto x = submit();
  auto y = submit();
  auto z = submit({x, y});
  auto w = submit({z});
  finish_next(*a, Outcome::failure(boom()));
  finish_next(*a, Outcome::success(1));
  EXPECT_EQ(x->state(), TaskState::failed);
  EXPECT_EQ(z->state(), TaskState::dep_fail);
  EXPECT_EQ(w->state(), TaskState::dep_fail);
  EXPECT_TRUE(a->launched.empty()) << "a dependent of a failed task must never launch";
  try {
    std::rethrow_exception(z->error());
  } catch (const DependencyError& e) {
    ASSERT_EQ(e.dependent_exceptions().size(), 1u);
    EXPECT_EQ(e.dependent_exceptions()[0].second, x->id());
    EXPECT_EQ(e.task_id(), z->id());
    EXPECT_EQ(std::string(e.what()), "Dependency failure for task 2. The representative cause is via task 0") << e.what();
  }
  try {
    std::rethrow_exception(w->error());
  } catch (const DependencyError& e) {
    EXPECT_EQ(e.dependent_exceptions()[0].second, z->id());
    EXPECT_EQ(std::string(e.what()), "Dependency failure for task 3. The representative cause is via task 2 <- task 0");
  }
  EXPECT_EQ(core->live_tasks(), 0u);
}

TEST_F(KernelCoreTest, RetriesRelaunchUntilCostExceedsRetries) {
  make(2);
  auto t = submit();
  finish_next(*a, Outcome::failure(boom()));
  EXPECT_EQ(t->state(), TaskState::launched);
  EXPECT_EQ(t->fail_count(), 1);
  finish_next(*a, Outcome::failure(boom()));
  EXPECT_EQ(t->state(), TaskState::launched);
  finish_next(*a, Outcome::failure(boom()));
  EXPECT_EQ(t->state(), TaskState::failed);
  EXPECT_EQ(t->fail_count(), 3);
  EXPECT_TRUE(a->launched.empty());
}

TEST_F(KernelCoreTest, RetryThenSuccess) {
  make(1);
  auto t = submit();
  finish_next(*a, Outcome::failure(boom()));
  finish_next(*a, Outcome::success(std::string("ok")));
  EXPECT_EQ(t->state(), TaskState::exec_done);
  EXPECT_EQ(std::any_cast<std::string>(t->value()), "ok");
}

TEST_F(KernelCoreTest, RetryHandlerCostDecides) {
  std::vector<int> seen_counts;
  make(3, [&](const std::exception_ptr&, const TaskRecord& r) {
    seen_counts.push_back(r.fail_count());
    return 2.0;
  });
  auto t = submit();
  finish_next(*a, Outcome::failure(boom()));  // cost 2 <= 3: retried
  EXPECT_EQ(t->state(), TaskState::launched);
  finish_next(*a, Outcome::failure(boom()));  // cost 4 > 3: failed
  EXPECT_EQ(t->state(), TaskState::failed);
  EXPECT_EQ(seen_counts, (std::vector<int>{1, 2}));
}

TEST_F(KernelCoreTest, ThrowingRetryHandlerDoesNotRetryAndReportsItsError) {
  make(5, [](const std::exception_ptr&, const TaskRecord&) -> double { throw std::runtime_error("bad handler"); });
  auto t = submit();
  finish_next(*a, Outcome::failure(boom()));
  EXPECT_EQ(t->state(), TaskState::failed);
  EXPECT_EQ(describe(t->error()), "bad handler");
}

TEST_F(KernelCoreTest, DependencyFailuresAreNotRetried) {
  make(5);
  auto x = submit();
  auto y = submit({x});
  for (int i = 0; i < 6; ++i) finish_next(*a, Outcome::failure(boom()));
  EXPECT_EQ(x->state(), TaskState::failed);
  EXPECT_EQ(y->state(), TaskState::dep_fail);
  EXPECT_EQ(y->fail_count(), 0);
  EXPECT_TRUE(a->launched.empty());
}

TEST_F(KernelCoreTest, StaleCompletionOfAnOldTryIsIgnored) {
  make(1);
  auto t = submit();
  Launch first = a->launched.front();
  finish_next(*a, Outcome::failure(boom()));  // try 1 failed, try 2 launched
  core->complete(Completion{first.task, first.try_id, Outcome::success(99)});
  EXPECT_EQ(t->state(), TaskState::launched);
  finish_next(*a, Outcome::success(7));
  EXPECT_EQ(std::any_cast<int>(t->value()), 7);
}

TEST_F(KernelCoreTest, ExecutorChoiceHonoursLabelsAndSpreadsOverAllowedOnes) {
  make();
  submit({}, {"b"});
  EXPECT_EQ(b->launched.size(), 1u);
  EXPECT_EQ(a->launched.size(), 0u);
  for (int i = 0; i < 200; ++i) submit({}, {});
  EXPECT_GT(a->launched.size(), 50u);
  EXPECT_GT(b->launched.size(), 50u);
  EXPECT_TRUE(internal->launched.empty()) << "'any executor' never means the internal one";
  submit({}, {"_parsl_internal"});
  EXPECT_EQ(internal->launched.size(), 1u);
}

TEST_F(KernelCoreTest, WalltimeExpiryFailsWithAppTimeoutAndCancelsTheTry) {
  make();
  auto t = submit({}, {"a"}, 2.0);
  clock.advance(1s);
  core->fire_timers(clock.t);
  EXPECT_EQ(t->state(), TaskState::launched);
  EXPECT_EQ(core->next_deadline(), clock.t + 1s);
  clock.advance(1s);
  core->fire_timers(clock.t);
  EXPECT_EQ(t->state(), TaskState::failed);
  EXPECT_THROW(std::rethrow_exception(t->error()), AppTimeout);
  ASSERT_EQ(a->cancelled.size(), 1u);
  EXPECT_EQ(a->cancelled[0].first, t->id());
  EXPECT_EQ(a->reasons[0], StopReason::walltime);
  // The try's late result changes nothing.
  finish_next(*a, Outcome::success(1));
  EXPECT_EQ(t->state(), TaskState::failed);
}

TEST_F(KernelCoreTest, WalltimeCountsFromTheStartOnAnExecutorThatReportsIt) {
  a->clock = WalltimeClock::from_start;
  make();
  auto t = submit({}, {"a"}, 2.0);
  clock.advance(10s);  // queued behind busy workers: no clock runs yet
  core->fire_timers(clock.t);
  EXPECT_EQ(t->state(), TaskState::launched);
  EXPECT_FALSE(core->next_deadline());
  core->try_started(t, t->try_id());
  clock.advance(1s);
  core->fire_timers(clock.t);
  EXPECT_EQ(t->state(), TaskState::launched);
  EXPECT_EQ(core->next_deadline(), clock.t + 1s);
  clock.advance(1s);
  core->fire_timers(clock.t);
  EXPECT_EQ(t->state(), TaskState::failed);
  EXPECT_THROW(std::rethrow_exception(t->error()), AppTimeout);
  ASSERT_EQ(a->reasons.size(), 1u);
  EXPECT_EQ(a->reasons[0], StopReason::walltime);
}

TEST_F(KernelCoreTest, AStaleStartReportStartsNoClock) {
  a->clock = WalltimeClock::from_start;
  make(/*retries=*/1);
  auto t = submit({}, {"a"}, 2.0);
  const std::uint32_t first = t->try_id();
  finish_next(*a, Outcome::failure(boom()));  // retried: a second try is launched
  core->try_started(t, first);                // the first try's report arrives late
  EXPECT_FALSE(core->next_deadline());
  core->try_started(t, t->try_id());
  EXPECT_EQ(core->next_deadline(), clock.t + 2s);
  finish_next(*a, Outcome::success(1));
  core->try_started(t, t->try_id());  // after the end: nothing
  EXPECT_EQ(t->state(), TaskState::exec_done);
  core->fire_timers(clock.t + 10s);
  EXPECT_EQ(t->state(), TaskState::exec_done);
}

TEST_F(KernelCoreTest, AnExecutorThatTimesTriesWhereTheyRunGetsNoKernelTimer) {
  a->clock = WalltimeClock::where_it_runs;
  make();
  auto t = submit({}, {"a"}, 2.0);
  EXPECT_FALSE(core->next_deadline());
  core->fire_timers(clock.t + 10s);
  EXPECT_EQ(t->state(), TaskState::launched);
  EXPECT_TRUE(a->cancelled.empty());
  finish_next(*a, Outcome::failure(std::make_exception_ptr(AppTimeout("timed out on the pool"))));
  EXPECT_THROW(std::rethrow_exception(t->error()), AppTimeout);
}

TEST_F(KernelCoreTest, CancelFailsAWaitingTaskAndItsDependents) {
  make();
  auto head = submit();
  auto waiting = submit({head});
  auto dependent = submit({waiting});
  EXPECT_TRUE(core->cancel(waiting));
  EXPECT_EQ(waiting->state(), TaskState::cancelled);
  EXPECT_THROW(std::rethrow_exception(waiting->error()), TaskCancelled);
  EXPECT_EQ(dependent->state(), TaskState::dep_fail);
  EXPECT_THROW(std::rethrow_exception(dependent->error()), DependencyError);
  EXPECT_FALSE(core->cancel(waiting));  // already final
  finish_next(*a, Outcome::success(1));  // the head is not affected
  EXPECT_EQ(head->state(), TaskState::exec_done);
  EXPECT_EQ(a->launched.size(), 0u);
  EXPECT_EQ(core->live_tasks(), 0u);
}

TEST_F(KernelCoreTest, CancelStopsALaunchedTryOnItsExecutor) {
  make(/*retries=*/3);
  auto t = submit();
  ASSERT_EQ(a->launched.size(), 1u);
  EXPECT_TRUE(core->cancel(t));
  EXPECT_THROW(std::rethrow_exception(t->error()), TaskCancelled);  // not retried
  ASSERT_EQ(a->cancelled.size(), 1u);
  EXPECT_EQ(a->cancelled[0].first, t->id());
  EXPECT_EQ(a->cancelled[0].second, t->try_id());
  EXPECT_EQ(a->reasons[0], StopReason::cancelled);  // not stopped "for walltime"
  finish_next(*a, Outcome::success(1));  // its late result changes nothing
  EXPECT_EQ(t->state(), TaskState::cancelled);
  EXPECT_EQ(core->live_tasks(), 0u);
}

TEST_F(KernelCoreTest, CancelAJoiningTaskLeavesItsInnerTasksAlone) {
  make();
  auto join = submit({}, {"_parsl_internal"});
  auto inner = submit();
  ASSERT_EQ(internal->launched.size(), 1u);
  finish_next(*internal, Outcome::join_tasks({inner}, false));
  EXPECT_EQ(join->state(), TaskState::joining);
  EXPECT_TRUE(core->cancel(join));
  EXPECT_EQ(join->state(), TaskState::cancelled);
  EXPECT_TRUE(internal->cancelled.empty()) << "a joining task has no try to stop";
  finish_next(*a, Outcome::success(7));  // the inner task finishes normally
  EXPECT_EQ(inner->state(), TaskState::exec_done);
  EXPECT_EQ(join->state(), TaskState::cancelled);
  EXPECT_EQ(core->live_tasks(), 0u);
}

TEST_F(KernelCoreTest, CancelBeforeFlushDropsTheLaunch) {
  make();
  TaskSpec spec;
  spec.body = std::make_shared<NoopBody>();
  spec.executors = {"a"};
  spec.func_name = "f";
  auto t = std::make_shared<TaskRecord>(TaskId{next_id++}, std::move(spec));
  core->submit(t);  // launched, not yet handed to the executor
  EXPECT_TRUE(core->cancel(t));
  core->flush();
  EXPECT_TRUE(a->launched.empty());
  EXPECT_TRUE(a->cancelled.empty());
}

TEST_F(KernelCoreTest, FinishedTaskCancelsItsTimer) {
  make();
  submit({}, {"a"}, 5.0);
  finish_next(*a, Outcome::success(1));
  EXPECT_FALSE(core->next_deadline().has_value());
}

TEST_F(KernelCoreTest, WalltimeTimeoutIsRetried) {
  make(1);
  auto t = submit({}, {"a"}, 1.0);
  clock.advance(2s);
  core->fire_timers(clock.t);
  core->flush();
  EXPECT_EQ(t->state(), TaskState::launched);
  EXPECT_EQ(a->launched.size(), 2u);  // the abandoned try and the new one
  a->launched.pop_front();
  finish_next(*a, Outcome::success(3));
  EXPECT_EQ(t->state(), TaskState::exec_done);
}

TEST_F(KernelCoreTest, JoinWaitsForInnerTasksAndTakesTheirValue) {
  make();
  auto j = submit({}, {"_parsl_internal"});
  auto inner1 = submit();
  auto inner2 = submit();
  finish_next(*internal, Outcome::join_tasks({inner1, inner2}, true));
  EXPECT_EQ(j->state(), TaskState::joining);
  finish_next(*a, Outcome::success(10));
  EXPECT_EQ(j->state(), TaskState::joining);
  finish_next(*a, Outcome::success(20));
  ASSERT_EQ(j->state(), TaskState::exec_done);
  const auto& list = std::any_cast<const ValueList&>(j->value());
  ASSERT_EQ(list.values.size(), 2u);
  EXPECT_EQ(std::any_cast<int>(list.values[1]), 20);
}

TEST_F(KernelCoreTest, JoinOnSingleTaskAndOnFinishedTasks) {
  make();
  auto inner = submit();
  finish_next(*a, Outcome::success(5));
  auto j = submit({}, {"_parsl_internal"});
  finish_next(*internal, Outcome::join_tasks({inner}, false));
  EXPECT_EQ(std::any_cast<int>(j->value()), 5);
  auto empty = submit({}, {"_parsl_internal"});
  finish_next(*internal, Outcome::join_tasks({}, true));
  EXPECT_TRUE(std::any_cast<const ValueList&>(empty->value()).values.empty());
}

TEST_F(KernelCoreTest, JoinFailureGivesJoinError) {
  make(3);
  auto j = submit({}, {"_parsl_internal"});
  auto inner = submit();
  finish_next(*internal, Outcome::join_tasks({inner}, false));
  for (int i = 0; i < 4; ++i) finish_next(*a, Outcome::failure(boom()));
  EXPECT_EQ(j->state(), TaskState::failed);
  try {
    std::rethrow_exception(j->error());
  } catch (const JoinError& e) {
    EXPECT_EQ(e.dependent_exceptions()[0].second, inner->id());
  }
  EXPECT_TRUE(internal->launched.empty()) << "a failed join is not re-run";
}

TEST_F(KernelCoreTest, ExternalDependency) {
  make();
  TaskSpec spec;
  auto ext = std::make_shared<TaskRecord>(TaskId{1000}, std::move(spec));
  core->add_external(ext);
  auto t = submit({ext});
  EXPECT_EQ(t->state(), TaskState::pending);
  core->complete(Completion{ext, 0, Outcome::success(3)});
  core->flush();
  EXPECT_EQ(t->state(), TaskState::launched);
  EXPECT_EQ(core->live_tasks(), 1u) << "external futures are not tasks of the kernel";
  EXPECT_EQ(finals.size(), 0u);
}

TEST_F(KernelCoreTest, CloseFailsWaitingTasksAndRefusesLaunches) {
  make();
  auto x = submit();
  auto y = submit({x});
  core->close();
  EXPECT_EQ(y->state(), TaskState::failed);
  EXPECT_THROW(std::rethrow_exception(y->error()), DataFlowKernelClosed);
  EXPECT_EQ(x->state(), TaskState::launched) << "running work is finished by the executor";
  finish_next(*a, Outcome::success(1));
  EXPECT_EQ(x->state(), TaskState::exec_done);
  auto z = submit();
  EXPECT_EQ(z->state(), TaskState::failed);
  EXPECT_EQ(core->live_tasks(), 0u);
}

TEST_F(KernelCoreTest, CallbacksRunWhenFinalOrImmediately) {
  make();
  auto t = submit();
  int calls = 0;
  core->add_callback(t, [&](const TaskRecordPtr& r) {
    EXPECT_TRUE(r->done());
    ++calls;
  });
  EXPECT_EQ(calls, 0);
  finish_next(*a, Outcome::success(1));
  EXPECT_EQ(calls, 1);
  core->add_callback(t, [&](const TaskRecordPtr&) { ++calls; });
  EXPECT_EQ(calls, 2);
}

TEST_F(KernelCoreTest, LongFailingChainDoesNotRecurse) {
  make();
  auto first = submit();
  TaskRecordPtr last = first;
  for (int i = 0; i < 200000; ++i) last = submit({last});
  finish_next(*a, Outcome::failure(boom()));
  EXPECT_EQ(last->state(), TaskState::dep_fail);
  EXPECT_EQ(core->live_tasks(), 0u);
}

TEST_F(KernelCoreTest, FinishedTasksReleaseBodyAndDependencies) {
  make();
  auto x = submit();
  std::weak_ptr<TaskRecord> weak_x = x;
  auto y = submit({x});
  x.reset();
  finish_next(*a, Outcome::success(1));
  finish_next(*a, Outcome::success(2));
  EXPECT_TRUE(weak_x.expired()) << "a finished task must not keep its inputs alive";
  EXPECT_EQ(y->state(), TaskState::exec_done);
}

}  // namespace

// ---- followers: a task whose one unfinished dependency runs on an executor that accepts
// followers is launched at once, to wait there for that input.

// The launched try of task t on ex (the test fails if there is none).
Launch take_launch(FakeExecutor& ex, const TaskRecordPtr& t) {
  auto it = std::find_if(ex.launched.begin(), ex.launched.end(), [&](const Launch& l) { return l.task == t; });
  EXPECT_NE(it, ex.launched.end()) << "task " << t->id().value << " was not launched";
  if (it == ex.launched.end()) return Launch{};
  Launch l = std::move(*it);
  ex.launched.erase(it);
  return l;
}

TEST_F(KernelCoreTest, FollowerLaunchesBeforeItsInputAndIsNotLaunchedAgainWhenTheInputSucceeds) {
  a->followers = true;
  make();
  auto x = submit();
  auto y = submit({x});
  EXPECT_EQ(y->state(), TaskState::launched);
  ASSERT_EQ(a->launched.size(), 2u);
  EXPECT_FALSE(a->launched[0].follower);
  EXPECT_TRUE(a->launched[1].follower);
  TaskContext ctx(*a->launched[1].task, a->launched[1].try_id, a->launched[1].inputs);
  EXPECT_FALSE(ctx.dependency_done(0));
  Launch ly = take_launch(*a, y);
  finish_next(*a, Outcome::success(1));  // x
  EXPECT_TRUE(a->launched.empty()) << "the follower was launched a second time";
  EXPECT_EQ(y->state(), TaskState::launched);
  core->complete(Completion{y, ly.try_id, Outcome::success(2)});
  EXPECT_EQ(y->state(), TaskState::exec_done);
  EXPECT_EQ(core->live_tasks(), 0u);
}

TEST_F(KernelCoreTest, ChainOfFollowersAndOnlyOneFollowerPerTask) {
  a->followers = true;
  make();
  auto x = submit();
  auto y = submit({x});   // follows x
  auto z = submit({y});   // follows y (itself a follower)
  auto w = submit({x});   // x already has a follower: w waits in the kernel
  EXPECT_EQ(z->state(), TaskState::launched);
  EXPECT_EQ(w->state(), TaskState::pending);
  ASSERT_EQ(a->launched.size(), 3u);
  finish_next(*a, Outcome::success(1));  // x: now w is launched, the ordinary way
  ASSERT_EQ(a->launched.size(), 3u);
  EXPECT_EQ(a->launched.back().task, w);
  EXPECT_FALSE(a->launched.back().follower);
}

TEST_F(KernelCoreTest, FollowerNotStartedIsLaunchedAgainOnceItsInputIsDone) {
  a->followers = true;
  make();
  auto x = submit();
  auto y = submit({x});
  Launch ly = take_launch(*a, y);
  come_back_not_started(ly);
  core->flush();
  EXPECT_EQ(y->state(), TaskState::pending);
  EXPECT_TRUE(std::none_of(a->launched.begin(), a->launched.end(), [&](const Launch& l) { return l.task == y; }));
  finish_next(*a, Outcome::success(1));  // x
  Launch again = take_launch(*a, y);
  EXPECT_FALSE(again.follower);
  EXPECT_TRUE(TaskContext(*y, again.try_id, again.inputs).dependency_done(0));
  core->complete(Completion{y, again.try_id, Outcome::success(2)});
  EXPECT_EQ(y->state(), TaskState::exec_done);
  EXPECT_EQ(std::any_cast<int>(y->value()), 2);
}

TEST_F(KernelCoreTest, FollowerNotStartedAfterItsInputFinishedIsLaunchedAtOnce) {
  a->followers = true;
  make();
  auto x = submit();
  auto y = submit({x});
  Launch ly = take_launch(*a, y);
  finish_next(*a, Outcome::success(1));  // x
  come_back_not_started(ly);
  core->flush();
  Launch again = take_launch(*a, y);
  EXPECT_FALSE(again.follower);
}

TEST_F(KernelCoreTest, ChainGoesOnAsFollowersAfterOneWasNotStarted) {
  // y's follower try was not started (x had just finished on its pool); z, which followed y,
  // was not started either. Once x's value is in and y is launched again, z follows y at once,
  // and a task submitted after z follows z: the rest of the chain does not wait in the kernel.
  a->followers = true;
  make();
  auto x = submit();
  auto y = submit({x});
  auto z = submit({y});
  Launch ly = take_launch(*a, y);
  Launch lz = take_launch(*a, z);
  come_back_not_started(ly);
  come_back_not_started(lz);
  core->flush();
  auto w = submit({z});  // z waits in the kernel: w waits too
  EXPECT_EQ(w->state(), TaskState::pending);
  finish_next(*a, Outcome::success(1));  // x
  Launch y2 = take_launch(*a, y);
  Launch z2 = take_launch(*a, z);
  Launch w2 = take_launch(*a, w);
  EXPECT_FALSE(y2.follower);
  EXPECT_TRUE(z2.follower);
  EXPECT_TRUE(w2.follower);
  EXPECT_EQ(z->state(), TaskState::launched);
  core->complete(Completion{y, y2.try_id, Outcome::success(2)});
  core->complete(Completion{z, z2.try_id, Outcome::success(3)});
  core->complete(Completion{w, w2.try_id, Outcome::success(4)});
  EXPECT_TRUE(a->launched.empty()) << "a follower was launched a second time";
  EXPECT_EQ(std::any_cast<int>(w->value()), 4);
  EXPECT_EQ(core->live_tasks(), 0u);
}

TEST_F(KernelCoreTest, TaskLaunchedAfterWaitingGetsOneOfItsWaitingDependentsAsFollower) {
  a->followers = true;
  make();
  auto p = submit();
  auto x = submit({p});   // follows p
  auto y1 = submit({x});  // follows x
  auto y2 = submit({x});  // x has its follower: waits
  Launch lx = take_launch(*a, x);
  Launch ly1 = take_launch(*a, y1);
  come_back_not_started(lx);
  come_back_not_started(ly1);
  core->flush();
  EXPECT_EQ(y1->state(), TaskState::pending);
  EXPECT_EQ(y2->state(), TaskState::pending);
  finish_next(*a, Outcome::success(1));  // p: x is launched, and one of y1, y2 follows it
  EXPECT_FALSE(take_launch(*a, x).follower);
  ASSERT_EQ(a->launched.size(), 1u);
  EXPECT_TRUE(a->launched.front().follower);
  EXPECT_EQ(a->launched.front().task, y1);
  EXPECT_EQ(y2->state(), TaskState::pending);
}

TEST_F(KernelCoreTest, TaskNotStartedAsFollowerLeavesItsInputFreeForAnother) {
  a->followers = true;
  make();
  auto x = submit();
  auto y = submit({x});
  Launch ly = take_launch(*a, y);
  come_back_not_started(ly);
  core->flush();
  auto v = submit({x});  // x has no follower any more
  EXPECT_TRUE(take_launch(*a, v).follower);
}

TEST_F(KernelCoreTest, FollowerOfAFailedInputGetsDependencyErrorAndIsWithdrawn) {
  a->followers = true;
  make();
  auto x = submit();
  auto y = submit({x});
  auto z = submit({y});
  Launch ly = take_launch(*a, y);
  Launch lz = take_launch(*a, z);
  finish_next(*a, Outcome::failure(boom()));  // x
  EXPECT_EQ(y->state(), TaskState::dep_fail);
  EXPECT_EQ(z->state(), TaskState::dep_fail);
  EXPECT_THROW(std::rethrow_exception(y->error()), DependencyError);
  // Both were on the executor: it is asked to stop them.
  ASSERT_EQ(a->cancelled.size(), 2u);
  EXPECT_EQ(a->cancelled[0], (std::pair{y->id(), ly.try_id}));
  EXPECT_EQ(a->cancelled[1], (std::pair{z->id(), lz.try_id}));
  // Whatever comes back for them later is ignored.
  come_back_not_started(ly);
  EXPECT_EQ(y->state(), TaskState::dep_fail);
  EXPECT_EQ(core->live_tasks(), 0u);
}

TEST_F(KernelCoreTest, FollowerStillInTheOutboxIsDroppedWhenItsInputFails) {
  a->followers = true;
  make();
  auto x = submit();
  TaskSpec spec;
  spec.body = std::make_shared<NoopBody>();
  spec.dependencies = {x};
  spec.executors = {"a"};
  auto y = std::make_shared<TaskRecord>(TaskId{next_id++}, std::move(spec));
  core->submit(y);  // launched as a follower, not flushed yet
  Launch lx = take_launch(*a, x);
  core->complete(Completion{x, lx.try_id, Outcome::failure(boom())});
  core->flush();
  EXPECT_EQ(y->state(), TaskState::dep_fail);
  EXPECT_TRUE(a->launched.empty()) << "a follower whose input failed was handed over";
  EXPECT_TRUE(a->cancelled.empty());
}

TEST_F(KernelCoreTest, FollowerRetriedAfterItsInputWasRetried) {
  a->followers = true;
  make(/*retries=*/1);
  auto x = submit();
  auto y = submit({x});
  Launch ly = take_launch(*a, y);
  finish_next(*a, Outcome::failure(boom()));  // x, first try: retried
  EXPECT_EQ(x->state(), TaskState::launched);
  EXPECT_EQ(y->state(), TaskState::launched);  // still a follower of x
  come_back_not_started(ly);  // its pool saw x fail
  core->flush();
  EXPECT_EQ(y->state(), TaskState::pending);
  finish_next(*a, Outcome::success(5));  // x, second try
  Launch again = take_launch(*a, y);
  EXPECT_FALSE(again.follower);
  EXPECT_EQ(y->fail_count(), 0);  // not starting is not a failure
}

TEST_F(KernelCoreTest, FollowerThatFailsBeforeItsInputCompletesWaitsToBeRetried) {
  a->followers = true;
  make(/*retries=*/1);
  auto x = submit();
  auto y = submit({x});
  Launch ly = take_launch(*a, y);
  core->complete(Completion{y, ly.try_id, Outcome::failure(boom())});  // y ran and raised first
  core->flush();
  EXPECT_EQ(y->state(), TaskState::fail_retryable);
  EXPECT_TRUE(std::none_of(a->launched.begin(), a->launched.end(), [&](const Launch& l) { return l.task == y; }))
      << "relaunched before its input's value is in the kernel";
  finish_next(*a, Outcome::success(5));  // x
  Launch again = take_launch(*a, y);
  EXPECT_FALSE(again.follower);
}

TEST_F(KernelCoreTest, CancelledFollowerIsStoppedOnItsExecutor) {
  a->followers = true;
  make();
  auto x = submit();
  auto y = submit({x});
  Launch ly = take_launch(*a, y);
  EXPECT_TRUE(core->cancel(y));
  EXPECT_EQ(y->state(), TaskState::cancelled);
  ASSERT_EQ(a->cancelled.size(), 1u);
  EXPECT_EQ(a->cancelled[0], (std::pair{y->id(), ly.try_id}));
  finish_next(*a, Outcome::success(1));  // x
  EXPECT_TRUE(a->launched.empty());
}

TEST_F(KernelCoreTest, NoFollowerWhereThePoolCannotDoItAlone) {
  a->followers = true;
  make();
  auto x = submit();
  auto x2 = submit();
  auto on_b = submit({}, {"b"});
  const std::size_t before = a->launched.size() + b->launched.size();
  auto timed = submit({x}, {"a"}, /*walltime=*/5);  // its clock would start before it can
  auto two = submit({x2, on_b}, {"a"});             // two inputs still to come
  auto other = submit({on_b}, {"a"});               // its input runs on another executor
  auto any = submit({x2}, {"a", "b"});              // may run on either executor
  for (const auto& t : {timed, two, other, any}) EXPECT_EQ(t->state(), TaskState::pending) << t->id().value;
  EXPECT_EQ(a->launched.size() + b->launched.size(), before);
  // An executor that does not accept followers never gets one.
  b->followers = false;
  auto after_b = submit({on_b}, {"b"});
  EXPECT_EQ(after_b->state(), TaskState::pending);
}
