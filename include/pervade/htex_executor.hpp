#pragma once
// The HighThroughputExecutor's driver side: an interchange thread with a ROUTER socket that
// pools (pervade-pool) connect to, and an encoder thread that turns launches into wire tasks.
// Pools are started by the executor's provider (HtexOptions::provider, the C++ API) or by
// someone else (the Python front end's LocalProvider). submit/cancel from the kernel's
// reactor; the query methods and scale_out from any thread.
//
//   pervade::HtexOptions o;
//   o.provider = std::make_shared<pervade::LocalProvider>();  // one block of pervade-pool
//   o.workers_per_node = 4;
//   pervade::DataFlowKernel dfk(pervade::Config{.executors = {std::make_shared<pervade::HighThroughputExecutor>(o)}});
//   dfk.submit(pervade::Shell{"hostname > host.txt"}).get();   // runs on the pool
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "pervade/executor.hpp"
#include "pervade/provider.hpp"
#include "pervade/remote.hpp"

namespace pervade {

// A block started by the executor's provider.
struct BlockStatus {
  std::string block_id;
  std::string job_id;  // the provider's
  JobStatus status;
};

struct HtexOptions {
  std::string label = "htex";
  std::string address = "127.0.0.1";  // interface the interchange binds ("*" for all)
  int worker_port = 0;                // 0: first free port in the range
  int port_min = 54000;
  int port_max = 55000;
  double heartbeat_period = 30;
  double heartbeat_threshold = 120;
  std::string python_version;  // the driver's; pools running Python must match major.minor
  std::string curve_public_key;  // Z85; both set: CurveZMQ encryption, pools need the public key
  std::string curve_secret_key;

  // Blocks. With a provider the executor starts init_blocks blocks of pervade-pool once the
  // interchange listens and cancels them at shutdown (after telling the pools to stop); pools
  // started this way run shell commands only (--no-python: pervade::Shell tasks of the C++
  // API). Without a provider someone else starts the pools (the Python front end does).
  std::shared_ptr<Provider> provider;
  int init_blocks = -1;        // -1: the provider's init_blocks
  // Scaling (with a provider; docs/scaling.md). Every strategy_period seconds a strategy thread
  // asks the provider for the state of the blocks and the interchange for their pools, and
  // "none" does nothing more, "simple" and "htex_auto_scale" start blocks while tasks outnumber
  // the slots (parallelism) and scale idle blocks in (drained, then cancelled) after
  // max_idletime. min_blocks, max_blocks, parallelism and nodes_per_block are the provider's.
  std::string strategy = "simple";
  double strategy_period = 5;  // seconds
  double max_idletime = 120;   // seconds
  // Blocks in a row that end before any of their pools connected: that many fail the executor
  // (ExecutorFailed on every outstanding and later task, with the provider's message and the
  // tail of the block's log). 0: never give up. With "none", the executor also fails once
  // every block has ended, as nothing would replace them.
  int max_failed_blocks = 3;
  // Parsl's block_error_handler: when set, the failure rule is this function's instead of
  // max_failed_blocks. The strategy thread calls it every round with every block's state (after
  // polling the provider); it may call fail(). Parsl's handlers are Python (pervade.jobs.error_handlers).
  std::function<void(const std::vector<BlockStatus>&)> block_error_handler;
  // The workers the strategy counts per node before any pool has registered, when
  // workers_per_node is 0 (each pool picks its own count; the Python front end passes its
  // estimate). 0: the driver machine's CPU count. Once pools register, their count is used.
  int expected_workers_per_node = 0;
  int workers_per_node = 0;    // pervade-pool --workers; 0: one per usable CPU of the node
  int prefetch_capacity = 0;   // tasks a pool holds beyond its workers
  // Pools of C++ API programs run shell commands only (--no-python). The Python front end sets
  // python_workers and passes its worker options (--python, --max-workers, ...) in pool_args,
  // which are appended to the pool command as they are.
  bool python_workers = false;
  std::vector<std::string> pool_args;
  std::string pool_binary;     // empty: $PERVADE_POOL_BINARY, else <install prefix>/bin/pervade-pool
  // With a provider and no curve keys given: a CurveZMQ key pair per run, the public key in
  // <run_dir>/<label>/server-<port>.key for the pools. (Without a provider only given keys count.)
  bool encrypted = true;
  std::string run_dir = "runinfo";  // <run_dir>/<label>/: block logs (block-<id>.log), key file
  // Extra tasks per worker a pool may hold while its tasks run under 10 ms, as it reports (see
  // interchange::DispatcherConfig); 0: exactly workers + prefetch_capacity, as in Parsl.
  int short_task_prefetch = 16;
  // Followers: a task whose last unfinished dependency runs on this executor is sent ahead to
  // that dependency's pool, which starts it the moment the dependency's result is there
  // (usually on the same worker, with the value still in memory). A chain of tasks then runs
  // back to back instead of with a round trip through the driver per task. False: every task
  // waits in the driver until its dependencies are done (as Parsl does).
  bool follow_dependencies = true;
  // Pools started on this host (same kernel and network namespace) connect through a Unix
  // socket in a 0700 directory under <run_dir>/<label> instead of TCP (no CurveZMQ needed:
  // only this user can open it); pools elsewhere, or that cannot use it, use TCP as before.
  bool same_host_ipc = true;
  // MPI mode (docs/mpi.md): "mpiexec", "srun" or "aprun"; empty: off. Pools get --mpi-launcher,
  // find their block's nodes and give each MPI task nodes of its own; every task must then have
  // a parsl_resource_specification, as in Parsl. Off: tasks with MPI keys are refused.
  std::string mpi_launcher;
};

struct PoolStatus {
  std::string pool_id;
  std::string block_id;
  std::string hostname;
  int worker_count = 0;
  int prefetch = 0;
  std::size_t in_flight = 0;
  double idle_seconds = 0;
  bool held = false;
  bool draining = false;
  std::string python_version;   // of the pool's workers ("3.11.7"; "" when it runs none)
  std::string pervade_version;  // of the pool
};

class HighThroughputExecutor : public Executor {
 public:
  explicit HighThroughputExecutor(HtexOptions options);
  ~HighThroughputExecutor() override;

  void start(CompletionSink& sink) override;
  void submit(std::span<Launch> launches) override;
  void cancel(const TaskRecordPtr& task, std::uint32_t try_id, StopReason reason) override;
  void shutdown() override;
  bool accepts_followers() const override;
  // Only the pool knows when a try starts: it times shell commands itself (run_shell), and the
  // Python worker times a function called with walltime= (as Parsl's timeout wrapper does).
  WalltimeClock walltime_clock() const override { return WalltimeClock::where_it_runs; }

  // Valid after start().
  std::string url() const;
  int port() const;
  std::vector<PoolStatus> pools() const;
  std::size_t outstanding() const;
  bool hold(const std::string& pool_id, bool held);
  bool drain(const std::string& pool_id);
  // Why pools were refused (version or protocol mismatch), most recent last.
  std::vector<std::string> refusals() const;

  // Blocks (only with HtexOptions::provider; valid after start()):
  // the command a block runs on each node, e.g. "/usr/local/bin/pervade-pool --address 127.0.0.1:54000 ...".
  std::string pool_command(const std::string& block_id) const;
  // Every block started so far with its provider job and state (asks the provider).
  std::vector<BlockStatus> blocks() const;
  // The same with the states the strategy last saw (no provider call): Parsl's status_facade.
  std::vector<BlockStatus> known_blocks() const;
  // Blocks from which a pool has registered at some point, in no particular order.
  std::vector<std::string> connected_blocks() const;
  // Asks the provider for `count` more blocks; returns their block ids.
  std::vector<std::string> scale_out(int count);
  // Scales in up to `count` blocks now (Parsl's scale_in): with max_idletime only blocks without
  // tasks idle that long, else any, busy ones drained (they finish their tasks, then end).
  // Returns their block ids. Blocks the strategy then needs (min_blocks) are started again.
  std::vector<std::string> scale_in(int count, std::optional<double> max_idletime = std::nullopt);
  // The file the pools read the interchange's public key from ("" if unencrypted).
  std::string server_key_file() const;
  // Why the executor failed (see max_failed_blocks); "" while it works.
  std::string failure() const;
  // Fails the executor for `reason` (Parsl's set_bad_state_and_fail_all): every outstanding and
  // later task fails with ExecutorFailed, and the blocks are cancelled (this waits for them).
  // Only the first reason counts.
  void fail(const std::string& reason);

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace pervade
