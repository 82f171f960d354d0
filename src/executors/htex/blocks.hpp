#pragma once
// The blocks of one HighThroughputExecutor whose pools it starts itself (HtexOptions::provider
// set, the C++ API): the pervade-pool command line, the CurveZMQ key file the pools read, and
// the provider jobs. The executor calls the constructor, start() and cancel_all(); the query
// methods and scale_out() are thread-safe.
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "pervade/htex_executor.hpp"
#include "pervade/observer.hpp"
#include "pervade/provider.hpp"

namespace pervade::detail {

// HtexOptions::pool_binary if set, else $PERVADE_POOL_BINARY, else the installed
// <prefix>/bin/pervade-pool, else the one in the build tree. Throws ConfigurationError naming
// the places tried if none is executable.
std::string resolve_pool_binary(const std::string& configured);

// A fresh Z85 CurveZMQ key pair (public, secret). Throws pervade::Error.
std::pair<std::string, std::string> curve_keypair();

class BlockManager {
 public:
  // Checks the options, resolves the pool binary, and makes the per-run CurveZMQ key pair
  // (written into options) when options.encrypted and no keys were given. Throws
  // ConfigurationError. Call before the interchange starts.
  explicit BlockManager(HtexOptions& options);

  // Once the interchange listens on `port` (and on `ipc_url` for pools on this host, if not
  // empty): writes the server key file, starts the initial blocks (HtexOptions::init_blocks,
  // else the provider's). Throws pervade::Error.
  void start(int port, const std::string& ipc_url = "");
  // Where block state changes are reported (BlockEvent): the executor's observers, which
  // outlive this manager. Call before start().
  void set_observers(const Observers* observers) { observers_ = observers; }
  // Where the interchange's same-host socket goes (<run_dir>/<label>).
  const std::string& run_dir() const { return log_dir_; }
  // The command a block runs on each of its nodes.
  std::string pool_command(const std::string& block_id) const;
  // Asks the provider for `count` more blocks; returns their block ids. A submission the
  // provider refuses throws, or with record_failures is kept as a FAILED block (for the
  // strategy's failure rule) and the next ones are still tried.
  std::vector<std::string> scale_out(int count, bool record_failures = false);
  // Cancels these blocks (blocks until the provider has stopped them).
  void cancel(const std::vector<std::string>& block_ids);
  // Cancels every block (blocks until the provider has stopped them). Idempotent.
  void cancel_all();
  // Every block with its state: one provider status call for the blocks not yet ended (the
  // state of an ended block does not change, so it is kept).
  std::vector<BlockStatus> blocks();
  // Every block with the state blocks() last saw (no provider call).
  std::vector<BlockStatus> known() const;
  // The block's log file (its stdout and stderr).
  std::string log_path(const std::string& block_id) const;
  std::string server_key_file() const;

 private:
  std::string pool_command_locked(const std::string& block_id) const;
  void report(const std::string& block_id, const std::string& job_id, const JobStatus& status) const;

  std::shared_ptr<Provider> provider_;
  std::string label_;
  std::string address_;
  std::string binary_;
  std::string log_dir_;
  std::string public_key_;
  int init_blocks_;
  int workers_per_node_;
  int prefetch_;
  bool python_workers_;
  const Observers* observers_ = nullptr;
  std::vector<std::string> pool_args_;
  double heartbeat_period_;
  double heartbeat_threshold_;

  mutable std::mutex mutex_;
  int port_ = 0;
  std::string ipc_url_;
  std::string key_file_;
  struct Block {
    std::string block_id;
    std::string job_id;  // "" if the submission failed
    JobStatus status;    // the latest known; kept once terminal
  };
  std::vector<Block> blocks_;  // in start order
  int next_block_ = 0;
  bool cancelled_ = false;
};

}  // namespace pervade::detail
