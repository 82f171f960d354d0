// The dispatcher at the scale of issue 17 (10,000 pools) and with misbehaving pools, driven
// directly: fake pools are identities, time is a variable. No sockets, no sleeps.
#include <gtest/gtest.h>

#include <algorithm>
#include <map>
#include <set>

#include "interchange/dispatcher.hpp"

using namespace pervade;
using namespace pervade::interchange;
using namespace std::chrono_literals;

namespace {

constexpr int kPools = 10'000;

class DispatcherScaleTest : public ::testing::Test {
 protected:
  // Heartbeat period 10 s, threshold 30 s; capacity exactly workers + prefetch.
  DispatcherScaleTest() : d(DispatcherConfig{10, 30, "0.1.0", "3.11.7", 7, 0}) {}

  static std::string name(int i) { return "pool-" + std::to_string(i); }

  void register_pool(const std::string& identity, int workers, const std::string& pool_id = {}) {
    protocol::Register r;
    r.pool_id = pool_id.empty() ? identity : pool_id;
    r.block_id = "0";
    r.hostname = "node";
    r.worker_count = workers;
    d.on_message(identity, r, now);
  }

  void register_pools(int n, int workers) {
    for (int i = 0; i < n; ++i) register_pool(name(i), workers);
    d.take_outbox();
    ASSERT_EQ(d.pools(now).size(), static_cast<std::size_t>(n));
  }

  void submit(std::uint64_t first, std::uint64_t count) {
    for (std::uint64_t id = first; id < first + count; ++id) {
      DispatchTask t;
      t.task_id = id;
      t.kind = protocol::kKindShell;
      t.payload = "p";
      d.submit(std::move(t), now);
    }
  }

  // Task ids sent in TASKS messages, by pool identity, since the last call.
  std::map<std::string, std::vector<std::uint64_t>> sent() {
    std::map<std::string, std::vector<std::uint64_t>> out;
    for (auto& [to, m] : d.take_outbox())
      if (auto* t = std::get_if<protocol::Tasks>(&m))
        for (auto& x : t->tasks) out[to].push_back(x.task_id);
    return out;
  }

  void answer(const std::string& identity, const std::vector<std::uint64_t>& ids) {
    protocol::Results r;
    for (auto id : ids) r.results.push_back({id, protocol::kStatusOk, "r"});
    d.on_message(identity, std::move(r), now);
  }

  TimePoint now{};
  Dispatcher d;
};

// With less work than room, which pools get it is random: over many rounds every one of
// 10,000 pools gets its share, none starves and none is favoured.
TEST_F(DispatcherScaleTest, TenThousandPoolsShareTheWorkAndNoneStarves) {
  register_pools(kPools, 1);
  std::map<std::string, int> got;
  constexpr int kRounds = 50;
  std::uint64_t next = 0;
  for (int round = 0; round < kRounds; ++round) {
    submit(next, kPools / 2);
    next += kPools / 2;
    auto out = sent();
    std::size_t n = 0;
    for (auto& [pool, ids] : out) {
      ASSERT_EQ(ids.size(), 1u) << "a pool of one worker got more than its capacity";
      got[pool] += 1;
      n += ids.size();
      answer(pool, ids);
    }
    ASSERT_EQ(n, static_cast<std::size_t>(kPools / 2)) << "every task goes out at once: there is room";
    ASSERT_EQ(d.take_completed().size(), n);
    now += 1ms;
  }
  ASSERT_EQ(got.size(), static_cast<std::size_t>(kPools)) << "some pool never got a task";
  // Each pool is chosen in a round with probability 1/2: 25 of 50 on average, standard
  // deviation 3.5; the bounds are 5.7 deviations out.
  const auto [low, high] = std::minmax_element(got.begin(), got.end(),
                                               [](const auto& a, const auto& b) { return a.second < b.second; });
  EXPECT_GE(low->second, 5) << low->first;
  EXPECT_LE(high->second, 45) << high->first;
  EXPECT_EQ(d.queued(), 0u);
  EXPECT_EQ(d.in_flight(), 0u);
}

// When the work exceeds the room, a pool that frees a slot gets the next task at once, in
// submission order, whatever the number of pools.
TEST_F(DispatcherScaleTest, FreedRoomIsFilledInSubmissionOrder) {
  register_pools(kPools, 2);
  submit(0, 3 * kPools);
  auto first = sent();
  ASSERT_EQ(first.size(), static_cast<std::size_t>(kPools));
  EXPECT_EQ(d.queued(), static_cast<std::size_t>(kPools));
  for (int k = 0; k < 10; ++k) {
    const std::string pool = name(k * 997 % kPools);
    answer(pool, {first[pool].at(0)});
    auto out = sent();
    ASSERT_EQ(out.size(), 1u);
    EXPECT_EQ(out.begin()->first, pool);
    EXPECT_EQ(out.begin()->second, (std::vector<std::uint64_t>{static_cast<std::uint64_t>(2 * kPools + k)}));
  }
}

// 1,000 of 10,000 pools fall silent: after the threshold exactly their tasks fail with
// ManagerLost, the other pools keep theirs, and retried tasks then complete exactly once.
TEST_F(DispatcherScaleTest, LosingAThousandOfTenThousandPoolsFailsExactlyTheirTasks) {
  register_pools(kPools, 2);
  submit(0, 2 * kPools);
  auto held = sent();
  ASSERT_EQ(held.size(), static_cast<std::size_t>(kPools));
  std::set<std::uint64_t> on_lost;
  for (int i = 0; i < kPools; i += 10)  // every tenth pool is lost
    for (auto id : held[name(i)]) on_lost.insert(id);
  ASSERT_EQ(on_lost.size(), 2000u);

  now += 20s;  // past the heartbeat period, within the threshold
  d.tick(now);
  std::map<std::string, int> heartbeats;
  for (auto& [to, m] : d.take_outbox())
    if (std::holds_alternative<protocol::Heartbeat>(m)) ++heartbeats[to];
  ASSERT_EQ(heartbeats.size(), static_cast<std::size_t>(kPools));
  for (const auto& [to, n] : heartbeats) ASSERT_EQ(n, 1) << to;
  for (int i = 0; i < kPools; ++i)
    if (i % 10 != 0) d.on_message(name(i), protocol::Heartbeat{}, now);
  EXPECT_EQ(d.next_deadline(), TimePoint{} + 30s) << "the silent pools are due first";

  now = TimePoint{} + 30s;
  d.tick(now);
  std::set<std::uint64_t> failed;
  for (auto& c : d.take_completed()) {
    EXPECT_TRUE(c.manager_lost);
    EXPECT_EQ(c.status, protocol::kStatusWorkerLost);
    EXPECT_TRUE(failed.insert(c.task_id).second) << "failed twice: " << c.task_id;
  }
  EXPECT_EQ(failed, on_lost);
  std::size_t lost_events = 0;
  for (const auto& e : d.take_events()) lost_events += e.kind == PoolEvent::lost;
  EXPECT_EQ(lost_events, 1000u);
  EXPECT_EQ(d.pools(now).size(), 9000u);
  EXPECT_EQ(d.in_flight(), 18'000u);
  EXPECT_TRUE(sent().empty()) << "the survivors are full: no task to send";

  // The executor retries the lost tasks (same ids); the survivors answer everything.
  for (auto id : on_lost) {
    DispatchTask t;
    t.task_id = id;
    t.kind = protocol::kKindShell;
    d.submit(std::move(t), now);
  }
  std::map<std::uint64_t, int> completions;
  for (int round = 0; d.queued() + d.in_flight() > 0; ++round) {
    ASSERT_LT(round, 10) << "work left over: " << d.queued() << " queued, " << d.in_flight() << " in flight";
    for (int i = 0; i < kPools; ++i) {
      if (i % 10 == 0) continue;
      auto& ids = held[name(i)];
      if (!ids.empty()) answer(name(i), std::exchange(ids, {}));
    }
    for (auto& c : d.take_completed()) {
      EXPECT_EQ(c.status, protocol::kStatusOk);
      ++completions[c.task_id];
    }
    for (auto& [pool, ids] : sent()) {
      ASSERT_NE(std::stoi(pool.substr(5)) % 10, 0) << "a task went to a lost pool";
      auto& h = held[pool];
      h.insert(h.end(), ids.begin(), ids.end());
    }
  }
  ASSERT_EQ(completions.size(), static_cast<std::size_t>(2 * kPools));
  for (const auto& [id, n] : completions) ASSERT_EQ(n, 1) << "task " << id;

  // A lost pool that comes back is told to shut down, and its late results count for nothing.
  answer(name(0), {*on_lost.begin()});
  EXPECT_TRUE(d.take_completed().empty());
  auto out = d.take_outbox();
  ASSERT_EQ(out.size(), 1u);
  EXPECT_TRUE(std::holds_alternative<protocol::Shutdown>(out[0].second));
}

// Cancelling half of a queue of 100,000 tasks drops exactly those; the rest still go out in order.
TEST_F(DispatcherScaleTest, CancelInALongQueue) {
  submit(0, 100'000);
  for (std::uint64_t id = 0; id < 100'000; id += 2) d.cancel(id);
  EXPECT_EQ(d.queued(), 50'000u);
  auto done = d.take_completed();
  ASSERT_EQ(done.size(), 50'000u);
  for (const auto& c : done) ASSERT_EQ(c.status, protocol::kStatusCancelled);
  register_pool("a", 10);
  auto out = sent();
  EXPECT_EQ(out["a"], (std::vector<std::uint64_t>{1, 3, 5, 7, 9, 11, 13, 15, 17, 19}));
}

// ----------------------------------------------------------------- misbehaving pools

TEST_F(DispatcherScaleTest, RegisteringTwiceLeavesTheFirstRegistrationWorking) {
  register_pool("a", 2);
  d.take_outbox();
  submit(0, 2);
  ASSERT_EQ(sent()["a"].size(), 2u);
  register_pool("a", 50);  // the same connection registers again (with a bigger claim)
  auto out = d.take_outbox();
  ASSERT_EQ(out.size(), 1u);
  EXPECT_TRUE(std::holds_alternative<protocol::Refused>(out[0].second));
  submit(2, 10);
  EXPECT_TRUE(sent().empty()) << "the refused claim must not raise the pool's capacity";
  // Another connection with a pool id already in use: whether it is accepted or refused, each
  // task completes once, from the pool that holds it.
  register_pool("b", 1, "a");
  auto to_b = sent()["b"];
  answer("a", {0, 1});
  for (auto id : to_b) answer("b", {id});
  std::map<std::uint64_t, int> completions;
  for (const auto& c : d.take_completed()) ++completions[c.task_id];
  for (const auto& [id, n] : completions) EXPECT_EQ(n, 1) << id;
  EXPECT_EQ(completions.size(), 2 + to_b.size());
  EXPECT_EQ(d.queued() + d.in_flight() + completions.size(), 12u);
}

TEST_F(DispatcherScaleTest, ResultsForTasksNeverGivenAreDropped) {
  register_pool("a", 1);
  register_pool("b", 1);
  d.take_outbox();
  submit(0, 2);
  auto out = sent();
  const std::uint64_t on_a = out["a"].at(0), on_b = out["b"].at(0);
  answer("a", {on_b, 12345, on_a, on_a});  // another pool's task, an unknown id, its own twice
  auto done = d.take_completed();
  ASSERT_EQ(done.size(), 1u);
  EXPECT_EQ(done[0].task_id, on_a);
  EXPECT_EQ(d.in_flight(), 1u);
  answer("b", {on_b});
  ASSERT_EQ(d.take_completed().size(), 1u);
  answer("b", {on_b});  // again: already done
  EXPECT_TRUE(d.take_completed().empty());
  EXPECT_EQ(d.in_flight(), 0u);
}

// A pool that vanishes (its connection gone mid-message: the shell drops the partial frame,
// the dispatcher only sees silence) is lost after the threshold; the other keeps working.
TEST_F(DispatcherScaleTest, VanishedPoolIsLostAndTheOtherKeepsWorking) {
  register_pool("a", 1);
  register_pool("b", 1);
  d.take_outbox();
  submit(0, 4);
  auto out = sent();
  now += 29s;
  d.on_message("a", protocol::Heartbeat{}, now);
  now += 1s;
  d.tick(now);
  auto done = d.take_completed();
  ASSERT_EQ(done.size(), 1u);
  EXPECT_EQ(done[0].task_id, out["b"].at(0));
  EXPECT_TRUE(done[0].manager_lost);
  answer("a", out["a"]);
  auto next = sent();
  EXPECT_EQ(next["a"].size(), 1u) << "the queue goes on to the live pool";
  EXPECT_FALSE(next.contains("b"));
}

// A pool that floods heartbeats costs the dispatcher no replies and no other pool its
// heartbeats or its loss detection.
TEST_F(DispatcherScaleTest, HeartbeatFloodDisturbsNothing) {
  register_pool("flood", 1);
  register_pool("quiet", 1);
  register_pool("silent", 1);
  d.take_outbox();
  d.take_events();
  for (int i = 0; i < 200'000; ++i) {
    if (i % 10'000 == 0) now += 1s;
    d.on_message("flood", protocol::Heartbeat{}, now);
    if (i % 100'000 == 0) d.on_message("quiet", protocol::Heartbeat{}, now);
  }
  EXPECT_TRUE(d.take_outbox().empty()) << "heartbeats are not answered";
  now = TimePoint{} + 25s;  // all three are due a heartbeat from the interchange
  d.on_message("flood", protocol::Heartbeat{}, now);
  d.on_message("quiet", protocol::Heartbeat{}, now);
  d.tick(now);
  std::set<std::string> beat;
  for (auto& [to, m] : d.take_outbox())
    if (std::holds_alternative<protocol::Heartbeat>(m)) EXPECT_TRUE(beat.insert(to).second) << to;
  EXPECT_EQ(beat, (std::set<std::string>{"flood", "quiet", "silent"}));
  now = TimePoint{} + 30s;
  d.tick(now);
  auto events = d.take_events();
  ASSERT_EQ(events.size(), 1u);
  EXPECT_EQ(events[0].kind, PoolEvent::lost);
  EXPECT_EQ(events[0].identity, "silent");
  submit(0, 2);
  auto out = sent();
  EXPECT_EQ(out["flood"].size(), 1u);
  EXPECT_EQ(out["quiet"].size(), 1u);
}

// Tasks that ask for resources among 10,000 pools of two shapes: each goes only to a pool whose
// shape holds it, every pool of that shape fills up, and a freed slot takes the next one; the
// cost per task does not grow with the pools (shapes, then an ordered set).
TEST_F(DispatcherScaleTest, TasksAskingForResourcesGoOnlyToTheTenThousandPoolsThatCanHoldThem) {
  std::set<std::string> big;
  for (int i = 0; i < kPools; ++i) {
    protocol::Register r;
    r.pool_id = name(i);
    r.worker_count = 2;
    r.capacity = i % 2 ? protocol::Resources{64, 256000, 4} : protocol::Resources{8, 32000, 0};
    if (i % 2) big.insert(name(i));
    d.on_message(name(i), r, now);
  }
  d.take_outbox();
  for (std::uint64_t id = 0; id < 3 * kPools / 2; ++id) {
    DispatchTask t;
    t.task_id = id;
    t.kind = protocol::kKindPython;
    t.payload = "p";
    t.resources = protocol::Resources{16, 0, 1};
    d.submit(std::move(t), now);
  }
  auto out = sent();
  EXPECT_EQ(out.size(), big.size());  // every big pool, and no small one
  std::size_t n = 0;
  for (auto& [pool, ids] : out) {
    ASSERT_TRUE(big.contains(pool)) << pool;
    ASSERT_EQ(ids.size(), 2u);
    n += ids.size();
  }
  EXPECT_EQ(n, static_cast<std::size_t>(kPools));
  EXPECT_EQ(d.queued(), static_cast<std::size_t>(kPools / 2));
  const auto& [pool, ids] = *out.begin();
  answer(pool, {ids.front()});
  auto next = sent();
  ASSERT_EQ(next.size(), 1u);
  EXPECT_EQ(next.begin()->first, pool);
  EXPECT_EQ(next.begin()->second, (std::vector<std::uint64_t>{static_cast<std::uint64_t>(kPools)}));
}

}  // namespace
