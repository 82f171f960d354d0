"""python_app walltime: a busy task is stopped with AppTimeout and its worker is freed."""

import time

import pytest

import pervade as parsl
from pervade import python_app

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
