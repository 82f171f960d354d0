"""AppFuture: the future an app call returns (a concurrent.futures.Future)."""

from __future__ import annotations

from concurrent.futures import Future


def deferred_getitem(o, k):
    return o[k]


def deferred_getattr(o, name):
    return getattr(o, name)


class AppFuture(Future):
    """The result of an app call. Works with concurrent.futures.wait / as_completed.

    >>> fut = double(21)          # an app call
    >>> fut.result(), fut.tid, fut.task_status()
    (42, 0, 'exec_done')
    >>> fut["key"], fut.attr      # lifted: new futures for fut.result()["key"] / .attr

    The future is completed by the engine; only the engine calls set_result/set_exception.
    """

    def __init__(self, dfk, func_name: str, stdout=None, stderr=None):
        super().__init__()
        self._dfk = dfk
        self._func_name = func_name
        self._handle = None  # the engine's task, set right after submission
        self._outputs = []
        self._stdout = stdout
        self._stderr = stderr

    @property
    def tid(self) -> int:
        return self._handle.id

    @property
    def stdout(self):
        return self._stdout

    @property
    def stderr(self):
        return self._stderr

    @property
    def outputs(self):
        return self._outputs

    def task_status(self) -> str:
        return self._handle.state

    @property
    def task_record(self) -> dict:
        h = self._handle
        return {"id": h.id, "func_name": h.func_name, "status": h.state, "fail_count": h.fail_count,
                "fail_cost": h.fail_cost, "try_id": h.try_id, "executor": h.executor, "app_fu": self,
                "dfk": self._dfk}

    def cancel(self) -> bool:
        raise NotImplementedError("Cancel not implemented")

    def cancelled(self) -> bool:
        return False

    def __getitem__(self, key):
        return self._dfk.submit(deferred_getitem, (self, key), executors=["_parsl_internal"],
                                func_name="deferred_getitem")

    def __getattr__(self, name):
        if name.startswith("_"):
            raise AttributeError(name)
        return self._dfk.submit(deferred_getattr, (self, name), executors=["_parsl_internal"],
                                func_name="deferred_getattr")
