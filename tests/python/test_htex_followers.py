"""Followers on the HighThroughputExecutor: an app call whose one unfinished dependency runs on
the same executor is sent ahead to that task's pool and starts there on its value. Real
interchange, pool and workers (LocalProvider); the first task of each chain waits for a file the
test creates, so that the rest of the chain is submitted while it runs."""

import os
import signal

import pytest
from conftest import wait_until
from test_htex import running_htex, worker_pids

import pervade as parsl
from pervade import python_app
from pervade.errors import DependencyError

T = 60


@pytest.fixture(params=[0, 1], ids=["retries0", "retries1"])
def htex(request, tmp_path, no_thread_leak):
    yield from running_htex(tmp_path, retries=request.param)


@python_app(executors=["htex"])
def gate(path, value, fail_first=None):
    """Waits until `path` exists, then returns value (or raises once per `fail_first` file)."""
    import os
    import time
    deadline = time.monotonic() + 60
    while not os.path.exists(path):
        if time.monotonic() > deadline:
            raise TimeoutError(f"{path} never appeared")
        time.sleep(0.005)
    if fail_first is not None and not os.path.exists(fail_first):
        open(fail_first, "w").close()
        raise RuntimeError("first try fails")
    return value


@python_app(executors=["htex"])
def link(previous, log=None):
    if log is not None:
        with open(log, "a") as f:
            f.write(f"{previous}\n")
    return previous + 1


@python_app(executors=["htex"])
def boom(previous):
    raise KeyError(f"boom after {previous}")


def wait_state(future, state):
    # The engine's own state, which tells launched (sent) from running (on a worker); Parsl's
    # task_status() shows both as launched.
    assert wait_until(lambda: future._handle.state == state, T), f"{future._handle.state} != {state}"


def test_a_chain_is_launched_ahead_and_computes_the_right_values(htex, tmp_path):
    go = tmp_path / "go"
    first = gate(str(go), 0)
    chain = [first]
    for _ in range(200):
        chain.append(link(chain[-1]))
    # While the first task runs, its dependent has been handed to the executor (a follower).
    wait_state(chain[1], "launched")
    go.touch()
    assert chain[-1].result(timeout=T) == 200
    assert [f.result(timeout=T) for f in chain] == list(range(201))


def test_follow_dependencies_false_waits_in_the_driver(tmp_path, no_thread_leak):
    for _ in running_htex(tmp_path, follow_dependencies=False):
        go = tmp_path / "go"
        first = gate(str(go), 0)
        second = link(first)
        wait_state(first, "running")
        assert link(5).result(timeout=T) == 6  # the kernel has taken `second` by now (submission order)
        assert second.task_status() == "pending"
        go.touch()
        assert second.result(timeout=T) == 1


def test_a_failure_fails_the_rest_of_the_chain_with_dependency_error(htex, tmp_path):
    go = tmp_path / "go"
    first = gate(str(go), 0)
    second = link(first)
    third = boom(second)
    fourth = link(third)
    fifth = link(fourth)
    wait_state(fourth, "launched")
    go.touch()
    assert second.result(timeout=T) == 1
    with pytest.raises(KeyError, match="boom after 1"):
        third.result(timeout=T)
    for f in (fourth, fifth):
        with pytest.raises(DependencyError):
            f.result(timeout=T)
    assert fifth.task_status() == "dep_fail"


def test_a_retried_input_still_feeds_its_follower(tmp_path, no_thread_leak):
    for _ in running_htex(tmp_path, retries=1):
        go, failed, log = tmp_path / "go", tmp_path / "failed", tmp_path / "log"
        first = gate(str(go), 10, fail_first=str(failed))
        rest = [link(first, str(log))]
        for _ in range(5):
            rest.append(link(rest[-1], str(log)))
        wait_state(rest[0], "launched")
        go.touch()
        assert rest[-1].result(timeout=T) == 16
        assert failed.exists()
        # Each link ran exactly once, on its input's final value.
        assert log.read_text().split() == [str(v) for v in range(10, 16)]


def test_killing_the_worker_of_the_input_relaunches_its_followers(tmp_path, no_thread_leak):
    for _ in running_htex(tmp_path, retries=1, max_workers_per_node=1):
        go, log = tmp_path / "go", tmp_path / "log"
        first = gate(str(go), 0)
        rest = [link(first, str(log))]
        for _ in range(3):
            rest.append(link(rest[-1], str(log)))
        wait_state(first, "running")
        wait_state(rest[-1], "launched")
        (victim,) = worker_pids()
        os.kill(victim, signal.SIGKILL)
        assert wait_until(lambda: [p for p in worker_pids() if p != victim], T), "the worker was not replaced"
        go.touch()
        assert rest[-1].result(timeout=T) == 4
        assert log.read_text().split() == ["0", "1", "2", "3"]


def test_cancelling_a_follower(htex, tmp_path):
    go = tmp_path / "go"
    first = gate(str(go), 0)
    second = link(first)
    third = link(second)
    wait_state(third, "launched")
    assert second.cancel()
    assert second.cancelled()
    with pytest.raises(DependencyError):
        third.result(timeout=T)
    go.touch()
    assert first.result(timeout=T) == 0
    # The pool is still fine.
    assert link(first).result(timeout=T) == 1


def test_a_fan_out_has_one_follower_and_the_rest_wait_in_the_driver(htex, tmp_path):
    go = tmp_path / "go"
    first = gate(str(go), 0)
    fan = [link(first) for _ in range(20)]
    assert wait_until(lambda: sorted(f.task_status() for f in fan) == ["launched"] + ["pending"] * 19, T), \
        [f.task_status() for f in fan]
    go.touch()
    assert [f.result(timeout=T) for f in fan] == [1] * 20
