#pragma once
// Launchers wrap the command a block runs so that it starts on each node / as many times as
// asked (Parsl's parsl/launchers, same names and parameters). Stateless and immutable: any
// thread.
//
//   pervade::SrunLauncher srun("--cpu-bind=none");
//   std::string script = srun.wrap("pervade-pool --address ...", 1, 4);
//   // ... srun --ntasks 4 -l --cpu-bind=none /bin/bash -c 'pervade-pool --address ...'
//
// The wrapped text is shell script run by bash inside the block's job script. Launchers that
// need a file on a shared file system (GnuParallelLauncher) write it to $PERVADE_SCRIPT_DIR
// (the provider's script_dir, exported by the batch providers' job scripts), else to $PWD.
// Copies of the command started by a launcher get their copy number as $1 where the launcher
// starts them itself (SingleNodeLauncher, GnuParallelLauncher).
#include <string>
#include <string_view>
#include <utility>

namespace pervade {

class Launcher {
 public:
  virtual ~Launcher() = default;
  virtual std::string wrap(const std::string& command, int tasks_per_node, int nodes_per_block) const = 0;
  virtual std::string_view name() const = 0;
};

// Runs the command once per block, unchanged (the command starts its own processes).
class SimpleLauncher final : public Launcher {
 public:
  std::string wrap(const std::string& command, int tasks_per_node, int nodes_per_block) const override;
  std::string_view name() const override { return "SimpleLauncher"; }
};

// Runs tasks_per_node * nodes_per_block copies of the command in parallel on the one node the
// script runs on (as Parsl's SingleNodeLauncher; $CORES is the node's CPU count) and waits for
// all. The exit status is 0 unless every copy failed, or, with fail_on_any, unless any failed.
// A single copy runs unwrapped, so the block's exit status is the command's own.
class SingleNodeLauncher final : public Launcher {
 public:
  explicit SingleNodeLauncher(bool fail_on_any = false) : fail_on_any_(fail_on_any) {}
  std::string wrap(const std::string& command, int tasks_per_node, int nodes_per_block) const override;
  std::string_view name() const override { return "SingleNodeLauncher"; }
  bool fail_on_any() const { return fail_on_any_; }

 private:
  bool fail_on_any_;
};

// Puts `prepend` in front of the command (e.g. "time", "docker run --rm image"); runs it once.
class WrappedLauncher final : public Launcher {
 public:
  explicit WrappedLauncher(std::string prepend) : prepend_(std::move(prepend)) {}
  std::string wrap(const std::string& command, int tasks_per_node, int nodes_per_block) const override;
  std::string_view name() const override { return "WrappedLauncher"; }
  const std::string& prepend() const { return prepend_; }

 private:
  std::string prepend_;
};

// The launchers below start tasks_per_node * nodes_per_block copies through a parallel
// launcher; `overrides` is inserted verbatim into its command line.
class OverridesLauncher : public Launcher {
 public:
  const std::string& overrides() const { return overrides_; }

 protected:
  explicit OverridesLauncher(std::string overrides) : overrides_(std::move(overrides)) {}
  std::string overrides_;
};

// Slurm: srun --ntasks <copies> -l <overrides> inside the allocation; $CORES and $NODES come
// from SLURM_CPUS_ON_NODE and SLURM_JOB_NUM_NODES.
class SrunLauncher final : public OverridesLauncher {
 public:
  explicit SrunLauncher(std::string overrides = "") : OverridesLauncher(std::move(overrides)) {}
  std::string wrap(const std::string& command, int tasks_per_node, int nodes_per_block) const override;
  std::string_view name() const override { return "SrunLauncher"; }
};

// Slurm, for blocks that run several MPI applications at once: one srun per copy, each given
// an equal share of the allocation (whole nodes with --exclusive when there are at least as
// many nodes as copies, else NODES*CORES/copies tasks). Fails if any copy fails.
class SrunMPILauncher final : public OverridesLauncher {
 public:
  explicit SrunMPILauncher(std::string overrides = "") : OverridesLauncher(std::move(overrides)) {}
  std::string wrap(const std::string& command, int tasks_per_node, int nodes_per_block) const override;
  std::string_view name() const override { return "SrunMPILauncher"; }
};

// Cray ALPS: aprun -n <copies> -N <tasks_per_node> <overrides>.
class AprunLauncher final : public OverridesLauncher {
 public:
  explicit AprunLauncher(std::string overrides = "") : OverridesLauncher(std::move(overrides)) {}
  std::string wrap(const std::string& command, int tasks_per_node, int nodes_per_block) const override;
  std::string_view name() const override { return "AprunLauncher"; }
};

// IBM LSF/CSM: jsrun -n <copies> -r <tasks_per_node> <overrides>.
class JsrunLauncher final : public OverridesLauncher {
 public:
  explicit JsrunLauncher(std::string overrides = "") : OverridesLauncher(std::move(overrides)) {}
  std::string wrap(const std::string& command, int tasks_per_node, int nodes_per_block) const override;
  std::string_view name() const override { return "JsrunLauncher"; }
};

// MPI (MPICH/Hydra style): mpiexec <bind_cmd> none <overrides> -n <copies> --hostfile <file>,
// the host file being $PBS_NODEFILE without duplicates, or "localhost" outside PBS.
class MpiExecLauncher final : public OverridesLauncher {
 public:
  explicit MpiExecLauncher(std::string bind_cmd = "--bind-to", std::string overrides = "")
      : OverridesLauncher(std::move(overrides)), bind_cmd_(std::move(bind_cmd)) {}
  std::string wrap(const std::string& command, int tasks_per_node, int nodes_per_block) const override;
  std::string_view name() const override { return "MpiExecLauncher"; }
  const std::string& bind_cmd() const { return bind_cmd_; }

 private:
  std::string bind_cmd_;
};

// MPI (Open MPI style): mpirun -np <copies> <overrides> <bash_location> -c <command>.
class MpiRunLauncher final : public OverridesLauncher {
 public:
  explicit MpiRunLauncher(std::string bash_location = "/bin/bash", std::string overrides = "")
      : OverridesLauncher(std::move(overrides)), bash_location_(std::move(bash_location)) {}
  std::string wrap(const std::string& command, int tasks_per_node, int nodes_per_block) const override;
  std::string_view name() const override { return "MpiRunLauncher"; }
  const std::string& bash_location() const { return bash_location_; }

 private:
  std::string bash_location_;
};

// GNU parallel over ssh: the command goes to a file on the shared file system, and
// `parallel --env _ --sshloginfile <nodes> --jobs <tasks_per_node>` runs <copies> of it, the
// nodes being $PBS_NODEFILE without duplicates, or ":" (this machine, no ssh) outside PBS.
// Needs GNU parallel on PATH and passwordless ssh between the nodes.
class GnuParallelLauncher final : public Launcher {
 public:
  std::string wrap(const std::string& command, int tasks_per_node, int nodes_per_block) const override;
  std::string_view name() const override { return "GnuParallelLauncher"; }
};

namespace detail {
// `s` in single quotes for a POSIX shell: one word, nothing expanded.
std::string shell_quote(std::string_view s);
}  // namespace detail

}  // namespace pervade
