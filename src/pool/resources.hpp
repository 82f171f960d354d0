#pragma once
// How many workers pervade-pool starts on its node and which CPUs each one gets: Parsl's
// HighThroughputExecutor options (max_workers_per_node, cores_per_worker, mem_per_worker,
// available_accelerators, cpu_affinity) applied to what the node has. Pure functions, except
// read_node_resources(); called by the pool's main thread at setup and by the tests.
#include <cstddef>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace pervade::pool {

enum class AffinityMode { kNone, kBlock, kBlockReverse, kAlternating, kList };

// A parsed --cpu-affinity value.
struct CpuAffinity {
  AffinityMode mode = AffinityMode::kNone;
  std::vector<std::vector<int>> lists;  // kList: the CPUs of worker 0, 1, ...
};

// Parses "none", "block", "block-reverse", "alternating" (case-insensitive, as Parsl) or
// "list:<cpus>:<cpus>..." where <cpus> is a comma-separated list of CPU numbers and ranges
// N-M, one per worker (e.g. "list:0,1:2-3"). Returns std::nullopt and a reason in *error for
// anything else.
std::optional<CpuAffinity> parse_cpu_affinity(std::string_view spec, std::string* error);

// What the node offers.
struct NodeResources {
  std::vector<int> cpus;                   // CPUs the pool may use (sched_getaffinity), ascending
  int cpu_count = 0;                       // for the worker count: cpus.size(), or PARSL_CORES
  std::optional<double> mem_available_gb;  // MemAvailable in GiB, or PARSL_MEMORY_GB; unknown: nullopt
};

// Reads the node: sched_getaffinity, /proc/meminfo MemAvailable (rounded to 0.1 GiB, as
// Parsl), and Parsl's overrides PARSL_CORES (CPU count for the worker count only) and
// PARSL_MEMORY_GB. Returns std::nullopt and a reason in *error if an override is malformed.
std::optional<NodeResources> read_node_resources(std::string* error);

// What the command line asks for.
struct WorkerRequest {
  int workers = 0;              // > 0: exactly this many (--workers), still at most one per accelerator
  int max_workers = 0;          // > 0: upper bound (--max-workers)
  double cores_per_worker = 1;  // > 0 (--cores-per-worker)
  double mem_per_worker = 0;    // GiB; 0: memory is not considered (--mem-per-worker)
  std::size_t accelerators = 0; // number of --available-accelerators
};

struct WorkerPlan {
  int count = 0;                       // >= 1 when error is empty
  std::string reason;                  // how the count was decided, for the log
  std::vector<std::vector<int>> cpus;  // per worker, when pinned (mode != none); else empty
  std::vector<std::string> warnings;   // e.g. CPUs shared because there are more workers than CPUs
  std::string error;                   // non-empty: the request cannot be met on this node
};

// Worker count = --workers if given, else min(max_workers, floor(cpu_count / cores_per_worker),
// floor(mem_available / mem_per_worker) when given, accelerators when given), at least 1.
// CPUs (n usable CPUs in ascending order, W workers, per = max(1, n / W) as in Parsl):
//   block          worker i gets CPUs [i*per, (i+1)*per)
//   block-reverse  worker i gets block W-1-i
//   alternating    worker i gets CPUs i, i+W, i+2W, ...
//   list           worker i gets list i (error if there are fewer lists than workers, or a
//                  listed CPU is not usable by the pool)
// With more workers than CPUs, positions wrap around (CPUs are shared; a warning says so).
WorkerPlan plan_workers(const WorkerRequest& request, const CpuAffinity& affinity, const NodeResources& node);

// "0-3,8,10-11" for {0,1,2,3,8,10,11} (the kernel's Cpus_allowed_list format).
std::string format_cpu_list(const std::vector<int>& cpus);

}  // namespace pervade::pool
