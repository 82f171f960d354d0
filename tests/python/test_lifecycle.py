"""Kernel lifecycle: context manager, exit modes, waiting, cleanup, executors."""

import threading
import time
from concurrent.futures import Future

import pytest
from conftest import pid_alive, wait_until

import pervade as parsl
from pervade import bash_app, python_app

T = 30


@python_app
def ident(x):
    return x


@python_app
def gated(gate, value):
    """Blocks until gate (a threading.Event) is set; the GIL is released while it waits."""
    if not gate.wait(T):
        raise RuntimeError("gate never opened")
    return value


@python_app
def where():
    return threading.current_thread().ident


def test_with_block_cleans_up_and_clears(make_config, no_thread_leak):
    with parsl.load(make_config()) as kernel:
        assert parsl.dfk() is kernel
        f = ident(3)
        assert f.result(timeout=T) == 3
    assert kernel.cleanup_called
    with pytest.raises(parsl.NoDataFlowKernelError):
        parsl.dfk()
    with pytest.raises(parsl.NoDataFlowKernelError):
        ident(1)


def test_with_block_cleans_up_on_exception(make_config, no_thread_leak):
    with pytest.raises(ZeroDivisionError):
        with parsl.load(make_config()):
            ident(1).result(timeout=T)
            1 / 0
    with pytest.raises(parsl.NoDataFlowKernelError):
        parsl.dfk()


def test_exit_mode_wait_waits_for_outstanding_tasks(make_config, no_thread_leak):
    gate = threading.Event()
    with parsl.load(make_config(exit_mode="wait")):
        futs = [gated(gate, i) for i in range(4)]
        # Not launched until the gated tasks end: plain cleanup would fail these.
        dependents = [ident(f) for f in futs]
        # Opened from another thread while the main thread is (normally) blocked in __exit__.
        opener = threading.Timer(0.2, gate.set)
        opener.start()
    opener.join()
    assert all(f.done() for f in futs + dependents)
    assert [f.result() for f in dependents] == [0, 1, 2, 3]


def test_exit_mode_cleanup_fails_unlaunched_tasks_but_leaves_those_waiting_outside(make_config, no_thread_leak):
    gate, pending = threading.Event(), Future()
    with parsl.load(make_config(executors=[parsl.ThreadPoolExecutor(max_threads=1)])):
        queued = ident(gated(gate, 1))  # waits for a task of the kernel: failed by cleanup
        outside = ident(pending)        # waits for a future of the user's: left, as Parsl leaves it
        behind = ident(outside)
        threading.Timer(0.2, gate.set).start()
    with pytest.raises(parsl.DataFlowKernelClosed):
        queued.result(timeout=0)
    assert not outside.done() and not behind.done()
    pending.set_result(1)  # after cleanup: nothing runs
    with pytest.raises(TimeoutError):
        outside.result(timeout=0.2)


def test_exit_mode_skip_leaves_kernel_loaded(make_config, no_thread_leak):
    with parsl.load(make_config(exit_mode="skip")) as kernel:
        f = ident(4)
    try:
        assert parsl.dfk() is kernel
        assert not kernel.cleanup_called
        assert f.result(timeout=T) == 4
        assert ident(5).result(timeout=T) == 5
    finally:
        kernel.cleanup()
    with pytest.raises(parsl.NoDataFlowKernelError):
        parsl.dfk()


def test_wait_for_current_tasks(dfk):
    gate = threading.Event()
    futs = [gated(gate, i) for i in range(4)]
    dependents = [ident(f) for f in futs]
    opener = threading.Timer(0.2, gate.set)
    opener.start()
    parsl.wait_for_current_tasks()
    opener.join()
    assert dfk.outstanding_tasks == 0
    assert all(f.task_status() == "exec_done" for f in futs + dependents)
    assert [f.result(timeout=T) for f in dependents] == [0, 1, 2, 3]


def test_wait_for_current_tasks_includes_failures(dfk):
    @python_app
    def bad():
        raise ValueError("x")

    futs = [bad() for _ in range(5)] + [ident(1)]
    dependents = [ident(f) for f in futs]
    dfk.wait_for_current_tasks()
    assert dfk.outstanding_tasks == 0
    assert [f.task_status() for f in futs] == ["failed"] * 5 + ["exec_done"]
    assert [f.task_status() for f in dependents] == ["dep_fail"] * 5 + ["exec_done"]


def test_futures_done_after_wait_for_current_tasks(dfk):
    """As in Parsl, every AppFuture of the tasks waited for is done when wait_for_current_tasks()
    returns, not only the engine's task state. Made deterministic by a done-callback that holds up
    future delivery: the tasks are final in the engine long before their futures are set."""
    release = threading.Event()
    trigger = Future()
    first = ident(trigger)
    first.add_done_callback(lambda f: release.wait(3))
    later = [ident(first) for _ in range(5)]
    trigger.set_result(1)
    try:
        dfk.wait_for_current_tasks()
        not_done = [f.tid for f in [first] + later if not f.done()]
    finally:
        release.set()
    assert not_done == [], f"tasks {not_done} are final but their futures are not done"
    assert [f.result(timeout=T) for f in later] == [1] * 5


def test_cleanup_is_idempotent(make_config, no_thread_leak):
    kernel = parsl.load(make_config())
    kernel.cleanup()
    kernel.cleanup()
    with pytest.raises(parsl.NoDataFlowKernelError):
        parsl.dfk()


def test_cleanup_interrupts_running_python_task(make_config, no_thread_leak):
    # cleanup() stops running work instead of waiting for it: the running Python function gets
    # DataFlowKernelClosed raised in its thread (when it next runs Python code).
    started = threading.Event()

    @python_app
    def long_running():
        started.set()
        deadline = time.monotonic() + T
        while time.monotonic() < deadline:
            pass
        return "finished"

    kernel = parsl.load(make_config())
    running = long_running()
    assert started.wait(T)
    kernel.cleanup()
    assert running.done()
    with pytest.raises(parsl.DataFlowKernelClosed):
        running.result(timeout=0)


def test_cleanup_kills_running_bash_task(make_config, no_thread_leak, tmp_path):
    pidfile = tmp_path / "pid"

    @bash_app
    def sleeper():
        return f"echo $$ > {pidfile}.tmp && mv {pidfile}.tmp {pidfile} && sleep 1000"

    kernel = parsl.load(make_config())
    running = sleeper()
    assert wait_until(pidfile.exists, T)
    pid = int(pidfile.read_text())
    kernel.cleanup()
    with pytest.raises(parsl.DataFlowKernelClosed):
        running.result(timeout=0)
    assert wait_until(lambda: not pid_alive(pid), T)


def test_bound_app_after_cleanup_raises(make_config, no_thread_leak):
    kernel = parsl.DataFlowKernel(make_config())

    @python_app(data_flow_kernel=kernel)
    def bound():
        return 1

    assert bound().result(timeout=T) == 1
    kernel.cleanup()
    with pytest.raises(parsl.NoDataFlowKernelError, match="cleaned up"):
        bound()


def test_pending_on_never_completed_future_stays_pending_after_cleanup(make_config, no_thread_leak):
    kernel = parsl.load(make_config())
    never = Future()
    waiting = ident(never)
    chained = ident(waiting)
    kernel.cleanup()  # returns: as in Parsl, it does not wait for them
    assert not waiting.done() and not chained.done()
    assert waiting.task_status() == "pending"
    # Completing the future afterwards is harmless: the kernel is gone, nothing runs.
    never.set_result(1)
    with pytest.raises(TimeoutError):
        waiting.result(timeout=0.2)


def test_datafuture_of_unlaunched_task_fails_at_cleanup(make_config, tmp_path, no_thread_leak):
    kernel = parsl.load(make_config(executors=[parsl.ThreadPoolExecutor(max_threads=1)]))
    gate = threading.Event()

    @python_app
    def produce(x, outputs=()):
        return x

    f = produce(gated(gate, 1), outputs=[parsl.File(str(tmp_path / "never.txt"))])
    threading.Timer(0.2, gate.set).start()
    kernel.cleanup()
    assert isinstance(f.outputs[0].exception(timeout=0), parsl.DataFlowKernelClosed)


def test_kernel_as_context_manager_directly(make_config, no_thread_leak):
    with parsl.DataFlowKernel(make_config()) as kernel:
        @python_app(data_flow_kernel=kernel)
        def double(x):
            return 2 * x

        assert double(21).result(timeout=T) == 42
    assert kernel.cleanup_called


def test_executor_pinning(load):
    load(executors=[parsl.ThreadPoolExecutor(label="left", max_threads=1),
                    parsl.ThreadPoolExecutor(label="right", max_threads=1)])

    @python_app(executors=["left"])
    def on_left():
        return threading.current_thread().ident

    @python_app(executors=["right"])
    def on_right():
        return threading.current_thread().ident

    lefts = [on_left() for _ in range(10)]
    rights = [on_right() for _ in range(10)]
    left_threads = {f.result(timeout=T) for f in lefts}
    right_threads = {f.result(timeout=T) for f in rights}
    assert all(f.task_record["executor"] == "left" for f in lefts)
    assert all(f.task_record["executor"] == "right" for f in rights)
    # One thread per executor, and they are different threads.
    assert len(left_threads) == 1 and len(right_threads) == 1
    assert left_threads != right_threads


def test_all_uses_every_executor(load):
    load(executors=[parsl.ThreadPoolExecutor(label="one"), parsl.ThreadPoolExecutor(label="two")])
    futs = [ident(i) for i in range(200)]
    assert [f.result(timeout=T) for f in futs] == list(range(200))
    used = {f.task_record["executor"] for f in futs}
    assert used == {"one", "two"}


def test_explicit_executor_list(load):
    load(executors=[parsl.ThreadPoolExecutor(label="one"), parsl.ThreadPoolExecutor(label="two"),
                    parsl.ThreadPoolExecutor(label="three")])

    @python_app(executors=["one", "three"])
    def either(x):
        return x

    futs = [either(i) for i in range(100)]
    for f in futs:
        f.result(timeout=T)
    assert {f.task_record["executor"] for f in futs} == {"one", "three"}


def test_lifted_and_join_run_on_internal_executor(dfk):
    @python_app
    def make():
        return {"k": 1}

    item = make()["k"]
    assert item.result(timeout=T) == 1
    assert item.task_record["executor"] == "_parsl_internal"
    assert item.task_record["func_name"] == "deferred_getitem"


def test_max_threads_bounds_concurrency(load):
    """max_threads=3: 3 tasks can block together; a 4th task only starts when one of them ends."""
    load(executors=[parsl.ThreadPoolExecutor(max_threads=3)])
    lock = threading.Lock()
    state = {"now": 0, "peak": 0}
    gate = threading.Event()

    @python_app
    def occupy():
        with lock:
            state["now"] += 1
            state["peak"] = max(state["peak"], state["now"])
        gate.wait(T)
        with lock:
            state["now"] -= 1
        return True

    futs = [occupy() for _ in range(6)]
    from conftest import wait_until
    assert wait_until(lambda: state["now"] == 3, timeout=T)
    gate.set()
    assert all(f.result(timeout=T) for f in futs)
    assert state["peak"] == 3


def test_atexit_cleanup_in_subprocess(tmp_path):
    """A script that never cleans up still exits promptly and cleanly (pervade cleans up at exit)."""
    import subprocess
    import sys

    script = tmp_path / "noclean.py"
    script.write_text(
        "import pervade as parsl\n"
        "@parsl.python_app\n"
        "def f(x):\n"
        "    return x + 1\n"
        f"parsl.load(parsl.Config(run_dir={str(tmp_path / 'runinfo')!r}))\n"
        "print(f(1).result())\n"
        "futs = [f(i) for i in range(1000)]\n")
    proc = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "2"


def test_two_kernels_exchange_futures(make_config, no_thread_leak):
    first = parsl.DataFlowKernel(make_config())
    second = parsl.DataFlowKernel(make_config())
    try:
        @python_app(data_flow_kernel=first)
        def plus_one(x):
            return x + 1

        @python_app(data_flow_kernel=second)
        def times_ten(x):
            return x * 10

        @python_app(data_flow_kernel=first)
        def bad():
            raise ValueError("in first")

        assert times_ten(plus_one(1)).result(timeout=T) == 20
        with pytest.raises(parsl.DependencyError) as info:
            times_ten(bad()).result(timeout=T)
        assert isinstance(info.value.__cause__, ValueError)
        assert first.run_dir != second.run_dir
    finally:
        first.cleanup()
        second.cleanup()


def test_cleanup_abandons_a_task_that_cannot_be_interrupted(load):
    """A task blocked in a C call (Event.wait() without timeout) cannot be interrupted: cleanup()
    gives up on it after shutdown_grace instead of hanging, and fails its future. The abandoned
    thread ends on its own once its call returns (no_thread_leak checks it is gone)."""
    gate = threading.Event()
    started = threading.Event()

    @python_app
    def uninterruptible():
        started.set()
        gate.wait()
        return "finished"

    kernel = load(executors=[parsl.ThreadPoolExecutor(max_threads=2, shutdown_grace=0.2)])
    stuck = uninterruptible()
    assert started.wait(T)
    cleaner = threading.Thread(target=kernel.cleanup)
    cleaner.start()
    cleaner.join(T)
    try:
        assert not cleaner.is_alive(), "cleanup() hung on an uninterruptible task"
        with pytest.raises(parsl.DataFlowKernelClosed, match="abandoned"):
            stuck.result(timeout=0)
    finally:
        gate.set()  # the abandoned thread returns into an executor that touches nothing more


def test_quick_result_does_not_wait_for_a_long_task_after_it(load):
    """One thread takes several queued tasks at once: a finished task's result is delivered while
    the next one still runs, and the tasks behind a long one go to the other threads."""
    load(executors=[parsl.ThreadPoolExecutor(max_threads=2)])
    gate = threading.Event()
    try:
        # Submitted together: the first thread's share holds quick tasks before and after a long one.
        futures = [ident(i) for i in range(10)] + [gated(gate, "long")] + [ident(i) for i in range(10, 40)]
        quick = futures[:10] + futures[11:]
        assert [f.result(timeout=T) for f in quick] == list(range(40))
        assert not futures[10].done()
    finally:
        gate.set()
    assert futures[10].result(timeout=T) == "long"


@pytest.mark.parametrize("grace", [-1, float("nan"), float("inf"), True, "1"])
def test_shutdown_grace_is_checked(grace):
    with pytest.raises(parsl.ConfigurationError, match="shutdown_grace"):
        parsl.ThreadPoolExecutor(shutdown_grace=grace)
