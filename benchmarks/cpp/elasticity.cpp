// The elasticity experiment of the Parsl paper (Babuji et al., HPDC 2019), time-scaled, with
// the native C++ API: the same workflow, blocks, strategies and measurements as
// benchmarks/elasticity.py, but the blocks' pools are started by the C++ executor and run
// shell commands natively (pervade-pool --no-python), so starting a block costs what starting
// a pool costs, with no Python interpreter in it.
//
//   build/benchmarks/cpp/elasticity                      # scale 1/100, 3 repeats, a table
//   build/benchmarks/cpp/elasticity --scale 10 --repeats 3
//   build/benchmarks/cpp/elasticity --strategy simple --period 0.02 --max-idletime 0.02 --json
//
// The definitions are those of benchmarks/elasticity.py, kept identical so that the two runs
// differ only in what a block starts (read that script's docstring and BENCHMARKS.md):
//   workflow     stage 1: 20 tasks of 100 s; stage 2: 1 task of 50 s after all of stage 1;
//                stage 3: 20 tasks of 100 s after it; stage 4: 1 task of 50 s after all of
//                stage 3. Durations divided by --scale. Tasks sleep (here: a shell `sleep`).
//   blocks       LocalProvider blocks of 1 node with 1 worker, at most 20.
//     fixed      strategy "none", init_blocks = min_blocks = max_blocks = 20
//     elastic    strategy --strategy (htex_auto_scale), strategy_period --period,
//                max_idletime --max-idletime; init_blocks 20, min_blocks 0, max_blocks 20
//   makespan     from just before the executor starts (the DataFlowKernel's constructor, which
//                starts the 20 initial blocks; Python: load()) to the last result.
//   busy         worker-seconds spent in tasks, each task reporting its own start and end (the
//                shell's $EPOCHREALTIME around the sleep, written to the task's stdout file).
//   provisioned  block-seconds within the makespan: each block from its submission (the
//                initial ones: the start) to when the provider first reports it ended (or the
//                end), seen by a monitor thread polling the executor's blocks every 10 ms.
//   utilization  busy / provisioned (1 worker per block).
// Also reported, to explain the makespan: "stage 1 waits", from the start to the last stage-1
// task starting (20 blocks start), and "stage 3 waits", from the end of stage 2 to the last
// stage-3 task starting (elastic: the strategy notices the work and 19 blocks start).
// The paper reports 68.15% without and 84.28% with elasticity, for a 9.9% longer makespan.
//
// After each run the benchmark checks that every block's process group is gone (exit status 1
// if one is left).
#include <signal.h>
#include <stdlib.h>

#include <algorithm>
#include <array>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>
#include <mutex>
#include <string>
#include <thread>
#include <tuple>
#include <vector>

#include <fmt/core.h>

#include "pervade/pervade.hpp"

namespace fs = std::filesystem;

namespace {

constexpr int kWidth = 20;

struct Args {
  double scale = 100;
  int repeats = 3;
  std::string strategy = "htex_auto_scale";
  double period = 0.05;
  double max_idletime = 0.05;
  bool json = false;
};

struct Sample {
  std::string kind;
  double makespan = 0, busy = 0, provisioned = 0, utilization = 0;
  int blocks_started = 0;
  int blocks_left = 0;  // block process groups still alive after cleanup (must be 0)
  // Where the time goes (see the header):
  double stage1_wait = 0, stage3_wait = 0;
};

double now() { return std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count(); }

// Records when each block was first seen and first seen ended (a thread; 10 ms polls).
// Constructed and read by main; poll() runs on its own thread and, at the end, on main.
class BlockMonitor {
 public:
  BlockMonitor(const pervade::HighThroughputExecutor& htex, double start) : htex_(htex) {
    // The initial blocks were submitted by the executor's start, which began at `start`.
    for (const auto& b : htex_.blocks()) first_seen_.emplace(b.block_id, start);
    thread_ = std::thread([this] {
      std::unique_lock lock(mutex_);
      while (!stop_) {
        lock.unlock();
        poll();
        lock.lock();
        wake_.wait_for(lock, std::chrono::milliseconds(10), [this] { return stop_; });
      }
    });
  }
  ~BlockMonitor() { close(); }

  void poll() {
    auto blocks = htex_.blocks();
    const double t = now();
    std::lock_guard lock(mutex_);
    for (const auto& b : blocks) {
      first_seen_.emplace(b.block_id, t);
      if (pervade::is_terminal(b.status.state)) ended_.emplace(b.block_id, t);
    }
  }

  double provisioned(double start, double end) {
    std::lock_guard lock(mutex_);
    double total = 0;
    for (const auto& [block, seen] : first_seen_) {
      auto e = ended_.find(block);
      const double lo = std::max(seen, start), hi = std::min(e == ended_.end() ? end : e->second, end);
      total += std::max(0.0, hi - lo);
    }
    return total;
  }

  void close() {
    {
      std::lock_guard lock(mutex_);
      stop_ = true;
    }
    wake_.notify_all();
    if (thread_.joinable()) thread_.join();
  }

 private:
  const pervade::HighThroughputExecutor& htex_;
  std::mutex mutex_;
  std::condition_variable wake_;
  bool stop_ = false;
  std::map<std::string, double> first_seen_, ended_;
  std::thread thread_;
};

// A task that sleeps `seconds` and writes its start and end (wall clock) to `out`.
pervade::Shell stage(double seconds, const fs::path& out) {
  return pervade::Shell{.command = fmt::format("echo $EPOCHREALTIME; sleep {:g}; echo $EPOCHREALTIME", seconds),
                        .stdout_spec = {.path = out.string(), .append = false}};
}

struct Span {
  double start = 0, end = 0;
};

Span span(const fs::path& out) {
  std::ifstream in(out);
  Span s;
  if (!(in >> s.start >> s.end)) throw std::runtime_error("no start and end in " + out.string());
  return s;
}

Sample run_once(const std::string& kind, const Args& args) {
  const bool elastic = kind == "elastic";
  std::string tmpl = (fs::temp_directory_path() / "pervade-elasticity-XXXXXX").string();
  if (!::mkdtemp(tmpl.data())) throw std::runtime_error("mkdtemp failed");
  const fs::path dir = tmpl;

  auto provider = std::make_shared<pervade::LocalProvider>(
      pervade::ProviderOptions{.init_blocks = kWidth, .min_blocks = elastic ? 0 : kWidth, .max_blocks = kWidth});
  pervade::HtexOptions o;
  o.provider = provider;
  o.workers_per_node = 1;
  o.port_min = 56000;  // as benchmarks/elasticity.py
  o.port_max = 57000;
  o.strategy = elastic ? args.strategy : "none";
  o.strategy_period = args.period;
  o.max_idletime = args.max_idletime;
  o.run_dir = (dir / "runinfo").string();
  auto htex = std::make_shared<pervade::HighThroughputExecutor>(o);

  Sample s{.kind = kind};
  {
    const double t0 = now();
    pervade::DataFlowKernel dfk(pervade::Config{.executors = {htex}});  // starts the 20 initial blocks
    BlockMonitor monitor(*htex, t0);
    const double long_s = 100 / args.scale, short_s = 50 / args.scale;
    std::vector<fs::path> outs;
    auto out = [&] { return outs.emplace_back(dir / fmt::format("task-{}.out", outs.size())); };
    std::array<pervade::Future<int>, kWidth> s1, s3;
    for (auto& f : s1) f = dfk.submit(stage(long_s, out()));
    auto s2 = std::apply([&](const auto&... deps) { return dfk.submit(stage(short_s, out()), deps...); }, s1);
    for (auto& f : s3) f = dfk.submit(stage(long_s, out()), s2);
    auto s4 = std::apply([&](const auto&... deps) { return dfk.submit(stage(short_s, out()), deps...); }, s3);
    for (auto& f : s1) f.get();
    s2.get();
    for (auto& f : s3) f.get();
    s4.get();
    const double t1 = now();
    monitor.poll();
    monitor.close();
    std::vector<Span> spans;  // in submission order: s1, s2, s3, s4
    for (const auto& p : outs) spans.push_back(span(p));
    for (const auto& sp : spans) s.busy += sp.end - sp.start;
    for (int i = 0; i < kWidth; ++i) {
      s.stage1_wait = std::max(s.stage1_wait, spans[i].start - t0);
      s.stage3_wait = std::max(s.stage3_wait, spans[kWidth + 1 + i].start - spans[kWidth].end);
    }
    s.makespan = t1 - t0;
    s.provisioned = monitor.provisioned(t0, t1);
    s.utilization = s.busy / s.provisioned;
    s.blocks_started = static_cast<int>(htex->blocks().size());
    dfk.cleanup();  // tells the pools to stop and cancels the blocks
  }
  // Every block's process group must be gone: wait for the provider to see them end, then ask
  // the kernel (a block's job id is the pid of its bash, which leads the block's process group).
  const auto jobs = provider->job_ids();
  provider->wait(jobs, std::chrono::seconds(30));
  for (const auto& job : jobs)
    if (::kill(-static_cast<pid_t>(std::stol(job)), 0) == 0) ++s.blocks_left;
  fs::remove_all(dir);
  return s;
}

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  const auto n = v.size();
  return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

int usage(const char* prog) {
  std::fprintf(stderr,
               "usage: %s [--scale 100] [--repeats 3] [--strategy htex_auto_scale|simple] [--period 0.05] "
               "[--max-idletime 0.05] [--json]\n",
               prog);
  return 2;
}

}  // namespace

int main(int argc, char** argv) {
  Args args;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    const bool has_value = i + 1 < argc;
    if (a == "--json") args.json = true;
    else if (a == "--scale" && has_value) args.scale = std::stod(argv[++i]);
    else if (a == "--repeats" && has_value) args.repeats = std::stoi(argv[++i]);
    else if (a == "--strategy" && has_value) args.strategy = argv[++i];
    else if (a == "--period" && has_value) args.period = std::stod(argv[++i]);
    else if (a == "--max-idletime" && has_value) args.max_idletime = std::stod(argv[++i]);
    else return usage(argv[0]);
  }
  if (args.scale <= 0 || args.repeats < 1 || (args.strategy != "simple" && args.strategy != "htex_auto_scale"))
    return usage(argv[0]);

  std::vector<Sample> samples;
  int left = 0;
  for (int r = 0; r < args.repeats; ++r) {
    for (const char* kind : {"fixed", "elastic"}) {
      const auto& s = samples.emplace_back(run_once(kind, args));
      left += s.blocks_left;
      fmt::print(stderr,
                 "# {} makespan {:.3f} s busy {:.3f} provisioned {:.3f} utilization {:.2f}% blocks {} left {} "
                 "stage1_wait {:.3f} stage3_wait {:.3f}\n",
                 s.kind, s.makespan, s.busy, s.provisioned, 100 * s.utilization, s.blocks_started, s.blocks_left,
                 s.stage1_wait, s.stage3_wait);
    }
  }
  auto med = [&](const std::string& kind, auto field) {
    std::vector<double> v;
    for (const auto& s : samples)
      if (s.kind == kind) v.push_back(static_cast<double>(s.*field));
    return median(v);
  };
  if (args.json) {
    fmt::print("{{\"scale\": {:g}, \"strategy\": \"{}\", \"period\": {:g}, \"max_idletime\": {:g}, \"samples\": [\n",
               args.scale, args.strategy, args.period, args.max_idletime);
    for (std::size_t i = 0; i < samples.size(); ++i) {
      const auto& s = samples[i];
      fmt::print(" {{\"kind\": \"{}\", \"makespan\": {:.4f}, \"busy\": {:.4f}, \"provisioned\": {:.4f}, "
                 "\"utilization\": {:.4f}, \"blocks_started\": {}, \"blocks_left\": {}, \"stage1_wait\": {:.4f}, "
                 "\"stage3_wait\": {:.4f}}}{}\n",
                 s.kind, s.makespan, s.busy, s.provisioned, s.utilization, s.blocks_started, s.blocks_left,
                 s.stage1_wait, s.stage3_wait,
                 i + 1 < samples.size() ? "," : "");
    }
    fmt::print("]}}\n");
    return left == 0 ? 0 : 1;
  }
  fmt::print("elasticity (C++, no Python), scale 1/{:g}, {} blocks of 1 worker, strategy {}, strategy_period {:g} s, "
             "max_idletime {:g} s, median of {}\n",
             args.scale, kWidth, args.strategy, args.period, args.max_idletime, args.repeats);
  fmt::print("| run | makespan, s | utilization | blocks started | stage 1 waits, s | stage 3 waits, s |\n"
             "|---|---|---|---|---|---|\n");
  for (const char* kind : {"fixed", "elastic"})
    fmt::print("| {} | {:.2f} | {:.2f}% | {:.0f} | {:.3f} | {:.3f} |\n", kind, med(kind, &Sample::makespan),
               100 * med(kind, &Sample::utilization), med(kind, &Sample::blocks_started),
               med(kind, &Sample::stage1_wait), med(kind, &Sample::stage3_wait));
  const double cost = med("elastic", &Sample::makespan) / med("fixed", &Sample::makespan) - 1;
  fmt::print("makespan change with elasticity: {:+.1f}% (paper: +9.9%)\n", 100 * cost);
  fmt::print("utilization: {:.2f}% -> {:.2f}%, x{:.2f} (paper: 68.15% -> 84.28%, x1.24)\n",
             100 * med("fixed", &Sample::utilization), 100 * med("elastic", &Sample::utilization),
             med("elastic", &Sample::utilization) / med("fixed", &Sample::utilization));
  if (left) fmt::print(stderr, "error: {} block process(es) still alive after cleanup\n", left);
  return left == 0 ? 0 : 1;
}
