// pervade-exex-pool without MPI (docs/mpi.md, "One pool per block"): the messages between its
// ranks, and PoolCore as rank 0 runs it, each rank a node whose worker slots follow the nodes
// before it, a lost rank's workers dying with WorkerLost while the other nodes go on.
#include <gtest/gtest.h>

#include <set>
#include <string>

#include "pool/exex_wire.hpp"
#include "pool/pool_core.hpp"
#include "pool_core_harness.hpp"

using namespace pervade;
using namespace pervade::pool;

TEST(ExexWire, MessagesRoundTrip) {
  exex::Message start;
  start.type = exex::Type::start;
  start.slot = 3;
  start.b = 1;
  start.strings = {"python3", "-m", "pervade.worker", "", "PERVADE_WORKER_RANK=7"};
  auto back = exex::decode(exex::encode(start));
  ASSERT_TRUE(back);
  EXPECT_EQ(back->type, exex::Type::start);
  EXPECT_EQ(back->slot, 3u);
  EXPECT_EQ(back->b, 1);
  EXPECT_EQ(back->strings, start.strings);
  EXPECT_TRUE(back->data.empty());

  exex::Message hello;
  hello.type = exex::Type::hello;
  hello.a = 64;
  hello.b = 128;
  hello.c = std::int64_t{1} << 40;
  hello.strings = {"node2"};
  back = exex::decode(exex::encode(hello));
  ASSERT_TRUE(back);
  EXPECT_EQ(back->a, 64);
  EXPECT_EQ(back->c, std::int64_t{1} << 40);
  EXPECT_EQ(back->strings, hello.strings);
}

TEST(ExexWire, ADataBatchCarriesSeveralStreamsBytesUnchanged) {
  exex::DataBatch batch;
  const std::string a("\0\1frame\xff", 8), b = "second worker";
  EXPECT_TRUE(batch.empty());
  batch.append(9, a);
  batch.append(2, b);
  const std::string message = batch.take();
  EXPECT_TRUE(batch.empty());
  auto m = exex::decode(message);
  ASSERT_TRUE(m);
  EXPECT_EQ(m->type, exex::Type::data);
  std::string_view rest = m->data, piece;
  std::uint32_t slot = 0;
  bool malformed = false;
  ASSERT_TRUE(exex::next_piece(&rest, &slot, &piece, &malformed));
  EXPECT_EQ(slot, 9u);
  EXPECT_EQ(std::string(piece), a);
  ASSERT_TRUE(exex::next_piece(&rest, &slot, &piece, &malformed));
  EXPECT_EQ(slot, 2u);
  EXPECT_EQ(std::string(piece), b);
  EXPECT_FALSE(exex::next_piece(&rest, &slot, &piece, &malformed));
  EXPECT_FALSE(malformed);
  // A piece longer than what is left is malformed.
  std::string_view cut = std::string_view(m->data).substr(0, 10);
  EXPECT_FALSE(exex::next_piece(&cut, &slot, &piece, &malformed));
  EXPECT_TRUE(malformed);
}

TEST(ExexWire, MalformedMessagesAreRejected) {
  exex::Message m;
  m.type = exex::Type::exited;
  m.strings = {"exited with status 0"};
  const std::string good = exex::encode(m);
  EXPECT_TRUE(exex::decode(good));
  for (std::size_t cut = 0; cut < good.size(); ++cut) EXPECT_FALSE(exex::decode(good.substr(0, cut))) << cut;
  EXPECT_FALSE(exex::decode(good + "x"));  // trailing bytes only on data messages
  std::string bad_type = good;
  bad_type[0] = 42;
  EXPECT_FALSE(exex::decode(bad_type));
  std::string huge_count = good;
  huge_count[exex::kHeaderSize - 1] = '\x7f';  // a string count no message could hold
  EXPECT_FALSE(exex::decode(huge_count));
}

namespace {

// Rank 0 with 2 workers, ranks 1 and 2 with 2 each: slots 0-1, 2-3, 4-5 on nodes 0, 1, 2.
PoolCoreConfig three_ranks() {
  PoolCoreConfig c;
  c.pool_id = "exex";
  c.workers = 6;
  for (int n = 0; n < 3; ++n) c.nodes.push_back(NodeCapacity{{0, 1}, 1024, {}});
  c.slot_node = {0, 0, 1, 1, 2, 2};
  return c;
}

}  // namespace

TEST(ExexPoolCore, TasksGoToTheWorkersOfEveryRank) {
  PoolCoreHarness h(three_ranks());
  for (std::uint64_t id = 1; id <= 6; ++id) h.accept(h.python_task(id));
  const auto sent = h.dispatch();
  ASSERT_EQ(sent.size(), 6u);
  std::set<int> ranks;
  for (const auto& [id, rank] : h.rank_of) ranks.insert(rank);
  EXPECT_EQ(ranks, (std::set<int>{0, 1, 2, 3, 4, 5}));
}

TEST(ExexPoolCore, ALostRanksTasksFailWithWorkerLostAndTheOthersGoOn) {
  PoolCoreHarness h(three_ranks());
  for (std::uint64_t id = 1; id <= 6; ++id) h.accept(h.python_task(id));
  h.dispatch();
  // Rank 2 (node 2, slots 4 and 5) is lost: the pool reports both workers dead and does not
  // restart them.
  std::set<std::uint64_t> lost;
  for (int slot : {4, 5}) {
    EXPECT_EQ(h.core.worker_died(slot, "worker (rank 2 on node3) was lost with its rank: no message from it for 3 s", ""), DeathOutcome::lost);
  }
  for (const auto& r : h.core.results()) {
    EXPECT_EQ(r.status, protocol::kStatusWorkerLost);
    EXPECT_NE(r.payload.find("was lost with its rank"), std::string::npos);
    lost.insert(r.task_id);
  }
  h.core.results().clear();
  EXPECT_EQ(lost.size(), 2u);
  // New tasks run on the other ranks' workers only.
  for (std::uint64_t id = 1; id <= 6; ++id)
    if (!lost.count(id)) h.finish(id);
  h.core.results().clear();
  for (std::uint64_t id = 7; id <= 10; ++id) h.accept(h.python_task(id));
  h.dispatch();
  for (std::uint64_t id = 7; id <= 10; ++id) EXPECT_LT(h.rank_of.at(id), 4) << id;
}
