"""Executors written in Python (subclasses of Parsl's ParslExecutor): the engine calls their start(),
hands each try to submit() on a thread of its own and takes the returned future's outcome, and
calls shutdown() at cleanup. Retries, memoization, dependencies, joins and monitoring are the
engine's, as for its own executors."""

import concurrent.futures
import gc
import inspect
import os
import sqlite3
import threading
import weakref
from concurrent.futures import Future

import pytest

import pervade as parsl
from pervade import bash_app, join_app, python_app
from pervade.executors.base import ParslExecutor
from pervade.monitoring import MonitoringHub

from conftest import wait_until

T = 30


class PoolExecutor(ParslExecutor):
    """Runs each try on a concurrent.futures.ThreadPoolExecutor; records what it is given."""

    def __init__(self, label="pool", workers=2):
        super().__init__()
        self.label = label
        self.workers = workers
        self.calls = []  # (resource_specification, args, kwargs) per submit()
        self.starts = self.shutdowns = 0

    def start(self):
        self.starts += 1
        self.pool = concurrent.futures.ThreadPoolExecutor(self.workers)

    def submit(self, func, resource_specification, *args, **kwargs):
        self.calls.append((resource_specification, args, kwargs))
        return self.pool.submit(func, *args, **kwargs)

    def shutdown(self):
        self.shutdowns += 1
        self.pool.shutdown(wait=True)


class PendingExecutor(ParslExecutor):
    """Returns futures that nobody completes (a system that lost the task)."""

    label = "pending"

    def __init__(self, shutdown_grace=10.0, shutdown_blocks=None):
        self.futures = []
        self.shutdown_grace = shutdown_grace
        self.shutdown_blocks = shutdown_blocks  # an Event shutdown() waits for

    def submit(self, func, resource_specification, *args, **kwargs):
        future = Future()
        self.futures.append(future)
        return future

    def shutdown(self):
        if self.shutdown_blocks is not None:
            self.shutdown_blocks.wait()


@python_app
def add(a, b=0):
    return a + b


@python_app
def total(inputs=()):
    return sum(inputs)


@python_app
def with_spec(parsl_resource_specification={}):
    return parsl_resource_specification


@python_app
def fail(message):
    raise KeyError(message)


def test_tasks_run_on_the_executor_with_their_dependencies_values(load):
    pool = PoolExecutor()
    dfk = load(executors=[pool])
    assert pool.starts == 1 and pool.run_dir == dfk.run_dir and pool.run_id == dfk.run_id
    a = add(1, 2)
    b = add(a, b=add(10))
    c = total(inputs=[a, b, 100])
    assert [a.result(timeout=T), b.result(timeout=T), c.result(timeout=T)] == [3, 13, 116]
    # submit() got values, never futures, in args, kwargs and inputs=.
    for _, args, kwargs in pool.calls:
        assert not any(isinstance(v, Future) for v in (*args, *kwargs.values(), *kwargs.get("inputs", ())))
    assert a.task_record["executor"] == "pool"
    many = [add(i) for i in range(500)]
    assert sum(f.result(timeout=T) for f in many) == sum(range(500))


def test_submit_gets_the_resource_specification_as_in_parsl(load):
    pool = PoolExecutor()
    load(executors=[pool])
    assert with_spec(parsl_resource_specification={"cores": 2}).result(timeout=T) == {"cores": 2}
    assert with_spec().result(timeout=T) == {}
    assert [spec for spec, _, _ in pool.calls] == [{"cores": 2}, {}]
    assert pool.calls[0][2] == {"parsl_resource_specification": {"cores": 2}}  # still a keyword argument


@python_app
def add_all(pairs):
    return sum(a + b for a, b in pairs)


def test_a_dependency_resolver_finds_futures_for_the_executor(load):
    from pervade.dataflow.dependency_resolvers import DEEP_DEPENDENCY_RESOLVER

    pool = PoolExecutor()
    load(executors=[pool], dependency_resolver=DEEP_DEPENDENCY_RESOLVER)
    assert add_all([(add(1), 2), (3, add(4))]).result(timeout=T) == 10
    assert pool.calls[-1][1] == ([(1, 2), (3, 4)],)


class ImmediateExecutor(ParslExecutor):
    """Parsl's test_dependencies_deep executor: runs the task inside submit()."""

    def submit(self, func, resource_specification, *args, **kwargs):
        assert len(inspect.stack()) < 50, "tasks should not be launched deep in the Python stack"
        future = Future()
        future.set_result(func(*args, **kwargs))
        return future

    def shutdown(self):
        pass


@python_app
def chain(upstream):
    assert len(inspect.stack()) < 50, "chained dependencies should not be launched deep in the Python stack"
    return (upstream or 0) + 1


def test_a_deep_chain_is_launched_without_recursion(load):
    load(executors=[ImmediateExecutor()])
    head = Future()
    here = head
    for _ in range(1000):
        here = chain(here)
    head.set_result(None)
    assert here.result(timeout=T) == 1000


class RaisingExecutor(PoolExecutor):
    """submit() raises for the first `failures` tries."""

    def __init__(self, failures):
        super().__init__()
        self.failures = failures
        self.raised = []

    def submit(self, func, resource_specification, *args, **kwargs):
        if len(self.raised) < self.failures:
            self.raised.append(RuntimeError(f"cannot submit ({len(self.raised)})"))
            raise self.raised[-1]
        return super().submit(func, resource_specification, *args, **kwargs)


def test_submit_raising_fails_the_try_with_that_exception(load):
    pool = RaisingExecutor(failures=1)
    load(executors=[pool])
    f = add(1)
    assert f.exception(timeout=T) is pool.raised[0]
    with pytest.raises(parsl.DependencyError):
        add(f).result(timeout=T)


def test_a_try_that_submit_refused_is_retried(load):
    pool = RaisingExecutor(failures=2)
    load(executors=[pool], retries=2)
    f = add(5)
    assert f.result(timeout=T) == 5
    assert len(pool.raised) == 2 and f.task_record["fail_count"] == 2


def test_the_returned_futures_failure_is_the_tasks(load):
    pool = PoolExecutor()
    load(executors=[pool])
    f = fail("lost")
    with pytest.raises(KeyError, match="lost"):
        f.result(timeout=T)
    assert f.exception() is f.exception()
    dependent = add(f)
    with pytest.raises(parsl.DependencyError) as info:
        dependent.result(timeout=T)
    assert info.value.__cause__ is f.exception()


class OddExecutor(ParslExecutor):
    """Returns a cancelled future, or something that is not a future at all."""

    label = "odd"

    def submit(self, func, resource_specification, *args, **kwargs):
        if args[0] == "cancelled":
            future = Future()
            future.cancel()
            return future
        return "not a future"


def test_a_cancelled_future_or_no_future_fails_the_task(load):
    load(executors=[OddExecutor()])
    with pytest.raises(concurrent.futures.CancelledError):
        add("cancelled").result(timeout=T)
    with pytest.raises(TypeError, match="OddExecutor.submit.. must return a concurrent.futures.Future, got 'not a"):
        add("other").result(timeout=T)


@python_app(executors=["threads"])
def on_threads(x):
    return ("threads", threading.current_thread().name, x)


@python_app(executors=["pool"])
def on_pool(x):
    return ("pool", threading.current_thread().name, x)


def test_mixed_with_the_engines_thread_pool_in_one_config(load):
    pool = PoolExecutor()
    load(executors=[parsl.ThreadPoolExecutor(label="threads", max_threads=2), pool])
    first = on_threads(1)
    second = on_pool(first)
    third = on_threads(second)
    kind, _, (pool_kind, pool_thread, (first_kind, _, value)) = third.result(timeout=T)
    assert (kind, pool_kind, first_kind, value) == ("threads", "pool", "threads", 1)
    assert pool_thread.startswith("ThreadPoolExecutor")  # concurrent.futures' thread, not the engine's
    assert len(pool.calls) == 1
    # Apps that may run anywhere run on either.
    anywhere = [add(i) for i in range(100)]
    assert [f.result(timeout=T) for f in anywhere] == list(range(100))
    assert {f.task_record["executor"] for f in anywhere} <= {"threads", "pool"}


@python_app(executors=["htex"])
def on_htex(x):
    return {"from": "htex", "x": x}


def test_values_cross_between_the_executor_and_a_pool(load):
    from pervade import HighThroughputExecutor, LocalProvider

    pool = PoolExecutor()
    load(executors=[HighThroughputExecutor(label="htex", max_workers_per_node=1, worker_port_range=(56000, 57000),
                                           provider=LocalProvider(init_blocks=1)), pool])
    assert on_pool(on_htex(1)).result(timeout=60)[2] == {"from": "htex", "x": 1}  # a pool's bytes, decoded
    assert on_htex(on_pool(2)).result(timeout=60)["x"][::2] == ("pool", 2)


@python_app
def sometimes_fails(i):
    if i % 7 == 0:
        raise ValueError(i)
    return i


def test_many_tries_with_failures_retries_and_cancels_all_end(load):
    pool = PoolExecutor(workers=4)
    dfk = load(executors=[pool], retries=1)
    futures = [sometimes_fails(i) for i in range(2000)]
    cancelled = {i for i in range(0, 2000, 10) if futures[i].cancel()}
    dfk.cleanup()  # with tries still queued, on the pool and completing meanwhile
    assert all(f.done() for f in futures)
    for i, f in enumerate(futures):
        if f.cancelled():
            assert i in cancelled
        elif isinstance(f.exception(), ValueError):
            assert i % 7 == 0 and f.task_record["fail_count"] == 2  # retried once
        elif f.exception() is None:
            assert f.result() == i
        else:
            assert isinstance(f.exception(), parsl.DataFlowKernelClosed)  # not launched before cleanup


def test_cleanup_calls_shutdown_once_and_running_tries_finish(load):
    release = threading.Event()

    class ReleasingPool(PoolExecutor):
        def shutdown(self):
            release.set()  # what the running task waits for
            super().shutdown()

    @python_app
    def waits():
        assert release.wait(T)
        return "finished"

    pool = ReleasingPool()
    dfk = load(executors=[pool])
    f = waits()
    assert wait_until(lambda: len(pool.calls) == 1, T)
    dfk.cleanup()
    assert pool.starts == 1 and pool.shutdowns == 1
    assert f.result(timeout=0) == "finished"  # shutdown() let it end before cleanup() returned
    dfk.cleanup()
    assert pool.shutdowns == 1


def test_cleanup_fails_the_tries_whose_futures_never_finish(load):
    pending = PendingExecutor(shutdown_grace=0.2)
    dfk = load(executors=[pending])
    futures = [add(i) for i in range(3)]
    assert wait_until(lambda: len(pending.futures) == 3, T)
    dfk.cleanup()
    for f in futures:
        with pytest.raises(parsl.DataFlowKernelClosed, match="given up"):
            f.result(timeout=0)
    pending.futures[0].set_result(1)  # too late: nothing is reported any more


def test_cleanup_gives_up_on_a_shutdown_that_hangs(load):
    unblock = threading.Event()
    pending = PendingExecutor(shutdown_grace=0.2, shutdown_blocks=unblock)
    dfk = load(executors=[pending])
    f = add(1)
    assert wait_until(lambda: len(pending.futures) == 1, T)
    try:
        dfk.cleanup()
        with pytest.raises(parsl.DataFlowKernelClosed):
            f.result(timeout=0)
    finally:
        unblock.set()  # the abandoned launch thread then ends (no_thread_leak waits for it)


def test_cleanup_gives_up_on_a_submit_that_hangs(load):
    entered, unblock = threading.Event(), threading.Event()

    class Stuck(PendingExecutor):
        def submit(self, func, resource_specification, *args, **kwargs):
            entered.set()
            unblock.wait()
            return super().submit(func, resource_specification, *args, **kwargs)

    dfk = load(executors=[Stuck(shutdown_grace=0.2)])
    futures = [add(i) for i in range(3)]  # the first blocks the launch thread; the others wait behind it
    assert entered.wait(T)
    try:
        dfk.cleanup()
        for f in futures:
            assert isinstance(f.exception(timeout=0), parsl.DataFlowKernelClosed)
    finally:
        unblock.set()


def test_the_executor_is_freed_after_cleanup(make_config, no_thread_leak):
    # Its futures' callbacks hold the engine's side, which must then no longer hold the executor.
    pending = PendingExecutor(shutdown_grace=0)
    dfk = parsl.load(make_config(executors=[pending]))
    f = add(1)
    assert wait_until(lambda: len(pending.futures) == 1, T)
    dfk.cleanup()
    assert isinstance(f.exception(timeout=0), parsl.DataFlowKernelClosed)
    executor = weakref.ref(pending)
    del pending, dfk, f
    gc.collect()
    assert executor() is None


def test_start_raising_fails_load(make_config, no_thread_leak):
    class Broken(PoolExecutor):
        def start(self):
            raise RuntimeError("cannot start")

    with pytest.raises(RuntimeError, match="cannot start"):
        parsl.load(make_config(executors=[Broken()]))
    with pytest.raises(parsl.NoDataFlowKernelError):
        parsl.dfk()


def test_an_executor_without_submit_fails_load(make_config, no_thread_leak):
    class NoSubmit(ParslExecutor):
        label = "nosubmit"

    with pytest.raises(TypeError, match="NoSubmit.*has no submit"):
        parsl.load(make_config(executors=[NoSubmit()]))


def test_a_subclass_of_an_engine_executor_cannot_override_submit():
    class Logged(parsl.ThreadPoolExecutor):
        def submit(self, func, resource_specification, *args, **kwargs):
            raise AssertionError("never called")

    with pytest.raises(parsl.ConfigurationError, match="Logged overrides submit.., which is never called"):
        parsl.Config(executors=[Logged()])


@pytest.mark.parametrize("grace", [-1, float("inf"), "10", True])
def test_a_bad_shutdown_grace_fails_load(make_config, no_thread_leak, grace):
    with pytest.raises(parsl.ConfigurationError, match="shutdown_grace must be a finite number of seconds >= 0"):
        parsl.load(make_config(executors=[PendingExecutor(shutdown_grace=grace)]))


@python_app
def idle(walltime=None):
    return "never submitted to a real system"


def test_walltime_fails_the_try_and_cancels_its_future(load):
    pending = PendingExecutor()
    load(executors=[pending])
    with pytest.raises(parsl.AppTimeout):
        idle(walltime=0.2).result(timeout=T)
    assert wait_until(lambda: pending.futures[0].cancelled(), T)


def test_task_records_while_the_executor_holds_the_task(load):
    from pervade.dataflow.states import States

    pending = PendingExecutor()
    dfk = load(executors=[pending])
    f = add(1)
    assert wait_until(lambda: len(pending.futures) == 1, T)
    record = dfk.tasks[f.tid]
    assert (record["status"], record["executor"], record["func_name"]) == (States.launched, "pending", "add")
    assert dfk.task_state_counts[States.launched] == 1
    pending.futures[0].set_result(41)
    assert f.result(timeout=T) == 41
    assert wait_until(lambda: f.tid not in dfk.tasks, T)
    assert f.task_record["status"] == States.exec_done


def test_cancel_cancels_the_future(load):
    pending = PendingExecutor()
    load(executors=[pending])
    f = add(1)
    assert wait_until(lambda: len(pending.futures) == 1, T)
    assert f.cancel()
    assert wait_until(lambda: pending.futures[0].cancelled(), T)


def test_memoized_calls_are_answered_by_the_engine(load):
    pool = PoolExecutor()

    @python_app(cache=True)
    def square(x):
        return x * x

    load(executors=[pool])
    assert square(7).result(timeout=T) == 49
    again = square(7)
    assert again.result(timeout=T) == 49
    assert again.task_record["from_memo"] and len(pool.calls) == 1


@python_app(cache=True)
def cube(x):
    return x ** 3


def test_checkpointed_results_are_not_submitted_again(make_config, run_dir, no_thread_leak):
    from pervade import BasicMemoizer
    from pervade.memoization import get_all_checkpoints

    first = PoolExecutor()
    dfk = parsl.load(make_config(executors=[first], memoizer=BasicMemoizer(checkpoint_mode="task_exit")))
    assert [cube(i).result(timeout=T) for i in range(3)] == [0, 1, 8]
    dfk.cleanup()
    second = PoolExecutor()
    dfk = parsl.load(make_config(executors=[second],
                                 memoizer=BasicMemoizer(checkpoint_files=get_all_checkpoints(run_dir))))
    try:
        assert [cube(i).result(timeout=T) for i in range(4)] == [0, 1, 8, 27]
        assert second.calls == [({}, (3,), {})]  # only the call the checkpoint did not have
    finally:
        dfk.cleanup()


@join_app
def fan_out(n):
    return [add(i) for i in range(n)]


def test_join_apps_wait_for_tasks_on_the_executor(load):
    pool = PoolExecutor()
    load(executors=[pool])
    assert sum(fan_out(50).result(timeout=T)) == sum(range(50))
    assert len(pool.calls) == 50  # the join's body ran on the engine's internal executor


@bash_app
def write(path, stdout=None):
    return f"echo written > {path}"


def test_bash_apps_run_on_the_executor(load, tmp_path):
    pool = PoolExecutor()
    load(executors=[pool])
    path = tmp_path / "out.txt"
    assert write(str(path)).result(timeout=T) == 0
    assert path.read_text() == "written\n" and len(pool.calls) == 1


def test_monitoring_rows_name_the_executor(load, run_dir):
    pool = PoolExecutor()
    dfk = load(executors=[pool], monitoring=MonitoringHub())
    assert add(1).result(timeout=T) == 1
    with pytest.raises(KeyError):
        fail("x").result(timeout=T)
    dfk.cleanup()
    db = sqlite3.connect(os.path.join(run_dir, "monitoring.db"))
    try:
        assert db.execute("SELECT task_id, task_executor FROM try ORDER BY task_id").fetchall() == [
            (0, "pool"), (1, "pool")]
        statuses = db.execute("SELECT task_id, task_status_name FROM status ORDER BY task_id, timestamp, rowid").fetchall()
    finally:
        db.close()
    assert [s for t, s in statuses if t == 0][-1] == "exec_done"
    assert [s for t, s in statuses if t == 1][-1] == "failed"
