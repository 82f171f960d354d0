// The engine log's cost per event (docs/logging.md, "Cost"): CPU time of the thread that reports
// task events to a LogObserver writing a file, and of its writer thread, at DEBUG (every event
// written) and WARNING (every event filtered out).
//
//   build/benchmarks/cpp/log_observer [FILE]     (default FILE: /tmp/pervade-log-bench.log)
#include <time.h>

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <string>

#include "observe/log_observer.hpp"

namespace {

double cpu_ns(clockid_t clock) {
  timespec t{};
  clock_gettime(clock, &t);
  return static_cast<double>(t.tv_sec) * 1e9 + static_cast<double>(t.tv_nsec);
}

}  // namespace

int main(int argc, char** argv) {
  using namespace pervade;
  const std::string path = argc > 1 ? argv[1] : "/tmp/pervade-log-bench.log";
  constexpr int kRounds = 200, kEach = 5000;  // flushed between rounds: the writer keeps up, as in a run
  for (int level : {log_level::kDebug, log_level::kWarning}) {
    std::filesystem::remove(path);
    LogObserver log({.path = path, .level = level});
    TaskEvent e{};
    e.kind = TaskEvent::Kind::state;
    e.state = TaskState::exec_done;
    e.try_id = 1;
    e.func_name = "noop_app";
    e.executor = "threads";
    double reporter = 0;
    const double process_start = cpu_ns(CLOCK_PROCESS_CPUTIME_ID);
    for (int r = 0; r < kRounds; ++r) {
      const double start = cpu_ns(CLOCK_THREAD_CPUTIME_ID);
      for (int i = 0; i < kEach; ++i) {
        e.task = TaskId{static_cast<std::uint64_t>(r) * kEach + i};
        e.time = std::chrono::system_clock::now();
        log.on_task(e);
      }
      reporter += cpu_ns(CLOCK_THREAD_CPUTIME_ID) - start;
      log.flush();
    }
    const double total = cpu_ns(CLOCK_PROCESS_CPUTIME_ID) - process_start;
    constexpr double kEvents = double(kRounds) * kEach;
    std::printf("level %-7s reporting thread %6.1f ns/event, writer thread %6.1f ns/event (CPU time)\n",
                level == log_level::kDebug ? "DEBUG" : "WARNING", reporter / kEvents, (total - reporter) / kEvents);
  }
  std::filesystem::remove(path);
}
