#include "pool/pool_core.hpp"

#include <algorithm>
#include <utility>

#include <fmt/format.h>

#include "util/hex.hpp"

namespace pervade::pool {

namespace proto = pervade::protocol;

namespace {

// What holding the task as a worker's second costs: its copy (Slot::waiting). Out-of-band
// buffers are shared, not copied, so a task with a big argument may wait in a worker too.
std::size_t size_of(const proto::Task& t) {
  std::size_t n = t.payload.size();
  for (const auto& i : t.inputs) n += i.size();
  return n;
}

// A shell command has no inputs: for it, `after` only orders.
void put_input(proto::Task& t, const proto::After& a, const proto::Bytes& value) {
  if (a.input < t.inputs.size()) t.inputs[a.input] = value;
}

}  // namespace

PoolCore::PoolCore(PoolCoreConfig config) : config_(std::move(config)) {
  slots_.resize(static_cast<std::size_t>(std::max(0, config_.workers)));
  for (NodeCapacity& n : config_.nodes) nodes_.emplace_back(std::move(n));
  node_slots_.resize(std::max<std::size_t>(nodes_.size(), 1));
  node_idle_.assign(node_slots_.size(), 0);
  for (std::size_t r = 0; r < slots_.size(); ++r) {
    const int node = r < config_.slot_node.size() ? config_.slot_node[r] : 0;
    slots_[r].node = node;
    node_slots_[static_cast<std::size_t>(node)].push_back(static_cast<int>(r));
  }
  for (std::size_t n = 0; n < nodes_.size(); ++n) by_free_cores_.emplace(nodes_[n].free_cores(), static_cast<int>(n));
  if (config_.mpi) mpi_.emplace(std::move(*config_.mpi));
}

// ---------------------------------------------------------------- the interchange
void PoolCore::accept(proto::Tasks& tasks) {
  for (proto::Task& t : tasks.tasks) {
    if (draining_) {
      refuse(t.task_id, fmt::format("pool {} is draining and accepts no more tasks", config_.pool_id));
      continue;
    }
    if (t.kind == proto::kKindPython) {
      if (!config_.python) {
        refuse(t.task_id, fmt::format("pool {} runs no Python workers (--no-python)", config_.pool_id));
        continue;
      }
      if (t.fn) {
        fns_[t.fn_hash] = std::move(*t.fn);
        t.fn.reset();
      }
      if (!fns_.contains(t.fn_hash)) {
        refuse(t.task_id,
               fmt::format("pool {} never received the function with hash {}", config_.pool_id, detail::to_hex(t.fn_hash)));
        continue;
      }
    } else if (t.kind != proto::kKindShell) {
      refuse(t.task_id, fmt::format("pool {} does not know task kind {}", config_.pool_id, t.kind));
      continue;
    }
    if (!t.mpi.empty()) {
      if (!mpi_) {
        refuse_invalid(t.task_id, "num_nodes",
                       fmt::format("pool {} is not in MPI mode (use MPIExecutor or enable_mpi_mode=True)", config_.pool_id));
        continue;
      }
      if (t.kind != proto::kKindPython) {
        refuse_invalid(t.task_id, "num_nodes", "MPI requests are for apps (Python tasks), not the pool's shell commands");
        continue;
      }
      if (auto misfit = mpi_->never_fits(t.mpi)) {
        refuse_invalid(t.task_id, misfit->key, fmt::format("{} (pool {})", misfit->why, config_.pool_id));
        continue;
      }
    }
    if (t.resources.wants_node()) {
      if (t.kind != proto::kKindPython) {
        refuse(t.task_id, "cores, memory and gpus are for Python tasks; shell commands run on the pool's threads");
        continue;
      }
      if (std::none_of(nodes_.begin(), nodes_.end(), [&](const NodeLedger& n) { return n.could_hold(t.resources); })) {
        const ResourceRequest largest = largest_node();
        report(t.task_id, proto::kStatusInvalid,
               proto::unsatisfiable_payload(
                   t.resources, largest,
                   fmt::format("the task asks for {}, more than any node of pool {} has (the largest: {})",
                               describe(t.resources), config_.pool_id,
                               nodes_.empty() ? "no node: the pool was started without resources" : describe(largest))),
               false);
        continue;
      }
    }
    if (t.after.empty())
      start_task(std::move(t));
    else
      accept_follower(std::move(t));
  }
}

// A task still queued (or held as a follower) is answered at once; one that a worker holds is
// stopped once the shell has read what the worker sent (the task it really runs is known only
// then): stop_if_cancelled().
CancelOutcome PoolCore::cancel(std::uint64_t id, int* rank) {
  auto is_it = [&](const proto::Task& t) { return t.task_id == id; };
  if (auto q = std::find_if(queue_.begin(), queue_.end(), is_it); q != queue_.end()) {
    queue_.erase(q);
    report(id, proto::kStatusCancelled, "cancelled before it started", false);
    return CancelOutcome::answered;
  }
  for (auto [queue, passes] : {std::pair{&resource_queue_, &head_passes_}, std::pair{&mpi_queue_, &mpi_head_passes_}}) {
    if (auto q = std::find_if(queue->begin(), queue->end(), is_it); q != queue->end()) {
      leave_queue(*queue, *passes, q, false);
      report(id, proto::kStatusCancelled, "cancelled before it started", false);
      return CancelOutcome::answered;
    }
  }
  if (auto f = follower_of_.find(id); f != follower_of_.end()) {
    std::erase_if(followers_[f->second], [&](const proto::Task& t) { return t.task_id == id; });
    if (followers_[f->second].empty()) followers_.erase(f->second);
    follower_of_.erase(f);
    report(id, proto::kStatusCancelled, "cancelled before it started", false);
    return CancelOutcome::answered;
  }
  for (std::size_t r = 0; r < slots_.size(); ++r) {
    const Slot& s = slots_[r];
    if (std::find(s.tasks.begin(), s.tasks.end(), id) == s.tasks.end()) continue;
    cancelled_on_workers_.insert(id);
    *rank = static_cast<int>(r);
    return CancelOutcome::on_worker;
  }
  return shell_tasks_.contains(id) ? CancelOutcome::on_shell : CancelOutcome::not_here;
}

bool PoolCore::drained() const {
  if (!queue_.empty() || !resource_queue_.empty() || !mpi_queue_.empty() || !followers_.empty() || !results_.empty() ||
      !shell_tasks_.empty())
    return false;
  return std::all_of(slots_.begin(), slots_.end(), [](const Slot& s) { return s.tasks.empty(); });
}

void PoolCore::refuse(std::uint64_t task_id, std::string why) {
  report(task_id, proto::kStatusWorkerLost, std::move(why), false);
}

void PoolCore::refuse_invalid(std::uint64_t task_id, const std::string& key, const std::string& why) {
  report(task_id, proto::kStatusInvalid, key + "\n" + why, false);
}

void PoolCore::report(std::uint64_t task_id, int status, proto::Bytes payload, bool succeeded,
                      std::vector<proto::SharedBuffer> buffers, std::optional<std::chrono::microseconds> run_time) {
  if (!followers_.empty()) release_followers(task_id, succeeded && buffers.empty() ? &payload : nullptr);
  results_.push_back(proto::TaskResult{task_id, status, std::move(payload), std::move(buffers), run_time});
}

// ---------------------------------------------------------------- followers
// A follower waits here for the task it follows (its `after`), which runs or ran on this pool.
// It never occupies a worker before its input exists: it is held in followers_, or sent to the
// worker running that task as the one it holds next (that worker then uses the value it still
// has in memory, docs/protocol.md).
bool PoolCore::holds(std::uint64_t task_id) const {
  if (follower_of_.contains(task_id) || shell_tasks_.contains(task_id)) return true;
  for (const auto* q : {&queue_, &resource_queue_, &mpi_queue_})
    for (const proto::Task& t : *q)
      if (t.task_id == task_id) return true;
  for (const Slot& s : slots_)
    if (std::find(s.tasks.begin(), s.tasks.end(), task_id) != s.tasks.end()) return true;
  return false;
}

void PoolCore::accept_follower(proto::Task&& t) {
  while (!t.after.empty()) {
    const proto::After a = t.after.front();
    if (t.kind == proto::kKindPython && a.input >= t.inputs.size()) {
      report(t.task_id, proto::kStatusException, fmt::format("follower names input {} of {}", a.input, t.inputs.size()),
             false);
      return;
    }
    if (holds(a.task_id)) {
      follower_of_.emplace(t.task_id, a.task_id);
      followers_[a.task_id].push_back(std::move(t));
      return;
    }
    // Finished already: its worker may still have its result.
    auto s = std::find_if(slots_.begin(), slots_.end(), [&](const Slot& s) { return s.last_task == a.task_id; });
    if (s == slots_.end() || !s->last_value) {
      report(t.task_id, proto::kStatusNotStarted,
             fmt::format("task {} it follows is not on pool {}", a.task_id, config_.pool_id), false);
      return;
    }
    put_input(t, a, *s->last_value);
    t.after.erase(t.after.begin());
  }
  start_task(std::move(t));
}

void PoolCore::release_followers(std::uint64_t task_id, const proto::Bytes* value) {
  auto f = followers_.find(task_id);
  if (f == followers_.end()) return;
  std::vector<proto::Task> released = std::move(f->second);
  followers_.erase(f);
  // In reverse, each pushed to the front of the queue: they start next, in arrival order.
  for (auto it = released.rbegin(); it != released.rend(); ++it) {
    proto::Task& t = *it;
    follower_of_.erase(t.task_id);
    if (!value) {
      report(t.task_id, proto::kStatusNotStarted,
             fmt::format("task {} it follows did not succeed, or its value has out-of-band buffers", task_id), false);
      continue;
    }
    std::erase_if(t.after, [&](const proto::After& a) {
      if (a.task_id != task_id) return false;
      put_input(t, a, *value);
      return true;
    });
    if (t.after.empty())
      start_task(std::move(t), /*front=*/true);
    else
      accept_follower(std::move(t));
  }
}

// A task whose inputs are all there: shell commands go to the shell's runner, Python calls to
// the queue for the workers.
void PoolCore::start_task(proto::Task&& t, bool front) {
  if (t.kind == proto::kKindShell) {
    shell_tasks_.insert(t.task_id);
    shell_starts_.push_back(ShellStart{t.task_id, std::move(t.payload)});
  } else if (!t.mpi.empty()) {
    if (front)
      mpi_queue_.push_front(std::move(t));
    else
      mpi_queue_.push_back(std::move(t));
  } else if (t.resources.wants_node()) {
    if (front)
      resource_queue_.push_front(std::move(t));
    else
      resource_queue_.push_back(std::move(t));
  } else if (front) {
    queue_.push_front(std::move(t));
  } else {
    queue_.push_back(std::move(t));
  }
}

void PoolCore::shell_result(proto::TaskResult&& r, bool succeeded) {
  shell_tasks_.erase(r.task_id);
  report(r.task_id, r.status, std::move(r.payload), succeeded, {}, r.run_time);
}

// ---------------------------------------------------------------- workers
void PoolCore::worker_started(int rank) {
  Slot& s = slots_[static_cast<std::size_t>(rank)];
  s.alive = true;
  s.ready = false;
  s.available = true;
  s.tasks.clear();
  s.waiting.clear();
  s.cancelled.reset();
  s.last_run = Clock::duration::max();
  s.fns_sent.clear();
  update_idle(s);
}

void PoolCore::worker_ready(int rank) {
  Slot& s = slots_[static_cast<std::size_t>(rank)];
  s.ready = true;
  update_idle(s);
}

void PoolCore::worker_unavailable(int rank) {
  Slot& s = slots_[static_cast<std::size_t>(rank)];
  s.available = false;
  update_idle(s);
}

void PoolCore::update_idle(Slot& s) {
  const bool idle = takes_tasks(s) && s.tasks.empty();
  if (idle == s.counted_idle) return;
  s.counted_idle = idle;
  const int d = idle ? 1 : -1;
  node_idle_[static_cast<std::size_t>(s.node)] += d;
  idle_ += d;
}

bool PoolCore::expects_result(int rank, std::uint64_t task_id) const {
  const Slot& s = slots_[static_cast<std::size_t>(rank)];
  return s.ready && !s.tasks.empty() && s.tasks.front() == task_id;
}

std::optional<std::uint64_t> PoolCore::running(int rank) const {
  const Slot& s = slots_[static_cast<std::size_t>(rank)];
  if (s.tasks.empty()) return std::nullopt;
  return s.tasks.front();
}

void PoolCore::worker_result(int rank, proto::WorkerResult&& result, TimePoint now) {
  Slot& s = slots_[static_cast<std::size_t>(rank)];
  s.last_task = result.task_id;
  if (result.status == proto::kStatusOk && result.buffers.empty() && result.payload.size() <= kPipelineMaxBytes)
    s.last_value = result.payload;
  else
    s.last_value.reset();
  cancelled_on_workers_.erase(result.task_id);  // cancelled, but it finished before it could be stopped
  s.last_run = now - s.started;
  report(result.task_id, result.status, std::move(result.payload), result.status == proto::kStatusOk,
         std::move(result.buffers), std::chrono::duration_cast<std::chrono::microseconds>(s.last_run));
  s.tasks.pop_front();
  if (!s.waiting.empty()) s.waiting.pop_front();  // started now
  s.started = now;  // the task it held next, if any, starts now
  release_grant(s);
  update_idle(s);
}

std::optional<std::string> PoolCore::stop_if_cancelled(int rank) {
  Slot& s = slots_[static_cast<std::size_t>(rank)];
  if (s.tasks.empty() || s.cancelled || !cancelled_on_workers_.erase(s.tasks.front())) return std::nullopt;
  s.cancelled = s.tasks.front();
  s.available = false;
  update_idle(s);
  return fmt::format("its task {} was cancelled", s.tasks.front());
}

DeathOutcome PoolCore::worker_died(int rank, const std::string& who, const std::string& kill_reason) {
  Slot& s = slots_[static_cast<std::size_t>(rank)];
  DeathOutcome outcome = DeathOutcome::idle;
  if (!s.tasks.empty()) {
    const std::uint64_t front = s.tasks.front();
    if (cancelled_on_workers_.erase(front) > 0 || s.cancelled == front) {
      report(front, proto::kStatusCancelled, kill_reason, false);
      outcome = DeathOutcome::cancelled;
    } else {
      std::string text = fmt::format("{} while running task {}", who, front);
      if (!kill_reason.empty()) text += fmt::format(" (the pool killed it: {})", kill_reason);
      report(front, proto::kStatusWorkerLost, std::move(text), false);
      outcome = DeathOutcome::lost;
    }
  }
  // Tasks waiting in the dead worker's socket had not started: they go back to the front of the
  // queue, in their order. A follower there waited for the task that just died with it.
  for (auto t = s.waiting.rbegin(); t != s.waiting.rend(); ++t) {
    if (cancelled_on_workers_.erase(t->task_id))
      report(t->task_id, proto::kStatusCancelled, "cancelled before it started", false);
    else if (!t->after.empty())
      report(t->task_id, proto::kStatusNotStarted, "the task it follows died with its worker", false);
    else
      queue_.push_front(std::move(*t));
  }
  s.waiting.clear();
  s.tasks.clear();
  s.cancelled.reset();
  s.alive = s.ready = s.available = false;
  release_grant(s);
  update_idle(s);
  return outcome;
}

// ---------------------------------------------------------------- dispatch
// Idle workers get a task first. Then a worker whose last task was short gets a second one to
// keep in its socket: it starts it without waiting for the pool to see the first result (two
// cross-CPU wake-ups per task, most of a no-op task's cost), and a worker whose tasks take
// microseconds gets more (kPipelineBudget). A worker that ran a long task gets no second one,
// so a task never waits long behind another while a worker idles. Round by round (one more
// task per worker), so that workers share a short queue evenly. A worker that holds more than
// half of its pipeline is not topped up yet: it gets its tasks several at a time, in one
// write, rather than one write (and one wake-up) per result.
//
// First, a worker running a task that has a follower held here gets that follower as its next
// task, whatever the task's length: it cannot start anywhere before that task ends.
void PoolCore::dispatch(TimePoint now) {
  send_followers(now);
  if (!resource_queue_.empty()) place_resource_tasks(now);
  if (!mpi_queue_.empty()) place_mpi_tasks(now);
  std::size_t deepest = 0;
  for (Slot& s : slots_) {
    s.fill_to = fill_to(s);
    deepest = std::max(deepest, s.fill_to);
  }
  for (std::size_t depth = 1; depth <= deepest && !queue_.empty(); ++depth) {
    for (std::size_t r = 0; r < slots_.size(); ++r) {
      if (queue_.empty()) break;
      const Slot& s = slots_[r];
      if (s.tasks.size() >= depth || depth > s.fill_to) continue;
      if (depth >= 2 && size_of(queue_.front()) > kPipelineMaxBytes) continue;
      std::optional<proto::Task> t = next_startable(now);
      if (!t) break;
      send_task(static_cast<int>(r), std::move(*t), now);
    }
    if (depth == 1) send_followers(now);  // the tasks just sent may have followers
  }
}

// The front of the queue, past the tasks that could not end in time any more (answered).
std::optional<proto::Task> PoolCore::next_startable(TimePoint now) {
  while (!queue_.empty()) {
    proto::Task t = std::move(queue_.front());
    queue_.pop_front();
    if (t.resources.running_time == 0 || !too_late(t, now)) return t;
  }
  return std::nullopt;
}

// How many tasks the worker should hold after this dispatch (the first of them runs).
std::size_t PoolCore::fill_to(const Slot& s) const {
  if (!takes_tasks(s) || s.grant || s.mpi_grant) return 0;  // a task with resources has its worker alone
  if (s.last_run > kPipelineBelow) return 1;
  const auto last = std::max<Clock::duration>(s.last_run, std::chrono::microseconds(1));
  const std::size_t most =
      std::clamp<std::size_t>(static_cast<std::size_t>(kPipelineBudget / last) + 1, 2, kPipelineMaxDepth);
  return s.tasks.size() >= 2 && s.tasks.size() * 2 > most ? s.tasks.size() : most;
}

void PoolCore::send_followers(TimePoint now) {
  if (followers_.empty()) return;
  for (std::size_t r = 0; r < slots_.size(); ++r) {
    const Slot& s = slots_[r];
    if (!takes_tasks(s) || s.tasks.size() != 1) continue;
    auto f = followers_.find(s.tasks.front());
    if (f == followers_.end()) continue;
    auto it = std::find_if(f->second.begin(), f->second.end(), [](const proto::Task& t) {
      return t.after.size() == 1 && t.kind == proto::kKindPython && !t.resources.wants_node() && t.mpi.empty();
    });
    if (it == f->second.end()) continue;
    proto::Task t = std::move(*it);
    f->second.erase(it);
    if (f->second.empty()) followers_.erase(f);
    follower_of_.erase(t.task_id);
    send_task(static_cast<int>(r), std::move(t), now);
  }
}

void PoolCore::send_task(int rank, proto::Task&& t, TimePoint now) {
  Slot& s = slots_[static_cast<std::size_t>(rank)];
  const bool starts = s.tasks.empty();
  if (!starts) s.waiting.push_back(t);  // small (kPipelineMaxBytes), or its buffers are shared: cheap
  WorkerSend& out = sends_.emplace_back();
  out.rank = rank;
  out.starts = starts;
  proto::WorkerTask& wt = out.task;
  wt.task_id = t.task_id;
  if (s.fns_sent.insert(t.fn_hash).second) wt.fn = fns_.at(t.fn_hash);
  wt.fn_hash = std::move(t.fn_hash);
  wt.payload = std::move(t.payload);
  wt.inputs = std::move(t.inputs);
  wt.after = std::move(t.after);
  wt.buffers = std::move(t.buffers);
  if (starts) s.started = now;
  s.tasks.push_back(t.task_id);
  update_idle(s);
}

// ---------------------------------------------------------------- resources
// A task that declares its running_time is not started when it could not end before the pool
// stops running tasks (its block's end less the grace): it goes back to the driver not started,
// which sends it to a pool with time left, or keeps it until a new block comes (docs/htex.md,
// "Walltime-aware blocks"). Reported here; true if so.
bool PoolCore::too_late(const proto::Task& t, TimePoint now) {
  const double left = now < config_.stop_tasks_at ? std::chrono::duration<double>(config_.stop_tasks_at - now).count() : 0;
  if (left >= t.resources.running_time) return false;
  report(t.task_id, proto::kStatusNotStarted,
         fmt::format("pool {} stops running tasks in {:.1f} s, before the task's running_time of {} s could end",
                     config_.pool_id, left, t.resources.running_time),
         false);
  return true;
}

std::deque<proto::Task>::iterator PoolCore::leave_queue(std::deque<proto::Task>& queue, std::size_t& head_passes,
                                                       std::deque<proto::Task>::iterator it, bool started) {
  if (it == queue.begin())
    head_passes = 0;
  else if (started)
    ++head_passes;
  return queue.erase(it);
}

// Oldest first onto idle workers of nodes that have the resources free; a task that does not
// fit yet lets later ones pass it, at most kMaxPasses times (kMaxPasses in pool_core.hpp).
void PoolCore::place_resource_tasks(TimePoint now) {
  bool head_waits = false;
  std::size_t skipped = 0;
  for (auto it = resource_queue_.begin(); it != resource_queue_.end() && idle_ > 0 && skipped < kMaxScan;) {
    if (head_waits && head_passes_ >= kMaxPasses) break;
    if (it->resources.running_time > 0 && too_late(*it, now)) {
      it = leave_queue(resource_queue_, head_passes_, it, false);
      continue;
    }
    const int node = find_node(it->resources);
    if (node < 0) {
      head_waits = head_waits || it == resource_queue_.begin();
      ++it;
      ++skipped;
      continue;
    }
    const auto& ranks = node_slots_[static_cast<std::size_t>(node)];
    const int rank = *std::find_if(ranks.begin(), ranks.end(), [&](int r) {
      return slots_[static_cast<std::size_t>(r)].counted_idle;
    });
    NodeLedger& ledger = nodes_[static_cast<std::size_t>(node)];
    by_free_cores_.erase({ledger.free_cores(), node});
    Grant grant = ledger.take(it->resources);
    by_free_cores_.emplace(ledger.free_cores(), node);
    proto::Task t = std::move(*it);
    it = leave_queue(resource_queue_, head_passes_, it, true);
    send_task(rank, std::move(t), now);
    proto::WorkerTask& wt = sends_.back().task;
    if (config_.pin_task_cpus) wt.cpus = grant.cpus;
    wt.accelerators = grant.accelerators;
    slots_[static_cast<std::size_t>(rank)].grant = std::move(grant);
  }
}

// ---------------------------------------------------------------- MPI mode
// Oldest first onto idle workers (all on the pool's node: the task's program reaches its nodes
// through the launch prefix), each with nodes of the block that have its cores free. As with
// resources, a task that does not fit yet lets later ones pass it at most kMaxPasses times.
void PoolCore::place_mpi_tasks(TimePoint now) {
  bool head_waits = false;
  std::size_t skipped = 0;
  for (auto it = mpi_queue_.begin(); it != mpi_queue_.end() && idle_ > 0 && skipped < kMaxScan;) {
    if (head_waits && mpi_head_passes_ >= kMaxPasses) break;
    std::optional<MpiGrant> grant = mpi_->take(it->mpi);
    if (!grant) {
      head_waits = head_waits || it == mpi_queue_.begin();
      ++it;
      ++skipped;
      continue;
    }
    const auto slot = std::find_if(slots_.begin(), slots_.end(), [](const Slot& s) { return s.counted_idle; });
    proto::Task t = std::move(*it);
    it = leave_queue(mpi_queue_, mpi_head_passes_, it, true);
    std::vector<std::pair<std::string, std::string>> env = mpi_->environment(t.mpi, *grant);
    send_task(static_cast<int>(slot - slots_.begin()), std::move(t), now);
    sends_.back().task.env = std::move(env);
    slot->mpi_grant = std::move(grant);
  }
}

// The node with an idle worker and the fewest free cores that still fit the request.
int PoolCore::find_node(const ResourceRequest& r) const {
  for (auto i = by_free_cores_.lower_bound({r.cores, -1}); i != by_free_cores_.end(); ++i) {
    const auto n = static_cast<std::size_t>(i->second);
    if (node_idle_[n] > 0 && nodes_[n].fits_now(r)) return i->second;
  }
  return -1;
}

void PoolCore::release_grant(Slot& s) {
  if (s.mpi_grant) {
    mpi_->give_back(*s.mpi_grant);
    s.mpi_grant.reset();
  }
  if (!s.grant) return;
  NodeLedger& ledger = nodes_[static_cast<std::size_t>(s.node)];
  by_free_cores_.erase({ledger.free_cores(), s.node});
  ledger.give_back(std::move(*s.grant));
  by_free_cores_.emplace(ledger.free_cores(), s.node);
  s.grant.reset();
}

ResourceRequest PoolCore::largest_node() const {
  auto most = std::max_element(nodes_.begin(), nodes_.end(), [](const NodeLedger& a, const NodeLedger& b) {
    return a.total().cores < b.total().cores;
  });
  return most == nodes_.end() ? ResourceRequest{} : most->total();
}

}  // namespace pervade::pool
