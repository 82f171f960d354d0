#pragma once
// Providers for batch schedulers (Parsl's ClusterProvider family, same names, parameters and
// defaults): Slurm, PBS Pro, Torque, LSF, Grid Engine and HTCondor. Each block is one batch job:
// the provider writes a job script (worker_init, then the launcher's wrapping of the command)
// into script_dir, submits it with the scheduler's command, asks the scheduler for the state of
// all its live jobs in one command call per status(), and cancels with the scheduler's command.
// Every scheduler command runs without a shell, with its output captured, and is killed when it
// runs longer than ProviderOptions::cmd_timeout. Methods are thread-safe (any thread; scheduler
// commands of one provider run one at a time).
//
//   pervade::SlurmProvider slurm({.nodes_per_block = 2, .worker_init = "module load python"},
//                                {.partition = "debug", .walltime = "01:00:00"});
//   std::string job = slurm.submit("pervade-pool --address ...", 1, "htex.block-0", "run/block-0.log");
//   slurm.status({job})[0].state;   // JobState::pending, then running, ...
//   slurm.cancel({job});            // scancel
//
// Errors: submit() throws pervade::Error quoting the scheduler's own message (e.g. sbatch's
// "invalid partition specified"), naming a command that is not installed, or saying that the
// command was killed at cmd_timeout. status() throws pervade::Error when the status command
// fails, times out or answers something that is not its documented format. cancel() does not
// throw for scheduler failures: it returns false for the jobs and puts the reason in their
// status message; it returns once the scheduler has accepted the cancellation (the job is
// CANCELLED for us from then on, whatever the scheduler still says while it stops it). The
// destructor cancels the jobs that are still live.
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "pervade/provider.hpp"

namespace pervade {

// The files of one job, as the scheduler-specific part sees them.
struct BatchJobFiles {
  std::string job_name;     // the name given to the scheduler
  std::string script_dir;   // absolute
  std::string script_path;  // the file submitted
  std::string stdout_path;  // the job's output
  std::string stderr_path;  // == stdout_path when both streams go to the block's log
};

class BatchProvider : public Provider {
 public:
  ~BatchProvider() override;

  std::string submit(const std::string& command, int tasks_per_node, const std::string& job_name,
                     const std::string& log_path) final;
  std::vector<JobStatus> status(const std::vector<std::string>& job_ids) final;
  std::vector<bool> cancel(const std::vector<std::string>& job_ids) final;

  // The job script submit() would write for this block; nothing is written or run.
  std::string job_script(const std::string& command, int tasks_per_node, const std::string& job_name,
                         const std::string& log_path) const;
  const std::string& walltime() const { return walltime_; }

  // What a scheduler command printed, and its exit code.
  struct CommandOutput {
    int exit_code = 0;
    std::string out;
    std::string err;
  };
  // Runs a scheduler command, given as a shell command line, within `timeout` seconds instead of
  // the provider spawning it: Parsl's provider.execute_wait, which a Python subclass may override
  // to run the commands its own way. std::nullopt: spawn it as usual. Throws pervade::Error when
  // the command cannot be run. Called on the thread of submit/status/cancel, one at a time.
  using CommandRunner = std::function<std::optional<CommandOutput>(const std::string& command_line, double timeout)>;
  // Set it before the provider is first used.
  void set_command_runner(CommandRunner runner);

  // A job this provider submitted: its files and its last known status.
  struct SubmittedJob {
    std::string id;
    BatchJobFiles files;
    JobStatus status;
  };
  // Every job submitted so far, in no particular order; asks the scheduler nothing.
  std::vector<SubmittedJob> jobs() const;

 protected:
  // Throws ConfigurationError for a walltime that is not HH:MM:SS.
  BatchProvider(std::string label, ProviderOptions options, std::string walltime);
  // For the destructors of the final classes (the hooks are gone by the base's destructor):
  // cancels the jobs still live, swallowing errors.
  void cancel_live_jobs() noexcept;

  // One file to write: {path, content}. The first is the one submitted.
  using File = std::pair<std::string, std::string>;
  // The scheduler-specific part. `body` is worker_init, the exports and the wrapped command.
  virtual std::vector<File> job_files(const BatchJobFiles& f, int tasks_per_node, const std::string& body) const = 0;
  // Extra lines run after worker_init (e.g. PARSL_CORES), each ending in '\n'.
  virtual std::string extra_exports(int /*tasks_per_node*/) const { return ""; }
  virtual std::vector<std::string> submit_command(const std::string& script_path) const = 0;
  // Standard input of the submit command ("" for /dev/null): bsub < script.
  virtual std::string submit_stdin(const std::string& /*script_path*/) const { return ""; }
  // The job id in the submit command's standard output, "" if there is none.
  virtual std::string parse_job_id(const std::string& out) const = 0;
  struct StatusCall {
    std::vector<std::string> argv;
    // The state of every job the output mentions, by the id the scheduler prints. Throws
    // pervade::Error for output that is not in the command's format.
    std::vector<std::pair<std::string, JobStatus>> (*parse)(const std::string& out) = nullptr;
  };
  virtual StatusCall status_command(const std::vector<std::string>& job_ids) = 0;
  // A failed status command whose stderr says only that some jobs are unknown to it (they
  // have left the queue): its output still counts.
  virtual bool unknown_jobs_only(const std::string& /*err*/) const { return false; }
  // Called when the status command failed (non-zero exit, not unknown_jobs_only, or not
  // installed); true: try again (status_command may now build another call).
  virtual bool fall_back() { return false; }
  // The commands that cancel the jobs; all run, the first one's failure counts.
  virtual std::vector<std::vector<std::string>> cancel_commands(const std::vector<std::string>& job_ids) const = 0;

 private:
  BatchJobFiles files_for(const std::string& job_name, const std::string& log_path) const;
  std::string body(const std::string& command, int tasks_per_node, const BatchJobFiles& f) const;

  std::string walltime_;
  struct State;
  std::unique_ptr<State> state_;
};

// Slurm (sbatch / sacct, or squeue where accounting is disabled / scancel).
struct SlurmOptions {
  std::string partition;    // "" = the cluster's default
  std::string account;
  std::string qos;
  std::string constraint;
  std::string clusters;     // federation: cluster name or comma-separated list
  std::optional<int> cores_per_node;  // --cpus-per-task = cores_per_node / tasks_per_node
  std::optional<int> mem_per_node;    // GB: --mem=<n>g
  std::optional<int> gpus_per_node;
  std::string gres;
  std::string walltime = "00:10:00";
  std::string scheduler_options;      // appended verbatim after the generated #SBATCH lines
  // The job id in sbatch's output: group "id" (Python syntax "(?P<id>...)"), else group 1.
  std::string regex_job_id = R"(Submitted batch job (?P<id>\S*))";
  bool exclusive = true;
};

class SlurmProvider final : public BatchProvider {
 public:
  explicit SlurmProvider(ProviderOptions options = {}, SlurmOptions slurm = {});
  ~SlurmProvider() override { cancel_live_jobs(); }
  const SlurmOptions& slurm_options() const { return slurm_; }

 private:
  std::vector<File> job_files(const BatchJobFiles& f, int tasks_per_node, const std::string& body) const override;
  std::string extra_exports(int tasks_per_node) const override;
  std::vector<std::string> submit_command(const std::string& script_path) const override;
  std::string parse_job_id(const std::string& out) const override;
  StatusCall status_command(const std::vector<std::string>& job_ids) override;
  bool unknown_jobs_only(const std::string& err) const override;
  bool fall_back() override;
  std::vector<std::vector<std::string>> cancel_commands(const std::vector<std::string>& job_ids) const override;

  SlurmOptions slurm_;
  bool use_squeue_ = false;  // sacct failed once (accounting storage disabled)
};

// Torque (qsub / qstat / qdel); #PBS -l nodes=<nodes_per_block>:ppn=<tasks_per_node>.
// A null launcher is AprunLauncher, as in Parsl.
struct TorqueOptions {
  std::string account;  // qsub -A
  std::string queue;    // qsub -q
  std::string scheduler_options;  // #PBS lines, placed before the generated ones
  std::string walltime = "00:20:00";
};

// PBS Pro (qsub / qstat -x / qdel); #PBS -l select=<nodes_per_block>:ncpus=<cpus_per_node><select_options>.
struct PBSProOptions {
  std::string account;
  std::string queue;
  std::string scheduler_options;  // appended verbatim after the generated #PBS lines
  std::string select_options;     // appended to the select statement, e.g. "ngpus=4"
  int cpus_per_node = 1;
  std::string walltime = "00:20:00";
};

// What Torque and PBS Pro share: qsub [-q queue] [-A account], qstat's table, qdel.
class PbsProvider : public BatchProvider {
 protected:
  // finished_jobs: ask qstat -x, so that finished jobs are still reported (PBS Pro).
  PbsProvider(std::string label, ProviderOptions options, std::string walltime, std::string queue,
              std::string account, bool finished_jobs);

 private:
  std::vector<std::string> submit_command(const std::string& script_path) const final;
  std::string parse_job_id(const std::string& out) const final;
  StatusCall status_command(const std::vector<std::string>& job_ids) final;
  bool unknown_jobs_only(const std::string& err) const final;
  std::vector<std::vector<std::string>> cancel_commands(const std::vector<std::string>& job_ids) const final;

  std::string queue_;
  std::string account_;
  bool finished_jobs_;
};

class TorqueProvider final : public PbsProvider {
 public:
  explicit TorqueProvider(ProviderOptions options = {}, TorqueOptions torque = {});
  ~TorqueProvider() override { cancel_live_jobs(); }

 private:
  std::vector<File> job_files(const BatchJobFiles& f, int tasks_per_node, const std::string& body) const override;

  TorqueOptions torque_;
};

// PBS Pro differs from Torque in the job script (select statements) and asks qstat -x.
class PBSProProvider final : public PbsProvider {
 public:
  explicit PBSProProvider(ProviderOptions options = {}, PBSProOptions pbspro = {});
  ~PBSProProvider() override { cancel_live_jobs(); }

 private:
  std::vector<File> job_files(const BatchJobFiles& f, int tasks_per_node, const std::string& body) const override;

  PBSProOptions pbspro_;
};

// LSF (bsub / bjobs / bkill).
struct LSFOptions {
  std::optional<int> cores_per_block;  // with request_by_nodes = false: #BSUB -n
  std::optional<int> cores_per_node;   // with request_by_nodes = false: span[ptile=...]
  std::string walltime = "00:10:00";   // #BSUB -W in minutes
  std::string scheduler_options;       // appended verbatim after the generated #BSUB lines
  std::string project;                 // #BSUB -P
  std::string queue;                   // #BSUB -q
  bool bsub_redirection = false;       // bsub < script instead of bsub script
  bool request_by_nodes = true;        // #BSUB -nnodes; else by cores (nodes_per_block is derived)
};

class LSFProvider final : public BatchProvider {
 public:
  explicit LSFProvider(ProviderOptions options = {}, LSFOptions lsf = {});
  ~LSFProvider() override { cancel_live_jobs(); }

 private:
  std::vector<File> job_files(const BatchJobFiles& f, int tasks_per_node, const std::string& body) const override;
  std::vector<std::string> submit_command(const std::string& script_path) const override;
  std::string submit_stdin(const std::string& script_path) const override;
  std::string parse_job_id(const std::string& out) const override;
  StatusCall status_command(const std::vector<std::string>& job_ids) override;
  bool unknown_jobs_only(const std::string& err) const override;
  std::vector<std::vector<std::string>> cancel_commands(const std::vector<std::string>& job_ids) const override;

  LSFOptions lsf_;
};

// Sun/Oracle/Son of Grid Engine (qsub -terse / qstat / qdel); #$ directives.
struct GridEngineOptions {
  std::string walltime = "00:10:00";  // -l h_rt
  std::string scheduler_options;      // appended verbatim after the generated #$ lines
  std::string queue;                  // qsub -q
};

class GridEngineProvider final : public BatchProvider {
 public:
  explicit GridEngineProvider(ProviderOptions options = {}, GridEngineOptions sge = {});
  ~GridEngineProvider() override { cancel_live_jobs(); }

 private:
  std::vector<File> job_files(const BatchJobFiles& f, int tasks_per_node, const std::string& body) const override;
  std::vector<std::string> submit_command(const std::string& script_path) const override;
  std::string parse_job_id(const std::string& out) const override;
  StatusCall status_command(const std::vector<std::string>& job_ids) override;
  std::vector<std::vector<std::string>> cancel_commands(const std::vector<std::string>& job_ids) const override;

  GridEngineOptions sge_;
};

// HTCondor (condor_submit / condor_q / condor_rm). The job script becomes the job's
// executable input file; the submitted file is the submit description.
struct CondorOptions {
  std::optional<int> cores_per_slot;    // RequestCpus, PARSL_CORES
  std::optional<double> mem_per_slot;   // GB: RequestMemory (MB), PARSL_MEMORY_GB
  std::vector<std::pair<std::string, std::string>> environment;  // set in the job
  std::string project;                  // +projectname
  std::string scheduler_options;        // submit description lines, verbatim
  std::vector<std::string> transfer_input_files;
  std::string walltime = "00:10:00";    // kept for the strategy; Condor has no walltime
  std::string requirements;
};

class CondorProvider final : public BatchProvider {
 public:
  explicit CondorProvider(ProviderOptions options = {}, CondorOptions condor = {});
  ~CondorProvider() override { cancel_live_jobs(); }

 private:
  std::vector<File> job_files(const BatchJobFiles& f, int tasks_per_node, const std::string& body) const override;
  std::string extra_exports(int tasks_per_node) const override;
  std::vector<std::string> submit_command(const std::string& script_path) const override;
  std::string parse_job_id(const std::string& out) const override;
  StatusCall status_command(const std::vector<std::string>& job_ids) override;
  std::vector<std::vector<std::string>> cancel_commands(const std::vector<std::string>& job_ids) const override;

  CondorOptions condor_;
};

}  // namespace pervade
