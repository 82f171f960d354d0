"""The Python face of the engine's DataFlowKernel, and the global load()/dfk()/clear()."""

from __future__ import annotations

import atexit
import glob
import logging
import os
import pathlib
import threading
import uuid
from concurrent.futures import Future

from .. import _native, logging_engine, memoization, serialize
from ..config import Config
from ..data import DataFuture, File
from ..errors import ConfigurationError, NoDataFlowKernelError
from ..futures import AppFuture
from ..logconfigs.base import oneshot_initialize_logging, oneshot_uninitialize_logging
from ..logconfigs.file import FileLogging

logger = logging.getLogger(__name__)

_NO_VALUE = object()  # plan entry: use the dependency's value


def apply_plan(args, kwargs, plan, value_for):
    """Copies of args and kwargs with each planned position (a dependency's place: positional,
    keyword, or in `inputs`) set to value_for(index, replacement)."""
    args = list(args)
    kwargs = dict(kwargs) if kwargs else {}
    inputs = list(kwargs["inputs"]) if "inputs" in kwargs else None
    for kind, key, index, replacement in plan:
        value = value_for(index, replacement)
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


def executor_labels(executors):
    """'all' (any user executor) -> None; a list of labels -> that list."""
    if executors == "all" or (isinstance(executors, str) and executors.lower() == "all"):
        return None
    if isinstance(executors, (list, tuple)) and all(isinstance(e, str) for e in executors):
        return list(executors)
    raise ConfigurationError(f"executors must be 'all' or a list of labels, got {executors!r}")


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
        self.executors = {e.label: e for e in self.config.executors}
        # Labels of executors that run tasks in other processes: apps that can only go there are
        # serialized at the call, so unpicklable arguments fail at once, in the caller.
        self._remote_labels = {e.label for e in self.config.executors if getattr(e, "remote", False)}
        self._all_remote = bool(self._remote_labels) and len(self._remote_labels) == len(self.executors)
        for e in self.config.executors:
            e.run_dir = self.run_dir
            # Executors with blocks scale them with the Config's strategy (docs/scaling.md).
            e.strategy, e.strategy_period, e.max_idletime = (
                self.config.strategy, self.config.strategy_period, self.config.max_idletime)
        natives = [e._native_executor() for e in self.config.executors]
        # The monitoring database is written by the engine (docs/monitoring.md).
        observers = [self.monitoring.native_observer(self.config.run_dir)] if self.monitoring is not None else []
        # Set up last before the kernel: nothing that may fail comes between it and its undo.
        self._undo_logging = self._initialize_logging(self.config.initialize_logging)
        if self._log_observer is not None:
            observers.append(self._log_observer)
        memo = self.config._memo
        self._memoize = bool(memo.memoize)  # apps with cache=True compute keys only then
        # May raise BadCheckpoint (a checkpoint file that cannot be read).
        try:
            self._kernel = _native.Kernel(natives, self.config.retries, self.config.retry_handler,
                                          self.config.internal_tasks_max_threads,
                                          memo.native_options(self.run_dir, self.config.run_dir),
                                          max_unfinished_tasks=self.config.max_unfinished_tasks or 0,
                                          observers=observers, run_id=self.run_id, run_dir=self.run_dir)
        except BaseException:
            self._undo_logging()
            raise
        self._lock = threading.Lock()
        self.cleanup_called = False
        atexit.register(self.atexit_cleanup)
        logger.info("DataFlowKernel started: run_dir=%s executors=%s", self.run_dir, list(self.executors))

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
            memo = memoization.memo_for_call(func, tuple(app_args), app_kwargs, ignore_for_cache or ())
        return self._submit_task(func, tuple(app_args), app_kwargs or None, executor_labels(executors),
                                 func_name or getattr(func, "__name__", "app"), walltime, reserved_id, stdout, stderr,
                                 memo)

    def _submit_task(self, func, args, kwargs, labels, name, walltime, reserved_id, stdout, stderr,
                     memo=None) -> AppFuture:
        """The apps' path (positional, no checks the app already made): kept lean, it runs per call."""
        if self.cleanup_called:
            raise NoDataFlowKernelError("Cannot submit to a DFK that has been cleaned up")
        fut = AppFuture(self, name, stdout, stderr)
        deps = plan = encoded = None
        if self._remote_labels and (self._all_remote if labels is None
                                    else all(label in self._remote_labels for label in labels)):
            # Only pools can run it: pickled now (unpicklable arguments fail here, in the caller),
            # and every future met while pickling, at any depth, is a dependency.
            encoded, futures = serialize.encode_call_finding_futures(func, args, kwargs, name)
            if futures:
                deps = [self._dependency_handle(f) for f in futures]
            args, kwargs = (), None  # the payload has them; the task never runs in this process
        else:
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
        fut._handle = self._kernel.submit(func, args, kwargs, deps, plan, labels, name, float(walltime or 0), fut,
                                          reserved_id, encoded, memo)
        return fut

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
        if isinstance(future, AppFuture) and future._dfk is self:
            return future._handle
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
                kernel.complete_external(handle, None, exc)
            else:
                kernel.complete_external(handle, value, None)

        future.add_done_callback(done)
        return handle

    def checkpoint(self) -> int:
        """Writes the memoized results not yet in this run's checkpoint (<run_dir>/checkpoint);
        returns how many. For checkpoint_mode="manual"; harmless in the other modes."""
        return self._kernel.checkpoint()

    def reserve_task_id(self) -> int:
        return self._kernel.reserve_id()

    # ------------------------------------------------------------------ lifecycle

    def wait_for_current_tasks(self) -> None:
        """Blocks until every task submitted so far (and any they submit) is final."""
        self._kernel.wait_for_current_tasks()

    def cleanup(self) -> None:
        """Stops the kernel: tasks not yet launched fail with DataFlowKernelClosed, running ones
        finish, all engine threads are joined. Idempotent."""
        with self._lock:
            if self.cleanup_called:
                return
            self.cleanup_called = True
        logger.info("DataFlowKernel cleanup: %d tasks outstanding", self._kernel.outstanding)
        self._shutdown_engine()
        atexit.unregister(self.atexit_cleanup)
        if DataFlowKernelLoader._dfk is self:
            DataFlowKernelLoader.clear()
        logger.info("DFK cleanup complete")
        self._undo_logging()

    def _shutdown_engine(self) -> None:
        self._kernel.cleanup()
        for e in self.config.executors:  # then what the executors started outside the engine (blocks)
            try:
                e.shutdown()
            except Exception:  # noqa: BLE001 - keep stopping the others
                logger.exception("shutting down executor %s failed", e.label)

    def atexit_cleanup(self) -> None:
        # Unlike Parsl, clean up at exit: no engine thread may outlive the interpreter.
        if not self.cleanup_called:
            logger.warning("Python is exiting with a DataFlowKernel still running; cleaning up")
            self.cleanup()

    @property
    def outstanding_tasks(self) -> int:
        return self._kernel.outstanding

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


class DataFlowKernelLoader:
    """Holds the global DataFlowKernel used by apps that were not given one."""

    _dfk: DataFlowKernel | None = None

    @classmethod
    def load(cls, config: Config | None = None) -> DataFlowKernel:
        if cls._dfk is not None:
            raise ConfigurationError("Config has already been loaded: call clear() (or cleanup()) before loading again")
        cls._dfk = DataFlowKernel(config if config is not None else Config())
        return cls._dfk

    @classmethod
    def clear(cls) -> None:
        cls._dfk = None

    @classmethod
    def dfk(cls) -> DataFlowKernel:
        if cls._dfk is None:
            raise NoDataFlowKernelError(
                "Must first load config: call pervade.load(config) (parsl.load) before calling an app")
        return cls._dfk

    @classmethod
    def wait_for_current_tasks(cls) -> None:
        cls.dfk().wait_for_current_tasks()


load = DataFlowKernelLoader.load
clear = DataFlowKernelLoader.clear
dfk = DataFlowKernelLoader.dfk
wait_for_current_tasks = DataFlowKernelLoader.wait_for_current_tasks

__all__ = ["DataFlowKernel", "DataFlowKernelLoader", "load", "clear", "dfk", "wait_for_current_tasks", "File"]
