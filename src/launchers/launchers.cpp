// The launchers: shell text that starts the block's command once, or once per task slot.
//
// Parallel launchers (srun, aprun, jsrun, mpiexec, mpirun) get the command as one argument of
// `/bin/bash -c`, single-quoted, so that it reaches every copy unchanged and no command file
// has to live on a shared file system. GNU parallel reads its commands from a file, so that
// launcher writes the command to one (under $PERVADE_SCRIPT_DIR).
#include "pervade/launchers.hpp"

#include <algorithm>

#include <fmt/format.h>

namespace pervade {

namespace detail {
std::string shell_quote(std::string_view s) {
  std::string out = "'";
  for (char c : s) {
    if (c == '\'')
      out += "'\"'\"'";
    else
      out += c;
  }
  return out + "'";
}
}  // namespace detail

namespace {

using detail::shell_quote;

long copies_of(int tasks_per_node, int nodes_per_block) {
  return static_cast<long>(std::max(1, tasks_per_node)) * std::max(1, nodes_per_block);
}

// "a b" + " " + "c", without a double blank when `overrides` is empty.
std::string with_overrides(const std::string& head, const std::string& overrides, const std::string& tail) {
  return overrides.empty() ? head + " " + tail : head + " " + overrides + " " + tail;
}

}  // namespace

std::string SimpleLauncher::wrap(const std::string& command, int, int) const { return command; }

std::string SingleNodeLauncher::wrap(const std::string& command, int tasks_per_node, int nodes_per_block) const {
  const long copies = copies_of(tasks_per_node, nodes_per_block);
  const std::string cores = "export CORES=$(getconf _NPROCESSORS_ONLN)\n";
  if (copies == 1) return cores + command;  // the block's exit status is the command's own
  // Parsl's script, without `set -e` (which would end the script at the first failed `wait`
  // and leave the other copies unwaited for). The command is a function, so it may be any
  // shell text; each copy gets its number as $1.
  return fmt::format(
      "{}WORKERCOUNT={}\n"
      "CMD() {{\n{}\n}}\n"
      "PIDS=\"\"\n"
      "for COUNT in $(seq 1 1 $WORKERCOUNT); do\n"
      "  CMD $COUNT &\n"
      "  PIDS=\"$PIDS $!\"\n"
      "done\n"
      "ALLFAILED=1\n"
      "ANYFAILED=0\n"
      "for PID in $PIDS; do\n"
      "  if wait $PID; then ALLFAILED=0; else ANYFAILED=1; fi\n"
      "done\n"
      "exit ${}\n",
      cores, copies, command, fail_on_any_ ? "ANYFAILED" : "ALLFAILED");
}

std::string WrappedLauncher::wrap(const std::string& command, int, int) const {
  return prepend_.empty() ? command : prepend_ + " " + command;
}

std::string SrunLauncher::wrap(const std::string& command, int tasks_per_node, int nodes_per_block) const {
  return fmt::format(
      "export CORES=$SLURM_CPUS_ON_NODE\n"
      "export NODES=$SLURM_JOB_NUM_NODES\n"
      "{}\n",
      with_overrides(fmt::format("srun --ntasks {} -l", copies_of(tasks_per_node, nodes_per_block)), overrides_,
                     "/bin/bash -c " + shell_quote(command)));
}

std::string SrunMPILauncher::wrap(const std::string& command, int tasks_per_node, int nodes_per_block) const {
  const std::string run = "/bin/bash -c " + shell_quote(command);
  // Each srun in the background; the block fails if any of them fails.
  return fmt::format(
      "export CORES=$SLURM_CPUS_ON_NODE\n"
      "export NODES=$SLURM_JOB_NUM_NODES\n"
      "TASKBLOCKS={}\n"
      "PIDS=\"\"\n"
      "if (( TASKBLOCKS > NODES )); then\n"
      "  CORES_PER_BLOCK=$(( NODES * CORES / TASKBLOCKS ))\n"
      "  for BLK in $(seq 1 1 $TASKBLOCKS); do\n"
      "    {} &\n"
      "    PIDS=\"$PIDS $!\"\n"
      "  done\n"
      "else\n"
      "  NODES_PER_BLOCK=$(( NODES / TASKBLOCKS ))\n"
      "  for BLK in $(seq 1 1 $TASKBLOCKS); do\n"
      "    {} &\n"
      "    PIDS=\"$PIDS $!\"\n"
      "  done\n"
      "fi\n"
      "FAILED=0\n"
      "for PID in $PIDS; do wait $PID || FAILED=1; done\n"
      "exit $FAILED\n",
      copies_of(tasks_per_node, nodes_per_block),
      with_overrides("srun --ntasks $CORES_PER_BLOCK -l", overrides_, run),
      with_overrides("srun --exclusive --nodes $NODES_PER_BLOCK -l", overrides_, run));
}

std::string AprunLauncher::wrap(const std::string& command, int tasks_per_node, int nodes_per_block) const {
  return with_overrides(fmt::format("aprun -n {} -N {}", copies_of(tasks_per_node, nodes_per_block),
                                    std::max(1, tasks_per_node)),
                        overrides_, "/bin/bash -c " + shell_quote(command)) +
         "\n";
}

std::string JsrunLauncher::wrap(const std::string& command, int tasks_per_node, int nodes_per_block) const {
  return with_overrides(fmt::format("jsrun -n {} -r {}", copies_of(tasks_per_node, nodes_per_block),
                                    std::max(1, tasks_per_node)),
                        overrides_, "/bin/bash -c " + shell_quote(command)) +
         "\n";
}

// The block's node list without duplicates, or `fallback` outside PBS; in "$PERVADE_BASE.nodes".
static std::string node_file_lines(std::string_view fallback) {
  return fmt::format(
      "PERVADE_BASE=\"${{PERVADE_SCRIPT_DIR:-$PWD}}/cmd_${{JOBNAME:-pervade}}.$$\"\n"
      "if [ -n \"$PBS_NODEFILE\" ]; then\n"
      "  sort -u \"$PBS_NODEFILE\" > \"$PERVADE_BASE.nodes\"\n"
      "else\n"
      "  echo '{}' > \"$PERVADE_BASE.nodes\"\n"
      "fi\n",
      fallback);
}

std::string MpiExecLauncher::wrap(const std::string& command, int tasks_per_node, int nodes_per_block) const {
  return "export CORES=$(getconf _NPROCESSORS_ONLN)\n" + node_file_lines("localhost") +
         with_overrides(bind_cmd_.empty() ? "mpiexec" : "mpiexec " + bind_cmd_ + " none", overrides_,
                        fmt::format("-n {} --hostfile \"$PERVADE_BASE.nodes\" /bin/bash -c {}",
                                    copies_of(tasks_per_node, nodes_per_block), shell_quote(command))) +
         "\n";
}

std::string MpiRunLauncher::wrap(const std::string& command, int tasks_per_node, int nodes_per_block) const {
  return "export CORES=$(getconf _NPROCESSORS_ONLN)\n" +
         with_overrides(fmt::format("mpirun -np {}", copies_of(tasks_per_node, nodes_per_block)), overrides_,
                        shell_quote(bash_location_) + " -c " + shell_quote(command)) +
         "\n";
}

std::string GnuParallelLauncher::wrap(const std::string& command, int tasks_per_node, int nodes_per_block) const {
  // The command file runs under bash with the copy number as $1; parallel reads one line per
  // copy. ":" in an sshlogin file is GNU parallel's name for this machine without ssh.
  // `--env _` (copy the environment to the remote nodes) fails unless `parallel --record-env`
  // was run once, so it is passed only when its file exists.
  return fmt::format(
      "export CORES=$(getconf _NPROCESSORS_ONLN)\n"
      "{}"
      "printf '%s\\n' {} > \"$PERVADE_BASE.sh\"\n"
      "for COUNT in $(seq 1 1 {}); do echo \"/bin/bash $PERVADE_BASE.sh $COUNT\"; done > \"$PERVADE_BASE.parallel\"\n"
      "PERVADE_ENV=\"\"\n"
      "[ -f \"$HOME/.parallel/ignored_vars\" ] && PERVADE_ENV=\"--env _\"\n"
      "parallel $PERVADE_ENV --joblog \"$PERVADE_BASE.joblog\" --sshloginfile \"$PERVADE_BASE.nodes\" --jobs {} "
      "< \"$PERVADE_BASE.parallel\"\n",
      node_file_lines(":"), shell_quote(command), copies_of(tasks_per_node, nodes_per_block),
      std::max(1, tasks_per_node));
}

}  // namespace pervade
