"""join_app: the join's future takes the value(s) of the futures its body returns."""

import pytest

import pervade as parsl
from pervade import join_app, python_app

T = 30


@python_app
def value(x):
    return x


@python_app
def fail(message):
    raise ValueError(message)


@join_app
def one(x):
    return value(x * 2)


@join_app
def many(n):
    return [value(i) for i in range(n)]


@join_app
def fib(n):
    if n < 2:
        return value(n)
    return add(fib(n - 1), fib(n - 2))


@python_app
def add(a, b):
    return a + b


def test_single_future(dfk):
    assert one(21).result(timeout=T) == 42


def test_list_of_futures(dfk):
    assert many(5).result(timeout=T) == [0, 1, 2, 3, 4]


def test_empty_list(dfk):
    assert many(0).result(timeout=T) == []


def test_join_result_as_dependency(dfk):
    assert add(one(1), one(2)).result(timeout=T) == 6


def test_failing_inner_task_gives_join_error(dfk):
    @join_app
    def partly_bad():
        return [value(1), fail("inner broke")]

    f = partly_bad()
    with pytest.raises(parsl.JoinError) as info:
        f.result(timeout=T)
    e = info.value
    assert e.task_id == f.tid
    assert str(e).startswith(f"Join failure for task {f.tid}. The representative cause is via task ")
    assert len(e.dependent_exceptions_tids) == 1
    inner, description = e.dependent_exceptions_tids[0]
    assert isinstance(inner, ValueError) and str(inner) == "inner broke"
    assert description.startswith("task ")
    assert isinstance(e.__cause__, ValueError)
    assert f.task_status() == "failed"


def test_single_failing_future_gives_join_error(dfk):
    @join_app
    def bad():
        return fail("only")

    with pytest.raises(parsl.JoinError) as info:
        bad().result(timeout=T)
    assert str(info.value.__cause__) == "only"


def test_non_future_return_is_type_error(dfk):
    @join_app
    def five():
        return 5

    @join_app
    def mixed():
        return [value(1), 2]

    with pytest.raises(TypeError, match="join_app body must return a Future or list of Futures"):
        five().result(timeout=T)
    with pytest.raises(TypeError):
        mixed().result(timeout=T)


def test_exception_in_join_body(dfk):
    @join_app
    def raising():
        raise RuntimeError("in body")

    with pytest.raises(RuntimeError, match="in body"):
        raising().result(timeout=T)


def test_nested_join_apps(dfk):
    @join_app
    def outer(n):
        return [one(i) for i in range(n)]

    assert outer(4).result(timeout=T) == [0, 2, 4, 6]
    assert fib(10).result(timeout=T) == 55


def test_join_with_dependency_argument(dfk):
    assert one(value(5)).result(timeout=T) == 10


def test_join_returning_plain_future(dfk):
    from concurrent.futures import Future
    import threading

    external = Future()

    @join_app
    def wait_external():
        return external

    f = wait_external()
    helper = threading.Thread(target=external.set_result, args=("outside",))
    helper.start()
    try:
        assert f.result(timeout=T) == "outside"
    finally:
        helper.join()


def test_join_dependency_failure(dfk):
    f = one(fail("before"))
    with pytest.raises(parsl.DependencyError):
        f.result(timeout=T)
    assert f.task_status() == "dep_fail"


def test_join_returning_cancelled_future(dfk):
    from concurrent.futures import Future

    cancelled = Future()
    cancelled.cancel()

    @join_app
    def give_cancelled():
        return cancelled

    with pytest.raises(parsl.JoinError):
        give_cancelled().result(timeout=T)


def test_join_failures_are_not_retried(load):
    load(retries=2)
    import threading

    lock = threading.Lock()
    counts = {"body": 0, "inner": 0}

    @python_app
    def inner():
        with lock:
            counts["inner"] += 1
        raise ValueError("inner")

    @join_app
    def outer():
        with lock:
            counts["body"] += 1
        return inner()

    with pytest.raises(parsl.JoinError):
        outer().result(timeout=T)
    assert counts == {"body": 1, "inner": 3}
