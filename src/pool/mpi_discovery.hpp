#pragma once
// MPI mode (docs/mpi.md): which nodes the pool's block has, found once at the pool's start from
// an explicit host list, Slurm (SLURM_NODELIST expanded by `scontrol show hostnames`,
// SLURM_JOB_CPUS_PER_NODE) or PBS (PBS_NODEFILE). Pool's main thread, at setup.
#include <optional>
#include <string>
#include <vector>

#include "pool/mpi_nodes.hpp"

namespace pervade::pool {

// "node1,node2:8,node3": names, each optionally with its core count (all or none must have one).
std::optional<std::vector<MpiNode>> parse_mpi_hosts(const std::string& list, std::string* error);

// Slurm's SLURM_JOB_CPUS_PER_NODE ("2(x3),4" -> 2,2,2,4); empty when malformed.
std::vector<int> parse_slurm_cpus_per_node(const std::string& text);

// A PBS node file's lines: each host once, in order of first appearance, with as many cores as
// it has lines when some host appears more than once (else cores stay 0: not said).
std::vector<MpiNode> parse_pbs_nodefile(const std::string& text);

// The block's nodes. `hosts`: --mpi-hosts (empty: ask the scheduler); `own_cores`: this node's
// CPUs, the guess for nodes whose cores nobody says. *how says where they came from (for the
// log). Nullopt, with *error, when nothing names the nodes or a command fails.
std::optional<MpiBlock> discover_mpi_block(const std::string& launcher, const std::string& hosts, int own_cores,
                                           std::string* how, std::string* error);

}  // namespace pervade::pool
