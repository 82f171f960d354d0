// pervade._native: the engine as seen from Python. Thin: Python objects are carried through
// the kernel as opaque references; all task logic stays in C++ (core) or Python (pervade/).
//
// Threads and the GIL:
//  * The main (user) thread submits while holding the GIL; submit() never blocks.
//  * Executor threads run Python tasks; they take the GIL per batch of tasks and give it up
//    before they block (release_thread_resources).
//  * One completion thread per kernel hands finished tasks to their Python futures, in
//    batches, under the GIL.
//  * The reactor thread only touches Python to call a user retry_handler (with the GIL).
//  * Python references held by engine objects are dropped without the GIL by deferring the
//    decref to the next thread that holds it.
#include <nanobind/nanobind.h>
#include <nanobind/ndarray.h>
#include <nanobind/stl/function.h>
#include <nanobind/stl/optional.h>
#include <nanobind/stl/pair.h>
#include <nanobind/stl/shared_ptr.h>
#include <nanobind/stl/string.h>
#include <nanobind/stl/vector.h>

#include <Python.h>
#include <pythread.h>
#include <sys/mman.h>
#include <unistd.h>
#include <zmq.h>

#include <algorithm>
#include <condition_variable>
#include <cstring>
#include <deque>
#include <mutex>
#include <thread>

#include "bindings.hpp"
#include "executors/htex/strategy.hpp"
#include "observe/log_observer.hpp"
#include "pervade/htex_executor.hpp"
#include "pervade/pervade.hpp"
#include "pervade/remote.hpp"
#include "util/thread_name.hpp"

namespace nb = nanobind;
using namespace pervade;

namespace {

// ---------------------------------------------------------------- references without the GIL

std::mutex g_deferred_mutex;
std::vector<PyObject*> g_deferred;

void drain_deferred_decrefs() {  // GIL held
  std::vector<PyObject*> drop;
  {
    std::lock_guard lock(g_deferred_mutex);
    drop.swap(g_deferred);
  }
  for (PyObject* o : drop) Py_DECREF(o);
}

// An owned Python reference that may be released on any thread.
class PyRef {
 public:
  PyRef() = default;
  static PyRef borrow(PyObject* o) {
    Py_XINCREF(o);
    return PyRef(o);
  }
  static PyRef steal(PyObject* o) { return PyRef(o); }
  PyRef(PyRef&& other) noexcept : obj_(std::exchange(other.obj_, nullptr)) {}
  PyRef& operator=(PyRef&& other) noexcept {
    if (this != &other) {
      reset();
      obj_ = std::exchange(other.obj_, nullptr);
    }
    return *this;
  }
  ~PyRef() { reset(); }
  PyObject* get() const { return obj_; }
  explicit operator bool() const { return obj_ != nullptr; }
  void reset() {
    PyObject* o = std::exchange(obj_, nullptr);
    if (!o) return;
    if (PyGILState_Check()) {
      Py_DECREF(o);
    } else {
      std::lock_guard lock(g_deferred_mutex);
      g_deferred.push_back(o);
    }
  }

 private:
  explicit PyRef(PyObject* o) : obj_(o) {}
  PyObject* obj_ = nullptr;
};

// A Python result stored in the kernel (std::any needs a copyable type).
struct PyValue {
  PyRef ref;
};
using PyValuePtr = std::shared_ptr<PyValue>;

// A Python exception travelling through the kernel.
class PythonError : public std::exception {
 public:
  PythonError(PyRef exc, std::string text, std::string source = {})
      : exc_(std::make_shared<PyValue>(PyValue{std::move(exc)})), text_(std::move(text)), source_(std::move(source)) {}
  const char* what() const noexcept override { return text_.c_str(); }
  PyObject* exception() const { return exc_->ref.get(); }
  // For the failure of a plain future: its repr, which names it in DependencyError (as Parsl).
  const std::string& source() const { return source_; }

 private:
  PyValuePtr exc_;
  std::string text_;
  std::string source_;
};

// Takes the current Python exception (GIL held) as a C++ exception_ptr.
std::exception_ptr fetch_python_error() {
  PyObject *type, *value, *tb;
  PyErr_Fetch(&type, &value, &tb);
  PyErr_NormalizeException(&type, &value, &tb);
  if (tb && value) PyException_SetTraceback(value, tb);
  Py_XDECREF(type);
  Py_XDECREF(tb);
  std::string text = "Python exception";
  if (value) {
    if (PyObject* s = PyObject_Str(value)) {
      if (const char* c = PyUnicode_AsUTF8(s)) text = c;
      Py_DECREF(s);
    }
    PyErr_Clear();
  }
  return std::make_exception_ptr(PythonError(PyRef::steal(value), std::move(text)));
}

// ---------------------------------------------------------------- engine threads and the GIL

// Engine threads keep one Python thread state for their lifetime instead of creating one per
// task: PyGILState_Ensure once (which registers the state), then PyEval_SaveThread /
// PyEval_RestoreThread around each batch.
bool interpreter_finalizing() {
#if PY_VERSION_HEX >= 0x030D0000
  return Py_IsFinalizing();
#else
  return _Py_IsFinalizing();
#endif
}

}  // namespace

void pervade::bindings::release_python_ref(PyObject* o) { PyRef::steal(o).reset(); }
bool pervade::bindings::python_exiting() { return !Py_IsInitialized() || interpreter_finalizing(); }

namespace {

struct EngineThreadState {
  PyThreadState* state = nullptr;
  PyGILState_STATE first{};
  ~EngineThreadState() {
    if (!state || !Py_IsInitialized() || interpreter_finalizing()) return;
    PyEval_RestoreThread(state);
    PyGILState_Release(first);  // deletes this thread's state and releases the GIL
  }
};
thread_local EngineThreadState t_engine_state;
thread_local bool t_holds_gil = false;

// Takes the GIL on an engine thread and keeps it until release_gil().
void hold_gil() {
  if (t_holds_gil) return;
  if (!t_engine_state.state) {
    t_engine_state.first = PyGILState_Ensure();
    t_engine_state.state = PyThreadState_Get();
  } else {
    PyEval_RestoreThread(t_engine_state.state);
  }
  t_holds_gil = true;
}

void release_gil() {
  if (!t_holds_gil) return;
  t_holds_gil = false;
  PyEval_SaveThread();
}

// ---------------------------------------------------------------- values across the boundary

nb::object errors_module() {
  static PyObject* mod = nullptr;  // leaked on purpose: lives as long as the interpreter
  if (!mod) mod = nb::module_::import_("pervade.errors").release().ptr();
  return nb::borrow(mod);
}

nb::object serialize_module() {
  static PyObject* mod = nullptr;  // leaked on purpose, as above
  if (!mod) mod = nb::module_::import_("pervade.serialize").release().ptr();
  return nb::borrow(mod);
}

nb::bytes as_bytes(const std::string& s) { return nb::bytes(s.data(), s.size()); }

nb::object to_python(const std::any& v);

nb::object describe_failures(const PropagatedError::Failures& failed);

std::string describe_task(const std::exception_ptr& err, TaskId id) {
  try {
    if (err) std::rethrow_exception(err);
  } catch (const PythonError& p) {
    if (!p.source().empty()) return p.source();
  } catch (...) {
  }
  return "task " + std::to_string(id.value);
}


nb::object translate_error(const std::exception_ptr& e);

// The Python exception for an engine error, made once per error and kept on it: a future's
// exception(), every DependencyError naming it and its __cause__ are then the same object
// (a pool's exception is unpickled once).
nb::object exception_to_python(const std::exception_ptr& e) {
  try {
    std::rethrow_exception(e);
  } catch (const PythonError& p) {
    return nb::borrow(p.exception());
  } catch (const Error& err) {
    if (const auto& made = err.front_end_object()) return nb::borrow(static_cast<PyValue*>(made.get())->ref.get());
    nb::object exc = translate_error(e);
    err.set_front_end_object(std::make_shared<PyValue>(PyValue{PyRef::borrow(exc.ptr())}));
    return exc;
  } catch (...) {
    return translate_error(e);
  }
}

nb::object translate_error(const std::exception_ptr& e) {
  try {
    std::rethrow_exception(e);
  } catch (const RemoteTaskError& r) {
    return serialize_module().attr("deserialize_exception")(as_bytes(r.payload()));
  } catch (const WorkerLost& w) {
    return errors_module().attr("WorkerLost")(nb::none(), nb::none(), w.what());
  } catch (const ManagerLost& m) {
    return errors_module().attr("ManagerLost")(nb::none(), nb::none(), m.what());
  } catch (const ExecutorFailed& f) {
    return errors_module().attr("BadStateException")(f.label(), f.reason());
  } catch (const InvalidResourceSpecification& r) {
    nb::set keys;  // key: one, or several separated by commas
    for (std::size_t start = 0; start < r.key().size();) {
      const std::size_t comma = std::min(r.key().find(',', start), r.key().size());
      keys.add(nb::str(r.key().substr(start, comma - start).c_str()));
      start = comma + 1;
    }
    return errors_module().attr("InvalidResourceSpecification")(keys, r.what());
  } catch (const DependencyError& d) {
    return errors_module().attr("DependencyError")(describe_failures(d.dependent_exceptions()), d.task_id().value);
  } catch (const JoinError& j) {
    return errors_module().attr("JoinError")(describe_failures(j.dependent_exceptions()), j.task_id().value);
  } catch (const AppTimeout& t) {
    return errors_module().attr("AppTimeout")(t.what());
  } catch (const BashExitFailure& b) {
    return errors_module().attr("BashExitFailure")(b.app_name(), b.exitcode());
  } catch (const BadStdStreamFile& b) {
    return errors_module().attr("BadStdStreamFile")(b.what());
  } catch (const DataFlowKernelClosed& c) {
    return errors_module().attr("DataFlowKernelClosed")(c.what());
  } catch (const BadCheckpoint& c) {
    return errors_module().attr("BadCheckpoint")(c.what());
  } catch (const TaskCancelled& c) {
    return errors_module().attr("TaskCancelled")(c.what());
  } catch (const ConfigurationError& c) {
    return errors_module().attr("ConfigurationError")(c.what());
  } catch (const UnknownExecutor& u) {
    return nb::module_::import_("builtins").attr("ValueError")(u.what());
  } catch (const std::exception& x) {
    return errors_module().attr("ParslError")(x.what());
  } catch (...) {
    return errors_module().attr("ParslError")("unknown C++ exception");
  }
}

nb::object describe_failures(const PropagatedError::Failures& failed) {
  nb::list out;
  for (const auto& [err, id] : failed)
    out.append(nb::make_tuple(exception_to_python(err), nb::str(describe_task(err, id).c_str())));
  return out;
}

// A big result's out-of-band buffers become bytes objects as they arrive
// (set_result_buffer_hook), on the executor's thread: a pool app that returns 1 GB of bytes
// costs the driver 1 GB, not the ZeroMQ frame plus its copy. Unpickling is then handed the bytes
// object itself, which pervade.serialize's rebuild returns as the value: no copy at all.
struct PyBytesOwner {  // the deleter that marks a SharedBuffer as owned by a bytes object
  void operator()(const void* bytes) const { PyRef::steal(static_cast<PyObject*>(const_cast<void*>(bytes))); }
};

// memcpy that gives the source's pages back to the kernel as it goes (MADV_DONTNEED on the
// pages it has copied), so the copy never holds both whole. Only for a source nobody reads again.
void copy_releasing_source(char* to, const char* from, std::size_t n) {
  constexpr std::size_t kChunk = std::size_t{32} << 20;
  const auto page = static_cast<std::uintptr_t>(::sysconf(_SC_PAGESIZE));
  const auto start = reinterpret_cast<std::uintptr_t>(from);
  std::uintptr_t released = (start + page - 1) / page * page;  // whole pages inside the source only
  for (std::size_t done = 0; done < n;) {
    const std::size_t k = std::min(kChunk, n - done);
    std::memcpy(to + done, from + done, k);
    done += k;
    const std::uintptr_t end = (start + done) / page * page;
    if (end > released) {
      ::madvise(reinterpret_cast<void*>(released), end - released, MADV_DONTNEED);
      released = end;
    }
  }
}

void adopt_result_buffers(std::vector<SharedBuffer>& buffers) {
  for (SharedBuffer& b : buffers) {
    if (std::get_deleter<PyBytesOwner>(b.owner)) continue;
    PyObject* bytes;
    {
      nb::gil_scoped_acquire gil;
      bytes = PyBytes_FromStringAndSize(nullptr, static_cast<Py_ssize_t>(b.size));
      if (!bytes) {  // no memory for it now: the value is unpickled from the frame later
        PyErr_Clear();
        continue;
      }
    }
    if (b.owner.use_count() == 1)
      copy_releasing_source(PyBytes_AS_STRING(bytes), b.data, b.size);
    else
      std::memcpy(PyBytes_AS_STRING(bytes), b.data, b.size);
    b = SharedBuffer{std::shared_ptr<const void>(bytes, PyBytesOwner{}), PyBytes_AS_STRING(bytes), b.size};
  }
}

// What unpickling gets for a big result's out-of-band buffers: the bytes objects they became,
// or read-only memoryviews over the ZeroMQ frames they arrived in (not copied), each keeping its
// frame alive as long as the view or what unpickling made of it lives.
nb::list buffer_views(const std::vector<SharedBuffer>& buffers) {
  nb::list out;
  for (const SharedBuffer& b : buffers) {
    if (std::get_deleter<PyBytesOwner>(b.owner)) {
      out.append(nb::borrow(static_cast<PyObject*>(const_cast<void*>(b.owner.get()))));
      continue;
    }
    auto* owner = new SharedBuffer(b);
    nb::capsule keep(owner, [](void* p) noexcept { delete static_cast<SharedBuffer*>(p); });
    const std::size_t shape[1] = {b.size};
    nb::ndarray<nb::memview, nb::ro, std::uint8_t, nb::ndim<1>> view(b.data, 1, shape, keep);
    out.append(nb::cast(view));
  }
  return out;
}

nb::object to_python(const std::any& v) {
  if (!v.has_value()) return nb::none();
  if (const auto* p = std::any_cast<PyValuePtr>(&v)) return nb::borrow((*p)->ref.get());
  if (const auto* r = std::any_cast<RemoteBytes>(&v)) {
    if (r->buffers.empty()) return serialize_module().attr("load_value")(as_bytes(r->bytes));
    return serialize_module().attr("load_value")(as_bytes(r->bytes), buffer_views(r->buffers));
  }
  if (const auto* l = std::any_cast<ValueList>(&v)) {
    nb::list out;
    for (const auto& item : l->values) out.append(to_python(item));
    return out;
  }
  // Results of C++ tasks submitted on the same kernel.
  if (const auto* i = std::any_cast<int>(&v)) return nb::int_(*i);
  if (const auto* i = std::any_cast<long>(&v)) return nb::int_(*i);
  if (const auto* d = std::any_cast<double>(&v)) return nb::float_(*d);
  if (const auto* b = std::any_cast<bool>(&v)) return nb::bool_(*b);
  if (const auto* s = std::any_cast<std::string>(&v)) return nb::str(s->c_str(), s->size());
  throw std::runtime_error(std::string("cannot convert a C++ value of type ") + v.type().name() + " to Python");
}

// A task's result for its AppFuture: a pool's bytes stay bytes (pervade.futures.PickledResult,
// unpickled by AppFuture.result() on first use), so a result that only feeds remote dependents
// is never unpickled in the driver.
nb::object result_to_python(const std::any& v) {
  static PyObject* pickled = nullptr;  // leaked on purpose, as the modules above
  if (const auto* r = std::any_cast<RemoteBytes>(&v)) {
    if (!pickled) pickled = nb::object(nb::module_::import_("pervade.futures").attr("PickledResult")).release().ptr();
    if (r->buffers.empty()) return nb::borrow(pickled)(as_bytes(r->bytes));
    return nb::borrow(pickled)(as_bytes(r->bytes), buffer_views(r->buffers));
  }
  return to_python(v);
}

// ---------------------------------------------------------------- tasks

// Seconds since the epoch, or None for a time not reached yet.
std::optional<double> epoch_seconds(std::chrono::system_clock::time_point t) {
  if (t == std::chrono::system_clock::time_point{}) return std::nullopt;
  return std::chrono::duration<double>(t.time_since_epoch()).count();
}

class PyTask;

// A task as Python holds it. `py` is the Python app's body (absent for external tasks).
class TaskHandle {
 public:
  explicit TaskHandle(TaskRecordPtr r, std::shared_ptr<PyTask> task = {}) : record(std::move(r)), py(std::move(task)) {}
  TaskRecordPtr record;
  std::shared_ptr<PyTask> py;
};

// Returned by a join app's runner: the kernel then waits for these tasks.
struct JoinRequest {
  std::vector<TaskRecordPtr> tasks;
  bool as_list;
};

class CompletionThread;

// The out-of-band buffers of an encoded call (pickle protocol 5, pervade.serialize: 1-D byte
// memoryviews), shared by the wire with every try of the task. A view of a bytes object is
// not copied: bytes cannot change, so the task holds a reference (dropped by whichever thread
// lets go last: PyRef defers it without the GIL) and ZeroMQ sends straight from it. Other
// buffers (a bytearray may change after the call) are copied once, with the GIL released.
std::vector<SharedBuffer> copy_buffers(nb::handle buffers) {
  std::vector<SharedBuffer> out;
  for (nb::handle b : buffers) {
    Py_buffer view;
    if (PyObject_GetBuffer(b.ptr(), &view, PyBUF_SIMPLE) != 0) throw nb::python_error();
    if (PyMemoryView_Check(b.ptr()) && PyBytes_CheckExact(PyMemoryView_GET_BASE(b.ptr()))) {
      auto ref = std::make_shared<PyRef>(PyRef::borrow(b.ptr()));  // the view holds the bytes
      out.push_back(SharedBuffer{ref, static_cast<const char*>(view.buf), static_cast<std::size_t>(view.len)});
      PyBuffer_Release(&view);  // the memory stays: the bytes object lives as long as `ref`
      continue;
    }
    const auto size = static_cast<std::size_t>(view.len);
    std::shared_ptr<char[]> copy(new char[size == 0 ? 1 : size]);
    {
      nb::gil_scoped_release unlocked;  // the bytes stay put: the view holds the exporter
      std::memcpy(copy.get(), view.buf, size);
    }
    PyBuffer_Release(&view);
    const char* data = copy.get();
    out.push_back(SharedBuffer{std::move(copy), data, size});
  }
  return out;
}

// The resource request of an encoded call (pervade.serialize.encode_call's last item): None
// (no parsl_resource_specification) or (num_nodes, ranks_per_node, num_ranks, launcher_options,
// cores, memory, gpus, running_time).
void set_resource_request(nb::handle request, RemoteTask* out) {
  if (request.is_none()) return;
  auto r = nb::borrow<nb::tuple>(request);
  out->has_resource_spec = true;
  out->num_nodes = nb::cast<int>(r[0]);
  out->ranks_per_node = nb::cast<int>(r[1]);
  out->num_ranks = nb::cast<int>(r[2]);
  out->launcher_options = nb::cast<std::string>(r[3]);
  out->cores = nb::cast<int>(r[4]);
  out->memory_mb = nb::cast<std::uint64_t>(r[5]);
  out->gpus = nb::cast<int>(r[6]);
  out->running_time = nb::cast<double>(r[7]);
}

// Finished tasks on their way to their AppFutures: the completion thread collects a batch and
// hands it to pervade.futures.complete, the one place that writes a future's fields, in one
// call (a flat list: future, outcome, value, future, ...). GIL held.
class FutureBatch {
 public:
  enum Outcome { kResult = 0, kException = 1, kCancelled = 2 };  // pervade.futures.RESULT, ...

  void add(PyObject* future, Outcome outcome, nb::handle value) {
    if (!items_.is_valid()) items_ = nb::list();
    items_.append(nb::handle(future));
    items_.append(nb::int_(static_cast<int>(outcome)));
    items_.append(value);
  }

  // Hands what was added over (nothing when empty) and starts a new batch.
  void deliver() {
    static PyObject* complete = nullptr;  // leaked on purpose, as the modules above
    if (!items_.is_valid()) return;
    nb::list items = std::move(items_);
    try {
      if (!complete) complete = nb::object(nb::module_::import_("pervade.futures").attr("complete")).release().ptr();
      nb::borrow(complete)(items);
    } catch (nb::python_error& e) {  // complete() reports each future's trouble itself: this is a bug
      e.discard_as_unraisable("pervade: completing a batch of futures");
    }
  }

 private:
  nb::list items_{nb::handle(), nb::detail::steal_t{}};  // made by the first add()
};

// A Python app call: the callable, its arguments, and the future to complete.
class PyTask final : public TaskBody, public TaskListener, public std::enable_shared_from_this<PyTask> {
 public:
  PyTask(CompletionThread* completions, PyRef func, PyRef args, PyRef kwargs, PyRef plan, PyRef future,
         PyRef encoded, bool memoized = false, PyRef key_fn = {})
      : completions_(completions), func_(std::move(func)), args_(std::move(args)), kwargs_(std::move(kwargs)),
        plan_(std::move(plan)), future_(std::move(future)), key_fn_(std::move(key_fn)), memoized_(memoized) {
    if (encoded) {  // GIL held: copy the bytes out once, so that tries can be encoded without it
      auto parts = nb::borrow<nb::tuple>(encoded.get());
      nb::bytes hash = nb::cast<nb::bytes>(parts[0]), fn = nb::cast<nb::bytes>(parts[1]),
                payload = nb::cast<nb::bytes>(parts[2]);
      encoded_ = RemoteTask{0, std::string(hash.c_str(), hash.size()), std::string(fn.c_str(), fn.size()),
                            std::string(payload.c_str(), payload.size()), {}, nb::cast<int>(parts[3]),
                            copy_buffers(parts[4])};
      set_resource_request(parts[5], &*encoded_);
    }
  }

  Outcome run(TaskContext& ctx) override;
  void interrupt(StopReason reason) override;
  bool encode_remote(const TaskContext& ctx, RemoteTask* out) override;
  bool encode_remote_now(const TaskContext& ctx, RemoteTask* out) override;
  void task_final(const TaskRecordPtr& task) override;
  void request_memo_key(const TaskContext& ctx, MemoKeyReply reply) override;
  void request_serialized(const std::any& value, SerializeReply reply) override;

  // Called by the completion thread with the GIL.
  void complete(const TaskRecord& record, FutureBatch& batch);
  void compute_memo_key(const MemoKeyReply& reply);
  void inject_stop(StopReason reason);

  // Listed in the kernel's `tasks` dict under `key` until final (dropped then when `drop`).
  void track(PyObject* tasks, PyRef key, bool drop) {
    tasks_ = tasks;
    key_ = std::move(key);
    drop_when_final_ = drop;
  }
  // GIL held. The call, until the task is final (then None).
  PyObject* func() const { return func_.get(); }
  PyObject* args() const { return args_.get(); }
  PyObject* kwargs() const { return kwargs_.get(); }
  PyObject* future() const { return future_.get(); }
  PyObject* plan() const { return plan_.get(); }
  bool memoized() const { return memoized_; }
  bool pickled_at_call() const { return encoded_.has_value(); }  // args and kwargs are in the payload

  std::atomic<ShellInterrupt*> shell{nullptr};  // the command this task is running, if any
  // What interrupt() was asked: a cancellation may arrive just before run() (the task never
  // runs again); the reason a stopped command reports.
  StopRequests stops;

 private:
  CompletionThread* completions_;
  PyRef func_, args_, kwargs_, plan_, future_;
  PyRef key_fn_;         // memoized calls with futures: () -> key, called once the futures are done
  PyObject* tasks_ = nullptr;  // the kernel's dict of tasks (borrowed: the kernel outlives completion)
  PyRef key_;                  // this task's id in it
  bool drop_when_final_ = true;
  void untrack();
  bool memoized_;        // the result is pickled on the worker thread for the memo table
  std::optional<RemoteTask> encoded_;  // the call, when pickled at submit (remote-only apps); no inputs
  unsigned long running_ident_ = 0;  // GIL-protected: the thread running the function
  bool interrupted_ = false;         // GIL-protected
};

thread_local PyTask* t_current_task = nullptr;

std::string serialize_for_memo(PyObject* result);

PyObject* g_invoke = nullptr;  // pervade.dataflow.dflow._invoke_with_dependencies, set by the package

Outcome PyTask::run(TaskContext& ctx) {
  hold_gil();
  set_thread_release_hook(&release_gil);
  running_ident_ = PyThread_get_thread_ident();
  t_current_task = this;
  PyObject* result;
  if (stops.cancelled()) {
    // Cancelled after the executor published this try but before the function started (the
    // completion thread found no running function to raise in).
    nb::object error = exception_to_python(stop_error(StopReason::cancelled, "the task was cancelled before it started"));
    PyErr_SetObject(reinterpret_cast<PyObject*>(Py_TYPE(error.ptr())), error.ptr());
    result = nullptr;
  } else if (ctx.dependency_count() == 0) {
    result = PyObject_Call(func_.get(), args_.get(), kwargs_.get());
  } else {
    PyObject* deps = PyList_New(static_cast<Py_ssize_t>(ctx.dependency_count()));
    try {
      for (std::size_t i = 0; i < ctx.dependency_count(); ++i)
        PyList_SET_ITEM(deps, i, to_python(ctx.dependency(i)).release().ptr());
      result = PyObject_CallFunctionObjArgs(g_invoke, func_.get(), args_.get(), kwargs_.get() ? kwargs_.get() : Py_None,
                                            plan_.get() ? plan_.get() : Py_None, deps, nullptr);
    } catch (const std::exception& e) {
      PyErr_SetString(PyExc_TypeError, e.what());
      result = nullptr;
    }
    Py_DECREF(deps);
  }
  t_current_task = nullptr;
  running_ident_ = 0;
  if (interrupted_) PyThreadState_SetAsyncExc(PyThread_get_thread_ident(), nullptr);  // drop a late one
  if (!result) return Outcome::failure(fetch_python_error());
  if (nb::inst_check(nb::handle(result)) && nb::isinstance<JoinRequest>(nb::handle(result))) {
    auto& join = nb::cast<JoinRequest&>(nb::handle(result));
    Outcome out = Outcome::join_tasks(std::move(join.tasks), join.as_list);
    Py_DECREF(result);
    return out;
  }
  Outcome out = Outcome::success(std::make_shared<PyValue>(PyValue{PyRef::steal(result)}));
  if (memoized_) out.serialized = serialize_for_memo(result);
  return out;
}

// The bytes of a memoized result, made here because this thread holds the GIL. A result that
// cannot be pickled is not memoized (pervade.memoization.not_memoizable logs why).
std::string serialize_for_memo(PyObject* result) {
  try {
    nb::bytes b = nb::cast<nb::bytes>(serialize_module().attr("serialize_value")(nb::handle(result)));
    return std::string(b.c_str(), b.size());
  } catch (nb::python_error& e) {
    try {
      nb::module_::import_("pervade.memoization").attr("not_memoizable")(nb::handle(result), e.value());
    } catch (nb::python_error& log_error) {
      log_error.discard_as_unraisable("pervade: reporting a result that cannot be memoized");
    }
    return {};
  }
}

// Runs on the HighThroughputExecutor's encoder thread: pickles the call once, and forwards
// dependency results that came from pools as the bytes they arrived as.
// An input a follower waits for is left empty: its pool fills it in.
// A big result with out-of-band buffers is not forwarded as bytes: inputs have no buffers, so
// encode_remote() pickles its value again, in band (docs/htex.md, "Big results").
bool PyTask::encode_remote_now(const TaskContext& ctx, RemoteTask* out) {
  if (!encoded_) return false;
  for (std::size_t i = 0; i < ctx.dependency_count(); ++i) {
    if (!ctx.dependency_done(i)) continue;
    const auto* remote = std::any_cast<RemoteBytes>(&ctx.dependency(i));
    if (!remote || !remote->buffers.empty()) return false;  // pickling needs the GIL
  }
  *out = *encoded_;  // a copy: a retry sends the same bytes (the arguments are not kept)
  for (std::size_t i = 0; i < ctx.dependency_count(); ++i)
    out->inputs.push_back(ctx.dependency_done(i) ? std::any_cast<const RemoteBytes&>(ctx.dependency(i)).bytes
                                                 : std::string());
  return true;
}

bool PyTask::encode_remote(const TaskContext& ctx, RemoteTask* out) {
  hold_gil();
  set_thread_release_hook(&release_gil);
  try {
    nb::object serialize = serialize_module();
    std::vector<std::string> inputs;
    for (std::size_t i = 0; i < ctx.dependency_count(); ++i) {
      const std::any& v = ctx.dependency(i);
      if (const auto* r = std::any_cast<RemoteBytes>(&v); r && r->buffers.empty()) {
        inputs.push_back(r->bytes);
      } else {
        nb::bytes b = nb::cast<nb::bytes>(serialize.attr("serialize_value")(to_python(v)));
        inputs.emplace_back(b.c_str(), b.size());
      }
    }
    if (encoded_) {
      *out = *encoded_;
    } else {
      auto parts = nb::cast<nb::tuple>(serialize.attr("encode_call")(
          nb::borrow(func_.get()), nb::borrow(args_.get()), kwargs_ ? nb::borrow(kwargs_.get()) : nb::none(),
          plan_ ? nb::borrow(plan_.get()) : nb::none(), ctx.task().func_name()));
      nb::bytes hash = nb::cast<nb::bytes>(parts[0]), fn = nb::cast<nb::bytes>(parts[1]),
                payload = nb::cast<nb::bytes>(parts[2]);
      out->kind = 0;
      out->fn_hash.assign(hash.c_str(), hash.size());
      out->fn.assign(fn.c_str(), fn.size());
      out->payload.assign(payload.c_str(), payload.size());
      out->priority = nb::cast<int>(parts[3]);
      out->buffers = copy_buffers(parts[4]);
      set_resource_request(parts[5], out);
    }
    out->inputs = std::move(inputs);
    return true;
  } catch (nb::python_error& e) {
    e.restore();
    std::rethrow_exception(fetch_python_error());
  }
}

void PyTask::inject_stop(StopReason reason) {
  if (running_ident_ == 0) return;
  interrupted_ = true;
  // Raised asynchronously as a class: the kernel fails the try with its own error and text.
  nb::object error = exception_to_python(stop_error(reason, ""));
  PyThreadState_SetAsyncExc(running_ident_, reinterpret_cast<PyObject*>(Py_TYPE(error.ptr())));
}

// ---------------------------------------------------------------- completion thread

class CompletionThread {
 public:
  CompletionThread() : thread_([this] {
    detail::name_this_thread("pv-completion");
    set_engine_thread(true);  // done-callbacks that submit must not wait for capacity
    loop();
  }) {}
  ~CompletionThread() { stop(); }

  // Before any task: the engine's records that this log hands to Python handlers reach them
  // before the futures they describe complete (a failed task's ERROR record, and with
  // every_batch each batch's records: the engine's loggers were enabled below WARNING). Without
  // a failure in a batch this costs one look at each item and no flush.
  void deliver_logs_first(std::shared_ptr<LogObserver> log, bool every_batch) {
    log_ = std::move(log);
    log_every_batch_ = every_batch;
  }

  void push_final(std::shared_ptr<PyTask> task, TaskRecordPtr record) {
    push(Item{std::move(task), std::move(record), false, StopReason::walltime});
  }

  // Blocks (without the GIL) until every item queued so far has been delivered to Python.
  // A task is queued here before the kernel counts it finished, so after
  // DataFlowKernel::wait_for_current_tasks this means every future is done.
  // With a timeout: true if delivered.
  bool wait_delivered(std::chrono::duration<double> timeout) {
    if (std::this_thread::get_id() == thread_.get_id()) return true;  // from a done-callback
    std::unique_lock lock(mutex_);
    if (!delivery_target_) delivery_target_ = pushed_;
    if (!delivered_cv_.wait_for(lock, timeout, [&] { return delivered_ >= *delivery_target_ || stopped_; }))
      return false;
    delivery_target_.reset();
    return true;
  }
  // Back-pressure on delivery: waits up to `timeout` until fewer than `limit` finished tasks
  // await their Python futures; true if so. Never from this thread (it would wait for itself).
  bool wait_backlog_below(std::uint64_t limit, std::chrono::duration<double> timeout) {
    if (backlog_.load(std::memory_order_relaxed) < limit) return true;
    std::unique_lock lock(mutex_);
    return delivered_cv_.wait_for(lock, timeout, [&] { return pushed_ - delivered_ < limit || stopped_; });
  }

  void push_interrupt(std::shared_ptr<PyTask> task, StopReason reason) {
    push(Item{std::move(task), nullptr, true, reason});
  }
  void push_memo_key(std::shared_ptr<PyTask> task, TaskBody::MemoKeyReply reply) {
    push(Item{std::move(task), nullptr, false, StopReason::walltime, std::move(reply)});
  }
  void push_serialize(std::any value, TaskBody::SerializeReply reply) {
    push(Item{nullptr, nullptr, false, StopReason::walltime, {}, std::move(value), std::move(reply)});
  }

  // Delivers everything queued so far, then ends the thread. Call without the GIL.
  void stop() {
    {
      std::lock_guard lock(mutex_);
      if (stopping_) return;
      stopping_ = true;
    }
    cv_.notify_one();
    if (thread_.joinable()) thread_.join();
  }

 private:
  struct Item {
    std::shared_ptr<PyTask> task;
    TaskRecordPtr record;
    bool interrupt;
    StopReason reason = StopReason::walltime;
    TaskBody::MemoKeyReply memo_key;  // set: compute the task's memo key
    std::any value;                   // with serialized: pickle this value for the memo table
    TaskBody::SerializeReply serialized;
  };

  void push(Item item) {
    bool wake;
    {
      std::lock_guard lock(mutex_);
      queue_.push_back(std::move(item));
      ++pushed_;
      backlog_.fetch_add(1, std::memory_order_relaxed);
      wake = sleeping_;
    }
    if (wake) cv_.notify_one();
  }

  void loop() {
    std::vector<Item> batch;
    for (;;) {
      {
        std::unique_lock lock(mutex_);
        while (queue_.empty() && !stopping_) {
          sleeping_ = true;
          cv_.wait(lock);
          sleeping_ = false;
        }
        if (queue_.empty()) break;
        batch.swap(queue_);
      }
      const std::size_t count = batch.size();
      if (log_ && (log_every_batch_ || std::any_of(batch.begin(), batch.end(), [](const Item& i) {
                     return i.record && i.record->error();
                   })))
        log_->flush();  // without the GIL: the log's writer takes it to hand the records over
      hold_gil();
      {
        FutureBatch futures;
        for (auto& item : batch) {
          if (item.record) {
            item.task->complete(*item.record, futures);
            continue;
          }
          // The rest waits for the futures completed before it (a memo key made from their values).
          futures.deliver();
          if (item.interrupt)
            item.task->inject_stop(item.reason);
          else if (item.memo_key)
            item.task->compute_memo_key(item.memo_key);
          else
            item.serialized(serialize_for_memo(to_python(item.value).ptr()));
        }
        futures.deliver();
      }
      batch.clear();  // drops the tasks' Python references while we hold the GIL
      drain_deferred_decrefs();
      release_gil();
      {
        std::lock_guard lock(mutex_);
        delivered_ += count;
        backlog_.fetch_sub(count, std::memory_order_relaxed);
      }
      delivered_cv_.notify_all();
    }
    {
      std::lock_guard lock(mutex_);
      stopped_ = true;
    }
    delivered_cv_.notify_all();
  }

  std::mutex mutex_;
  std::condition_variable cv_;
  std::condition_variable delivered_cv_;
  std::vector<Item> queue_;
  std::uint64_t pushed_ = 0;
  std::uint64_t delivered_ = 0;
  std::optional<std::uint64_t> delivery_target_;  // of the wait_delivered in progress, across its slices
  std::atomic<std::uint64_t> backlog_{0};  // pushed_ - delivered_, read without the lock
  std::shared_ptr<LogObserver> log_;        // deliver_logs_first; set before the thread sees a task
  bool log_every_batch_ = false;
  bool sleeping_ = false;
  bool stopping_ = false;
  bool stopped_ = false;
  std::thread thread_;
};

void PyTask::interrupt(StopReason reason) {
  // No GIL, must not block: stop a running command at once, and let the completion thread
  // raise AppTimeout (or DataFlowKernelClosed) inside the Python function.
  stops.request(reason);
  if (auto* s = shell.load()) s->request();
  completions_->push_interrupt(shared_from_this(), reason);
}

void PyTask::task_final(const TaskRecordPtr& task) { completions_->push_final(shared_from_this(), task); }

// The key of a memoized call with futures needs their values: it is computed on the completion
// thread, after the futures it depends on (queued there before) have been completed.
void PyTask::request_memo_key(const TaskContext&, MemoKeyReply reply) {
  completions_->push_memo_key(shared_from_this(), std::move(reply));
}

// A memoized join's value is pickled on the completion thread, after the futures of the tasks
// it joined (queued there before) were completed.
void PyTask::request_serialized(const std::any& value, SerializeReply reply) {
  completions_->push_serialize(value, std::move(reply));
}

void PyTask::compute_memo_key(const MemoKeyReply& reply) {
  std::string key;
  std::exception_ptr error;
  try {
    nb::bytes b = nb::cast<nb::bytes>(nb::borrow(key_fn_.get())());
    key.assign(b.c_str(), b.size());
  } catch (nb::python_error& e) {
    e.restore();
    error = fetch_python_error();
  } catch (const std::exception&) {
    error = std::current_exception();
  }
  key_fn_.reset();
  reply(std::move(key), std::move(error));
}

// The task's end for its AppFuture, added to the completion thread's batch. GIL held.
void PyTask::complete(const TaskRecord& record, FutureBatch& batch) {
  untrack();  // as Parsl wipes the record before it completes the future
  if (record.state() == TaskState::cancelled) {
    // AppFuture.cancel() may have marked it already; the future runs its callbacks only once.
    batch.add(future_.get(), FutureBatch::kCancelled, nb::none());
    return;
  }
  try {
    if (record.error())
      batch.add(future_.get(), FutureBatch::kException, exception_to_python(record.error()));
    else
      batch.add(future_.get(), FutureBatch::kResult, result_to_python(record.value()));
  } catch (nb::python_error& e) {  // the value could not be made: the future gets why
    batch.add(future_.get(), FutureBatch::kException, e.value());
  } catch (const std::exception& e) {
    batch.add(future_.get(), FutureBatch::kException, errors_module().attr("ParslError")(e.what()));
  }
  func_.reset();
  args_.reset();
  kwargs_.reset();
  plan_.reset();
  future_.reset();
}

// Parsl's garbage_collect: a final task leaves dfk.tasks. GIL held.
void PyTask::untrack() {
  if (!tasks_ || !key_ || !drop_when_final_) return;
  if (PyDict_DelItem(tasks_, key_.get()) != 0) PyErr_Clear();  // not there: nothing to drop
  key_.reset();
}

// ---------------------------------------------------------------- the kernel object

// An app as the engine sees it: made once per app (pervade.app.app), passed with each of its
// calls. Main thread, GIL held.
struct BoundApp {
  PyRef func;                          // the task body the engine runs
  std::vector<std::string> executors;  // labels it may run on; empty: any user executor
  std::string name;                    // the task's func_name
  PyRef py_executors, py_name;         // the same for the front end (a tuple or None; a str), read per call
};

// What a call adds beyond its arguments, made only for calls that have any of it. Main
// thread, GIL held.
struct CallOptions {
  std::chrono::duration<double> walltime{0};  // 0: none
  std::optional<TaskId> reserved_id;          // the id taken before submission (AUTO_LOGNAME, staging)
  PyRef encoded;                              // the call pickled at submission (remote-only apps)
  PyRef memo;                                 // the memo key (bytes), or a callable making it later
  std::shared_ptr<const TaskSpec::StdStreams> std_streams;  // for observers
};


// (block id, job id, state number, message, exit code or None, log path) per block: pervade.executors
// makes JobStatus objects of them. GIL held.
nb::list block_tuples(const std::vector<BlockStatus>& blocks) {
  nb::list out;
  for (const auto& b : blocks)
    out.append(nb::make_tuple(b.block_id, b.job_id, static_cast<int>(b.status.state), b.status.message,
                              b.status.exit_code, b.status.log_path));
  return out;
}

class Executor_ {
 public:
  ExecutorPtr ptr;
  HighThroughputExecutor& htex() const {
    auto* h = dynamic_cast<HighThroughputExecutor*>(ptr.get());
    if (!h) throw std::invalid_argument("executor '" + ptr->label() + "' is not a HighThroughputExecutor");
    return *h;
  }
};

// pervade.memoization.native_options(): (memoize, CheckpointMode, period seconds, dir, files, pickle copy).
CheckpointConfig checkpoint_config(nb::handle options) {
  auto t = nb::cast<nb::tuple>(options);
  CheckpointConfig c;
  c.memoize = nb::cast<bool>(t[0]);
  c.mode = nb::cast<CheckpointMode>(t[1]);
  c.period = std::chrono::duration<double>(nb::cast<double>(t[2]));
  c.dir = nb::cast<std::string>(t[3]);
  c.files = nb::cast<std::vector<std::string>>(t[4]);
  c.parsl_pickle_copy = nb::cast<bool>(t[5]);
  return c;
}

class Kernel {
 public:
  Kernel(std::vector<Executor_*> executors, int retries, nb::object retry_handler, int internal_threads,
         nb::object checkpoint, std::size_t max_unfinished_tasks, std::vector<bindings::ObserverHandle*> observers,
         nb::dict tasks, bool garbage_collect, std::string run_id, std::string run_dir,
         bindings::ObserverHandle* log_barrier, bool log_every_batch)
      : tasks_(std::move(tasks)), garbage_collect_(garbage_collect) {
    if (log_barrier)
      completions_.deliver_logs_first(std::dynamic_pointer_cast<LogObserver>(log_barrier->ptr), log_every_batch);
    Config cfg;
    for (auto* o : observers) cfg.observers.push_back(o->ptr);
    cfg.run_id = std::move(run_id);
    cfg.run_dir = std::move(run_dir);
    if (!checkpoint.is_none()) cfg.checkpoint = checkpoint_config(checkpoint);
    for (auto* e : executors) cfg.executors.push_back(e->ptr);
    cfg.retries = retries;
    cfg.internal_tasks_max_threads = internal_threads;
    cfg.max_unfinished_tasks = max_unfinished_tasks;
    cfg.cleanup_fails_external_waits = false;  // Parsl's: such a task stays unfinished
    if (!retry_handler.is_none()) {
      auto handler = std::make_shared<PyRef>(PyRef::borrow(retry_handler.ptr()));
      cfg.retry_handler = [handler](const std::exception_ptr& e, const TaskRecord& t) -> double {
        nb::gil_scoped_acquire gil;
        try {
          // The task record Parsl passes (its keys), with this failure in fail_history.
          auto* task = dynamic_cast<PyTask*>(t.body().get());
          if (!task || !task->future()) throw std::logic_error("retry_handler: the task has no Python future");
          nb::object exc = exception_to_python(e);
          nb::object record = nb::borrow(task->future()).attr("task_record");
          nb::cast<nb::list>(record["fail_history"]).append(nb::repr(exc));
          nb::object cost = nb::borrow(handler->get())(exc, record);
          double value;
          if (!nb::try_cast<double>(cost, value)) {
            std::string got = nb::cast<std::string>(nb::repr(cost));
            PyErr_SetString(PyExc_TypeError, ("retry_handler must return a number (the cost of the failure), got " + got).c_str());
            throw nb::python_error();
          }
          return value;
        } catch (nb::python_error& err) {
          err.restore();
          std::rethrow_exception(fetch_python_error());
        }
      };
    }
    dfk_ = std::make_unique<DataFlowKernel>(std::move(cfg));
  }

  ~Kernel() {
    nb::gil_scoped_release release;
    if (cleanup_thread_.joinable()) cleanup_thread_.join();
    shutdown();
  }

  // One app call: the app's bound object, the call's future and arguments, the dependencies
  // found in them (TaskHandles, and the plan that puts their values in place), and, when the
  // call has any, its CallOptions (None otherwise).
  TaskHandle submit(const BoundApp& app, nb::handle future, nb::handle args, nb::handle kwargs, nb::handle deps,
                    nb::handle plan, nb::handle options) {
    const CallOptions* call = options.is_none() ? nullptr : &nb::cast<const CallOptions&>(options);
    // memo: None (not memoized), the key (bytes), or a callable that makes it once futures are done.
    nb::handle memo = call && call->memo ? nb::handle(call->memo.get()) : nb::none();
    const bool memoized = !memo.is_none();
    const bool key_later = memoized && !nb::isinstance<nb::bytes>(memo);
    wait_for_capacity();
    auto task = std::make_shared<PyTask>(&completions_, PyRef::borrow(app.func.get()), PyRef::borrow(args.ptr()),
                                         kwargs.is_none() ? PyRef() : PyRef::borrow(kwargs.ptr()),
                                         plan.is_none() ? PyRef() : PyRef::borrow(plan.ptr()),
                                         PyRef::borrow(future.ptr()),
                                         call && call->encoded ? PyRef::borrow(call->encoded.get()) : PyRef(),
                                         memoized, key_later ? PyRef::borrow(memo.ptr()) : PyRef());
    TaskSpec spec;
    if (key_later) {
      spec.memo_key_later = true;
    } else if (memoized) {
      nb::bytes key = nb::borrow<nb::bytes>(memo);
      spec.memo_key.assign(key.c_str(), key.size());
    }
    spec.body = task;
    spec.listener = task;
    spec.func_name = app.name;
    spec.executors = app.executors;
    if (call) {
      spec.walltime = call->walltime;
      spec.std_streams = call->std_streams;
    }
    if (!deps.is_none())
      for (nb::handle d : deps) spec.dependencies.push_back(nb::cast<TaskHandle&>(d).record);
    // Capacity was awaited above without the GIL; submit must not wait again while holding it
    // (tasks that need the GIL could never finish). With several submitting threads the limit
    // may thus be passed by one task per thread.
    struct NoWait {
      bool was = set_engine_thread(true);
      ~NoWait() { set_engine_thread(was); }
    } no_wait;
    TaskRecordPtr record = call && call->reserved_id ? dfk_->submit(std::move(spec), *call->reserved_id)
                                                     : dfk_->submit(std::move(spec));
    // Listed in dfk.tasks while it is not final. The GIL is held, so the completion thread
    // cannot have completed (and unlisted) it yet.
    PyRef key = PyRef::steal(PyLong_FromUnsignedLongLong(record->id().value));
    if (!key || PyDict_SetItem(tasks_.ptr(), key.get(), future.ptr()) != 0) throw nb::python_error();
    task->track(tasks_.ptr(), std::move(key), garbage_collect_);
    return TaskHandle(std::move(record), std::move(task));
  }

  // Back-pressure (the kernel's policy, over its tasks and the completion thread's backlog):
  // waits without the GIL, in slices so that Ctrl-C (KeyboardInterrupt) gets through.
  void wait_for_capacity() {
    using namespace std::chrono_literals;
    if (dfk_->wait_for_capacity(0s, backlog_below_)) return;
    for (;;) {
      bool ready;
      {
        nb::gil_scoped_release release;
        ready = dfk_->wait_for_capacity(100ms, backlog_below_);
      }
      if (ready) return;
      if (PyErr_CheckSignals() != 0) throw nb::python_error();
    }
  }

  // Blocks (without the GIL) until the kernel's thread has cancelled the task or found it final.
  bool cancel(TaskHandle& task) {
    nb::gil_scoped_release release;
    return dfk_->cancel(task.record);
  }

  std::uint64_t reserve_id() { return dfk_->reserve_task_id().value; }
  std::uint64_t task_count() const { return dfk_->task_count(); }

  TaskHandle create_external(const std::string& name) { return TaskHandle(dfk_->create_external(name)); }

  // description: how a DependencyError names the failed future (its repr when it failed).
  void complete_external(TaskHandle& task, nb::handle value, nb::handle exception, const std::string& description) {
    Outcome out;
    if (!exception.is_none()) {
      std::string text = nb::cast<std::string>(nb::str(exception));
      out = Outcome::failure(std::make_exception_ptr(PythonError(
          PyRef::borrow(exception.ptr()), std::move(text), description.empty() ? task.record->func_name() : description)));
    } else {
      out = Outcome::success(std::make_shared<PyValue>(PyValue{PyRef::borrow(value.ptr())}));
    }
    dfk_->complete_external(task.record, std::move(out));
  }

  // Waits in slices without the GIL, so that Ctrl-C and Python signal handlers run meanwhile
  // (a handler that raises ends the wait with its exception).
  template <class Done>
  void wait_interruptibly(Done done) {
    for (;;) {
      bool finished;
      {
        nb::gil_scoped_release release;
        finished = done(std::chrono::milliseconds(100));
      }
      if (finished) return;
      if (PyErr_CheckSignals() != 0) throw nb::python_error();
    }
  }

  void wait_for_current_tasks() {
    wait_interruptibly([&](auto slice) { return dfk_->wait_for_current_tasks(slice); });
    wait_interruptibly([&](auto slice) { return completions_.wait_delivered(slice); });
  }

  // Runs the engine's cleanup on its own thread and waits for it interruptibly; an interrupted
  // cleanup goes on in the background and the kernel's destructor waits for it.
  void cleanup() {
    {
      std::lock_guard lock(cleanup_mutex_);
      if (!cleanup_thread_.joinable())
        cleanup_thread_ = std::thread([this] {
          detail::name_this_thread("pv-cleanup");
          shutdown();
          std::lock_guard done(cleanup_mutex_);
          cleaned_up_ = true;
          cleaned_up_cv_.notify_all();
        });
    }
    wait_interruptibly([&](auto slice) {
      std::unique_lock lock(cleanup_mutex_);
      return cleaned_up_cv_.wait_for(lock, slice, [&] { return cleaned_up_; });
    });
  }

  // Parsl's task_state_counts: state number -> tasks in that state now (states with tasks).
  nb::dict task_state_counts() const {
    nb::dict out;
    for (int s = static_cast<int>(TaskState::pending); s <= static_cast<int>(TaskState::cancelled); ++s)
      if (const auto n = dfk_->tasks_in_state(static_cast<TaskState>(s)); n > 0) out[nb::int_(s)] = n;
    return out;
  }

  std::size_t outstanding() const { return dfk_->outstanding_tasks(); }
  std::size_t waiting_submitters() const { return dfk_->waiting_submitters(); }

  std::size_t checkpoint() {
    nb::gil_scoped_release release;
    return dfk_->checkpoint();
  }

 private:
  void shutdown() {  // without the GIL
    dfk_->cleanup();
    completions_.stop();
  }

  nb::dict tasks_;  // dfk.tasks: id -> AppFuture of each task not yet final (all, without garbage_collect)
  bool garbage_collect_;
  CompletionThread completions_;
  std::unique_ptr<DataFlowKernel> dfk_;
  const DataFlowKernel::BacklogBelow backlog_below_ = [this](std::size_t limit, std::chrono::duration<double> timeout) {
    return completions_.wait_backlog_below(limit, timeout);
  };
  std::mutex cleanup_mutex_;
  std::condition_variable cleaned_up_cv_;
  bool cleaned_up_ = false;
  std::thread cleanup_thread_;
};

// ---------------------------------------------------------------- executors written in Python

}  // namespace

// For python_executor.cpp (declared in bindings.hpp).
void pervade::bindings::hold_engine_gil() { hold_gil(); }
void pervade::bindings::release_engine_gil() { release_gil(); }
std::exception_ptr pervade::bindings::take_python_error() { return fetch_python_error(); }

nb::tuple pervade::bindings::python_call(TaskBody& body, const TaskContext& ctx) {
  auto* task = dynamic_cast<PyTask*>(&body);
  if (!task || !task->func() || task->pickled_at_call())
    throw std::invalid_argument("task " + ctx.task().func_name() + " is not a Python call this executor can run");
  nb::list values;
  for (std::size_t i = 0; i < ctx.dependency_count(); ++i) values.append(to_python(ctx.dependency(i)));
  auto or_none = [](PyObject* o) { return o ? nb::borrow(o) : nb::none(); };
  return nb::make_tuple(nb::borrow(task->func()), nb::borrow(task->args()), or_none(task->kwargs()),
                        or_none(task->plan()), values);
}

Outcome pervade::bindings::python_success(TaskBody& body, nb::handle value) {
  Outcome out = Outcome::success(std::make_shared<PyValue>(PyValue{PyRef::borrow(value.ptr())}));
  if (auto* task = dynamic_cast<PyTask*>(&body); task && task->memoized()) out.serialized = serialize_for_memo(value.ptr());
  return out;
}

namespace {

// ---------------------------------------------------------------- shell commands for bash apps

int run_shell_py(const std::string& command, const std::string& stdout_path, bool stdout_append,
                 const std::string& stderr_path, bool stderr_append, double walltime) {
  ShellCommand cmd;
  // On a pool's worker there is no kernel timer: the command enforces its walltime itself.
  cmd.walltime = std::chrono::duration<double>(walltime);
  cmd.command = command;
  cmd.stdout_spec = StdStream{stdout_path, stdout_append};
  cmd.stderr_spec = StdStream{stderr_path, stderr_append};
  PyTask* task = t_current_task;
  ShellInterrupt interrupt;
  ShellResult result;
  {
    nb::gil_scoped_release release;
    if (task) {
      task->shell.store(&interrupt);
      if (task->stops.cancelled()) interrupt.request();  // cancelled before the store
    }
    try {
      result = run_shell(cmd, &interrupt);
    } catch (...) {
      if (task) task->shell.store(nullptr);
      throw;
    }
    if (task) task->shell.store(nullptr);
  }
  if (result.interrupted || result.timed_out) {
    const StopReason reason = result.timed_out || !task ? StopReason::walltime : task->stops.reason();
    std::rethrow_exception(command_stop_error(reason, "the command"));
  }
  return result.exit_code;
}

}  // namespace

NB_MODULE(_native, m) {
  m.doc() = "pervade's C++ engine (internal: use the pervade package)";
  // Futures and kernels held by module globals at interpreter exit are normal in Python;
  // the engine itself is stopped by DataFlowKernel.cleanup (also registered with atexit).
  nb::set_leak_warnings(false);
  set_result_buffer_hook(&adopt_result_buffers);

  nb::class_<TaskHandle>(m, "TaskHandle")
      .def_prop_ro("id", [](const TaskHandle& t) { return t.record->id().value; })
      .def_prop_ro("state", [](const TaskHandle& t) { return std::string(to_string(t.record->state())); })
      .def_prop_ro("done", [](const TaskHandle& t) { return t.record->done(); })
      .def_prop_ro("fail_count", [](const TaskHandle& t) { return t.record->fail_count(); })
      .def_prop_ro("fail_cost", [](const TaskHandle& t) { return t.record->fail_cost(); })
      .def_prop_ro("try_id", [](const TaskHandle& t) { return parsl_try_id(t.record->try_id()); })
      .def_prop_ro("executor", [](const TaskHandle& t) { return t.record->executor_label(); })
      .def_prop_ro("func_name", [](const TaskHandle& t) { return t.record->func_name(); })
      .def_prop_ro("state_number", [](const TaskHandle& t) { return static_cast<int>(t.record->state()); })
      .def_prop_ro("time_invoked", [](const TaskHandle& t) { return epoch_seconds(t.record->time_invoked()); })
      .def_prop_ro("time_returned", [](const TaskHandle& t) { return epoch_seconds(t.record->time_returned()); })
      .def_prop_ro("hashsum",
                   [](const TaskHandle& t) -> std::optional<std::string> {
                     std::string h = t.record->hashsum();
                     if (h.empty()) return std::nullopt;
                     return h;
                   })
      // The call (func, args, kwargs) while the task is not final; None after.
      .def_prop_ro("call", [](const TaskHandle& t) -> nb::object {
        PyTask* task = t.py.get();  // its fields are written under the GIL only, as here
        if (!task || !task->func()) return nb::none();
        return nb::make_tuple(nb::borrow(task->func()), nb::borrow(task->args()),
                              task->kwargs() ? nb::borrow(task->kwargs()) : nb::none());
      });

  nb::class_<JoinRequest>(m, "JoinRequest")
      .def("__init__", [](JoinRequest* self, std::vector<TaskHandle*> tasks, bool as_list) {
        auto* req = new (self) JoinRequest{{}, as_list};
        for (auto* t : tasks) req->tasks.push_back(t->record);
      });

  nb::class_<Executor_>(m, "Executor")
      .def_prop_ro("label", [](const Executor_& e) { return e.ptr->label(); })
      .def_prop_ro("url", [](const Executor_& e) { return e.htex().url(); })
      .def_prop_ro("port", [](const Executor_& e) { return e.htex().port(); })
      .def_prop_ro("outstanding", [](const Executor_& e) { return e.htex().outstanding(); })
      .def("refusals", [](const Executor_& e) { return e.htex().refusals(); })
      .def("failure", [](const Executor_& e) { return e.htex().failure(); })
      .def("fail",
           [](Executor_& e, const std::string& reason) {
             nb::gil_scoped_release release;  // cancels the blocks, maybe through Python provider methods
             e.htex().fail(reason);
           })
      .def("connected_blocks",
           [](const Executor_& e) {
             nb::gil_scoped_release release;
             return e.htex().connected_blocks();
           })
      .def("hold", [](Executor_& e, const std::string& pool, bool held) { return e.htex().hold(pool, held); })
      .def("drain", [](Executor_& e, const std::string& pool) { return e.htex().drain(pool); })
      // Without the GIL: the block manager's lock may be held by a thread that waits for the
      // GIL (a provider or launcher written in Python, called while a block is submitted).
      .def("pool_command",
           [](const Executor_& e, const std::string& block) {
             nb::gil_scoped_release release;
             return e.htex().pool_command(block);
           })
      .def_prop_ro("server_key_file",
                   [](const Executor_& e) {
                     nb::gil_scoped_release release;
                     return e.htex().server_key_file();
                   })
      .def("scale_out",
           [](Executor_& e, int count) {
             nb::gil_scoped_release release;
             return e.htex().scale_out(count);
           })
      .def(
          "scale_in",
          [](Executor_& e, int count, std::optional<double> max_idletime) {
            nb::gil_scoped_release release;
            return e.htex().scale_in(count, max_idletime);
          },
          nb::arg("count"), nb::arg("max_idletime").none())
      .def(
          "blocks",
          [](const Executor_& e, bool poll) {
            std::vector<BlockStatus> blocks;
            {
              nb::gil_scoped_release release;  // the provider may be Python's, called from here
              blocks = poll ? e.htex().blocks() : e.htex().known_blocks();
            }
            return block_tuples(blocks);
          },
          nb::arg("poll") = true)
      .def("pools", [](const Executor_& e) {
        std::vector<PoolStatus> pools;
        {
          nb::gil_scoped_release release;
          pools = e.htex().pools();
        }
        nb::list out;
        for (const auto& p : pools) {
          nb::dict d;
          d["pool_id"] = p.pool_id;
          d["block_id"] = p.block_id;
          d["hostname"] = p.hostname;
          d["worker_count"] = p.worker_count;
          d["prefetch"] = p.prefetch;
          d["tasks"] = p.in_flight;
          d["idle_seconds"] = p.idle_seconds;
          d["held"] = p.held;
          d["draining"] = p.draining;
          d["python_version"] = p.python_version;
          d["pervade_version"] = p.pervade_version;
          out.append(d);
        }
        return out;
      });

  // The engine's scaling decisions for pervade.jobs.strategy.Strategy (Parsl's class, which
  // scripts drive by hand on executors they describe): blocks are (block id, JobState number);
  // returns (blocks to start, block ids to scale in). The failure rule is the executor's, not this.
  nb::class_<detail::Strategy>(m, "ScalingStrategy")
      .def(
          "__init__",
          [](detail::Strategy* self, const std::string& kind, int min_blocks, int max_blocks, double parallelism,
             double max_idletime, int nodes_per_block) {
            new (self) detail::Strategy(detail::StrategyConfig{detail::parse_strategy(kind), min_blocks, max_blocks,
                                                               parallelism, max_idletime, nodes_per_block, 0});
          },
          nb::arg("kind"), nb::arg("min_blocks"), nb::arg("max_blocks"), nb::arg("parallelism"),
          nb::arg("max_idletime"), nb::arg("nodes_per_block"))
      .def(
          "decide",
          [](detail::Strategy& strategy, double now, std::size_t outstanding, int workers_per_node,
             const std::vector<std::pair<std::string, int>>& blocks) {
            detail::StrategySnapshot snap;
            snap.now = now;
            snap.outstanding = outstanding;
            snap.workers_per_node = workers_per_node;
            for (const auto& [id, state] : blocks) {
              detail::BlockSnapshot b;
              b.block_id = id;
              b.status.state = static_cast<JobState>(state);
              snap.blocks.push_back(std::move(b));
            }
            detail::StrategyDecisions d = strategy.decide(snap);
            d.cancel.insert(d.cancel.end(), d.drain.begin(), d.drain.end());
            return std::make_pair(d.start, d.cancel);
          },
          nb::arg("now"), nb::arg("outstanding"), nb::arg("workers_per_node"), nb::arg("blocks"));

  m.def("curve_keypair", [] {
    char public_key[41], secret_key[41];
    if (zmq_curve_keypair(public_key, secret_key) != 0)
      throw std::runtime_error(std::string("cannot make a CurveZMQ key pair: ") + zmq_strerror(zmq_errno()));
    return nb::make_tuple(std::string(public_key), std::string(secret_key));
  });

  pervade::bindings::bind_providers(m);
  pervade::bindings::bind_log_observer(m);
  pervade::bindings::bind_staging(m);
  pervade::bindings::bind_monitoring(m);

  // The Python HighThroughputExecutor fills these options (the ones it uses); the executor then
  // starts its blocks through `provider` once the interchange listens, with python_workers pools
  // whose worker options are `pool_args`, and cancels them at shutdown.
  nb::class_<HtexOptions>(m, "HtexOptions")
      .def(nb::init<>())
      .def_rw("label", &HtexOptions::label)
      .def_rw("address", &HtexOptions::address)
      .def_rw("worker_port", &HtexOptions::worker_port)
      .def_rw("port_min", &HtexOptions::port_min)
      .def_rw("port_max", &HtexOptions::port_max)
      .def_rw("heartbeat_period", &HtexOptions::heartbeat_period)
      .def_rw("heartbeat_threshold", &HtexOptions::heartbeat_threshold)
      .def_rw("python_version", &HtexOptions::python_version)
      .def_rw("encrypted", &HtexOptions::encrypted)
      .def_rw("short_task_prefetch", &HtexOptions::short_task_prefetch)
      .def_rw("follow_dependencies", &HtexOptions::follow_dependencies)
      .def_rw("same_host_ipc", &HtexOptions::same_host_ipc)
      .def_rw("mpi_launcher", &HtexOptions::mpi_launcher)
      .def_rw("provider", &HtexOptions::provider)
      .def_rw("prefetch_capacity", &HtexOptions::prefetch_capacity)
      .def_rw("python_workers", &HtexOptions::python_workers)
      .def_rw("pool_args", &HtexOptions::pool_args)
      .def_rw("run_dir", &HtexOptions::run_dir)
      .def_rw("pool_binary", &HtexOptions::pool_binary)
      .def_rw("strategy", &HtexOptions::strategy)
      .def_rw("strategy_period", &HtexOptions::strategy_period)
      .def_rw("max_idletime", &HtexOptions::max_idletime)
      .def_rw("max_failed_blocks", &HtexOptions::max_failed_blocks)
      .def_rw("expected_workers_per_node", &HtexOptions::expected_workers_per_node)
      // handler(block_tuples): called on the strategy thread every round (see HtexOptions).
      .def("set_block_error_handler", [](HtexOptions& o, nb::object handler) {
        auto owned = std::make_shared<bindings::OwnedPython>(handler);
        o.block_error_handler = [owned](const std::vector<BlockStatus>& blocks) {
          bindings::with_python([&] { owned->get()(block_tuples(blocks)); });
        };
      });
  m.def(
      "htex_executor",
      [](const HtexOptions& o) { return Executor_{std::make_shared<HighThroughputExecutor>(o)}; },
      nb::arg("options"));

  m.def(
      "python_executor",
      [](const std::string& label, nb::handle start, nb::handle submit, nb::handle shutdown, double shutdown_grace) {
        return Executor_{bindings::make_python_executor(label, start, submit, shutdown, shutdown_grace)};
      },
      nb::arg("label"), nb::arg("start"), nb::arg("submit"), nb::arg("shutdown"), nb::arg("shutdown_grace"));

  m.def(
      "thread_pool_executor",
      [](int max_threads, const std::string& label, double shutdown_grace) {
        return Executor_{std::make_shared<ThreadPoolExecutor>(max_threads, label,
                                                              std::chrono::duration<double>(shutdown_grace))};
      },
      nb::arg("max_threads"), nb::arg("label"), nb::arg("shutdown_grace"));

  nb::enum_<CheckpointMode>(m, "CheckpointMode")
      .value("none", CheckpointMode::none)
      .value("task_exit", CheckpointMode::task_exit)
      .value("periodic", CheckpointMode::periodic)
      .value("dfk_exit", CheckpointMode::dfk_exit)
      .value("manual", CheckpointMode::manual);
  // Parsl's checkpoint_mode (a name, or None) as the engine's mode; ConfigurationError otherwise.
  m.def(
      "checkpoint_mode",
      [](std::optional<std::string> name) { return name ? parse_checkpoint_mode(*name) : CheckpointMode::none; },
      nb::arg("name").none());

  nb::class_<BoundApp>(m, "BoundApp")
      .def(
          "__init__",
          [](BoundApp* self, nb::handle func, std::optional<std::vector<std::string>> executors, nb::str name) {
            nb::object labels = executors ? nb::object(nb::tuple(nb::cast(*executors))) : nb::none();
            new (self) BoundApp{PyRef::borrow(func.ptr()), executors.value_or(std::vector<std::string>{}),
                                nb::cast<std::string>(name), PyRef::borrow(labels.ptr()), PyRef::borrow(name.ptr())};
          },
          nb::arg("func"), nb::arg("executors").none(), nb::arg("name"))
      .def_prop_ro("func", [](const BoundApp& a) { return nb::borrow(a.func.get()); })
      .def_prop_ro("executors", [](const BoundApp& a) { return nb::borrow(a.py_executors.get()); })
      .def_prop_ro("name", [](const BoundApp& a) { return nb::borrow(a.py_name.get()); })
      // An app pickled by value (a function that calls it, sent to a pool) carries its binding.
      .def("__reduce__", [](nb::handle self) {
        const auto& a = nb::cast<const BoundApp&>(self);
        return nb::make_tuple(self.type(), nb::make_tuple(nb::borrow(a.func.get()), nb::borrow(a.py_executors.get()),
                                                          nb::borrow(a.py_name.get())));
      });

  nb::class_<CallOptions>(m, "CallOptions")
      .def(
          "__init__",
          [](CallOptions* self, double walltime, std::int64_t reserved_id, nb::handle encoded, nb::handle memo,
             std::optional<std::pair<std::string, std::string>> std_streams) {
            auto* o = new (self) CallOptions;
            o->walltime = std::chrono::duration<double>(walltime);
            if (reserved_id >= 0) o->reserved_id = TaskId{static_cast<std::uint64_t>(reserved_id)};
            if (!encoded.is_none()) o->encoded = PyRef::borrow(encoded.ptr());
            if (!memo.is_none()) o->memo = PyRef::borrow(memo.ptr());
            if (std_streams)
              o->std_streams = std::make_shared<const TaskSpec::StdStreams>(
                  TaskSpec::StdStreams{std::move(std_streams->first), std::move(std_streams->second)});
          },
          nb::arg("walltime"), nb::arg("reserved_id"), nb::arg("encoded").none(), nb::arg("memo").none(),
          nb::arg("std_streams").none());

  nb::class_<Kernel>(m, "Kernel")
      .def(nb::init<std::vector<Executor_*>, int, nb::object, int, nb::object, std::size_t,
                    std::vector<bindings::ObserverHandle*>, nb::dict, bool, std::string, std::string,
                    bindings::ObserverHandle*, bool>(),
           nb::arg("executors"), nb::arg("retries"), nb::arg("retry_handler").none(), nb::arg("internal_threads"),
           nb::arg("checkpoint").none(), nb::arg("max_unfinished_tasks"), nb::arg("observers"), nb::arg("tasks"),
           nb::arg("garbage_collect"), nb::arg("run_id") = "", nb::arg("run_dir") = "",
           nb::arg("log_barrier").none() = nb::none(), nb::arg("log_every_batch") = false)
      .def("submit", &Kernel::submit, nb::arg("app"), nb::arg("future"), nb::arg("args"), nb::arg("kwargs").none(),
           nb::arg("deps").none(), nb::arg("plan").none(), nb::arg("options").none())
      .def("reserve_id", &Kernel::reserve_id)
      .def("cancel", &Kernel::cancel)
      .def("create_external", &Kernel::create_external)
      .def("complete_external", &Kernel::complete_external, nb::arg("task"), nb::arg("value").none(),
           nb::arg("exception").none(), nb::arg("description") = "")
      .def("task_state_counts", &Kernel::task_state_counts)
      .def("wait_for_current_tasks", &Kernel::wait_for_current_tasks)
      .def("cleanup", &Kernel::cleanup)
      .def("checkpoint", &Kernel::checkpoint)
      .def_prop_ro("outstanding", &Kernel::outstanding)
      .def_prop_ro("task_count", &Kernel::task_count)
      .def_prop_ro("waiting_submitters", &Kernel::waiting_submitters);

  m.def("run_shell", &run_shell_py, nb::arg("command"), nb::arg("stdout_path"), nb::arg("stdout_append"),
        nb::arg("stderr_path"), nb::arg("stderr_append"), nb::arg("walltime") = 0.0);

  m.def("set_invoke", [](nb::object f) {
    Py_XDECREF(g_invoke);
    g_invoke = f.release().ptr();
  });

  // Error translation for exceptions raised synchronously by the engine (submit, config).
  nb::register_exception_translator([](const std::exception_ptr& p, void*) {
    try {
      std::rethrow_exception(p);
    } catch (const PythonError& e) {
      PyErr_SetObject(reinterpret_cast<PyObject*>(Py_TYPE(e.exception())), e.exception());
    } catch (const pervade::Error&) {
      nb::object exc = exception_to_python(p);
      PyErr_SetObject(reinterpret_cast<PyObject*>(Py_TYPE(exc.ptr())), exc.ptr());
    }
  });
}
