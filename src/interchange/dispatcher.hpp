#pragma once
// The interchange's state machine: pools, their capacity and liveness, the priority queue of
// tasks, and which functions each pool has seen. No sockets and no clock of its own: the
// ZeroMQ shell (interchange.cpp) feeds it messages and the time, and sends what it returns.
// Unit tests drive it directly. Single-threaded: only the interchange thread calls it.
//
// Every per-task and per-message step costs O(1) or O(log n) in the number of pools and queued
// tasks (one interchange holds 10,000 pools; docs/htex.md, "How far one interchange goes"):
// pools with free capacity are kept in a set to pick from at random, and pools are kept in two
// lists ordered by when they were last heard from and last sent to, so heartbeats and
// expiry look only at the pools that are due. The times given must not go backwards.
#include <chrono>
#include <cstdint>
#include <deque>
#include <list>
#include <map>
#include <memory>
#include <optional>
#include <random>
#include <set>
#include <string>
#include <tuple>
#include <unordered_map>
#include <unordered_set>
#include <utility>
#include <vector>

#include "protocol/messages.hpp"

namespace pervade::interchange {

using Clock = std::chrono::steady_clock;
using TimePoint = Clock::time_point;

// The most workers a registering pool may announce: a pool's capacity (workers + prefetch) is
// counted in ints, and no node runs more worker processes than this.
constexpr int kMaxWorkerCount = 1 << 16;

struct DispatchTask {
  std::uint64_t task_id = 0;
  int kind = protocol::kKindPython;
  protocol::Bytes fn_hash;  // registered with add_function() first (Python tasks)
  protocol::Bytes payload;
  std::vector<protocol::Bytes> inputs;
  int priority = 0;  // smaller runs first; equal priorities run in submission order
  // A follower: waits on the pool of the task named here (its input) instead of in the queue.
  std::vector<protocol::After> after;
  std::vector<protocol::SharedBuffer> buffers;  // out-of-band, sent as frames of their own
  // cores, memory, gpus, running_time: sent only to pools that can hold it (docs/htex.md, "Resources").
  protocol::Resources resources;
  protocol::MpiRequest mpi;                     // MPI mode (docs/mpi.md): the nodes it needs
};

struct DispatcherConfig {
  double heartbeat_period = 30;      // seconds
  double heartbeat_threshold = 120;  // seconds of silence before a pool is lost
  std::string pervade_version;
  std::string python_version;  // the driver's, "3.11.7"; pools with Python must match major.minor
  std::uint32_t seed = 1;      // for the randomized choice among pools with free capacity
  // Extra tasks per worker a pool may hold while its tasks are short (the run times its latest
  // results report are all within kShortTask, 10 ms): it hides the round trip to the pool when
  // tasks last microseconds, and is off as soon as tasks take longer, so long tasks keep the
  // load balance of prefetch_capacity alone. 0 disables it.
  int short_task_prefetch = 16;
  // Seconds a pool whose connection closed (disconnected()) has to come back, i.e. send any
  // message, before it is lost: a killed pool's tasks fail (and retry) after this, not after
  // heartbeat_threshold.
  double disconnect_grace = 1;
  // For observers: Completed::pool_id is filled (each try's pool: TryEvent) and each pool
  // heartbeat is an event (the node table); off, no copy is made and no event.
  bool report_places = false;
  // Told to pools in REGISTERED: seconds between resource samples of their tasks (0: first and
  // last only); < 0: pools sample nothing.
  double resource_interval = -1;
};

// Resource samples a pool sent (USAGE), for the executor.
struct PoolUsage {
  std::string pool_id;
  std::vector<protocol::UsageSample> samples;
};

// A finished (or lost) task, for the executor.
struct Completed {
  std::uint64_t task_id = 0;
  int status = protocol::kStatusOk;
  protocol::Bytes payload;
  bool manager_lost = false;  // the pool holding it was lost; payload is the reason
  std::vector<protocol::SharedBuffer> buffers = {};  // the result's out-of-band buffers (its frames)
  std::string pool_id{};      // the pool that ran it (with DispatcherConfig::report_places)
};

struct PoolEvent {
  // failed: the pool reported that it cannot run tasks (FAILED) and is exiting.
  // working: the pool sent its first results (it runs tasks: its block works).
  // heartbeat: the pool sent a heartbeat; busy: it got a task while it held none; idle: its
  // last task came back (these three only with DispatcherConfig::report_places).
  enum Kind { registered, refused, lost, drained, failed, working, heartbeat, busy, idle } kind;
  std::string identity;
  std::string pool_id;
  std::string block_id;
  std::string detail;  // refused/lost/failed: the reason
  // registered: what the pool said of itself (for observers' PoolEvent)
  std::string hostname{};
  std::string python_version{};
  int worker_count = 0;
  int cpu_count = 0;
  std::uint64_t total_memory = 0;
};

struct PoolInfo {
  std::string identity;
  std::string pool_id;
  std::string block_id;
  std::string hostname;
  int worker_count = 0;
  int prefetch = 0;
  std::size_t in_flight = 0;
  double idle_seconds = 0;  // since the pool last had no task in flight; 0 when busy
  bool held = false;
  bool draining = false;
  std::string python_version{};   // as the pool registered them (Parsl's connected_managers())
  std::string pervade_version{};
};

class Dispatcher {
 public:
  explicit Dispatcher(DispatcherConfig config);

  void add_function(const protocol::Bytes& hash, protocol::Bytes fn);
  // A follower (task.after) goes to the pool holding the task it follows, or along with that
  // task when it is still queued; if no pool has it, it completes at once with
  // kStatusNotStarted (the executor then launches it the ordinary way).
  void submit(DispatchTask task, TimePoint now);
  void on_message(const std::string& identity, protocol::PoolMessage message, TimePoint now);
  // The pool's connection closed (ZeroMQ's socket monitor): it is lost unless it sends a message
  // within disconnect_grace. Unknown identities: ignored.
  void disconnected(const std::string& identity, TimePoint now);
  // Every pool of this block is lost at once (its process is gone, says the provider); their
  // tasks fail with ManagerLost and `reason`. Returns how many pools that was.
  std::size_t lose_block(const std::string& block_id, const std::string& reason);
  // Heartbeats out, lost pools detected (silent for heartbeat_threshold, or disconnected for
  // disconnect_grace).
  void tick(TimePoint now);
  // Stop sending tasks to a pool (hold), or also ask it to finish and exit (drain).
  bool hold(const std::string& pool_id, bool held);
  bool drain(const std::string& pool_id);
  // Stops a task: a queued one is dropped and completed at once with kStatusCancelled; for one
  // on a pool, CANCEL goes to that pool, which answers with a result. Unknown ids: ignored.
  void cancel(std::uint64_t task_id);
  // Send SHUTDOWN to every pool (interchange stopping).
  void shutdown_all();
  // The largest capacity a registered pool offers tasks that ask for resources, and the longest
  // time a block runs (0: no end); nullopt without pools. For messages and tests.
  std::optional<protocol::Resources> largest_pool() const;

  std::vector<PoolInfo> pools(TimePoint now) const;
  std::size_t queued() const { return queued_.size() + placed_ids_.size() + held_by_.size(); }
  std::size_t in_flight() const;
  // The earliest time tick() has work to do.
  TimePoint next_deadline() const;

  // Outputs, taken by the shell after each call. take_outbox() first hands up to max_tasks
  // queued tasks to pools with free capacity: dispatching once per round of input (not per
  // submitted task or per RESULTS message) is what makes TASKS messages carry many tasks, and
  // the bound keeps a round short when a million tasks wait (the shell's loss checks run
  // between rounds).
  std::vector<std::pair<std::string, protocol::InterchangeMessage>> take_outbox(
      std::size_t max_tasks = static_cast<std::size_t>(-1));
  // Queued tasks and a pool with room for them: take_outbox() would send tasks.
  bool can_dispatch() const { return !queued_.empty() && !open_.empty(); }
  std::vector<Completed> take_completed() { return take_reserving(completed_); }
  std::vector<PoolEvent> take_events() { return std::exchange(events_, {}); }
  std::vector<PoolUsage> take_usage() { return std::exchange(usage_, {}); }

 private:
  struct Pool;
  using PoolList = std::list<Pool*>;
  // Pools that offer the same capacity to tasks asking for resources (cores, memory, gpus and
  // the time their blocks run): an executor's blocks have one or a few shapes, so placing such a
  // task looks at each shape once, not at each pool.
  struct Shape {
    protocol::Resources capacity;  // running_time: the block's walltime less the grace (0: no end)
    bool operator<(const Shape& o) const {
      return std::tie(capacity.cores, capacity.memory_mb, capacity.gpus, capacity.running_time) <
             std::tie(o.capacity.cores, o.capacity.memory_mb, o.capacity.gpus, o.capacity.running_time);
    }
  };
  // Pools in no order: adding, removing and picking one cost O(1) (each pool keeps its index in
  // the member Slot), which matters because a pool joins and leaves such a set with nearly
  // every task it gets and returns.
  template <std::size_t Pool::*Slot>
  struct PoolSet {
    static constexpr std::size_t kOut = static_cast<std::size_t>(-1);
    std::vector<Pool*> members;
    void add(Pool& p) {
      if (p.*Slot != kOut) return;
      p.*Slot = members.size();
      members.push_back(&p);
    }
    void remove(Pool& p) {
      if (p.*Slot == kOut) return;
      Pool* last = members.back();
      members[p.*Slot] = last;
      last->*Slot = p.*Slot;
      members.pop_back();
      p.*Slot = kOut;
    }
    bool empty() const { return members.empty(); }
    std::size_t size() const { return members.size(); }
    Pool& operator[](std::size_t i) const { return *members[i]; }
  };
  struct ShapeGroup;
  // A task on a pool: in in_flight_ by id, and in its pool's list (lose() fails them all). One
  // hash table for both (rather than a table per pool and an owner table) saves an insert and an
  // erase per task; its nodes do not move, so the list links them directly.
  struct InFlight {
    std::uint64_t task_id = 0;
    Pool* pool = nullptr;
    InFlight* prev = nullptr;
    InFlight* next = nullptr;
  };
  struct Pool {
    std::string identity;
    protocol::Register info;
    InFlight* tasks = nullptr;  // its tasks in flight (InFlight::prev/next)
    std::size_t in_flight = 0;  // how many
    // Followers sent here whose input has not come back yet -> the task they wait for. If the
    // pool is lost, these never started.
    std::unordered_map<std::uint64_t, std::uint64_t> waiting_followers;
    bool working = false;      // it has sent results (PoolEvent::working was reported)
    bool short_tasks = false;  // its latest timed results ran within kShortTask
    std::unordered_set<std::string> known_functions;
    TimePoint last_heard;
    TimePoint last_sent;
    TimePoint idle_since;
    std::optional<TimePoint> disconnected_at;  // its connection closed then, and it has sent nothing since
    bool held = false;
    bool draining = false;
    std::uint64_t serial = 0;         // this registration's number (recent_owner_ outlives pools)
    std::size_t open_slot = static_cast<std::size_t>(-1);  // its index in open_ (PoolSet)
    PoolList::iterator by_heard;      // its place in by_heard_
    PoolList::iterator by_sent;       // its place in by_sent_
    ShapeGroup* shape = nullptr;
    std::size_t shape_slot = static_cast<std::size_t>(-1);  // its index in shape->open_endless
    bool shape_open = false;              // in shape->open_ending
    TimePoint stops_at = TimePoint::max();  // it stops running tasks then (its block ends): drained
  };
  struct ShapeGroup {
    std::size_t pools = 0;
    // Its open pools: those whose blocks have no known end (nearly all) in no order, the others
    // by when they stop running tasks.
    PoolSet<&Pool::shape_slot> open_endless;
    std::set<std::pair<TimePoint, Pool*>> open_ending;
  };
  // A task in the queue: a DispatchTask without what few tasks have (inputs, out-of-band
  // buffers, an MPI request) and without its priority (its bucket's key), so that a queued task costs the driver
  // under 200 bytes (BENCHMARKS.md, "One interchange, many pools"). Followers are never queued.
  struct QueuedTask {
    struct Extras {
      std::vector<protocol::Bytes> inputs;
      std::vector<protocol::SharedBuffer> buffers;
      protocol::MpiRequest mpi;
    };
    std::uint64_t task_id = 0;
    int kind = protocol::kKindPython;
    bool cancelled = false;  // left in its bucket (emptied) until it reaches the front
    protocol::Bytes fn_hash;
    protocol::Bytes payload;
    std::unique_ptr<Extras> extras;  // null when it has none of them
  };

  // The vector's contents, leaving it with room for as many: it grows to about the same size
  // each round, and growing it by doubling again cost several large allocations per round.
  template <class T>
  static std::vector<T> take_reserving(std::vector<T>& v) {
    std::vector<T> out;
    out.reserve(v.size());
    out.swap(v);
    return out;
  }
  void on_register(const std::string& identity, const protocol::Register& r, TimePoint now);
  void on_results(Pool& pool, protocol::Results& r, TimePoint now);
  void dispatch(TimePoint now, std::size_t max_tasks);
  // The first live task of the queue, taken out (the queue must hold one).
  DispatchTask pop_queued();
  // Removes cancelled tasks from the buckets (they hold no bytes, but a slot each).
  void drop_cancelled();
  void submit_follower(DispatchTask task, TimePoint now);
  // Adds a task to a batch for the pool, then the followers held for it (depth first).
  void add_to_batch(Pool& pool, DispatchTask&& t, protocol::Tasks& batch);
  void not_started(std::uint64_t task_id, const std::string& why);
  // Completes the followers held for a task that will not run here (cancelled while queued).
  void release_held(std::uint64_t task_id, const std::string& why);
  void remember_owner(std::uint64_t task_id, const Pool& pool);
  void lose(const std::string& identity, const std::string& reason);
  // lose() with a lost event, for pools given up on by the interchange.
  void give_up(const std::string& identity, const std::string& why);
  void send(Pool& pool, protocol::InterchangeMessage m, TimePoint now);
  std::size_t capacity(const Pool& p) const;
  // A task goes to a pool (track) and leaves it (untrack: result; unlink: the entry stays).
  void track(Pool& pool, std::uint64_t task_id);
  void untrack(std::unordered_map<std::uint64_t, InFlight>::iterator task);
  void unlink(InFlight& task);
  bool on_pool(std::uint64_t task_id, const Pool& pool) const;
  // Puts the pool in open_ or takes it out, after anything that changes its capacity or state.
  void update_open(Pool& pool);
  // Tasks that ask for resources (dispatcher.cpp, "Resources").
  void submit_placed(DispatchTask&& task);
  void add_shape(Pool& pool, TimePoint now);
  void remove_shape(Pool& pool);
  void set_shape_open(Pool& pool, bool open);
  Pool* pick_placed(const protocol::Resources& r, TimePoint now) const;
  bool could_hold(const protocol::Resources& r) const;
  void dispatch_placed(TimePoint now);
  void fail_unsatisfiable(std::uint64_t task_id, const protocol::Resources& r);
  void drain_pool(Pool& pool);

  DispatcherConfig config_;
  std::unordered_map<std::string, Pool> pools_;           // by ZeroMQ identity (nodes: stable addresses)
  std::unordered_multimap<std::string, Pool*> by_pool_id_;  // for hold() and drain()
  // Pools not held or draining and with free capacity (a random one is taken).
  PoolSet<&Pool::open_slot> open_;
  // Every pool, least recently heard from first / least recently sent to first.
  PoolList by_heard_;
  PoolList by_sent_;
  // (when, identity) of each disconnected() call, in time order; checked by tick() after disconnect_grace.
  std::deque<std::pair<TimePoint, std::string>> disconnects_;
  // Queued tasks by priority (smaller first), each bucket in submission order. A deque keeps
  // the addresses of its elements when tasks are added at its back or taken from its front.
  std::map<int, std::deque<QueuedTask>> queue_;
  std::unordered_map<std::uint64_t, QueuedTask*> queued_;  // the live queued tasks by id
  std::size_t cancelled_in_queue_ = 0;
  // Tasks that ask for resources (cores, memory, gpus, running_time), whole, by
  // (priority, submission order); the shapes of the registered pools; pools whose blocks end.
  std::map<std::pair<int, std::uint64_t>, DispatchTask> placed_queue_;
  std::unordered_map<std::uint64_t, std::pair<int, std::uint64_t>> placed_ids_;
  std::uint64_t placed_sequence_ = 0;
  std::map<Shape, ShapeGroup> shapes_;
  std::set<std::pair<TimePoint, Pool*>> ending_;  // by when they stop running tasks
  std::unordered_map<std::string, protocol::Bytes> functions_;
  // Followers of tasks still queued here (or themselves held), by the task they follow.
  std::unordered_map<std::uint64_t, std::vector<DispatchTask>> held_;
  std::unordered_map<std::uint64_t, std::uint64_t> held_by_;  // follower -> the task it follows
  // Which pool ran the latest results (a bounded window): a follower submitted just after its
  // input came back still goes to that pool, which may still have the input.
  std::unordered_map<std::uint64_t, std::uint64_t> recent_owner_;  // task id -> the pool's serial
  std::deque<std::uint64_t> recent_order_;
  std::unordered_map<std::uint64_t, Pool*> by_serial_;
  std::uint64_t next_serial_ = 0;
  // The tasks on pools, by id (pools_'s nodes do not move; lose() erases a pool's tasks here
  // before the pool goes).
  std::unordered_map<std::uint64_t, InFlight> in_flight_;
  // Nodes of tasks that came back, for the next tasks sent (track(), untrack()): a task then
  // costs no malloc and free in the table, which were a tenth of the interchange thread with
  // 10,000 pools (BENCHMARKS.md, "the pools time their tasks").
  std::vector<std::unordered_map<std::uint64_t, InFlight>::node_type> spare_in_flight_;
  std::vector<std::pair<std::string, protocol::InterchangeMessage>> outbox_;
  std::vector<Completed> completed_;
  std::vector<PoolEvent> events_;
  std::vector<PoolUsage> usage_;
  std::mt19937 rng_;
  TimePoint now_{};  // the time of the latest input, for take_outbox()'s dispatch
};

}  // namespace pervade::interchange
