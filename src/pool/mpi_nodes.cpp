#include "pool/mpi_nodes.hpp"

#include <algorithm>
#include <numeric>
#include <utility>

#include <fmt/format.h>

namespace pervade::pool {

namespace {

// " ".join of Parsl's composers: the options come last, so an empty one leaves a trailing blank.
std::string with_options(std::string head, const std::string& options) { return head + " " + options; }

}  // namespace

std::string mpiexec_prefix(int num_ranks, int ranks_per_node, const std::string& hosts, const std::string& options) {
  return with_options(fmt::format("mpiexec -n {} -ppn {} -hosts {}", num_ranks, ranks_per_node, hosts), options);
}

std::string srun_prefix(int num_ranks, int ranks_per_node, int num_nodes, const std::string& hosts,
                        const std::string& options) {
  return with_options(fmt::format("srun --ntasks {} --ntasks-per-node {} --nodelist {} --nodes {}", num_ranks,
                                  ranks_per_node, hosts, num_nodes),
                      options);
}

std::string aprun_prefix(int num_ranks, int ranks_per_node, const std::string& hosts, const std::string& options) {
  return with_options(fmt::format("aprun -n {} -N {} -node-list {}", num_ranks, ranks_per_node, hosts), options);
}

MpiNodes::MpiNodes(MpiBlock block) : block_(std::move(block)) {
  for (const MpiNode& n : block_.nodes) {
    free_.push_back(n.cores);
    most_cores_ = std::max(most_cores_, n.cores);
  }
}

int MpiNodes::cores_each(const MpiRequest& r, int node_cores) const {
  if (r.ranks_per_node == 0 || (!block_.cores_known && r.ranks_per_node > node_cores)) return node_cores;
  return r.ranks_per_node;
}

std::optional<MpiMisfit> MpiNodes::never_fits(const MpiRequest& r) const {
  const int nodes = static_cast<int>(block_.nodes.size());
  if (r.num_nodes > nodes)
    return MpiMisfit{"num_nodes", fmt::format("the task asks for {} nodes (num_nodes) but the block has {}", r.num_nodes,
                                              nodes)};
  if (block_.cores_known) {
    const int roomy = static_cast<int>(std::count_if(block_.nodes.begin(), block_.nodes.end(),
                                                     [&](const MpiNode& n) { return n.cores >= r.ranks_per_node; }));
    if (roomy < r.num_nodes)
      return MpiMisfit{"ranks_per_node",
                       fmt::format("the task asks for {} ranks per node (ranks_per_node) on {} nodes, but {} of the "
                                   "block's nodes have that many cores (the most: {})",
                                   r.ranks_per_node, r.num_nodes, roomy, most_cores_)};
  }
  return std::nullopt;
}

std::optional<MpiGrant> MpiNodes::take(const MpiRequest& r) {
  std::vector<int> fitting;
  for (int n = 0; n < static_cast<int>(free_.size()); ++n) {
    const int want = cores_each(r, block_.nodes[static_cast<std::size_t>(n)].cores);
    if (free_[static_cast<std::size_t>(n)] >= want) fitting.push_back(n);
  }
  if (static_cast<int>(fitting.size()) < r.num_nodes) return std::nullopt;
  // Fullest first (fewest free cores), then in the block's order.
  std::stable_sort(fitting.begin(), fitting.end(),
                   [&](int a, int b) { return free_[static_cast<std::size_t>(a)] < free_[static_cast<std::size_t>(b)]; });
  fitting.resize(static_cast<std::size_t>(r.num_nodes));
  std::sort(fitting.begin(), fitting.end());  // the node list in the block's order
  MpiGrant g{std::move(fitting), 0};
  // Whole nodes (of possibly different sizes) are granted whole; cores is what each rank count says.
  for (int n : g.nodes) {
    const int take = cores_each(r, block_.nodes[static_cast<std::size_t>(n)].cores);
    free_[static_cast<std::size_t>(n)] -= take;
    g.cores = std::max(g.cores, take);
  }
  return g;
}

void MpiNodes::give_back(const MpiGrant& g) {
  // cores_each() gave every node of a whole-node grant its own size: give each back the same way.
  for (int n : g.nodes) {
    const auto i = static_cast<std::size_t>(n);
    free_[i] = std::min(block_.nodes[i].cores, free_[i] + std::min(g.cores, block_.nodes[i].cores));
  }
}

std::vector<std::pair<std::string, std::string>> MpiNodes::environment(const MpiRequest& r, const MpiGrant& g) const {
  std::string hosts;
  for (int n : g.nodes) {
    if (!hosts.empty()) hosts += ',';
    hosts += block_.nodes[static_cast<std::size_t>(n)].name;
  }
  // A task that named no ranks per node gets one rank per core of its (whole) nodes.
  const int per_node = r.ranks_per_node > 0 ? r.ranks_per_node : g.cores;
  const int ranks = r.ranks_per_node > 0 ? r.num_ranks : per_node * r.num_nodes;
  std::vector<std::pair<std::string, std::string>> env{
      {"PARSL_NUM_NODES", std::to_string(r.num_nodes)},
      {"PARSL_RANKS_PER_NODE", std::to_string(per_node)},
      {"PARSL_NUM_RANKS", std::to_string(ranks)},
      {"PARSL_MPI_NODELIST", hosts},
      {"PARSL_MPIEXEC_PREFIX", mpiexec_prefix(ranks, per_node, hosts, r.launcher_options)},
      {"PARSL_SRUN_PREFIX", srun_prefix(ranks, per_node, r.num_nodes, hosts, r.launcher_options)},
      {"PARSL_APRUN_PREFIX", aprun_prefix(ranks, per_node, hosts, r.launcher_options)},
  };
  if (!r.launcher_options.empty()) env.emplace_back("PARSL_LAUNCHER_OPTIONS", r.launcher_options);
  const std::string& chosen = block_.launcher == "srun"    ? env[5].second
                              : block_.launcher == "aprun" ? env[6].second
                                                           : env[4].second;
  env.emplace_back("PARSL_MPI_PREFIX", chosen);
  return env;
}

}  // namespace pervade::pool
