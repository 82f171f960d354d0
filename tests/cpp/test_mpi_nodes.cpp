// MPI mode without I/O (docs/mpi.md): the block's node ledger, the environment of an MPI task,
// the parsers of Slurm's and PBS's node lists, and PoolCore placing MPI tasks next to ordinary
// ones with fake workers and time.
#include <gtest/gtest.h>

#include <cstdlib>
#include <fstream>
#include <map>
#include <string>
#include <vector>

#include "pool/mpi_discovery.hpp"
#include "pool/mpi_nodes.hpp"
#include "pool/pool_core.hpp"
#include "pool_core_harness.hpp"
#include "protocol/messages.hpp"

using namespace pervade;
using namespace pervade::pool;
using namespace std::chrono_literals;

namespace {

MpiBlock block(int nodes, int cores, bool known = true, std::string launcher = "mpiexec") {
  MpiBlock b;
  b.launcher = std::move(launcher);
  b.cores_known = known;
  for (int i = 0; i < nodes; ++i) b.nodes.push_back(MpiNode{"n" + std::to_string(i + 1), cores});
  return b;
}

MpiRequest request(int nodes, int per_node, std::string options = "") {
  return MpiRequest{nodes, per_node, nodes * per_node, std::move(options)};
}

std::map<std::string, std::string> as_map(const std::vector<std::pair<std::string, std::string>>& env) {
  return {env.begin(), env.end()};
}

TEST(MpiNodesTest, TasksShareANodeWhileTheirRanksFitItsCoresAndGetNodesOfTheirOwnOtherwise) {
  MpiNodes nodes(block(3, 4));
  auto a = nodes.take(request(1, 2));  // 2 of n1's 4 cores
  ASSERT_TRUE(a);
  EXPECT_EQ(a->nodes, (std::vector<int>{0}));
  auto b = nodes.take(request(1, 2));  // the fullest node that fits: n1 again
  ASSERT_TRUE(b);
  EXPECT_EQ(b->nodes, (std::vector<int>{0}));
  auto c = nodes.take(request(2, 4));  // two whole nodes: n2, n3
  ASSERT_TRUE(c);
  EXPECT_EQ(c->nodes, (std::vector<int>{1, 2}));
  EXPECT_FALSE(nodes.take(request(1, 1)));  // every core is taken
  nodes.give_back(*a);
  auto d = nodes.take(request(1, 1));
  ASSERT_TRUE(d);
  EXPECT_EQ(d->nodes, (std::vector<int>{0}));
  EXPECT_EQ(nodes.free_cores(0), 1);
  for (const auto& g : {*b, *c, *d}) nodes.give_back(g);
  for (int n = 0; n < 3; ++n) EXPECT_EQ(nodes.free_cores(n), 4);
}

TEST(MpiNodesTest, ATaskThatNamesNoRanksGetsWholeNodesAndOneRankPerCore) {
  MpiNodes nodes(block(2, 4));
  auto small = nodes.take(request(1, 1));
  ASSERT_TRUE(small);
  MpiRequest whole{1, 0, 0, ""};
  auto g = nodes.take(whole);
  ASSERT_TRUE(g);
  EXPECT_EQ(g->nodes, (std::vector<int>{1}));  // n1 is not whole any more
  EXPECT_FALSE(nodes.take(whole));
  auto env = as_map(nodes.environment(whole, *g));
  EXPECT_EQ(env["PARSL_RANKS_PER_NODE"], "4");
  EXPECT_EQ(env["PARSL_NUM_RANKS"], "4");
  nodes.give_back(*g);
  EXPECT_EQ(nodes.free_cores(1), 4);
}

TEST(MpiNodesTest, RequestsTheBlockCanNeverHoldNameTheirKey) {
  MpiNodes nodes(block(2, 4));
  EXPECT_FALSE(nodes.never_fits(request(2, 4)));
  auto too_many = nodes.never_fits(request(3, 1));
  ASSERT_TRUE(too_many);
  EXPECT_EQ(too_many->key, "num_nodes");
  EXPECT_EQ(too_many->why, "the task asks for 3 nodes (num_nodes) but the block has 2");
  auto too_wide = nodes.never_fits(request(1, 5));
  ASSERT_TRUE(too_wide);
  EXPECT_EQ(too_wide->key, "ranks_per_node");
  EXPECT_NE(too_wide->why.find("(the most: 4)"), std::string::npos) << too_wide->why;
}

TEST(MpiNodesTest, WhenCoresAreAGuessATaskWithMoreRanksPerNodeGetsWholeNodesInstead) {
  MpiNodes nodes(block(2, 2, /*known=*/false));
  EXPECT_FALSE(nodes.never_fits(request(2, 8)));
  auto g = nodes.take(request(1, 8));
  ASSERT_TRUE(g);
  EXPECT_EQ(nodes.free_cores(g->nodes[0]), 0);
  auto env = as_map(nodes.environment(request(1, 8), *g));
  EXPECT_EQ(env["PARSL_RANKS_PER_NODE"], "8");  // what the task asked for: it oversubscribes, as in Parsl
  nodes.give_back(*g);
  EXPECT_EQ(nodes.free_cores(g->nodes[0]), 2);
}

TEST(MpiNodesTest, TheEnvironmentHasParslsVariablesAndPrefixes) {
  MpiNodes nodes(block(3, 4, true, "srun"));
  MpiRequest r{2, 3, 5, "--mpi=pmi2"};
  auto g = nodes.take(r);
  ASSERT_TRUE(g);
  auto env = as_map(nodes.environment(r, *g));
  EXPECT_EQ(env["PARSL_NUM_NODES"], "2");
  EXPECT_EQ(env["PARSL_RANKS_PER_NODE"], "3");
  EXPECT_EQ(env["PARSL_NUM_RANKS"], "5");
  EXPECT_EQ(env["PARSL_MPI_NODELIST"], "n1,n2");
  EXPECT_EQ(env["PARSL_LAUNCHER_OPTIONS"], "--mpi=pmi2");
  EXPECT_EQ(env["PARSL_MPIEXEC_PREFIX"], "mpiexec -n 5 -ppn 3 -hosts n1,n2 --mpi=pmi2");
  EXPECT_EQ(env["PARSL_SRUN_PREFIX"], "srun --ntasks 5 --ntasks-per-node 3 --nodelist n1,n2 --nodes 2 --mpi=pmi2");
  EXPECT_EQ(env["PARSL_APRUN_PREFIX"], "aprun -n 5 -N 3 -node-list n1,n2 --mpi=pmi2");
  EXPECT_EQ(env["PARSL_MPI_PREFIX"], env["PARSL_SRUN_PREFIX"]);
  // Without launcher_options: no variable, and Parsl's trailing blank in the prefixes.
  auto plain = as_map(MpiNodes(block(1, 1)).environment(request(1, 1), MpiGrant{{0}, 1}));
  EXPECT_FALSE(plain.contains("PARSL_LAUNCHER_OPTIONS"));
  EXPECT_EQ(plain["PARSL_MPI_PREFIX"], "mpiexec -n 1 -ppn 1 -hosts n1 ");
}

TEST(MpiDiscoveryTest, ParsesSlurmsCpusPerNodeHostListsAndPbsNodeFiles) {
  EXPECT_EQ(parse_slurm_cpus_per_node("2(x3),4"), (std::vector<int>{2, 2, 2, 4}));
  EXPECT_EQ(parse_slurm_cpus_per_node("8"), (std::vector<int>{8}));
  EXPECT_TRUE(parse_slurm_cpus_per_node("2(x").empty());
  EXPECT_TRUE(parse_slurm_cpus_per_node("").empty());

  std::string error;
  auto hosts = parse_mpi_hosts("a:4,b:2", &error);
  ASSERT_TRUE(hosts) << error;
  EXPECT_EQ((*hosts)[1].name, "b");
  EXPECT_EQ((*hosts)[1].cores, 2);
  EXPECT_FALSE(parse_mpi_hosts("a:4,b", &error));  // all or none
  EXPECT_FALSE(parse_mpi_hosts("a,,b", &error));
  EXPECT_FALSE(parse_mpi_hosts("a:0", &error));

  auto pbs = parse_pbs_nodefile("x1\nx1\nx2\nx2\n");
  ASSERT_EQ(pbs.size(), 2u);
  EXPECT_EQ(pbs[0].cores, 2);
  auto once = parse_pbs_nodefile("x1\nx2\n\n");
  ASSERT_EQ(once.size(), 2u);
  EXPECT_EQ(once[0].cores, 0);  // not said
}

TEST(MpiDiscoveryTest, ABlocksNodesComeFromTheHostListOrPbsAndCoresAreGuessedWhenNobodySays) {
  ::unsetenv("SLURM_NODELIST");
  ::unsetenv("SLURM_JOB_NODELIST");
  std::string how, error;
  auto listed = discover_mpi_block("srun", "h1:3,h2:3", 8, &how, &error);
  ASSERT_TRUE(listed) << error;
  EXPECT_TRUE(listed->cores_known);
  EXPECT_EQ(listed->launcher, "srun");

  const std::string file = ::testing::TempDir() + "/pbs_nodefile";
  std::ofstream(file) << "p1\np2\np3\n";
  ::setenv("PBS_NODEFILE", file.c_str(), 1);
  auto pbs = discover_mpi_block("mpiexec", "", 6, &how, &error);
  ::unsetenv("PBS_NODEFILE");
  ASSERT_TRUE(pbs) << error;
  EXPECT_FALSE(pbs->cores_known);
  ASSERT_EQ(pbs->nodes.size(), 3u);
  EXPECT_EQ(pbs->nodes[2].name, "p3");
  EXPECT_EQ(pbs->nodes[2].cores, 6);
  EXPECT_EQ(how, "PBS_NODEFILE=" + file);

  EXPECT_FALSE(discover_mpi_block("mpiexec", "", 6, &how, &error));
  EXPECT_NE(error.find("SLURM_NODELIST or PBS_NODEFILE"), std::string::npos) << error;
}

// A pool of 3 workers in MPI mode over 3 nodes of 2 cores.
class PoolCoreMpiTest : public ::testing::Test, public PoolCoreHarness {
 protected:
  PoolCoreMpiTest() : PoolCoreHarness(PoolCoreConfig{"p", 3, true, {}, {}, false, block(3, 2)}) {}

  void submit(std::uint64_t id, MpiRequest mpi) {
    protocol::Task t = python_task(id);
    t.mpi = std::move(mpi);
    accept(std::move(t));
  }

  static std::string nodelist(const protocol::WorkerTask& t) { return as_map(t.env).at("PARSL_MPI_NODELIST"); }
};

TEST_F(PoolCoreMpiTest, MpiTasksGetDisjointNodesAndWaitUntilNodesAreFree) {
  submit(1, request(2, 2));
  submit(2, request(2, 2));  // only one node left: waits
  submit(3, request(1, 2));  // fits on the third node: passes task 2
  auto sent = dispatch();
  ASSERT_EQ(sent.size(), 2u);
  EXPECT_EQ(sent[0].task_id, 1u);
  EXPECT_EQ(nodelist(sent[0]), "n1,n2");
  EXPECT_EQ(sent[1].task_id, 3u);
  EXPECT_EQ(nodelist(sent[1]), "n3");
  finish(1);
  sent = dispatch();
  ASSERT_EQ(sent.size(), 1u);
  EXPECT_EQ(sent[0].task_id, 2u);
  EXPECT_EQ(nodelist(sent[0]), "n1,n2");
  finish(2);
  finish(3);
  EXPECT_EQ(core.results().size(), 3u);
  for (int n = 0; n < 3; ++n) EXPECT_EQ(core.mpi_nodes()->free_cores(n), 2);
  core.results().clear();
  EXPECT_TRUE(core.drained());
}

TEST_F(PoolCoreMpiTest, OrdinaryTasksRunOnWorkersBesideMpiTasksWithoutTheirVariables) {
  submit(1, request(3, 2));
  submit(2, MpiRequest{});
  submit(3, MpiRequest{});
  auto sent = dispatch();
  ASSERT_EQ(sent.size(), 3u);
  for (const auto& t : sent) EXPECT_EQ(t.env.empty(), t.task_id != 1u) << t.task_id;
  EXPECT_NE(rank_of[1], rank_of[2]);
  EXPECT_NE(rank_of[1], rank_of[3]);
}

TEST_F(PoolCoreMpiTest, ATaskTheBlockCanNeverHoldFailsAtOnceNamingTheKey) {
  submit(1, request(4, 1));
  ASSERT_EQ(core.results().size(), 1u);
  EXPECT_EQ(core.results()[0].status, protocol::kStatusInvalid);
  EXPECT_EQ(core.results()[0].payload, "num_nodes\nthe task asks for 4 nodes (num_nodes) but the block has 3 (pool p)");
  EXPECT_TRUE(dispatch().empty());
}

TEST_F(PoolCoreMpiTest, ADeadWorkersMpiTaskGivesItsNodesBackAndACancelledQueuedOneLeaves) {
  submit(1, request(3, 2));
  submit(2, request(1, 1));
  ASSERT_EQ(dispatch().size(), 1u);
  int rank = -1;
  EXPECT_EQ(core.cancel(2, &rank), CancelOutcome::answered);
  EXPECT_EQ(core.worker_died(rank_of[1], "worker 0 (pid 9) died with signal 9", ""), DeathOutcome::lost);
  for (int n = 0; n < 3; ++n) EXPECT_EQ(core.mpi_nodes()->free_cores(n), 2);
  ASSERT_EQ(core.results().size(), 2u);
  EXPECT_EQ(core.results()[0].status, protocol::kStatusCancelled);
  EXPECT_EQ(core.results()[1].status, protocol::kStatusWorkerLost);
}

TEST(PoolCoreMpiOffTest, APoolNotInMpiModeRefusesMpiTasks) {
  PoolCore core(PoolCoreConfig{"p", 1, true});
  protocol::Task t;
  t.task_id = 1;
  t.kind = protocol::kKindPython;
  t.fn_hash = "h";
  t.fn = "fn";
  t.mpi = request(1, 1);
  protocol::Tasks m{{t}};
  core.accept(m);
  ASSERT_EQ(core.results().size(), 1u);
  EXPECT_EQ(core.results()[0].status, protocol::kStatusInvalid);
  EXPECT_EQ(core.results()[0].payload.rfind("num_nodes\npool p is not in MPI mode", 0), 0u);
}

}  // namespace
