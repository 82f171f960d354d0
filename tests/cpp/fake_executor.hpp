#pragma once
// A fake executor for tests that drive KernelCore synchronously: it keeps each launch until the
// test ends the try. Test thread only.
#include <deque>
#include <span>
#include <utility>
#include <vector>

#include "pervade/executor.hpp"

namespace pervade::fakes {

class FakeExecutor : public Executor {
 public:
  using Executor::Executor;
  void start(CompletionSink&) override {}
  void submit(std::span<Launch> launches) override {
    for (auto& l : launches) launched.push_back(std::move(l));
  }
  void cancel(const TaskRecordPtr& task, std::uint32_t try_id, StopReason reason) override {
    cancelled.emplace_back(task->id(), try_id);
    reasons.push_back(reason);
  }
  void shutdown() override {}
  bool accepts_followers() const override { return followers; }
  WalltimeClock walltime_clock() const override { return clock; }
  bool followers = false;  // accepts_followers()
  WalltimeClock clock = WalltimeClock::from_launch;  // walltime_clock()
  std::deque<Launch> launched;
  std::vector<std::pair<TaskId, std::uint32_t>> cancelled;
  std::vector<StopReason> reasons;  // why each cancel() was made
};

}  // namespace pervade::fakes
