"""The app decorators: python_app, bash_app, join_app (Parsl's semantics)."""

from __future__ import annotations

import functools
import inspect
import math
import os
from concurrent.futures import Future
from typing import Tuple, Union

import typeguard

from .. import _native, memoization
from ..data import File
from ..dataflow.dflow import DataFlowKernel, DataFlowKernelLoader, executor_labels
from ..futures import AppFuture
from ..errors import (AppBadFormatting, BadStdStreamFile, BashAppNoReturn, BashExitFailure, ConfigurationError,
                     MissingOutputs)

AUTO_LOGNAME = -1  # stdout=/stderr= value: a file per task under <run_dir>/task_logs
_RESERVED = ("stdout", "stderr", "walltime", "parsl_resource_specification", "outputs", "inputs")
# Keyword arguments that need work at call time; parsl_resource_specification does not.
_SPECIAL = frozenset(("stdout", "stderr", "walltime", "outputs", "inputs"))


@typeguard.typechecked
def _std_path_mode(name: str,
                   spec: Union[os.PathLike, str, Tuple[str, str], Tuple[os.PathLike, str]]) -> Tuple[str, str]:
    """(path, open mode) of a bash app's stdout=/stderr= spec, as Parsl reads it on the worker:
    a wrong type is typeguard's TypeCheckError."""
    path, mode = (spec, "a+") if isinstance(spec, (str, os.PathLike)) else spec
    path = os.fspath(path)  # a str, or bytes from a PathLike
    return (path.decode() if isinstance(path, bytes) else path), mode


def _open_std_stream(name: str, spec):
    """Opens (and so creates or truncates) the file of a stdout=/stderr= spec as Parsl does,
    then closes it: the command appends to it. Returns the path, or None without a spec."""
    if spec is None:
        return None
    path, mode = (os.fspath(spec), "w") if isinstance(spec, File) else _std_path_mode(name, spec)
    try:
        directory = os.path.dirname(path)
        if directory:
            os.makedirs(directory, exist_ok=True)
        open(path, mode).close()
    except Exception as e:  # noqa: BLE001 - any reason the file cannot be used, as Parsl reports it
        raise BadStdStreamFile(path) from e
    return path


class AppBase:
    """An app: calling it submits a task to a DataFlowKernel and returns an AppFuture."""

    def __init__(self, func, data_flow_kernel: DataFlowKernel | None = None, executors="all", cache: bool = False,
                 ignore_for_cache=None):
        if not callable(func):
            raise TypeError(f"an app must wrap a callable, got {func!r}")
        self._labels = executor_labels(executors)
        self.func = func
        self.__name__ = getattr(func, "__name__", type(func).__name__)
        self.__doc__ = getattr(func, "__doc__", None)
        self.__wrapped__ = func
        self.data_flow_kernel = data_flow_kernel
        self.executors = executors if executors == "all" else list(executors)
        self.cache = cache
        self.ignore_for_cache = list(ignore_for_cache or [])
        try:
            params = inspect.signature(func).parameters
        except (TypeError, ValueError):
            params = {}
        self.kwargs = {name: params[name].default for name in _RESERVED if name in params}
        # Reserved parameters without a default are only passed when the caller gives them.
        self._required_reserved = [k for k, v in self.kwargs.items() if v is inspect.Parameter.empty]

    def _prepare(self, args, kwargs):
        """Merges defaults, validates reserved keywords; returns (dfk, kwargs, reserved_id, memo).
        stdout/stderr specs are checked where the task runs (bash apps), as in Parsl."""
        dfk = self.data_flow_kernel or DataFlowKernelLoader.dfk()
        merged = {**self.kwargs, **kwargs} if self.kwargs else kwargs
        if self._required_reserved:
            for key in self._required_reserved:
                if merged.get(key) is inspect.Parameter.empty:
                    del merged[key]
        reserved_id = -1
        ignore = self.ignore_for_cache
        for name in ("stdout", "stderr"):
            spec = merged.get(name)
            if type(spec) is int and spec == AUTO_LOGNAME:
                ignore = ignore + [name]  # a per-task path: the same call would never match
                if reserved_id < 0:
                    reserved_id = dfk.reserve_task_id()
                merged[name] = self._auto_logname(dfk, reserved_id, name, merged)
        outputs = merged.get("outputs")
        if outputs is not None:
            if not isinstance(outputs, (list, tuple)) or not all(isinstance(f, File) for f in outputs):
                raise TypeError(f"outputs= must be a list of File objects, got {outputs!r}")
        inputs = merged.get("inputs")
        if inputs is not None and not isinstance(inputs, (list, tuple)):
            raise TypeError(f"inputs= must be a list, got {inputs!r}")
        walltime = merged.get("walltime")
        if walltime is not None and (isinstance(walltime, bool) or not isinstance(walltime, (int, float))
                                     or not 0 < walltime < math.inf):
            raise ConfigurationError(f"walltime must be a finite number of seconds > 0, got {walltime!r}")
        return dfk, merged, reserved_id, self._memo(dfk, args, merged, ignore)

    def _memo(self, dfk, args, kwargs, ignore):
        """The call's memo key (or a maker of it, with futures among the arguments), or None."""
        if not self.cache or not dfk._memoize:
            return None
        return memoization.memo_for_call(self.func, args, kwargs, ignore, dfk._memo_plugin)

    def _auto_logname(self, dfk, task_id, name, kwargs) -> str:
        record = {"id": task_id, "func_name": self.__name__, "kwargs": kwargs, "try_id": 0}  # at submission
        return (dfk.config.std_autopath or dfk.default_std_autopath)(record, name)

    def _bind(self, body):
        """The app as the engine takes it with each call: made once per app (per call for a join,
        whose body holds the call's kernel)."""
        return _native.BoundApp(body, self._labels, self.__name__)

    def _submit(self, dfk, app, args, kwargs, reserved_id, memo=None):
        return dfk._submit_task(app, args, kwargs or None, memo, kwargs.get("walltime"), reserved_id,
                                kwargs.get("stdout"), kwargs.get("stderr"))


class PythonApp(AppBase):
    def __init__(self, func, data_flow_kernel=None, cache=False, executors="all", ignore_for_cache=None, join=False):
        super().__init__(func, data_flow_kernel, ["_parsl_internal"] if join else executors, cache, ignore_for_cache)
        self.join = join
        # A join's body holds the kernel of its call: bound per call (joins are few).
        self._bound = None if join else self._bind(func)

    def __call__(self, *args, **kwargs):
        if not self.join and not self._required_reserved and _SPECIAL.isdisjoint(kwargs) and \
                _SPECIAL.isdisjoint(self.kwargs):
            # The common call: nothing to check or resolve beyond the kernel's own work (and the
            # memo key: without stdout/stderr there is no AUTO_LOGNAME to leave out of it).
            dfk = self.data_flow_kernel or DataFlowKernelLoader._dfk or DataFlowKernelLoader.dfk()
            kwargs = {**self.kwargs, **kwargs} if self.kwargs else kwargs or None
            memo = None
            if self.cache and dfk._memoize:
                memo = memoization.memo_for_call(self.func, args, kwargs, self.ignore_for_cache, dfk._memo_plugin)
            return dfk._submit_task(self._bound, args, kwargs, memo)
        dfk, kwargs, reserved_id, memo = self._prepare(args, kwargs)
        return self._submit(dfk, self._join_app(dfk) if self.join else self._bound, args, kwargs, reserved_id, memo)

    def _join_app(self, dfk):
        # A join's body keeps the app's names, as Parsl's wrappers do (task_record["func"]).
        return self._bind(functools.update_wrapper(functools.partial(_run_join, self.func, dfk), self.func))


class BashApp(AppBase):
    def __init__(self, func, data_flow_kernel=None, cache=False, executors="all", ignore_for_cache=None):
        super().__init__(func, data_flow_kernel, executors, cache, ignore_for_cache)
        # As in Parsl, every default is passed so that the body can format with it.
        try:
            params = inspect.signature(func).parameters
            self.kwargs.update({k: p.default for k, p in params.items() if p.default is not inspect.Parameter.empty})
        except (TypeError, ValueError):
            pass
        self._bound = self._bind(functools.update_wrapper(functools.partial(_run_bash, func, self.__name__), func))

    def __call__(self, *args, **kwargs):
        dfk, kwargs, reserved_id, memo = self._prepare(args, kwargs)
        return self._submit(dfk, self._bound, args, kwargs, reserved_id, memo)


def _run_bash(func, name, /, *args, **kwargs):
    """Runs on a worker: asks the body for the command line, opens its stdout/stderr, runs it,
    checks outputs."""
    try:
        command = func(*args, **kwargs)
    except AttributeError as e:
        raise BashAppNoReturn(
            f"Bash app '{name}' did not return a value, or returned None - with this exception: {e}") from e
    except IndexError as e:
        raise AppBadFormatting(f"App formatting failed for app '{name}' with IndexError: {e}") from e
    if not isinstance(command, str):  # None too: ValueError, as in Parsl
        raise ValueError(f"bash_app '{name}' must return its command line as a str, got {type(command)}")
    stdout = _open_std_stream("stdout", kwargs.get("stdout"))
    stderr = _open_std_stream("stderr", kwargs.get("stderr"))
    if stderr is not None:  # Parsl writes the command line at the top of the stderr file
        with open(stderr, "a") as f:
            f.write(f"--> executable follows <--\n{command}\n--> end executable <--\n")
    # The files were opened (created, or truncated for "w" modes) above: the command appends.
    code = _native.run_shell(command, stdout or "", True, stderr or "", True, float(kwargs.get("walltime") or 0))
    if code != 0:
        raise BashExitFailure(name, code)
    missing = [f for f in kwargs.get("outputs") or () if not os.path.exists(f.filepath)]
    if missing:
        raise MissingOutputs(f"Missing outputs from app {name}", missing)
    return 0


def _run_join(func, dfk, *args, **kwargs):
    """Runs on the internal executor: the body's futures become the tasks the join waits for."""
    joinable = func(*args, **kwargs)
    if isinstance(joinable, Future):
        return _native.JoinRequest([_handle_of(dfk, joinable)], False)
    if isinstance(joinable, list) and all(isinstance(f, Future) for f in joinable):
        return _native.JoinRequest([_handle_of(dfk, f) for f in joinable], True)
    raise TypeError(f"join_app body must return a Future or list of Futures, got {joinable} of type {type(joinable)}")


def _handle_of(dfk, future: Future):
    if isinstance(future, AppFuture) and future._dfk is dfk:
        return future._handle
    return dfk._external(future)


def _decorator(make, function, **options):
    if function is not None:
        return make(function, **options)
    return lambda f: make(f, **options)


def python_app(function=None, data_flow_kernel=None, cache=False, executors="all", ignore_for_cache=None):
    """Decorates a function so that calling it runs it as a task and returns an AppFuture.

    >>> @python_app
    ... def double(x):
    ...     return 2 * x
    >>> double(21).result()
    42
    """
    return _decorator(PythonApp, function, data_flow_kernel=data_flow_kernel, cache=cache, executors=executors,
                      ignore_for_cache=ignore_for_cache)


def bash_app(function=None, data_flow_kernel=None, cache=False, executors="all", ignore_for_cache=None):
    """Decorates a function that returns a command line; the task runs it with /bin/bash.

    >>> @bash_app
    ... def echo(msg, stdout=None):
    ...     return f"echo {msg}"
    >>> echo("hi", stdout="hi.txt").result()   # 0; non-zero exit raises BashExitFailure
    0
    """
    return _decorator(BashApp, function, data_flow_kernel=data_flow_kernel, cache=cache, executors=executors,
                      ignore_for_cache=ignore_for_cache)


def join_app(function=None, data_flow_kernel=None, cache=False, ignore_for_cache=None):
    """Decorates a function that returns a future (or list of futures) of other apps; the
    join's future gets their result (or the list of their results)."""
    return _decorator(PythonApp, function, data_flow_kernel=data_flow_kernel, cache=cache,
                      ignore_for_cache=ignore_for_cache, join=True)
