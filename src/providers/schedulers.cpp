// The six batch schedulers: job script templates, commands and which status parser to use.
// Directive syntax follows each scheduler's documentation (sbatch(1), qsub(1B) for PBS Pro and
// Torque, bsub(1), qsub(1) for Grid Engine, condor_submit(1)); parameters and defaults follow
// Parsl's providers of the same names.
#include <cmath>
#include <sstream>

#include <fmt/format.h>

#include "pervade/batch_providers.hpp"
#include "pervade/errors.hpp"
#include "providers/scheduler_output.hpp"

namespace pervade {

namespace {

using detail::shell_quote;

std::string join(const std::vector<std::string>& v, std::string_view sep) {
  std::string out;
  for (const auto& s : v) {
    if (!out.empty()) out += sep;
    out += s;
  }
  return out;
}

// Verbatim text the user gave, as whole lines.
std::string as_lines(const std::string& text) {
  if (text.empty()) return "";
  return text.back() == '\n' ? text : text + "\n";
}

// Every non-blank line of a failed status command's stderr says one of `phrases`.
bool only_says(const std::string& err, std::initializer_list<std::string_view> phrases) {
  std::istringstream in(err);
  bool any = false;
  for (std::string line; std::getline(in, line);) {
    if (line.find_first_not_of(" \t\r") == std::string::npos) continue;
    bool known = false;
    for (auto p : phrases) known = known || line.find(p) != std::string::npos;
    if (!known) return false;
    any = true;
  }
  return any;
}

// HH:MM:SS → whole minutes, rounded up (LSF's -W takes minutes).
long walltime_minutes(const std::string& walltime) {
  long h = 0, m = 0, s = 0;
  std::sscanf(walltime.c_str(), "%ld:%ld:%ld", &h, &m, &s);
  return h * 60 + m + (s > 0 ? 1 : 0);
}

std::string pbs_output_lines(const BatchJobFiles& f) {
  if (f.stdout_path == f.stderr_path) return fmt::format("#PBS -j oe\n#PBS -o {}\n", f.stdout_path);
  return fmt::format("#PBS -o {}\n#PBS -e {}\n", f.stdout_path, f.stderr_path);
}

std::vector<std::string> with_ids(std::vector<std::string> argv, const std::vector<std::string>& ids) {
  argv.insert(argv.end(), ids.begin(), ids.end());
  return argv;
}

ProviderOptions torque_defaults(ProviderOptions o) {
  if (!o.launcher) o.launcher = std::make_shared<AprunLauncher>();  // Parsl's default for Torque
  return o;
}

ProviderOptions lsf_nodes(ProviderOptions o, const LSFOptions& lsf) {
  if (lsf.request_by_nodes) return o;
  if (!lsf.cores_per_block || !lsf.cores_per_node || *lsf.cores_per_node <= 0 || *lsf.cores_per_block <= 0)
    throw ConfigurationError(
        "LSF provider: request_by_nodes=false needs cores_per_block and cores_per_node, both > 0");
  o.nodes_per_block = static_cast<int>((*lsf.cores_per_block + *lsf.cores_per_node - 1) / *lsf.cores_per_node);
  return o;
}

}  // namespace

// ---- Slurm ----------------------------------------------------------------------------------

SlurmProvider::SlurmProvider(ProviderOptions options, SlurmOptions slurm)
    : BatchProvider("slurm", std::move(options), slurm.walltime), slurm_(std::move(slurm)) {
  slurm_.regex_job_id = detail::slurm_regex(slurm_.regex_job_id);
  for (auto [name, value] : {std::pair{"cores_per_node", slurm_.cores_per_node},
                             std::pair{"mem_per_node", slurm_.mem_per_node},
                             std::pair{"gpus_per_node", slurm_.gpus_per_node}})
    if (value && *value <= 0)
      throw ConfigurationError(fmt::format("slurm provider: {} must be > 0, got {}", name, *value));
}

std::string SlurmProvider::extra_exports(int tasks_per_node) const {
  std::string out;
  if (slurm_.mem_per_node) out += fmt::format("export PARSL_MEMORY_GB={}\n", *slurm_.mem_per_node);
  if (slurm_.cores_per_node) out += fmt::format("export PARSL_CORES={}\n", *slurm_.cores_per_node / std::max(1, tasks_per_node));
  return out;
}

std::vector<BatchProvider::File> SlurmProvider::job_files(const BatchJobFiles& f, int tasks_per_node,
                                                           const std::string& body) const {
  std::string s = "#!/bin/bash\n";
  s += fmt::format("#SBATCH --job-name={}\n", f.job_name);
  s += fmt::format("#SBATCH --output={}\n", f.stdout_path);
  s += fmt::format("#SBATCH --error={}\n", f.stderr_path);
  s += fmt::format("#SBATCH --nodes={}\n", options().nodes_per_block);
  s += fmt::format("#SBATCH --time={}\n", walltime());
  s += fmt::format("#SBATCH --ntasks-per-node={}\n", std::max(1, tasks_per_node));
  if (slurm_.exclusive) s += "#SBATCH --exclusive\n";
  for (auto [flag, value] : {std::pair{"partition", &slurm_.partition}, std::pair{"account", &slurm_.account},
                             std::pair{"qos", &slurm_.qos}, std::pair{"constraint", &slurm_.constraint},
                             std::pair{"clusters", &slurm_.clusters}, std::pair{"gres", &slurm_.gres}})
    if (!value->empty()) s += fmt::format("#SBATCH --{}={}\n", flag, *value);
  if (slurm_.gpus_per_node) s += fmt::format("#SBATCH --gpus-per-node={}\n", *slurm_.gpus_per_node);
  if (slurm_.mem_per_node) s += fmt::format("#SBATCH --mem={}g\n", *slurm_.mem_per_node);
  if (slurm_.cores_per_node)
    s += fmt::format("#SBATCH --cpus-per-task={}\n", *slurm_.cores_per_node / std::max(1, tasks_per_node));
  s += as_lines(slurm_.scheduler_options);
  s += "\n" + body;
  return {{f.script_path, s}};
}

std::vector<std::string> SlurmProvider::submit_command(const std::string& script_path) const {
  return {"sbatch", script_path};
}

std::string SlurmProvider::parse_job_id(const std::string& out) const {
  return detail::slurm_job_id(out, slurm_.regex_job_id);
}

BatchProvider::StatusCall SlurmProvider::status_command(const std::vector<std::string>& job_ids) {
  StatusCall call;
  call.argv.push_back(use_squeue_ ? "squeue" : "sacct");
  if (!slurm_.clusters.empty()) call.argv.push_back("--clusters=" + slurm_.clusters);
  if (use_squeue_) {
    // --states=all: jobs that ended recently are still listed (until MinJobAge).
    call.argv.insert(call.argv.end(), {"--noheader", "--format=%i %t", "--states=all"});
    call.parse = detail::parse_squeue;
  } else {
    // state%20: wide enough that "CANCELLED by 1000" is not cut to "CANCELLED+".
    call.argv.insert(call.argv.end(), {"-X", "--noheader", "--format=jobid,state%20"});
    call.parse = detail::parse_sacct;
  }
  call.argv.push_back("--jobs=" + join(job_ids, ","));
  return call;
}

bool SlurmProvider::unknown_jobs_only(const std::string& err) const {
  return only_says(err, {"Invalid job id specified"});
}

bool SlurmProvider::fall_back() {
  // sacct fails where accounting storage is disabled ("Slurm accounting storage is disabled"):
  // squeue then, for good. A failing squeue is an error.
  if (use_squeue_) return false;
  use_squeue_ = true;
  return true;
}

std::vector<std::vector<std::string>> SlurmProvider::cancel_commands(const std::vector<std::string>& job_ids) const {
  std::vector<std::string> argv{"scancel"};
  if (!slurm_.clusters.empty()) argv.push_back("--clusters=" + slurm_.clusters);
  return {with_ids(argv, job_ids)};
}

// ---- Torque and PBS Pro ---------------------------------------------------------------------

PbsProvider::PbsProvider(std::string label, ProviderOptions options, std::string walltime, std::string queue,
                         std::string account, bool finished_jobs)
    : BatchProvider(std::move(label), std::move(options), std::move(walltime)),
      queue_(std::move(queue)),
      account_(std::move(account)),
      finished_jobs_(finished_jobs) {}

std::vector<std::string> PbsProvider::submit_command(const std::string& script_path) const {
  std::vector<std::string> argv{"qsub"};
  if (!queue_.empty()) argv.insert(argv.end(), {"-q", queue_});
  if (!account_.empty()) argv.insert(argv.end(), {"-A", account_});
  argv.push_back(script_path);
  return argv;
}

std::string PbsProvider::parse_job_id(const std::string& out) const { return detail::pbs_job_id(out); }

BatchProvider::StatusCall PbsProvider::status_command(const std::vector<std::string>& job_ids) {
  return {with_ids(finished_jobs_ ? std::vector<std::string>{"qstat", "-x"} : std::vector<std::string>{"qstat"}, job_ids),
          detail::parse_pbs_qstat};
}

bool PbsProvider::unknown_jobs_only(const std::string& err) const {
  return only_says(err, {"Unknown Job Id", "Job has finished"});
}

std::vector<std::vector<std::string>> PbsProvider::cancel_commands(const std::vector<std::string>& job_ids) const {
  return {with_ids({"qdel"}, job_ids)};
}

TorqueProvider::TorqueProvider(ProviderOptions options, TorqueOptions torque)
    : PbsProvider("torque", torque_defaults(std::move(options)), torque.walltime, torque.queue, torque.account, false),
      torque_(std::move(torque)) {}

std::vector<BatchProvider::File> TorqueProvider::job_files(const BatchJobFiles& f, int tasks_per_node,
                                                            const std::string& body) const {
  std::string s = "#!/bin/bash\n";
  s += as_lines(torque_.scheduler_options);  // first, as in Parsl's Torque template
  s += "#PBS -S /bin/bash\n";
  s += fmt::format("#PBS -N {}\n", f.job_name);
  s += "#PBS -m n\n";
  s += fmt::format("#PBS -l walltime={}\n", walltime());
  s += fmt::format("#PBS -l nodes={}:ppn={}\n", options().nodes_per_block, std::max(1, tasks_per_node));
  s += pbs_output_lines(f);
  s += "\n" + body;
  return {{f.script_path, s}};
}

// ---- PBS Pro --------------------------------------------------------------------------------

PBSProProvider::PBSProProvider(ProviderOptions options, PBSProOptions pbspro)
    : PbsProvider("pbspro", std::move(options), pbspro.walltime, pbspro.queue, pbspro.account, true),
      pbspro_(std::move(pbspro)) {
  if (pbspro_.cpus_per_node < 1)
    throw ConfigurationError(fmt::format("pbspro provider: cpus_per_node must be >= 1, got {}", pbspro_.cpus_per_node));
  if (!pbspro_.select_options.empty() && pbspro_.select_options.front() != ':')
    pbspro_.select_options = ":" + pbspro_.select_options;
}

std::vector<BatchProvider::File> PBSProProvider::job_files(const BatchJobFiles& f, int,
                                                            const std::string& body) const {
  std::string s = "#!/bin/bash\n";
  s += "#PBS -S /bin/bash\n";
  s += fmt::format("#PBS -N {}\n", f.job_name);
  s += "#PBS -m n\n";
  s += fmt::format("#PBS -l walltime={}\n", walltime());
  s += fmt::format("#PBS -l select={}:ncpus={}{}\n", options().nodes_per_block, pbspro_.cpus_per_node,
                   pbspro_.select_options);
  s += pbs_output_lines(f);
  s += as_lines(pbspro_.scheduler_options);
  s += "\n" + body;
  return {{f.script_path, s}};
}

// ---- LSF ------------------------------------------------------------------------------------

LSFProvider::LSFProvider(ProviderOptions options, LSFOptions lsf)
    : BatchProvider("LSF", lsf_nodes(std::move(options), lsf), lsf.walltime), lsf_(std::move(lsf)) {}

std::vector<BatchProvider::File> LSFProvider::job_files(const BatchJobFiles& f, int, const std::string& body) const {
  std::string s = "#!/bin/bash\n";
  s += fmt::format("#BSUB -W {}\n", walltime_minutes(walltime()));
  s += fmt::format("#BSUB -J {}\n", f.job_name);
  s += fmt::format("#BSUB -o {}\n", f.stdout_path);
  // Without -e, LSF writes stderr to the -o file.
  if (f.stderr_path != f.stdout_path) s += fmt::format("#BSUB -e {}\n", f.stderr_path);
  if (!lsf_.project.empty()) s += fmt::format("#BSUB -P {}\n", lsf_.project);
  if (!lsf_.queue.empty()) s += fmt::format("#BSUB -q {}\n", lsf_.queue);
  if (lsf_.request_by_nodes) {
    s += fmt::format("#BSUB -nnodes {}\n", options().nodes_per_block);
  } else {
    s += fmt::format("#BSUB -n {}\n", *lsf_.cores_per_block);
    s += fmt::format("#BSUB -R \"span[ptile={}]\"\n", *lsf_.cores_per_node);
  }
  s += as_lines(lsf_.scheduler_options);
  s += "\n" + body;
  return {{f.script_path, s}};
}

std::vector<std::string> LSFProvider::submit_command(const std::string& script_path) const {
  if (lsf_.bsub_redirection) return {"bsub"};
  return {"bsub", script_path};
}

std::string LSFProvider::submit_stdin(const std::string& script_path) const {
  return lsf_.bsub_redirection ? script_path : "";
}

std::string LSFProvider::parse_job_id(const std::string& out) const { return detail::lsf_job_id(out); }

BatchProvider::StatusCall LSFProvider::status_command(const std::vector<std::string>& job_ids) {
  return {with_ids({"bjobs", "-noheader", "-o", "jobid stat"}, job_ids), detail::parse_bjobs};
}

bool LSFProvider::unknown_jobs_only(const std::string& err) const { return only_says(err, {"is not found"}); }

std::vector<std::vector<std::string>> LSFProvider::cancel_commands(const std::vector<std::string>& job_ids) const {
  return {with_ids({"bkill"}, job_ids)};
}

// ---- Grid Engine ----------------------------------------------------------------------------

GridEngineProvider::GridEngineProvider(ProviderOptions options, GridEngineOptions sge)
    : BatchProvider("grid_engine", std::move(options), sge.walltime), sge_(std::move(sge)) {}

std::vector<BatchProvider::File> GridEngineProvider::job_files(const BatchJobFiles& f, int,
                                                                const std::string& body) const {
  std::string s = "#!/bin/bash\n";
  s += "#$ -S /bin/bash\n";
  s += fmt::format("#$ -N {}\n", f.job_name);
  s += fmt::format("#$ -o {}\n", f.stdout_path);
  s += f.stderr_path == f.stdout_path ? std::string("#$ -j y\n") : fmt::format("#$ -e {}\n", f.stderr_path);
  s += "#$ -cwd\n";
  s += fmt::format("#$ -l h_rt={}\n", walltime());
  s += as_lines(sge_.scheduler_options);
  s += "\n" + body;
  return {{f.script_path, s}};
}

std::vector<std::string> GridEngineProvider::submit_command(const std::string& script_path) const {
  std::vector<std::string> argv{"qsub", "-terse"};
  if (!sge_.queue.empty()) argv.insert(argv.end(), {"-q", sge_.queue});
  argv.push_back(script_path);
  return argv;
}

std::string GridEngineProvider::parse_job_id(const std::string& out) const { return detail::pbs_job_id(out); }

BatchProvider::StatusCall GridEngineProvider::status_command(const std::vector<std::string>&) {
  return {{"qstat"}, detail::parse_sge_qstat};  // Grid Engine's qstat takes no job list
}

std::vector<std::vector<std::string>> GridEngineProvider::cancel_commands(const std::vector<std::string>& job_ids) const {
  return {with_ids({"qdel"}, job_ids)};
}

// ---- HTCondor -------------------------------------------------------------------------------

namespace {
// A value in the new syntax of condor_submit's `environment`: in single quotes, quotes doubled.
std::string condor_env_value(const std::string& v) {
  std::string out = "'";
  for (char c : v) {
    if (c == '\'') out += "''";
    else if (c == '"') out += "\"\"";
    else out += c;
  }
  return out + "'";
}
}  // namespace

CondorProvider::CondorProvider(ProviderOptions options, CondorOptions condor)
    : BatchProvider("condor", std::move(options), condor.walltime), condor_(std::move(condor)) {
  if (condor_.cores_per_slot && *condor_.cores_per_slot <= 0)
    throw ConfigurationError(fmt::format("condor provider: cores_per_slot must be > 0, got {}", *condor_.cores_per_slot));
  if (condor_.mem_per_slot && !(*condor_.mem_per_slot > 0))
    throw ConfigurationError(fmt::format("condor provider: mem_per_slot must be > 0, got {}", *condor_.mem_per_slot));
  for (const auto& [name, value] : condor_.environment)
    if (name.empty() || name.find_first_of(" =\t\n") != std::string::npos)
      throw ConfigurationError(fmt::format("condor provider: bad environment variable name '{}'", name));
}

std::string CondorProvider::extra_exports(int) const {
  std::string out;
  if (condor_.mem_per_slot) out += fmt::format("export PARSL_MEMORY_GB={}\n", *condor_.mem_per_slot);
  if (condor_.cores_per_slot) out += fmt::format("export PARSL_CORES={}\n", *condor_.cores_per_slot);
  return out;
}

std::vector<BatchProvider::File> CondorProvider::job_files(const BatchJobFiles& f, int, const std::string& body) const {
  const std::string stem = f.script_path.substr(0, f.script_path.size() - std::string(".submit").size());
  const std::string script = stem + ".script";
  // The job's stderr joins its stdout inside the script: two file transfers to one path
  // would overwrite each other.
  const bool joined = f.stderr_path == f.stdout_path;
  std::vector<std::string> inputs{script};
  inputs.insert(inputs.end(), condor_.transfer_input_files.begin(), condor_.transfer_input_files.end());
  std::string env = "JOBNAME=" + condor_env_value(f.job_name);
  for (const auto& [name, value] : condor_.environment) env += " " + name + "=" + condor_env_value(value);

  std::string s;
  s += "universe                = vanilla\n";
  s += "should_transfer_files   = YES\n";
  s += "when_to_transfer_output = ON_EXIT_OR_EVICT\n";
  s += "transfer_executable     = false\n";
  s += fmt::format("transfer_input_files    = {}\n", join(inputs, ","));
  s += fmt::format("machine_count           = {}\n", options().nodes_per_block);
  s += fmt::format("output                  = {}\n", f.stdout_path);
  s += fmt::format("error                   = {}\n", joined ? stem + ".stderr" : f.stderr_path);
  s += fmt::format("log                     = {}.log\n", stem);
  s += "executable              = /bin/bash\n";
  s += fmt::format("arguments               = {}\n", script.substr(script.find_last_of('/') + 1));
  if (!condor_.requirements.empty()) s += fmt::format("requirements            = {}\n", condor_.requirements);
  if (!condor_.project.empty()) s += fmt::format("+projectname            = \"{}\"\n", condor_.project);
  s += "leave_in_queue          = TRUE\n";
  s += fmt::format("environment             = \"{}\"\n", env);
  if (condor_.mem_per_slot)
    s += fmt::format("request_memory          = {}\n", static_cast<long>(std::ceil(*condor_.mem_per_slot * 1024)));
  if (condor_.cores_per_slot) s += fmt::format("request_cpus            = {}\n", *condor_.cores_per_slot);
  s += as_lines(condor_.scheduler_options);
  s += "queue\n";
  return {{f.script_path, s}, {script, (joined ? "exec 2>&1\n" : "") + body}};
}

std::vector<std::string> CondorProvider::submit_command(const std::string& script_path) const {
  return {"condor_submit", script_path};
}

std::string CondorProvider::parse_job_id(const std::string& out) const { return detail::condor_job_id(out); }

BatchProvider::StatusCall CondorProvider::status_command(const std::vector<std::string>& job_ids) {
  auto argv = with_ids({"condor_q"}, job_ids);
  argv.insert(argv.end(), {"-af:jr", "JobStatus"});
  return {argv, detail::parse_condor_q};
}

std::vector<std::vector<std::string>> CondorProvider::cancel_commands(const std::vector<std::string>& job_ids) const {
  // leave_in_queue keeps removed jobs in the queue; -forcex takes them out.
  return {with_ids({"condor_rm"}, job_ids), with_ids({"condor_rm", "-forcex"}, job_ids)};
}

}  // namespace pervade
