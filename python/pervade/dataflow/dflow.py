"""The Python face of the engine's DataFlowKernel, and the global load()/dfk()/clear()."""

from __future__ import annotations

import atexit
import glob
import logging
import os
import pathlib
import threading
import uuid
from collections.abc import Mapping
from concurrent.futures import Future, wait
from typing import Optional

import typeguard

from .. import _native, logging_engine, memoization, serialize
from ..config import Config
from ..data import DataFuture, File
from ..data_provider.data_manager import DataManager, has_files
from ..errors import ConfigurationError, NoDataFlowKernelError
from ..executors import written_in_python
from ..futures import AppFuture, set_task
from ..logconfigs.base import oneshot_initialize_logging, oneshot_uninitialize_logging
from ..logconfigs.file import FileLogging
from ..parsl_imports import shown_module
from .states import States

logger = logging.getLogger(__name__)

_NO_VALUE = object()  # plan entry: use the dependency's value


class Unwrap:
    """Plan entry of an argument in which a Config's dependency_resolver found futures: once they
    are done, the argument is replaced by resolver.traverse_to_unwrap(argument)."""

    __slots__ = ("unwrap", "value", "futures")

    def __init__(self, unwrap, value, futures):
        self.unwrap, self.value, self.futures = unwrap, value, futures

    def __call__(self):
        # The kernel runs a task once its dependencies are final in the engine; their Python
        # futures are completed by the completion thread, which may not have got to them yet.
        wait(self.futures)
        return self.unwrap(self.value)


def apply_plan(args, kwargs, plan, value_for):
    """Copies of args and kwargs with each planned position (a dependency's place: positional,
    keyword, or in `inputs`) set to value_for(index, replacement), or to the unwrapped argument
    for an Unwrap entry."""
    args = list(args)
    kwargs = dict(kwargs) if kwargs else {}
    inputs = list(kwargs["inputs"]) if "inputs" in kwargs else None
    for kind, key, index, replacement in plan:
        value = replacement() if type(replacement) is Unwrap else value_for(index, replacement)
        if kind == 0:
            args[key] = value
        elif kind == 1:
            kwargs[key] = value
        else:
            inputs[key] = value
    if inputs is not None:
        kwargs["inputs"] = inputs
    return args, kwargs


def _invoke_with_dependencies(func, args, kwargs, plan, values):
    """Runs on a worker: puts the finished dependencies' values in place, then calls func."""
    args, kwargs = apply_plan(args, kwargs, plan,
                              lambda index, replacement: values[index] if replacement is _NO_VALUE else replacement)
    return func(*args, **kwargs)


_native.set_invoke(_invoke_with_dependencies)


def submit_with_dependencies(executor, func, args, kwargs, plan, values) -> Future:
    """An executor written in Python (a ParslExecutor subclass) gets a try as Parsl's DFK hands it
    over: executor.submit(func, resource_specification, *args, **kwargs), the dependencies'
    values in place. Runs on that executor's launch thread (pervade._native.python_executor)."""
    if plan:
        args, kwargs = apply_plan(args, kwargs, plan,
                                  lambda index, replacement: values[index] if replacement is _NO_VALUE else replacement)
    else:
        kwargs = kwargs or {}
    future = executor.submit(func, kwargs.get("parsl_resource_specification", {}), *args, **kwargs)
    if not isinstance(future, Future):
        raise TypeError(f"{type(executor).__name__}.submit() must return a concurrent.futures.Future, got {future!r}")
    return future


def executor_labels(executors):
    """'all' (any user executor) -> None; a list of labels -> that list."""
    if executors == "all" or (isinstance(executors, str) and executors.lower() == "all"):
        return None
    if isinstance(executors, (list, tuple)) and all(isinstance(e, str) for e in executors):
        return list(executors)
    raise ConfigurationError(f"executors must be 'all' or a list of labels, got {executors!r}")


def _stream_path(spec) -> str:
    """The file a stdout=/stderr= spec names, as Parsl's monitoring records it ("" for none)."""
    if spec is None:
        return ""
    if isinstance(spec, File):
        return spec.url
    if isinstance(spec, tuple):
        spec = spec[0]
    try:
        path = os.fspath(spec)
    except TypeError:  # never fail a submission over what monitoring records
        return str(spec)
    return path.decode() if isinstance(path, bytes) else path


class _ResolvedInputs:
    """Monitoring's task_inputs once the futures among a call's inputs= are done: Parsl records the
    inputs with those futures replaced by their values (unless one failed: then it never does)."""

    def __init__(self, observers, task_id: int, inputs, futures) -> None:
        self._observers, self._task_id, self._inputs, self._futures = observers, task_id, inputs, futures
        self._lock = threading.Lock()
        self._waiting = len(futures)
        for f in futures:
            f.add_done_callback(self._done)

    def _done(self, _future) -> None:
        with self._lock:
            self._waiting -= 1
            if self._waiting:
                return
        if any(f.cancelled() or f.exception() is not None for f in self._futures):
            return
        try:
            text = str([v.result() if isinstance(v, Future) else v for v in self._inputs])
        except Exception:  # noqa: BLE001 - a value without a str(): monitoring keeps the first text
            logger.debug("task %d: the inputs' values have no str()", self._task_id, exc_info=True)
            return
        _native.describe_task(self._observers, self._task_id, text, None)


def make_rundir(path: str) -> str:
    """Creates <path>/NNN, the next free number, readable by this user only (0700: it will
    hold logs with task output, keys and pickled results), and returns its absolute path.

    mkdir is the atomic step: a program started at the same moment in the same run_dir that
    takes the number first makes this one try the next."""
    os.makedirs(path, exist_ok=True)
    numbers = [int(os.path.basename(p)) for p in glob.glob(os.path.join(path, "[0-9]*[0-9]"))
               if os.path.basename(p).isdigit()]
    number = max(numbers) + 1 if numbers else 0
    while True:
        run = os.path.join(path, "{0:03}".format(number))
        try:
            os.mkdir(run, 0o700)
        except FileExistsError:
            number += 1
            continue
        os.chmod(run, 0o700)  # whatever the umask
        return os.path.abspath(run)


class DataFlowKernel:
    """Runs app calls as a dependency graph on the configured executors.

    Usually made by pervade.load(config); usable directly and as a context manager:
    >>> with DataFlowKernel(Config()) as dfk: ...
    """

    def __init__(self, config: Config | None = None):
        self.config = config if config is not None else Config()
        self.monitoring = self.config.monitoring
        if self.monitoring is not None:
            self.monitoring.database_path(self.config.run_dir)  # a bad logging_endpoint fails before any directory is made
        self.run_dir = make_rundir(self.config.run_dir)
        self.run_id = str(uuid.uuid4())
        self._undo_logging = self._initialize_logging(self.config.initialize_logging)
        try:
            self._start(self.config)
        except BaseException:  # a bad executor option, BadCheckpoint: the log threads stop too
            self._undo_logging()
            raise
        self._lock = threading.Lock()
        self.cleanup_called = False  # set when cleanup() starts
        self._cleaned_up = False  # set when it has finished
        atexit.register(self.atexit_cleanup)
        logger.info("DataFlowKernel started: run_dir=%s executors=%s", self.run_dir, list(self.executors))

    def _start(self, config: Config) -> None:
        """Makes the executors and the engine's kernel (__init__'s part that may fail)."""
        self.executors = {e.label: e for e in config.executors}
        self.data_manager = DataManager(self)  # stages the Files of calls (docs/staging.md)
        # Labels of executors that run tasks in other processes: apps that can only go there are
        # serialized at the call, so unpicklable arguments fail at once, in the caller.
        self._remote_labels = {e.label for e in config.executors if getattr(e, "remote", False)}
        self._all_remote = bool(self._remote_labels) and len(self._remote_labels) == len(self.executors)
        for e in config.executors:
            e.run_dir, e.run_id = self.run_dir, self.run_id
            # Executors with blocks scale them with the Config's strategy (docs/scaling.md).
            e.strategy, e.strategy_period, e.max_idletime = (
                config.strategy, config.strategy_period, config.max_idletime)
        natives = [e._native_executor() for e in config.executors]
        observers = [self._log_observer] if self._log_observer else []
        # With monitoring on, the observers this front end describes calls to (task_inputs, task_outputs).
        self._monitoring_observers = None
        if self.monitoring is not None:  # the monitoring database is written by the engine (docs/monitoring.md)
            observers.append(self.monitoring.native_observer(config.run_dir, self.run_dir, config.initialize_logging,
                                                             self._log_observer))
            self._monitoring_observers = observers
        memo = config._memo
        self._memoize = bool(memo.memoize)  # apps with cache=True compute keys only then
        self._memo_plugin = memo._plugin()  # a memoizer overriding check_memo is asked about each call
        # None: pervade's own search (Parsl's shallow one on threads; any depth for pool-only
        # apps); a resolver given in the Config decides alone, on every executor.
        self.dependency_resolver = config.dependency_resolver
        # id -> AppFuture of each task not yet final (every task without garbage_collect): the
        # engine lists and unlists them; dfk.tasks shows their records.
        self._task_futures = {}
        # May raise BadCheckpoint (a checkpoint file that cannot be read).
        self._kernel = _native.Kernel(natives, config.retries, config.retry_handler,
                                      config.internal_tasks_max_threads,
                                      memo.native_options(self.run_dir, config.run_dir),
                                      max_unfinished_tasks=config.max_unfinished_tasks or 0,
                                      observers=observers, run_id=self.run_id, run_dir=self.run_dir,
                                      tasks=self._task_futures, garbage_collect=bool(config.garbage_collect),
                                      log_barrier=self._log_observer,
                                      log_every_batch=logging_engine.forward_level() < logging.WARNING)
        self.memoizer = memo
        memo._dfk = self  # for memoizer.checkpoint()

    def _initialize_logging(self, setting):
        """Sets up this run's logging as Config(initialize_logging=) says (docs/logging.md) and
        picks the observer the engine logs to (self._log_observer, None: none). Returns the undo."""
        log_dir = pathlib.Path(self.run_dir)
        undo = None
        if setting is True:
            # A FileLogging of this kernel's own into run_dir/NNN/pervade.log, at INFO where Parsl's
            # is at DEBUG: writing five DEBUG lines per task costs a no-op run 15-20% (docs/logging.md).
            log_config = FileLogging(level=logging.INFO)
            undo = log_config.initialize_logging(log_dir=log_dir, log_name="pervade")
        elif setting is False:
            log_config = None
        else:
            log_config = setting
            oneshot_initialize_logging(log_config=setting, log_dir=log_dir, log_name="pervade")
            undo = lambda: oneshot_uninitialize_logging(log_config=setting)  # noqa: E731
        self._log_observer = getattr(log_config, "engine_observer", None)
        forwarding = None
        if self._log_observer is None:
            # No engine log file: the engine still hands its records to Python loggers that want them.
            self._log_observer = forwarding = logging_engine.forwarding_observer()

        def undo_all() -> None:
            if forwarding is not None:
                forwarding.stop()
            if undo is not None:
                undo()

        return undo_all

    # ------------------------------------------------------------------ submission

    def submit(self, func, app_args=(), executors="all", cache=False, ignore_for_cache=None, app_kwargs=None,
               join=False, func_name=None, walltime=None, reserved_id=-1, stdout=None, stderr=None) -> AppFuture:
        """Submits func(*app_args, **app_kwargs) once its future arguments are done (Parsl's signature)."""
        memo = None
        if cache and self._memoize:
            memo = memoization.memo_for_call(func, tuple(app_args), app_kwargs, ignore_for_cache or (),
                                             self._memo_plugin)
        app = _native.BoundApp(func, executor_labels(executors), func_name or getattr(func, "__name__", "app"))
        return self._submit_task(app, tuple(app_args), app_kwargs or None, memo, walltime, reserved_id, stdout, stderr)

    def _submit_task(self, app, args, kwargs, memo=None, walltime=None, reserved_id=-1, stdout=None,
                     stderr=None) -> AppFuture:
        """The apps' path: app is the app's _native.BoundApp; the call's arguments are already
        checked. Kept lean, it runs per call."""
        if self.cleanup_called:
            raise NoDataFlowKernelError("Cannot submit to a DFK that has been cleaned up")
        fut = AppFuture(self, app, stdout, stderr)
        staged = has_files(args, kwargs)
        if staged:  # stage-in tasks or wrappers, the outputs' DataFutures (docs/staging.md)
            func, args, kwargs, labels, reserved_id = self.data_manager.stage_call(fut, app.func, args, kwargs,
                                                                                   app.executors, reserved_id)
            app = _native.BoundApp(func, labels, app.name)
            stdout, stderr = kwargs.get("stdout"), kwargs.get("stderr")
        call_kwargs = kwargs  # the encoded path below drops kwargs
        deps = plan = encoded = None
        if self.dependency_resolver is not None:
            deps, plan = self._resolve_dependencies(args, kwargs)
        else:
            if self._remote_labels and (self._all_remote if app.executors is None
                                        else all(label in self._remote_labels for label in app.executors)):
                # Only pools can run it: pickled now, and every future met while pickling, at any
                # depth, is a dependency. Arguments that cannot be pickled fail the future instead
                # (as in Parsl): the call is then encoded at launch, where that error is reported.
                try:
                    encoded, futures = serialize.encode_call_finding_futures(app.func, args, kwargs, app.name)
                except TypeError:
                    pass
                else:
                    if futures:
                        deps = [self._dependency_handle(f) for f in futures]
                    args, kwargs = (), None  # the payload has them; the task never runs in this process
            if encoded is None:
                # As Parsl: futures as positional or keyword arguments and in inputs=.
                for i, a in enumerate(args):
                    if isinstance(a, Future):
                        deps, plan = self._add_dependency(deps, plan, a, 0, i)
                if kwargs:
                    for k, v in kwargs.items():
                        if isinstance(v, Future):
                            deps, plan = self._add_dependency(deps, plan, v, 1, k)
                    inputs = kwargs.get("inputs")
                    if inputs:
                        for i, v in enumerate(inputs):
                            if isinstance(v, Future):
                                deps, plan = self._add_dependency(deps, plan, v, 2, i)
        streams = None
        if (stdout is not None or stderr is not None) and self.monitoring is not None:
            streams = (_stream_path(stdout), _stream_path(stderr))  # the task table's task_stdout/task_stderr
        options = None
        if memo is not None or walltime or reserved_id >= 0 or encoded is not None or streams is not None:
            options = _native.CallOptions(float(walltime or 0), reserved_id, encoded, memo, streams)
        try:
            set_task(fut, self._kernel.submit(app, fut, args, kwargs, deps, plan, options))
        except BaseException as e:
            if staged:  # its stage-out tasks wait on it
                fut.set_exception(e)
            raise
        if self._monitoring_observers is not None and call_kwargs and \
                ("inputs" in call_kwargs or "outputs" in call_kwargs):
            self._describe_call(fut.tid, call_kwargs.get("inputs"), call_kwargs.get("outputs"))
        return fut

    def _describe_call(self, task_id: int, inputs, outputs) -> None:
        """Monitoring's task_inputs and task_outputs, as Parsl writes them: str() of inputs= and
        outputs=; the inputs again with the values of their futures once those are done."""
        try:
            inputs_text = None if inputs is None else str(inputs)
            outputs_text = None if outputs is None else str(outputs)
        except Exception:  # noqa: BLE001 - never fail a submission over what monitoring records
            logger.debug("task %d: inputs= or outputs= has no str()", task_id, exc_info=True)
            return
        _native.describe_task(self._monitoring_observers, task_id, inputs_text, outputs_text)
        futures = [v for v in inputs or () if isinstance(v, Future)]
        if futures:
            _ResolvedInputs(self._monitoring_observers, task_id, inputs, futures)

    def _resolve_dependencies(self, args, kwargs):
        """(deps, plan) as the Config's dependency_resolver finds them: in each positional and
        keyword argument and each item of inputs=, as Parsl searches."""
        deps = plan = None
        gather, unwrap = self.dependency_resolver.traverse_to_gather, self.dependency_resolver.traverse_to_unwrap
        places = [(0, i, a) for i, a in enumerate(args)]
        if kwargs:
            places += [(1, k, v) for k, v in kwargs.items()]
            places += [(2, i, v) for i, v in enumerate(kwargs.get("inputs") or ())]
        for kind, key, value in places:
            futures = gather(value)
            if not futures:
                continue
            if len(futures) == 1 and futures[0] is value:  # the argument is the future: its value
                deps, plan = self._add_dependency(deps, plan, value, kind, key)
                continue
            if deps is None:
                deps, plan = [], []
            plan.append((kind, key, -1, Unwrap(unwrap, value, futures)))
            deps.extend(self._dependency_handle(f) for f in futures)
        return deps, plan

    def _add_dependency(self, deps, plan, future, kind, key):
        if deps is None:
            deps, plan = [], []
        replacement = _NO_VALUE
        if isinstance(future, DataFuture) and isinstance(future.parent, AppFuture) and future.parent._dfk is self:
            replacement = future.file_obj
        plan.append((kind, key, len(deps), replacement))
        deps.append(self._dependency_handle(future))
        return deps, plan

    def _dependency_handle(self, future):
        """The kernel task a future stands for: its own for an AppFuture of this kernel, the app's for
        a DataFuture of one (the future's value is then its File), an external task otherwise."""
        if isinstance(future, DataFuture) and isinstance(future.parent, AppFuture) and future.parent._dfk is self:
            future = future.parent
        if isinstance(future, AppFuture) and future._dfk is self and future._handle is not None:
            return future._handle
        # Other futures, and an app's future that a stage-out task depends on before the app is submitted.
        return self._external(future)

    def _external(self, future: Future):
        """A future from outside this kernel becomes an external task that its callback completes."""
        handle = self._kernel.create_external(repr(future))
        kernel = self._kernel

        def done(f: Future) -> None:
            # result() rather than exception(): a cancelled future raises CancelledError from
            # both, and must fail the dependent (as in Parsl) instead of leaving it pending.
            try:
                value = f.result()
            except BaseException as exc:  # noqa: BLE001 - handed to the kernel as the failure
                # Named by its repr now, as failed (Parsl renders it when the dependent fails).
                kernel.complete_external(handle, None, exc, repr(f))
            else:
                kernel.complete_external(handle, value, None)

        future.add_done_callback(done)
        return handle

    def checkpoint(self) -> int:
        """Writes the memoized results not yet in this run's checkpoint (<run_dir>/checkpoint);
        returns how many. For checkpoint_mode="manual"; harmless in the other modes."""
        return self._kernel.checkpoint()

    def __repr__(self) -> str:
        # object's repr under the module name the script knows (parsl.dataflow.dflow under pervade run)
        return f"<{shown_module(type(self).__module__)}.{type(self).__qualname__} object at {hex(id(self))}>"

    def default_std_autopath(self, taskrecord: dict, kw: str) -> str:
        """The path of an AUTO_LOGNAME stream (kw "stdout" or "stderr") when the config has no
        std_autopath, as Parsl names it: <run_dir>/task_logs/<id // 10000>/task_<id>_<app>[_<label>].<kw>."""
        label = taskrecord["kwargs"].get("label")
        task_id = taskrecord["id"]
        filename = "task_{}_{}{}.{}".format(str(task_id).zfill(4), taskrecord["func_name"],
                                            "" if label is None else "_" + str(label), kw)
        return os.path.join(self.run_dir, "task_logs", str(task_id // 10000).zfill(4), filename)

    def reserve_task_id(self) -> int:
        return self._kernel.reserve_id()

    # ------------------------------------------------------------------ lifecycle

    def wait_for_current_tasks(self) -> None:
        """Blocks until every task submitted so far (and any they submit) is final."""
        self._kernel.wait_for_current_tasks()

    def cleanup(self) -> None:
        """Stops the kernel: tasks not yet launched fail with DataFlowKernelClosed (but, as in
        Parsl, one waiting for a concurrent.futures.Future of the user's that has not completed
        stays pending), running ones finish, all engine threads are joined. Idempotent. A signal handler that raises (Ctrl-C)
        interrupts the wait; the engine's cleanup goes on, and calling cleanup() again waits
        for it and finishes the job."""
        with self._lock:
            if self._cleaned_up:
                return
            first = not self.cleanup_called
            self.cleanup_called = True  # no more submissions
        if first:
            logger.info("DataFlowKernel cleanup: %d tasks outstanding", self._kernel.outstanding)
        self._kernel.cleanup()
        with self._lock:
            if self._cleaned_up:
                return
            self._cleaned_up = True
        self._shutdown_executors()
        atexit.unregister(self.atexit_cleanup)
        if DataFlowKernelLoader._dfk is self:
            DataFlowKernelLoader.clear()
        logger.info("DFK cleanup complete")
        self._undo_logging()

    def _shutdown_executors(self) -> None:
        for e in self.config.executors:  # what the executors started outside the engine (blocks)
            if written_in_python(e):
                continue  # the engine called its shutdown()
            try:
                e.shutdown()
            except Exception:  # noqa: BLE001 - keep stopping the others
                logger.exception("shutting down executor %s failed", e.label)

    def atexit_cleanup(self) -> None:
        # Unlike Parsl, clean up at exit: no engine thread may outlive the interpreter.
        if not self._cleaned_up:
            logger.warning("Python is exiting with a DataFlowKernel still running; cleaning up")
            self.cleanup()

    @property
    def outstanding_tasks(self) -> int:
        return self._kernel.outstanding

    @property
    def task_count(self) -> int:
        """Parsl's dfk.task_count: how many task ids were handed out, so the id the next app
        call gets (a plain Future that a call depends on takes an id too)."""
        return self._kernel.task_count

    @property
    def tasks(self) -> Mapping:
        """Parsl's dfk.tasks: task id -> task record (AppFuture.task_record) of each task not yet
        final; with Config(garbage_collect=False), of every task."""
        return TaskRecords(self._task_futures)

    @property
    def task_state_counts(self) -> dict:
        """Parsl's dfk.task_state_counts: States member -> how many tasks are in that state now."""
        counts = self._kernel.task_state_counts()
        return {state: counts.get(state.value, 0) for state in States}

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb):
        mode = self.config.exit_mode
        if mode == "skip":
            return None
        if mode == "wait" and exc_type is None:
            self.wait_for_current_tasks()
        self.cleanup()
        return None


class TaskRecords(Mapping):
    """A read-only view of a kernel's tasks: each record is made when it is looked up."""

    def __init__(self, futures: dict):
        self._futures = futures

    def __getitem__(self, task_id):
        return self._futures[task_id].task_record

    def __iter__(self):
        return iter(list(self._futures))  # a snapshot: tasks finish meanwhile

    def __len__(self):
        return len(self._futures)


class DataFlowKernelLoader:
    """Holds the global DataFlowKernel used by apps that were not given one."""

    _dfk: DataFlowKernel | None = None

    @classmethod
    def load(cls, config: Config | None = None) -> DataFlowKernel:
        typeguard.check_type(config, Optional[Config])  # as Parsl's typechecked load()
        if cls._dfk is not None:
            raise ConfigurationError("Config has already been loaded")
        cls._dfk = DataFlowKernel(config if config is not None else Config())
        return cls._dfk

    @classmethod
    def clear(cls) -> None:
        cls._dfk = None

    @classmethod
    def dfk(cls) -> DataFlowKernel:
        if cls._dfk is None:
            raise NoDataFlowKernelError("Must first load config")
        return cls._dfk

    @classmethod
    def wait_for_current_tasks(cls) -> None:
        cls.dfk().wait_for_current_tasks()


load = DataFlowKernelLoader.load
clear = DataFlowKernelLoader.clear
dfk = DataFlowKernelLoader.dfk
wait_for_current_tasks = DataFlowKernelLoader.wait_for_current_tasks

__all__ = ["DataFlowKernel", "DataFlowKernelLoader", "load", "clear", "dfk", "wait_for_current_tasks", "File"]
