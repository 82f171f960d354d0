// Providers and the HighThroughputExecutor from the native C++ API, with real processes:
// LocalProvider blocks (states, exit codes, logs, cancellation of whole process groups) and a
// DataFlowKernel whose HTEX starts the real pervade-pool (built in this tree) through a
// LocalProvider and runs pervade::Shell commands on it without Python.
//
// No test sleeps to let something happen: they wait on futures, on LocalProvider::wait, or
// poll a real condition (a file appearing, a process going away) under a deadline.
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <functional>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "pervade/htex_executor.hpp"
#include "pervade/pervade.hpp"
#include "pervade/provider.hpp"
#include "local_htex.hpp"

#ifndef PERVADE_POOL_BINARY
#error "PERVADE_POOL_BINARY must be the path of the pervade-pool executable"
#endif

using namespace pervade;
using namespace std::chrono_literals;
namespace fs = std::filesystem;

namespace {

fs::path temp_dir() {
  auto dir = fs::temp_directory_path() / ("pervade_htex_cpp_" + std::to_string(::getpid()) + "_" +
                                          ::testing::UnitTest::GetInstance()->current_test_info()->name());
  fs::remove_all(dir);
  fs::create_directories(dir);
  return dir;
}

std::string read_file(const fs::path& p) {
  std::ifstream in(p);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// Polls `condition` until it holds or `timeout` passes (for conditions without an event:
// a file written by another process, a process that is not our child going away).
bool eventually(const std::function<bool()>& condition, std::chrono::milliseconds timeout = 20s) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  while (!condition()) {
    if (std::chrono::steady_clock::now() >= deadline) return false;
    std::this_thread::sleep_for(10ms);
  }
  return true;
}

// Alive = exists and is not a zombie (a zombie runs nothing; its parent may be init).
bool process_alive(pid_t pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/stat");
  if (!in) return false;
  std::string stat((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  const auto paren = stat.rfind(')');
  if (paren == std::string::npos || paren + 2 >= stat.size()) return false;
  const char state = stat[paren + 2];
  return state != 'Z' && state != 'X';
}

// The pid a command wrote into `file` (waits for the file to be complete: "<pid>\n").
pid_t pid_from_file(const fs::path& file) {
  pid_t pid = 0;
  EXPECT_TRUE(eventually([&] {
    const std::string s = read_file(file);
    if (s.empty() || s.back() != '\n') return false;
    pid = static_cast<pid_t>(std::stol(s));
    return true;
  })) << file << " was not written";
  return pid;
}

JobStatus status_of(Provider& p, const std::string& job) { return p.status({job}).at(0); }

// ---------------------------------------------------------------- LocalProvider

TEST(LocalProvider, CommandRunsToCompletionWithItsOutputInTheLog) {
  const auto dir = temp_dir();
  LocalProvider provider;
  const auto log = dir / "logs" / "block.log";  // the directory is created
  const std::string job = provider.submit("echo to-stdout; echo to-stderr >&2", 1, "b0", log.string());
  ASSERT_TRUE(provider.wait({job}, 20s));
  const JobStatus s = status_of(provider, job);
  EXPECT_EQ(s.state, JobState::completed) << s.message;
  EXPECT_EQ(s.exit_code, 0);
  EXPECT_EQ(s.log_path, log.string());
  const std::string text = read_file(log);
  EXPECT_NE(text.find("to-stdout"), std::string::npos) << text;
  EXPECT_NE(text.find("to-stderr"), std::string::npos) << text;
  EXPECT_EQ(provider.job_ids(), std::vector<std::string>{job});
}

TEST(LocalProvider, NonZeroExitIsFailedWithTheExitCode) {
  LocalProvider provider;
  const std::string job = provider.submit("exit 3", 1, "b0", "");
  ASSERT_TRUE(provider.wait({job}, 20s));
  const JobStatus s = status_of(provider, job);
  EXPECT_EQ(s.state, JobState::failed);
  EXPECT_EQ(s.exit_code, 3);
  EXPECT_EQ(s.message, "exit code 3");
  EXPECT_EQ(to_string(s.state), "FAILED");
}

TEST(LocalProvider, RunningJobIsRunningUntilCancelled) {
  const auto dir = temp_dir();
  LocalProvider provider;
  const std::string job = provider.submit("echo $$ > " + (dir / "pid").string() + "; exec sleep 300", 1, "b0", "");
  const pid_t pid = pid_from_file(dir / "pid");
  EXPECT_EQ(std::to_string(pid), job) << "the job id is the pid of the block's bash";
  EXPECT_EQ(status_of(provider, job).state, JobState::running);
  EXPECT_FALSE(provider.wait({job}, 0ms));
  EXPECT_EQ(provider.cancel({job}), std::vector<bool>{true});
  const JobStatus s = status_of(provider, job);
  EXPECT_EQ(s.state, JobState::cancelled) << s.message;
  EXPECT_EQ(s.exit_code, 128 + SIGTERM);
  EXPECT_FALSE(process_alive(pid));
  EXPECT_EQ(provider.cancel({job}), std::vector<bool>{true}) << "cancelling an ended job is fine";
}

TEST(LocalProvider, CancelStopsTheWholeProcessGroupIncludingBackgroundGrandchildren) {
  const auto dir = temp_dir();
  LocalProvider provider({}, 500ms);
  // A background grandchild, and a grandchild that ignores SIGTERM: it needs the SIGKILL.
  const std::string job = provider.submit(
      "sleep 300 & echo $! > " + (dir / "bg").string() + "\n" +
          "bash -c 'trap \"\" TERM; echo $$ > " + (dir / "stubborn").string() + "; while :; do sleep 1; done' &\n" +
          "wait",
      1, "b0", "");
  const pid_t bg = pid_from_file(dir / "bg");
  const pid_t stubborn = pid_from_file(dir / "stubborn");
  ASSERT_TRUE(process_alive(bg));
  ASSERT_TRUE(process_alive(stubborn));
  EXPECT_EQ(provider.cancel({job}), std::vector<bool>{true});
  EXPECT_EQ(status_of(provider, job).state, JobState::cancelled);
  // Both were signalled while the block's leader still held the group; after SIGKILL they
  // are gone once their new parent (init) has reaped them.
  EXPECT_TRUE(eventually([&] { return !process_alive(bg) && !process_alive(stubborn); }));
}

TEST(LocalProvider, SigkillFollowsTheGracePeriod) {
  const auto dir = temp_dir();
  LocalProvider provider({}, 200ms);
  const std::string job = provider.submit(
      "trap '' TERM; echo $$ > " + (dir / "pid").string() + "; while :; do sleep 1; done", 1, "b0", "");
  const pid_t pid = pid_from_file(dir / "pid");
  EXPECT_EQ(provider.cancel({job}), std::vector<bool>{true});
  const JobStatus s = status_of(provider, job);
  EXPECT_EQ(s.state, JobState::cancelled);
  EXPECT_EQ(s.exit_code, 128 + SIGKILL) << s.message;
  EXPECT_FALSE(process_alive(pid));
}

TEST(LocalProvider, WhatABlockLeavesBehindIsStoppedWhenItsLeaderExits) {
  const auto dir = temp_dir();
  LocalProvider provider;
  const std::string job = provider.submit("sleep 300 & echo $! > " + (dir / "bg").string(), 1, "b0", "");
  const pid_t bg = pid_from_file(dir / "bg");
  ASSERT_TRUE(provider.wait({job}, 20s)) << "the block ends once its group is gone";
  EXPECT_EQ(status_of(provider, job).state, JobState::completed);
  EXPECT_TRUE(eventually([&] { return !process_alive(bg); }));
}

TEST(LocalProvider, UnknownJobsAreMissing) {
  LocalProvider provider;
  EXPECT_EQ(status_of(provider, "12345678").state, JobState::missing);
  EXPECT_EQ(provider.cancel({"12345678"}), std::vector<bool>{false});
  EXPECT_TRUE(provider.status({}).empty());
}

TEST(LocalProvider, DestructorStopsRunningBlocks) {
  const auto dir = temp_dir();
  pid_t pid = 0;
  {
    LocalProvider provider;
    provider.submit("echo $$ > " + (dir / "pid").string() + "; exec sleep 300", 1, "b0", "");
    pid = pid_from_file(dir / "pid");
    ASSERT_TRUE(process_alive(pid));
  }
  EXPECT_FALSE(process_alive(pid));
}

TEST(LocalProvider, WorkerInitRunsFirstAndLaunchersStartCopies) {
  const auto dir = temp_dir();
  const auto out = dir / "out";
  {
    // SingleNodeLauncher: tasks_per_node * nodes_per_block copies, each with its number in $1.
    LocalProvider provider(ProviderOptions{.nodes_per_block = 3, .worker_init = "export GREETING=hi"});
    EXPECT_EQ(provider.launcher().name(), "SingleNodeLauncher");
    const std::string job = provider.submit("echo $GREETING $1 $CORES >> " + out.string(), 1, "b0", "");
    ASSERT_TRUE(provider.wait({job}, 20s));
    EXPECT_EQ(status_of(provider, job).state, JobState::completed);
    std::vector<std::string> lines;
    std::istringstream in(read_file(out));
    for (std::string l; std::getline(in, l);) lines.push_back(l);
    ASSERT_EQ(lines.size(), 3u) << read_file(out);
    std::sort(lines.begin(), lines.end());
    for (int i = 0; i < 3; ++i) {
      EXPECT_EQ(lines[i].rfind("hi " + std::to_string(i + 1) + " ", 0), 0u) << lines[i];
      EXPECT_GT(lines[i].size(), 5u) << "CORES is set";
    }
  }
  {
    // All copies failing fail the block; one success is enough without fail_on_any.
    LocalProvider provider(ProviderOptions{.nodes_per_block = 2});
    const std::string all_fail = provider.submit("exit 4", 1, "b1", "");
    const std::string one_fails = provider.submit("exit $(( $1 - 1 ))", 1, "b2", "");
    ASSERT_TRUE(provider.wait({all_fail, one_fails}, 20s));
    EXPECT_EQ(status_of(provider, all_fail).state, JobState::failed);
    EXPECT_EQ(status_of(provider, one_fails).state, JobState::completed);
    LocalProvider strict(ProviderOptions{.nodes_per_block = 2, .launcher = std::make_shared<SingleNodeLauncher>(true)});
    const std::string strict_job = strict.submit("exit $(( $1 - 1 ))", 1, "b3", "");
    ASSERT_TRUE(strict.wait({strict_job}, 20s));
    EXPECT_EQ(status_of(strict, strict_job).state, JobState::failed);
  }
  {
    // SimpleLauncher: once, whatever nodes_per_block says.
    fs::remove(out);
    LocalProvider provider(ProviderOptions{.nodes_per_block = 3, .launcher = std::make_shared<SimpleLauncher>()});
    const std::string job = provider.submit("echo once >> " + out.string(), 4, "b0", "");
    ASSERT_TRUE(provider.wait({job}, 20s));
    EXPECT_EQ(read_file(out), "once\n");
  }
}

TEST(LocalProvider, BadOptionsAreConfigurationErrors) {
  EXPECT_THROW(LocalProvider(ProviderOptions{.min_blocks = 2, .max_blocks = 1}), ConfigurationError);
  EXPECT_THROW(LocalProvider(ProviderOptions{.nodes_per_block = 0}), ConfigurationError);
  EXPECT_THROW(LocalProvider(ProviderOptions{.init_blocks = -1}), ConfigurationError);
  EXPECT_THROW(LocalProvider({}, -1s), ConfigurationError);
}

TEST(HighThroughputExecutor, OutOfRangeOptionsAreConfigurationErrors) {
  auto with = [](auto change) {
    HtexOptions o;
    change(o);
    return o;
  };
  EXPECT_THROW(HighThroughputExecutor(with([](HtexOptions& o) { o.worker_port = -1; })), ConfigurationError);
  EXPECT_THROW(HighThroughputExecutor(with([](HtexOptions& o) { o.worker_port = 70000; })), ConfigurationError);
  EXPECT_THROW(HighThroughputExecutor(with([](HtexOptions& o) { o.heartbeat_period = NAN; })), ConfigurationError);
  EXPECT_THROW(HighThroughputExecutor(with([](HtexOptions& o) { o.heartbeat_threshold = INFINITY; })),
               ConfigurationError);
  EXPECT_THROW(HighThroughputExecutor(with([](HtexOptions& o) { o.prefetch_capacity = -1; })), ConfigurationError);
  EXPECT_NO_THROW(HighThroughputExecutor(with([](HtexOptions& o) { o.worker_port = 65535; })));
}

TEST(JobState, NamesAreParsls) {
  EXPECT_EQ(to_string(JobState::unknown), "UNKNOWN");
  EXPECT_EQ(to_string(JobState::pending), "PENDING");
  EXPECT_EQ(to_string(JobState::running), "RUNNING");
  EXPECT_EQ(to_string(JobState::cancelled), "CANCELLED");
  EXPECT_EQ(to_string(JobState::completed), "COMPLETED");
  EXPECT_EQ(to_string(JobState::failed), "FAILED");
  EXPECT_EQ(to_string(JobState::timeout), "TIMEOUT");
  EXPECT_EQ(to_string(JobState::held), "HELD");
  EXPECT_EQ(to_string(JobState::missing), "MISSING");
  EXPECT_EQ(to_string(JobState::scaled_in), "SCALED_IN");
  EXPECT_TRUE(is_terminal(JobState::completed));
  EXPECT_FALSE(is_terminal(JobState::running));
}

// ---------------------------------------------------------------- HighThroughputExecutor

class HtexCpp : public ::testing::Test {
 protected:
  void SetUp() override { dir = temp_dir(); }

  HtexOptions options() {
    HtexOptions o = local_htex_options(dir);
    o.label = "htex";
    return o;
  }

  // pids of the pools connected to `htex` (pool ids are hostname-pid).
  static std::vector<pid_t> pool_pids(const HighThroughputExecutor& htex) {
    std::vector<pid_t> pids;
    for (const auto& p : htex.pools()) pids.push_back(static_cast<pid_t>(std::stol(p.pool_id.substr(p.pool_id.rfind('-') + 1))));
    return pids;
  }

  fs::path dir;
};

TEST_F(HtexCpp, ShellCommandsRunOnThePoolWithoutPython) {
  auto htex = std::make_shared<HighThroughputExecutor>(options());
  auto threads = std::make_shared<ThreadPoolExecutor>(1, "threads");
  DataFlowKernel dfk(Config{.executors = {htex, threads}});
  const AppOptions on_pool{.executors = {"htex"}};

  // The command's parent is the process that ran it: the pool.
  auto where = dfk.submit(on_pool, Shell{"echo $PPID > " + (dir / "ppid").string()});
  EXPECT_EQ(where.get(), 0);
  const auto pools = pool_pids(*htex);
  ASSERT_EQ(pools.size(), 1u);
  EXPECT_EQ(std::stol(read_file(dir / "ppid")), pools[0]);
  ASSERT_EQ(htex->blocks().size(), 1u);
  EXPECT_EQ(htex->blocks()[0].block_id, "0");
  EXPECT_EQ(htex->blocks()[0].status.state, JobState::running);
  EXPECT_EQ(htex->pools()[0].worker_count, 2);
  EXPECT_EQ(htex->pools()[0].block_id, "0");

  // A chain through files: write on the pool, transform on the pool, read in this process.
  const auto numbers = dir / "numbers.txt", sorted = dir / "sorted.txt";
  auto write = dfk.submit(on_pool, Shell{"seq 5 -1 1 > " + numbers.string()});
  auto sort = dfk.submit(on_pool, Shell{"sort -n " + numbers.string() + " > " + sorted.string()}, write);
  auto lines = dfk.submit(AppOptions{.executors = {"threads"}}, [sorted](int) { return read_file(sorted); }, sort);
  EXPECT_EQ(lines.get(), "1\n2\n3\n4\n5\n");

  // Streams and working directory travel with the command.
  fs::create_directories(dir / "wd");
  auto streams = dfk.submit(on_pool, Shell{"pwd; echo oops >&2", {(dir / "out.txt").string(), false},
                                           {(dir / "err.txt").string(), false}, (dir / "wd").string()});
  EXPECT_EQ(streams.get(), 0);
  EXPECT_EQ(read_file(dir / "out.txt"), (dir / "wd").string() + "\n");
  EXPECT_EQ(read_file(dir / "err.txt"), "oops\n");
}

TEST_F(HtexCpp, ShellCommandsFollowTheCommandTheyDependOn) {
  auto htex = std::make_shared<HighThroughputExecutor>(options());
  DataFlowKernel dfk(Config{.executors = {htex}});
  const auto go = dir / "go", log = dir / "log";
  auto first = dfk.submit(Shell{"while [ ! -e " + go.string() + " ]; do sleep 0.01; done; echo 1 >> " + log.string()});
  auto second = dfk.submit(Shell{"echo 2 >> " + log.string()}, first);
  auto third = dfk.submit(Shell{"echo 3 >> " + log.string()}, second);
  auto failing = dfk.submit(Shell{"exit 3"}, third);
  auto after_failure = dfk.submit(Shell{"echo never >> " + log.string()}, failing);
  // Handed to the executor while `first` still runs: they wait on its pool.
  ASSERT_TRUE(eventually([&] { return third.state() == TaskState::launched && first.state() == TaskState::running; }));
  std::ofstream(go.string()).close();
  EXPECT_EQ(third.get(), 0);
  EXPECT_THROW(failing.get(), BashExitFailure);
  EXPECT_THROW(after_failure.get(), DependencyError);
  // Once the pool has answered for every task, the command after the failed one has not run
  // (a non-zero exit is a failure, although the pool reports it as an exit code).
  ASSERT_TRUE(eventually([&] { return htex->pools().at(0).in_flight == 0; }));
  EXPECT_EQ(read_file(log), "1\n2\n3\n");
}

TEST_F(HtexCpp, FailuresRaiseTheSameExceptionsAsOnThreads) {
  auto htex = std::make_shared<HighThroughputExecutor>(options());
  auto threads = std::make_shared<ThreadPoolExecutor>(1, "threads");
  DataFlowKernel dfk(Config{.executors = {htex, threads}});
  for (const std::string label : {"htex", "threads"}) {
    SCOPED_TRACE(label);
    const AppOptions where{.executors = {label}, .name = "failing"};
    auto failing = dfk.submit(where, Shell{"exit 7"});
    try {
      failing.get();
      ADD_FAILURE() << "no exception";
    } catch (const BashExitFailure& e) {
      EXPECT_EQ(e.exitcode(), 7);
      EXPECT_EQ(e.app_name(), "failing");
    }
    auto dependent = dfk.submit(where, Shell{"true"}, failing);
    EXPECT_THROW(dependent.get(), DependencyError);
    auto bad_stream = dfk.submit(where, Shell{"true", {"/proc/no/such/dir/out.txt"}});
    EXPECT_THROW(bad_stream.get(), BadStdStreamFile);
  }
}

TEST_F(HtexCpp, WalltimeStopsTheCommandOnThePool) {
  auto htex = std::make_shared<HighThroughputExecutor>(options());
  DataFlowKernel dfk(Config{.executors = {htex}});
  auto slow = dfk.submit(AppOptions{.walltime = 1s}, Shell{"echo $$ > " + (dir / "pid").string() + "; exec sleep 300"});
  EXPECT_THROW(slow.get(), AppTimeout);
  const pid_t pid = pid_from_file(dir / "pid");
  EXPECT_TRUE(eventually([&] { return !process_alive(pid); })) << "the pool kills the command at its walltime";
}

TEST_F(HtexCpp, CallablesCannotRunOnPools) {
  auto htex = std::make_shared<HighThroughputExecutor>(options());
  DataFlowKernel dfk(Config{.executors = {htex}});
  auto f = dfk.submit([] { return 1; });
  try {
    f.get();
    ADD_FAILURE() << "no exception";
  } catch (const ConfigurationError& e) {
    EXPECT_NE(std::string(e.what()).find("only Python apps and shell commands run on pools"), std::string::npos)
        << e.what();
  }
}

TEST_F(HtexCpp, CleanupStopsEveryPoolItStarted) {
  auto o = options();
  o.init_blocks = 2;
  auto htex = std::make_shared<HighThroughputExecutor>(o);
  DataFlowKernel dfk(Config{.executors = {htex}});
  // Enough tasks for both pools to connect; wait until both did (a real condition).
  std::vector<Future<int>> tasks;
  for (int i = 0; i < 8; ++i) tasks.push_back(dfk.submit(Shell{"true"}));
  for (auto& t : tasks) EXPECT_EQ(t.get(), 0);
  ASSERT_TRUE(eventually([&] { return htex->pools().size() == 2; }));
  const auto pids = pool_pids(*htex);
  std::vector<std::string> jobs;
  for (const auto& b : htex->blocks()) {
    EXPECT_EQ(b.status.state, JobState::running);
    jobs.push_back(b.job_id);
  }
  ASSERT_EQ(jobs.size(), 2u);
  // A command still running at cleanup is stopped with its pool.
  auto running = dfk.submit(Shell{"echo $$ > " + (dir / "pid").string() + "; exec sleep 300"});
  const pid_t command = pid_from_file(dir / "pid");
  dfk.cleanup();
  EXPECT_THROW(running.get(), DataFlowKernelClosed);
  for (pid_t pid : pids) EXPECT_FALSE(process_alive(pid)) << "pool " << pid;
  for (const auto& job : jobs) EXPECT_FALSE(process_alive(static_cast<pid_t>(std::stol(job)))) << "block " << job;
  EXPECT_TRUE(eventually([&] { return !process_alive(command); })) << "the pool stopped its command";
  for (const auto& b : htex->blocks()) EXPECT_TRUE(is_terminal(b.status.state)) << to_string(b.status.state);
  EXPECT_THROW(htex->scale_out(1), Error);
}

TEST_F(HtexCpp, EncryptedByDefaultWithAKeyFileForThePools) {
  auto o = options();
  o.same_host_ipc = false;  // as for a pool on another host: TCP + CurveZMQ
  auto htex = std::make_shared<HighThroughputExecutor>(o);
  DataFlowKernel dfk(Config{.executors = {htex}});
  const std::string key = htex->server_key_file();
  ASSERT_FALSE(key.empty());
  struct stat st {};
  ASSERT_EQ(::stat(key.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);
  EXPECT_EQ(read_file(key).size(), 41u);  // Z85 public key + newline
  const std::string cmd = htex->pool_command("7");
  EXPECT_NE(cmd.find("--curve-server-key " + key), std::string::npos) << cmd;
  EXPECT_NE(cmd.find("--no-python"), std::string::npos) << cmd;
  EXPECT_NE(cmd.find("--block-id 7"), std::string::npos) << cmd;
  EXPECT_NE(cmd.find("--address 127.0.0.1:" + std::to_string(htex->port())), std::string::npos) << cmd;
  EXPECT_NE(cmd.find("--workers 2"), std::string::npos) << cmd;
  EXPECT_EQ(dfk.submit(Shell{"true"}).get(), 0) << "the pool registered over CurveZMQ";
  EXPECT_NE(read_file(dir / "runinfo" / "htex" / "block-0.log").find("CurveZMQ"), std::string::npos);
  EXPECT_EQ(cmd.find("--ipc"), std::string::npos) << cmd;
}

// A pool on the driver's host connects through the interchange's Unix socket (no CurveZMQ);
// the socket and its 0700 directory under <run_dir>/<label> are gone after cleanup.
TEST_F(HtexCpp, SameHostPoolsUseTheUnixSocket) {
  auto htex = std::make_shared<HighThroughputExecutor>(options());
  std::string cmd;
  {
    DataFlowKernel dfk(Config{.executors = {htex}});
    cmd = htex->pool_command("7");
    EXPECT_NE(cmd.find("--curve-server-key"), std::string::npos) << "still given for pools that cannot use it: " << cmd;
    const auto at = cmd.find("--ipc ipc://");
    ASSERT_NE(at, std::string::npos) << cmd;
    EXPECT_NE(cmd.find("--host-id "), std::string::npos) << cmd;
    const std::string path = cmd.substr(at + 12, cmd.find(' ', at + 12) - at - 12);
    EXPECT_EQ(path.rfind((dir / "runinfo" / "htex" / "ipc-").string(), 0), 0u) << path;
    EXPECT_TRUE(std::filesystem::exists(path));
    EXPECT_EQ(dfk.submit(Shell{"true"}).get(), 0);
    const std::string log = read_file(dir / "runinfo" / "htex" / "block-0.log");
    EXPECT_NE(log.find("interchange ipc://" + path + " (same host, Unix socket)"), std::string::npos) << log;
    dfk.cleanup();
    EXPECT_FALSE(std::filesystem::exists(path)) << "the socket is removed at cleanup";
    EXPECT_FALSE(std::filesystem::exists(std::filesystem::path(path).parent_path()));
  }
}

TEST_F(HtexCpp, UnencryptedAndScaleOut) {
  auto o = options();
  o.encrypted = false;
  o.init_blocks = 0;
  o.strategy = "none";  // this test starts the block itself
  auto htex = std::make_shared<HighThroughputExecutor>(o);
  DataFlowKernel dfk(Config{.executors = {htex}});
  EXPECT_TRUE(htex->server_key_file().empty());
  EXPECT_EQ(htex->pool_command("0").find("--curve"), std::string::npos);
  EXPECT_TRUE(htex->blocks().empty());
  auto task = dfk.submit(Shell{"true"});  // waits at the interchange until a pool connects
  EXPECT_EQ(htex->scale_out(1), std::vector<std::string>{"0"});
  EXPECT_EQ(task.get(), 0);
  EXPECT_EQ(htex->blocks().size(), 1u);
}

// ---------------------------------------------------------------- scaling (docs/scaling.md)

// Blocks of one worker each; the strategy runs every 0.1 s.
HtexOptions scaling_options(HtexOptions o, const std::string& strategy, ProviderOptions p) {
  o.provider = std::make_shared<LocalProvider>(p);
  o.workers_per_node = 1;
  o.strategy = strategy;
  o.strategy_period = 0.1;
  o.max_idletime = 0.5;
  return o;
}

std::vector<BlockStatus> active_blocks(const HighThroughputExecutor& htex) {
  std::vector<BlockStatus> out;
  for (auto& b : htex.blocks())
    if (!is_terminal(b.status.state)) out.push_back(b);
  return out;
}

class HtexScaling : public HtexCpp, public ::testing::WithParamInterface<std::string> {};

TEST_P(HtexScaling, ScalesOutToMaxBlocksWithWorkAndBackToMinBlocksWhenIdle) {
  auto htex = std::make_shared<HighThroughputExecutor>(
      scaling_options(options(), GetParam(), ProviderOptions{.init_blocks = 1, .min_blocks = 1, .max_blocks = 3}));
  DataFlowKernel dfk(Config{.executors = {htex}});
  // Six tasks that hold their worker until the gate file exists: demand for 6 blocks.
  const auto gate = dir / "gate";
  std::vector<Future<int>> tasks;
  for (int i = 0; i < 6; ++i)
    tasks.push_back(dfk.submit(Shell{"while [ ! -e " + gate.string() + " ]; do sleep 0.02; done; echo " +
                                     std::to_string(i) + " >> " + (dir / "ran").string()}));
  ASSERT_TRUE(eventually([&] { return htex->pools().size() == 3; })) << "scaled out to max_blocks";
  EXPECT_EQ(htex->blocks().size(), 3u) << "never more than max_blocks";
  std::ofstream(gate).put('\n');
  for (auto& t : tasks) EXPECT_EQ(t.get(), 0);
  // Idle: two blocks are drained, then cancelled; min_blocks stays.
  ASSERT_TRUE(eventually([&] { return active_blocks(*htex).size() == 1 && htex->pools().size() == 1; }));
  std::vector<pid_t> retired;
  for (const auto& b : htex->blocks())
    if (is_terminal(b.status.state)) retired.push_back(static_cast<pid_t>(std::stol(b.job_id)));
  EXPECT_EQ(retired.size(), 2u);
  for (pid_t pid : retired) EXPECT_FALSE(process_alive(pid)) << "block " << pid;
  // Every task ran exactly once.
  std::string ran = read_file(dir / "ran");
  EXPECT_EQ(std::count(ran.begin(), ran.end(), '\n'), 6);
  // New work after the scale-in runs (on the block that stayed, or new ones).
  EXPECT_EQ(dfk.submit(Shell{"true"}).get(), 0);
  EXPECT_TRUE(htex->failure().empty());
}

INSTANTIATE_TEST_SUITE_P(Strategies, HtexScaling, ::testing::Values("simple", "htex_auto_scale"));

TEST_F(HtexCpp, BlocksThatKeepFailingFailTheExecutorWithTheReason) {
  for (const std::string strategy : {"simple", "none"}) {
    SCOPED_TRACE(strategy);
    auto o = scaling_options(options(), strategy,
                             ProviderOptions{.init_blocks = 1, .max_blocks = 2,
                                             .worker_init = "echo cannot reach the scratch disk >&2; exit 3"});
    o.label = "htex_" + strategy;
    auto htex = std::make_shared<HighThroughputExecutor>(o);
    DataFlowKernel dfk(Config{.executors = {htex}});
    auto waiting = dfk.submit(Shell{"true"});
    try {
      waiting.get();
      ADD_FAILURE() << "no exception";
    } catch (const ExecutorFailed& e) {
      EXPECT_EQ(e.label(), o.label);
      EXPECT_NE(e.reason().find("FAILED: exit code 3"), std::string::npos) << e.reason();
      EXPECT_NE(e.reason().find("cannot reach the scratch disk"), std::string::npos) << "the log tail: " << e.reason();
    }
    EXPECT_THROW(dfk.submit(Shell{"true"}).get(), ExecutorFailed) << "later tasks fail at once";
    EXPECT_FALSE(htex->failure().empty());
    const auto blocks = htex->blocks();
    EXPECT_EQ(blocks.size(), strategy == "none" ? 1u : 3u);  // no endless resubmission
    for (const auto& b : blocks) EXPECT_TRUE(is_terminal(b.status.state));
  }
}

TEST_F(HtexCpp, MissingPoolBinaryIsAConfigurationError) {
  auto o = options();
  o.pool_binary = (dir / "no-such-pervade-pool").string();
  EXPECT_THROW(HighThroughputExecutor{o}, ConfigurationError);
  o.pool_binary.clear();
  ::setenv("PERVADE_POOL_BINARY", (dir / "no-such-pervade-pool").string().c_str(), 1);
  EXPECT_THROW(HighThroughputExecutor{o}, ConfigurationError);
  ::unsetenv("PERVADE_POOL_BINARY");
}

// Parsl's pattern for blocks started by hand: no block at start and none for the strategy; a
// task waits until a block is started with scale_out().
TEST_F(HtexCpp, NoInitialBlockAndNoneAllowedWaitsForABlockStartedByHand) {
  auto o = options();
  o.provider = std::make_shared<LocalProvider>(ProviderOptions{.init_blocks = 0, .min_blocks = 0, .max_blocks = 0});
  o.strategy_period = 0.05;
  auto htex = std::make_shared<HighThroughputExecutor>(o);
  DataFlowKernel dfk(Config{.executors = {htex}});
  auto task = dfk.submit(Shell{"true"});
  // Several strategy periods pass with the task waiting: still no block.
  EXPECT_FALSE(task.wait_for(std::chrono::milliseconds(300)));
  EXPECT_TRUE(htex->blocks().empty());
  EXPECT_EQ(htex->scale_out(1), std::vector<std::string>{"0"});
  EXPECT_EQ(task.get(), 0);
}

TEST_F(HtexCpp, WithoutAProviderNoBlocksAreStarted) {
  auto o = options();
  o.provider = nullptr;
  auto htex = std::make_shared<HighThroughputExecutor>(o);
  DataFlowKernel dfk(Config{.executors = {htex}});
  EXPECT_TRUE(htex->blocks().empty());
  EXPECT_TRUE(htex->server_key_file().empty());
  EXPECT_THROW(htex->pool_command("0"), ConfigurationError);
  EXPECT_FALSE(fs::exists(dir / "runinfo")) << "nothing is written without a provider";
}

}  // namespace
