#pragma once
// The monitoring database: an Observer (observer.hpp) that writes a kernel's events into SQLite
// with Parsl's schema (tables workflow, task, try, status, resource, node, block), so tools
// written for Parsl's monitoring database (parsl-visualize, pervade dashboard) read it unchanged.
// Events are copied into a buffer on the emitting thread; one writer thread of its own commits
// them in batches (WAL mode) at least every commit_interval. See docs/monitoring.md.
//
// Example:
//   pervade::Config cfg;
//   pervade::MonitoringOptions mon;
//   mon.workflow_name = "my-campaign";
//   cfg.observers.push_back(pervade::make_monitoring_db("runinfo/monitoring.db", mon));
//   pervade::DataFlowKernel dfk(std::move(cfg));
#include <chrono>
#include <string>

#include "pervade/observer.hpp"

namespace pervade {

struct MonitoringOptions {
  std::string workflow_name;     // "" : "unnamed"
  std::string workflow_version;  // "" : the time the workflow began, to the second (as Parsl)
  // Executors sample each running task's processes (resource table) every interval seconds,
  // plus a first and a last sample; 0: only the first and last. Off: no sampling at all.
  bool resource_monitoring_enabled = true;
  double resource_monitoring_interval = 30;
  // Events older than this are committed (a driver killed with SIGKILL loses at most this much).
  std::chrono::duration<double> commit_interval{0.25};
};

// Opens (creating if needed) the database at `path` and its tables; throws ConfigurationError
// naming the path if it cannot be opened or written. The returned observer is given to
// Config::observers of one DataFlowKernel; it is closed (everything written) at cleanup().
// A write failure during the run (disk full, database locked) is reported once on stderr and
// the workflow goes on; the events of the failed batches are lost.
// Thread-safe: its on_* methods may be called from any thread, as observer.hpp requires.
ObserverPtr make_monitoring_db(const std::string& path, MonitoringOptions options = {});

}  // namespace pervade
