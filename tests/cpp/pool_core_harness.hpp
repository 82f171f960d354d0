// A PoolCore whose worker slots are all started and ready, driven by hand: tasks in, what
// dispatch() hands out, results back. Time is a variable. For the pool-core test files; test
// thread only.
#pragma once

#include <gtest/gtest.h>

#include <chrono>
#include <cstdint>
#include <map>
#include <utility>
#include <vector>

#include "pool/pool_core.hpp"
#include "protocol/messages.hpp"

namespace pervade::pool {

class PoolCoreHarness {
 public:
  explicit PoolCoreHarness(const PoolCoreConfig& config) : core(config) {
    for (int r = 0; r < config.workers; ++r) {
      core.worker_started(r);
      core.worker_ready(r);
    }
  }

  // A Python task; the first one given to the core carries the function.
  protocol::Task python_task(std::uint64_t id) {
    protocol::Task t;
    t.task_id = id;
    t.kind = protocol::kKindPython;
    t.fn_hash = "h";
    if (!fn_sent_) t.fn = "fn";
    fn_sent_ = true;
    t.payload = "p";
    return t;
  }

  void accept(protocol::Task t) {
    protocol::Tasks m{{std::move(t)}};
    core.accept(m);
  }

  // What dispatch() hands out now; remembers each task's rank for finish().
  std::vector<protocol::WorkerTask> dispatch() {
    core.dispatch(now);
    std::vector<protocol::WorkerTask> out;
    for (auto& s : core.sends()) {
      out.push_back(s.task);
      rank_of[s.task.task_id] = s.rank;
    }
    core.sends().clear();
    return out;
  }

  // The task's worker returns a result, 20 ms later.
  void finish(std::uint64_t id) {
    using namespace std::chrono_literals;
    const int rank = rank_of.at(id);
    EXPECT_TRUE(core.expects_result(rank, id)) << "task " << id;
    core.worker_result(rank, protocol::WorkerResult{id, protocol::kStatusOk, "v"}, now += 20ms);
  }

  PoolCore core;
  TimePoint now{};
  std::map<std::uint64_t, int> rank_of;

 private:
  bool fn_sent_ = false;
};

}  // namespace pervade::pool
