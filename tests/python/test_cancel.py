"""AppFuture.cancel(): pending and running tasks on threads and on HighThroughputExecutor pools,
dependents, joins, DataFutures. Waits are on real conditions (events, files, pids), never sleeps."""

import concurrent.futures
import os
import threading

import pytest
from conftest import pid_alive, wait_until
from test_htex import add as htex_add
from test_htex import htex, sleep_then, where  # noqa: F401 - htex is a fixture

import pervade as parsl
from pervade import bash_app, join_app, python_app
from pervade.dataflow.states import States

T = 60


@python_app
def wait_for(event, value=None):
    assert event.wait(T), "the test never released the task"
    return value


@python_app
def record(log, value):
    log.append(value)
    return value


@python_app
def spin_until_cancelled(started, stopped):
    started.set()
    try:
        while True:  # pure Python: only an asynchronous exception stops it
            pass
    except parsl.TaskCancelled:
        stopped.set()
        raise


@python_app
def quick(x):
    return x


@bash_app
def sleeper(pidfile):
    # The shell's and the sleep's pids, written atomically once both exist.
    return f"sleep 600 & echo $$ $! > {pidfile}.tmp && mv {pidfile}.tmp {pidfile}; wait"


def one_thread(load):
    return load(executors=[parsl.ThreadPoolExecutor(max_threads=1)])


def assert_cancelled(fut):
    assert fut.cancelled() and fut.done()
    with pytest.raises(concurrent.futures.CancelledError):
        fut.result(timeout=T)
    with pytest.raises(concurrent.futures.CancelledError):
        fut.exception(timeout=T)
    assert fut.task_status() == "cancelled"
    assert fut.task_record["status"] == States.cancelled


def test_cancel_pending_task(load):
    one_thread(load)
    gate = threading.Event()
    blocker = wait_for(gate, "head")
    log = []
    pending = record(log, blocker)          # waits for its dependency
    queued = record(log, "queued")          # launched, waits for the only thread
    calls = []
    pending.add_done_callback(calls.append)
    assert pending.cancel() is True
    assert queued.cancel() is True
    assert_cancelled(pending)
    assert_cancelled(queued)
    assert calls == [pending]
    done, not_done = concurrent.futures.wait([pending, queued, blocker], timeout=0)
    assert done == {pending, queued} and not_done == {blocker}
    gate.set()
    assert blocker.result(timeout=T) == "head"
    parsl.dfk().wait_for_current_tasks()
    assert log == [], "a cancelled task ran"
    assert calls == [pending], "done-callbacks ran more than once"


def test_cancel_running_python_app_frees_its_thread(load):
    one_thread(load)
    started, stopped = threading.Event(), threading.Event()
    fut = spin_until_cancelled(started, stopped)
    assert started.wait(T)
    assert fut.cancel() is True
    assert_cancelled(fut)
    assert stopped.wait(T), "the running function was not interrupted"
    assert quick(5).result(timeout=T) == 5  # the only thread serves again


def test_cancel_running_bash_app_kills_its_processes(dfk, tmp_path):
    pidfile = str(tmp_path / "pids")
    fut = sleeper(pidfile)
    assert wait_until(lambda: os.path.exists(pidfile), T)
    pids = [int(p) for p in open(pidfile).read().split()]
    assert all(pid_alive(p) for p in pids)
    assert fut.cancel() is True
    assert_cancelled(fut)
    assert wait_until(lambda: not any(pid_alive(p) for p in pids), T), "the command's processes survived"


def test_dependents_fail_with_dependency_error_naming_the_cancelled_task(dfk):
    gate = threading.Event()
    head = wait_for(gate, 1)
    middle = quick(head)
    tail = quick(middle)
    assert head.cancel() is True
    with pytest.raises(parsl.DependencyError) as info:
        middle.result(timeout=T)
    e = info.value
    assert e.task_id == middle.tid
    cause, description = e.dependent_exceptions_tids[0]
    assert isinstance(cause, parsl.TaskCancelled) and isinstance(cause, concurrent.futures.CancelledError)
    assert description == f"task {head.tid}"
    assert f"via task {head.tid}" in str(e)
    with pytest.raises(parsl.DependencyError):
        tail.result(timeout=T)
    assert middle.task_status() == "dep_fail"
    gate.set()


def test_cancel_after_completion_returns_false(dfk):
    fut = quick(3)
    assert fut.result(timeout=T) == 3
    assert fut.cancel() is False
    assert not fut.cancelled()
    assert fut.result() == 3 and fut.task_status() == "exec_done"


def test_cancel_twice(load):
    one_thread(load)
    gate = threading.Event()
    blocker = wait_for(gate)
    fut = quick(blocker)
    calls = []
    fut.add_done_callback(calls.append)
    assert fut.cancel() is True
    assert fut.cancel() is True  # as concurrent.futures: a cancelled future stays cancelled
    assert calls == [fut]
    gate.set()
    blocker.result(timeout=T)


def test_cancel_join_app_while_it_joins(dfk):
    gate = threading.Event()
    inner = []

    @join_app
    def joiner():
        f = wait_for(gate, "inner")
        inner.append(f)
        return f

    fut = joiner()
    assert wait_until(lambda: fut.task_status() == "joining", T)
    assert fut.cancel() is True
    assert_cancelled(fut)
    gate.set()
    assert inner[0].result(timeout=T) == "inner"  # the inner task is not cancelled with it


def test_cancel_running_join_body(load):
    load()
    started, stopped = threading.Event(), threading.Event()

    @join_app
    def joiner():
        started.set()
        try:
            while True:
                pass
        except parsl.TaskCancelled:
            stopped.set()
            raise

    fut = joiner()
    assert started.wait(T)
    assert fut.cancel() is True
    assert_cancelled(fut)
    assert stopped.wait(T)


@bash_app
def make_file(gate_path, outputs=()):
    return f"while [ ! -e {gate_path} ]; do sleep 0.05; done; echo data > {outputs[0]}"


def test_cancel_data_future_parent(dfk, tmp_path):
    gate = tmp_path / "gate"
    app = make_file(str(gate), outputs=[parsl.File(str(tmp_path / "out.txt"))])
    data = app.outputs[0]
    reader = quick(data)
    assert app.cancel() is True
    assert data.cancelled()
    with pytest.raises(concurrent.futures.CancelledError):
        data.result(timeout=T)
    with pytest.raises(parsl.DependencyError):
        reader.result(timeout=T)


def test_data_future_cancel_cancels_its_app(dfk, tmp_path):
    gate = tmp_path / "gate"
    app = make_file(str(gate), outputs=[parsl.File(str(tmp_path / "out.txt"))])
    assert app.outputs[0].cancel() is True
    assert app.cancelled() and app.outputs[0].cancelled()
    assert not (tmp_path / "out.txt").exists()


def test_cancel_after_cleanup_returns_false(make_config):
    dfk = parsl.DataFlowKernel(make_config())
    gate = threading.Event()
    fut = dfk.submit(gate.wait, (T,))
    gate.set()
    fut.result(timeout=T)
    dfk.cleanup()
    assert fut.cancel() is False


def test_cancel_running_task_on_htex_worker(htex, tmp_path):
    pidfile = str(tmp_path / "worker.pid")
    fut = sleep_then(600, "late", pidfile=pidfile)
    assert wait_until(lambda: os.path.exists(pidfile), T)
    pid = int(open(pidfile).read())
    assert fut.cancel() is True
    assert_cancelled(fut)
    assert wait_until(lambda: not pid_alive(pid), T), "the cancelled task still runs on its worker"
    # The pool keeps serving, with a replacement worker.
    assert htex_add(2, 3).result(timeout=T) == 5
    assert where().result(timeout=T)[0] != pid
    assert len(htex.pools()) == 1


def test_cancel_queued_task_on_htex(htex, tmp_path):
    # Both workers busy: the third task waits in a queue and is dropped from it.
    pidfiles = [str(tmp_path / f"w{i}.pid") for i in range(2)]
    busy = [sleep_then(600, i, pidfile=p) for i, p in enumerate(pidfiles)]
    assert wait_until(lambda: all(os.path.exists(p) for p in pidfiles), T)
    waiting = htex_add(1, 1)
    assert waiting.cancel() is True
    assert_cancelled(waiting)
    for f in busy:
        assert f.cancel() is True
    assert htex_add(2, 3).result(timeout=T) == 5
