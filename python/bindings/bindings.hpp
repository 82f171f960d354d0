#pragma once
// The parts of pervade._native defined outside module.cpp; NB_MODULE in module.cpp calls them.
#include <nanobind/nanobind.h>

#include <string>
#include <utility>

#include "pervade/errors.hpp"
#include "pervade/executor.hpp"
#include "pervade/observer.hpp"

namespace pervade::bindings {

// Drops a Python reference on any thread: at once with the GIL, else on the next thread that
// holds it (module.cpp).
void release_python_ref(PyObject* o);
// The interpreter is shutting down: no thread may take the GIL any more (module.cpp).
bool python_exiting();

// A Python object owned by an engine object, which may be destroyed on any thread.
class OwnedPython {
 public:
  explicit OwnedPython(nanobind::handle o) : obj_(o.inc_ref().ptr()) {}
  OwnedPython(const OwnedPython&) = delete;
  OwnedPython& operator=(const OwnedPython&) = delete;
  ~OwnedPython() { release_python_ref(obj_); }
  nanobind::handle get() const { return obj_; }

 private:
  PyObject* obj_;
};

// Runs f with the GIL from any thread (an engine thread calling user Python code off the hot
// path: a provider's methods, a block error handler). Returns false without running it while
// the interpreter exits. A Python exception leaves as pervade::Error with its text.
template <class F>
bool with_python(F&& f) {
  if (python_exiting()) return false;
  std::string error;
  const PyGILState_STATE gil = PyGILState_Ensure();
  try {
    f();
  } catch (const std::exception& e) {  // nanobind::python_error among them: its text needs the GIL
    error = e.what();
    if (error.empty()) error = "a Python call of the engine failed";
  }
  PyGILState_Release(gil);
  if (!error.empty()) throw Error(error);
  return true;
}

// Provider, Launcher and their factories (providers.cpp).
void bind_providers(nanobind::module_& m);

// An engine observer made in Python (_native.Observer); Kernel(observers=[...]) takes these.
struct ObserverHandle {
  ObserverPtr ptr;
};
// LogObserver (log_observer.cpp).
void bind_log_observer(nanobind::module_& m);
// The monitoring database and call descriptions (monitoring.cpp).
void bind_monitoring(nanobind::module_& m);

// staging_fetch, the transfers of File staging (staging.cpp).
void bind_staging(nanobind::module_& m);

// An executor written in Python (python_executor.cpp; pervade.executors.ParslExecutor makes it):
// start() at start, submit(func, args, kwargs, plan, values) -> concurrent.futures.Future per
// try on a thread of its own, shutdown() at shutdown. Waits shutdown_grace seconds at most.
ExecutorPtr make_python_executor(const std::string& label, nanobind::handle start, nanobind::handle submit,
                                 nanobind::handle shutdown, double shutdown_grace);

// What python_executor.cpp uses of module.cpp's Python tasks:
// Take the GIL on an engine thread (one Python thread state kept for its life) / give it back.
void hold_engine_gil();
void release_engine_gil();
// GIL held: the Python exception being raised, taken as the exception a try fails with.
std::exception_ptr take_python_error();
// GIL held: a Python app's try as (func, args, kwargs or None, plan or None, [dependency values])
// (pervade.dataflow.dflow.apply_plan puts the values in place). Raises if it has no such call.
nanobind::tuple python_call(TaskBody& body, const TaskContext& ctx);
// GIL held: the outcome of a try that returned `value` (pickled for the memo table if memoized).
Outcome python_success(TaskBody& body, nanobind::handle value);

}  // namespace pervade::bindings
