// pervade-exex-pool: one pool per block, over MPI (docs/mpi.md, "One pool per block"). Started
// by the block's MPI launcher (srun, mpiexec), one rank per node, with pervade-pool's options.
// Rank 0 is the pool (pool.cpp): it alone talks to the interchange and decides which worker of
// which node runs what; the other ranks run their node's workers (exex_agent.cpp), whose byte
// streams rank 0's bridge thread (exex_bridge.cpp) carries over MPI. A separate program so that
// pervade-pool does not depend on MPI.
#include <signal.h>
#include <sys/signalfd.h>
#include <unistd.h>

#include <cstdio>
#include <exception>
#include <string>

#include <fmt/format.h>
#include <mpi.h>

#include "pool/exex_agent.hpp"
#include "pool/exex_bridge.hpp"
#include "pool/pool.hpp"
#include "util/fd.hpp"

namespace {

constexpr const char* kUsage = R"(usage: pervade-exex-pool --address HOST:PORT [pervade-pool's options]

One pool per block over MPI: start it with the block's MPI launcher, one rank per node
(srun --ntasks-per-node 1, mpiexec -ppn 1). Rank 0 registers with the interchange as one pool
holding the workers of every node; each other rank runs its node's workers (as many as
pervade-pool would start there) and exchanges their tasks and results with rank 0 over MPI.
A rank silent for --heartbeat-threshold seconds is lost: the tasks its workers ran fail with
WorkerLost, and the other ranks go on. Not with --no-python or --mpi-launcher.

)";

}  // namespace

int main(int argc, char** argv) {
  using namespace pervade::pool;
  ParseResult parsed = parse_command_line(argc, argv);
  if (parsed.help) {
    std::fputs(kUsage, stdout);
    std::fputs(usage_text().c_str(), stdout);
    return kExitOk;
  }
  if (parsed.options && (parsed.options->no_python || !parsed.options->mpi_launcher.empty())) {
    parsed.error = "--no-python and --mpi-launcher are pervade-pool's alone";
    parsed.options.reset();
  }
  if (!parsed.options) {
    std::fprintf(stderr, "pervade-exex-pool: %s\n(see pervade-exex-pool --help)\n", parsed.error.c_str());
    return kExitUsage;
  }
  PoolOptions& options = *parsed.options;

  // Before MPI_Init starts any thread: these signals are read from signalfds in every rank.
  sigset_t set;
  sigemptyset(&set);
  for (int sig : {SIGCHLD, SIGTERM, SIGINT, SIGHUP}) sigaddset(&set, sig);
  pthread_sigmask(SIG_BLOCK, &set, nullptr);
  ::signal(SIGPIPE, SIG_IGN);

  int provided = 0;
  if (MPI_Init_thread(&argc, &argv, MPI_THREAD_SERIALIZED, &provided) != MPI_SUCCESS) {
    std::fputs("pervade-exex-pool: MPI_Init_thread failed\n", stderr);
    return kExitError;
  }
  // Rank 0's MPI calls come from its bridge thread (serialized with main's, never at once).
  if (provided < MPI_THREAD_SERIALIZED) {
    std::fputs("pervade-exex-pool: this MPI does not provide MPI_THREAD_SERIALIZED\n", stderr);
    MPI_Abort(MPI_COMM_WORLD, kExitError);
  }
  exex::RankLink link;
  exex::Liveness liveness;
  liveness.period = std::min<exex::Clock::duration>(
      std::chrono::seconds(1), std::chrono::duration_cast<exex::Clock::duration>(
                                   std::chrono::duration<double>(options.heartbeat_period / 2)));
  liveness.threshold =
      std::chrono::duration_cast<exex::Clock::duration>(std::chrono::duration<double>(options.heartbeat_threshold));

  int status = kExitError;
  bool finalize = false;
  if (link.rank() == 0) {
    try {
      exex::Bridge bridge(link, liveness);
      std::string nodes;
      for (const RemoteNode& n : bridge.nodes()) nodes += fmt::format(", rank {}: {} ({} workers)", n.rank, n.host, n.workers);
      exex::log_line(0, fmt::format("one pool for {} ranks{}", link.size(), nodes));
      status = run_pool(options, &bridge);
      finalize = bridge.stop(std::chrono::seconds(5));
    } catch (const std::exception& e) {
      exex::log_line(0, fmt::format("fatal error: {}", e.what()));
      MPI_Abort(MPI_COMM_WORLD, kExitError);
    }
  } else {
    pervade::detail::Fd signal_fd(::signalfd(-1, &set, SFD_NONBLOCK | SFD_CLOEXEC));
    const exex::AgentExit e = exex::run_agent(link, options, liveness, signal_fd.get());
    status = e.status;
    finalize = e.finalize;
  }
  // Without every rank, MPI_Finalize would wait for the lost one forever.
  if (finalize) MPI_Finalize();
  std::fflush(nullptr);
  if (!finalize) ::_exit(status);
  return status;
}
