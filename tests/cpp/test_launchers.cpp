// Launchers: the shell text each one produces, run by bash. The parallel launchers (srun,
// aprun, jsrun, mpiexec, mpirun) run against a stand-in that logs its command line and starts
// the trailing `bash -c <command>` once per requested task, which checks both the flags and
// that the command reaches every copy unchanged through the quoting.
#include <algorithm>

#include <gtest/gtest.h>

#include "fake_commands.hpp"
#include "pervade/launchers.hpp"

using namespace pervade;
using namespace pervade::test;

namespace {

// Stands in for srun, aprun, jsrun, mpiexec and mpirun.
constexpr const char* kFakeParallelLauncher = R"(
printf '%s\n' "$(basename "$0") $*" >> launcher.log
N=1
while [ $# -gt 0 ]; do
  case "$1" in
    -n|-np|--ntasks|--nodes) N=$2; shift 2;;
    */bash) break;;
    *) shift;;
  esac
done
PIDS=""
for i in $(seq 1 "$N"); do PMI_RANK=$((i - 1)) "$@" & PIDS="$PIDS $!"; done
FAILED=0
for p in $PIDS; do wait "$p" || FAILED=1; done
exit $FAILED
)";

class Launchers : public ::testing::Test {
 protected:
  void SetUp() override {
    std::filesystem::create_directories(fake_ / "bin");
    for (const char* name : {"srun", "aprun", "jsrun", "mpiexec", "mpirun"})
      write_command(fake_ / "bin", name, kFakeParallelLauncher);
  }
  BashRun run(const std::string& script, const std::string& env = "") {
    return run_bash(fake_.path(), script, env, fake_ / "bin");
  }
  std::vector<std::string> sorted_output_lines() {
    auto l = lines_of(read_file(fake_ / "out.txt"));
    std::sort(l.begin(), l.end());
    return l;
  }
  std::string launcher_log() { return read_file(fake_ / "launcher.log"); }

  TempDir fake_;
  // A single quote and a variable: both must survive the launcher's quoting.
  const std::string command_ = "echo \"it's rank $PMI_RANK\" >> out.txt";
};

std::vector<std::string> ranks(int n) {
  std::vector<std::string> out;
  for (int i = 0; i < n; ++i) out.push_back("it's rank " + std::to_string(i));
  return out;
}

TEST_F(Launchers, SimpleLeavesTheCommandAlone) {
  EXPECT_EQ(SimpleLauncher().wrap("pervade-pool --x 'y'", 4, 3), "pervade-pool --x 'y'");
  EXPECT_EQ(SimpleLauncher().name(), "SimpleLauncher");
}

TEST_F(Launchers, WrappedPrependsItsCommand) {
  WrappedLauncher wrapped("env GREETING=hi");
  const std::string script = wrapped.wrap("echo \"$GREETING\" > out.txt", 8, 2);
  EXPECT_EQ(script, "env GREETING=hi echo \"$GREETING\" > out.txt");
  // The prepended command runs the rest: `env` sets the variable for echo's process, but
  // $GREETING is expanded by the outer shell first, so use printenv to see it.
  EXPECT_EQ(run(wrapped.wrap("printenv GREETING > out.txt", 1, 1)).exit_code, 0);
  EXPECT_EQ(read_file(fake_ / "out.txt"), "hi\n");
  EXPECT_EQ(WrappedLauncher("").wrap("true", 1, 1), "true");
}

TEST_F(Launchers, SingleNodeRunsEveryCopyAndReportsFailures) {
  // Copy 2 fails: the block succeeds unless fail_on_any.
  const std::string cmd = "echo \"copy $1 of $CORES cores\" >> out.txt; [ \"$1\" != 2 ]";
  const auto r = run(SingleNodeLauncher().wrap(cmd, 3, 1));
  EXPECT_EQ(r.exit_code, 0) << r.output;
  const auto l = sorted_output_lines();
  ASSERT_EQ(l.size(), 3u);
  for (int i = 0; i < 3; ++i) EXPECT_EQ(l[i].rfind("copy " + std::to_string(i + 1) + " of ", 0), 0u) << l[i];
  EXPECT_EQ(run(SingleNodeLauncher(true).wrap(cmd, 3, 1)).exit_code, 1);
  EXPECT_EQ(run(SingleNodeLauncher().wrap("exit 7", 1, 1)).exit_code, 7) << "one copy: the command's own status";
}

TEST_F(Launchers, SrunStartsTasksPerNodeTimesNodes) {
  SrunLauncher srun("--cpu-bind=none");
  const std::string script = srun.wrap(command_, 3, 2);
  EXPECT_NE(script.find("srun --ntasks 6 -l --cpu-bind=none /bin/bash -c "), std::string::npos) << script;
  EXPECT_NE(script.find("export CORES=$SLURM_CPUS_ON_NODE"), std::string::npos);
  const auto r = run(script);
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_EQ(sorted_output_lines(), ranks(6));
  EXPECT_EQ(launcher_log().rfind("srun --ntasks 6 -l --cpu-bind=none /bin/bash -c ", 0), 0u) << launcher_log();
}

TEST_F(Launchers, SrunWithoutOverridesHasNoDoubleBlank) {
  EXPECT_NE(SrunLauncher().wrap("x", 1, 1).find("srun --ntasks 1 -l /bin/bash -c 'x'"), std::string::npos);
}

TEST_F(Launchers, AprunAndJsrunAskForTasksPerNode) {
  const auto aprun = AprunLauncher("-cc depth").wrap(command_, 2, 2);
  EXPECT_EQ(aprun.rfind("aprun -n 4 -N 2 -cc depth /bin/bash -c ", 0), 0u) << aprun;
  ASSERT_EQ(run(aprun).exit_code, 0);
  EXPECT_EQ(sorted_output_lines(), ranks(4));

  std::filesystem::remove(fake_ / "out.txt");
  const auto jsrun = JsrunLauncher().wrap(command_, 2, 3);
  EXPECT_EQ(jsrun.rfind("jsrun -n 6 -r 2 /bin/bash -c ", 0), 0u) << jsrun;
  ASSERT_EQ(run(jsrun).exit_code, 0);
  EXPECT_EQ(sorted_output_lines(), ranks(6));
}

TEST_F(Launchers, MpiExecUsesTheDeduplicatedPbsNodeFile) {
  write_file(fake_ / "nodefile", "node2\nnode1\nnode2\nnode1\n");
  const auto script = MpiExecLauncher("--bind-to", "--ppn 2").wrap(command_, 2, 2);
  const auto r = run(script, "export PBS_NODEFILE=" + (fake_ / "nodefile").string() +
                                 "\nexport PERVADE_SCRIPT_DIR=" + fake_.path().string() + "\nexport JOBNAME=b0\n");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_EQ(sorted_output_lines(), ranks(4));
  const std::string log = launcher_log();
  EXPECT_EQ(log.rfind("mpiexec --bind-to none --ppn 2 -n 4 --hostfile " + fake_.path().string() + "/cmd_b0.", 0), 0u)
      << log;
  int node_files = 0;
  for (const auto& e : std::filesystem::directory_iterator(fake_.path()))
    if (e.path().extension() == ".nodes") {
      ++node_files;
      EXPECT_EQ(read_file(e.path()), "node1\nnode2\n");
    }
  EXPECT_EQ(node_files, 1);
}

TEST_F(Launchers, MpiExecOutsidePbsRunsOnLocalhost) {
  const auto r = run(MpiExecLauncher().wrap(command_, 1, 1), "export PERVADE_SCRIPT_DIR=" + fake_.path().string() + "\n");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  for (const auto& e : std::filesystem::directory_iterator(fake_.path()))
    if (e.path().extension() == ".nodes") EXPECT_EQ(read_file(e.path()), "localhost\n");
}

TEST_F(Launchers, MpiRunRunsTheGivenBash) {
  const auto script = MpiRunLauncher("/bin/bash", "--oversubscribe").wrap(command_, 4, 1);
  EXPECT_NE(script.find("mpirun -np 4 --oversubscribe '/bin/bash' -c "), std::string::npos) << script;
  ASSERT_EQ(run(script).exit_code, 0);
  EXPECT_EQ(sorted_output_lines(), ranks(4));
}

TEST_F(Launchers, SrunMpiSharesTheAllocationBetweenCopies) {
  const std::string env = "export SLURM_JOB_NUM_NODES=2 SLURM_CPUS_ON_NODE=4\n";
  // 4 copies on 2 nodes: each srun gets 2*4/4 = 2 tasks.
  auto r = run(SrunMPILauncher().wrap(command_, 2, 2), env);
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_EQ(sorted_output_lines().size(), 8u);
  auto log = lines_of(launcher_log());
  ASSERT_EQ(log.size(), 4u);
  for (const auto& l : log) EXPECT_EQ(l.rfind("srun --ntasks 2 -l /bin/bash -c ", 0), 0u) << l;

  // 2 copies on 2 nodes: one exclusive node each.
  std::filesystem::remove(fake_ / "out.txt");
  std::filesystem::remove(fake_ / "launcher.log");
  r = run(SrunMPILauncher("--mpi=pmix").wrap(command_, 1, 2), env);
  ASSERT_EQ(r.exit_code, 0) << r.output;
  log = lines_of(launcher_log());
  ASSERT_EQ(log.size(), 2u);
  for (const auto& l : log) EXPECT_EQ(l.rfind("srun --exclusive --nodes 1 -l --mpi=pmix /bin/bash -c ", 0), 0u) << l;

  // The block fails when a copy fails.
  EXPECT_EQ(run(SrunMPILauncher().wrap("[ \"$PMI_RANK\" != 0 ] || exit 3", 1, 2), env).exit_code, 1);
}

TEST_F(Launchers, GnuParallelRunsEveryCopyThroughParallel) {
  const auto script = GnuParallelLauncher().wrap("echo \"it's copy $1\" >> " + (fake_ / "out.txt").string(), 2, 2);
  EXPECT_NE(script.find("--sshloginfile \"$PERVADE_BASE.nodes\" --jobs 2"), std::string::npos) << script;
  if (std::system("command -v parallel >/dev/null 2>&1") != 0)
    GTEST_SKIP() << "GNU parallel is not installed (apt-get install parallel): GnuParallelLauncher's script "
                    "was checked as text only";
  // A HOME without ~/.parallel: the launcher must not pass --env _ then (parallel would refuse).
  std::filesystem::create_directories(fake_ / "home");
  const auto r = run_bash(fake_.path(), script,
                          "export HOME=" + (fake_ / "home").string() + "\nexport PERVADE_SCRIPT_DIR=" +
                              fake_.path().string() + "\nexport JOBNAME=b0\n");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_EQ(sorted_output_lines(),
            (std::vector<std::string>{"it's copy 1", "it's copy 2", "it's copy 3", "it's copy 4"}));
}

}  // namespace
