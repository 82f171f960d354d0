"""AppFuture: the future an app call returns (a concurrent.futures.Future)."""

from __future__ import annotations

import datetime
import logging
import pickle
import threading
from concurrent.futures import Future, InvalidStateError
from concurrent.futures._base import CANCELLED_AND_NOTIFIED, FINISHED, PENDING


logger = logging.getLogger(__name__)

_MISSING = object()
_LAZY_LOCK = threading.Lock()  # makes an AppFuture's Condition and lists, and a PickledResult's value, once each


def _datetime(seconds):
    return None if seconds is None else datetime.datetime.fromtimestamp(seconds)


class PickledResult:
    """A task's result as its pool sent it (pickle bytes). The engine completes an AppFuture with
    this, and result() unpickles it on first use: a result that only feeds remote dependents is
    forwarded as bytes and never unpickled in the driver."""

    __slots__ = ("data", "buffers", "value")  # no __dict__: one object for the garbage collector

    def __init__(self, data: bytes, buffers=None):
        self.data = data
        self.buffers = buffers  # a big result's out-of-band buffers (pervade._native.buffer_views)
        self.value = _MISSING

    def load(self):
        data, buffers = self.data, self.buffers  # read before the value: a loader stores it, then drops these
        value = self.value
        if value is _MISSING:
            loaded = pickle.loads(data, buffers=buffers)
            with _LAZY_LOCK:  # two threads may load at once: the first value stored wins
                value = self.value
                if value is _MISSING:
                    value = self.value = loaded
                    self.data = self.buffers = None
        return value


def deferred_getitem(o, k):
    return o[k]


def deferred_getattr(o, name):
    return getattr(o, name)


class _MadeOnFirstUse:
    """A class attribute whose first read on an instance makes its value with make(), once even
    when threads race (under _LAZY_LOCK), and stores it both under `private` (which the class
    defaults to None, so code can test whether it exists without making it) and on the instance
    under the public name, which shadows this descriptor from then on."""

    __slots__ = ("private", "make", "public")

    def __init__(self, private: str, make):
        self.private, self.make = private, make

    def __set_name__(self, owner, name):
        self.public = name

    def __get__(self, obj, owner=None):
        if obj is None:
            return self
        with _LAZY_LOCK:
            value = getattr(obj, self.private)
            if value is None:
                value = self.make()
                setattr(obj, self.private, value)
            setattr(obj, self.public, value)
        return value


class AppFuture(Future):
    """The result of an app call. Works with concurrent.futures.wait / as_completed.

    >>> fut = double(21)          # an app call
    >>> fut.result(), fut.tid, fut.task_status()
    (42, 0, 'exec_done')
    >>> fut["key"], fut.attr      # lifted: new futures for fut.result()["key"] / .attr

    The engine completes it, through complete() (below). Its fields are written only in this
    module: at submission by set_task and set_data_futures, at the end by complete (or
    set_result/set_exception, which the front end uses for a call that fails before the engine
    has it).

    Unlike a plain Future it makes its Condition, its list of waiters and its list of callbacks
    only when something first waits on it or adds a callback (most futures of a large fan-out
    are completed before anyone looks): that halves the cost of an app call, and a future is
    then one object for Python's garbage collector instead of four (with 100,000 futures alive
    its full collections took a third of the time). Future's own methods find them under their
    usual names (_MadeOnFirstUse, below); completion checks for the Condition again after publishing the state, so
    a waiter that arrives meanwhile is always woken. Nothing here reads `__dict__`, which would
    give every future a dict of its own.
    """

    # Defaults shared by all instances; an instance sets its own only when they differ.
    _result = None
    _exception = None
    _outputs = ()
    _stdout = None
    _stderr = None
    _cond = None           # the Condition, once made
    _waiter_list = None    # concurrent.futures.wait / as_completed waiters, once any
    _callback_list = None  # done-callbacks, once any

    def __init__(self, dfk, app, stdout=None, stderr=None):
        # Future.__init__ without the Condition and the lists (and without writing the class defaults).
        self._state = PENDING
        self._dfk = dfk
        self._app = app  # the app's _native.BoundApp: task_record["func"] is its function
        self._handle = None  # the engine's task, set right after submission (set_task)
        if stdout is not None:
            self._stdout = stdout
        if stderr is not None:
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
        return self._outputs or []

    def task_status(self) -> str:
        """Parsl's: the name of the task record's status ("pending", "launched", "exec_done", ...)."""
        return self._record_status().name

    def _record_status(self):
        """The task's state as Parsl's task record shows it: pending from the call on (also before
        the kernel's thread took the task in), launched while it runs on an executor."""
        from .dataflow.states import States  # not at the top: pervade.dataflow imports this module

        status = States(max(self._handle.state_number, States.pending))
        return States.launched if status in (States.running, States.running_ended) else status

    @property
    def task_record(self) -> dict:
        """The task's record with Parsl's keys, made from the engine's record when asked (a new
        dict each time). args, kwargs and depends (the futures among the arguments, at the top
        level and in inputs=) are known until the task is final."""
        from .dataflow.states import States  # not at the top: pervade.dataflow imports this module

        h = self._handle
        _, args, kwargs = h.call or (None, None, None)
        kwargs = kwargs or {}
        depends = [a for a in (*(args or ()), *kwargs.values(), *kwargs.get("inputs", ())) if isinstance(a, Future)]
        status = self._record_status()
        exception = self._exception if self._state == FINISHED else None
        cost = h.fail_cost  # the engine's double; Parsl's sum of the handler's costs is an int for ints
        return {
            "id": h.id, "func": self._app.func, "func_name": h.func_name, "args": args, "kwargs": kwargs,
            "depends": depends, "dfk": self._dfk, "executor": h.executor, "app_fu": self, "exec_fu": None,
            "status": status,
            "try_id": h.try_id, "fail_count": h.fail_count, "fail_cost": int(cost) if cost.is_integer() else cost,
            "fail_history": [] if exception is None else [repr(exception)],
            "from_memo": status == States.memo_done, "hashsum": h.hashsum, "memoize": h.hashsum is not None,
            "ignore_for_cache": [], "join": False, "joins": None,
            "time_invoked": _datetime(h.time_invoked), "time_returned": _datetime(h.time_returned),
            "try_time_launched": None, "try_time_returned": None,
            "resource_specification": kwargs.get("parsl_resource_specification", {}),
        }

    def set_result(self, result) -> None:
        self._finish(result, None)

    def set_exception(self, exception) -> None:
        self._finish(None, exception)

    # Future's own methods (and concurrent.futures.wait / as_completed) use these three names;
    # the first use makes the object and puts it on the instance, where later uses find it as
    # any attribute.
    _condition = _MadeOnFirstUse("_cond", threading.Condition)
    _waiters = _MadeOnFirstUse("_waiter_list", list)
    _done_callbacks = _MadeOnFirstUse("_callback_list", list)

    def _invoke_callbacks(self) -> None:
        if self._callback_list:  # none: nothing to run, and no list made for it
            Future._invoke_callbacks(self)

    def _finish(self, result, exception) -> None:
        """set_result / set_exception, under the Condition. The engine's completions of futures
        nobody waits for skip it (complete(), below)."""
        condition = self._condition
        with condition:
            if self._state == FINISHED:
                raise InvalidStateError(f"{self._state}: {self!r}")
            self._result, self._exception, self._state = result, exception, FINISHED
        self._wake(condition)
        self._invoke_callbacks()

    def _wake(self, condition) -> None:
        with condition:
            for waiter in self._waiter_list or ():
                if self._exception is not None:
                    waiter.add_exception(self)
                else:
                    waiter.add_result(self)
            condition.notify_all()

    def result(self, timeout=None):
        if self._state == FINISHED and self._exception is None:
            # Done (most futures of a fan-out are by the time they are gathered): no Condition
            # is made, which Future.result would do (and then the garbage collector scans it).
            value = self._result
        else:
            value = Future.result(self, timeout)
        if type(value) is PickledResult:
            # A pool's result is kept as bytes until someone asks (it may only have fed remote
            # dependents): unpickled here, once.
            value = value.load()
            self._result = value
        return value

    def __repr__(self) -> str:
        # concurrent.futures' repr names the result's type ("returned int", as Parsl prints a
        # future): a pool's result is unpickled for it, as result() would; if it cannot be, the
        # repr says PickledResult and result() raises the error.
        if self._state == FINISHED and type(self._result) is PickledResult:
            try:
                self.result()
            except Exception:  # noqa: BLE001 - a repr never raises
                pass
        return Future.__repr__(self)

    def __reduce_ex__(self, protocol):
        raise TypeError(f"an AppFuture cannot be pickled ({self._app.name} task): pass it as an argument of an app, "
                        "or pass its result()")

    def cancel(self) -> bool:
        """Cancels the task unless it has finished (pervade only: Parsl cannot cancel).

        A pending task never runs; a running one is stopped (a Python app on threads gets an
        asynchronous TaskCancelled, a bash app's process group is killed, a task on a
        HighThroughputExecutor pool has its worker killed and replaced). The future ends cancelled
        (result() raises concurrent.futures.CancelledError, done-callbacks run once), its status
        is "cancelled", and dependents fail with DependencyError naming it. Returns False if the
        task had already finished; True if it is cancelled (also when it already was).
        Waits for the kernel's thread, never for the task.
        """
        if self._state == CANCELLED_AND_NOTIFIED:
            return True
        if self._state == FINISHED or self._handle is None:
            return False
        if self._dfk._kernel.cancel(self._handle) or self._handle.state == "cancelled":
            # The completion thread will find it cancelled too; the first to mark it runs callbacks.
            self._engine_cancelled()
            return True
        return False

    def _engine_cancelled(self) -> None:
        """The task was cancelled: the future becomes cancelled (once; called by cancel() and by
        the engine's completion thread, whichever comes first)."""
        condition = self._condition  # made here if nobody waited yet
        with condition:
            if self._state in (CANCELLED_AND_NOTIFIED, FINISHED):
                return
            self._state = CANCELLED_AND_NOTIFIED
            for waiter in self._waiter_list or ():  # concurrent.futures.wait / as_completed
                waiter.add_cancelled(self)
            condition.notify_all()
        self._invoke_callbacks()

    def __getitem__(self, key):
        return self._dfk.submit(deferred_getitem, (self, key), executors=["_parsl_internal"],
                                func_name="deferred_getitem")

    def __getattr__(self, name):
        if name.startswith("_"):
            raise AttributeError(name)
        return self._dfk.submit(deferred_getattr, (self, name), executors=["_parsl_internal"],
                                func_name="deferred_getattr")


# How a task ended, in the batches the engine's completion thread hands to complete()
# (pervade._native's FutureBatch uses the same numbers).
RESULT, EXCEPTION, CANCELLED = 0, 1, 2


def complete(batch: list) -> None:
    """The engine's one way into AppFutures: its completion thread calls this with the GIL, once
    per batch of finished tasks. `batch` is flat: future, outcome, value (the result or the
    exception; None when cancelled), future, ... A future that cannot be completed is logged and
    the others still are (a done-callback's exception is logged by Future itself)."""
    items = iter(batch)
    for future, outcome, value in zip(items, items, items):
        try:
            if outcome == CANCELLED:
                future._engine_cancelled()
            elif future._cond is None and future._state == PENDING:
                # Nobody waits and no callback (both make the Condition first): most futures of a
                # fan-out. Published without a Condition or a method call (that costs six times
                # this), then looked at again: a waiter or a callback that came meanwhile made
                # the Condition and is woken or run here (or saw FINISHED and needs nothing).
                if outcome == RESULT:
                    future._result = value
                else:
                    future._exception = value
                future._state = FINISHED
                condition = future._cond
                if condition is not None:
                    future._wake(condition)
                    future._invoke_callbacks()
            elif outcome == RESULT:
                future._finish(value, None)
            else:
                future._finish(None, value)
        except Exception:  # noqa: BLE001 - never lose the rest of the batch
            logger.exception("completing %r failed", future)


def set_task(future: AppFuture, handle) -> None:
    """The engine's task (a _native.TaskHandle) of a future just submitted."""
    future._handle = handle


def set_data_futures(future: AppFuture, outputs=None, stdout=None, stderr=None) -> None:
    """The DataFutures of a call's staged files: its outputs= (a list) and its stdout=/stderr=
    when they are Files (pervade.data_provider.data_manager)."""
    if outputs is not None:
        future._outputs = outputs
    if stdout is not None:
        future._stdout = stdout
    if stderr is not None:
        future._stderr = stderr
