#include "pool/node_ledger.hpp"

#include <algorithm>
#include <utility>

#include <fmt/format.h>

namespace pervade::pool {

std::string describe(const ResourceRequest& r) {
  return fmt::format("{} core{}, {} MB, {} GPU{}", r.cores, r.cores == 1 ? "" : "s", r.memory_mb, r.gpus,
                     r.gpus == 1 ? "" : "s");
}

NodeLedger::NodeLedger(NodeCapacity capacity)
    : cpu_order_(std::move(capacity.cpus)), accelerator_order_(std::move(capacity.accelerators)) {
  std::sort(cpu_order_.begin(), cpu_order_.end());
  free_cpus_ = cpu_order_;
  free_memory_mb_ = capacity.memory_mb;
  free_accelerators_ = accelerator_order_;
  total_ = ResourceRequest{static_cast<int>(cpu_order_.size()), capacity.memory_mb,
                           static_cast<int>(accelerator_order_.size())};
}

Grant NodeLedger::take(const ResourceRequest& r) {
  Grant g;
  const auto cores = static_cast<std::ptrdiff_t>(r.cores);
  g.cpus.assign(free_cpus_.begin(), free_cpus_.begin() + cores);
  free_cpus_.erase(free_cpus_.begin(), free_cpus_.begin() + cores);
  g.memory_mb = r.memory_mb;
  free_memory_mb_ -= r.memory_mb;
  const auto gpus = static_cast<std::ptrdiff_t>(r.gpus);
  g.accelerators.assign(free_accelerators_.begin(), free_accelerators_.begin() + gpus);
  free_accelerators_.erase(free_accelerators_.begin(), free_accelerators_.begin() + gpus);
  return g;
}

void NodeLedger::give_back(Grant&& g) {
  free_cpus_.insert(free_cpus_.end(), g.cpus.begin(), g.cpus.end());
  std::sort(free_cpus_.begin(), free_cpus_.end());
  free_memory_mb_ += g.memory_mb;
  // Back in the node's order, so the next task gets the first free ids again.
  for (auto& a : g.accelerators) free_accelerators_.push_back(std::move(a));
  std::stable_sort(free_accelerators_.begin(), free_accelerators_.end(), [&](const std::string& x, const std::string& y) {
    return std::find(accelerator_order_.begin(), accelerator_order_.end(), x) <
           std::find(accelerator_order_.begin(), accelerator_order_.end(), y);
  });
}

}  // namespace pervade::pool
