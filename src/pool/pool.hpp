#pragma once
// pervade-pool: the per-node process of the HighThroughputExecutor (docs/protocol.md).
//
// It connects a ZeroMQ DEALER to the interchange, registers, starts Python workers
// (`python -m pervade.worker`, one socketpair each), hands them Python tasks one at a time,
// runs shell tasks itself on a thread pool, batches results back, keeps the link alive with
// heartbeats, and replaces workers that die. See pool.cpp for the design notes.
#include <sys/types.h>

#include <optional>
#include <string>
#include <vector>

#include "pool/output_cap.hpp"
#include "pool/resources.hpp"

namespace pervade::pool {

class RemoteWorkers;  // exex_remote.hpp

// Exit statuses of pervade-pool.
enum ExitStatus : int {
  kExitOk = 0,              // DRAIN finished, SHUTDOWN, or the interchange went silent
  kExitError = 1,           // an unexpected internal error (logged)
  kExitUsage = 2,           // bad command line
  kExitRefused = 3,         // the interchange answered REFUSED (the reason is logged)
  kExitNoAnswer = 4,        // no answer to REGISTER within the heartbeat threshold
  kExitBrokenWorkers = 5,   // workers keep dying before READY (broken Python environment); once registered, FAILED is sent first
  kExitSignalBase = 128,    // killed by SIGTERM/SIGINT/SIGHUP: 128 + signal number, after cleanup
};

struct PoolOptions {
  std::string address;   // HOST:PORT, [IPv6]:PORT, optionally with a tcp:// prefix
  std::string pool_id;   // default: hostname-pid
  std::string block_id = "0";
  int workers = 0;       // > 0: exactly this many workers (--workers); 0: decided from the node (resources.hpp)
  int max_workers = 0;   // > 0: at most this many workers
  double cores_per_worker = 1;
  double mem_per_worker = 0;  // GiB per worker; 0: memory does not limit the worker count
  int prefetch = 0;
  std::string python = "python3";
  bool no_python = false;
  std::optional<std::string> python_version;  // what to register; default: ask the interpreter
  double heartbeat_period = 30;
  double heartbeat_threshold = 120;
  std::string curve_server_key_file;
  std::string curve_client_keys_file;
  // The interchange's same-host socket (ipc://PATH), used instead of --address (and CurveZMQ)
  // when this pool's same-host id equals host_id and the socket accepts a connection.
  std::string ipc_url;
  std::string host_id;
  std::string log_file;  // empty: stderr
  // --log-dir: the block's log directory; the pool's lines and each worker's records are also
  // written to <log_dir>/<pool id>/pool.log and worker_<rank>.log (as Parsl's block-N/<manager>/)
  std::string log_dir;
  int log_level = 20;  // --log-level: Python's numbers (10 debug, 20 info, 30 warning, 40 error)
  std::uint64_t log_limit = kDefaultLogLimit;  // bytes of stdout/stderr per file; 0: no cap (output_cap.hpp)
  std::string cpu_affinity = "none";  // as given on the command line
  CpuAffinity affinity;               // parsed
  std::vector<std::string> accelerators;
  // MPI mode (docs/mpi.md): "mpiexec", "srun" or "aprun" (empty: off), and --mpi-hosts (empty:
  // the block's nodes come from Slurm or PBS).
  std::string mpi_launcher;
  std::string mpi_hosts;
  // Walltime-aware blocks (docs/htex.md): the block's job ends `walltime` seconds after the pool
  // starts (0: no end known). `walltime_grace` seconds before that the pool SIGTERMs its running
  // tasks, starts no task whose running_time would end later, and the interchange drains it.
  double walltime = 0;
  double walltime_grace = 30;
  // Parsl's drain_period: `drain_period` seconds after the pool starts (0: never) the interchange
  // drains it: no new task; the pool exits once its tasks have finished. Nothing is SIGTERMed.
  double drain_period = 0;
};

struct ParseResult {
  std::optional<PoolOptions> options;  // set when the command line is valid
  bool help = false;                   // --help was given
  std::string error;                   // why the command line is invalid
};

ParseResult parse_command_line(int argc, char** argv);
std::string usage_text();

// "host:port" -> "tcp://host:port". *ipv6 is set for bracketed IPv6 literals ("[::1]:5555").
// Returns std::nullopt (and a reason in *error) for a malformed address.
std::optional<std::string> zmq_endpoint(const std::string& address, bool* ipv6, std::string* error);

// Whether this process can use the interchange's same-host socket `ipc_url` (ipc://PATH)
// announced for host `host_id` (detail::same_host_id()); if not, *why says why. Never blocks:
// the socket is probed with one non-blocking connect, since ZeroMQ would retry an unusable
// path silently (a socket file seen through a shared filesystem from another host).
bool can_use_same_host_socket(const std::string& ipc_url, const std::string& host_id, std::string* why);

// Runs the pool until it exits; returns the process exit status (ExitStatus).
// Call from main() before any other thread exists (it blocks signals process-wide); with
// `remote` (pervade-exex-pool's rank 0), threads started earlier must block those signals too.
int run_pool(PoolOptions options, RemoteWorkers* remote = nullptr);

// "exited with status 1", "died with signal 9 (Killed)": a wait status, for logs and task errors.
std::string describe_wait_status(int status);
// The direct children of `pid` (its threads' /proc children lists).
std::vector<pid_t> children_of(pid_t pid);

}  // namespace pervade::pool
