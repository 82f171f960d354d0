#pragma once
// The scaling strategy of a HighThroughputExecutor that starts its own blocks: from a snapshot
// of the executor (outstanding tasks, blocks with their provider state and connected pools,
// the time) it decides which blocks to start, drain, cancel, or that the executor has failed.
// No clock, no threads, no I/O: the executor's strategy thread feeds it snapshots and carries
// out the decisions; unit tests feed it made-up snapshots. Single-threaded (one caller).
//
// Semantics follow Parsl's parsl/jobs/strategy.py (docs/scaling.md has the details):
// * none: the executor keeps its init_blocks; nothing else is started or stopped.
// * simple: scales out when the slots of the active blocks fall short of
//   parallelism * outstanding tasks (up to max_blocks); scales in to min_blocks only once the
//   executor has had no outstanding task for max_idletime.
// * htex_auto_scale: scales out as simple; scales in any block whose pools have been idle for
//   max_idletime while slots exceed the demand (down to min_blocks).
// A block is scaled in by draining its pools first (they finish what they hold and exit), and
// cancelled through the provider once none of them is connected, so no task is lost.
// Both scaling strategies also keep min_blocks blocks active (replacing blocks that ended).
#include <cstddef>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include "pervade/provider.hpp"

namespace pervade::detail {

enum class StrategyKind { none, simple, htex_auto_scale };

// "none", "simple", "htex_auto_scale" (Parsl's names). Throws ConfigurationError otherwise.
StrategyKind parse_strategy(std::string_view name);
std::string_view to_string(StrategyKind kind);

struct StrategyConfig {
  StrategyKind kind = StrategyKind::simple;
  int min_blocks = 0;
  int max_blocks = 1;
  double parallelism = 1;
  double max_idletime = 120;  // seconds
  int nodes_per_block = 1;
  // Blocks in a row that end before any of their pools connected, or whose pools reported
  // that they cannot run tasks (their workers cannot start): that many fail the executor.
  // 0: never (the strategy keeps replacing them).
  int max_failed_blocks = 3;
};

struct BlockSnapshot {
  std::string block_id;
  JobStatus status;              // the provider's view
  bool ever_connected = false;   // a pool of this block registered at some point
  bool worked = false;           // a pool of this block sent results at some point
  std::string broken;            // set: a pool of it reported it cannot run tasks (FAILED), why
  int pools = 0;                 // pools of this block connected now
  std::size_t in_flight = 0;     // tasks on them
  double idle_seconds = 0;       // the shortest idle time of its pools (0 if any is busy)
};

struct StrategySnapshot {
  double now = 0;                // seconds on any monotonic clock
  std::size_t outstanding = 0;   // tasks submitted to the executor and not finished
  int workers_per_node = 1;      // slots a connected pool brings (known or expected)
  int other_workers = 0;         // workers of connected pools that belong to none of the blocks
                                 // (started by hand): capacity too, but nothing to scale
  std::vector<BlockSnapshot> blocks;  // every block the executor started, in any order
};

struct StrategyDecisions {
  int start = 0;                     // blocks to submit
  std::vector<std::string> drain;    // blocks whose pools should stop taking tasks and exit
  std::vector<std::string> cancel;   // blocks to cancel through the provider
  std::optional<std::string> fail;   // the executor has failed, for this reason
  std::string failed_block;          // with fail: the block whose end is the latest cause
  bool empty() const { return start == 0 && drain.empty() && cancel.empty() && !fail; }
};

class Strategy {
 public:
  // Throws ConfigurationError for inconsistent options (min > max, negative values, ...).
  explicit Strategy(StrategyConfig config);

  StrategyDecisions decide(const StrategySnapshot& snapshot);
  // Scales in up to `count` active blocks now, asked from outside the rounds (Parsl's
  // executor.scale_in): with max_idletime only blocks without tasks whose pools have been idle
  // that long, else any block (busy ones are drained, so they finish their tasks first). The
  // chosen blocks are in the decisions' drain and cancel lists.
  StrategyDecisions scale_in_now(const StrategySnapshot& snapshot, int count, std::optional<double> max_idletime);

  const StrategyConfig& config() const { return config_; }
  // Blocks this strategy has drained or cancelled (their end is no failure).
  bool retiring(const std::string& block_id) const { return retiring_.contains(block_id); }

 private:
  struct Candidate {
    std::string block_id;
    bool connected;
    double idle;
  };
  void account_failures(const StrategySnapshot& s, StrategyDecisions& d);
  void finish_retirements(const StrategySnapshot& s, StrategyDecisions& d);
  // Picks up to `count` idle blocks (longest idle first, blocks without pools first of all)
  // and drains or cancels them.
  void scale_in(std::vector<Candidate> candidates, int count, double min_idle, StrategyDecisions& d);

  StrategyConfig config_;
  std::map<std::string, double> first_seen_;  // block id -> when this strategy first saw it
  std::set<std::string> retiring_;            // drained or cancelled by us
  std::set<std::string> cancel_sent_;         // retiring blocks already cancelled
  std::set<std::string> ended_;               // terminal blocks already accounted for
  std::set<std::string> worked_;              // blocks seen with a pool that sent results
  int failures_in_row_ = 0;                   // blocks ended without working, since one did
  std::string last_end_;                      // how the latest block that ended by itself ended
  std::string last_ended_block_;
  std::optional<double> idle_since_;  // simple: when outstanding last became 0
  bool failed_ = false;
};

}  // namespace pervade::detail
