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
#include <functional>
#include <string>
#include <string_view>

#include "pervade/observer.hpp"

namespace pervade {

struct MonitoringOptions {
  std::string workflow_name;     // "" : "unnamed"
  std::string workflow_version;  // "" : the time the workflow began, to the second (as Parsl)
  // Executors sample each running task's processes (resource table) every interval seconds,
  // plus a first and a last sample. Off, or an interval of 0 (Parsl's meaning): no sampling at all.
  bool resource_monitoring_enabled = true;
  double resource_monitoring_interval = 30;
  // How often the writer commits. Status rows older than this are committed; the task and try
  // rows of unfinished tasks are held in memory (to be inserted complete) for at most 3 intervals.
  // So a driver killed with SIGKILL loses events of the last ~3 intervals (plus a batch's write).
  std::chrono::duration<double> commit_interval{0.25};
  // The writer's own log, as Parsl's database_manager.log: "" for none. Text lines in Parsl's
  // layout, or JSON lines with the keys of Parsl's JSONLogging; records below log_level (Python's
  // numbers: 10 DEBUG, 20 INFO, 30 WARNING, 40 ERROR) are not written.
  std::string log_path;
  bool log_json = false;
  int log_level = 20;
  // Also told of the writer's troubles (WARNING: the database is locked, events wait; ERROR:
  // events were lost), e.g. to put them in the run's log. Called on the writer thread.
  std::function<void(int level, std::string_view message)> report;
  // A database locked by another connection holds events back (in memory) and they are written
  // when it is free; at cleanup() the writer tries for this long, then gives them up.
  std::chrono::duration<double> close_timeout{10};
};

// Opens (creating if needed) the database at `path` and its tables; throws ConfigurationError
// naming the path if it cannot be opened or written. The returned observer is given to
// Config::observers of one DataFlowKernel; it is closed (everything written) at cleanup().
// The workflow never waits for the database: a locked database holds events back until it is
// free (up to close_timeout at cleanup), another write failure (disk full, read-only file) loses
// that batch. Both are logged (log_path, report) and the first error is also said on stderr.
// Thread-safe: its on_* methods may be called from any thread, as observer.hpp requires.
ObserverPtr make_monitoring_db(const std::string& path, MonitoringOptions options = {});

}  // namespace pervade
