#include "pervade/htex_executor.hpp"

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cmath>
#include <cstring>
#include <condition_variable>
#include <deque>
#include <fstream>
#include <mutex>
#include <optional>
#include <thread>
#include <unordered_map>
#include <unordered_set>

#include <fmt/format.h>

#include "executors/htex/blocks.hpp"
#include "executors/htex/strategy.hpp"
#include "interchange/interchange.hpp"
#include "pervade/errors.hpp"
#include "util/thread_name.hpp"

namespace pervade {

struct HighThroughputExecutor::Impl {
  HtexOptions options;
  const Executor* owner = nullptr;  // reports to its observers
  CompletionSink* sink = nullptr;
  std::unique_ptr<interchange::Interchange> interchange;
  std::unique_ptr<detail::BlockManager> blocks;  // only with options.provider

  // Launches waiting to be encoded (the encoder thread may need the GIL; the reactor must not).
  std::mutex queue_mutex;
  std::condition_variable queue_cv;
  std::deque<Launch> queue;
  bool stopping = false;
  std::thread encoder;

  // Tries on the wire, by wire id (unique per try, so a late result of an old try is ignored).
  std::mutex flight_mutex;
  std::unordered_map<std::uint64_t, Launch> in_flight;
  std::uint64_t next_wire_id = 1;
  std::mutex functions_mutex;
  std::unordered_set<std::string> sent_functions;  // under functions_mutex
  std::vector<std::string> refusals;                // under flight_mutex
  std::unordered_set<std::string> connected_blocks;  // under flight_mutex: blocks a pool registered from
  std::unordered_set<std::string> worked_blocks;     // under flight_mutex: blocks a pool sent results from
  // Under flight_mutex: blocks whose pool reported that it cannot run tasks (FAILED) -> why.
  std::unordered_map<std::string, std::string> broken_blocks;
  std::string failure;                               // under queue_mutex: why the executor failed

  // Scaling (with a provider): a thread of its own, because provider calls block (a batch
  // scheduler's command may take seconds, LocalProvider::cancel waits for the process group)
  // and must not stall the interchange's reactor, which keeps heartbeats and dispatch going.
  std::unique_ptr<detail::Strategy> strategy;
  std::thread strategy_thread;
  std::mutex strategy_mutex;
  std::condition_variable strategy_cv;
  bool strategy_stop = false;  // under strategy_mutex
  int workers_seen = 0;        // under round_mutex: the most workers a pool registered with
  // One decision at a time: the strategy's rounds and scale_in() from users' threads.
  std::mutex round_mutex;

  static Completion fail(Launch& l, std::exception_ptr e) {
    return Completion{std::move(l.task), l.try_id, Outcome::failure(std::move(e))};
  }

  void encode_loop() {
    std::vector<Launch> batch;
    for (;;) {
      {
        std::unique_lock lock(queue_mutex);
        if (queue.empty()) {
          lock.unlock();
          release_thread_resources();  // the GIL, if Python bodies took it
          lock.lock();
        }
        queue_cv.wait(lock, [&] { return !queue.empty() || stopping; });
        if (queue.empty() && stopping) return;
        while (!queue.empty() && batch.size() < 256) {
          batch.push_back(std::move(queue.front()));
          queue.pop_front();
        }
      }
      std::vector<interchange::DispatchTask> wire;
      std::vector<Completion> refused;
      for (auto& launch : batch) {
        RemoteTask remote;
        bool ok = false;
        std::exception_ptr error;
        try {
          TaskContext ctx(*launch.task, launch.try_id, launch.inputs);
          ok = launch.body->encode_remote(ctx, &remote);
          if (!ok)
            error = std::make_exception_ptr(ConfigurationError(
                "task " + std::to_string(launch.task->id().value) + " (" + launch.task->func_name() +
                ") cannot run on executor '" + options.label + "': only Python apps and shell commands run on pools"));
        } catch (...) {
          error = std::current_exception();  // e.g. arguments that cannot be pickled
        }
        if (ok) {
          if (auto t = to_wire(launch, std::move(remote), refused)) wire.push_back(std::move(*t));
        } else
          refused.push_back(fail(launch, error));
      }
      batch.clear();
      if (!refused.empty()) sink->post(std::move(refused));
      if (!wire.empty()) interchange->submit(std::move(wire));
    }
  }

  // Registers the function with the interchange (once) and puts the try in flight. The
  // function is posted before any task that uses it: both go through the interchange's
  // command queue, and the first thread to see a hash posts it while holding the lock.
  // Once the executor has failed, the try fails instead (nullopt, its completion in `refused`).
  // Each unfinished input of a follower must be a try of this executor that is on the wire:
  // the follower then names it (by wire id) and waits on its pool. False if one is not.
  bool follow_inputs(const Launch& launch, std::vector<protocol::After>* after) {
    for (std::size_t i = 0; i < launch.inputs.size(); ++i) {
      const TaskRecord& dep = *launch.inputs[i];
      if (dep.done()) continue;
      auto f = in_flight.find(dep.executor_tag());
      if (f == in_flight.end() || f->second.task.get() != &dep || f->second.try_id != dep.try_id()) return false;
      after->push_back(protocol::After{static_cast<std::uint32_t>(i), f->first});
    }
    return true;
  }

  // Parsl's rules for parsl_resource_specification (docs/mpi.md): in MPI mode every call needs
  // one; elsewhere MPI keys are refused. Null when the task may go.
  std::exception_ptr invalid_spec(const RemoteTask& r) const {
    if (options.mpi_launcher.empty()) {
      if (r.num_nodes > 0)
        return std::make_exception_ptr(InvalidResourceSpecification(
            "num_nodes", fmt::format("executor {} is not in MPI mode: num_nodes, ranks_per_node, num_ranks and "
                                     "launcher_options are for an MPIExecutor (or enable_mpi_mode=True)",
                                     options.label)));
    } else if (!r.has_resource_spec && r.kind == 0) {  // shell commands (C++ API) take no spec
      return std::make_exception_ptr(InvalidResourceSpecification(
          "", "MPI mode requires optional parsl_resource_specification keyword argument to be configured"));
    }
    return nullptr;
  }

  std::optional<interchange::DispatchTask> to_wire(Launch& launch, RemoteTask&& remote, std::vector<Completion>& refused) {
    if (auto invalid = invalid_spec(remote)) {
      refused.push_back(fail(launch, std::move(invalid)));
      return std::nullopt;
    }
    if (!remote.fn_hash.empty()) {
      std::lock_guard lock(functions_mutex);
      if (sent_functions.insert(remote.fn_hash).second) interchange->add_function(remote.fn_hash, std::move(remote.fn));
    }
    interchange::DispatchTask t;
    t.kind = remote.kind;
    t.fn_hash = std::move(remote.fn_hash);
    t.payload = std::move(remote.payload);
    t.inputs = std::move(remote.inputs);
    t.priority = remote.priority;
    t.buffers = std::move(remote.buffers);
    t.resources = protocol::Resources{remote.cores, remote.memory_mb, remote.gpus, remote.running_time};
    t.mpi = protocol::MpiRequest{remote.num_nodes, remote.ranks_per_node, remote.num_ranks,
                                 std::move(remote.launcher_options)};
    std::lock_guard lock(flight_mutex);
    if (!failure.empty()) {
      refused.push_back(fail(launch, std::make_exception_ptr(ExecutorFailed(options.label, failure))));
      return std::nullopt;
    }
    if (launch.follower && !follow_inputs(launch, &t.after)) {
      refused.push_back(Completion{std::move(launch.task), launch.try_id, Outcome::not_started_yet()});
      return std::nullopt;
    }
    launch.body.reset();  // the try lives on the wire now; only the record is needed
    launch.inputs.clear();
    t.task_id = next_wire_id++;
    launch.task->set_executor_tag(t.task_id);
    if (t.after.empty()) owner->report_running(*launch.task, launch.try_id);  // a follower runs once its input is there
    in_flight.emplace(t.task_id, std::move(launch));
    return t;
  }

  void on_completed(std::vector<interchange::Completed>&& done) {
    std::vector<Completion> out;
    out.reserve(done.size());
    std::unique_lock lock(flight_mutex);
    for (auto& c : done) {
      auto it = in_flight.find(c.task_id);
      if (it == in_flight.end()) continue;
      Launch launch = std::move(it->second);
      in_flight.erase(it);
      Outcome outcome;
      if (c.manager_lost) {
        outcome = Outcome::failure(std::make_exception_ptr(ManagerLost(c.payload)));
      } else if (c.status == protocol::kStatusOk) {
        outcome = Outcome::success(RemoteBytes{std::move(c.payload), std::move(c.buffers)});
      } else if (c.status == protocol::kStatusNotStarted) {
        outcome = Outcome::not_started_yet();
      } else if (c.status == protocol::kStatusException) {
        outcome = Outcome::failure(std::make_exception_ptr(RemoteTaskError(std::move(c.payload))));
      } else if (c.status == protocol::kStatusInvalid) {  // "<key>\n<why>": the pool can never run it
        const auto newline = c.payload.find('\n');
        outcome = Outcome::failure(std::make_exception_ptr(InvalidResourceSpecification(
            c.payload.substr(0, newline), newline == std::string::npos ? c.payload : c.payload.substr(newline + 1))));
      } else {
        outcome = Outcome::failure(std::make_exception_ptr(WorkerLost(c.payload)));
      }
      if (!c.pool_id.empty()) {  // observed (DispatcherConfig::report_places): the try ran on that pool
        report_place(*launch.task, launch.try_id, c.pool_id);
        owner->report_running_ended(*launch.task, launch.try_id);
      }
      out.push_back(Completion{std::move(launch.task), launch.try_id, std::move(outcome)});
    }
    lock.unlock();
    if (const auto hook = result_buffer_hook())
      for (auto& c : out)
        if (auto* r = std::any_cast<RemoteBytes>(&c.outcome.value); r && !r->buffers.empty()) hook(r->buffers);
    if (!out.empty()) sink->post(std::move(out));
  }

  // Observers: which pool, block and host ran a try (TryEvent), and pools joining and leaving
  // (PoolEvent). Interchange thread only, as `places`.
  std::unordered_map<std::string, interchange::PoolEvent> places;  // pools' registrations, by pool id, while observed
  double resource_interval = 0;                    // what pools were asked for (set at start)

  void report_place(const TaskRecord& task, std::uint32_t try_id, const std::string& pool_id) {
    const auto it = places.find(pool_id);
    if (it == places.end()) return;
    owner->observers().attempt(TryEvent{std::chrono::system_clock::now(), task.id(), try_id, options.label,
                                        it->second.block_id, pool_id, it->second.hostname});
  }

  // Pools' samples of the tasks they run (resource monitoring on), for the tries still in flight.
  void on_usage(std::vector<interchange::PoolUsage>&& usage) {
    std::lock_guard lock(flight_mutex);
    for (const auto& u : usage) {
      const auto place = places.find(u.pool_id);
      for (const auto& x : u.samples) {
        auto it = in_flight.find(x.task_id);
        if (it == in_flight.end()) continue;
        ResourceSample s{};
        s.time = EventTime{std::chrono::microseconds(x.time_us)};
        s.task = it->second.task->id();
        s.try_id = it->second.try_id;
        s.executor = options.label;
        if (place != places.end()) s.hostname = place->second.hostname;
        s.pid = x.pid;
        s.children = x.children;
        copy_usage(x, s);
        s.interval = resource_interval;
        s.first = x.first;
        s.last = x.last;
        owner->observers().resource(s);
      }
    }
  }

  void report_pool(const interchange::PoolEvent& e) {
    using K = interchange::PoolEvent;
    // refused: never joined; failed, working: the pool's own state (a failed pool is lost next).
    if (e.kind == K::refused || e.kind == K::failed || e.kind == K::working) return;
    if (e.kind == interchange::PoolEvent::registered) places[e.pool_id] = e;
    const auto it = places.find(e.pool_id);
    if (it == places.end()) return;
    const interchange::PoolEvent& joined = it->second;  // what the pool said of itself
    PoolEvent out{};
    out.kind = e.kind == K::registered  ? PoolEvent::Kind::joined
               : e.kind == K::heartbeat ? PoolEvent::Kind::heartbeat
               : e.kind == K::busy      ? PoolEvent::Kind::busy
               : e.kind == K::idle      ? PoolEvent::Kind::idle
                                        : PoolEvent::Kind::left;
    out.time = std::chrono::system_clock::now();
    out.executor = options.label;
    out.pool = e.pool_id;
    out.block = joined.block_id;
    out.hostname = joined.hostname;
    out.worker_count = joined.worker_count;
    out.cpu_count = joined.cpu_count;
    out.total_memory = joined.total_memory;
    out.python_version = joined.python_version;
    if (out.kind == PoolEvent::Kind::left) out.reason = e.detail;
    owner->observers().pool(out);
    if (out.kind == PoolEvent::Kind::left) places.erase(it);
  }

  // The pools still joined when the interchange has stopped leave with the executor (Parsl's
  // last node row, active 0). After the interchange thread is joined: `places` is this thread's.
  void report_pools_left() {
    if (!owner->observers().active()) return;
    std::vector<interchange::PoolEvent> left;
    for (const auto& [id, joined] : places) left.push_back(interchange::PoolEvent{interchange::PoolEvent::drained, {}, id});
    for (const auto& e : left) report_pool(e);
  }

  void on_event(const interchange::PoolEvent& e) {
    if (owner->observers().active()) report_pool(e);
    if (e.kind == interchange::PoolEvent::refused) {
      std::lock_guard lock(flight_mutex);
      refusals.push_back(e.detail);
    } else if (e.kind == interchange::PoolEvent::registered) {
      std::lock_guard lock(flight_mutex);
      connected_blocks.insert(e.block_id);
    } else if (e.kind == interchange::PoolEvent::working) {
      std::lock_guard lock(flight_mutex);
      worked_blocks.insert(e.block_id);
    } else if (e.kind == interchange::PoolEvent::failed) {
      std::lock_guard lock(flight_mutex);
      broken_blocks.try_emplace(e.block_id, e.detail);
    }
  }

  void strategy_loop() {
    const auto period = std::chrono::duration_cast<std::chrono::steady_clock::duration>(
        std::chrono::duration<double>(options.strategy_period));
    // A provider call that fails (a scheduler command timing out) is retried next round; one
    // that keeps failing fails the executor rather than leave its tasks waiting forever.
    constexpr int kProviderErrorsInARow = 10;
    int errors = 0;
    std::unique_lock lock(strategy_mutex);
    while (!strategy_cv.wait_for(lock, period, [&] { return strategy_stop; })) {
      lock.unlock();
      try {
        if (!run_strategy()) return;
        errors = 0;
      } catch (const std::exception& e) {
        if (++errors >= kProviderErrorsInARow) {
          fail_executor(fmt::format("the provider failed {} times in a row; the last: {}", errors, e.what()));
          return;
        }
      }
      lock.lock();
    }
  }

  // One round of the strategy; false once the executor has failed (nothing more to do).
  bool run_strategy() {
    {
      std::lock_guard lock(queue_mutex);
      if (!failure.empty()) return false;  // failed by fail(): nothing more to scale
    }
    const std::vector<BlockStatus> states = blocks->blocks();
    if (options.block_error_handler) {  // the user's failure rule instead of the strategy's
      options.block_error_handler(states);
      std::lock_guard lock(queue_mutex);
      if (!failure.empty()) return false;
    }
    std::lock_guard round(round_mutex);
    std::vector<interchange::PoolInfo> pools;
    const detail::StrategySnapshot snap = snapshot(states, pools);
    const detail::StrategyDecisions d = strategy->decide(snap);
    if (d.fail) {
      fail_executor(*d.fail + log_tail(d.failed_block));
      return false;
    }
    carry_out(d, pools);
    return true;
  }

  // Scales in blocks now (HighThroughputExecutor::scale_in); returns their ids.
  std::vector<std::string> scale_in(int count, std::optional<double> max_idletime) {
    const std::vector<BlockStatus> states = blocks->blocks();
    std::lock_guard round(round_mutex);
    std::vector<interchange::PoolInfo> pools;
    const detail::StrategyDecisions d = strategy->scale_in_now(snapshot(states, pools), count, max_idletime);
    carry_out(d, pools);
    std::vector<std::string> ids = d.drain;
    ids.insert(ids.end(), d.cancel.begin(), d.cancel.end());
    return ids;
  }

  // What the strategy decides from: the blocks' states, their pools (returned in `pools`:
  // the live ones), the tasks. Under round_mutex.
  detail::StrategySnapshot snapshot(const std::vector<BlockStatus>& states, std::vector<interchange::PoolInfo>& pools) {
    detail::StrategySnapshot snap;
    snap.now = std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
    pools = interchange->pools();
    // A block whose process ended has no live pool, whatever the heartbeats say: its pools are
    // lost now (their tasks fail with ManagerLost and retry), not after heartbeat_threshold.
    for (const auto& b : states) {
      if (!is_terminal(b.status.state)) continue;
      if (std::none_of(pools.begin(), pools.end(), [&](const auto& p) { return p.block_id == b.block_id; })) continue;
      interchange->lose_block(b.block_id, fmt::format("ended: the provider reports the block {}{}",
                                                      to_string(b.status.state),
                                                      b.status.message.empty() ? "" : ": " + b.status.message));
      std::erase_if(pools, [&](const auto& p) { return p.block_id == b.block_id; });
    }
    {
      std::scoped_lock lock(queue_mutex, flight_mutex);
      snap.outstanding = in_flight.size() + queue.size();
      for (const auto& b : states) {
        detail::BlockSnapshot bs;
        bs.block_id = b.block_id;
        bs.status = b.status;
        bs.ever_connected = connected_blocks.contains(b.block_id);
        bs.worked = worked_blocks.contains(b.block_id);
        if (auto broken = broken_blocks.find(b.block_id); broken != broken_blocks.end()) bs.broken = broken->second;
        bs.idle_seconds = -1;
        snap.blocks.push_back(std::move(bs));
      }
    }
    for (const auto& p : pools) {
      workers_seen = std::max(workers_seen, p.worker_count);
      bool ours = false;
      for (auto& bs : snap.blocks) {
        if (bs.block_id != p.block_id) continue;
        ours = true;
        ++bs.pools;
        bs.ever_connected = true;
        bs.in_flight += p.in_flight;
        bs.idle_seconds = bs.idle_seconds < 0 ? p.idle_seconds : std::min(bs.idle_seconds, p.idle_seconds);
      }
      if (!ours && !p.draining) snap.other_workers += p.worker_count;
    }
    for (auto& bs : snap.blocks) bs.idle_seconds = std::max(0.0, bs.idle_seconds);
    snap.workers_per_node = options.workers_per_node > 0 ? options.workers_per_node
                            : workers_seen > 0          ? workers_seen
                            : options.expected_workers_per_node > 0
                                ? options.expected_workers_per_node
                                : static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
    return snap;
  }

  // Drains, cancels and starts blocks as decided. Under round_mutex.
  void carry_out(const detail::StrategyDecisions& d, const std::vector<interchange::PoolInfo>& pools) {
    for (const auto& block_id : d.drain)
      for (const auto& p : pools)
        if (p.block_id == block_id) interchange->drain(p.pool_id);
    if (!d.cancel.empty()) {
      // A block without pools in the snapshot may have connected since: drain those instead,
      // so that no task dispatched to them is lost (the pool exits once drained).
      std::vector<std::string> cancel;
      const auto now_pools = interchange->pools();
      for (const auto& block_id : d.cancel) {
        bool connected = false;
        for (const auto& p : now_pools)
          if (p.block_id == block_id) connected = interchange->drain(p.pool_id) || connected;
        if (!connected) cancel.push_back(block_id);
      }
      blocks->cancel(cancel);
    }
    if (d.start > 0) blocks->scale_out(d.start, /*record_failures=*/true);
  }

  // "\n<last lines of the block's log>", or "" if it has none.
  std::string log_tail(const std::string& block_id) const {
    if (block_id.empty()) return "";
    const std::string path = blocks->log_path(block_id);
    std::ifstream in(path, std::ios::binary);
    if (!in) {
      // Out of descriptors, say: the reason must not vanish with the log.
      const int err = errno;
      return err == ENOENT ? "" : fmt::format("\n(cannot read the block log {}: {})", path, std::strerror(err));
    }
    in.seekg(0, std::ios::end);
    const std::streamoff size = in.tellg();
    constexpr std::streamoff kTail = 2000;
    in.seekg(std::max<std::streamoff>(0, size - kTail));
    std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    while (!text.empty() && (text.back() == '\n' || text.back() == ' ')) text.pop_back();
    if (text.empty()) return "";
    return "\nlog " + path + (size > kTail ? " (tail):\n" : ":\n") + text;
  }

  // The executor cannot run tasks: every outstanding and later task fails with the reason,
  // and what is left of the blocks is stopped.
  void fail_executor(const std::string& reason) {
    std::vector<Completion> failed;
    std::vector<std::uint64_t> wire_ids;
    const auto error = std::make_exception_ptr(ExecutorFailed(options.label, reason));
    {
      std::scoped_lock lock(queue_mutex, flight_mutex);
      if (!failure.empty()) return;  // failed already: the first reason stands
      failure = reason;
      for (auto& l : queue) failed.push_back(fail(l, error));
      queue.clear();
      for (auto& [id, l] : in_flight) {
        wire_ids.push_back(id);
        failed.push_back(fail(l, error));
      }
      in_flight.clear();
    }
    if (!wire_ids.empty()) interchange->cancel(std::move(wire_ids));
    if (!failed.empty()) sink->post(std::move(failed));
    if (blocks) blocks->cancel_all();
  }
};

HighThroughputExecutor::HighThroughputExecutor(HtexOptions options)
    : Executor(options.label), impl_(std::make_unique<Impl>()) {
  // NaN fails every comparison: written so that it fails these checks too.
  if (!(options.heartbeat_period > 0 && std::isfinite(options.heartbeat_period)) ||
      !(options.heartbeat_threshold > 0 && std::isfinite(options.heartbeat_threshold)))
    throw ConfigurationError("HighThroughputExecutor heartbeat_period and heartbeat_threshold must be finite and > 0");
  if (options.port_min > options.port_max || options.port_min < 1 || options.port_max > 65535)
    throw ConfigurationError("HighThroughputExecutor worker_port_range must be a valid port range");
  // libzmq would wrap -1 or 70000 to some other port.
  if (options.worker_port < 0 || options.worker_port > 65535)
    throw ConfigurationError("HighThroughputExecutor worker_port must be from 1 to 65535 (0: from the range)");
  if (options.prefetch_capacity < 0 || options.short_task_prefetch < 0)
    throw ConfigurationError("HighThroughputExecutor prefetch_capacity and short_task_prefetch must be >= 0");
  impl_->options = std::move(options);
  // Checks the block options and makes the per-run CurveZMQ keys (into options) if needed.
  if (impl_->options.provider) {
    auto& o = impl_->options;
    if (!(o.strategy_period > 0))
      throw ConfigurationError("HighThroughputExecutor strategy_period must be positive");
    const ProviderOptions& p = o.provider->options();
    // init_blocks=0 with max_blocks=0 is allowed, as in Parsl: blocks are then started by hand
    // (scale_out) or pools connect from elsewhere. The Python front end warns about it.
    impl_->strategy = std::make_unique<detail::Strategy>(detail::StrategyConfig{
        detail::parse_strategy(o.strategy), p.min_blocks, p.max_blocks, p.parallelism, o.max_idletime,
        p.nodes_per_block, o.block_error_handler ? 0 : o.max_failed_blocks});
    impl_->blocks = std::make_unique<detail::BlockManager>(o);
  }
}

HighThroughputExecutor::~HighThroughputExecutor() { shutdown(); }

void HighThroughputExecutor::start(CompletionSink& sink) {
  auto& im = *impl_;
  if (im.sink) throw ConfigurationError("executor '" + label() + "' is already in use by a DataFlowKernel");
  im.sink = &sink;
  im.owner = this;
  interchange::InterchangeConfig cfg;
  cfg.address = im.options.address;
  cfg.port = im.options.worker_port;
  cfg.port_min = im.options.port_min;
  cfg.port_max = im.options.port_max;
  cfg.dispatcher.heartbeat_period = im.options.heartbeat_period;
  cfg.dispatcher.heartbeat_threshold = im.options.heartbeat_threshold;
  cfg.dispatcher.python_version = im.options.python_version;
  cfg.dispatcher.short_task_prefetch = im.options.short_task_prefetch;
  cfg.dispatcher.pervade_version = PERVADE_VERSION;
  cfg.dispatcher.report_places = observers().active();
  if (auto interval = observers().resource_interval()) {  // pools sample only when asked
    cfg.dispatcher.resource_interval = *interval;
    im.resource_interval = *interval;
  }
  if (!im.options.curve_public_key.empty() && !im.options.curve_secret_key.empty())
    cfg.curve = interchange::CurveKeys{im.options.curve_public_key, im.options.curve_secret_key};
  if (im.blocks && im.options.same_host_ipc) cfg.ipc_dir = im.blocks->run_dir();
  Impl* raw = impl_.get();
  im.interchange = std::make_unique<interchange::Interchange>(
      std::move(cfg), [raw](std::vector<interchange::Completed>&& d) { raw->on_completed(std::move(d)); },
      [raw](const interchange::PoolEvent& e) { raw->on_event(e); },
      [raw](std::vector<interchange::PoolUsage>&& u) { raw->on_usage(std::move(u)); });
  im.encoder = std::thread([raw] {
    detail::name_this_thread("pv-encoder");
    raw->encode_loop();
  });
  if (im.blocks) {
    try {
      im.blocks->set_observers(&observers());
      im.blocks->start(im.interchange->port(), im.interchange->ipc_url());  // the interchange listens: start the pools
    } catch (...) {
      shutdown();
      throw;
    }
    im.strategy_thread = std::thread([raw] {
      detail::name_this_thread("pv-strategy");
      raw->strategy_loop();
    });
  }
}

void HighThroughputExecutor::submit(std::span<Launch> launches) {
  auto& im = *impl_;
  std::vector<Completion> refused;
  std::vector<interchange::DispatchTask> wire;
  bool queued = false;
  {
    std::lock_guard lock(im.queue_mutex);
    for (auto& l : launches) {
      if (im.stopping) {
        refused.push_back(Impl::fail(l, std::make_exception_ptr(DataFlowKernelClosed("the executor was shut down"))));
        continue;
      }
      if (!im.failure.empty()) {
        refused.push_back(Impl::fail(l, std::make_exception_ptr(ExecutorFailed(im.options.label, im.failure))));
        continue;
      }
      // Already serialized (and no local dependency value to pickle): straight to the
      // interchange from this thread. Anything else goes through the encoder thread.
      RemoteTask remote;
      bool now = false;
      try {
        TaskContext ctx(*l.task, l.try_id, l.inputs);
        now = l.body->encode_remote_now(ctx, &remote);
      } catch (...) {
        now = false;  // encode_remote will report it
      }
      if (now && im.queue.empty()) {  // (behind queued launches it would overtake them)
        if (auto t = im.to_wire(l, std::move(remote), refused)) wire.push_back(std::move(*t));
      } else if (l.follower) {
        // The input it follows may still be queued here: not on the wire, nothing to name.
        refused.push_back(Completion{std::move(l.task), l.try_id, Outcome::not_started_yet()});
      } else {
        im.queue.push_back(std::move(l));
        queued = true;
      }
    }
  }
  if (!wire.empty()) im.interchange->submit(std::move(wire));
  if (!refused.empty()) im.sink->post(std::move(refused));
  if (queued) im.queue_cv.notify_one();
}

void HighThroughputExecutor::cancel(const TaskRecordPtr& task, std::uint32_t try_id, StopReason) {
  // The kernel has already failed the try (walltime, cancel): forget it here, so that a late
  // result is ignored, and stop it wherever it is — dropped from a queue, or its worker killed.
  auto& im = *impl_;
  {
    std::lock_guard lock(im.queue_mutex);
    auto q = std::find_if(im.queue.begin(), im.queue.end(),
                          [&](const Launch& l) { return l.task == task && l.try_id == try_id; });
    if (q != im.queue.end()) {
      im.queue.erase(q);
      return;
    }
  }
  std::optional<std::uint64_t> wire_id;
  {
    // A scan: cancellations are rare, and an index by task would cost every task a hash
    // insert and erase.
    std::lock_guard lock(im.flight_mutex);
    auto f = std::find_if(im.in_flight.begin(), im.in_flight.end(),
                          [&](const auto& entry) { return entry.second.task == task && entry.second.try_id == try_id; });
    if (f != im.in_flight.end()) {
      wire_id = f->first;
      im.in_flight.erase(f);
    }
  }
  if (wire_id && im.interchange) im.interchange->cancel({*wire_id});
}

void HighThroughputExecutor::shutdown() {
  auto& im = *impl_;
  std::vector<Completion> abandoned;
  {
    std::lock_guard lock(im.queue_mutex);
    if (im.stopping || !im.sink) {
      im.stopping = true;
      return;
    }
    im.stopping = true;
    for (auto& l : im.queue)
      abandoned.push_back(Impl::fail(l, std::make_exception_ptr(DataFlowKernelClosed(
                                            "the executor was shut down before the task was sent"))));
    im.queue.clear();
  }
  im.queue_cv.notify_all();
  {
    std::lock_guard lock(im.strategy_mutex);
    im.strategy_stop = true;
  }
  im.strategy_cv.notify_all();
  if (im.strategy_thread.joinable()) im.strategy_thread.join();  // before the blocks go
  if (im.encoder.joinable()) im.encoder.join();
  if (im.interchange) im.interchange->stop();  // SHUTDOWN to every pool
  im.report_pools_left();
  if (im.blocks) im.blocks->cancel_all();      // then stop their process trees
  {
    std::lock_guard lock(im.flight_mutex);
    for (auto& [id, l] : im.in_flight)
      abandoned.push_back(Impl::fail(l, std::make_exception_ptr(DataFlowKernelClosed(
                                            "the executor was shut down while the task ran on a pool"))));
    im.in_flight.clear();
  }
  if (!abandoned.empty()) im.sink->post(std::move(abandoned));
}

bool HighThroughputExecutor::accepts_followers() const { return impl_->options.follow_dependencies; }

std::string HighThroughputExecutor::url() const { return impl_->interchange ? impl_->interchange->url() : ""; }
int HighThroughputExecutor::port() const { return impl_->interchange ? impl_->interchange->port() : 0; }

std::vector<PoolStatus> HighThroughputExecutor::pools() const {
  std::vector<PoolStatus> out;
  if (!impl_->interchange) return out;
  for (auto& p : impl_->interchange->pools())
    out.push_back(PoolStatus{p.pool_id, p.block_id, p.hostname, p.worker_count, p.prefetch, p.in_flight,
                             p.idle_seconds, p.held, p.draining, p.python_version, p.pervade_version});
  return out;
}

std::size_t HighThroughputExecutor::outstanding() const {
  std::scoped_lock lock(impl_->queue_mutex, impl_->flight_mutex);  // submit()'s order
  return impl_->in_flight.size() + impl_->queue.size();
}

bool HighThroughputExecutor::hold(const std::string& pool_id, bool held) {
  return impl_->interchange && impl_->interchange->hold(pool_id, held);
}

bool HighThroughputExecutor::drain(const std::string& pool_id) {
  return impl_->interchange && impl_->interchange->drain(pool_id);
}

std::vector<std::string> HighThroughputExecutor::refusals() const {
  std::lock_guard lock(impl_->flight_mutex);
  return impl_->refusals;
}

std::string HighThroughputExecutor::pool_command(const std::string& block_id) const {
  if (!impl_->blocks) throw ConfigurationError("executor '" + label() + "' has no provider: it starts no blocks");
  return impl_->blocks->pool_command(block_id);
}

std::vector<BlockStatus> HighThroughputExecutor::blocks() const {
  return impl_->blocks ? impl_->blocks->blocks() : std::vector<BlockStatus>{};
}

std::vector<BlockStatus> HighThroughputExecutor::known_blocks() const {
  return impl_->blocks ? impl_->blocks->known() : std::vector<BlockStatus>{};
}

std::vector<std::string> HighThroughputExecutor::connected_blocks() const {
  std::lock_guard lock(impl_->flight_mutex);
  return {impl_->connected_blocks.begin(), impl_->connected_blocks.end()};
}

std::vector<std::string> HighThroughputExecutor::scale_in(int count, std::optional<double> max_idletime) {
  if (!impl_->blocks || !impl_->interchange)
    throw ConfigurationError("executor '" + label() + "' has no provider or is not started: it has no blocks");
  return impl_->scale_in(count, max_idletime);
}

std::vector<std::string> HighThroughputExecutor::scale_out(int count) {
  if (!impl_->blocks) throw ConfigurationError("executor '" + label() + "' has no provider: it starts no blocks");
  return impl_->blocks->scale_out(count);
}

std::string HighThroughputExecutor::failure() const {
  std::lock_guard lock(impl_->queue_mutex);
  return impl_->failure;
}

void HighThroughputExecutor::fail(const std::string& reason) {
  auto& im = *impl_;
  if (!im.sink) {  // not started: nothing runs yet, later tasks fail at submit
    std::lock_guard lock(im.queue_mutex);
    if (im.failure.empty()) im.failure = reason;
    return;
  }
  im.fail_executor(reason);
}

std::string HighThroughputExecutor::server_key_file() const {
  return impl_->blocks ? impl_->blocks->server_key_file() : std::string{};
}

}  // namespace pervade
