#include "executors/htex/strategy.hpp"

#include <algorithm>
#include <cmath>

#include <fmt/format.h>

#include "pervade/errors.hpp"

namespace pervade::detail {

StrategyKind parse_strategy(std::string_view name) {
  if (name == "none") return StrategyKind::none;
  if (name == "simple") return StrategyKind::simple;
  if (name == "htex_auto_scale") return StrategyKind::htex_auto_scale;
  throw ConfigurationError(
      fmt::format("unknown scaling strategy '{}': expected 'none', 'simple' or 'htex_auto_scale'", name));
}

std::string_view to_string(StrategyKind kind) {
  switch (kind) {
    case StrategyKind::none: return "none";
    case StrategyKind::simple: return "simple";
    case StrategyKind::htex_auto_scale: return "htex_auto_scale";
  }
  return "?";
}

Strategy::Strategy(StrategyConfig config) : config_(config) {
  if (config_.min_blocks < 0 || config_.max_blocks < 0 || config_.min_blocks > config_.max_blocks)
    throw ConfigurationError(fmt::format("scaling needs 0 <= min_blocks <= max_blocks, got min_blocks={} max_blocks={}",
                                         config_.min_blocks, config_.max_blocks));
  if (!(config_.parallelism >= 0 && config_.parallelism <= 1))
    throw ConfigurationError(fmt::format("parallelism must be within 0..1, got {}", config_.parallelism));
  if (!(config_.max_idletime >= 0))
    throw ConfigurationError(fmt::format("max_idletime must be >= 0, got {}", config_.max_idletime));
  if (config_.nodes_per_block < 1)
    throw ConfigurationError(fmt::format("nodes_per_block must be >= 1, got {}", config_.nodes_per_block));
  if (config_.max_failed_blocks < 0)
    throw ConfigurationError(fmt::format("max_failed_blocks must be >= 0, got {}", config_.max_failed_blocks));
}

namespace {
std::string describe_end(const BlockSnapshot& b) {
  std::string text = fmt::format("block {} {}", b.block_id, to_string(b.status.state));
  if (!b.status.message.empty()) text += ": " + b.status.message;
  if (!b.broken.empty()) text += "; " + b.broken;
  return text;
}
}  // namespace

void Strategy::account_failures(const StrategySnapshot& s, StrategyDecisions& d) {
  for (const auto& b : s.blocks) {
    // Registering is not enough: a pool registers before its workers start, and may then report
    // that they cannot (broken). Results show that the block works.
    if (b.worked && worked_.insert(b.block_id).second)
      failures_in_row_ = 0;  // the block command works: earlier failures were passing
    if (!is_terminal(b.status.state) || !ended_.insert(b.block_id).second || retiring_.contains(b.block_id)) continue;
    last_end_ = describe_end(b);
    last_ended_block_ = b.block_id;
    if (!b.ever_connected || !b.broken.empty()) ++failures_in_row_;
  }
  if (config_.max_failed_blocks > 0 && failures_in_row_ >= config_.max_failed_blocks) {
    d.fail = fmt::format("{} blocks in a row failed (ended before any of their pools connected, or their pools "
                         "could not start workers); the last: {}",
                         failures_in_row_, last_end_);
    d.failed_block = last_ended_block_;
  }
}

void Strategy::finish_retirements(const StrategySnapshot& s, StrategyDecisions& d) {
  for (const auto& b : s.blocks) {
    if (!retiring_.contains(b.block_id) || cancel_sent_.contains(b.block_id)) continue;
    if (is_terminal(b.status.state)) {
      cancel_sent_.insert(b.block_id);  // it ended by itself (a drained pool exits)
    } else if (b.pools == 0) {
      d.cancel.push_back(b.block_id);  // drained: nothing of it holds tasks any more
      cancel_sent_.insert(b.block_id);
    }
  }
}

void Strategy::scale_in(std::vector<Candidate> candidates, int count, double min_idle, StrategyDecisions& d) {
  // Blocks whose pools never connected first (they hold nothing and may still wait in a
  // queue), then the longest idle.
  std::sort(candidates.begin(), candidates.end(), [](const Candidate& a, const Candidate& b) {
    if (a.connected != b.connected) return !a.connected;
    return a.idle > b.idle;
  });
  for (const auto& c : candidates) {
    if (count <= 0) break;
    if (c.idle < min_idle) continue;
    retiring_.insert(c.block_id);
    if (c.connected) {
      d.drain.push_back(c.block_id);
    } else {
      d.cancel.push_back(c.block_id);
      cancel_sent_.insert(c.block_id);
    }
    --count;
  }
}

StrategyDecisions Strategy::scale_in_now(const StrategySnapshot& s, int count, std::optional<double> max_idletime) {
  StrategyDecisions d;
  std::vector<Candidate> candidates;
  for (const auto& b : s.blocks) {
    first_seen_.try_emplace(b.block_id, s.now);
    if (is_terminal(b.status.state) || retiring_.contains(b.block_id)) continue;
    if (max_idletime && b.in_flight > 0) continue;
    candidates.push_back(
        Candidate{b.block_id, b.pools > 0, b.pools > 0 ? b.idle_seconds : s.now - first_seen_[b.block_id]});
  }
  scale_in(std::move(candidates), count, max_idletime.value_or(0), d);
  return d;
}

StrategyDecisions Strategy::decide(const StrategySnapshot& s) {
  StrategyDecisions d;
  if (failed_) return d;
  for (const auto& b : s.blocks) first_seen_.try_emplace(b.block_id, s.now);
  account_failures(s, d);
  if (d.fail) {
    failed_ = true;
    return d;
  }
  finish_retirements(s, d);

  int active = 0;
  std::vector<Candidate> idle;
  for (const auto& b : s.blocks) {
    if (is_terminal(b.status.state) || retiring_.contains(b.block_id)) continue;
    ++active;
    if (b.in_flight == 0)
      idle.push_back(Candidate{b.block_id, b.pools > 0, b.pools > 0 ? b.idle_seconds : s.now - first_seen_[b.block_id]});
  }

  if (config_.kind == StrategyKind::none) {
    // Nothing will replace the blocks that ended: with work waiting and none left, the
    // executor cannot make progress, and waiting would hang its futures forever.
    if (active == 0 && !ended_.empty() && !last_end_.empty() && (s.outstanding > 0 || failures_in_row_ > 0)) {
      d.fail = fmt::format("every block has ended and strategy 'none' starts no more; the last: {}", last_end_);
      d.failed_block = last_ended_block_;
      failed_ = true;
    }
    return d;
  }

  if (s.outstanding > 0)
    idle_since_.reset();
  else if (!idle_since_)
    idle_since_ = s.now;

  // Blocks below min_blocks are started whatever the demand, and count as slots below.
  const int for_min = std::max(0, config_.min_blocks - active);
  active += for_min;
  d.start = for_min;
  const int slots_per_block = std::max(1, s.workers_per_node) * config_.nodes_per_block;
  const double slots = static_cast<double>(active) * slots_per_block + std::max(0, s.other_workers);
  const double tasks = static_cast<double>(s.outstanding);

  if (s.outstanding == 0) {
    if (active > config_.min_blocks) {
      if (config_.kind == StrategyKind::simple) {
        if (s.now - *idle_since_ >= config_.max_idletime) scale_in(std::move(idle), active - config_.min_blocks, 0, d);
      } else {
        scale_in(std::move(idle), active - config_.min_blocks, config_.max_idletime, d);
      }
    }
  } else if (slots / tasks < config_.parallelism) {
    // Too few slots for the demand: enough blocks for parallelism * outstanding slots.
    const double missing_slots = std::ceil(tasks * config_.parallelism - slots);
    const int wanted = static_cast<int>(std::ceil(missing_slots / slots_per_block));
    d.start += std::max(0, std::min(wanted, config_.max_blocks - active));
  } else if (slots == 0) {
    // parallelism 0: one block, however many tasks wait.
    d.start = config_.max_blocks > 0 ? 1 : 0;
  } else if (config_.kind == StrategyKind::htex_auto_scale && slots > tasks && active > config_.min_blocks) {
    const double spare_slots = std::floor(slots - tasks * config_.parallelism);
    const int spare = static_cast<int>(std::floor(spare_slots / slots_per_block));
    scale_in(std::move(idle), std::min(spare, active - config_.min_blocks), config_.max_idletime, d);
  }
  return d;
}

}  // namespace pervade::detail
