// PoolCore driven directly: workers are ranks that the test declares started, ready, finished
// or dead; time is a variable. No processes, no sockets, no sleeps.
#include <gtest/gtest.h>

#include <map>
#include <optional>
#include <string>
#include <vector>

#include "pool/node_ledger.hpp"
#include "pool/pool_core.hpp"
#include "pool_core_harness.hpp"

using namespace pervade;
using namespace pervade::pool;
using namespace std::chrono_literals;

namespace {

class PoolCoreTest : public ::testing::Test {
 protected:
  PoolCoreTest() : core(PoolCoreConfig{"pool-a", 2, true}) {}

  // Starts and readies every worker slot.
  void ready_all(int n = 2) {
    for (int r = 0; r < n; ++r) {
      core.worker_started(r);
      core.worker_ready(r);
    }
  }

  static protocol::Task task(std::uint64_t id, std::size_t payload_size = 8) {
    protocol::Task t;
    t.task_id = id;
    t.kind = protocol::kKindPython;
    t.fn_hash = "h";
    t.payload = std::string(payload_size, 'p');
    return t;
  }

  void submit(std::vector<protocol::Task> tasks, bool with_fn = true) {
    protocol::Tasks m;
    m.tasks = std::move(tasks);
    if (with_fn && !fn_given_) {
      m.tasks.front().fn = "fn-bytes";
      fn_given_ = true;
    }
    core.accept(m);
  }

  void submit_ids(std::initializer_list<std::uint64_t> ids) {
    std::vector<protocol::Task> ts;
    for (auto id : ids) ts.push_back(task(id));
    submit(std::move(ts));
  }

  void accept_shell(std::uint64_t id, std::string command) {
    protocol::Task t;
    t.task_id = id;
    t.kind = protocol::kKindShell;
    t.payload = std::move(command);
    protocol::Tasks m{{t}};
    core.accept(m);
  }

  // (rank, task id) of what dispatch() hands out now.
  std::vector<std::pair<int, std::uint64_t>> dispatch() {
    core.dispatch(now);
    std::vector<std::pair<int, std::uint64_t>> out;
    for (auto& s : core.sends()) out.emplace_back(s.rank, s.task.task_id);
    core.sends().clear();
    return out;
  }

  // The worker finishes the task it runs, `took` after it started.
  void finish(int rank, int status = protocol::kStatusOk, Clock::duration took = 1us, std::string value = "v") {
    now += took;
    auto id = core.running(rank);
    ASSERT_TRUE(id.has_value());
    ASSERT_TRUE(core.expects_result(rank, *id));
    core.worker_result(rank, protocol::WorkerResult{*id, status, value}, now);
  }

  // One short task on each of two workers, so that both hold several tasks from then on.
  void finish_first_round_quickly() {
    submit_ids({1, 2});
    dispatch();
    finish(0);
    finish(1);
    results();
  }

  // Results since the last call: (task id, status).
  std::vector<std::pair<std::uint64_t, int>> results() {
    std::vector<std::pair<std::uint64_t, int>> out;
    for (auto& r : core.results()) out.emplace_back(r.task_id, r.status);
    last_payloads.clear();
    for (auto& r : core.results()) last_payloads.push_back(r.payload);
    core.results().clear();
    return out;
  }

  PoolCore core;
  TimePoint now{};
  std::vector<std::string> last_payloads;
  bool fn_given_ = false;
};

using Sends = std::vector<std::pair<int, std::uint64_t>>;
using Results = std::vector<std::pair<std::uint64_t, int>>;

TEST_F(PoolCoreTest, WorkersThatAreNotReadyGetNothing) {
  submit_ids({1, 2});
  EXPECT_TRUE(dispatch().empty());
  core.worker_started(0);
  EXPECT_TRUE(dispatch().empty());
  core.worker_ready(0);
  EXPECT_EQ(dispatch(), (Sends{{0, 1}}));  // a fresh worker holds one task: its pace is unknown
  EXPECT_EQ(core.queued(), 1u);
}

TEST_F(PoolCoreTest, IdleWorkersEachGetATaskBeforeAnyGetsASecond) {
  ready_all();
  finish_first_round_quickly();
  submit_ids({10, 11, 12, 13});
  // Both ran a short task: round 1 gives each one task, round 2 a second each.
  EXPECT_EQ(dispatch(), (Sends{{0, 10}, {1, 11}, {0, 12}, {1, 13}}));
}

TEST_F(PoolCoreTest, ShortTasksFillTheWorkerUpToItsBudgetAndLongTasksDoNot) {
  ready_all(1);
  submit_ids({1});
  EXPECT_EQ(dispatch(), (Sends{{0, 1}}));
  finish(0, protocol::kStatusOk, 100us);  // 1 ms budget / 100 us + 1 = 11 tasks
  std::vector<protocol::Task> many;
  for (std::uint64_t id = 2; id < 40; ++id) many.push_back(task(id));
  submit(std::move(many));
  EXPECT_EQ(dispatch().size(), 11u);
  // Topped up only once it is down to half: one result does not trigger a write of one task.
  finish(0, protocol::kStatusOk, 100us);
  EXPECT_TRUE(dispatch().empty());
  for (int i = 0; i < 5; ++i) finish(0, protocol::kStatusOk, 100us);
  EXPECT_EQ(dispatch().size(), 6u);  // 5 held, back to 11
  // A long task: from then on one task at a time.
  for (int i = 0; i < 10; ++i) finish(0, protocol::kStatusOk, 100us);
  finish(0, protocol::kStatusOk, 50ms);
  EXPECT_TRUE(core.running(0) == std::nullopt);
  EXPECT_EQ(dispatch().size(), 1u);
}

TEST_F(PoolCoreTest, ABigTaskIsNeverHeldSecond) {
  ready_all(1);
  submit_ids({1});
  dispatch();
  finish(0);  // short: the worker could hold several
  std::vector<protocol::Task> ts{task(2), task(3, kPipelineMaxBytes + 1), task(4)};
  submit(std::move(ts));
  EXPECT_EQ(dispatch(), (Sends{{0, 2}}));  // 3 is too big to wait in the socket; 4 keeps its place
  finish(0);
  EXPECT_EQ(dispatch(), (Sends{{0, 3}, {0, 4}}));
}

TEST_F(PoolCoreTest, FunctionsAreSentOncePerWorkerProcess) {
  ready_all(1);
  submit_ids({1, 2});
  core.dispatch(now);
  ASSERT_EQ(core.sends().size(), 1u);
  EXPECT_TRUE(core.sends()[0].task.fn.has_value());
  EXPECT_TRUE(core.sends()[0].starts);
  core.sends().clear();
  finish(0, protocol::kStatusOk, 20ms);
  core.dispatch(now);
  ASSERT_EQ(core.sends().size(), 1u);
  EXPECT_FALSE(core.sends()[0].task.fn.has_value());
  core.sends().clear();
  core.worker_died(0, "worker 0 (pid 9) died with signal 9", "");
  core.worker_started(0);  // a new process knows no function
  core.worker_ready(0);
  submit_ids({3});
  core.dispatch(now);
  ASSERT_EQ(core.sends().size(), 1u);
  EXPECT_TRUE(core.sends()[0].task.fn.has_value());
  core.sends().clear();
}

TEST_F(PoolCoreTest, ADeadWorkersTaskFailsAndWhatItHeldGoesBackInOrder) {
  ready_all();
  finish_first_round_quickly();
  submit_ids({10, 11, 12, 13, 14, 15});
  dispatch();  // 0: 10, 12, 14; 1: 11, 13, 15
  core.worker_unavailable(0);
  EXPECT_EQ(core.worker_died(0, "worker 0 (pid 5) died with signal 9", "writing failed"), DeathOutcome::lost);
  Results r = results();
  ASSERT_EQ(r, (Results{{10, protocol::kStatusWorkerLost}}));
  EXPECT_EQ(last_payloads[0],
            "worker 0 (pid 5) died with signal 9 while running task 10 (the pool killed it: writing failed)");
  EXPECT_EQ(core.queued(), 2u);
  // The dead slot takes nothing; worker 1 gets them from the front of the queue, in their order.
  EXPECT_EQ(dispatch(), (Sends{{1, 12}, {1, 14}}));
}

TEST_F(PoolCoreTest, ResultsFromAWorkerForAnotherTaskAreRefused) {
  ready_all(1);
  submit_ids({1});
  dispatch();
  EXPECT_FALSE(core.expects_result(0, 2));
  EXPECT_TRUE(core.expects_result(0, 1));
}

TEST_F(PoolCoreTest, CancelAQueuedTaskAnswersAtOnce) {
  submit_ids({1});
  int rank = -1;
  EXPECT_EQ(core.cancel(1, &rank), CancelOutcome::answered);
  EXPECT_EQ(results(), (Results{{1, protocol::kStatusCancelled}}));
  EXPECT_EQ(core.cancel(1, &rank), CancelOutcome::not_here);
}

TEST_F(PoolCoreTest, CancelARunningTaskKillsItsWorkerAndAnswersCancelled) {
  ready_all(1);
  submit_ids({1});
  dispatch();
  int rank = -1;
  ASSERT_EQ(core.cancel(1, &rank), CancelOutcome::on_worker);
  EXPECT_EQ(rank, 0);
  auto why = core.stop_if_cancelled(0);
  ASSERT_TRUE(why.has_value());
  EXPECT_EQ(*why, "its task 1 was cancelled");
  EXPECT_FALSE(core.stop_if_cancelled(0).has_value());  // once
  submit_ids({2});
  EXPECT_TRUE(dispatch().empty());  // a worker being killed takes nothing
  EXPECT_EQ(core.worker_died(0, "worker 0 (pid 3) died with signal 9", *why), DeathOutcome::cancelled);
  EXPECT_EQ(results(), (Results{{1, protocol::kStatusCancelled}}));
}

TEST_F(PoolCoreTest, CancelOfAHeldTaskStopsItWhenItStartsAndAFinishedOneIsNotStopped) {
  ready_all(1);
  submit_ids({1});
  dispatch();
  finish(0);
  submit_ids({2, 3});
  EXPECT_EQ(dispatch(), (Sends{{0, 2}, {0, 3}}));
  int rank = -1;
  ASSERT_EQ(core.cancel(3, &rank), CancelOutcome::on_worker);
  EXPECT_FALSE(core.stop_if_cancelled(0).has_value());  // 2 runs: 3 is only held
  finish(0);                                            // 2 done: 3 starts now
  EXPECT_TRUE(core.stop_if_cancelled(0).has_value());
  EXPECT_EQ(core.cancel(1, &rank), CancelOutcome::not_here);  // finished long ago
  results();
  EXPECT_EQ(core.worker_died(0, "w", "its task 3 was cancelled"), DeathOutcome::cancelled);
  EXPECT_EQ(results(), (Results{{3, protocol::kStatusCancelled}}));
}

TEST_F(PoolCoreTest, ACancelledTaskThatFinishesFirstKeepsItsResult) {
  ready_all(1);
  submit_ids({1});
  dispatch();
  int rank = -1;
  ASSERT_EQ(core.cancel(1, &rank), CancelOutcome::on_worker);
  finish(0);  // the worker's result was already in its socket
  EXPECT_FALSE(core.stop_if_cancelled(0).has_value());
  EXPECT_EQ(results(), (Results{{1, protocol::kStatusOk}}));
  EXPECT_FALSE(core.cancels_pending());
}

// Each result says how long its task ran (the interchange judges short tasks by it, not by
// the round trip): a worker's task from when it started (sent to an idle worker, or when the
// task before it on that worker ended) to its result; a shell command as its runner timed it;
// none for a task that did not run to its end here.
TEST_F(PoolCoreTest, ResultsSayHowLongTheirTasksRan) {
  ready_all(1);
  auto run_times = [&] {
    std::map<std::uint64_t, std::optional<std::chrono::microseconds>> out;
    for (auto& r : core.results()) out[r.task_id] = r.run_time;
    core.results().clear();
    return out;
  };
  submit_ids({1});
  now += 5s;  // it waited in the pool's queue: not counted
  dispatch();
  finish(0, protocol::kStatusOk, 3ms);
  EXPECT_EQ(run_times()[1], std::chrono::microseconds(3000));
  submit_ids({2, 3});
  EXPECT_EQ(dispatch(), (Sends{{0, 2}, {0, 3}}));  // 3 waits in the worker's socket behind 2
  finish(0, protocol::kStatusException, 40us);
  finish(0, protocol::kStatusOk, 12ms);
  auto got = run_times();
  EXPECT_EQ(got[2], std::chrono::microseconds(40)) << "a failed task ran too";
  EXPECT_EQ(got[3], std::chrono::microseconds(12000)) << "from when 2 ended, not from when it was sent";

  submit_ids({4});
  dispatch();
  int rank = -1;
  ASSERT_EQ(core.cancel(4, &rank), CancelOutcome::on_worker);
  ASSERT_TRUE(core.stop_if_cancelled(0).has_value());
  now += 1s;
  EXPECT_EQ(core.worker_died(0, "w", "its task 4 was cancelled"), DeathOutcome::cancelled);
  EXPECT_FALSE(run_times().at(4).has_value()) << "killed: it did not run to its end";

  submit_ids({6});
  ASSERT_EQ(core.cancel(6, &rank), CancelOutcome::answered);
  EXPECT_FALSE(run_times().at(6).has_value()) << "cancelled before it started";

  accept_shell(7, "cmd");
  core.shell_result(protocol::TaskResult{7, protocol::kStatusOk, "0", {}, 2s}, true);
  EXPECT_EQ(run_times().at(7), std::chrono::microseconds(2'000'000)) << "as the shell runner timed it";
}

TEST_F(PoolCoreTest, AFollowerRunsNextOnTheWorkerOfItsInputWithItsValue) {
  ready_all();
  submit_ids({1});
  EXPECT_EQ(dispatch(), (Sends{{0, 1}}));
  protocol::Task f = task(2);
  f.inputs = {"", "x"};
  f.after = {protocol::After{0, 1}};
  submit({f});
  // Sent to worker 0 as its next task (worker 1 is idle but cannot run it before 1 ends).
  core.dispatch(now);
  ASSERT_EQ(core.sends().size(), 1u);
  EXPECT_EQ(core.sends()[0].rank, 0);
  EXPECT_EQ(core.sends()[0].task.after.size(), 1u);  // the worker takes the value it has
  core.sends().clear();
  finish(0, protocol::kStatusOk, 1s);
  EXPECT_EQ(core.running(0), std::optional<std::uint64_t>(2));
}

TEST_F(PoolCoreTest, AHeldFollowerGetsTheValueOrComesBackNotStarted) {
  ready_all(1);
  submit_ids({1});
  dispatch();
  finish(0, protocol::kStatusOk, 50ms);  // long: no second task
  submit_ids({2});
  dispatch();  // 2 runs
  results();
  protocol::Task f = task(3);
  f.inputs = {""};
  f.after = {protocol::After{0, 4}};  // 4 is queued behind nothing: not here
  submit({f});
  EXPECT_EQ(results(), (Results{{3, protocol::kStatusNotStarted}}));
  submit_ids({4});  // queued: worker busy
  protocol::Task g = task(5);
  g.inputs = {""};
  g.after = {protocol::After{0, 4}};
  protocol::Task h = task(6);
  h.inputs = {""};
  h.after = {protocol::After{0, 4}};
  submit({g, h});
  finish(0, protocol::kStatusOk, 50ms);                    // 2 done
  EXPECT_EQ(dispatch(), (Sends{{0, 4}, {0, 5}}));           // 5 follows 4 on its worker
  finish(0, protocol::kStatusOk, 50ms, "value-of-4");      // 4 done: 6 gets its value here
  finish(0);                                               // 5
  results();
  core.dispatch(now);
  ASSERT_EQ(core.sends().size(), 1u);
  EXPECT_EQ(core.sends()[0].task.task_id, 6u);
  EXPECT_EQ(core.sends()[0].task.inputs[0], "value-of-4");
  EXPECT_TRUE(core.sends()[0].task.after.empty());
  core.sends().clear();
  // A follower held here (its input's worker holds another task after it) whose input fails
  // comes back not started.
  finish(0);  // 6
  results();
  submit_ids({7, 9});
  EXPECT_EQ(dispatch(), (Sends{{0, 7}, {0, 9}}));
  protocol::Task k = task(8);
  k.inputs = {""};
  k.after = {protocol::After{0, 7}};
  submit({k});
  EXPECT_TRUE(dispatch().empty());
  finish(0, protocol::kStatusException);
  Results r = results();
  EXPECT_EQ(r, (Results{{8, protocol::kStatusNotStarted}, {7, protocol::kStatusException}}));
}

TEST_F(PoolCoreTest, AFollowerOfATaskThatFinishedHereUsesItsRememberedValue) {
  ready_all(1);
  submit_ids({1});
  dispatch();
  finish(0, protocol::kStatusOk, 1us, "one");
  protocol::Task f = task(2);
  f.inputs = {""};
  f.after = {protocol::After{0, 1}};
  submit({f});
  core.dispatch(now);
  ASSERT_EQ(core.sends().size(), 1u);
  EXPECT_EQ(core.sends()[0].task.inputs[0], "one");
  EXPECT_TRUE(core.sends()[0].task.after.empty());
  core.sends().clear();
}

TEST_F(PoolCoreTest, ShellCommandsGoToTheRunnerAndCountUntilTheirResult) {
  accept_shell(1, "cmd");
  ASSERT_EQ(core.shell_starts().size(), 1u);
  EXPECT_EQ(core.shell_starts()[0].payload, "cmd");
  core.shell_starts().clear();
  int rank = -1;
  EXPECT_EQ(core.cancel(1, &rank), CancelOutcome::on_shell);
  core.drain();
  EXPECT_FALSE(core.drained());
  core.shell_result(protocol::TaskResult{1, protocol::kStatusOk, "0"}, true);
  EXPECT_FALSE(core.drained());  // its result is still to be sent
  results();
  EXPECT_TRUE(core.drained());
}

TEST_F(PoolCoreTest, RefusalsNameTheReason) {
  PoolCore shell_only(PoolCoreConfig{"p", 0, false});
  protocol::Tasks m{{task(1)}};
  shell_only.accept(m);
  ASSERT_EQ(shell_only.results().size(), 1u);
  EXPECT_EQ(shell_only.results()[0].status, protocol::kStatusWorkerLost);
  EXPECT_EQ(shell_only.results()[0].payload, "pool p runs no Python workers (--no-python)");

  submit({task(2)}, /*with_fn=*/false);
  protocol::Task odd = task(3);
  odd.kind = 7;
  submit({odd}, false);
  core.drain();
  submit_ids({4});
  results();
  EXPECT_EQ(last_payloads, (std::vector<std::string>{"pool pool-a never received the function with hash 68",
                                                     "pool pool-a does not know task kind 7",
                                                     "pool pool-a is draining and accepts no more tasks"}));
}

}  // namespace

namespace {

TEST(NodeLedgerTest, GrantsTheLowestFreeCpusAndFirstFreeAcceleratorsAndTakesThemBack) {
  NodeLedger node(NodeCapacity{{3, 0, 2, 1}, 1000, {"a", "b", "c"}});
  EXPECT_TRUE(node.could_hold(ResourceRequest{4, 1000, 3}));
  EXPECT_FALSE(node.could_hold(ResourceRequest{5, 0, 0}));
  EXPECT_FALSE(node.could_hold(ResourceRequest{1, 1001, 0}));
  EXPECT_FALSE(node.could_hold(ResourceRequest{1, 0, 4}));
  Grant g1 = node.take(ResourceRequest{2, 600, 2});
  EXPECT_EQ(g1.cpus, (std::vector<int>{0, 1}));
  EXPECT_EQ(g1.accelerators, (std::vector<std::string>{"a", "b"}));
  EXPECT_FALSE(node.fits_now(ResourceRequest{1, 500, 0}));  // memory
  EXPECT_FALSE(node.fits_now(ResourceRequest{3, 0, 0}));    // cores
  EXPECT_FALSE(node.fits_now(ResourceRequest{0, 0, 2}));    // GPUs
  Grant g2 = node.take(ResourceRequest{1, 400, 1});
  EXPECT_EQ(g2.cpus, (std::vector<int>{2}));
  EXPECT_EQ(g2.accelerators, (std::vector<std::string>{"c"}));
  node.give_back(std::move(g1));
  Grant g3 = node.take(ResourceRequest{3, 0, 2});
  EXPECT_EQ(g3.cpus, (std::vector<int>{0, 1, 3}));
  EXPECT_EQ(g3.accelerators, (std::vector<std::string>{"a", "b"}));
  EXPECT_EQ(describe(ResourceRequest{1, 20, 1}), "1 core, 20 MB, 1 GPU");
}

}  // namespace

namespace {

// A pool of `workers` workers on one node with 4 CPUs (0-3), 1000 MB and accelerators a, b.
class PoolCoreResourcesTest : public ::testing::Test, public PoolCoreHarness {
 protected:
  explicit PoolCoreResourcesTest(int workers = 4)
      : PoolCoreHarness(PoolCoreConfig{"p", workers, true, {NodeCapacity{{0, 1, 2, 3}, 1000, {"a", "b"}}}, {}, true}) {}

  void submit(std::uint64_t id, protocol::Resources r) {
    protocol::Task t = python_task(id);
    t.resources = r;
    accept(std::move(t));
  }
};

TEST_F(PoolCoreResourcesTest, ATaskStartsOnlyWhenItsNodeHasAllItAsksForAndGetsItsOwnCpusAndAccelerators) {
  submit(1, {3, 600, 1});
  submit(2, {2, 100, 0});  // 1 core left: waits
  submit(3, {1, 500, 0});  // memory: 400 MB left: waits
  submit(4, {1, 100, 1});  // fits
  auto sent = dispatch();
  ASSERT_EQ(sent.size(), 2u);
  EXPECT_EQ(sent[0].task_id, 1u);
  EXPECT_EQ(sent[0].cpus, (std::vector<int>{0, 1, 2}));
  EXPECT_EQ(sent[0].accelerators, (std::vector<std::string>{"a"}));
  EXPECT_EQ(sent[1].task_id, 4u);
  EXPECT_EQ(sent[1].cpus, (std::vector<int>{3}));
  EXPECT_EQ(sent[1].accelerators, (std::vector<std::string>{"b"}));
  EXPECT_TRUE(dispatch().empty());
  finish(1);  // gives back 0-2, 600 MB, a
  sent = dispatch();
  ASSERT_EQ(sent.size(), 2u);
  EXPECT_EQ(sent[0].task_id, 2u);
  EXPECT_EQ(sent[0].cpus, (std::vector<int>{0, 1}));
  EXPECT_TRUE(sent[0].accelerators.empty());
  EXPECT_EQ(sent[1].task_id, 3u);
  EXPECT_EQ(sent[1].cpus, (std::vector<int>{2}));
}

TEST_F(PoolCoreResourcesTest, ATaskNoNodeCanHoldFailsAtOnceNamingItsRequestAndTheLargestNode) {
  submit(1, {8, 0, 0});
  ASSERT_EQ(core.results().size(), 1u);
  EXPECT_EQ(core.results()[0].status, protocol::kStatusInvalid);
  EXPECT_EQ(core.results()[0].payload,
            "cores\nthe task asks for 8 cores, 0 MB, 0 GPUs, more than any node of pool p has (the largest: 4 cores, "
            "1000 MB, 2 GPUs)");
  EXPECT_EQ(core.queued(), 0u);
}

TEST_F(PoolCoreResourcesTest, ADeadWorkerOrACancelGivesItsResourcesBack) {
  submit(1, {4, 0, 0});
  submit(2, {4, 0, 0});
  submit(3, {4, 0, 0});
  ASSERT_EQ(dispatch().size(), 1u);
  int rank = -1;
  EXPECT_EQ(core.cancel(3, &rank), CancelOutcome::answered);
  core.worker_unavailable(rank_of.at(1));
  core.worker_died(rank_of.at(1), "worker 0 (pid 1) died with signal 9", "");
  auto sent = dispatch();
  ASSERT_EQ(sent.size(), 1u);
  EXPECT_EQ(sent[0].task_id, 2u);
  EXPECT_EQ(sent[0].cpus, (std::vector<int>{0, 1, 2, 3}));
}

TEST_F(PoolCoreResourcesTest, SmallTasksPassABigOneThatDoesNotFitButOnlyAFewTimes) {
  submit(1, {1, 0, 0});
  ASSERT_EQ(dispatch().size(), 1u);
  submit(2, {4, 0, 0});  // the big one: 3 cores free
  for (std::uint64_t id = 3; id < 200; ++id) submit(id, {1, 0, 0});
  std::vector<std::uint64_t> running{1};
  std::size_t passed = 0;
  bool big_started = false;
  for (int round = 0; round < 400 && !big_started; ++round) {
    for (const auto& t : dispatch()) {
      if (t.task_id == 2) {
        big_started = true;
        EXPECT_TRUE(running.empty());
        EXPECT_EQ(t.cpus, (std::vector<int>{0, 1, 2, 3}));
      } else {
        ++passed;
        running.push_back(t.task_id);
      }
    }
    if (!running.empty()) {
      finish(running.front());
      running.erase(running.begin());
    }
  }
  EXPECT_TRUE(big_started);
  EXPECT_EQ(passed, kMaxPasses);
  finish(2);
  EXPECT_EQ(dispatch().size(), 4u);  // the small ones again
}

TEST_F(PoolCoreResourcesTest, OrdinaryTasksDoNotCountAndWaitingResourceTasksGetIdleWorkersFirst) {
  protocol::Task plain;
  plain.task_id = 1;
  plain.kind = protocol::kKindPython;
  plain.fn_hash = "h";
  plain.fn = "fn";
  protocol::Tasks m{{plain}};
  core.accept(m);
  submit(2, {4, 1000, 2});
  auto sent = dispatch();
  ASSERT_EQ(sent.size(), 2u);
  EXPECT_EQ(sent[0].task_id, 2u);  // placed first
  EXPECT_EQ(sent[1].task_id, 1u);
  EXPECT_TRUE(sent[1].cpus.empty());
}

}  // namespace

namespace {

// A pool whose block ends: it stops running tasks at `stop` (its walltime less the grace).
class PoolCoreWalltimeTest : public PoolCoreTest {
 protected:
  PoolCoreWalltimeTest() {
    PoolCoreConfig c{"pool-w", 3, true, {NodeCapacity{{0, 1}, 1000, {}}}};
    c.stop_tasks_at = stop;
    core = PoolCore(c);
    ready_all(3);
  }
  static protocol::Task timed(std::uint64_t id, double running_time, int cores = 0) {
    protocol::Task t = task(id);
    t.resources.running_time = running_time;
    t.resources.cores = cores;
    return t;
  }
  std::map<std::uint64_t, protocol::TaskResult> results_by_id() {
    std::map<std::uint64_t, protocol::TaskResult> out;
    for (auto& r : core.results()) out[r.task_id] = r;
    core.results().clear();
    return out;
  }
  TimePoint stop = TimePoint{} + 100s;
};

TEST_F(PoolCoreWalltimeTest, ATaskThatCannotEndBeforeTheBlockDoesIsNotStartedAndGoesBackToTheDriver) {
  now = TimePoint{} + 40s;
  // 60 s left: 60 fits exactly, 61 does not, a task without a running_time always starts;
  // the same holds for tasks that ask for cores.
  submit({timed(1, 60), timed(2, 61), task(3), timed(4, 61, 1), timed(5, 30, 1)});
  const auto sent = dispatch();
  std::vector<std::uint64_t> ids;
  for (auto [rank, id] : sent) ids.push_back(id);
  std::sort(ids.begin(), ids.end());
  EXPECT_EQ(ids, (std::vector<std::uint64_t>{1, 3, 5}));
  auto results = results_by_id();
  ASSERT_EQ(results.size(), 2u);
  for (std::uint64_t id : {2u, 4u}) {
    EXPECT_EQ(results.at(id).status, protocol::kStatusNotStarted);
    EXPECT_NE(results.at(id).payload.find("pool pool-w stops running tasks in 60.0 s"), std::string::npos)
        << results.at(id).payload;
  }
  EXPECT_TRUE(core.queued() == 0);
}

TEST_F(PoolCoreWalltimeTest, TheCheckIsMadeWhenTheTaskWouldStartNotWhenItArrived) {
  now = TimePoint{} + 10s;
  submit({task(1), task(2), task(5), timed(3, 50)});  // three workers busy: 3 waits
  EXPECT_EQ(dispatch().size(), 3u);
  finish(0, protocol::kStatusOk, 45s);  // now 55 s: 45 s left, 3 cannot end in time any more
  results();
  EXPECT_TRUE(dispatch().empty());
  auto r = results_by_id();
  ASSERT_EQ(r.size(), 1u);
  EXPECT_EQ(r.at(3).status, protocol::kStatusNotStarted);
  // After the stop, a task with a running_time never starts.
  now = stop + 1s;
  submit({timed(4, 0.001)});
  EXPECT_TRUE(dispatch().empty());
  EXPECT_EQ(results_by_id().at(4).status, protocol::kStatusNotStarted);
}

}  // namespace
