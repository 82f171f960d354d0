// The options of a C++ HighThroughputExecutor for tests: one LocalProvider block of the real
// pervade-pool with 2 workers, on ports away from the Python tests' default range. Test thread only.
#pragma once

#include <filesystem>
#include <memory>

#include "pervade/htex_executor.hpp"
#include "pervade/provider.hpp"

inline pervade::HtexOptions local_htex_options(const std::filesystem::path& dir) {
  pervade::HtexOptions o;
  o.provider = std::make_shared<pervade::LocalProvider>();
  o.workers_per_node = 2;
  o.pool_binary = PERVADE_POOL_BINARY;
  o.run_dir = (dir / "runinfo").string();
  o.port_min = 58100;
  o.port_max = 58999;
  return o;
}
