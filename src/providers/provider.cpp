// The provider base (option checks, block scripts) and JobState names.
#include "pervade/provider.hpp"

#include <algorithm>
#include <cmath>

#include <fmt/format.h>

#include "pervade/errors.hpp"

namespace pervade {

std::string_view to_string(JobState s) {
  switch (s) {
    case JobState::unknown: return "UNKNOWN";
    case JobState::pending: return "PENDING";
    case JobState::running: return "RUNNING";
    case JobState::cancelled: return "CANCELLED";
    case JobState::completed: return "COMPLETED";
    case JobState::failed: return "FAILED";
    case JobState::timeout: return "TIMEOUT";
    case JobState::held: return "HELD";
    case JobState::missing: return "MISSING";
    case JobState::scaled_in: return "SCALED_IN";
  }
  return "UNKNOWN";
}

Provider::Provider(std::string label, ProviderOptions options) : label_(std::move(label)), options_(std::move(options)) {
  const auto& o = options_;
  const std::string who = label_ + " provider";
  if (o.nodes_per_block < 1)
    throw ConfigurationError(fmt::format("{}: nodes_per_block must be >= 1, got {}", who, o.nodes_per_block));
  if (o.init_blocks < 0 || o.min_blocks < 0 || o.max_blocks < 0)
    throw ConfigurationError(fmt::format("{}: init_blocks, min_blocks and max_blocks must be >= 0, got {}, {}, {}",
                                         who, o.init_blocks, o.min_blocks, o.max_blocks));
  if (o.min_blocks > o.max_blocks)
    throw ConfigurationError(fmt::format("{}: min_blocks ({}) > max_blocks ({})", who, o.min_blocks, o.max_blocks));
  if (!(o.parallelism >= 0 && o.parallelism <= 1))
    throw ConfigurationError(fmt::format("{}: parallelism must be between 0 and 1, got {}", who, o.parallelism));
  if (!(o.cmd_timeout > 0)) throw ConfigurationError(fmt::format("{}: cmd_timeout must be > 0", who));
  if (!options_.launcher) options_.launcher = std::make_shared<SingleNodeLauncher>();
}

std::string Provider::block_script(const std::string& command, int tasks_per_node) const {
  std::string wrapped = options_.launcher->wrap(command, tasks_per_node, options_.nodes_per_block);
  if (options_.worker_init.empty()) return wrapped;
  return options_.worker_init + "\n" + wrapped;
}

}  // namespace pervade
