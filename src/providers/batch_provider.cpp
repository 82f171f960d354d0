// BatchProvider: what every batch scheduler shares — job files, running the scheduler's
// commands, the job table and the mapping of status output onto the jobs asked about.
//
// Design notes
// ------------
// * One mutex serialises the job table and the scheduler commands of a provider: a status()
//   never races a submit() into a half-recorded job, and the scheduler sees one command at a
//   time from us (schedulers ask clients not to hammer them).
// * status() asks once for every live job (one command call, batched), and never again for
//   a job known to have ended (cancelled by us, or reported terminal).
// * A job the status command no longer reports has left the queue: COMPLETED (Parsl does the
//   same), unless the scheduler has never reported it and it was submitted moments ago —
//   accounting (sacct) may lag behind sbatch, and reading that as "completed" would lose a
//   block that is about to run.
#include "pervade/batch_providers.hpp"

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <mutex>
#include <regex>
#include <string_view>
#include <unordered_map>

#include <fmt/format.h>

#include "pervade/errors.hpp"
#include "providers/scheduler_command.hpp"
#include "util/private_files.hpp"

namespace pervade {

namespace {

using Clock = std::chrono::steady_clock;
namespace fs = std::filesystem;

constexpr auto kFreshJobGrace = std::chrono::seconds(60);

struct Job {
  BatchJobFiles files;
  JobStatus status;
  bool seen = false;  // the status command has reported it at least once
  std::string cancel_error;  // the last cancel() failed: kept in the status message
  Clock::time_point submitted;
};

// Job names become file names and scheduler job names: keep them to a safe alphabet.
std::string sanitize(const std::string& name) {
  std::string out;
  for (char c : name) {
    const bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' ||
                    c == '-' || c == '_';
    out += ok ? c : '_';
  }
  return out.empty() ? std::string("pervade") : out;
}

std::string trimmed(const std::string& s) {
  const auto b = s.find_first_not_of(" \t\r\n");
  if (b == std::string::npos) return "";
  return s.substr(b, s.find_last_not_of(" \t\r\n") - b + 1);
}

// The scheduler's own words: stderr, and stdout when it said something too.
std::string scheduler_message(const detail::CommandResult& r) {
  const std::string err = trimmed(r.err), out = trimmed(r.out);
  if (err.empty() && out.empty()) return "(no output)";
  if (err.empty()) return out;
  if (out.empty()) return err;
  return err + " (stdout: " + out + ")";
}

// Whether the id the scheduler printed names our job: the same, or our id truncated by a
// fixed-width column (qstat), or our id without its server suffix ("1234" for "1234.pbs01").
bool same_job(const std::string& printed, const std::string& ours) {
  if (printed == ours) return true;
  if (printed.empty() || ours.size() <= printed.size() || ours.compare(0, printed.size(), printed) != 0) return false;
  return ours[printed.size()] == '.' || printed.size() >= 14;
}

// The ids among `job_ids` of jobs we submitted that have not ended, each once, in order.
std::vector<std::string> live_ids(const std::unordered_map<std::string, Job>& jobs,
                                  const std::vector<std::string>& job_ids) {
  std::vector<std::string> live;
  for (const auto& id : job_ids) {
    auto it = jobs.find(id);
    if (it != jobs.end() && !is_terminal(it->second.status.state) &&
        std::find(live.begin(), live.end(), id) == live.end())
      live.push_back(id);
  }
  return live;
}

// `s` as one shell word, quoted only when it needs to be: the runner's command line reads as
// Parsl's ("sbatch /path/x.submit"), for overrides that look at it.
std::string shell_word(const std::string& s) {
  const bool plain = !s.empty() && std::all_of(s.begin(), s.end(), [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
           std::string_view("_@%+=:,./-").find(c) != std::string_view::npos;
  });
  return plain ? s : detail::shell_quote(s);
}

// Runs one scheduler command: through the runner when there is one and it takes it, else
// spawned (argv without a shell, stdin from stdin_path).
detail::CommandResult run_scheduler_command(const BatchProvider::CommandRunner& runner,
                                           const std::vector<std::string>& argv, double timeout,
                                           const std::string& stdin_path = "") {
  if (runner) {
    std::string line;
    for (const auto& a : argv) line += (line.empty() ? "" : " ") + shell_word(a);
    if (!stdin_path.empty()) line += " < " + shell_word(stdin_path);
    if (auto r = runner(line, timeout)) return {r->exit_code, std::move(r->out), std::move(r->err)};
  }
  return detail::run_command(argv, std::chrono::duration<double>(timeout), stdin_path);
}

}  // namespace

struct BatchProvider::State {
  std::mutex mutex;
  std::unordered_map<std::string, Job> jobs;
  CommandRunner runner;
};

void BatchProvider::set_command_runner(CommandRunner runner) {
  std::lock_guard lock(state_->mutex);
  state_->runner = std::move(runner);
}

std::vector<BatchProvider::SubmittedJob> BatchProvider::jobs() const {
  std::lock_guard lock(state_->mutex);
  std::vector<SubmittedJob> out;
  out.reserve(state_->jobs.size());
  for (const auto& [id, job] : state_->jobs) out.push_back({id, job.files, job.status});
  return out;
}

BatchProvider::BatchProvider(std::string label, ProviderOptions options, std::string walltime)
    : Provider(std::move(label), std::move(options)), walltime_(std::move(walltime)), state_(std::make_unique<State>()) {
  static const std::regex hhmmss(R"(\d+:[0-5]\d:[0-5]\d)");
  if (!std::regex_match(walltime_, hhmmss))
    throw ConfigurationError(
        fmt::format("{} provider: walltime must be HH:MM:SS, got '{}'", this->label(), walltime_));
}

BatchProvider::~BatchProvider() = default;

void BatchProvider::cancel_live_jobs() noexcept {
  try {
    std::vector<std::string> live;
    {
      std::lock_guard lock(state_->mutex);
      for (const auto& [id, job] : state_->jobs)
        if (!is_terminal(job.status.state)) live.push_back(id);
    }
    if (!live.empty()) cancel(live);
  } catch (...) {
    // Nothing to report to at destruction; cancel() already recorded what it could.
  }
}

BatchJobFiles BatchProvider::files_for(const std::string& job_name, const std::string& log_path) const {
  fs::path dir = options().script_dir;
  if (dir.empty()) dir = (log_path.empty() ? fs::current_path() : fs::path(log_path).parent_path()) / "submit_scripts";
  dir = fs::absolute(dir);
  BatchJobFiles f;
  f.job_name = sanitize(job_name);
  // Unique per submission, so that a script is never overwritten while its job may still
  // need it (HTCondor transfers the job's script when the job starts, not at submission).
  const auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(
                      std::chrono::system_clock::now().time_since_epoch()).count();
  const std::string stem = fmt::format("{}.{}", f.job_name, ms);
  f.script_dir = dir.string();
  f.script_path = (dir / (stem + ".submit")).string();
  if (log_path.empty()) {
    f.stdout_path = (dir / (stem + ".stdout")).string();
    f.stderr_path = (dir / (stem + ".stderr")).string();
  } else {
    f.stdout_path = f.stderr_path = fs::absolute(log_path).string();
  }
  return f;
}

std::string BatchProvider::body(const std::string& command, int tasks_per_node, const BatchJobFiles& f) const {
  std::string out;
  if (!options().worker_init.empty()) out += options().worker_init + "\n";
  out += extra_exports(tasks_per_node);
  out += fmt::format("export JOBNAME={}\n", detail::shell_quote(f.job_name));
  out += fmt::format("export PERVADE_SCRIPT_DIR={}\n", detail::shell_quote(f.script_dir));
  out += launcher().wrap(command, tasks_per_node, options().nodes_per_block);
  if (out.back() != '\n') out += '\n';
  return out;
}

std::string BatchProvider::job_script(const std::string& command, int tasks_per_node, const std::string& job_name,
                                      const std::string& log_path) const {
  const BatchJobFiles f = files_for(job_name, log_path);
  return job_files(f, tasks_per_node, body(command, tasks_per_node, f)).front().second;
}

std::string BatchProvider::submit(const std::string& command, int tasks_per_node, const std::string& job_name,
                                  const std::string& log_path) {
  const BatchJobFiles f = files_for(job_name, log_path);
  const std::vector<File> files = job_files(f, tasks_per_node, body(command, tasks_per_node, f));
  std::error_code ec;
  if (!detail::create_private_directories(f.script_dir, ec))
    throw Error(fmt::format("{} provider: cannot create script_dir '{}': {}", label(), f.script_dir, ec.message()));
  if (!log_path.empty()) detail::create_private_directories(fs::path(f.stdout_path).parent_path(), ec);
  for (const auto& [path, content] : files) {
    if (!detail::write_private_file(path, content, ec))
      throw Error(fmt::format("{} provider: cannot write job script '{}': {}", label(), path, ec.message()));
  }
  const std::string& script = files.front().first;
  const std::vector<std::string> argv = submit_command(script);
  const std::string line = detail::command_line(argv);

  std::lock_guard lock(state_->mutex);
  detail::CommandResult r;
  try {
    r = run_scheduler_command(state_->runner, argv, options().cmd_timeout, submit_stdin(script));
  } catch (const Error& e) {
    throw Error(fmt::format("{} provider: cannot submit block '{}': {}", label(), f.job_name, e.what()));
  }
  if (r.exit_code != 0)
    throw Error(fmt::format("{} provider: cannot submit block '{}': '{}' failed with exit code {}: {}", label(),
                            f.job_name, line, r.exit_code, scheduler_message(r)));
  const std::string id = parse_job_id(r.out);
  if (id.empty())
    throw Error(fmt::format("{} provider: '{}' succeeded but printed no job id that could be read: {}", label(),
                            line, scheduler_message(r)));
  Job& job = state_->jobs[id];
  job.files = f;
  job.status = JobStatus{JobState::pending, "submitted", std::nullopt, f.stdout_path};
  job.submitted = Clock::now();
  return id;
}

std::vector<JobStatus> BatchProvider::status(const std::vector<std::string>& job_ids) {
  std::lock_guard lock(state_->mutex);
  auto& jobs = state_->jobs;
  const std::vector<std::string> live = live_ids(jobs, job_ids);
  if (!live.empty()) {
    for (;;) {
      StatusCall call = status_command(live);
      const std::string line = detail::command_line(call.argv);
      detail::CommandResult r;
      std::string failure;
      try {
        r = run_scheduler_command(state_->runner, call.argv, options().cmd_timeout);
        if (r.exit_code != 0 && !unknown_jobs_only(r.err))
          failure = fmt::format("'{}' failed with exit code {}: {}", line, r.exit_code, scheduler_message(r));
      } catch (const Error& e) {
        failure = e.what();
      }
      if (!failure.empty()) {
        if (fall_back()) continue;
        throw Error(fmt::format("{} provider: cannot get the status of its jobs: {}", label(), failure));
      }
      std::vector<std::pair<std::string, JobStatus>> reports;
      try {
        reports = call.parse(r.out);
      } catch (const Error& e) {
        throw Error(fmt::format("{} provider: cannot read the output of '{}': {}", label(), line, e.what()));
      }
      const auto now = Clock::now();
      for (const auto& id : live) {
        Job& job = jobs[id];
        auto hit = std::find_if(reports.begin(), reports.end(), [&](const auto& p) { return same_job(p.first, id); });
        if (hit != reports.end()) {
          job.seen = true;
          job.status.state = hit->second.state;
          job.status.message = hit->second.message + job.cancel_error;
          if (hit->second.exit_code) job.status.exit_code = hit->second.exit_code;
        } else if (job.seen || now - job.submitted > kFreshJobGrace) {
          job.status.state = JobState::completed;
          job.status.message = fmt::format("no longer reported by {}", call.argv.front());
        } else {
          job.status.state = JobState::pending;
          job.status.message = fmt::format("not yet reported by {}{}", call.argv.front(), job.cancel_error);
        }
      }
      break;
    }
  }
  std::vector<JobStatus> out;
  out.reserve(job_ids.size());
  for (const auto& id : job_ids) {
    auto it = jobs.find(id);
    out.push_back(it != jobs.end() ? it->second.status : JobStatus{JobState::missing, "unknown job id", {}, ""});
  }
  return out;
}

std::vector<bool> BatchProvider::cancel(const std::vector<std::string>& job_ids) {
  std::lock_guard lock(state_->mutex);
  auto& jobs = state_->jobs;
  const std::vector<std::string> live = live_ids(jobs, job_ids);
  std::string failure;
  if (!live.empty()) {
    const auto commands = cancel_commands(live);
    for (std::size_t i = 0; i < commands.size(); ++i) {
      try {
        const auto r = run_scheduler_command(state_->runner, commands[i], options().cmd_timeout);
        if (i == 0 && r.exit_code != 0)
          failure = fmt::format("'{}' failed with exit code {}: {}", detail::command_line(commands[i]), r.exit_code,
                                scheduler_message(r));
      } catch (const Error& e) {
        if (i == 0) failure = e.what();
      }
    }
    for (const auto& id : live) {
      JobStatus& s = jobs[id].status;
      if (failure.empty()) {
        s.state = JobState::cancelled;
        s.message = "cancelled";
      } else {
        jobs[id].cancel_error = "; cancel failed: " + failure;
        s.message += jobs[id].cancel_error;
      }
    }
  }
  std::vector<bool> out;
  out.reserve(job_ids.size());
  for (const auto& id : job_ids) {
    auto it = jobs.find(id);
    out.push_back(it != jobs.end() && is_terminal(it->second.status.state));
  }
  return out;
}

}  // namespace pervade
