"""How the engine meets Python: an app bound once (_native.BoundApp), AppFutures completed in
batches through pervade.futures.complete, the only code that writes their fields."""

import logging
import pathlib
import re
import threading
from concurrent.futures import CancelledError, InvalidStateError

import pytest

import pervade as parsl
from pervade._native import BoundApp
from pervade.futures import CANCELLED, EXCEPTION, RESULT, AppFuture, complete

from conftest import wait_until

SOURCE = pathlib.Path(__file__).resolve().parents[2] / "python"


def _future():
    return AppFuture(None, BoundApp(print, None, "app"))


def test_complete_delivers_every_outcome_of_a_batch_and_survives_a_bad_one(caplog):
    done, failed, cancelled, twice = _future(), _future(), _future(), _future()
    calls = []
    failed.add_done_callback(calls.append)
    cancelled.add_done_callback(calls.append)
    complete([twice, RESULT, 1])
    error = ValueError("no")
    with caplog.at_level(logging.ERROR, logger="pervade.futures"):
        complete([done, RESULT, 42, twice, RESULT, 2, failed, EXCEPTION, error, cancelled, CANCELLED, None])
    assert done.result() == 42 and "_condition" not in done.__dict__  # nobody waited: no Condition
    assert failed.exception() is error
    assert cancelled.cancelled()
    with pytest.raises(CancelledError):
        cancelled.result()
    assert calls == [failed, cancelled]  # each callback once
    assert twice.result() == 1  # a second completion is refused, logged, and stops nothing
    assert any("completing" in r.getMessage() and r.exc_info[0] is InvalidStateError for r in caplog.records)


def test_complete_wakes_a_waiter_and_runs_a_callback_added_before():
    fut = _future()
    got = []
    waiter = threading.Thread(target=lambda: got.append(fut.result(timeout=30)))
    waiter.start()
    assert wait_until(lambda: fut._cond is not None)  # the waiter made the Condition
    seen = []
    fut.add_done_callback(lambda f: seen.append(f.result()))
    complete([fut, RESULT, "value"])
    waiter.join(30)
    assert got == ["value"] and seen == ["value"]


def test_callbacks_and_waiters_racing_the_engine_each_see_every_future_once(dfk):
    # Callbacks and waiters arrive from other threads while the completion thread publishes the
    # same futures without a Condition: each callback must run once and every waiter return.
    @parsl.python_app
    def ident(i):
        return i

    n = 20000
    futures = []
    calls = [0] * n
    submitted = threading.Event()

    def add_callbacks():
        for i in range(n):
            while len(futures) <= i:
                if submitted.is_set() and len(futures) <= i:
                    return
            futures[i].add_done_callback(lambda f: calls.__setitem__(f.result(), calls[f.result()] + 1))

    waited = []
    adder = threading.Thread(target=add_callbacks)
    waiter = threading.Thread(target=lambda: waited.extend(f.result(timeout=60) for f in list(futures)[::7]))
    adder.start()
    for i in range(n):
        futures.append(ident(i))
        if i == n // 2:
            waiter.start()
    submitted.set()
    adder.join(60)
    waiter.join(60)
    assert [f.result(timeout=60) for f in futures] == list(range(n))
    assert wait_until(lambda: calls == [1] * n, 30), [i for i, c in enumerate(calls) if c != 1][:10]
    assert waited and all(isinstance(v, int) for v in waited)


def test_set_result_still_refuses_a_finished_future():
    fut = _future()
    complete([fut, EXCEPTION, KeyError("k")])
    with pytest.raises(InvalidStateError):
        fut.set_result(1)


def test_only_futures_py_writes_an_app_futures_fields():
    # Python: no `x._field = ...` / setattr(x, "_field", ...) of AppFuture's fields elsewhere;
    # C++: the bindings name none of them.
    fields = "result|exception|state|handle|outputs|stdout|stderr|cond|waiter_list|callback_list"
    python_write = re.compile(rf"\b(?!self\b)\w+\._(?:{fields})\s*=(?!=)|setattr\(\s*\w+,\s*\"_")
    offenders = [str(p) for p in (SOURCE / "pervade").rglob("*.py")
                 if p.name != "futures.py" or p.parent.name != "pervade"
                 if python_write.search(p.read_text())]
    cpp_names = re.compile(rf"\"_(?:{fields})\"")
    offenders += [str(p) for p in (SOURCE / "bindings").glob("*.cpp") if cpp_names.search(p.read_text())]
    assert offenders == []


def test_an_app_is_bound_once_with_its_name_and_executors(dfk):
    @parsl.bash_app(executors=["threads"])
    def echo(word):
        return f"echo {word}"

    assert echo._bound.name == "echo" and echo._bound.executors == ("threads",)
    first, second = echo("a"), echo("b")
    assert first.result() == 0 and second.result() == 0
    # The same body every call (Parsl's wrappers keep the app's name).
    assert first.task_record["func"] is second.task_record["func"] is echo._bound.func
    assert first.task_record["func"].__name__ == "echo"


def test_an_app_pickles_with_its_binding():
    # A function that calls an app, pickled by value for a pool, carries the app.
    import pickle

    import cloudpickle

    @parsl.python_app(executors=["htex"])
    def double(x):
        return 2 * x

    copy = pickle.loads(cloudpickle.dumps(double))
    assert (copy._bound.name, copy._bound.executors, copy._bound.func(4)) == ("double", ("htex",), 8)


def test_dfk_submit_binds_its_call_with_options(dfk):
    def add(a, b):
        return a + b

    fut = dfk.submit(add, (1, 2), walltime=30, reserved_id=dfk.reserve_task_id(), func_name="plus")
    assert fut.result() == 3 and fut.task_record["func_name"] == "plus"
    with pytest.raises(ValueError, match="unknown"):
        dfk.submit(add, (1, 2), executors=["unknown"]).result(timeout=30)
