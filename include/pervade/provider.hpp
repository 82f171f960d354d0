#pragma once
// Providers obtain blocks of nodes for executors; launchers wrap the command a block runs on
// its nodes (Parsl's parsl/providers/base.py and parsl/launchers contracts). Provider methods
// are thread-safe (any thread); launchers are stateless.
//
//   auto provider = std::make_shared<pervade::LocalProvider>(pervade::ProviderOptions{.init_blocks = 1});
//   std::string job = provider->submit("pervade-pool --address 127.0.0.1:54000", 1, "block-0", "block-0.log");
//   provider->status({job})[0].state;   // JobState::running
//   provider->cancel({job});            // SIGTERM to the block's process group, SIGKILL after a grace period
#include <chrono>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "pervade/launchers.hpp"

namespace pervade {

// Parsl's JobState (parsl/jobs/states.py), same names.
enum class JobState : int {
  unknown = 0,
  pending = 1,
  running = 2,
  cancelled = 3,
  completed = 4,
  failed = 5,
  timeout = 6,
  held = 7,
  missing = 8,
  scaled_in = 9,
};

// "UNKNOWN", "PENDING", "RUNNING", ... as Parsl prints them.
std::string_view to_string(JobState s);
// COMPLETED, CANCELLED, FAILED, TIMEOUT, MISSING, SCALED_IN: the job will not run again.
constexpr bool is_terminal(JobState s) {
  return s == JobState::cancelled || s == JobState::completed || s == JobState::failed || s == JobState::timeout ||
         s == JobState::missing || s == JobState::scaled_in;
}

struct JobStatus {
  JobState state = JobState::unknown;
  std::string message;           // e.g. "exit code 3", "killed by signal 9"
  std::optional<int> exit_code;  // once the job ended (128 + signal if a signal killed it)
  std::string log_path;          // where the job's stdout and stderr go ("" if discarded)
};

// The block parameters every provider has (Parsl's names and defaults).
struct ProviderOptions {
  int nodes_per_block = 1;
  int init_blocks = 1;     // blocks an executor starts with
  int min_blocks = 0;
  int max_blocks = 1;
  double parallelism = 1;  // for scaling strategies: blocks per outstanding task, 0..1
  std::string worker_init;                // shell lines run before the command (e.g. "source env.sh")
  std::shared_ptr<Launcher> launcher;     // null: SingleNodeLauncher
  double cmd_timeout = 30;                // seconds allowed for scheduler commands (batch providers)
  // Batch providers: where job scripts are written ("": a submit_scripts directory next to
  // the block's log, or under the current directory when the log is discarded).
  std::string script_dir;
};

class Provider {
 public:
  // Throws ConfigurationError for invalid options (negative counts, min_blocks > max_blocks, ...).
  Provider(std::string label, ProviderOptions options);
  virtual ~Provider() = default;
  Provider(const Provider&) = delete;
  Provider& operator=(const Provider&) = delete;

  const std::string& label() const { return label_; }
  const ProviderOptions& options() const { return options_; }
  const Launcher& launcher() const { return *options_.launcher; }

  // Starts a block that runs `command` (wrapped by the launcher, after worker_init); its output
  // goes to log_path ("" discards it). Returns the job id. Throws pervade::Error on failure.
  virtual std::string submit(const std::string& command, int tasks_per_node, const std::string& job_name,
                             const std::string& log_path) = 0;
  // One status per id, in order; unknown ids are JobState::missing.
  virtual std::vector<JobStatus> status(const std::vector<std::string>& job_ids) = 0;
  // Stops the jobs; blocks until they are gone (or given up on). One bool per id: true if the
  // job is known and no longer runs.
  virtual std::vector<bool> cancel(const std::vector<std::string>& job_ids) = 0;

 protected:
  // The block script: worker_init, then the launcher's wrapping of command.
  std::string block_script(const std::string& command, int tasks_per_node) const;

 private:
  std::string label_;
  ProviderOptions options_;
};

// Blocks are process trees on this machine: `/bin/bash -c <script>` in a new session (its own
// process group), stdout and stderr appended to the log file. The job id is the pid of that
// bash. A block has ended when its bash exited and the rest of its process group is gone: what
// is left of the group when bash exits gets SIGTERM, then SIGKILL after cancel_grace. cancel()
// sends SIGTERM to the group, SIGKILL after cancel_grace. The destructor cancels what still
// runs. Every child is reaped (by a monitor thread that waits on pidfds).
class LocalProvider final : public Provider {
 public:
  explicit LocalProvider(ProviderOptions options = {},
                         std::chrono::duration<double> cancel_grace = std::chrono::seconds(5));
  ~LocalProvider() override;

  std::string submit(const std::string& command, int tasks_per_node, const std::string& job_name,
                     const std::string& log_path) override;
  std::vector<JobStatus> status(const std::vector<std::string>& job_ids) override;
  std::vector<bool> cancel(const std::vector<std::string>& job_ids) override;

  // Waits until every given job has ended (see above), at most `timeout`; true if they all have.
  bool wait(const std::vector<std::string>& job_ids, std::chrono::duration<double> timeout);
  std::vector<std::string> job_ids() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace pervade
