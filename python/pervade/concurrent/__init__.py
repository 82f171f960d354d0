"""Parsl's parsl.concurrent: a concurrent.futures.Executor whose tasks are pervade apps.

    with ParslPoolExecutor(config) as pool:        # loads the config; cleans up at the end
        print(list(pool.map(pow, [2, 3], [5, 2])))  # [32, 9]

Called from the user's threads, like any concurrent.futures.Executor.
"""

from __future__ import annotations

import weakref
from concurrent.futures import Executor
from typing import Callable

from ..app.app import PythonApp
from ..dataflow.dflow import load

__all__ = ["ParslPoolExecutor"]


class ParslPoolExecutor(Executor):
    """Runs `submit(fn, *args)` and `map(fn, ...)` as python apps of one DataFlowKernel: `config`
    (loaded now, cleaned up by `shutdown()` or leaving the `with` block) or an already loaded
    `dfk` (left running). The futures are AppFutures, so they may be passed to other calls as
    dependencies. `map` is concurrent.futures' own: a failing call or a timeout cancels the
    calls not started yet (pervade can cancel tasks; Parsl's map leaves them running)."""

    def __init__(self, config=None, dfk=None, executors="all"):
        if (config is None) == (dfk is None):
            raise ValueError("give exactly one of config or dfk")
        self._config = config
        self._dfk = load(config) if config is not None else dfk
        self.executors = executors
        self._apps: dict = {}
        self._futures: weakref.WeakSet = weakref.WeakSet()

    @property
    def app_count(self) -> int:
        """How many functions have been made into apps."""
        return len(self._apps)

    def get_app(self, fn: Callable) -> PythonApp:
        """The python app that runs `fn` (made once per function)."""
        app = self._apps.get(fn)
        if app is None:
            app = self._apps[fn] = PythonApp(fn, data_flow_kernel=self._dfk, executors=self.executors)
        return app

    def submit(self, fn, /, *args, **kwargs):
        if self._dfk is None:
            raise RuntimeError("cannot submit: this ParslPoolExecutor has been shut down")
        future = self.get_app(fn)(*args, **kwargs)
        self._futures.add(future)
        return future

    def map(self, fn, *iterables, timeout=None, chunksize: int = 1, buffersize=None):
        """concurrent.futures' map (see the class). `chunksize` and `buffersize` are taken and
        ignored, as Parsl's map does (its signature has Python 3.14's `buffersize`)."""
        return super().map(fn, *iterables, timeout=timeout, chunksize=chunksize)

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        if self._dfk is None:
            return
        if cancel_futures:
            for future in list(self._futures):
                future.cancel()
        if wait:
            self._dfk.wait_for_current_tasks()
        if self._config is not None:  # the kernel is ours
            self._dfk.cleanup()
        self._dfk = None

    def __exit__(self, exc_type, exc, tb):
        if self._config is not None:  # a kernel loaded elsewhere is left as it is
            self.shutdown(wait=True)
        return False

# parsl.<package>.<submodule> without importing it first (_submodules.py)
from .._submodules import submodule_getattr  # noqa: E402
__getattr__ = submodule_getattr(__name__)
del submodule_getattr
