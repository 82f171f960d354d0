// PoolCore's decision cost for tasks that ask for resources (issue 15's target: under 5 us per
// task with 1,000 nodes and 10,000 queued tasks of mixed sizes). The core alone, no I/O: a pool
// whose worker slots span --nodes simulated nodes keeps --queued tasks waiting; each round one
// running task per node ends (in a random order) and a new task arrives, then the core
// dispatches. Reported: core time (accept + results + dispatch) per task started.
//
//   build/benchmarks/cpp/pool_core_decisions --nodes 1000 --queued 10000 --tasks 200000
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "pool/pool_core.hpp"

using namespace pervade;
using namespace pervade::pool;

namespace {

long arg(int argc, char** argv, const char* name, long fallback) {
  for (int i = 1; i + 1 < argc; ++i)
    if (std::strcmp(argv[i], name) == 0) return std::atol(argv[i + 1]);
  return fallback;
}

}  // namespace

int main(int argc, char** argv) {
  const int nodes = static_cast<int>(arg(argc, argv, "--nodes", 1000));
  const int workers_per_node = static_cast<int>(arg(argc, argv, "--workers-per-node", 8));
  const long queued = arg(argc, argv, "--queued", 10000);
  const long total = arg(argc, argv, "--tasks", 200000);

  PoolCoreConfig config;
  config.pool_id = "bench";
  config.workers = nodes * workers_per_node;
  for (int n = 0; n < nodes; ++n) {
    NodeCapacity c;
    for (int cpu = 0; cpu < 32; ++cpu) c.cpus.push_back(cpu);
    c.memory_mb = 128000;
    c.accelerators = {"0", "1", "2", "3"};
    config.nodes.push_back(std::move(c));
    for (int w = 0; w < workers_per_node; ++w) config.slot_node.push_back(n);
  }
  PoolCore core(config);
  for (int r = 0; r < config.workers; ++r) {
    core.worker_started(r);
    core.worker_ready(r);
  }

  std::mt19937 rng(7);
  std::uint64_t next_id = 1;
  // Mixed sizes: most tasks take 1 core, some 4 cores and 8 GB, a few 16 cores and 2 GPUs.
  auto make_task = [&]() {
    protocol::Task t;
    t.task_id = next_id++;
    t.kind = protocol::kKindPython;
    t.fn_hash = "h";
    if (t.task_id == 1) t.fn = "fn";
    t.payload = "p";
    const unsigned pick = rng() % 10;
    t.resources = pick < 6 ? protocol::Resources{1, 0, 0}
                : pick < 9 ? protocol::Resources{4, 8000, 0}
                           : protocol::Resources{16, 16000, 2};
    return t;
  };

  using Clock = std::chrono::steady_clock;
  Clock::duration in_core{};
  TimePoint now{};
  long started = 0;
  std::vector<int> running;  // ranks running a task
  auto step = [&](protocol::Tasks& arriving, const std::vector<int>& finishing) {
    const auto t0 = Clock::now();
    for (int r : finishing) {
      const auto id = core.running(r);
      core.worker_result(r, protocol::WorkerResult{*id, protocol::kStatusOk, "v"}, now);
    }
    core.accept(arriving);
    core.dispatch(now);
    in_core += Clock::now() - t0;
    for (auto& s : core.sends()) running.push_back(s.rank);
    started += static_cast<long>(core.sends().size());
    core.sends().clear();
    core.results().clear();
  };

  protocol::Tasks first;
  for (long i = 0; i < queued + config.workers; ++i) first.tasks.push_back(make_task());
  step(first, {});
  const long warm = started;
  in_core = {};
  started = 0;
  while (started < total) {
    std::shuffle(running.begin(), running.end(), rng);
    const std::size_t n = std::min<std::size_t>(running.size(), static_cast<std::size_t>(nodes));
    std::vector<int> finishing(running.end() - static_cast<std::ptrdiff_t>(n), running.end());
    running.resize(running.size() - n);
    protocol::Tasks arriving;
    for (std::size_t i = 0; i < n; ++i) arriving.tasks.push_back(make_task());
    now += std::chrono::milliseconds(50);
    step(arriving, finishing);
  }
  const double us = std::chrono::duration<double, std::micro>(in_core).count();
  std::printf("nodes %d, workers %d, queued %zu, first dispatch started %ld; then %ld tasks started: "
              "%.2f us of core time per task\n",
              nodes, config.workers, core.queued(), warm, started, us / static_cast<double>(started));
  return 0;
}
