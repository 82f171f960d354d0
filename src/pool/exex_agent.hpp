#pragma once
// A rank other than 0 of pervade-exex-pool: its node's workers. It plans their number from the
// pool's options and this node (as pervade-pool would), says hello to rank 0, then starts,
// signals and reaps workers as rank 0 asks and relays their byte streams over MPI. It never
// parses a frame: the pool on rank 0 does. It stops its workers and exits when rank 0 says
// stop, when rank 0 is silent for the liveness threshold, or on SIGTERM/SIGINT/SIGHUP.
// main() calls it once, on the thread that called MPI_Init_thread.
#include "pool/exex_bridge.hpp"
#include "pool/pool.hpp"

namespace pervade::pool::exex {

struct AgentExit {
  int status = 0;         // the process's exit status (ExitStatus)
  bool finalize = false;  // rank 0 asked every rank to call MPI_Finalize
};

// `signal_fd`: a signalfd of SIGCHLD, SIGTERM, SIGINT and SIGHUP (blocked in every thread).
AgentExit run_agent(RankLink& link, const PoolOptions& options, Liveness liveness, int signal_fd);

}  // namespace pervade::pool::exex
