"""Config(max_unfinished_tasks=N): an app call beyond N unfinished tasks waits until one finishes;
calls made inside the engine (tasks on threads, join bodies, done-callbacks) never wait."""

import os
import signal
import threading

import pytest
from conftest import wait_until
from test_cancel import quick, wait_for

import pervade as parsl
from pervade import join_app, python_app

T = 60


def test_the_call_beyond_the_limit_waits_until_a_task_finishes(load):
    dfk = load(max_unfinished_tasks=3)
    gate = threading.Event()
    blocked = [wait_for(gate, i) for i in range(3)]
    returned = threading.Event()
    extra = []

    def submit():
        extra.append(quick(99))
        returned.set()

    submitter = threading.Thread(target=submit)
    submitter.start()
    assert wait_until(lambda: dfk._kernel.waiting_submitters == 1, T), "the fourth call did not wait"
    assert not returned.is_set(), "the fourth call returned while three tasks were unfinished"
    assert dfk.outstanding_tasks == 3
    gate.set()
    submitter.join(T)
    assert returned.is_set()
    assert [f.result(timeout=T) for f in blocked] == [0, 1, 2]
    assert extra[0].result(timeout=T) == 99


def test_no_limit_by_default(load):
    dfk = load()
    gate = threading.Event()
    futs = [wait_for(gate, i) for i in range(50)]  # 4 threads: 46 wait in the kernel, none in the call
    assert dfk.outstanding_tasks == 50
    gate.set()
    assert [f.result(timeout=T) for f in futs] == list(range(50))


def test_join_app_body_submits_without_deadlock(load):
    load(max_unfinished_tasks=1)

    @join_app
    def fan(n):
        return [quick(i) for i in range(n)]  # the join itself fills the limit

    assert fan(5).result(timeout=T) == [0, 1, 2, 3, 4]


def test_task_on_threads_submits_and_waits_without_deadlock(load):
    load(max_unfinished_tasks=1)

    @python_app
    def outer():
        return quick(20).result(timeout=T) + 1

    assert outer().result(timeout=T) == 21


def test_done_callback_submits_without_deadlock(load):
    load(max_unfinished_tasks=1)
    chained = []
    done = threading.Event()

    def then(f):
        chained.append(quick(f.result() + 1))  # runs on the engine's completion thread
        done.set()

    gate = threading.Event()
    first = wait_for(gate, 1)
    first.add_done_callback(then)
    gate.set()
    assert done.wait(T)
    assert chained[0].result(timeout=T) == 2


def test_many_tasks_through_a_small_limit(load):
    dfk = load(max_unfinished_tasks=8)
    counted = []
    for i in range(2000):
        quick(i).add_done_callback(lambda f: counted.append(f.result()))
        assert dfk.outstanding_tasks <= 8
    dfk.wait_for_current_tasks()
    assert sorted(counted) == list(range(2000))


def test_ctrl_c_interrupts_a_waiting_call(load):
    dfk = load(max_unfinished_tasks=1)
    gate = threading.Event()
    blocked = wait_for(gate)

    def interrupt_when_waiting():
        if wait_until(lambda: dfk._kernel.waiting_submitters == 1, T):
            os.kill(os.getpid(), signal.SIGINT)

    killer = threading.Thread(target=interrupt_when_waiting)
    killer.start()
    try:
        with pytest.raises(KeyboardInterrupt):
            quick(1)
    finally:
        killer.join(T)
        gate.set()
    assert blocked.result(timeout=T) is None
    # The future may complete before the kernel's thread counts the task finished.
    assert wait_until(lambda: dfk.outstanding_tasks == 0, T)


def test_cleanup_releases_a_waiting_call(make_config):
    dfk = parsl.DataFlowKernel(make_config(max_unfinished_tasks=1))
    gate = threading.Event()
    blocked = dfk.submit(wait_for.func, (gate,))
    errors = []

    def submit():
        try:
            dfk.submit(quick.func, (1,))
        except parsl.ParslError as e:
            errors.append(e)

    submitter = threading.Thread(target=submit)
    submitter.start()
    assert wait_until(lambda: dfk._kernel.waiting_submitters == 1, T)
    cleaner = threading.Thread(target=dfk.cleanup)  # waits for the running task
    cleaner.start()
    submitter.join(T)  # released by the closing kernel while the task still runs
    assert not submitter.is_alive()
    assert len(errors) == 1 and isinstance(errors[0], parsl.DataFlowKernelClosed), errors
    gate.set()
    cleaner.join(T)
    assert not cleaner.is_alive()
    assert blocked.done()  # its value, or DataFlowKernelClosed if cleanup interrupted it first


@pytest.mark.parametrize("bad", [0, -1, True, 2.5, "10"])
def test_bad_limit_is_a_configuration_error(make_config, bad):
    with pytest.raises(parsl.ConfigurationError, match="max_unfinished_tasks"):
        make_config(max_unfinished_tasks=bad)
