#include "interchange/dispatcher.hpp"

#include <algorithm>
#include <cmath>

#include <fmt/format.h>

namespace pervade::interchange {

namespace {
constexpr auto kShortTask = std::chrono::milliseconds(10);  // see DispatcherConfig::short_task_prefetch
constexpr std::size_t kRecentOwners = 4096;                  // see Dispatcher::recent_owner_
// Cancelled tasks left in the queue's buckets before they are swept out (when they also
// outnumber the live ones): sweeping costs the queue's length, so it is done rarely.
constexpr std::size_t kCancelledToSweep = 4096;
// Spare nodes of in_flight_ kept for reuse (Dispatcher::spare_in_flight_), at most: a round of
// the interchange sends up to 65,536 tasks, and 48 bytes each is 3 MB.
constexpr std::size_t kSpareNodes = 65536;
double seconds(Clock::duration d) { return std::chrono::duration<double>(d).count(); }
Clock::duration duration(double s) {
  return std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(s));
}
// "3.11.7" -> "3.11"
std::string major_minor(const std::string& v) {
  auto first = v.find('.');
  if (first == std::string::npos) return v;
  auto second = v.find('.', first + 1);
  return second == std::string::npos ? v : v.substr(0, second);
}
}  // namespace

// A field added to DispatchTask must be carried through the queue: submit() and pop_queued().
// (resources are not: tasks that ask for them are queued whole, in placed_queue_.)
static_assert(sizeof(DispatchTask) == 240, "DispatchTask changed: carry the new field through Dispatcher::QueuedTask");

Dispatcher::Dispatcher(DispatcherConfig config) : config_(std::move(config)), rng_(config_.seed) {}

void Dispatcher::add_function(const protocol::Bytes& hash, protocol::Bytes fn) {
  functions_.try_emplace(hash, std::move(fn));
}

void Dispatcher::submit(DispatchTask task, TimePoint now) {
  if (!task.after.empty()) {
    now_ = now;
    submit_follower(std::move(task), now);
    return;
  }
  now_ = now;
  if (!task.resources.empty()) {
    submit_placed(std::move(task));
    return;
  }
  if (queued_.contains(task.task_id)) return;  // queued already (submitted twice)
  QueuedTask& q = queue_[task.priority].emplace_back();
  q.task_id = task.task_id;
  q.kind = task.kind;
  q.fn_hash = std::move(task.fn_hash);
  q.payload = std::move(task.payload);
  if (!task.inputs.empty() || !task.buffers.empty() || !task.mpi.empty())
    q.extras = std::make_unique<QueuedTask::Extras>(
        QueuedTask::Extras{std::move(task.inputs), std::move(task.buffers), std::move(task.mpi)});
  queued_.emplace(q.task_id, &q);
}

DispatchTask Dispatcher::pop_queued() {
  for (;;) {
    auto bucket = queue_.begin();
    QueuedTask q = std::move(bucket->second.front());
    DispatchTask t;
    t.priority = bucket->first;
    bucket->second.pop_front();
    if (bucket->second.empty()) queue_.erase(bucket);
    if (q.cancelled) {
      --cancelled_in_queue_;
      continue;
    }
    queued_.erase(q.task_id);
    t.task_id = q.task_id;
    t.kind = q.kind;
    t.fn_hash = std::move(q.fn_hash);
    t.payload = std::move(q.payload);
    if (q.extras) {
      t.inputs = std::move(q.extras->inputs);
      t.buffers = std::move(q.extras->buffers);
      t.mpi = std::move(q.extras->mpi);
    }
    return t;
  }
}

void Dispatcher::drop_cancelled() {
  for (auto bucket = queue_.begin(); bucket != queue_.end();) {
    std::deque<QueuedTask> live;
    for (auto& q : bucket->second)
      if (!q.cancelled) queued_[q.task_id] = &live.emplace_back(std::move(q));
    bucket->second.swap(live);
    bucket = bucket->second.empty() ? queue_.erase(bucket) : std::next(bucket);
  }
  cancelled_in_queue_ = 0;
}

void Dispatcher::submit_follower(DispatchTask task, TimePoint now) {
  const std::uint64_t input = task.after.front().task_id;  // the kernel makes followers of one input
  if (queued_.contains(input) || placed_ids_.contains(input) || held_by_.contains(input)) {
    held_by_.emplace(task.task_id, input);
    held_[input].push_back(std::move(task));
    return;
  }
  Pool* pool = nullptr;
  if (auto o = in_flight_.find(input); o != in_flight_.end()) {
    pool = o->second.pool;
  } else if (auto r = recent_owner_.find(input); r != recent_owner_.end()) {
    if (auto p = by_serial_.find(r->second); p != by_serial_.end()) pool = p->second;
  }
  if (!pool || pool->draining) {
    not_started(task.task_id, "the task it follows is on no pool");
    return;
  }
  protocol::Tasks batch;
  add_to_batch(*pool, std::move(task), batch);
  send(*pool, std::move(batch), now);
  update_open(*pool);
}

void Dispatcher::add_to_batch(Pool& pool, DispatchTask&& t, protocol::Tasks& batch) {
  const std::uint64_t id = t.task_id;
  protocol::Task out;
  out.task_id = id;
  out.kind = t.kind;
  out.fn_hash = std::move(t.fn_hash);
  if (t.kind == protocol::kKindPython && !pool.known_functions.contains(out.fn_hash)) {
    if (auto fn = functions_.find(out.fn_hash); fn != functions_.end()) out.fn = fn->second;
    pool.known_functions.insert(out.fn_hash);
  }
  out.payload = std::move(t.payload);
  out.inputs = std::move(t.inputs);
  out.after = std::move(t.after);
  out.buffers = std::move(t.buffers);
  out.resources = t.resources;
  out.mpi = std::move(t.mpi);
  if (!out.after.empty() && in_flight_.contains(out.after.front().task_id))
    pool.waiting_followers.emplace(id, out.after.front().task_id);
  if (config_.report_places && pool.in_flight == 0)
    events_.push_back({PoolEvent::busy, pool.identity, pool.info.pool_id, pool.info.block_id, {}});
  track(pool, id);
  batch.tasks.push_back(std::move(out));
  if (auto h = held_.find(id); h != held_.end()) {
    std::vector<DispatchTask> followers = std::move(h->second);
    held_.erase(h);
    for (auto& f : followers) {
      held_by_.erase(f.task_id);
      add_to_batch(pool, std::move(f), batch);
    }
  }
}

void Dispatcher::not_started(std::uint64_t task_id, const std::string& why) {
  completed_.push_back(Completed{task_id, protocol::kStatusNotStarted, why, false});
  release_held(task_id, why);
}

void Dispatcher::release_held(std::uint64_t task_id, const std::string& why) {
  auto h = held_.find(task_id);
  if (h == held_.end()) return;
  std::vector<DispatchTask> followers = std::move(h->second);
  held_.erase(h);
  for (auto& f : followers) {
    held_by_.erase(f.task_id);
    not_started(f.task_id, why);
  }
}

void Dispatcher::remember_owner(std::uint64_t task_id, const Pool& pool) {
  if (auto r = recent_owner_.find(task_id); r != recent_owner_.end()) {
    r->second = pool.serial;
    return;
  }
  recent_order_.push_back(task_id);
  if (recent_order_.size() <= kRecentOwners) {
    recent_owner_.emplace(task_id, pool.serial);
    return;
  }
  // The window is full: the oldest entry's node takes the new one (no free and malloc per result).
  auto node = recent_owner_.extract(recent_order_.front());
  recent_order_.pop_front();
  node.key() = task_id;
  node.mapped() = pool.serial;
  recent_owner_.insert(std::move(node));
}

void Dispatcher::on_message(const std::string& identity, protocol::PoolMessage message, TimePoint now) {
  now_ = now;
  if (auto* r = std::get_if<protocol::Register>(&message)) {
    on_register(identity, *r, now);
    return;
  }
  auto it = pools_.find(identity);
  if (it == pools_.end()) {
    // Not registered, or already given up on as lost (its tasks were failed and retried
    // elsewhere): a pool that is still alive must not go on holding a block and workers that
    // get no tasks, so it is told to exit. Its results are dropped.
    outbox_.emplace_back(identity, protocol::Shutdown{});
    return;
  }
  Pool& pool = it->second;
  pool.last_heard = now;
  pool.disconnected_at.reset();  // it is connected (again)
  by_heard_.splice(by_heard_.end(), by_heard_, pool.by_heard);
  if (auto* results = std::get_if<protocol::Results>(&message)) {
    on_results(pool, *results, now);
  } else if (auto* usage = std::get_if<protocol::Usage>(&message)) {
    usage_.push_back(PoolUsage{pool.info.pool_id, std::move(usage->samples)});
  } else if (std::holds_alternative<protocol::Drained>(message)) {
    events_.push_back({PoolEvent::drained, identity, pool.info.pool_id, pool.info.block_id, {}});
    lose(identity, "pool " + pool.info.pool_id + " drained and exited");
  } else if (auto* failed = std::get_if<protocol::Failed>(&message)) {
    const std::string reason = "pool " + pool.info.pool_id + " on " + pool.info.hostname + " (block " +
                               pool.info.block_id + ") cannot run tasks: " + failed->reason;
    events_.push_back({PoolEvent::failed, identity, pool.info.pool_id, pool.info.block_id, reason});
    lose(identity, reason);
  }
  // Heartbeat: last_heard is all it carries, and observers are told.
  if (config_.report_places && std::holds_alternative<protocol::Heartbeat>(message))
    events_.push_back({PoolEvent::heartbeat, identity, pool.info.pool_id, pool.info.block_id, {}});
}

void Dispatcher::on_register(const std::string& identity, const protocol::Register& r, TimePoint now) {
  std::string reason;
  if (r.protocol_version != protocol::kProtocolVersion) {
    reason = "protocol version " + std::to_string(r.protocol_version) + " of pool " + r.pool_id +
             " does not match the interchange's version " + std::to_string(protocol::kProtocolVersion);
  } else if (!r.python_version.empty() && !config_.python_version.empty() &&
             major_minor(r.python_version) != major_minor(config_.python_version)) {
    reason = "pool " + r.pool_id + " runs Python " + r.python_version + " but the driver runs Python " +
             config_.python_version + ": pickled tasks need the same Python major.minor";
  } else if (r.worker_count < 1 || r.worker_count > kMaxWorkerCount) {
    reason = "pool " + r.pool_id + " registered with " + std::to_string(r.worker_count) + " workers (1 to " +
             std::to_string(kMaxWorkerCount) + " allowed)";
  } else if (pools_.contains(identity)) {
    reason = "pool identity " + identity + " is already registered";
  }
  if (!reason.empty()) {
    outbox_.emplace_back(identity, protocol::Refused{reason});
    events_.push_back({PoolEvent::refused, identity, r.pool_id, r.block_id, reason});
    return;
  }
  Pool pool;
  pool.identity = identity;
  pool.info = r;
  pool.last_heard = now;
  pool.idle_since = now;
  pool.serial = next_serial_++;
  auto [it, inserted] = pools_.emplace(identity, std::move(pool));
  Pool& added = it->second;
  by_serial_.emplace(added.serial, &added);
  added.by_heard = by_heard_.insert(by_heard_.end(), &added);
  added.by_sent = by_sent_.insert(by_sent_.end(), &added);
  by_pool_id_.emplace(r.pool_id, &added);
  add_shape(added, now);
  send(added, protocol::Registered{config_.heartbeat_period, config_.heartbeat_threshold, config_.resource_interval},
       now);
  update_open(added);
  events_.push_back({PoolEvent::registered, identity, r.pool_id, r.block_id, {}, r.hostname, r.python_version,
                     r.worker_count, r.cpu_count, r.total_memory});
}

void Dispatcher::on_results(Pool& pool, protocol::Results& r, TimePoint now) {
  // The pool's tasks are short while every result that ran reports a run time within
  // kShortTask. The pool times them (TaskResult::run_time): the round trip, all the interchange
  // could measure, grows with the number of pools whatever the tasks do (ZeroMQ's queues, the
  // pools' hosts, the interchange's own input), and with 10,000 pools of one worker it made
  // every no-op task look slow: one task per message, two messages per task (BENCHMARKS.md,
  // "One interchange, many pools: the pools time their tasks"). Results of tasks that did not
  // run to their end (refused, cancelled before they started, their worker died) say nothing
  // of how long tasks take, and leave the judgement as it was.
  std::size_t known = 0;
  bool timed = false;
  bool all_short = true;
  for (auto& result : r.results) {
    // Only the pool that holds a task may finish it: a late or forged result is dropped.
    auto it = in_flight_.find(result.task_id);
    if (it == in_flight_.end() || it->second.pool != &pool) continue;
    ++known;
    if (result.run_time) {
      timed = true;
      all_short = all_short && *result.run_time < kShortTask;
    }
    untrack(it);
    remember_owner(result.task_id, pool);
    completed_.push_back(
        Completed{result.task_id, result.status, std::move(result.payload), false, std::move(result.buffers)});
    if (config_.report_places) completed_.back().pool_id = pool.info.pool_id;
  }
  if (known == 0) return;
  if (!pool.working) {
    pool.working = true;
    events_.push_back({PoolEvent::working, pool.identity, pool.info.pool_id, pool.info.block_id, {}});
  }
  // Followers whose input came back have (or will have) started: a later loss is ManagerLost.
  if (!pool.waiting_followers.empty()) {
    std::erase_if(pool.waiting_followers, [&](const auto& f) {
      return !on_pool(f.first, pool) || !on_pool(f.second, pool);
    });
  }
  if (timed) pool.short_tasks = all_short;
  if (pool.in_flight == 0) {
    pool.idle_since = now;
    if (config_.report_places)
      events_.push_back({PoolEvent::idle, pool.identity, pool.info.pool_id, pool.info.block_id, {}});
  }
  update_open(pool);
}

std::size_t Dispatcher::capacity(const Pool& p) const {
  const int workers = std::max(0, p.info.worker_count);
  const int bonus = p.short_tasks ? workers * std::max(0, config_.short_task_prefetch) : 0;
  const std::size_t limit = static_cast<std::size_t>(workers) + static_cast<std::size_t>(std::max({0, p.info.prefetch, bonus}));
  return p.in_flight >= limit ? 0 : limit - p.in_flight;
}

void Dispatcher::track(Pool& pool, std::uint64_t task_id) {
  auto [it, added] = [&] {
    if (spare_in_flight_.empty()) return in_flight_.try_emplace(task_id);
    auto node = std::move(spare_in_flight_.back());
    spare_in_flight_.pop_back();
    node.key() = task_id;
    auto r = in_flight_.insert(std::move(node));
    if (!r.inserted) spare_in_flight_.push_back(std::move(r.node));
    return std::pair{r.position, r.inserted};
  }();
  InFlight& t = it->second;
  if (!added) {  // sent again while a pool held it (not done by the executor): the latest pool holds it
    Pool& before = *t.pool;
    unlink(t);
    update_open(before);
  }
  t = InFlight{task_id, &pool, nullptr, pool.tasks};
  if (pool.tasks) pool.tasks->prev = &t;
  pool.tasks = &t;
  ++pool.in_flight;
}

void Dispatcher::unlink(InFlight& t) {
  (t.prev ? t.prev->next : t.pool->tasks) = t.next;
  if (t.next) t.next->prev = t.prev;
  --t.pool->in_flight;
}

void Dispatcher::untrack(std::unordered_map<std::uint64_t, InFlight>::iterator task) {
  unlink(task->second);
  if (spare_in_flight_.size() < kSpareNodes)
    spare_in_flight_.push_back(in_flight_.extract(task));
  else
    in_flight_.erase(task);
}

bool Dispatcher::on_pool(std::uint64_t task_id, const Pool& pool) const {
  auto it = in_flight_.find(task_id);
  return it != in_flight_.end() && it->second.pool == &pool;
}

std::vector<std::pair<std::string, protocol::InterchangeMessage>> Dispatcher::take_outbox(std::size_t max_tasks) {
  dispatch(now_, max_tasks);
  return take_reserving(outbox_);
}

void Dispatcher::update_open(Pool& pool) {
  const bool open = !pool.held && !pool.draining && capacity(pool) > 0;
  set_shape_open(pool, open);
  if (open)
    open_.add(pool);
  else
    open_.remove(pool);
}

void Dispatcher::dispatch(TimePoint now, std::size_t max_tasks) {
  // A random pool among those with room spreads load over pools; each takes up to its free
  // capacity, in one TASKS message, and is then full (or the queue is empty): the cost is the
  // tasks sent plus the pools that take them, whatever the number of pools.
  if (!placed_queue_.empty()) dispatch_placed(now);
  while (max_tasks > 0 && !queued_.empty() && !open_.empty()) {
    Pool& pool = open_[std::uniform_int_distribution<std::size_t>(0, open_.size() - 1)(rng_)];
    protocol::Tasks batch;
    const std::size_t take = std::min(capacity(pool), max_tasks);
    max_tasks -= take;
    batch.tasks.reserve(std::min(take, queued_.size()));  // one allocation, not one per doubling
    for (std::size_t n = take; n > 0 && !queued_.empty(); --n) add_to_batch(pool, pop_queued(), batch);
    if (!batch.tasks.empty()) send(pool, std::move(batch), now);
    update_open(pool);
  }
}

void Dispatcher::send(Pool& pool, protocol::InterchangeMessage m, TimePoint now) {
  if (now > pool.last_sent) {  // (drain() sends without moving the next heartbeat)
    pool.last_sent = now;
    by_sent_.splice(by_sent_.end(), by_sent_, pool.by_sent);
  }
  outbox_.emplace_back(pool.identity, std::move(m));
}

void Dispatcher::lose(const std::string& identity, const std::string& reason) {
  auto it = pools_.find(identity);
  if (it == pools_.end()) return;
  Pool& pool = it->second;
  for (InFlight* t = pool.tasks; t != nullptr;) {
    const std::uint64_t id = t->task_id;
    t = t->next;
    in_flight_.erase(id);
    if (pool.waiting_followers.contains(id))
      completed_.push_back(Completed{id, protocol::kStatusNotStarted, reason, false});
    else
      completed_.push_back(Completed{id, protocol::kStatusWorkerLost, reason, true});
  }
  set_shape_open(pool, false);
  open_.remove(pool);
  remove_shape(pool);
  by_serial_.erase(pool.serial);
  by_heard_.erase(pool.by_heard);
  by_sent_.erase(pool.by_sent);
  for (auto [p, end] = by_pool_id_.equal_range(pool.info.pool_id); p != end; ++p)
    if (p->second == &pool) {
      by_pool_id_.erase(p);
      break;
    }
  pools_.erase(it);
}

void Dispatcher::disconnected(const std::string& identity, TimePoint now) {
  auto it = pools_.find(identity);
  if (it == pools_.end() || it->second.disconnected_at) return;
  it->second.disconnected_at = now;
  disconnects_.emplace_back(now, identity);
}

std::size_t Dispatcher::lose_block(const std::string& block_id, const std::string& reason) {
  std::vector<std::string> lost;
  for (const auto& [id, pool] : pools_)
    if (pool.info.block_id == block_id) lost.push_back(id);
  for (const auto& id : lost) give_up(id, reason);
  return lost.size();
}

void Dispatcher::give_up(const std::string& identity, const std::string& why) {
  const Pool& pool = pools_.at(identity);
  const std::string reason =
      "pool " + pool.info.pool_id + " on " + pool.info.hostname + " (block " + pool.info.block_id + ") " + why;
  events_.push_back({PoolEvent::lost, identity, pool.info.pool_id, pool.info.block_id, reason});
  lose(identity, reason);
}

void Dispatcher::tick(TimePoint now) {
  // The lists are ordered by time: only the pools at their front can be due.
  const auto threshold = duration(config_.heartbeat_threshold);
  while (!by_heard_.empty() && now - by_heard_.front()->last_heard >= threshold)
    give_up(std::string(by_heard_.front()->identity),
            "sent nothing for " + fmt::format("{}", config_.heartbeat_threshold) + " s");
  // Disconnections come in time order; an entry whose pool came back (or is gone) is stale.
  const auto grace = duration(config_.disconnect_grace);
  while (!disconnects_.empty() && now - disconnects_.front().first >= grace) {
    auto [when, identity] = std::move(disconnects_.front());
    disconnects_.pop_front();
    auto it = pools_.find(identity);
    if (it != pools_.end() && it->second.disconnected_at == when)
      give_up(identity, "closed its connection and did not come back within " +
                            fmt::format("{}", config_.disconnect_grace) + " s");
  }
  // Pools whose blocks end soon stop getting tasks and finish what they run.
  while (!ending_.empty() && ending_.begin()->first <= now) {
    Pool& pool = *ending_.begin()->second;
    ending_.erase(ending_.begin());
    drain_pool(pool);
  }
  // Each heartbeat moves its pool to the back: at most one per pool per tick.
  const auto period = duration(config_.heartbeat_period);
  auto next = by_sent_.begin();
  for (std::size_t n = by_sent_.size(); n > 0 && now - (*next)->last_sent >= period; --n) {
    Pool& pool = **next++;
    send(pool, protocol::Heartbeat{}, now);
  }
  now_ = now;
}

TimePoint Dispatcher::next_deadline() const {
  TimePoint next = TimePoint::max();
  if (!pools_.empty())
    next = std::min(by_heard_.front()->last_heard + duration(config_.heartbeat_threshold),
                    by_sent_.front()->last_sent + duration(config_.heartbeat_period));
  if (!disconnects_.empty()) next = std::min(next, disconnects_.front().first + duration(config_.disconnect_grace));
  if (!ending_.empty()) next = std::min(next, ending_.begin()->first);
  return next;
}

bool Dispatcher::hold(const std::string& pool_id, bool held) {
  auto [p, end] = by_pool_id_.equal_range(pool_id);
  const bool found = p != end;
  for (; p != end; ++p) {
    p->second->held = held;
    update_open(*p->second);
  }
  return found;
}

bool Dispatcher::drain(const std::string& pool_id) {
  auto p = by_pool_id_.find(pool_id);
  if (p == by_pool_id_.end()) return false;
  drain_pool(*p->second);
  return true;
}

void Dispatcher::drain_pool(Pool& pool) {
  if (pool.draining) return;
  pool.draining = true;
  update_open(pool);
  send(pool, protocol::Drain{}, pool.last_sent);
}

void Dispatcher::cancel(std::uint64_t task_id) {
  if (auto p = placed_ids_.find(task_id); p != placed_ids_.end()) {
    placed_queue_.erase(p->second);
    placed_ids_.erase(p);
    completed_.push_back(Completed{task_id, protocol::kStatusCancelled, "cancelled before it was sent to a pool", false});
    release_held(task_id, "the task it follows was cancelled");
    return;
  }
  if (auto q = queued_.find(task_id); q != queued_.end()) {
    *q->second = QueuedTask{};  // its bytes are freed now; the slot when it reaches the front
    q->second->cancelled = true;
    queued_.erase(q);
    if (++cancelled_in_queue_ >= kCancelledToSweep && cancelled_in_queue_ > queued_.size()) drop_cancelled();
    completed_.push_back(Completed{task_id, protocol::kStatusCancelled, "cancelled before it was sent to a pool", false});
    release_held(task_id, "the task it follows was cancelled");
    return;
  }
  if (auto h = held_by_.find(task_id); h != held_by_.end()) {
    auto& list = held_[h->second];
    std::erase_if(list, [&](const DispatchTask& t) { return t.task_id == task_id; });
    if (list.empty()) held_.erase(h->second);
    held_by_.erase(h);
    completed_.push_back(Completed{task_id, protocol::kStatusCancelled, "cancelled before it was sent to a pool", false});
    release_held(task_id, "the task it follows was cancelled");
    return;
  }
  if (auto t = in_flight_.find(task_id); t != in_flight_.end()) send(*t->second.pool, protocol::Cancel{{task_id}}, now_);
}

void Dispatcher::shutdown_all() {
  for (auto& [id, pool] : pools_) outbox_.emplace_back(id, protocol::Shutdown{});
}

std::vector<PoolInfo> Dispatcher::pools(TimePoint now) const {
  std::vector<PoolInfo> out;
  for (const auto& [id, p] : pools_) {
    out.push_back(PoolInfo{id, p.info.pool_id, p.info.block_id, p.info.hostname, p.info.worker_count,
                           p.info.prefetch, p.in_flight,
                           p.in_flight == 0 ? seconds(now - p.idle_since) : 0.0, p.held, p.draining,
                           p.info.python_version, p.info.pervade_version});
  }
  std::sort(out.begin(), out.end(), [](const PoolInfo& a, const PoolInfo& b) { return a.pool_id < b.pool_id; });
  return out;
}

std::size_t Dispatcher::in_flight() const { return in_flight_.size(); }

// ---------------------------------------------------------------- Resources
// A task asking for cores, memory, gpus or a running_time goes only to a pool that can hold it:
// one whose capacity (its largest node) covers the request and that stops running tasks (its
// block's end less the grace) late enough for the running_time. Pools are grouped by shape;
// within a shape the open pool that runs longest is taken. Such tasks wait while no open pool
// fits; once pools are registered and none of their shapes could ever hold one (the provider's
// blocks are of the same shapes), it fails at once naming its request and the largest pool.
void Dispatcher::add_shape(Pool& pool, TimePoint now) {
  Shape shape{pool.info.capacity};
  shape.capacity.running_time = pool.info.walltime > 0 ? pool.info.walltime : 0;
  pool.shape = &shapes_[shape];
  ++pool.shape->pools;
  if (pool.info.ends_in > 0 && std::isfinite(pool.info.ends_in)) {
    pool.stops_at = now + duration(pool.info.ends_in);
    ending_.emplace(pool.stops_at, &pool);
  }
}

void Dispatcher::remove_shape(Pool& pool) {
  ending_.erase({pool.stops_at, &pool});
  if (--pool.shape->pools > 0) return;
  for (auto it = shapes_.begin(); it != shapes_.end(); ++it)
    if (&it->second == pool.shape) {
      shapes_.erase(it);
      break;
    }
}

void Dispatcher::set_shape_open(Pool& pool, bool open) {
  if (!pool.shape) return;
  if (pool.stops_at == TimePoint::max()) {
    if (open)
      pool.shape->open_endless.add(pool);
    else
      pool.shape->open_endless.remove(pool);
    return;
  }
  if (open == pool.shape_open) return;
  pool.shape_open = open;
  if (open)
    pool.shape->open_ending.emplace(pool.stops_at, &pool);
  else
    pool.shape->open_ending.erase({pool.stops_at, &pool});
}

namespace {
bool covers(const protocol::Resources& capacity, const protocol::Resources& r) {
  return r.cores <= capacity.cores && r.memory_mb <= capacity.memory_mb && r.gpus <= capacity.gpus &&
         (capacity.running_time == 0 || r.running_time <= capacity.running_time);
}
}  // namespace

bool Dispatcher::could_hold(const protocol::Resources& r) const {
  return std::any_of(shapes_.begin(), shapes_.end(), [&](const auto& s) { return covers(s.first.capacity, r); });
}

Dispatcher::Pool* Dispatcher::pick_placed(const protocol::Resources& r, TimePoint now) const {
  for (const auto& [shape, group] : shapes_) {
    if (!covers(shape.capacity, r)) continue;
    if (!group.open_endless.empty()) return &group.open_endless[group.open_endless.size() - 1];  // runs longest
    if (group.open_ending.empty()) continue;
    const auto& [stops_at, pool] = *group.open_ending.rbegin();
    if (r.running_time > 0 && (stops_at <= now || seconds(stops_at - now) < r.running_time)) continue;
    return pool;
  }
  return nullptr;
}

std::optional<protocol::Resources> Dispatcher::largest_pool() const {
  if (shapes_.empty()) return std::nullopt;
  protocol::Resources most;
  bool endless = false;  // a block without an end runs any task
  for (const auto& [shape, group] : shapes_) {
    const auto& c = shape.capacity;
    if (std::tie(c.cores, c.memory_mb, c.gpus) > std::tie(most.cores, most.memory_mb, most.gpus)) {
      most.cores = c.cores;
      most.memory_mb = c.memory_mb;
      most.gpus = c.gpus;
    }
    endless = endless || c.running_time == 0;
    most.running_time = std::max(most.running_time, c.running_time);
  }
  if (endless) most.running_time = 0;
  return most;
}

void Dispatcher::fail_unsatisfiable(std::uint64_t task_id, const protocol::Resources& r) {
  const protocol::Resources most = *largest_pool();
  const std::string text = fmt::format(
      "the task asks for {} cores, {} MB, {} GPUs{}, more than any pool of this executor has (the largest: {} cores, "
      "{} MB, {} GPUs{})",
      r.cores, r.memory_mb, r.gpus, r.running_time > 0 ? fmt::format(" and a running_time of {} s", r.running_time) : "",
      most.cores, most.memory_mb, most.gpus,
      most.running_time > 0 ? fmt::format("; blocks run tasks for {} s", most.running_time) : "");
  completed_.push_back(
      Completed{task_id, protocol::kStatusInvalid, protocol::unsatisfiable_payload(r, most, text), false});
  release_held(task_id, "the task it follows cannot run on any pool");
}

// Tasks that ask for resources keep all their fields here (the compact queue has no room for
// them), in priority then submission order.
void Dispatcher::submit_placed(DispatchTask&& task) {
  if (placed_ids_.contains(task.task_id)) return;  // queued already (submitted twice)
  if (!shapes_.empty() && !could_hold(task.resources)) {
    fail_unsatisfiable(task.task_id, task.resources);
    return;
  }
  const std::pair<int, std::uint64_t> key{task.priority, placed_sequence_++};
  placed_ids_.emplace(task.task_id, key);
  placed_queue_.emplace(key, std::move(task));
}

void Dispatcher::dispatch_placed(TimePoint now) {
  constexpr std::size_t kMaxScan = 256;  // tasks that fit no open pool looked at per round
  std::map<Pool*, protocol::Tasks> batches;
  std::size_t skipped = 0;
  for (auto it = placed_queue_.begin(); it != placed_queue_.end() && skipped < kMaxScan && !open_.empty();) {
    const protocol::Resources& r = it->second.resources;
    const std::uint64_t id = it->second.task_id;
    Pool* pool = nullptr;
    if (!could_hold(r)) {
      fail_unsatisfiable(id, r);
    } else if ((pool = pick_placed(r, now)) != nullptr) {
      add_to_batch(*pool, std::move(it->second), batches[pool]);
      update_open(*pool);
    } else {
      ++it;
      ++skipped;
      continue;
    }
    placed_ids_.erase(id);
    it = placed_queue_.erase(it);
  }
  for (auto& [pool, batch] : batches) send(*pool, std::move(batch), now);
}

}  // namespace pervade::interchange
