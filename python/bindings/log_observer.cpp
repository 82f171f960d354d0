// pervade._native.LogObserver: the engine's log (src/observe/log_observer.hpp) for Python. The
// sink hands batches of engine records to a Python callable on the observer's writer thread.
#include <nanobind/nanobind.h>
#include <nanobind/stl/string.h>

#include "bindings.hpp"
#include "observe/log_observer.hpp"

namespace nb = nanobind;

namespace pervade::bindings {
namespace {

struct PyLogObserver : ObserverHandle {
  LogObserver& log() const { return static_cast<LogObserver&>(*ptr); }
};

// A Python callable kept by an engine object: its reference is dropped with the GIL.
struct Callable {
  PyObject* fn;
  explicit Callable(nb::handle f) : fn(f.inc_ref().ptr()) {}
  ~Callable() {
    if (!Py_IsInitialized()) return;
    PyGILState_STATE s = PyGILState_Ensure();
    Py_DECREF(fn);
    PyGILState_Release(s);
  }
};

// Runs on the writer thread: one Python call per batch, fn([(created, level, logger, function,
// message, extras), ...]).
std::function<void(std::vector<LogEntry>&)> python_sink(nb::handle fn) {
  auto callable = std::make_shared<Callable>(fn);
  return [callable](std::vector<LogEntry>& batch) {
    if (!Py_IsInitialized()) return;
    nb::gil_scoped_acquire gil;
    try {
      nb::list records;
      for (const LogEntry& e : batch) {
        nb::dict extras;
        for (const auto& [key, value] : e.extras) extras[nb::str(key.data(), key.size())] = nb::str(value.c_str());
        const double created = std::chrono::duration<double>(e.time.time_since_epoch()).count();
        records.append(nb::make_tuple(created, e.level, nb::str(e.logger.data(), e.logger.size()),
                                      nb::str(e.function.data(), e.function.size()), nb::str(e.message.c_str()),
                                      extras));
      }
      nb::borrow(callable->fn)(records);
    } catch (nb::python_error& err) {
      err.discard_as_unraisable("pervade: forwarding engine log records");
    }
  };
}

}  // namespace

void bind_log_observer(nb::module_& m) {
  nb::class_<ObserverHandle>(m, "Observer");
  nb::class_<PyLogObserver, ObserverHandle>(m, "LogObserver")
      .def("__init__",
           [](PyLogObserver* self, const std::string& path, bool json_lines, int level, int forward_level,
              nb::object sink) {
             LogObserverOptions o;
             o.path = path;
             o.format = json_lines ? LogObserverOptions::Format::json_lines : LogObserverOptions::Format::text;
             o.level = level;
             o.forward_level = forward_level;
             if (!sink.is_none()) o.sink = python_sink(sink);
             new (self) PyLogObserver{{std::make_shared<LogObserver>(std::move(o))}};
           },
           nb::arg("path"), nb::arg("json_lines"), nb::arg("level"), nb::arg("forward_level"),
           nb::arg("sink").none())
      .def("write_line", [](PyLogObserver& self, const std::string& line) { self.log().write_line(line); })
      .def("flush", [](PyLogObserver& self) { self.log().flush(); }, nb::call_guard<nb::gil_scoped_release>())
      .def("stop", [](PyLogObserver& self) { self.log().stop(); }, nb::call_guard<nb::gil_scoped_release>())
      .def_prop_ro("threshold", [](PyLogObserver& self) { return self.log().threshold(); });
}

}  // namespace pervade::bindings
