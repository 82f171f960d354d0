"""Many tasks: correctness at volume and bounded memory."""

import gc

import pytest

import pervade as parsl
from pervade import python_app

T = 120


@python_app
def noop(x):
    return x


@python_app
def inc(x):
    return x + 1


@python_app
def fail():
    raise ValueError("root")


def rss_mb() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS in /proc/self/status")


def test_twenty_thousand_tasks(dfk):
    futs = [noop(i) for i in range(20000)]
    assert [f.result(timeout=T) for f in futs] == list(range(20000))
    assert all(f.task_status() == "exec_done" for f in futs)
    assert len({f.tid for f in futs}) == 20000


def test_long_chain(dfk):
    f = noop(0)
    for _ in range(5000):
        f = inc(f)
    assert f.result(timeout=T) == 5000


def test_long_failing_chain(dfk):
    root = fail()
    f = root
    for _ in range(5000):
        f = inc(f)
    with pytest.raises(parsl.DependencyError) as info:
        f.result(timeout=T)
    assert isinstance(info.value.__cause__, ValueError)
    assert info.value.task_id == f.tid
    assert str(info.value).startswith(f"Dependency failure for task {f.tid}. The representative cause is via ")


def test_wide_fan_in(dfk):
    @python_app
    def total(*values):
        return sum(values)

    parts = [noop(i) for i in range(2000)]
    assert total(*parts).result(timeout=T) == sum(range(2000))


def test_memory_bounded_over_200k_tasks(load):
    kernel = load(initialize_logging=False)
    [noop(i) for i in range(2000)][-1].result(timeout=T)  # warm up
    gc.collect()
    start = rss_mb()
    half = None
    for batch in range(10):
        futs = [noop(i) for i in range(20000)]
        assert futs[-1].result(timeout=T) == 19999
        assert futs[0].result(timeout=T) == 0
        kernel.wait_for_current_tasks()
        del futs
        if batch == 4:
            gc.collect()
            half = rss_mb()
    gc.collect()
    end = rss_mb()
    assert end - start < 300, f"RSS grew by {end - start:.0f} MB over 200,000 tasks"
    # No per-task leak: the second 100,000 tasks add (almost) nothing.
    assert end - half < 100, f"RSS grew by {end - half:.0f} MB over the second 100,000 tasks"
    assert kernel.outstanding_tasks == 0


def test_fire_and_forget_tasks_are_released(load):
    """Futures the caller never keeps: the engine finishes them and lets them go."""
    import weakref

    kernel = load(initialize_logging=False)
    refs = [weakref.ref(noop(i)) for i in range(5000)]
    kernel.wait_for_current_tasks()
    from conftest import wait_until

    assert wait_until(lambda: (gc.collect(), sum(r() is not None for r in refs))[1] == 0, timeout=30)
