// The interchange's dispatcher driven directly: fake pools are identities that send typed
// messages; time is a variable. No sockets, no sleeps.
#include <gtest/gtest.h>

#include <algorithm>
#include <map>
#include <numeric>
#include <memory>

#include "interchange/dispatcher.hpp"

using namespace pervade;
using namespace pervade::interchange;
using namespace std::chrono_literals;

namespace {

class DispatcherTest : public ::testing::Test {
 protected:
  // Capacity is exactly workers + prefetch here; short_task_prefetch has its own test.
  DispatcherTest() : d(DispatcherConfig{10, 30, "0.1.0", "3.11.7", 7, 0}) {}

  void register_pool(const std::string& identity, int workers, int prefetch = 0, std::string python = "3.11.2") {
    protocol::Register r;
    r.pervade_version = "0.1.0";
    r.python_version = std::move(python);
    r.pool_id = identity;
    r.block_id = "0";
    r.hostname = "localhost";
    r.worker_count = workers;
    r.prefetch = prefetch;
    d.on_message(identity, r, now);
  }

  DispatchTask task(std::uint64_t id, int priority = 0) {
    DispatchTask t;
    t.task_id = id;
    t.fn_hash = "h";
    t.payload = "p" + std::to_string(id);
    t.priority = priority;
    return t;
  }

  // Task ids sent to `identity` in TASKS messages since the last call.
  std::vector<std::uint64_t> sent_to(const std::string& identity) {
    std::vector<std::uint64_t> ids;
    for (auto& [to, m] : d.take_outbox())
      if (to == identity)
        if (auto* t = std::get_if<protocol::Tasks>(&m))
          for (auto& x : t->tasks) ids.push_back(x.task_id);
    return ids;
  }

  void result(const std::string& identity, std::uint64_t id, int status = protocol::kStatusOk) {
    d.on_message(identity, protocol::Results{{protocol::TaskResult{id, status, "r"}}}, now);
  }

  // Another dispatcher, with short_task_prefetch 4, and pool "a" of 2 workers registered.
  std::unique_ptr<Dispatcher> short_task_pool() {
    auto fast = std::make_unique<Dispatcher>(DispatcherConfig{10, 30, "0.1.0", "3.11.7", 7, 4});
    protocol::Register r;
    r.pool_id = "a";
    r.worker_count = 2;
    fast->on_message("a", r, now);
    fast->take_outbox();
    return fast;
  }

  TimePoint now{};
  Dispatcher d;
};

TEST_F(DispatcherTest, RegisteredPoolGetsTasksUpToCapacity) {
  register_pool("a", 2, 1);
  auto out = d.take_outbox();
  ASSERT_EQ(out.size(), 1u);
  EXPECT_TRUE(std::holds_alternative<protocol::Registered>(out[0].second));
  for (std::uint64_t i = 0; i < 5; ++i) d.submit(task(i), now);
  EXPECT_EQ(sent_to("a"), (std::vector<std::uint64_t>{0, 1, 2}));
  EXPECT_EQ(d.queued(), 2u);
  EXPECT_EQ(d.in_flight(), 3u);
  result("a", 1);
  EXPECT_EQ(sent_to("a"), (std::vector<std::uint64_t>{3}));
  auto done = d.take_completed();
  ASSERT_EQ(done.size(), 1u);
  EXPECT_EQ(done[0].task_id, 1u);
  EXPECT_EQ(done[0].payload, "r");
}

TEST_F(DispatcherTest, TasksSubmittedTogetherGoOutInOneMessage) {
  register_pool("a", 2, 2000);
  d.take_outbox();
  for (std::uint64_t i = 0; i < 1500; ++i) d.submit(task(i), now);
  auto out = d.take_outbox();
  ASSERT_EQ(out.size(), 1u);  // not one message per task: a ZeroMQ queue of them could overflow
  EXPECT_EQ(std::get<protocol::Tasks>(out[0].second).tasks.size(), 1500u);
}

// Tasks the dispatcher sent since the last call, in all its messages.
std::size_t tasks_sent(Dispatcher& d) {
  std::size_t n = 0;
  for (auto& [to, m] : d.take_outbox())
    if (auto* t = std::get_if<protocol::Tasks>(&m)) n += t->tasks.size();
  return n;
}

// A result that ran for `run_time` on the pool (as pervade-pool reports it).
protocol::Results ran(std::uint64_t id, std::chrono::microseconds run_time) {
  return protocol::Results{{protocol::TaskResult{id, protocol::kStatusOk, "r", {}, run_time}}};
}

TEST_F(DispatcherTest, PoolsWhoseTasksRunShortHoldMoreTasks) {
  auto owner = short_task_pool();
  Dispatcher& fast = *owner;
  auto sent = [&] { return tasks_sent(fast); };
  for (std::uint64_t i = 0; i < 100; ++i) fast.submit(task(i), now);
  EXPECT_EQ(sent(), 2u);  // nothing known about its tasks yet: one per worker
  now += 1ms;
  fast.on_message("a", ran(0, 900us), now);
  EXPECT_EQ(sent(), 9u);  // short tasks: 2 workers + 4 per worker, minus the one still held
  now += 50ms;            // a slow task: back to one task per worker
  fast.on_message("a", ran(1, 49ms), now);
  EXPECT_EQ(sent(), 0u);
  EXPECT_EQ(fast.in_flight(), 9u);
}

// A task id sent again while a pool holds it (the executor does not do this) belongs to the
// pool that got it last: the first pool's result is dropped and its room is free again.
TEST_F(DispatcherTest, ATaskSentAgainWhileHeldBelongsToTheLatestPool) {
  register_pool("a", 1);
  d.take_outbox();
  d.submit(task(0), now);
  ASSERT_EQ(sent_to("a"), (std::vector<std::uint64_t>{0}));
  register_pool("b", 1);
  d.submit(task(0), now);
  ASSERT_EQ(sent_to("b"), (std::vector<std::uint64_t>{0}));
  EXPECT_EQ(d.in_flight(), 1u);
  result("a", 0);
  EXPECT_TRUE(d.take_completed().empty()) << "a no longer holds it";
  d.submit(task(1), now);
  EXPECT_EQ(sent_to("a"), (std::vector<std::uint64_t>{1})) << "a's room was given back";
  result("b", 0);
  result("a", 1);
  auto done = d.take_completed();
  ASSERT_EQ(done.size(), 2u);
  EXPECT_EQ(done[0].task_id, 0u);
  EXPECT_EQ(done[1].task_id, 1u);
  EXPECT_EQ(d.in_flight(), 0u);
  const auto pools = d.pools(now);
  ASSERT_EQ(pools.size(), 2u);
  EXPECT_EQ(pools[0].in_flight + pools[1].in_flight, 0u);
}

// The pool's word on how long a task ran decides, not the round trip: with 10,000 pools a no-op
// task's result comes back seconds after its task was sent (ZeroMQ's queues, the pools' hosts,
// the interchange's own input; BENCHMARKS.md, "the pools time their tasks"), and so does the
// last of a queue of quick tasks with big arguments that waited behind one another in the pool.
TEST_F(DispatcherTest, AQuickTaskWithALongRoundTripKeepsTheBonus) {
  auto owner = short_task_pool();
  Dispatcher& fast = *owner;
  std::vector<std::uint64_t> in_pool;
  auto take = [&] {
    for (auto& [to, m] : fast.take_outbox())
      if (auto* t = std::get_if<protocol::Tasks>(&m))
        for (auto& x : t->tasks) in_pool.push_back(x.task_id);
  };
  for (std::uint64_t i = 0; i < 100; ++i) fast.submit(task(i), now);
  take();
  ASSERT_EQ(in_pool.size(), 2u);
  now += 2s;  // round trip of 2 s, run time of 5 µs
  fast.on_message("a", ran(in_pool[0], 5us), now);
  take();
  EXPECT_EQ(fast.in_flight(), 10u) << "a short task: 2 workers + 4 per worker";
  for (std::size_t k = 1; k < 6; ++k) {
    now += 2s;
    fast.on_message("a", ran(in_pool[k], 500us), now);
    take();
    EXPECT_EQ(fast.in_flight(), 10u) << "result " << k << ": still short, whatever its round trip";
  }
}

// A task that ran longer than the short-task limit (10 ms) is slow: the pool goes back to one task
// per worker (Parsl's load balance for long tasks), also when one result in a message is slow.
TEST_F(DispatcherTest, ATaskThatRanLongerThanTheShortLimitIsSlow) {
  auto owner = short_task_pool();
  Dispatcher& fast = *owner;
  auto sent = [&] { return tasks_sent(fast); };
  for (std::uint64_t i = 0; i < 100; ++i) fast.submit(task(i), now);
  EXPECT_EQ(sent(), 2u);
  now += 11ms;
  fast.on_message("a", ran(0, 10ms), now);
  EXPECT_EQ(sent(), 1u) << "10 ms is not short: one per worker";
  now += 1ms;
  fast.on_message("a", ran(1, 1ms), now);
  EXPECT_EQ(sent(), 9u) << "short again: 2 workers + 4 per worker";
  now += 30ms;
  protocol::Results mixed = ran(2, 100us);
  mixed.results.push_back(ran(3, 29ms).results[0]);
  fast.on_message("a", std::move(mixed), now);
  EXPECT_EQ(sent(), 0u) << "one of them ran 29 ms: slow";
  EXPECT_EQ(fast.in_flight(), 8u);
}

// Results of tasks that did not run to their end (refused, cancelled before they started, their
// worker died) carry no run time and say nothing of how long the pool's tasks take: a pool of
// long tasks whose queued task was cancelled does not get the bonus, nor does a pool of short
// tasks lose it.
TEST_F(DispatcherTest, ResultsWithoutARunTimeLeaveTheJudgementAsItWas) {
  auto owner = short_task_pool();
  Dispatcher& fast = *owner;
  auto sent = [&] { return tasks_sent(fast); };
  for (std::uint64_t i = 0; i < 100; ++i) fast.submit(task(i), now);
  EXPECT_EQ(sent(), 2u);
  now += 1ms;
  fast.on_message("a", protocol::Results{{protocol::TaskResult{0, protocol::kStatusCancelled, "c"}}}, now);
  EXPECT_EQ(sent(), 1u) << "nothing known yet: still one per worker";
  fast.on_message("a", ran(1, 100us), now);
  EXPECT_EQ(sent(), 9u);
  fast.on_message("a", protocol::Results{{protocol::TaskResult{2, protocol::kStatusWorkerLost, "died"}}}, now);
  EXPECT_EQ(sent(), 1u) << "still short: the freed room is refilled";
  EXPECT_EQ(fast.in_flight(), 10u);
}

TEST_F(DispatcherTest, TasksWaitForAPool) {
  for (std::uint64_t i = 0; i < 3; ++i) d.submit(task(i), now);
  EXPECT_TRUE(d.take_outbox().empty());
  register_pool("a", 4);
  EXPECT_EQ(sent_to("a").size(), 3u);
}

TEST_F(DispatcherTest, PriorityThenFifo) {
  d.submit(task(0, 5), now);
  d.submit(task(1, 1), now);
  d.submit(task(2, 5), now);
  d.submit(task(3, 1), now);
  register_pool("a", 4);
  EXPECT_EQ(sent_to("a"), (std::vector<std::uint64_t>{1, 3, 0, 2}));
}

TEST_F(DispatcherTest, FunctionBytesGoOncePerPool) {
  d.add_function("h", "FN");
  register_pool("a", 1);
  register_pool("b", 1);
  d.take_outbox();
  for (std::uint64_t i = 0; i < 4; ++i) d.submit(task(i), now);
  int with_fn = 0, without_fn = 0;
  auto count = [&] {
    for (auto& [to, m] : d.take_outbox())
      if (auto* t = std::get_if<protocol::Tasks>(&m))
        for (auto& x : t->tasks) (x.fn ? with_fn : without_fn)++;
  };
  count();
  result("a", 0);
  result("a", 1);
  result("b", 0);
  result("b", 1);
  count();
  EXPECT_EQ(with_fn, 2) << "each pool gets the function bytes with its first task only";
  EXPECT_EQ(without_fn, 2);
}

TEST_F(DispatcherTest, ResultsFromTheWrongPoolAreIgnored) {
  register_pool("a", 1);
  register_pool("b", 1);
  d.submit(task(0), now);
  d.take_outbox();
  const std::string holder = d.pools(now)[0].in_flight ? "a" : "b";
  const std::string other = holder == "a" ? "b" : "a";
  result(other, 0);
  EXPECT_TRUE(d.take_completed().empty());
  result(holder, 0);
  EXPECT_EQ(d.take_completed().size(), 1u);
}

TEST_F(DispatcherTest, SpreadsOverPools) {
  register_pool("a", 1);
  register_pool("b", 1);
  d.take_outbox();
  int a = 0, b = 0;
  for (std::uint64_t i = 0; i < 200; ++i) {
    d.submit(task(i), now);
    for (auto& [to, m] : d.take_outbox()) {
      (to == "a" ? a : b)++;
      result(to, i);
    }
  }
  EXPECT_GT(a, 40);
  EXPECT_GT(b, 40);
}

TEST_F(DispatcherTest, VersionMismatchIsRefusedWithBothVersions) {
  register_pool("old", 1, 0, "3.9.1");
  auto out = d.take_outbox();
  ASSERT_EQ(out.size(), 1u);
  auto* refused = std::get_if<protocol::Refused>(&out[0].second);
  ASSERT_NE(refused, nullptr);
  EXPECT_NE(refused->reason.find("3.9.1"), std::string::npos) << refused->reason;
  EXPECT_NE(refused->reason.find("3.11.7"), std::string::npos) << refused->reason;
  auto events = d.take_events();
  ASSERT_EQ(events.size(), 1u);
  EXPECT_EQ(events[0].kind, PoolEvent::refused);
  d.submit(task(0), now);
  EXPECT_TRUE(d.take_outbox().empty()) << "a refused pool gets no task";

  protocol::Register wrong;
  wrong.protocol_version = 99;
  wrong.worker_count = 1;
  d.on_message("future", wrong, now);
  out = d.take_outbox();
  ASSERT_EQ(out.size(), 1u);
  EXPECT_TRUE(std::holds_alternative<protocol::Refused>(out[0].second));
}

TEST_F(DispatcherTest, AbsurdWorkerCountsAreRefusedNamingTheRange) {
  for (int workers : {0, -1, kMaxWorkerCount + 1, 2147483647}) {
    const std::string id = "pool" + std::to_string(workers);
    register_pool(id, workers);
    auto out = d.take_outbox();
    ASSERT_EQ(out.size(), 1u) << workers;
    auto* refused = std::get_if<protocol::Refused>(&out[0].second);
    ASSERT_NE(refused, nullptr) << workers << " workers were accepted";
    EXPECT_NE(refused->reason.find(std::to_string(workers)), std::string::npos) << refused->reason;
    EXPECT_NE(refused->reason.find(std::to_string(kMaxWorkerCount)), std::string::npos) << refused->reason;
  }
  EXPECT_TRUE(d.pools(now).empty());
  register_pool("largest", kMaxWorkerCount);
  EXPECT_EQ(d.pools(now).size(), 1u);
}

TEST_F(DispatcherTest, ShellPoolsWithoutPythonAreAccepted) {
  register_pool("native", 2, 0, "");
  EXPECT_EQ(d.pools(now).size(), 1u);
}

TEST_F(DispatcherTest, SilentPoolIsLostAndItsTasksFailWithManagerLost) {
  register_pool("a", 2);
  d.submit(task(0), now);
  d.submit(task(1), now);
  d.take_outbox();
  now += 10s;
  d.tick(now);
  auto out = d.take_outbox();
  ASSERT_EQ(out.size(), 1u);
  EXPECT_TRUE(std::holds_alternative<protocol::Heartbeat>(out[0].second)) << "heartbeat after a period of silence";
  d.on_message("a", protocol::Heartbeat{}, now);
  now += 29s;
  d.tick(now);
  EXPECT_TRUE(d.take_completed().empty()) << "heard from 29 s ago: still alive";
  now += 2s;
  d.tick(now);
  auto lost = d.take_completed();
  ASSERT_EQ(lost.size(), 2u);
  EXPECT_TRUE(lost[0].manager_lost);
  EXPECT_NE(lost[0].payload.find("sent nothing"), std::string::npos);
  EXPECT_TRUE(d.pools(now).empty());
  EXPECT_EQ(d.take_events().back().kind, PoolEvent::lost);
  d.take_outbox();
  result("a", 0);  // a late result from the lost pool changes nothing, and the pool is told to go
  EXPECT_TRUE(d.take_completed().empty());
  out = d.take_outbox();
  ASSERT_EQ(out.size(), 1u);
  EXPECT_EQ(out[0].first, "a");
  EXPECT_TRUE(std::holds_alternative<protocol::Shutdown>(out[0].second));
}

TEST_F(DispatcherTest, HoldAndDrain) {
  register_pool("a", 1);
  d.take_outbox();
  EXPECT_TRUE(d.hold("a", true));
  d.submit(task(0), now);
  EXPECT_TRUE(sent_to("a").empty());
  EXPECT_TRUE(d.hold("a", false));
  d.tick(now);
  EXPECT_EQ(sent_to("a"), (std::vector<std::uint64_t>{0}));
  EXPECT_TRUE(d.drain("a"));
  auto out = d.take_outbox();
  ASSERT_EQ(out.size(), 1u);
  EXPECT_TRUE(std::holds_alternative<protocol::Drain>(out[0].second));
  d.submit(task(1), now);
  EXPECT_TRUE(sent_to("a").empty()) << "a draining pool gets no new task";
  result("a", 0);
  d.on_message("a", protocol::Drained{}, now);
  EXPECT_TRUE(d.pools(now).empty());
  EXPECT_FALSE(d.drain("nope"));
}

TEST_F(DispatcherTest, APoolWhoseConnectionClosedIsLostAfterTheGraceUnlessItComesBack) {
  register_pool("a", 1);
  register_pool("b", 1);
  d.take_outbox();
  d.take_events();
  d.submit(task(0), now);
  d.submit(task(1), now);
  d.take_outbox();
  d.disconnected("a", now);
  d.disconnected("b", now);
  d.disconnected("nobody", now);  // not a pool: ignored
  EXPECT_EQ(d.next_deadline(), now + 1s) << "the grace period is the next thing to do";
  now += 500ms;
  d.on_message("b", protocol::Heartbeat{}, now);  // b reconnected
  d.tick(now);
  EXPECT_TRUE(d.take_completed().empty());
  now += 500ms;
  d.tick(now);
  auto lost = d.take_completed();
  ASSERT_EQ(lost.size(), 1u);
  EXPECT_TRUE(lost[0].manager_lost);
  EXPECT_NE(lost[0].payload.find("pool a on localhost (block 0) closed its connection and did not come back within 1 s"),
            std::string::npos)
      << lost[0].payload;
  auto events = d.take_events();
  ASSERT_EQ(events.size(), 1u);
  EXPECT_EQ(events[0].kind, PoolEvent::lost);
  EXPECT_EQ(events[0].pool_id, "a");
  ASSERT_EQ(d.pools(now).size(), 1u);
  EXPECT_EQ(d.pools(now)[0].pool_id, "b");
  now += 10s;
  d.tick(now);
  EXPECT_TRUE(d.take_completed().empty()) << "b came back: only its heartbeat threshold (30 s) applies";
}

TEST_F(DispatcherTest, LoseBlockLosesEveryPoolOfThatBlockAtOnce) {
  register_pool("a", 1);
  register_pool("b", 1);
  protocol::Register other;
  other.pool_id = "c";
  other.block_id = "7";
  other.hostname = "localhost";
  other.worker_count = 1;
  d.on_message("c", other, now);
  d.take_outbox();
  d.take_events();
  for (std::uint64_t i = 0; i < 3; ++i) d.submit(task(i), now);
  d.take_outbox();
  EXPECT_EQ(d.lose_block("0", "ended: its process is gone"), 2u);
  auto lost = d.take_completed();
  ASSERT_EQ(lost.size(), 2u);
  for (const auto& c : lost) {
    EXPECT_TRUE(c.manager_lost);
    EXPECT_NE(c.payload.find("(block 0) ended: its process is gone"), std::string::npos) << c.payload;
  }
  EXPECT_EQ(d.take_events().size(), 2u);
  ASSERT_EQ(d.pools(now).size(), 1u);
  EXPECT_EQ(d.pools(now)[0].block_id, "7");
  EXPECT_EQ(d.lose_block("0", "again"), 0u);
}

TEST_F(DispatcherTest, APoolIsReportedWorkingOnceWithItsFirstResults) {
  register_pool("a", 1);
  d.take_outbox();
  d.take_events();
  d.submit(task(0), now);
  d.submit(task(1), now);
  EXPECT_EQ(sent_to("a"), (std::vector<std::uint64_t>{0}));
  d.on_message("a", protocol::Heartbeat{}, now);
  EXPECT_TRUE(d.take_events().empty()) << "registered and alive is not yet working";
  result("a", 0);
  auto events = d.take_events();
  ASSERT_EQ(events.size(), 1u);
  EXPECT_EQ(events[0].kind, PoolEvent::working);
  EXPECT_EQ(events[0].block_id, "0");
  EXPECT_EQ(sent_to("a"), (std::vector<std::uint64_t>{1}));
  result("a", 1);
  EXPECT_TRUE(d.take_events().empty());
}

TEST_F(DispatcherTest, FailedPoolIsGoneAndItsTasksFailAtOnceWithItsReason) {
  register_pool("a", 2);
  d.take_outbox();
  d.take_events();
  d.submit(task(0), now);
  d.submit(task(1), now);
  EXPECT_EQ(sent_to("a"), (std::vector<std::uint64_t>{0, 1}));
  d.on_message("a", protocol::Failed{"interpreter '/no/python': No such file or directory"}, now);
  auto done = d.take_completed();
  ASSERT_EQ(done.size(), 2u);
  for (const auto& c : done) {
    EXPECT_TRUE(c.manager_lost);
    EXPECT_NE(c.payload.find("interpreter '/no/python': No such file"), std::string::npos) << c.payload;
    EXPECT_NE(c.payload.find("block 0"), std::string::npos) << c.payload;
  }
  auto events = d.take_events();
  ASSERT_EQ(events.size(), 1u);
  EXPECT_EQ(events[0].kind, PoolEvent::failed);
  EXPECT_EQ(events[0].block_id, "0");
  EXPECT_TRUE(d.pools(now).empty());
  EXPECT_EQ(d.in_flight(), 0u);
  d.submit(task(2), now);
  EXPECT_TRUE(sent_to("a").empty()) << "nothing goes to a pool that failed";
}

TEST_F(DispatcherTest, CancelDropsQueuedTasksAndAsksThePoolForSentOnes) {
  register_pool("a", 1);
  d.take_outbox();
  d.submit(task(0), now);
  d.submit(task(1), now);
  EXPECT_EQ(sent_to("a"), (std::vector<std::uint64_t>{0}));
  d.cancel(1);  // still queued: answered at once, never sent
  auto done = d.take_completed();
  ASSERT_EQ(done.size(), 1u);
  EXPECT_EQ(done[0].task_id, 1u);
  EXPECT_EQ(done[0].status, protocol::kStatusCancelled);
  EXPECT_EQ(d.queued(), 0u);
  d.cancel(0);  // on the pool: CANCEL goes there; the pool's answer frees the slot
  auto out = d.take_outbox();
  ASSERT_EQ(out.size(), 1u);
  EXPECT_EQ(std::get<protocol::Cancel>(out[0].second).task_ids, (std::vector<std::uint64_t>{0}));
  d.submit(task(2), now);
  EXPECT_TRUE(sent_to("a").empty());
  result("a", 0, protocol::kStatusCancelled);
  EXPECT_EQ(sent_to("a"), (std::vector<std::uint64_t>{2}));
  d.cancel(99);  // unknown: nothing happens
  EXPECT_TRUE(d.take_outbox().empty());
}

TEST_F(DispatcherTest, QueuedTasksKeepTheirInputsBuffersAndMpiRequest) {
  DispatchTask t = task(0);
  t.inputs = {"in0", "in1"};
  t.mpi = protocol::MpiRequest{2, 4, 8, "--bind-to core"};
  auto bytes = std::make_shared<std::string>("out-of-band");
  t.buffers = {protocol::SharedBuffer{bytes, bytes->data(), bytes->size()}};
  d.submit(std::move(t), now);
  d.submit(task(1), now);  // one without either
  register_pool("a", 2);
  protocol::Tasks sent;
  for (auto& [to, m] : d.take_outbox())
    if (auto* tasks = std::get_if<protocol::Tasks>(&m)) sent = std::move(*tasks);
  ASSERT_EQ(sent.tasks.size(), 2u);
  EXPECT_EQ(sent.tasks[0].payload, "p0");
  EXPECT_EQ(sent.tasks[0].inputs, (std::vector<protocol::Bytes>{"in0", "in1"}));
  ASSERT_EQ(sent.tasks[0].buffers.size(), 1u);
  EXPECT_EQ(sent.tasks[0].buffers[0].view(), "out-of-band");
  EXPECT_EQ(sent.tasks[0].mpi, (protocol::MpiRequest{2, 4, 8, "--bind-to core"}));
  EXPECT_EQ(sent.tasks[1].payload, "p1");
  EXPECT_TRUE(sent.tasks[1].mpi.empty());
  EXPECT_TRUE(sent.tasks[1].inputs.empty());
  EXPECT_TRUE(sent.tasks[1].buffers.empty());
}

// Cancelled queued tasks are swept out of the queue once they are many: what is left still
// goes out by priority, then in submission order, each task once.
TEST_F(DispatcherTest, ManyCancelledQueuedTasksLeaveTheRestInOrder) {
  constexpr std::uint64_t kTasks = 20'000;
  for (std::uint64_t id = 0; id < kTasks; ++id) d.submit(task(id, static_cast<int>(id % 3)), now);
  std::vector<std::uint64_t> expected;
  for (std::uint64_t id = 0; id < kTasks; ++id)
    if (id % 10 == 7) expected.push_back(id);
    else d.cancel(id);
  std::stable_sort(expected.begin(), expected.end(), [](auto a, auto b) { return a % 3 < b % 3; });
  EXPECT_EQ(d.take_completed().size(), kTasks - expected.size());
  EXPECT_EQ(d.queued(), expected.size());
  register_pool("a", static_cast<int>(kTasks));
  EXPECT_EQ(sent_to("a"), expected);
  EXPECT_EQ(d.queued(), 0u);
  EXPECT_FALSE(d.can_dispatch());
}

// take_outbox(max_tasks) sends no more than that; can_dispatch() says whether more would go.
TEST_F(DispatcherTest, TakeOutboxSendsAtMostMaxTasks) {
  register_pool("a", 100);
  register_pool("b", 100);
  d.take_outbox();
  for (std::uint64_t id = 0; id < 150; ++id) d.submit(task(id), now);
  std::vector<std::uint64_t> all;
  for (std::size_t expected : {64u, 64u, 22u}) {
    EXPECT_TRUE(d.can_dispatch());
    std::size_t n = 0;
    for (auto& [to, m] : d.take_outbox(64))
      if (auto* t = std::get_if<protocol::Tasks>(&m))
        for (auto& x : t->tasks) all.push_back(x.task_id), ++n;
    EXPECT_EQ(n, expected);
  }
  EXPECT_FALSE(d.can_dispatch());
  std::sort(all.begin(), all.end());
  std::vector<std::uint64_t> ids(150);
  std::iota(ids.begin(), ids.end(), 0);
  EXPECT_EQ(all, ids);
}

TEST_F(DispatcherTest, PoolInfoReportsIdleTime) {
  register_pool("a", 1);
  now += 5s;
  auto info = d.pools(now);
  ASSERT_EQ(info.size(), 1u);
  EXPECT_DOUBLE_EQ(info[0].idle_seconds, 5.0);
  d.submit(task(0), now);
  EXPECT_EQ(d.pools(now)[0].in_flight, 0u);  // queued: tasks go out when the outbox is taken
  d.take_outbox();
  EXPECT_EQ(d.pools(now)[0].in_flight, 1u);
  EXPECT_EQ(d.pools(now)[0].idle_seconds, 0.0);
}

TEST_F(DispatcherTest, UnregisteredIdentitiesAreToldToShutDownAndTheirResultsDropped) {
  d.on_message("ghost", protocol::Results{{protocol::TaskResult{0, 0, "x"}}}, now);
  d.on_message("ghost", protocol::Heartbeat{}, now);
  EXPECT_TRUE(d.take_completed().empty());
  auto out = d.take_outbox();
  ASSERT_EQ(out.size(), 2u);
  for (auto& [to, m] : out) {
    EXPECT_EQ(to, "ghost");
    EXPECT_TRUE(std::holds_alternative<protocol::Shutdown>(m));
  }
  EXPECT_TRUE(d.pools(now).empty());
}

// ---- followers (DispatchTask::after): they wait on the pool that has the task they follow.

DispatchTask follower(std::uint64_t id, std::uint64_t input_task) {
  DispatchTask t;
  t.task_id = id;
  t.fn_hash = "h";
  t.payload = "p" + std::to_string(id);
  t.inputs = {""};
  t.after = {protocol::After{0, input_task}};
  return t;
}

TEST_F(DispatcherTest, FollowerGoesToThePoolRunningItsInputWhateverItsCapacity) {
  register_pool("a", 1);
  register_pool("b", 1);
  d.take_outbox();
  d.submit(task(0), now);
  auto out = d.take_outbox();
  ASSERT_EQ(out.size(), 1u);
  const std::string pool = out[0].first, other = pool == "a" ? "b" : "a";
  d.submit(task(1), now);  // fills the other pool
  EXPECT_EQ(sent_to(other), (std::vector<std::uint64_t>{1}));
  d.submit(follower(2, 0), now);  // the pool holding 0 is full, and still gets 2
  out = d.take_outbox();
  ASSERT_EQ(out.size(), 1u);
  EXPECT_EQ(out[0].first, pool);
  const auto& sent = std::get<protocol::Tasks>(out[0].second).tasks;
  ASSERT_EQ(sent.size(), 1u);
  EXPECT_EQ(sent[0].after, (std::vector<protocol::After>{{0, 0}}));
  EXPECT_EQ(d.in_flight(), 3u);
  result(pool, 0);
  result(pool, 2);
  auto done = d.take_completed();
  ASSERT_EQ(done.size(), 2u);
  EXPECT_EQ(done[1].task_id, 2u);
  EXPECT_EQ(done[1].status, protocol::kStatusOk);
}

TEST_F(DispatcherTest, FollowersOfAQueuedTaskLeaveWithItInOneBatch) {
  d.submit(task(0), now);
  d.submit(follower(1, 0), now);
  d.submit(follower(2, 1), now);  // follows a follower
  EXPECT_EQ(d.queued(), 3u);
  register_pool("a", 1);
  std::vector<std::uint64_t> ids;
  for (auto& [to, m] : d.take_outbox())
    if (auto* t = std::get_if<protocol::Tasks>(&m))
      for (auto& x : t->tasks) ids.push_back(x.task_id);
  EXPECT_EQ(ids, (std::vector<std::uint64_t>{0, 1, 2}));
  EXPECT_EQ(d.queued(), 0u);
}

TEST_F(DispatcherTest, FollowerOfATaskOnNoPoolIsNotStarted) {
  register_pool("a", 1);
  d.take_outbox();
  d.submit(follower(5, 99), now);
  EXPECT_TRUE(sent_to("a").empty());
  auto done = d.take_completed();
  ASSERT_EQ(done.size(), 1u);
  EXPECT_EQ(done[0].task_id, 5u);
  EXPECT_EQ(done[0].status, protocol::kStatusNotStarted);
  EXPECT_FALSE(done[0].manager_lost);
  EXPECT_EQ(d.in_flight(), 0u);
}

TEST_F(DispatcherTest, FollowerJustAfterItsInputCameBackGoesToThatPool) {
  register_pool("a", 1);
  register_pool("b", 1);
  d.take_outbox();
  d.submit(task(0), now);
  const std::string pool = d.take_outbox().at(0).first;
  result(pool, 0);
  d.take_completed();
  d.submit(follower(1, 0), now);  // the pool may still have 0's value
  auto out = d.take_outbox();
  ASSERT_EQ(out.size(), 1u);
  EXPECT_EQ(out[0].first, pool);
}

// The pools of the latest 4,096 results are remembered, no more: a follower of a task that came
// back 4,096 results ago is not started (its pool has long replaced the value).
TEST_F(DispatcherTest, FollowersFindThePoolsOfTheLatestResultsOnly) {
  register_pool("a", 1);
  d.take_outbox();
  constexpr std::uint64_t kWindow = 4096;
  for (std::uint64_t id = 0; id <= kWindow; ++id) {
    d.submit(task(id), now);
    ASSERT_EQ(sent_to("a"), (std::vector<std::uint64_t>{id}));
    result("a", id);
  }
  d.take_completed();
  d.submit(follower(10'001, 0), now);  // 4,097 results ago: forgotten
  d.submit(follower(10'002, 1), now);  // 4,096 results ago: remembered
  d.submit(follower(10'003, kWindow), now);
  EXPECT_EQ(sent_to("a"), (std::vector<std::uint64_t>{10'002, 10'003}));
  auto done = d.take_completed();
  ASSERT_EQ(done.size(), 1u);
  EXPECT_EQ(done[0].task_id, 10'001u);
  EXPECT_EQ(done[0].status, protocol::kStatusNotStarted);
}

TEST_F(DispatcherTest, LostPoolFailsStartedTasksButReturnsWaitingFollowersAsNotStarted) {
  register_pool("a", 2);
  d.take_outbox();
  d.submit(task(0), now);
  d.submit(task(1), now);
  d.submit(follower(2, 0), now);  // 0 comes back: 2 may have started
  d.submit(follower(3, 1), now);  // 1 never comes back: 3 cannot have started
  d.take_outbox();
  result("a", 0);
  d.take_completed();
  now += 31s;
  d.tick(now);
  auto lost = d.take_completed();
  ASSERT_EQ(lost.size(), 3u);
  std::map<std::uint64_t, Completed> by_id;
  for (auto& c : lost) by_id[c.task_id] = c;
  EXPECT_TRUE(by_id[1].manager_lost);
  EXPECT_TRUE(by_id[2].manager_lost);
  EXPECT_FALSE(by_id[3].manager_lost);
  EXPECT_EQ(by_id[3].status, protocol::kStatusNotStarted);
}

TEST_F(DispatcherTest, CancellingAQueuedTaskReturnsItsFollowersAsNotStarted) {
  d.submit(task(0), now);
  d.submit(follower(1, 0), now);
  d.submit(follower(2, 1), now);
  d.submit(task(3), now);
  d.submit(follower(4, 3), now);
  d.cancel(4);  // a held follower: dropped, answered as cancelled
  d.cancel(0);
  auto done = d.take_completed();
  std::map<std::uint64_t, int> status;
  for (auto& c : done) status[c.task_id] = c.status;
  EXPECT_EQ(status, (std::map<std::uint64_t, int>{{0, protocol::kStatusCancelled},
                                                  {1, protocol::kStatusNotStarted},
                                                  {2, protocol::kStatusNotStarted},
                                                  {4, protocol::kStatusCancelled}}));
  EXPECT_EQ(d.queued(), 1u);
  register_pool("a", 4);
  EXPECT_EQ(sent_to("a"), (std::vector<std::uint64_t>{3}));
}

// ---------------------------------------------------------------- resources
// Pools that announce what their largest node offers (REGISTER's capacity) and when their
// blocks stop running tasks (ends_in / walltime).
class DispatcherResourcesTest : public DispatcherTest {
 protected:
  void register_sized(const std::string& identity, int workers, protocol::Resources capacity, double walltime = 0,
                      double ends_in = 0) {
    protocol::Register r;
    r.python_version = "3.11.2";
    r.pool_id = identity;
    r.worker_count = workers;
    r.capacity = capacity;
    r.walltime = walltime;
    r.ends_in = ends_in;
    d.on_message(identity, r, now);
  }
  DispatchTask sized(std::uint64_t id, protocol::Resources r) {
    DispatchTask t = task(id);
    t.resources = r;
    return t;
  }
  // Completions by task id.
  std::map<std::uint64_t, Completed> completed() {
    std::map<std::uint64_t, Completed> out;
    for (auto& c : d.take_completed()) out[c.task_id] = c;
    return out;
  }
};

TEST_F(DispatcherResourcesTest, ATaskGoesOnlyToPoolsThatCanHoldItAndCarriesItsRequest) {
  register_sized("small", 4, {2, 4000, 0});
  register_sized("gpu", 4, {8, 64000, 2});
  d.take_outbox();
  d.submit(sized(1, {4, 0, 0}), now);
  d.submit(sized(2, {1, 0, 1}), now);
  d.submit(sized(3, {0, 50000, 0}), now);
  d.submit(task(4), now);  // an ordinary task: anywhere
  std::map<std::string, std::vector<protocol::Task>> sent;
  for (auto& [to, m] : d.take_outbox())
    if (auto* t = std::get_if<protocol::Tasks>(&m))
      for (auto& x : t->tasks) sent[to].push_back(x);
  std::vector<std::uint64_t> on_gpu;
  for (auto& t : sent["gpu"]) on_gpu.push_back(t.task_id);
  std::sort(on_gpu.begin(), on_gpu.end());
  on_gpu.erase(std::remove(on_gpu.begin(), on_gpu.end(), 4u), on_gpu.end());
  EXPECT_EQ(on_gpu, (std::vector<std::uint64_t>{1, 2, 3}));
  for (auto& t : sent["small"]) EXPECT_EQ(t.task_id, 4u);
  for (auto& t : sent["gpu"])
    if (t.task_id == 2) EXPECT_EQ(t.resources, (protocol::Resources{1, 0, 1}));
  EXPECT_EQ(d.queued(), 0u);
}

TEST_F(DispatcherResourcesTest, ATaskWaitsForAPoolWithRoomThatCanHoldIt) {
  register_sized("big", 1, {8, 0, 0});
  register_sized("small", 4, {2, 0, 0});
  d.take_outbox();
  d.submit(sized(1, {4, 0, 0}), now);
  d.submit(sized(2, {4, 0, 0}), now);  // "big" is full (one worker): 2 waits, though "small" has room
  EXPECT_EQ(sent_to("big"), (std::vector<std::uint64_t>{1}));
  EXPECT_EQ(d.queued(), 1u);
  EXPECT_TRUE(completed().empty());
  result("big", 1);
  EXPECT_EQ(sent_to("big"), (std::vector<std::uint64_t>{2}));
}

TEST_F(DispatcherResourcesTest, ATaskNoPoolCouldEverHoldFailsAtOnceNamingItsRequestAndTheLargestPool) {
  d.submit(sized(1, {16, 0, 0}), now);  // no pool yet: it waits
  EXPECT_TRUE(completed().empty());
  register_sized("a", 2, {8, 31000, 0});
  register_sized("b", 2, {4, 64000, 1});
  d.take_outbox();  // a dispatch round
  auto done = completed();
  ASSERT_EQ(done.size(), 1u);  // once pools exist and none can hold it
  EXPECT_EQ(done.at(1).status, protocol::kStatusInvalid);
  EXPECT_EQ(done.at(1).payload,
            "cores\nthe task asks for 16 cores, 0 MB, 0 GPUs, more than any pool of this executor has (the largest: "
            "8 cores, 31000 MB, 0 GPUs)");
  d.submit(sized(2, {1, 0, 2}), now);  // at submission, now that pools are known
  done = completed();
  ASSERT_EQ(done.size(), 1u);
  EXPECT_EQ(done.at(2).payload.substr(0, 5), "gpus\n");
  d.submit(sized(3, {8, 64000, 0}), now);  // each part fits some pool, but no pool holds all of it
  EXPECT_EQ(completed().at(3).status, protocol::kStatusInvalid);
  d.submit(sized(4, {4, 64000, 1}), now);
  EXPECT_EQ(sent_to("b"), (std::vector<std::uint64_t>{4}));
}

TEST_F(DispatcherResourcesTest, ARunningTimeGoesToAPoolWhoseBlockRunsLongEnoughAndPoolsAreDrainedAtTheirEnd) {
  register_sized("old", 2, {}, 100, 20);    // stops running tasks in 20 s
  register_sized("young", 2, {}, 100, 90);  // in 90 s
  d.take_outbox();
  d.submit(sized(1, {0, 0, 0, 50}), now);
  d.submit(sized(2, {0, 0, 0, 10}), now);
  d.submit(sized(3, {0, 0, 0, 95}), now);  // longer than any pool has left: waits for a new block
  d.submit(sized(4, {0, 0, 0, 101}), now);  // longer than blocks run: fails
  auto out = d.take_outbox();
  std::map<std::uint64_t, std::string> where;
  for (auto& [to, m] : out)
    if (auto* t = std::get_if<protocol::Tasks>(&m))
      for (auto& x : t->tasks) where[x.task_id] = to;
  EXPECT_EQ(where.at(1), "young");
  EXPECT_FALSE(where.contains(3));
  EXPECT_EQ(d.queued(), 1u);
  auto done = completed();
  ASSERT_EQ(done.size(), 1u);
  EXPECT_EQ(done.at(4).payload.substr(0, 13), "running_time\n");
  EXPECT_NE(done.at(4).payload.find("blocks run tasks for 100 s"), std::string::npos) << done.at(4).payload;
  // At its end a pool is drained: it gets DRAIN and no more tasks.
  EXPECT_EQ(d.next_deadline(), now + 10s);  // the heartbeat period comes first
  now += 20s;
  d.tick(now);
  bool drained_old = false;
  for (auto& [to, m] : d.take_outbox()) drained_old = drained_old || (to == "old" && std::holds_alternative<protocol::Drain>(m));
  EXPECT_TRUE(drained_old);
  d.submit(task(5), now);
  d.submit(task(6), now);
  EXPECT_TRUE(sent_to("old").empty());
  // A new block with time enough takes the waiting task.
  register_sized("new", 2, {}, 100, 100);
  auto to_new = sent_to("new");
  EXPECT_NE(std::find(to_new.begin(), to_new.end(), 3u), to_new.end());
}

}  // namespace
