// Batch providers: job scripts checked line by line against each scheduler's directive
// syntax, status parsing against output samples (tests/cpp/data), and submit/status/cancel end
// to end through stand-in scheduler commands (bash scripts first on PATH) that keep their
// state in files — including the failures: a refused submit, garbage output, a command that
// hangs past cmd_timeout, a command that is not installed.
#include <signal.h>

#include <chrono>
#include <thread>

#include <gtest/gtest.h>

#include "fake_commands.hpp"
#include "pervade/batch_providers.hpp"
#include "pervade/errors.hpp"
#include "providers/scheduler_command.hpp"
#include "providers/scheduler_output.hpp"

using namespace pervade;
using namespace pervade::test;
using namespace std::chrono_literals;

namespace {

std::string data(const std::string& name) { return read_file(std::filesystem::path(PERVADE_TEST_DATA) / name); }

std::map<std::string, JobState> states(const detail::StatusReports& reports) {
  std::map<std::string, JobState> out;
  for (const auto& [id, s] : reports) out[id] = s.state;
  return out;
}

// The message of the exception `f` throws (fails the test if it throws none).
template <class F>
std::string error_of(F&& f) {
  try {
    f();
  } catch (const Error& e) {
    return e.what();
  }
  ADD_FAILURE() << "no pervade::Error was thrown";
  return "";
}

// ---- status output samples ------------------------------------------------------------------

TEST(SchedulerOutput, Sacct) {
  using S = JobState;
  EXPECT_EQ(states(detail::parse_sacct(data("sacct.txt"))),
            (std::map<std::string, JobState>{{"1234", S::completed}, {"1235", S::running}, {"1236", S::pending},
                                             {"1237", S::cancelled}, {"1238", S::failed}, {"1239", S::timeout},
                                             {"1240", S::failed}, {"1241", S::failed}, {"1242", S::held},
                                             {"1243", S::cancelled}}));
}

TEST(SchedulerOutput, Squeue) {
  using S = JobState;
  EXPECT_EQ(states(detail::parse_squeue(data("squeue.txt"))),
            (std::map<std::string, JobState>{{"1234", S::running}, {"1235", S::pending}, {"1236", S::running},
                                             {"1237", S::completed}, {"1238", S::cancelled}, {"1239", S::timeout},
                                             {"1240", S::pending}, {"1241", S::failed}, {"1242", S::held}}));
  EXPECT_EQ(states(detail::parse_squeue(data("squeue_clusters.txt"))),
            (std::map<std::string, JobState>{{"1234", S::running}, {"1235", S::pending}}));
}

TEST(SchedulerOutput, TorqueAndPbsProQstat) {
  using S = JobState;
  EXPECT_EQ(states(detail::parse_pbs_qstat(data("torque_qstat.txt"))),
            (std::map<std::string, JobState>{{"4807.torque-server", S::running},
                                             {"4808.torque-server", S::pending},
                                             {"4809.torque-server", S::completed},
                                             {"4810.torque-server", S::held}}));
  EXPECT_EQ(states(detail::parse_pbs_qstat(data("pbspro_qstat.txt"))),
            (std::map<std::string, JobState>{{"1001.pbs01", S::running},
                                             {"1002.pbs01", S::pending},
                                             {"1003.pbs01", S::completed},
                                             {"1004.pbs01-long-", S::completed}}));
}

TEST(SchedulerOutput, GridEngineQstat) {
  using S = JobState;
  EXPECT_EQ(states(detail::parse_sge_qstat(data("sge_qstat.txt"))),
            (std::map<std::string, JobState>{{"101", S::running}, {"102", S::pending}, {"103", S::failed},
                                             {"104", S::completed}}));
}

TEST(SchedulerOutput, BjobsAndCondorQ) {
  using S = JobState;
  EXPECT_EQ(states(detail::parse_bjobs(data("bjobs.txt"))),
            (std::map<std::string, JobState>{{"12345", S::running}, {"12346", S::pending}, {"12347", S::completed},
                                             {"12348", S::failed}, {"12349", S::held}}));
  EXPECT_EQ(states(detail::parse_condor_q(data("condor_q.txt"))),
            (std::map<std::string, JobState>{{"34524642.0", S::running}, {"34524643.0", S::pending},
                                             {"34524644.0", S::held}, {"34524645.0", S::completed},
                                             {"34524646.0", S::cancelled}}));
}

TEST(SchedulerOutput, UnknownStatesAndGarbage) {
  const auto r = detail::parse_squeue("77 XX\n");
  ASSERT_EQ(r.size(), 1u);
  EXPECT_EQ(r[0].second.state, JobState::unknown);
  EXPECT_NE(r[0].second.message.find("'XX'"), std::string::npos);
  EXPECT_TRUE(detail::parse_squeue("\n  \n").empty());
  for (auto parse : {detail::parse_sacct, detail::parse_squeue, detail::parse_pbs_qstat, detail::parse_sge_qstat,
                     detail::parse_bjobs, detail::parse_condor_q}) {
    const std::string msg = error_of([&] { parse("<html>502 Bad Gateway</html>\n"); });
    EXPECT_NE(msg.find("unexpected line '<html>502 Bad Gateway</html>'"), std::string::npos) << msg;
  }
}

TEST(SchedulerOutput, SubmitOutput) {
  const std::string re = detail::slurm_regex(R"(Submitted batch job (?P<id>\S*))");
  EXPECT_EQ(detail::slurm_job_id("Submitted batch job 4242\n", re), "4242");
  EXPECT_EQ(detail::slurm_job_id("sbatch: note: x\nSubmitted batch job 4243 on cluster alpha\n", re), "4243");
  EXPECT_EQ(detail::slurm_job_id("nothing\n", re), "");
  EXPECT_EQ(detail::pbs_job_id("1001.pbs01\n"), "1001.pbs01");
  EXPECT_EQ(detail::pbs_job_id("101\n"), "101");
  EXPECT_EQ(detail::pbs_job_id("qsub: submit error\n"), "");
  EXPECT_EQ(detail::lsf_job_id("Job <12345> is submitted to default queue <normal>.\n"), "12345");
  EXPECT_EQ(detail::lsf_job_id("Job <12346> is submitted to queue <debug>.\n"), "12346");
  EXPECT_EQ(detail::condor_job_id("Submitting job(s).\n1 job(s) submitted to cluster 118907.\n"), "118907.0");
  EXPECT_EQ(detail::condor_job_id("ERROR: on Line 3 of submit file\n"), "");
  EXPECT_THROW(detail::slurm_regex("Submitted (unclosed"), ConfigurationError);
}

// ---- job scripts ----------------------------------------------------------------------------

// Every directive (lines starting with `prefix`) comes before the first command: the
// schedulers stop reading directives there.
void expect_directives_first(const std::string& script, const std::string& prefix) {
  bool commands_started = false;
  for (const auto& line : lines_of(script)) {
    if (line.rfind(prefix, 0) == 0)
      EXPECT_FALSE(commands_started) << "directive after the first command: " << line << "\n" << script;
    else if (!line.empty() && line[0] != '#')
      commands_started = true;
  }
}

struct ScriptTest : ::testing::Test {
  TempDir dir;
  std::string log() const { return (dir / "logs" / "block-0.log").string(); }
  ProviderOptions options(std::shared_ptr<Launcher> launcher = std::make_shared<SimpleLauncher>()) const {
    return ProviderOptions{.nodes_per_block = 2, .worker_init = "module load python", .launcher = launcher,
                           .script_dir = (dir / "scripts").string()};
  }
  // The script's body after the directives, as lines.
  std::vector<std::string> body_of(const std::vector<std::string>& lines, std::size_t directives) const {
    return {lines.begin() + static_cast<long>(directives), lines.end()};
  }
  std::vector<std::string> body(const std::vector<std::string>& exports = {}) const {
    std::vector<std::string> out{"", "module load python"};
    out.insert(out.end(), exports.begin(), exports.end());
    out.push_back("export JOBNAME='htex.block-0'");
    out.push_back("export PERVADE_SCRIPT_DIR='" + (dir / "scripts").string() + "'");
    out.push_back("pervade-pool --block-id 0");
    return out;
  }
};

TEST_F(ScriptTest, Slurm) {
  SlurmProvider slurm(options(), SlurmOptions{.partition = "debug", .account = "proj", .qos = "high",
                                              .constraint = "haswell", .clusters = "alpha", .cores_per_node = 8,
                                              .mem_per_node = 16, .gpus_per_node = 2, .gres = "nvme:1",
                                              .walltime = "01:30:00",
                                              .scheduler_options = "#SBATCH --mail-type=NONE"});
  const std::string script = slurm.job_script("pervade-pool --block-id 0", 2, "htex.block-0", log());
  std::vector<std::string> expected{
      "#!/bin/bash",
      "#SBATCH --job-name=htex.block-0",
      "#SBATCH --output=" + log(),
      "#SBATCH --error=" + log(),
      "#SBATCH --nodes=2",
      "#SBATCH --time=01:30:00",
      "#SBATCH --ntasks-per-node=2",
      "#SBATCH --exclusive",
      "#SBATCH --partition=debug",
      "#SBATCH --account=proj",
      "#SBATCH --qos=high",
      "#SBATCH --constraint=haswell",
      "#SBATCH --clusters=alpha",
      "#SBATCH --gres=nvme:1",
      "#SBATCH --gpus-per-node=2",
      "#SBATCH --mem=16g",
      "#SBATCH --cpus-per-task=4",
      "#SBATCH --mail-type=NONE",
  };
  const auto b = body({"export PARSL_MEMORY_GB=16", "export PARSL_CORES=4"});
  expected.insert(expected.end(), b.begin(), b.end());
  EXPECT_EQ(lines_of(script), expected);
  expect_directives_first(script, "#SBATCH");
}

TEST_F(ScriptTest, SlurmDefaultsAndDiscardedLog) {
  SlurmProvider slurm(ProviderOptions{.script_dir = (dir / "scripts").string()}, SlurmOptions{.exclusive = false});
  const auto l = lines_of(slurm.job_script("cmd", 1, "b", ""));
  ASSERT_GE(l.size(), 7u);
  EXPECT_EQ(l[2].rfind("#SBATCH --output=" + (dir / "scripts").string() + "/b.", 0), 0u) << l[2];
  EXPECT_EQ(l[2].substr(l[2].size() - 7), ".stdout");
  EXPECT_EQ(l[3].substr(l[3].size() - 7), ".stderr");
  EXPECT_EQ(l[5], "#SBATCH --time=00:10:00");  // Parsl's default walltime
  EXPECT_EQ(slurm.job_script("cmd", 1, "b", "").find("--exclusive"), std::string::npos);
  EXPECT_EQ(slurm.launcher().name(), "SingleNodeLauncher");
}

TEST_F(ScriptTest, PbsPro) {
  PBSProProvider pbs(options(), PBSProOptions{.account = "proj", .queue = "debug",
                                              .scheduler_options = "#PBS -l filesystems=home",
                                              .select_options = "ngpus=4", .cpus_per_node = 32,
                                              .walltime = "02:00:00"});
  const std::string script = pbs.job_script("pervade-pool --block-id 0", 1, "htex.block-0", log());
  std::vector<std::string> expected{
      "#!/bin/bash",
      "#PBS -S /bin/bash",
      "#PBS -N htex.block-0",
      "#PBS -m n",
      "#PBS -l walltime=02:00:00",
      "#PBS -l select=2:ncpus=32:ngpus=4",
      "#PBS -j oe",
      "#PBS -o " + log(),
      "#PBS -l filesystems=home",
  };
  const auto b = body();
  expected.insert(expected.end(), b.begin(), b.end());
  EXPECT_EQ(lines_of(script), expected);
  expect_directives_first(script, "#PBS");
  EXPECT_EQ(pbs.walltime(), "02:00:00");
  EXPECT_EQ(PBSProProvider().walltime(), "00:20:00");
}

TEST_F(ScriptTest, Torque) {
  TorqueProvider torque(options(), TorqueOptions{.scheduler_options = "#PBS -l feature=knl"});
  const std::string script = torque.job_script("pervade-pool --block-id 0", 4, "htex.block-0", "");
  const auto l = lines_of(script);
  ASSERT_GE(l.size(), 9u);
  EXPECT_EQ(std::vector<std::string>(l.begin(), l.begin() + 7),
            (std::vector<std::string>{"#!/bin/bash", "#PBS -l feature=knl", "#PBS -S /bin/bash",
                                      "#PBS -N htex.block-0", "#PBS -m n", "#PBS -l walltime=00:20:00",
                                      "#PBS -l nodes=2:ppn=4"}));
  EXPECT_EQ(l[7].rfind("#PBS -o " + (dir / "scripts").string() + "/htex.block-0.", 0), 0u) << l[7];
  EXPECT_EQ(l[8].rfind("#PBS -e " + (dir / "scripts").string() + "/htex.block-0.", 0), 0u) << l[8];
  expect_directives_first(script, "#PBS");
  EXPECT_EQ(TorqueProvider().launcher().name(), "AprunLauncher") << "Parsl's default launcher for Torque";
}

TEST_F(ScriptTest, Lsf) {
  LSFProvider lsf(options(), LSFOptions{.walltime = "01:00:30", .scheduler_options = "#BSUB -alloc_flags smt4",
                                        .project = "CSC123", .queue = "batch"});
  const std::string script = lsf.job_script("pervade-pool --block-id 0", 1, "htex.block-0", log());
  std::vector<std::string> expected{
      "#!/bin/bash",
      "#BSUB -W 61",  // minutes, rounded up
      "#BSUB -J htex.block-0",
      "#BSUB -o " + log(),
      "#BSUB -P CSC123",
      "#BSUB -q batch",
      "#BSUB -nnodes 2",
      "#BSUB -alloc_flags smt4",
  };
  const auto b = body();
  expected.insert(expected.end(), b.begin(), b.end());
  EXPECT_EQ(lines_of(script), expected);
  expect_directives_first(script, "#BSUB");

  LSFProvider by_cores(ProviderOptions{.script_dir = dir.path().string()},
                       LSFOptions{.cores_per_block = 40, .cores_per_node = 16, .request_by_nodes = false});
  EXPECT_EQ(by_cores.options().nodes_per_block, 3) << "ceil(40 / 16)";
  const std::string cores = by_cores.job_script("x", 1, "b", "");
  EXPECT_NE(cores.find("#BSUB -n 40\n#BSUB -R \"span[ptile=16]\"\n"), std::string::npos) << cores;
  EXPECT_THROW(LSFProvider({}, LSFOptions{.request_by_nodes = false}), ConfigurationError);
}

TEST_F(ScriptTest, GridEngine) {
  GridEngineProvider sge(options(), GridEngineOptions{.walltime = "00:30:00",
                                                      .scheduler_options = "#$ -pe smp 8", .queue = "all.q"});
  const std::string script = sge.job_script("pervade-pool --block-id 0", 1, "htex.block-0", log());
  std::vector<std::string> expected{
      "#!/bin/bash", "#$ -S /bin/bash", "#$ -N htex.block-0", "#$ -o " + log(), "#$ -j y", "#$ -cwd",
      "#$ -l h_rt=00:30:00", "#$ -pe smp 8",
  };
  const auto b = body();
  expected.insert(expected.end(), b.begin(), b.end());
  EXPECT_EQ(lines_of(script), expected);
  expect_directives_first(script, "#$");
}

TEST_F(ScriptTest, CondorSubmitDescription) {
  CondorProvider condor(options(), CondorOptions{.cores_per_slot = 4, .mem_per_slot = 2.5,
                                                 .environment = {{"GREETING", "it's \"hi\""}},
                                                 .project = "osg.proj", .scheduler_options = "+WantGlidein = true",
                                                 .transfer_input_files = {"/data/env.tar"},
                                                 .requirements = "OpSys == \"LINUX\""});
  const std::string desc = condor.job_script("pervade-pool --block-id 0", 1, "htex.block-0", log());
  const auto l = lines_of(desc);
  ASSERT_EQ(l.size(), 19u) << desc;
  // Every line is "key = value" (or "+Attr = value"), then `queue`.
  for (std::size_t i = 0; i + 1 < l.size(); ++i) EXPECT_NE(l[i].find(" = "), std::string::npos) << l[i];
  EXPECT_EQ(l.back(), "queue");
  auto has = [&](const std::string& line) { return std::find(l.begin(), l.end(), line) != l.end(); };
  EXPECT_TRUE(has("universe                = vanilla"));
  EXPECT_TRUE(has("executable              = /bin/bash"));
  EXPECT_TRUE(has("machine_count           = 2"));
  EXPECT_TRUE(has("output                  = " + log()));
  EXPECT_TRUE(has("requirements            = OpSys == \"LINUX\""));
  EXPECT_TRUE(has("+projectname            = \"osg.proj\""));
  EXPECT_TRUE(has("request_memory          = 2560"));
  EXPECT_TRUE(has("request_cpus            = 4"));
  EXPECT_TRUE(has("environment             = \"JOBNAME='htex.block-0' GREETING='it''s \"\"hi\"\"'\""));
  EXPECT_TRUE(has("+WantGlidein = true"));
  auto input = std::find_if(l.begin(), l.end(), [](const auto& s) { return s.rfind("transfer_input_files", 0) == 0; });
  ASSERT_NE(input, l.end());
  EXPECT_NE(input->find(".script,/data/env.tar"), std::string::npos) << *input;
}

// The body runs under bash: worker_init first, then the exports, then the command.
TEST_F(ScriptTest, ScriptsRunUnderBash) {
  const std::string cmd = "echo \"$STEP $JOBNAME $PARSL_CORES\" > " + (dir / "out.txt").string();
  ProviderOptions o{.worker_init = "STEP=initialised", .launcher = std::make_shared<SimpleLauncher>(),
                    .script_dir = (dir / "scripts").string()};
  std::vector<std::unique_ptr<BatchProvider>> providers;
  providers.push_back(std::make_unique<SlurmProvider>(o, SlurmOptions{.cores_per_node = 6}));
  providers.push_back(std::make_unique<PBSProProvider>(o));
  providers.push_back(std::make_unique<TorqueProvider>(o));
  providers.push_back(std::make_unique<LSFProvider>(o));
  providers.push_back(std::make_unique<GridEngineProvider>(o));
  for (const auto& p : providers) {
    std::filesystem::remove(dir / "out.txt");
    const auto r = run_bash(dir.path(), p->job_script(cmd, 2, "b0", ""));
    EXPECT_EQ(r.exit_code, 0) << p->label() << ": " << r.output;
    const std::string expected = p->label() == "slurm" ? "initialised b0 3\n" : "initialised b0 \n";
    EXPECT_EQ(read_file(dir / "out.txt"), expected) << p->label();
  }
}

TEST(BatchProviderOptions, BadValuesAreRejected) {
  EXPECT_THROW(SlurmProvider({}, SlurmOptions{.walltime = "10 minutes"}), ConfigurationError);
  EXPECT_THROW(SlurmProvider({}, SlurmOptions{.walltime = "1:75:00"}), ConfigurationError);
  EXPECT_THROW(SlurmProvider({}, SlurmOptions{.cores_per_node = 0}), ConfigurationError);
  EXPECT_THROW(SlurmProvider({}, SlurmOptions{.regex_job_id = "(?P<id>[unclosed"}), ConfigurationError);
  EXPECT_THROW(SlurmProvider(ProviderOptions{.cmd_timeout = 0}), ConfigurationError);
  EXPECT_THROW(PBSProProvider({}, PBSProOptions{.cpus_per_node = 0}), ConfigurationError);
  EXPECT_THROW(CondorProvider({}, CondorOptions{.mem_per_slot = -1.0}), ConfigurationError);
  EXPECT_THROW(CondorProvider({}, CondorOptions{.environment = {{"A B", "x"}}}), ConfigurationError);
  EXPECT_THROW(GridEngineProvider(ProviderOptions{.min_blocks = 2, .max_blocks = 1}), ConfigurationError);
  EXPECT_NO_THROW(SlurmProvider({}, SlurmOptions{.walltime = "100:00:00"}));
}

// ---- end to end through stand-in Slurm commands ---------------------------------------------

// A fake Slurm: sbatch numbers jobs from 101 and keeps each job's squeue state code in
// <state>/<id>.state; sacct says accounting is disabled (as on a cluster without slurmdbd);
// squeue prints "<id> <state>" for the ids asked and fails like the real one when it knows
// none of them; scancel marks jobs CA. Every call is logged to <state>/calls.
struct FakeSlurm : ::testing::Test {
  TempDir dir;
  std::filesystem::path bin = dir / "bin";
  std::filesystem::path state = dir / "state";
  std::unique_ptr<PathPrefix> path;

  void SetUp() override {
    std::filesystem::create_directories(bin);
    std::filesystem::create_directories(state);
    const std::string s = "S='" + state.string() + "'\necho \"$(basename \"$0\") $*\" >> \"$S/calls\"\n";
    write_command(bin, "sbatch", s + R"SH(
N=$(( $(cat "$S/next" 2>/dev/null || echo 100) + 1 )); echo $N > "$S/next"
cp "$1" "$S/job-$N.sh"
echo PD > "$S/$N.state"
echo "Submitted batch job $N"
)SH");
    write_command(bin, "sacct", s + "echo 'sacct: error: Slurm accounting storage is disabled' >&2\nexit 1\n");
    write_command(bin, "squeue", s + R"SH(
for a in "$@"; do case "$a" in --jobs=*) IDS=${a#--jobs=};; esac; done
FOUND=0
for id in ${IDS//,/ }; do
  if [ -f "$S/$id.state" ]; then echo "$id $(cat "$S/$id.state")"; FOUND=1; fi
done
if [ $FOUND = 0 ]; then echo "slurm_load_jobs error: Invalid job id specified" >&2; exit 1; fi
)SH");
    write_command(bin, "scancel", s + R"SH(
for id in "$@"; do case "$id" in -*) ;; *) echo CA > "$S/$id.state";; esac; done
)SH");
    path = std::make_unique<PathPrefix>(bin);
  }
  void TearDown() override { path.reset(); }

  std::vector<std::string> calls() { return lines_of(read_file(state / "calls")); }
  long count_calls(const std::string& prefix) {
    const auto c = calls();
    return std::count_if(c.begin(), c.end(), [&](const auto& l) { return l.rfind(prefix, 0) == 0; });
  }
  void set_state(const std::string& id, const std::string& code) { write_file(state / (id + ".state"), code + "\n"); }
  ProviderOptions options(double cmd_timeout = 30) {
    return ProviderOptions{.cmd_timeout = cmd_timeout, .script_dir = (dir / "scripts").string()};
  }
};

TEST_F(FakeSlurm, SubmitStatusCancel) {
  SlurmProvider slurm(options(), SlurmOptions{.partition = "debug"});
  const std::vector<std::string> ids{slurm.submit("pervade-pool --block-id 0", 1, "htex.block-0", (dir / "b0.log").string()),
                                     slurm.submit("pervade-pool --block-id 1", 1, "htex.block-1", (dir / "b1.log").string()),
                                     slurm.submit("pervade-pool --block-id 2", 1, "htex.block-2", (dir / "b2.log").string())};
  EXPECT_EQ(ids, (std::vector<std::string>{"101", "102", "103"}));
  const std::string submitted = read_file(state / "job-101.sh");
  EXPECT_NE(submitted.find("#SBATCH --partition=debug\n"), std::string::npos) << submitted;
  EXPECT_NE(submitted.find("pervade-pool --block-id 0"), std::string::npos);
  EXPECT_EQ(count_calls("sbatch " + (dir / "scripts").string() + "/htex.block-0."), 1);

  // sacct fails once: squeue from then on, one call for all three jobs.
  auto s = slurm.status(ids);
  for (const auto& st : s) EXPECT_EQ(st.state, JobState::pending) << st.message;
  EXPECT_EQ(s[0].log_path, (dir / "b0.log").string());
  EXPECT_EQ(count_calls("sacct "), 1);
  EXPECT_EQ(count_calls("squeue --noheader --format=%i %t --states=all --jobs=101,102,103"), 1);

  set_state("101", "R");
  set_state("102", "CD");
  s = slurm.status(ids);
  EXPECT_EQ(s[0].state, JobState::running);
  EXPECT_EQ(s[1].state, JobState::completed);
  EXPECT_EQ(s[2].state, JobState::pending);
  EXPECT_EQ(count_calls("sacct "), 1) << "sacct is not asked again";

  // A job that ended is not asked about again; one that left the queue is COMPLETED.
  std::filesystem::remove(state / "103.state");
  s = slurm.status(ids);
  EXPECT_EQ(calls().back(), "squeue --noheader --format=%i %t --states=all --jobs=101,103");
  EXPECT_EQ(s[2].state, JobState::completed);
  EXPECT_NE(s[2].message.find("no longer reported by squeue"), std::string::npos) << s[2].message;

  EXPECT_EQ(slurm.cancel({"101"}), std::vector<bool>{true});
  EXPECT_EQ(calls().back(), "scancel 101");
  EXPECT_EQ(slurm.status({"101"})[0].state, JobState::cancelled);
  EXPECT_EQ(slurm.status({"999"})[0].state, JobState::missing);
  EXPECT_EQ(slurm.cancel({"999"}), std::vector<bool>{false});
  EXPECT_TRUE(slurm.status({}).empty());
}

// Parsl's overridable provider.execute_wait: the runner gets every scheduler command as a shell
// line; it may run it its own way (here: through sh, after noting it) or leave it to the
// provider (nullopt).
TEST_F(FakeSlurm, ACommandRunnerRunsTheSchedulerCommands) {
  SlurmProvider slurm(options(), SlurmOptions{.partition = "debug"});
  std::vector<std::string> lines;
  slurm.set_command_runner([&](const std::string& line, double timeout) -> std::optional<BatchProvider::CommandOutput> {
    lines.push_back(line);
    EXPECT_EQ(timeout, 30);
    if (line.rfind("scancel", 0) == 0) return std::nullopt;
    const auto r = detail::run_command({"/bin/sh", "-c", line}, std::chrono::seconds(30));
    return BatchProvider::CommandOutput{r.exit_code, r.out, r.err};
  });
  const std::string id = slurm.submit("x", 1, "block 0", "");
  EXPECT_EQ(id, "101");
  const auto jobs = slurm.jobs();
  ASSERT_EQ(jobs.size(), 1u);
  EXPECT_EQ(jobs[0].id, id);
  EXPECT_EQ(jobs[0].status.state, JobState::pending);
  EXPECT_EQ(lines, std::vector<std::string>{"sbatch " + jobs[0].files.script_path});
  EXPECT_EQ(jobs[0].files.job_name, "block_0");
  EXPECT_NE(jobs[0].files.stdout_path, jobs[0].files.stderr_path) << "no block log: one file per stream";

  EXPECT_EQ(slurm.cancel({id}), std::vector<bool>{true});
  EXPECT_EQ(lines.back(), "scancel " + id);
  EXPECT_EQ(calls().back(), "scancel " + id) << "spawned by the provider";
  EXPECT_EQ(slurm.jobs()[0].status.state, JobState::cancelled);
}

TEST_F(FakeSlurm, AJobTheSchedulerHasNotReportedYetStaysPending) {
  write_command(bin, "squeue", "echo \"squeue $*\" >> '" + state.string() + "/calls'\n");  // knows nothing, exit 0
  SlurmProvider slurm(options());
  const auto id = slurm.submit("x", 1, "b", "");
  const auto s = slurm.status({id});
  EXPECT_EQ(s[0].state, JobState::pending);
  EXPECT_NE(s[0].message.find("not yet reported"), std::string::npos) << s[0].message;
}

TEST_F(FakeSlurm, TheDestructorCancelsLiveJobs) {
  std::string a, b;
  {
    SlurmProvider slurm(options(), SlurmOptions{.clusters = "alpha"});
    a = slurm.submit("x", 1, "b0", "");
    b = slurm.submit("x", 1, "b1", "");
    set_state(b, "CD");
    slurm.status({a, b});
  }
  EXPECT_EQ(calls().back(), "scancel --clusters=alpha " + a) << "only the live job";
}

TEST_F(FakeSlurm, ARefusedSubmitQuotesTheScheduler) {
  write_command(bin, "sbatch",
                "echo 'sbatch: error: Batch job submission failed: Invalid partition name specified' >&2\nexit 1\n");
  SlurmProvider slurm(options(), SlurmOptions{.partition = "nope"});
  const std::string msg = error_of([&] { slurm.submit("x", 1, "htex.block-0", ""); });
  EXPECT_NE(msg.find("sbatch: error: Batch job submission failed: Invalid partition name specified"), std::string::npos)
      << msg;
  EXPECT_NE(msg.find("exit code 1"), std::string::npos) << msg;
  EXPECT_NE(msg.find("htex.block-0"), std::string::npos) << msg;
}

TEST_F(FakeSlurm, SubmitOutputWithoutAJobId) {
  write_command(bin, "sbatch", "echo 'Welcome to the cluster!'\n");
  SlurmProvider slurm(options());
  const std::string msg = error_of([&] { slurm.submit("x", 1, "b", ""); });
  EXPECT_NE(msg.find("printed no job id"), std::string::npos) << msg;
  EXPECT_NE(msg.find("Welcome to the cluster!"), std::string::npos) << msg;
}

TEST_F(FakeSlurm, GarbageStatusOutputIsAnError) {
  write_command(bin, "squeue", "echo '<html>502 Bad Gateway</html>'\n");
  SlurmProvider slurm(options());
  const auto id = slurm.submit("x", 1, "b", "");
  const std::string msg = error_of([&] { slurm.status({id}); });
  EXPECT_NE(msg.find("cannot read the output of 'squeue"), std::string::npos) << msg;
  EXPECT_NE(msg.find("502 Bad Gateway"), std::string::npos) << msg;
}

TEST_F(FakeSlurm, AFailingSqueueIsAnError) {
  write_command(bin, "squeue", "echo 'squeue: error: Unable to contact slurm controller (connect failure)' >&2\nexit 1\n");
  SlurmProvider slurm(options());
  const auto id = slurm.submit("x", 1, "b", "");
  const std::string msg = error_of([&] { slurm.status({id}); });
  EXPECT_NE(msg.find("Unable to contact slurm controller"), std::string::npos) << msg;
}

// Whether `pid` is gone (or a zombie waiting for its reaper, which holds nothing).
bool gone(pid_t pid) {
  const std::string stat = read_file("/proc/" + std::to_string(pid) + "/stat");
  if (stat.empty()) return true;
  const auto paren = stat.rfind(')');
  return paren != std::string::npos && paren + 2 < stat.size() && stat[paren + 2] == 'Z';
}

TEST_F(FakeSlurm, ACommandPastCmdTimeoutIsKilled) {
  // sbatch hangs; its child (which holds the output pipe too) must go as well.
  write_command(bin, "sbatch", "sleep 300 &\necho $! > '" + (state / "sleep.pid").string() + "'\nwait\n");
  SlurmProvider slurm(options(1));
  const std::string msg = error_of([&] { slurm.submit("x", 1, "b", ""); });
  EXPECT_NE(msg.find("did not finish within cmd_timeout (1 s) and was killed"), std::string::npos) << msg;
  EXPECT_NE(msg.find("'sbatch "), std::string::npos) << msg;
  const pid_t sleeper = std::stoi(read_file(state / "sleep.pid"));
  const auto deadline = std::chrono::steady_clock::now() + 10s;
  while (!gone(sleeper) && std::chrono::steady_clock::now() < deadline) std::this_thread::sleep_for(10ms);
  EXPECT_TRUE(gone(sleeper)) << "the command's process group was killed";
}

TEST_F(FakeSlurm, AChildLeftHoldingTheOutputDoesNotHoldUpTheCommand) {
  // A wrapper that leaves a child behind with its stdout: sbatch's answer counts once sbatch
  // itself has exited (with cmd_timeout 30, waiting for the child would fail the submit).
  write_command(bin, "sbatch",
                "sleep 300 &\necho $! > '" + (state / "sleep.pid").string() + "'\necho 'Submitted batch job 7'\n");
  SlurmProvider slurm(options(30));
  EXPECT_EQ(slurm.submit("x", 1, "b", ""), "7");
  const pid_t sleeper = std::stoi(read_file(state / "sleep.pid"));
  EXPECT_FALSE(gone(sleeper)) << "the child is not ours to kill";
  ::kill(sleeper, SIGKILL);
}

TEST_F(FakeSlurm, AStatusCommandPastCmdTimeoutIsAnError) {
  write_command(bin, "squeue", "exec sleep 300\n");
  SlurmProvider slurm(options(1));
  const auto id = slurm.submit("x", 1, "b", "");
  const std::string msg = error_of([&] { slurm.status({id}); });
  EXPECT_NE(msg.find("'squeue"), std::string::npos) << msg;
  EXPECT_NE(msg.find("cmd_timeout"), std::string::npos) << msg;
}

TEST_F(FakeSlurm, AFailedCancelIsReportedNotThrown) {
  write_command(bin, "scancel", "echo 'scancel: error: Kill job error on job id 101: Access/permission denied' >&2\nexit 1\n");
  SlurmProvider slurm(options());
  const auto id = slurm.submit("x", 1, "b", "");
  EXPECT_EQ(slurm.cancel({id}), std::vector<bool>{false});
  const auto s = slurm.status({id});
  EXPECT_EQ(s[0].state, JobState::pending);
  EXPECT_NE(s[0].message.find("Access/permission denied"), std::string::npos) << s[0].message;
}

TEST_F(FakeSlurm, AHangingCancelGivesUpAtCmdTimeout) {
  write_command(bin, "scancel", "exec sleep 300\n");
  SlurmProvider slurm(options(1));
  const auto id = slurm.submit("x", 1, "b", "");
  EXPECT_EQ(slurm.cancel({id}), std::vector<bool>{false});
  const auto s = slurm.status({id});
  EXPECT_NE(s[0].message.find("cancel failed: 'scancel " + id + "' did not finish within cmd_timeout"),
            std::string::npos)
      << s[0].message;
}

TEST(MissingSchedulerCommands, AreNamed) {
  TempDir empty;
  PathPrefix only(empty.path(), /*replace=*/true);
  SlurmProvider slurm(ProviderOptions{.script_dir = (empty / "scripts").string()});
  const std::string msg = error_of([&] { slurm.submit("x", 1, "b", ""); });
  EXPECT_NE(msg.find("'sbatch' was not found on PATH"), std::string::npos) << msg;
  CondorProvider condor(ProviderOptions{.script_dir = (empty / "scripts").string()});
  EXPECT_NE(error_of([&] { condor.submit("x", 1, "b", ""); }).find("'condor_submit' was not found on PATH"),
            std::string::npos);
}

// ---- end to end for the other schedulers ----------------------------------------------------

struct Scheduler {
  std::string name;
  std::function<std::unique_ptr<BatchProvider>(ProviderOptions)> make;
  std::string submit_cmd, submit_out;
  std::string status_cmd, status_out;  // status_out for the one job, state "running"
  std::vector<std::string> cancel_cmds;
  std::string expected_id;
  std::string expected_status_call;  // the whole logged status command line
};

void PrintTo(const Scheduler& s, std::ostream* os) { *os << s.name; }

class OtherSchedulers : public ::testing::TestWithParam<Scheduler> {};

TEST_P(OtherSchedulers, SubmitStatusCancel) {
  const Scheduler& sc = GetParam();
  TempDir dir;
  const auto bin = dir / "bin";
  std::filesystem::create_directories(bin);
  const std::string log = "echo \"$(basename \"$0\") $*\" >> '" + (dir / "calls").string() + "'\n";
  // The submitted file: the last argument, or stdin (bsub < script).
  write_command(bin, sc.submit_cmd,
                log + "if [ -t 0 ] || [ $# -gt 0 ]; then cp \"${@: -1}\" '" + (dir / "submitted").string() +
                    "'; else cat > '" + (dir / "submitted").string() + "'; fi\nprintf '%s\\n' '" + sc.submit_out +
                    "'\n");
  write_command(bin, sc.status_cmd, log + "cat <<'EOF'\n" + sc.status_out + "EOF\n");
  for (const auto& c : sc.cancel_cmds) write_command(bin, c, log);
  PathPrefix path(bin);

  auto provider = sc.make(ProviderOptions{.script_dir = (dir / "scripts").string()});
  const std::string id = provider->submit("pervade-pool --block-id 0", 1, "htex.block-0", (dir / "b.log").string());
  EXPECT_EQ(id, sc.expected_id);
  const std::string submitted = read_file(dir / "submitted");
  EXPECT_NE(submitted.find(sc.name == "condor" ? "queue" : "pervade-pool --block-id 0"), std::string::npos) << submitted;
  const auto s = provider->status({id});
  EXPECT_EQ(s[0].state, JobState::running) << s[0].message;
  EXPECT_EQ(lines_of(read_file(dir / "calls")).back(), sc.expected_status_call);
  EXPECT_EQ(provider->cancel({id}), std::vector<bool>{true});
  EXPECT_EQ(provider->status({id})[0].state, JobState::cancelled);
  const auto calls = lines_of(read_file(dir / "calls"));
  ASSERT_GE(calls.size(), sc.cancel_cmds.size());
  for (std::size_t i = 0; i < sc.cancel_cmds.size(); ++i) {
    const auto& line = calls[calls.size() - sc.cancel_cmds.size() + i];
    EXPECT_EQ(line.rfind(sc.cancel_cmds[i], 0), 0u) << line;
    EXPECT_EQ(line.substr(line.size() - id.size()), id) << line;
  }
}

INSTANTIATE_TEST_SUITE_P(
    Schedulers, OtherSchedulers,
    ::testing::Values(
        Scheduler{"torque", [](ProviderOptions o) { return std::make_unique<TorqueProvider>(o, TorqueOptions{.queue = "batch"}); },
                  "qsub", "4807.torque-server", "qstat",
                  "Job ID                    Name             User            Time Use S Queue\n"
                  "------------------------- ---------------- --------------- -------- - -----\n"
                  "4807.torque-server         htex.block-0     user01          00:00:01 R batch\n",
                  {"qdel"}, "4807.torque-server", "qstat 4807.torque-server"},
        Scheduler{"pbspro", [](ProviderOptions o) { return std::make_unique<PBSProProvider>(o, PBSProOptions{.account = "p"}); },
                  "qsub", "1001.pbs01.example.org", "qstat",
                  "Job id            Name             User              Time Use S Queue\n"
                  "----------------  ---------------- ----------------  -------- - -----\n"
                  "1001.pbs01        htex.block-0     alice             00:00:03 R workq\n",
                  {"qdel"}, "1001.pbs01.example.org", "qstat -x 1001.pbs01.example.org"},
        Scheduler{"lsf", [](ProviderOptions o) { return std::make_unique<LSFProvider>(o, LSFOptions{.bsub_redirection = true}); },
                  "bsub", "Job <12345> is submitted to default queue <normal>.", "bjobs", "12345 RUN\n",
                  {"bkill"}, "12345", "bjobs -noheader -o jobid stat 12345"},
        Scheduler{"grid_engine", [](ProviderOptions o) { return std::make_unique<GridEngineProvider>(o); },
                  "qsub", "101", "qstat",
                  "job-ID  prior   name       user         state submit/start at     queue          slots ja-task-ID\n"
                  "-----------------------------------------------------------------------------------------------\n"
                  "    101 0.55500 htex.block user1        r     11/13/2019 12:10:54 all.q@node1        1\n",
                  {"qdel"}, "101", "qstat "},
        Scheduler{"condor", [](ProviderOptions o) { return std::make_unique<CondorProvider>(o); },
                  "condor_submit", "1 job(s) submitted to cluster 118907.", "condor_q", "118907.0 2\n",
                  {"condor_rm", "condor_rm -forcex"}, "118907.0", "condor_q 118907.0 -af:jr JobStatus"}),
    [](const auto& info) { return info.param.name; });

}  // namespace
