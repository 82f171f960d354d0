"""Futures at any depth in the arguments of apps that run only on HighThroughputExecutors, and
results forwarded between pools as bytes: real interchange, pools and workers (LocalProvider)."""

import os
import threading
from concurrent.futures import Future

import pytest
from conftest import pid_alive, wait_until
from test_htex import pool_tree_pids, running_htex

import pervade as parsl
from pervade import File, python_app

T = 60
HERE = os.path.dirname(os.path.abspath(__file__))


@pytest.fixture
def htex(tmp_path, no_thread_leak, monkeypatch):
    # Workers import this module for the classes below (pickled by reference).
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [HERE, os.environ.get("PYTHONPATH")])))
    yield from running_htex(tmp_path)


class Holder:
    def __init__(self, item):
        self.item = item

    def __eq__(self, other):
        return isinstance(other, Holder) and other.item == self.item

    def __hash__(self):
        return hash(repr(self.item))


def rebuild_recorded(path, value):
    """Unpickling a Recorded appends this process's pid to path."""
    with open(path, "a") as f:
        f.write(f"{os.getpid()}\n")
    return Recorded(path, value)


class Recorded:
    def __init__(self, path, value):
        self.path, self.value = path, value

    def __reduce__(self):
        return rebuild_recorded, (self.path, self.value)


def unpickled_in(path):
    if not os.path.exists(path):
        return []
    with open(path) as f:
        return [int(line) for line in f]


@python_app(executors=["htex"])
def add(a, b):
    return a + b


@python_app(executors=["htex"])
def echo(*args, **kwargs):
    return args, kwargs


@python_app(executors=["htex"])
def same(a, b):
    return a is b[0]


@python_app(executors=["htex"])
def boom(msg):
    raise KeyError(msg)


@python_app(executors=["htex"])
def make_recorded(path, value):
    return Recorded(path, value)


@python_app(executors=["htex"])
def open_recorded(box):
    import os
    return os.getpid(), box["r"][0].value


@python_app(executors=["htex"])
def write_text(text, outputs=()):
    with open(outputs[0].filepath, "w") as f:
        f.write(text)
    return "written"


@python_app(executors=["htex"])
def read_held(holder):
    with open(holder.item["file"].filepath) as f:
        return type(holder.item["file"]).__name__, f.read()


def test_futures_nested_in_containers_and_objects(htex):
    a, b = add(1, 2), add(10, 20)
    got = echo([a, (b,)], {"k": {"d": a}}, s={b}, h=Holder(a), deep=[[[[{"x": (a, b)}]]]]).result(timeout=T)
    assert got == (([3, (30,)], {"k": {"d": 3}}), {"s": {30}, "h": Holder(3), "deep": [[[[{"x": (3, 30)}]]]]})


def test_nested_futures_chain_through_workers(htex):
    value = echo(0)
    for i in range(5):
        value = echo({"prev": [value], "i": i})
    got = value.result(timeout=T)
    for i in reversed(range(5)):
        (box,), _ = got
        assert box["i"] == i
        got = box["prev"][0]
    assert got == ((0,), {})


def test_the_same_future_twice_is_one_value(htex):
    a = echo("x")
    assert same(a, [a]).result(timeout=T) is True


def test_a_failed_nested_dependency_gives_dependency_error(htex):
    bad = boom("root cause")
    dependent = echo([{"k": bad}], ok=add(1, 1))
    with pytest.raises(parsl.DependencyError) as info:
        dependent.result(timeout=T)
    e = info.value
    assert e.task_id == dependent.tid
    assert [d for _, d in e.dependent_exceptions_tids] == [f"task {bad.tid}"]
    assert isinstance(e.__cause__, KeyError)
    assert dependent.task_status() == "dep_fail"


def test_data_future_nested_is_its_file(htex, tmp_path):
    out = File(str(tmp_path / "out.txt"))
    writer = write_text("hello", outputs=[out])
    kind, text = read_held(Holder({"file": writer.outputs[0]})).result(timeout=T)
    assert (kind, text) == ("File", "hello")
    assert writer.result(timeout=T) == "written"


def test_plain_future_nested(htex):
    plain = Future()
    dependent = echo({"x": [plain]})
    assert not dependent.done()
    plain.set_result(5)
    assert dependent.result(timeout=T) == (({"x": [5]},), {})


def test_a_pool_result_feeding_a_dependent_is_not_unpickled_in_the_driver(htex, tmp_path):
    path = str(tmp_path / "unpickled.txt")
    produced = make_recorded(path, 42)
    top_level = open_recorded({"r": [produced]})
    worker_pid, value = top_level.result(timeout=T)
    assert value == 42 and produced.done()
    # Unpickled only by the dependent's worker, or not at all: a follower (docs/htex.md) may get
    # the value still in memory on the worker that made it.
    seen = unpickled_in(path)
    assert seen in ([], [worker_pid]), "unpickled in the driver, or by another worker"
    # The driver unpickles it when asked, once.
    assert produced.result(timeout=T).value == 42 and produced.result(timeout=T) is produced.result(timeout=T)
    assert unpickled_in(path) == seen + [os.getpid()]


def test_calls_without_futures_still_work(htex):
    assert echo(1, [2.5, "x"], k={"a": (1,)}).result(timeout=T) == ((1, [2.5, "x"]), {"k": {"a": (1,)}})


def test_unpicklable_nested_argument_fails_the_future(htex):
    with pytest.raises(TypeError, match="cannot serialize the arguments of echo"):
        echo([{"lock": threading.Lock()}]).result(timeout=T)
    with pytest.raises(TypeError, match="cannot serialize the arguments of echo"):
        echo([add(1, 2), threading.Lock()]).result(timeout=T)


@python_app(executors=["threads", "htex"])
def mixed(a, b, inputs=()):
    import os
    return os.getpid(), a + b + sum(x if isinstance(x, int) else len(x.filepath) for x in inputs)


@python_app(executors=["threads", "htex"])
def mixed_nested(box):
    return type(box[0]).__name__


def test_apps_that_may_run_on_threads_keep_top_level_dependencies(tmp_path, no_thread_leak, monkeypatch):
    # Parsl's rule (top-level arguments and inputs=), wherever the kernel sends the task.
    from pervade import HighThroughputExecutor, LocalProvider, ThreadPoolExecutor
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [HERE, os.environ.get("PYTHONPATH")])))
    config = parsl.Config(executors=[
        ThreadPoolExecutor(label="threads", max_threads=2),
        HighThroughputExecutor(label="htex", max_workers_per_node=2, heartbeat_period=0.5, heartbeat_threshold=3,
                               worker_port_range=(56000, 57000), provider=LocalProvider(init_blocks=1))],
        run_dir=str(tmp_path / "runinfo"))
    dfk = parsl.load(config)
    try:
        out = File(str(tmp_path / "out.txt"))
        writer = write_text("hello", outputs=[out])
        futures = [mixed(add(i, 0), 1, inputs=[add(0, 10), writer.outputs[0]]) for i in range(20)]
        results = [f.result(timeout=T) for f in futures]
        assert [value for _, value in results] == [i + 1 + 10 + len(out.filepath) for i in range(20)]
        assert {pid == os.getpid() for pid, _ in results} == {True, False}, "ran on both executors"
        # Nested: the thread gets the future itself; a pool cannot take it.
        outcomes = set()
        for f in [mixed_nested([add(1, 1)]) for _ in range(20)]:
            try:
                outcomes.add(f.result(timeout=T))
            except TypeError as e:
                assert "nested inside" in str(e)
                outcomes.add("TypeError")
        assert outcomes == {"AppFuture", "TypeError"}
    finally:
        pids = pool_tree_pids()
        dfk.cleanup()
        assert wait_until(lambda: not any(pid_alive(p) for p in pids), T), "pool processes left behind"
