// pervade._native's monitoring parts: the database writer (pervade/monitoring.hpp) and the
// descriptions of calls that only Python can make (the text of their inputs= and outputs=).
#include <nanobind/nanobind.h>
#include <nanobind/stl/optional.h>
#include <nanobind/stl/string.h>
#include <nanobind/stl/vector.h>

#include "bindings.hpp"
#include "observe/log_observer.hpp"
#include "pervade/monitoring.hpp"

namespace nb = nanobind;

namespace pervade::bindings {

void bind_monitoring(nb::module_& m) {
  m.def(
      "monitoring_db",
      [](const std::string& path, const std::string& workflow_name, const std::string& workflow_version,
         bool resource_monitoring_enabled, double resource_monitoring_interval, const std::string& log_path,
         bool log_json, int log_level, ObserverHandle* run_log) {
        MonitoringOptions o;
        o.workflow_name = workflow_name;
        o.workflow_version = workflow_version;
        o.resource_monitoring_enabled = resource_monitoring_enabled;
        o.resource_monitoring_interval = resource_monitoring_interval;
        o.log_path = log_path;
        o.log_json = log_json;
        o.log_level = log_level;
        // The writer's troubles also go to the run's log (pervade.log, or Python loggers).
        if (auto log = run_log ? std::dynamic_pointer_cast<LogObserver>(run_log->ptr) : nullptr)
          o.report = [log](int level, std::string_view message) {
            log->record(level, "pervade.monitoring.db_manager", "write", message);
          };
        return ObserverHandle{make_monitoring_db(path, std::move(o))};
      },
      nb::arg("path"), nb::arg("workflow_name"), nb::arg("workflow_version"), nb::arg("resource_monitoring_enabled"),
      nb::arg("resource_monitoring_interval"), nb::arg("log_path"), nb::arg("log_json"), nb::arg("log_level"),
      nb::arg("run_log").none());

  // Any thread (observers copy and return); strings None leave that part unsaid.
  m.def(
      "describe_task",
      [](const std::vector<ObserverHandle*>& observers, std::uint64_t task, const std::optional<std::string>& inputs,
         const std::optional<std::string>& outputs) {
        TaskEvent e{};
        e.kind = TaskEvent::Kind::described;
        e.time = std::chrono::system_clock::now();
        e.task = TaskId{task};
        if (inputs) e.inputs = *inputs;
        if (outputs) e.outputs = *outputs;
        for (ObserverHandle* o : observers) o->ptr->on_task(e);
      },
      nb::arg("observers"), nb::arg("task"), nb::arg("inputs").none(), nb::arg("outputs").none());
}

}  // namespace pervade::bindings
