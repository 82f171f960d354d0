#pragma once
// What one node has free for tasks that ask for resources (parsl_resource_specification's
// `cores`, `memory` in MB, `gpus`): a task is admitted only when its node can give all three
// at once, and it gets CPUs and accelerator ids of its own. I/O-free. Single-threaded: only
// PoolCore (the pool's main thread, or a test) calls it.
#include <cstdint>
#include <string>
#include <vector>

#include "protocol/messages.hpp"

namespace pervade::pool {

// A task's request, as the wire carries it; all zero: an ordinary task, which takes only a worker.
using ResourceRequest = protocol::Resources;

struct NodeCapacity {
  std::vector<int> cpus;                  // CPU numbers tasks may use
  std::uint64_t memory_mb = 0;            // memory tasks may use
  std::vector<std::string> accelerators;  // ids, as CUDA_VISIBLE_DEVICES names them
};

// What a task holds while it runs; given back when it ends.
struct Grant {
  std::vector<int> cpus;
  std::uint64_t memory_mb = 0;
  std::vector<std::string> accelerators;
};

// "4 cores, 2000 MB, 1 GPU": a request (or a node's capacity) in error messages.
std::string describe(const ResourceRequest& r);

class NodeLedger {
 public:
  explicit NodeLedger(NodeCapacity capacity);

  // Whether the request fits this node when nothing else runs on it.
  bool could_hold(const ResourceRequest& r) const {
    return r.cores <= total_.cores && r.memory_mb <= total_.memory_mb && r.gpus <= total_.gpus;
  }
  bool fits_now(const ResourceRequest& r) const {
    return r.cores <= static_cast<int>(free_cpus_.size()) && r.memory_mb <= free_memory_mb_ &&
           r.gpus <= static_cast<int>(free_accelerators_.size());
  }
  // The lowest-numbered free CPUs and the first free accelerators. fits_now(r) must hold.
  Grant take(const ResourceRequest& r);
  void give_back(Grant&& g);

  const ResourceRequest& total() const { return total_; }
  int free_cores() const { return static_cast<int>(free_cpus_.size()); }

 private:
  ResourceRequest total_;
  std::vector<int> cpu_order_;          // the node's CPUs, ascending
  std::vector<int> free_cpus_;          // ascending
  std::uint64_t free_memory_mb_ = 0;
  std::vector<std::string> accelerator_order_;
  std::vector<std::string> free_accelerators_;  // in the node's order
};

}  // namespace pervade::pool
