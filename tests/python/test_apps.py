"""python_app: results, arguments, dependencies, AppFuture behaviour."""

import threading
from concurrent.futures import FIRST_COMPLETED, Future, as_completed, wait

import pytest

import pervade as parsl
from pervade import python_app

from conftest import wait_until

T = 30  # generous result() timeout


@python_app
def add(a, b=0, c=0):
    return a + b + c


@python_app
def total(inputs=()):
    return sum(inputs)


@python_app
def echo_kwargs(*args, **kwargs):
    return args, kwargs


@python_app
def boom(message):
    raise KeyError(message)


@python_app
def make_dict():
    return {"a": [10, 20, 30], "b": {"c": "deep"}}


class Point:
    def __init__(self, x, y):
        self.x = x
        self.y = y


@python_app
def make_point(x, y):
    return Point(x, y)


def test_result_args_and_kwargs(dfk):
    assert add(1, 2).result(timeout=T) == 3
    assert add(1, b=2, c=3).result(timeout=T) == 6
    assert echo_kwargs(1, "x", k=[1, 2]).result(timeout=T) == ((1, "x"), {"k": [1, 2]})


def test_returns_arbitrary_objects(dfk):
    p = make_point(3, 4).result(timeout=T)
    assert isinstance(p, Point) and (p.x, p.y) == (3, 4)
    assert make_dict().result(timeout=T)["b"] == {"c": "deep"}


def test_none_result(dfk):
    @python_app
    def nothing():
        return None

    assert nothing().result(timeout=T) is None


def test_future_in_positional_args(dfk):
    a = add(1, 1)
    b = add(a, a)
    c = add(b, 10)
    assert c.result(timeout=T) == 14


def test_future_in_kwargs(dfk):
    a = add(5)
    assert add(1, b=a, c=add(a, 1)).result(timeout=T) == 1 + 5 + 6


def test_futures_in_inputs_resolved(dfk):
    futs = [add(i) for i in range(10)]
    assert total(inputs=futs + [100]).result(timeout=T) == sum(range(10)) + 100


def test_inputs_list_not_mutated(dfk):
    a = add(1)
    inputs = [a, 2]
    assert total(inputs=inputs).result(timeout=T) == 3
    assert inputs[0] is a  # the caller's list still holds the future


def test_futures_nested_in_containers_are_not_resolved(dfk):
    """Parsl's default (shallow) resolver only looks at args, kwargs and inputs elements."""
    inner = add(1)
    inner.result(timeout=T)

    @python_app
    def kind(x):
        return type(x[0]).__name__

    assert kind([inner]).result(timeout=T) == "AppFuture"


def test_plain_future_as_dependency_completed_from_another_thread(dfk):
    pending = Future()
    other = Future()
    fut = add(pending, b=other, c=1)
    assert not fut.done()
    helper = threading.Thread(target=lambda: (pending.set_result(40), other.set_result(1)))
    helper.start()
    try:
        assert fut.result(timeout=T) == 42
    finally:
        helper.join()


def test_plain_future_in_inputs(dfk):
    pending = Future()
    fut = total(inputs=[pending, 1])
    helper = threading.Thread(target=pending.set_result, args=(9,))
    helper.start()
    try:
        assert fut.result(timeout=T) == 10
    finally:
        helper.join()


def test_already_completed_plain_future(dfk):
    done = Future()
    done.set_result(7)
    assert add(done, 1).result(timeout=T) == 8


def test_appfuture_is_a_concurrent_future(dfk):
    futs = [add(i, 1) for i in range(20)]
    assert all(isinstance(f, Future) for f in futs)
    done, not_done = wait(futs, timeout=T)
    assert not not_done and len(done) == 20
    assert sorted(f.result() for f in as_completed(futs, timeout=T)) == list(range(1, 21))
    done, _ = wait([add(1)], timeout=T, return_when=FIRST_COMPLETED)
    assert len(done) == 1


def test_done_callback_runs(dfk):
    seen = []
    event = threading.Event()

    def callback(f):
        seen.append(f.result())
        event.set()

    add(2, 3).add_done_callback(callback)
    assert event.wait(T)
    assert seen == [5]


def test_tid_increasing_ints(dfk):
    futs = [add(i) for i in range(10)]
    tids = [f.tid for f in futs]
    assert all(isinstance(t, int) for t in tids)
    assert tids == sorted(tids) and len(set(tids)) == 10
    for f in futs:
        f.result(timeout=T)


def test_task_status_exec_done(dfk):
    f = add(1)
    f.result(timeout=T)
    assert f.task_status() == "exec_done"
    assert f.task_record["func_name"] == "add"
    assert f.task_record["id"] == f.tid
    assert f.task_record["app_fu"] is f


def test_task_status_failed(dfk):
    f = boom("x")
    with pytest.raises(KeyError):
        f.result(timeout=T)
    assert f.task_status() == "failed"


def test_task_status_dep_fail(dfk):
    f = add(boom("x"))
    with pytest.raises(parsl.DependencyError):
        f.result(timeout=T)
    assert f.task_status() == "dep_fail"


def test_task_status_names_the_records_status_while_waiting_and_running(dfk, tmp_path):
    """Parsl's task_status() is the task record's status: pending from the call on (never the
    engine's own "unsched"), launched while it runs (the record never says running)."""
    release = tmp_path / "release"
    started = tmp_path / "started"

    @python_app
    def wait_for_file(started, release):
        import os
        import time
        open(started, "w").close()
        while not os.path.exists(release):
            time.sleep(0.01)
        return 1

    running = wait_for_file(str(started), str(release))
    waiting = add(running)
    assert waiting.task_status() == "pending"
    assert wait_until(started.exists, T)
    assert running.task_status() == "launched" == running.task_record["status"].name
    release.touch()
    assert waiting.result(timeout=T) == 1 and running.task_status() == "exec_done"


def test_remote_exception_keeps_type_and_message(dfk):
    class CustomError(Exception):
        pass

    @python_app
    def raise_custom():
        raise CustomError("custom message 123")

    with pytest.raises(CustomError, match="custom message 123"):
        raise_custom().result(timeout=T)
    with pytest.raises(KeyError) as info:
        boom("the key").result(timeout=T)
    assert info.value.args == ("the key",)
    f = boom("again")
    assert isinstance(f.exception(timeout=T), KeyError)


def test_base_exception_subclass_from_app(dfk):
    """A SystemExit-like BaseException from the body fails the task instead of killing a worker."""

    @python_app
    def leave():
        raise SystemExit(3)

    f = leave()
    exc = f.exception(timeout=T)
    assert exc is not None
    assert add(1, 1).result(timeout=T) == 2


def test_outputs_are_datafutures(dfk, tmp_path):
    files = [parsl.File(str(tmp_path / f"out{i}.txt")) for i in range(3)]

    @python_app
    def produce(outputs=()):
        for f in outputs:
            with open(f.filepath, "w") as h:
                h.write(f.filename)
        return len(outputs)

    fut = produce(outputs=files)
    assert len(fut.outputs) == 3
    assert all(isinstance(d, parsl.DataFuture) for d in fut.outputs)
    assert [d.filepath for d in fut.outputs] == [f.filepath for f in files]
    assert fut.result(timeout=T) == 3
    assert fut.outputs[1].result(timeout=T) is files[1]
    assert fut.outputs[1].tid == fut.tid
    assert (tmp_path / "out2.txt").read_text() == "out2.txt"
    assert add(1).outputs == []


def test_datafuture_as_input_dependency(dfk, tmp_path):
    out = parsl.File(str(tmp_path / "data.txt"))

    @python_app
    def write(outputs=()):
        with open(outputs[0].filepath, "w") as f:
            f.write("payload")

    @python_app
    def read(inputs=()):
        with open(inputs[0].filepath) as f:
            return type(inputs[0]).__name__, f.read()

    produced = write(outputs=[out])
    assert read(inputs=[produced.outputs[0]]).result(timeout=T) == ("File", "payload")


def test_datafuture_fails_with_its_app(dfk, tmp_path):
    @python_app
    def broken(outputs=()):
        raise ValueError("no file")

    fut = broken(outputs=[parsl.File(str(tmp_path / "never"))])
    with pytest.raises(ValueError):
        fut.outputs[0].result(timeout=T)


def test_getitem_lifting(dfk):
    d = make_dict()
    item = d["a"]
    assert isinstance(item, parsl.AppFuture)
    assert item is not d
    assert item.result(timeout=T) == [10, 20, 30]
    assert d["a"][1].result(timeout=T) == 20
    assert d["b"]["c"].result(timeout=T) == "deep"
    assert item.tid > d.tid


def test_getitem_missing_key_fails(dfk):
    with pytest.raises(KeyError):
        make_dict()["nope"].result(timeout=T)


def test_getattr_lifting(dfk):
    p = make_point(3, 4)
    x = p.x
    assert isinstance(x, parsl.AppFuture)
    assert x.result(timeout=T) == 3
    assert p.y.result(timeout=T) == 4
    assert add(p.x, p.y).result(timeout=T) == 7


def test_getattr_underscore_raises_attribute_error(dfk):
    f = add(1)
    with pytest.raises(AttributeError):
        f._missing
    with pytest.raises(AttributeError):
        getattr(f, "__not_there__")
    assert not hasattr(f, "_private_thing")
    f.result(timeout=T)


def test_future_attributes_are_not_lifted(dfk):
    f = add(1)
    assert f.result(timeout=T) == 1
    assert callable(f.done) and f.done()
    assert isinstance(f.tid, int)


def test_data_flow_kernel_argument_binds_app(make_config, no_thread_leak):
    kernel = parsl.DataFlowKernel(make_config())
    try:
        @python_app(data_flow_kernel=kernel)
        def bound(x):
            return x * 3

        with pytest.raises(parsl.NoDataFlowKernelError):
            parsl.dfk()
        assert bound(5).result(timeout=T) == 15
    finally:
        kernel.cleanup()


def test_decorator_forms(dfk):
    @python_app()
    def with_parens():
        return "p"

    def plain():
        return "q"

    assert with_parens().result(timeout=T) == "p"
    assert python_app(plain)().result(timeout=T) == "q"
    assert with_parens.__name__ == "with_parens"


def test_reserved_kwargs_are_passed_to_function(dfk):
    @python_app
    def takes(walltime=None, stdout=None):
        return walltime, stdout

    assert takes(walltime=20).result(timeout=T) == (20, None)


def test_reserved_kwarg_not_declared_raises_type_error(dfk):
    """Parsl passes walltime= on to the function, which must accept it."""

    @python_app
    def plain():
        return 1

    with pytest.raises(TypeError):
        plain(walltime=5).result(timeout=T)


def test_cancelled_plain_future_dependency_fails_dependent(dfk):
    """Parsl resolves a dependency with result(): a cancelled future raises CancelledError, so the
    dependent fails with DependencyError instead of waiting forever."""
    from concurrent.futures import CancelledError

    pending = Future()
    dependent = add(pending, 1)
    assert pending.cancel()
    with pytest.raises(parsl.DependencyError) as info:
        dependent.result(timeout=T)
    assert isinstance(info.value.__cause__, CancelledError)
    assert dependent.task_status() == "dep_fail"


def test_app_called_from_inside_an_app(dfk):
    @python_app
    def outer(n):
        return add(n, 1).result(timeout=T) * 10

    assert outer(4).result(timeout=T) == 50


def test_python_app_auto_logname_default(dfk, run_dir):
    @python_app
    def where_is_stdout(stdout=parsl.AUTO_LOGNAME):
        return stdout

    f = where_is_stdout()
    path = f.result(timeout=T)
    assert path == f.stdout
    assert path.endswith("task_{}_where_is_stdout.stdout".format(str(f.tid).zfill(4)))
    assert path.startswith(str(run_dir))


def test_repr_of_appfuture(dfk):
    f = add(1)
    f.result(timeout=T)
    assert repr(f).startswith("<AppFuture at 0x") and "finished returned int" in repr(f)


def test_concurrent_waiters_never_miss_completion(dfk):
    """Threads wait (result, wait, as_completed, callbacks) on futures while they complete: no
    wake-up is lost and every callback runs exactly once."""
    import random

    futs = [add(i) for i in range(3000)]
    lock = threading.Lock()
    callbacks = []
    errors = []

    def on_done(f):
        with lock:
            callbacks.append(f.tid)

    for f in futs[::3]:
        f.add_done_callback(on_done)

    def by_result(chunk):
        try:
            for f in chunk:
                f.result(timeout=T)
        except Exception as e:  # noqa: BLE001
            errors.append(e)

    def by_wait(chunk):
        done, not_done = wait(chunk, timeout=T)
        if not_done:
            errors.append(f"{len(not_done)} futures not done")

    def by_as_completed(chunk):
        try:
            assert len(list(as_completed(chunk, timeout=T))) == len(chunk)
        except Exception as e:  # noqa: BLE001
            errors.append(e)

    shuffled = futs[:]
    random.Random(1).shuffle(shuffled)
    workers = [threading.Thread(target=fn, args=(shuffled[i::3],))
               for i, fn in enumerate((by_result, by_wait, by_as_completed))]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    assert errors == []
    assert [f.result(timeout=T) for f in futs] == list(range(3000))
    from conftest import wait_until
    assert wait_until(lambda: len(callbacks) == len(futs[::3]), timeout=T)
    assert sorted(callbacks) == sorted(f.tid for f in futs[::3])
