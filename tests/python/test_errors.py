"""Failure propagation (DependencyError) and retries."""

import threading
from concurrent.futures import Future

import pytest

import pervade as parsl
from pervade import python_app

T = 30


@python_app
def fail(message="boom"):
    raise ValueError(message)


@python_app
def add(a, b=0):
    return a + b


def test_dependency_error_message_and_fields(dfk):
    bad = fail("root cause")
    dependent = add(bad, 1)
    with pytest.raises(parsl.DependencyError) as info:
        dependent.result(timeout=T)
    e = info.value
    assert str(e) == f"Dependency failure for task {dependent.tid}. The representative cause is via task {bad.tid}"
    assert e.task_id == dependent.tid
    assert len(e.dependent_exceptions_tids) == 1
    exc, description = e.dependent_exceptions_tids[0]
    assert isinstance(exc, ValueError) and str(exc) == "root cause"
    assert description == f"task {bad.tid}"
    assert isinstance(e.__cause__, ValueError)
    assert str(e.__cause__) == "root cause"
    assert dependent.task_status() == "dep_fail"
    assert bad.task_status() == "failed"


def test_dependency_error_chain(dfk):
    x = fail("deep")
    y = add(x)
    z = add(y)
    with pytest.raises(parsl.DependencyError) as info:
        z.result(timeout=T)
    e = info.value
    assert str(e) == (f"Dependency failure for task {z.tid}. "
                      f"The representative cause is via task {y.tid} <- task {x.tid}")
    inner, description = e.dependent_exceptions_tids[0]
    assert isinstance(inner, parsl.DependencyError) and description == f"task {y.tid}"
    assert isinstance(e.__cause__, ValueError) and str(e.__cause__) == "deep"
    assert y.task_status() == "dep_fail" and z.task_status() == "dep_fail"


def test_dependency_error_several_failures(dfk):
    a, b = fail("a"), fail("b")
    c = add(a, b)
    with pytest.raises(parsl.DependencyError) as info:
        c.result(timeout=T)
    e = info.value
    assert "(+ others)" in str(e)
    assert sorted(d for _, d in e.dependent_exceptions_tids) == sorted([f"task {a.tid}", f"task {b.tid}"])


def test_dependency_error_from_kwargs_and_inputs(dfk):
    @python_app
    def total(inputs=()):
        return sum(inputs)

    with pytest.raises(parsl.DependencyError):
        add(1, b=fail()).result(timeout=T)
    with pytest.raises(parsl.DependencyError):
        total(inputs=[1, fail()]).result(timeout=T)


def test_failed_plain_future_dependency(dfk):
    pending = Future()
    dependent = add(pending, 1)
    helper = threading.Thread(target=pending.set_exception, args=(KeyError("external"),))
    helper.start()
    try:
        with pytest.raises(parsl.DependencyError) as info:
            dependent.result(timeout=T)
    finally:
        helper.join()
    assert isinstance(info.value.__cause__, KeyError)
    assert dependent.task_status() == "dep_fail"


def test_dependency_failure_does_not_stop_independent_tasks(dfk):
    bad = fail()
    dependents = [add(bad, i) for i in range(5)]
    good = [add(i, 1) for i in range(5)]
    assert [g.result(timeout=T) for g in good] == [1, 2, 3, 4, 5]
    for d in dependents:
        with pytest.raises(parsl.DependencyError):
            d.result(timeout=T)


def _counter():
    lock = threading.Lock()
    calls = []

    def bump():
        with lock:
            calls.append(1)
            return len(calls)

    return calls, bump


def test_retries_succeed_after_two_failures(load):
    load(retries=2)
    calls, bump = _counter()

    @python_app
    def flaky():
        n = bump()
        if n <= 2:
            raise RuntimeError(f"attempt {n}")
        return n

    f = flaky()
    assert f.result(timeout=T) == 3
    assert len(calls) == 3
    assert f.task_status() == "exec_done"
    assert f.task_record["fail_count"] == 2


def test_retries_exhausted_raise_original_exception(load):
    load(retries=2)
    calls, bump = _counter()

    @python_app
    def always():
        raise RuntimeError(f"attempt {bump()}")

    f = always()
    with pytest.raises(RuntimeError, match="attempt 3"):
        f.result(timeout=T)
    assert len(calls) == 3
    assert f.task_status() == "failed"


def test_no_retries_by_default(dfk):
    calls, bump = _counter()

    @python_app
    def once():
        bump()
        raise RuntimeError("x")

    with pytest.raises(RuntimeError):
        once().result(timeout=T)
    assert len(calls) == 1


def test_retry_handler_cost(load):
    seen = []

    def handler(exception, task_record):
        seen.append((type(exception), task_record["func_name"]))
        return 0.5

    load(retries=1, retry_handler=handler)
    calls, bump = _counter()

    @python_app
    def always():
        raise OSError(f"attempt {bump()}")

    with pytest.raises(OSError, match="attempt 3"):
        always().result(timeout=T)
    assert len(calls) == 3  # costs 0.5, 1.0 (<= 1: retried), 1.5 (stop)
    assert seen == [(OSError, "always")] * 3


def test_retry_handler_zero_cost_then_success(load):
    load(retries=0, retry_handler=lambda e, rec: 0.0)
    calls, bump = _counter()

    @python_app
    def flaky():
        if bump() < 4:
            raise RuntimeError("again")
        return "ok"

    assert flaky().result(timeout=T) == "ok"
    assert len(calls) == 4


def test_retry_handler_that_raises(load):
    def handler(exception, task_record):
        raise LookupError("handler broke")

    load(retries=5, retry_handler=handler)
    calls, bump = _counter()

    @python_app
    def always():
        bump()
        raise RuntimeError("original")

    with pytest.raises(LookupError, match="handler broke"):
        always().result(timeout=T)
    assert len(calls) == 1


def test_dependency_failures_never_retried(load):
    load(retries=3)
    dep_calls, dep_bump = _counter()
    body_calls, body_bump = _counter()

    @python_app
    def bad():
        dep_bump()
        raise RuntimeError("dep")

    @python_app
    def dependent(x):
        body_bump()
        return x

    d = dependent(bad())
    with pytest.raises(parsl.DependencyError):
        d.result(timeout=T)
    assert len(dep_calls) == 4  # the dependency itself is retried
    assert body_calls == []     # the dependent body never runs
    assert d.task_status() == "dep_fail"


def test_failed_plain_future_description(dfk):
    """Parsl describes a dependency that is not an AppFuture of this kernel by repr(future)
    (e.g. '<Future at 0x7f.. state=finished raised KeyError>'), not as a task id the user never made."""
    pending = Future()
    dependent = add(pending, 1)
    pending.set_exception(KeyError("external"))
    with pytest.raises(parsl.DependencyError) as info:
        dependent.result(timeout=T)
    exc, description = info.value.dependent_exceptions_tids[0]
    assert isinstance(exc, KeyError)
    assert description.startswith("<Future at 0x"), description
    assert str(info.value).startswith(f"Dependency failure for task {dependent.tid}. "
                                      "The representative cause is via <Future at 0x")
