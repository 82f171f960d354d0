"""walltime: a busy task is stopped with AppTimeout and its worker is freed; the clock starts when
the task starts running (Parsl's semantics), on threads and on HTEX pools."""

import time

import pytest

import pervade as parsl
from pervade import bash_app, python_app

T = 30


@python_app
def spin(walltime=None):
    x = 0
    while True:
        x += 1


@python_app
def quick(x, walltime=None):
    return x


def test_busy_loop_times_out(load):
    load(executors=[parsl.ThreadPoolExecutor(max_threads=1)])
    start = time.monotonic()
    f = spin(walltime=0.5)
    with pytest.raises(parsl.AppTimeout):
        f.result(timeout=10)
    assert time.monotonic() - start < 10
    assert f.task_status() == "failed"
    # The only worker thread is free again.
    assert quick(7).result(timeout=T) == 7


def test_walltime_not_reached(dfk):
    assert quick(3, walltime=20).result(timeout=T) == 3


def test_walltime_does_not_leak_into_next_task(load):
    load(executors=[parsl.ThreadPoolExecutor(max_threads=1)])
    with pytest.raises(parsl.AppTimeout):
        spin(walltime=0.5).result(timeout=10)
    # Many short tasks after the timeout on the same thread: none gets a stray AppTimeout.
    futs = [quick(i) for i in range(200)]
    assert [f.result(timeout=T) for f in futs] == list(range(200))


def test_timeouts_are_retried(load):
    load(executors=[parsl.ThreadPoolExecutor(max_threads=1)], retries=1)
    calls = []

    @python_app
    def spin_counted(walltime=None):
        calls.append(1)
        while True:
            pass

    with pytest.raises(parsl.AppTimeout):
        spin_counted(walltime=0.5).result(timeout=20)
    assert len(calls) == 2


@pytest.mark.parametrize("bad", [0, -1, "1", True])
def test_invalid_walltime(dfk, bad):
    with pytest.raises(parsl.ConfigurationError, match="walltime"):
        quick(1, walltime=bad)


# Parsl's semantics: walltime counts from when the task starts running, not from its launch; a
# task queued behind a busy worker does not time out in the queue.

@python_app
def hold(seconds):
    import time
    time.sleep(seconds)  # the workload: keeps the only worker busy longer than the next task's walltime
    return "held"


@bash_app
def sleeper(seconds, walltime=None):
    return f"sleep {seconds}"


def test_threads_walltime_counts_from_the_start(load):
    load(executors=[parsl.ThreadPoolExecutor(max_threads=1)])
    busy = hold(2)
    queued = quick(5, walltime=0.5)  # waits 2 s for the thread, then runs in no time
    assert queued.result(timeout=T) == 5
    assert busy.result(timeout=T) == "held"
    with pytest.raises(parsl.AppTimeout):  # one that runs too long still times out
        spin(walltime=0.5).result(timeout=T)


@pytest.fixture
def one_worker_htex(tmp_path, no_thread_leak):
    from test_htex import running_htex
    yield from running_htex(tmp_path, max_workers_per_node=1, retries=0)


def test_htex_walltime_counts_from_the_start_on_the_worker(one_worker_htex):
    busy = hold(2)
    queued = quick(5, walltime=0.5)  # sent to the pool at once; waits there for the worker
    queued_shell = sleeper(0, walltime=0.5)
    assert queued.result(timeout=T) == 5
    assert queued_shell.result(timeout=T) == 0
    assert busy.result(timeout=T) == "held"
    with pytest.raises(parsl.AppTimeout):  # the worker stops a function that runs too long
        spin(walltime=0.5).result(timeout=T)
    with pytest.raises(parsl.AppTimeout):  # and the pool a command
        sleeper(30, walltime=0.5).result(timeout=T)
    assert quick(7).result(timeout=T) == 7  # the worker is free again
