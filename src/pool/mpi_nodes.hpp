#pragma once
// MPI mode (docs/mpi.md): the nodes of the pool's block, which MPI task holds how many cores of
// each, and the environment an MPI task runs with (Parsl's PARSL_* variables and launch
// prefixes). I/O-free. Single-threaded: only PoolCore (the pool's main thread, or a test) calls it.
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "protocol/messages.hpp"

namespace pervade::pool {

using MpiRequest = protocol::MpiRequest;

struct MpiNode {
  std::string name;  // as the launcher names it (srun --nodelist, mpiexec -hosts)
  int cores = 1;
};

struct MpiBlock {
  std::string launcher = "mpiexec";  // "mpiexec", "srun" or "aprun": which prefix PARSL_MPI_PREFIX is
  std::vector<MpiNode> nodes;
  // The scheduler (or the host list) said how many cores each node has. Otherwise they are the
  // pool's own node's, a guess: a task asking for more ranks per node then gets whole nodes
  // (oversubscribed, as in Parsl) instead of being refused.
  bool cores_known = false;
};

// What an MPI task holds while it runs: `cores` on each of `nodes` (indices into the block).
struct MpiGrant {
  std::vector<int> nodes;
  int cores = 0;
};

// Why a request can never run on the block: the key to blame and the text.
struct MpiMisfit {
  std::string key;
  std::string why;
};

class MpiNodes {
 public:
  explicit MpiNodes(MpiBlock block);

  // Set when the request cannot run on this block even with every node free.
  std::optional<MpiMisfit> never_fits(const MpiRequest& r) const;
  // Nodes for the request now, if enough have the cores free: the fullest nodes that still fit
  // come first, so that whole nodes stay free for tasks that need them.
  std::optional<MpiGrant> take(const MpiRequest& r);
  void give_back(const MpiGrant& g);

  // PARSL_NUM_NODES, PARSL_RANKS_PER_NODE, PARSL_NUM_RANKS, PARSL_LAUNCHER_OPTIONS (when given),
  // PARSL_MPI_NODELIST, the three launchers' prefixes and PARSL_MPI_PREFIX, for a task granted g.
  std::vector<std::pair<std::string, std::string>> environment(const MpiRequest& r, const MpiGrant& g) const;

  const MpiBlock& block() const { return block_; }
  int free_cores(int node) const { return free_[static_cast<std::size_t>(node)]; }

 private:
  // Cores the request takes on each of its nodes: ranks_per_node, or the whole node when it did
  // not say (or says more than a node has, when that number is a guess).
  int cores_each(const MpiRequest& r, int node_cores) const;

  MpiBlock block_;
  std::vector<int> free_;  // free cores per node
  int most_cores_ = 0;
};

// Parsl's launch prefixes (mpi_prefix_composer.py's formats, launcher_options last).
std::string mpiexec_prefix(int num_ranks, int ranks_per_node, const std::string& hosts, const std::string& options);
std::string srun_prefix(int num_ranks, int ranks_per_node, int num_nodes, const std::string& hosts,
                        const std::string& options);
std::string aprun_prefix(int num_ranks, int ranks_per_node, const std::string& hosts, const std::string& options);

}  // namespace pervade::pool
