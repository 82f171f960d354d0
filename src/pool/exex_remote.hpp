#pragma once
// The worker slots an extreme-scale pool (pervade-exex-pool, docs/mpi.md "One pool per block")
// has on the other nodes of its block: rank 0's pool (pool.cpp) runs them as it runs its own
// workers, except that each process lives on another MPI rank. The pool reads and writes each
// remote worker's byte stream through a local socket, as if the worker were its child; starting,
// signalling and reaping go through this interface. pervade-pool itself never has one, so it
// does not depend on MPI.
// Called by the pool's main thread only (implementations do their MPI work on a thread of their own).
#include <csignal>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "util/fd.hpp"

namespace pervade::pool {

// One other rank of the block: its host and what its node offers.
struct RemoteNode {
  int rank = 0;
  std::string host;
  int workers = 0;     // worker slots it runs (planned there from the same options as the pool's own)
  int cpus = 0;        // CPUs its tasks may use
  std::uint64_t memory_mb = 0;
};

class RemoteWorkers {
 public:
  virtual ~RemoteWorkers() = default;
  // The other ranks, in rank order. Their slots follow the pool's own: slot 0 is the first
  // worker of the first remote rank.
  virtual const std::vector<RemoteNode>& nodes() const = 0;
  // Where each slot runs, for logs ("rank 2 on node3").
  virtual std::string where(int slot) const = 0;
  // Set once, before any start(): written (eventfd) whenever a remote worker's process ended.
  virtual void set_wake_fd(int fd) = 0;
  // Starts worker `slot` on its rank with this command line and environment. Returns the pool's
  // end of its byte stream (a non-blocking stream socket); invalid, with *error, if it cannot.
  virtual detail::Fd start(int slot, std::vector<std::string> argv, std::vector<std::string> env,
                           std::string* error) = 0;
  // Sends `sig` to the worker's process group; with stop_commands, also SIGTERM to the groups its
  // bash commands lead, then SIGKILL 3 s later (as the pool does for its own workers).
  virtual void signal(int slot, int sig, bool stop_commands) = 0;
  // Once the worker's process ended (or its rank was lost): how, as "exited with status 0" or
  // "was lost with rank 2 on node3 (...)". Its stream has given everything the worker sent by then.
  virtual std::optional<std::string> exited(int slot) = 0;
  // Its rank was lost: the slot cannot run a worker any more (the pool does not restart it).
  virtual bool lost(int slot) = 0;
};

}  // namespace pervade::pool
