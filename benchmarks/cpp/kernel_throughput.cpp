// No-op C++ callables through the DataFlowKernel and a ThreadPoolExecutor.
// Usage: kernel_throughput [tasks=1000000] [threads=1] [chain=0] [monitoring.db]
// With a database path, the monitoring database writer observes the run (resource sampling
// off, as its cost is per task thread, not the engine's): what the event seam and the writer cost.
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <vector>

#include "pervade/pervade.hpp"

namespace {
long rss_kb() {
  std::FILE* f = std::fopen("/proc/self/statm", "r");
  long pages = 0, resident = 0;
  if (f) {
    if (std::fscanf(f, "%ld %ld", &pages, &resident) != 2) resident = 0;
    std::fclose(f);
  }
  return resident * 4;  // 4 KiB pages
}
}  // namespace

int main(int argc, char** argv) {
  const long n = argc > 1 ? std::atol(argv[1]) : 1000000;
  const int threads = argc > 2 ? std::atoi(argv[2]) : 1;
  const bool chain = argc > 3 && std::atoi(argv[3]) != 0;
  pervade::Config cfg{.executors = {std::make_shared<pervade::ThreadPoolExecutor>(threads)}};
  if (argc > 4) {
    pervade::MonitoringOptions mon;
    mon.resource_monitoring_enabled = false;
    cfg.observers.push_back(pervade::make_monitoring_db(argv[4], mon));
  }
  pervade::DataFlowKernel dfk(std::move(cfg));
  const long rss_before = rss_kb();
  long rss_held = 0;
  const auto t0 = std::chrono::steady_clock::now();
  long check = 0;
  if (chain) {
    auto f = dfk.submit([] { return 0L; });
    for (long i = 1; i < n; ++i) f = dfk.submit([](long v) { return v + 1; }, f);
    check = f.get();
  } else {
    std::vector<pervade::Future<long>> fs;
    fs.reserve(n);
    for (long i = 0; i < n; ++i) fs.push_back(dfk.submit([] { return 1L; }));
    for (auto& f : fs) check += f.get();
    dfk.wait_for_current_tasks();
    rss_held = rss_kb();  // every record finished and garbage-collected, still held by a future
  }
  const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  dfk.cleanup();  // with monitoring: until the last row is written
  const double with_cleanup = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  std::printf(
      "{\"mode\": \"%s\", \"tasks\": %ld, \"threads\": %d, \"seconds\": %.4f, \"tasks_per_second\": %.0f, "
      "\"bytes_per_finished_task\": %.0f, \"check\": %ld, \"monitoring\": %s, \"seconds_with_cleanup\": %.4f}\n",
      chain ? "chain" : "fanout", n, threads, secs, n / secs,
      chain ? 0.0 : (rss_held - rss_before) * 1024.0 / static_cast<double>(n), check, argc > 4 ? "true" : "false", with_cleanup);
  return check == (chain ? n - 1 : n) ? 0 : 1;
}
