#pragma once
// The HighThroughputExecutor's driver side: an interchange thread with a ROUTER socket that
// pools (pervade-pool) connect to, and an encoder thread that turns launches into wire tasks.
// Starting pools is the provider's job (Python: LocalProvider). submit/cancel from the
// kernel's reactor; the query methods from any thread.
#include <memory>
#include <string>
#include <vector>

#include "pervade/executor.hpp"
#include "pervade/remote.hpp"

namespace pervade {

struct HtexOptions {
  std::string label = "htex";
  std::string address = "127.0.0.1";  // interface the interchange binds ("*" for all)
  int worker_port = 0;                // 0: first free port in the range
  int port_min = 54000;
  int port_max = 55000;
  double heartbeat_period = 30;
  double heartbeat_threshold = 120;
  std::string python_version;  // the driver's; pools running Python must match major.minor
  std::string curve_public_key;  // Z85; both set: CurveZMQ encryption, pools need the public key
  std::string curve_secret_key;
};

struct PoolStatus {
  std::string pool_id;
  std::string block_id;
  std::string hostname;
  int worker_count = 0;
  int prefetch = 0;
  std::size_t in_flight = 0;
  double idle_seconds = 0;
  bool held = false;
  bool draining = false;
};

class HighThroughputExecutor : public Executor {
 public:
  explicit HighThroughputExecutor(HtexOptions options);
  ~HighThroughputExecutor() override;

  void start(CompletionSink& sink) override;
  void submit(std::span<Launch> launches) override;
  void cancel(const TaskRecordPtr& task, std::uint32_t try_id) override;
  void shutdown() override;

  // Valid after start().
  std::string url() const;
  int port() const;
  std::vector<PoolStatus> pools() const;
  std::size_t outstanding() const;
  bool hold(const std::string& pool_id, bool held);
  bool drain(const std::string& pool_id);
  // Why pools were refused (version or protocol mismatch), most recent last.
  std::vector<std::string> refusals() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace pervade
