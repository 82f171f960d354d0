#pragma once
// Runs tasks on a fixed pool of threads in this process. Created by the user, driven by a
// DataFlowKernel (submit/cancel from its reactor thread).
#include <memory>

#include "pervade/executor.hpp"

namespace pervade {

class ThreadPoolExecutor : public Executor {
 public:
  // Example: std::make_shared<pervade::ThreadPoolExecutor>(4, "threads")
  explicit ThreadPoolExecutor(int max_threads = 2, std::string label = "threads");
  ~ThreadPoolExecutor() override;

  int max_threads() const;
  void start(CompletionSink& sink) override;
  void submit(std::span<Launch> launches) override;
  void cancel(const TaskRecordPtr& task, std::uint32_t try_id, StopReason reason) override;
  void shutdown() override;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace pervade
