// The scaling strategy state machine (src/executors/htex/strategy.*) on made-up snapshots: a
// fake clock (StrategySnapshot::now) and a fake provider (the block states in the snapshot).
// No threads, no sleeps, no processes.
#include <gtest/gtest.h>

#include <algorithm>
#include <string>
#include <vector>

#include "executors/htex/strategy.hpp"
#include "pervade/errors.hpp"

using namespace pervade;
using namespace pervade::detail;

namespace {

// A block as the executor reports it: `pools` connected pools with `in_flight` tasks.
BlockSnapshot block(std::string id, JobState state = JobState::running, int pools = 1, std::size_t in_flight = 0,
                    double idle = 0, std::string message = "") {
  BlockSnapshot b;
  b.block_id = std::move(id);
  b.status.state = state;
  b.status.message = std::move(message);
  b.pools = pools;
  b.ever_connected = pools > 0;
  b.worked = pools > 0;
  b.in_flight = in_flight;
  b.idle_seconds = in_flight > 0 ? 0 : idle;
  return b;
}

StrategySnapshot snap(double now, std::size_t outstanding, std::vector<BlockSnapshot> blocks, int workers = 1) {
  return StrategySnapshot{.now = now, .outstanding = outstanding, .workers_per_node = workers, .blocks = std::move(blocks)};
}

StrategyConfig config(StrategyKind kind, int min_blocks, int max_blocks, double parallelism = 1, double idle = 10) {
  StrategyConfig c;
  c.kind = kind;
  c.min_blocks = min_blocks;
  c.max_blocks = max_blocks;
  c.parallelism = parallelism;
  c.max_idletime = idle;
  return c;
}

bool contains(const std::vector<std::string>& v, const std::string& s) {
  return std::find(v.begin(), v.end(), s) != v.end();
}

}  // namespace

TEST(Strategy, NamesAndBadOptions) {
  EXPECT_EQ(parse_strategy("none"), StrategyKind::none);
  EXPECT_EQ(parse_strategy("simple"), StrategyKind::simple);
  EXPECT_EQ(parse_strategy("htex_auto_scale"), StrategyKind::htex_auto_scale);
  EXPECT_THROW(parse_strategy("greedy"), ConfigurationError);
  EXPECT_THROW(Strategy(config(StrategyKind::simple, 2, 1)), ConfigurationError);
  EXPECT_THROW(Strategy(config(StrategyKind::simple, 0, 1, 1.5)), ConfigurationError);
  EXPECT_THROW(Strategy(config(StrategyKind::simple, 0, 1, 1, -1)), ConfigurationError);
}

TEST(Strategy, SimpleScalesOutForParallelismTimesOutstandingUpToMaxBlocks) {
  // 2 workers per block, one block: 10 tasks want 8 more slots = 4 blocks, max_blocks allows 2.
  Strategy s(config(StrategyKind::simple, 0, 3));
  EXPECT_EQ(s.decide(snap(0, 10, {block("0")}, 2)).start, 2);
  // Blocks just submitted (not connected yet) count as slots: no second request for them.
  EXPECT_EQ(s.decide(snap(1, 10, {block("0"), block("1", JobState::pending, 0), block("2", JobState::pending, 0)}, 2)).start, 0);
}

TEST(Strategy, ParallelismScalesTheDemand) {
  // parallelism 0.5: 12 tasks want 6 slots; 1 block of 2 has 2: 4 missing = 2 blocks.
  Strategy half(config(StrategyKind::simple, 0, 10, 0.5));
  EXPECT_EQ(half.decide(snap(0, 12, {block("0")}, 2)).start, 2);
  // 4 tasks on 2 slots is exactly 0.5: nothing.
  Strategy enough(config(StrategyKind::simple, 0, 10, 0.5));
  EXPECT_EQ(enough.decide(snap(0, 4, {block("0")}, 2)).start, 0);
  // parallelism 0: one block however many tasks, none while one is there.
  Strategy zero(config(StrategyKind::simple, 0, 10, 0));
  EXPECT_EQ(zero.decide(snap(0, 100, {})).start, 1);
  EXPECT_EQ(zero.decide(snap(1, 100, {block("0")})).start, 0);
}

TEST(Strategy, PoolsStartedByHandCountAsCapacity) {
  Strategy s(config(StrategyKind::simple, 0, 3));
  StrategySnapshot snapshot = snap(0, 4, {}, 2);
  snapshot.other_workers = 4;  // enough for the 4 tasks: no block
  EXPECT_EQ(s.decide(snapshot).start, 0);
  snapshot.outstanding = 8;  // 4 short: 2 blocks of 2
  EXPECT_EQ(s.decide(snapshot).start, 2);
}

TEST(Strategy, SimpleScalesInToMinBlocksOnlyAfterTheExecutorWasIdleForMaxIdletime) {
  Strategy s(config(StrategyKind::simple, 1, 3, 1, 10));
  std::vector<BlockSnapshot> three{block("0", JobState::running, 1, 0, 50), block("1", JobState::running, 1, 0, 50),
                                   block("2", JobState::running, 1, 0, 50)};
  // Slots exceed the demand, but tasks are outstanding: simple does not scale in.
  EXPECT_TRUE(s.decide(snap(0, 1, three)).empty());
  EXPECT_TRUE(s.decide(snap(5, 0, three)).empty());   // idle since t=5
  EXPECT_TRUE(s.decide(snap(14, 0, three)).empty());  // 9 s idle
  auto d = s.decide(snap(15, 0, three));              // 10 s idle: drain 2 of 3
  EXPECT_EQ(d.drain.size(), 2u);
  EXPECT_TRUE(d.cancel.empty());  // connected pools are drained first, not killed
  // Drained pools disconnect: then their blocks are cancelled, once.
  for (auto& b : three)
    if (contains(d.drain, b.block_id)) b.pools = 0;
  auto d2 = s.decide(snap(16, 0, three));
  EXPECT_EQ(d2.cancel, d.drain);
  EXPECT_EQ(d2.start, 0);
  for (auto& b : three)
    if (contains(d.drain, b.block_id)) b.status.state = JobState::cancelled;
  EXPECT_TRUE(s.decide(snap(17, 0, three)).empty());  // their end is no failure, nothing replaced
}

TEST(Strategy, NewWorkResetsTheIdleTimer) {
  Strategy s(config(StrategyKind::simple, 0, 2, 1, 10));
  std::vector<BlockSnapshot> one{block("0", JobState::running, 1, 0, 100)};
  s.decide(snap(0, 0, one));
  s.decide(snap(8, 1, one));                           // a task came
  EXPECT_TRUE(s.decide(snap(9, 0, one)).empty());      // idle again since t=9
  EXPECT_TRUE(s.decide(snap(18, 0, one)).empty());
  EXPECT_EQ(s.decide(snap(19, 0, one)).drain, std::vector<std::string>{"0"});
}

TEST(Strategy, HtexAutoScaleDrainsIdleBlocksWhileOthersWork) {
  Strategy s(config(StrategyKind::htex_auto_scale, 0, 4, 1, 10));
  // 4 blocks of 1 worker, 1 task: 3 spare blocks, but only idle ones for max_idletime go.
  std::vector<BlockSnapshot> blocks{block("0", JobState::running, 1, 1), block("1", JobState::running, 1, 0, 30),
                                    block("2", JobState::running, 1, 0, 5), block("3", JobState::running, 1, 0, 12)};
  auto d = s.decide(snap(0, 1, blocks));
  EXPECT_EQ(d.drain, (std::vector<std::string>{"1", "3"}));  // longest idle first; "0" is busy, "2" not idle long enough
  // The retiring blocks no longer count: 2 active for 1 task, "2" still too fresh.
  blocks[2].idle_seconds = 9;
  EXPECT_TRUE(s.decide(snap(1, 1, blocks)).drain.empty());
  blocks[2].idle_seconds = 10;
  EXPECT_EQ(s.decide(snap(2, 1, blocks)).drain, std::vector<std::string>{"2"});
}

TEST(Strategy, HtexAutoScaleScalesInWithoutWorkDownToMinBlocks) {
  Strategy s(config(StrategyKind::htex_auto_scale, 1, 3, 1, 10));
  std::vector<BlockSnapshot> blocks{block("0", JobState::running, 1, 0, 20), block("1", JobState::running, 1, 0, 30),
                                    block("2", JobState::running, 1, 0, 40)};
  auto d = s.decide(snap(0, 0, blocks));
  EXPECT_EQ(d.drain, (std::vector<std::string>{"2", "1"}));
}

TEST(Strategy, BlocksThatNeverConnectedAreCancelledFirstWithoutDraining) {
  Strategy s(config(StrategyKind::htex_auto_scale, 0, 3, 1, 10));
  std::vector<BlockSnapshot> blocks{block("0", JobState::running, 1, 0, 5), block("1", JobState::pending, 0)};
  EXPECT_TRUE(s.decide(snap(0, 0, blocks)).empty());  // "1" first seen now, "0" idle for 5 s
  blocks[0].idle_seconds = 15;
  auto d = s.decide(snap(10, 0, blocks));  // both idle for max_idletime: "1" is cancelled, "0" drained
  EXPECT_EQ(d.cancel, std::vector<std::string>{"1"});
  EXPECT_EQ(d.drain, std::vector<std::string>{"0"});
}

TEST(Strategy, KeepsMinBlocksReplacingBlocksThatEnded) {
  Strategy s(config(StrategyKind::simple, 2, 4));
  EXPECT_EQ(s.decide(snap(0, 0, {})).start, 2);
  // One was killed after its pool had connected: replaced, and not a start failure.
  auto d = s.decide(snap(1, 0, {block("0"), block("1", JobState::failed, 1, 0, 0, "killed by signal 9")}));
  EXPECT_EQ(d.start, 1);
  EXPECT_FALSE(d.fail);
}

TEST(Strategy, BelowMinBlocksWithWorkStartsWhatTheDemandNeedsInOneRound) {
  // min 2, one block left, 10 tasks on 1-worker blocks: 1 for min_blocks + up to max_blocks.
  Strategy s(config(StrategyKind::simple, 2, 5));
  EXPECT_EQ(s.decide(snap(0, 10, {block("0")})).start, 4);
  Strategy few(config(StrategyKind::simple, 3, 5));
  EXPECT_EQ(few.decide(snap(0, 1, {block("0")})).start, 2);  // min_blocks alone
}

TEST(Strategy, BlocksFailingInARowFailTheExecutorWithTheProvidersMessage) {
  Strategy s(config(StrategyKind::simple, 0, 2));
  auto failed = [](std::string id) { return block(std::move(id), JobState::failed, 0, 0, 0, "exit code 3"); };
  auto d = s.decide(snap(0, 5, {failed("0")}));
  EXPECT_FALSE(d.fail);
  EXPECT_EQ(d.start, 2);  // it is replaced: the failure may have been passing
  d = s.decide(snap(1, 5, {failed("0"), failed("1"), block("2", JobState::pending, 0)}));
  EXPECT_FALSE(d.fail);
  d = s.decide(snap(2, 5, {failed("0"), failed("1"), failed("2")}));
  ASSERT_TRUE(d.fail);
  EXPECT_NE(d.fail->find("3 blocks in a row"), std::string::npos) << *d.fail;
  EXPECT_NE(d.fail->find("block 2 FAILED: exit code 3"), std::string::npos) << *d.fail;
  EXPECT_EQ(d.failed_block, "2");
  EXPECT_EQ(d.start, 0);
  // A failed executor decides nothing more.
  EXPECT_TRUE(s.decide(snap(3, 5, {failed("0"), failed("1"), failed("2")})).empty());
}

TEST(Strategy, BlocksWhosePoolsCannotStartWorkersCountAsFailedAlthoughTheyConnected) {
  Strategy s(config(StrategyKind::simple, 0, 1));
  auto broken = [](std::string id, JobState state) {
    BlockSnapshot b = block(std::move(id), state, 0, 0, 0, "exit code 5");
    b.ever_connected = true;  // its pool registered, then reported FAILED
    b.worked = false;
    b.broken = "pool p cannot run tasks: interpreter '/no/python'";
    return b;
  };
  auto d = s.decide(snap(0, 5, {broken("0", JobState::failed)}));
  EXPECT_FALSE(d.fail);
  EXPECT_EQ(d.start, 1);
  // Block 1's pool registered and has not reported yet: no proof that the block works.
  BlockSnapshot registered = block("1", JobState::running, 1);
  registered.worked = false;
  EXPECT_FALSE(s.decide(snap(0.5, 5, {broken("0", JobState::failed), registered})).fail);
  d = s.decide(snap(1, 5, {broken("0", JobState::failed), broken("1", JobState::failed), block("2", JobState::pending, 0)}));
  EXPECT_FALSE(d.fail);
  EXPECT_EQ(d.start, 0);  // max_blocks 1
  d = s.decide(snap(2, 5, {broken("0", JobState::failed), broken("1", JobState::failed), broken("2", JobState::failed)}));
  ASSERT_TRUE(d.fail);
  EXPECT_NE(d.fail->find("3 blocks in a row failed"), std::string::npos) << *d.fail;
  EXPECT_NE(d.fail->find("interpreter '/no/python'"), std::string::npos) << *d.fail;
  EXPECT_EQ(d.start, 0);
}

TEST(Strategy, ABlockWhosePoolsRunTasksResetsTheFailureCount) {
  Strategy s(config(StrategyKind::simple, 0, 5));
  auto failed = [](std::string id) { return block(std::move(id), JobState::failed, 0, 0, 0, "exit code 1"); };
  s.decide(snap(0, 5, {failed("0"), failed("1")}));
  s.decide(snap(1, 5, {failed("0"), failed("1"), block("2")}));
  auto d = s.decide(snap(2, 5, {failed("0"), failed("1"), block("2"), failed("3"), failed("4")}));
  EXPECT_FALSE(d.fail);
  StrategyConfig never = config(StrategyKind::simple, 0, 5);
  never.max_failed_blocks = 0;
  Strategy patient(never);
  EXPECT_FALSE(patient.decide(snap(0, 5, {failed("0"), failed("1"), failed("2"), failed("3")})).fail);
}

TEST(Strategy, NoneStartsAndStopsNothing) {
  Strategy s(config(StrategyKind::none, 0, 10));
  std::vector<BlockSnapshot> idle{block("0", JobState::running, 1, 0, 1000)};
  EXPECT_TRUE(s.decide(snap(0, 100, idle)).empty());
  EXPECT_TRUE(s.decide(snap(1000, 0, idle)).empty());
}

TEST(Strategy, NoneFailsWhenEveryBlockHasEndedSinceNothingWouldReplaceThem) {
  // The only block fails before connecting: its message is the reason.
  Strategy s(config(StrategyKind::none, 0, 1));
  auto d = s.decide(snap(0, 0, {block("0", JobState::failed, 0, 0, 0, "exit code 3")}));
  ASSERT_TRUE(d.fail);
  EXPECT_NE(d.fail->find("exit code 3"), std::string::npos);
  // A block that worked and then ended, with work left: the futures would wait forever.
  Strategy t(config(StrategyKind::none, 0, 1));
  EXPECT_FALSE(t.decide(snap(0, 0, {block("0", JobState::completed, 1)})).fail);
  EXPECT_TRUE(t.decide(snap(1, 3, {block("0", JobState::completed, 1)})).fail);
}

TEST(Strategy, BlocksItRetiredAreNoFailures) {
  StrategyConfig c = config(StrategyKind::htex_auto_scale, 0, 3, 1, 0);
  c.max_failed_blocks = 1;
  Strategy s(c);
  auto d = s.decide(snap(0, 0, {block("0", JobState::pending, 0)}));
  EXPECT_EQ(d.cancel, std::vector<std::string>{"0"});
  EXPECT_TRUE(s.retiring("0"));
  EXPECT_FALSE(s.decide(snap(1, 0, {block("0", JobState::cancelled, 0)})).fail);
}

TEST(Strategy, ScaleInNowTakesIdleBlocksOnlyWithMaxIdletime) {
  Strategy s(config(StrategyKind::none, 0, 4));
  std::vector<BlockSnapshot> blocks{block("0", JobState::running, 1, 2), block("1", JobState::running, 1, 0, 30),
                                    block("2", JobState::running, 1, 0, 5), block("3", JobState::pending, 0)};
  EXPECT_TRUE(s.decide(snap(0, 2, blocks)).empty());  // "3" is first seen now
  // With max_idletime: never a busy block, nor one idle for less; never-connected first.
  auto d = s.scale_in_now(snap(20, 2, blocks), 3, 10.0);
  EXPECT_EQ(d.cancel, std::vector<std::string>{"3"});
  EXPECT_EQ(d.drain, std::vector<std::string>{"1"});
  EXPECT_TRUE(s.retiring("1") && s.retiring("3"));
  // Without: any block, busy ones too (drained: their tasks finish first); retired ones not again.
  d = s.scale_in_now(snap(21, 2, blocks), 5, std::nullopt);
  EXPECT_TRUE(d.cancel.empty());
  EXPECT_EQ(d.drain, (std::vector<std::string>{"2", "0"}));  // the idle one first
}

TEST(Strategy, BlocksScaledInFromOutsideAreNoFailures) {
  StrategyConfig c = config(StrategyKind::simple, 0, 2);
  c.max_failed_blocks = 1;
  Strategy s(c);
  EXPECT_EQ(s.scale_in_now(snap(0, 0, {block("0", JobState::pending, 0)}), 1, std::nullopt).cancel,
            std::vector<std::string>{"0"});
  EXPECT_FALSE(s.decide(snap(1, 0, {block("0", JobState::cancelled, 0)})).fail);
}
