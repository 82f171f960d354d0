#pragma once
// Runs tasks on a fixed pool of threads in this process. Created by the user, driven by a
// DataFlowKernel (submit/cancel from its reactor thread).
#include <chrono>
#include <memory>

#include "pervade/executor.hpp"

namespace pervade {

class ThreadPoolExecutor : public Executor {
 public:
  // Example: std::make_shared<pervade::ThreadPoolExecutor>(4, "threads")
  // shutdown() interrupts running tries and waits up to shutdown_grace for them; a thread still
  // inside a task then (one that cannot be interrupted) is abandoned: its try fails with
  // DataFlowKernelClosed and the thread is left to finish, or to end with the process.
  explicit ThreadPoolExecutor(int max_threads = 2, std::string label = "threads",
                              std::chrono::duration<double> shutdown_grace = std::chrono::seconds(10));
  ~ThreadPoolExecutor() override;

  int max_threads() const;
  void start(CompletionSink& sink) override;
  void submit(std::span<Launch> launches) override;
  void cancel(const TaskRecordPtr& task, std::uint32_t try_id, StopReason reason) override;
  void shutdown() override;
  // A try queued behind busy threads has not started: its walltime counts once a thread runs it.
  WalltimeClock walltime_clock() const override { return WalltimeClock::from_start; }

 private:
  struct Impl;
  std::shared_ptr<Impl> impl_;  // shared with its threads (an abandoned one outlives this)
};

}  // namespace pervade
