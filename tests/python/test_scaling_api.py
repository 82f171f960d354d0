"""Parsl's scaling interface on pervade's HighThroughputExecutor (docs/scaling.md, "Parsl's
interface"): block error handlers (functions and Parsl's simple/windowed rules), the Strategy
class, status()/status_facade/connected_managers()/connected_blocks()/scale_in, provider
subclasses whose submit/cancel the engine calls, launcher attributes read at each block."""

import functools
import platform

import pytest
from conftest import pid_alive, wait_until
from test_htex import htex_config

import pervade as parsl
from pervade import LocalProvider, python_app
from pervade.jobs.error_handlers import noop_error_handler, simple_error_handler, windowed_error_handler
from pervade.jobs.errors import TooManyJobFailuresError
from pervade.jobs.states import JobState, JobStatus
from pervade.jobs.strategy import Strategy
from pervade.launchers import WrappedLauncher

T = 60


@python_app(executors=["htex"])
def square(i):
    return i * i


@python_app(executors=["htex"])
def environment(name):
    import os

    return os.environ.get(name)


def statuses(*states):
    """{"1": JobStatus(states[0]), "2": ...}."""
    return {str(i): JobStatus(s) for i, s in enumerate(states, start=1)}


class Recorder:
    """Stands for an executor in the handlers' unit tests: records set_bad_state_and_fail_all."""

    def __init__(self, init_blocks=1):
        self.provider = LocalProvider(init_blocks=init_blocks)
        self.failures = []

    def set_bad_state_and_fail_all(self, exception):
        self.failures.append(exception)


F, C = JobState.FAILED, JobState.COMPLETED


def test_simple_handler_fails_once_every_block_failed_and_there_are_init_blocks_of_them():
    executor = Recorder(init_blocks=3)
    simple_error_handler(executor, statuses(F, F))
    simple_error_handler(executor, statuses(C, F, F, F))
    assert executor.failures == []
    simple_error_handler(executor, {**statuses(F, F, JobState.MISSING), "4": JobStatus(F, "exit code 3", 3)})
    [error] = executor.failures
    assert isinstance(error, TooManyJobFailuresError) and "exit code 3" in str(error) and "EXIT CODE: 3" in str(error)


def test_windowed_handler_looks_at_the_latest_blocks_by_number():
    executor = Recorder()
    windowed_error_handler(executor, statuses(F, F))                 # fewer than the window
    windowed_error_handler(executor, statuses(F, F, C, F))
    windowed_error_handler(executor, {"8": JobStatus(F), "9": JobStatus(F), "10": JobStatus(F),
                                      "11": JobStatus(C), "12": JobStatus(C)})
    assert executor.failures == []
    windowed_error_handler(executor, {"8": JobStatus(C), "9": JobStatus(F), "21": JobStatus(F),
                                      "22": JobStatus(F), "10": JobStatus(F)})  # 10 < 21: numbers, not text
    assert len(executor.failures) == 1
    functools.partial(windowed_error_handler, threshold=2)(executor, statuses(C, C, F, F))
    assert len(executor.failures) == 2


def test_block_error_handler_option():
    assert parsl.HighThroughputExecutor(block_error_handler=False).block_error_handler is noop_error_handler
    assert parsl.HighThroughputExecutor(block_error_handler=True).block_error_handler is True
    calls = []
    htex = parsl.HighThroughputExecutor(block_error_handler=lambda ex, status: calls.append((ex, status)))
    htex.handle_errors({"0": JobStatus(F)})
    assert calls == [(htex, {"0": calls[0][1]["0"]})]
    with pytest.raises(parsl.ConfigurationError):
        parsl.HighThroughputExecutor(block_error_handler="yes")


class FakeExecutor:
    """Parsl's executor interface as Strategy reads it; blocks start PENDING and are cancelled
    first-come (the Strategy decides how many, the executor which)."""

    label = "fake"
    bad_state_is_set = False

    def __init__(self, tasks, workers_per_node, max_blocks=20):
        self.tasks = tasks
        self.workers_per_node = workers_per_node
        self.provider = LocalProvider(init_blocks=0, min_blocks=0, max_blocks=max_blocks)
        self.status_facade = {}
        self.scale_ins = []

    def outstanding(self):
        return self.tasks

    def scale_out_facade(self, n):
        for _ in range(n):
            self.status_facade[str(len(self.status_facade))] = JobStatus(JobState.PENDING)

    def scale_in_facade(self, n, max_idletime=None):
        self.scale_ins.append((n, max_idletime))
        for status in self.status_facade.values():
            if n and status.state == JobState.PENDING:
                status.state = JobState.CANCELLED
                n -= 1

    def pending(self):
        return sum(1 for s in self.status_facade.values() if s.state == JobState.PENDING)


@pytest.mark.parametrize("tasks,workers,blocks", [(14, 48, 1), (1, 1, 1), (100, 1, 20), (49, 48, 2), (149, 50, 3)])
def test_strategy_converges_without_oscillating(tasks, workers, blocks):
    executor = FakeExecutor(tasks, workers)
    strategy = Strategy(strategy="htex_auto_scale", max_idletime=0)
    strategy.add_executors([executor])
    strategy.strategize([executor])
    assert executor.pending() == len(executor.status_facade) == blocks
    strategy.strategize([executor])
    assert executor.pending() == blocks, "a block scaled in while its tasks still wait"
    executor.tasks = 0
    strategy.strategize([executor])
    assert executor.pending() == 0 and executor.scale_ins == [(blocks, 0)]


def test_strategy_none_starts_init_blocks_only():
    executor = FakeExecutor(10, 1)
    executor.provider.init_blocks = 2
    strategy = Strategy(strategy="none", max_idletime=0)
    strategy.add_executors([executor])
    strategy.strategize([executor])
    strategy.strategize([executor])
    assert len(executor.status_facade) == 2
    with pytest.raises(KeyError):
        Strategy(strategy="greedy", max_idletime=0)


class CountingProvider(LocalProvider):
    """A Parsl-style subclass: the engine must call these overrides."""

    def __init__(self, *args, **kwargs):
        self.submitted, self.cancelled = [], set()
        super().__init__(*args, **kwargs)

    def submit(self, *args, **kwargs):
        job_id = super().submit(*args, **kwargs)
        self.submitted.append(job_id)
        return job_id

    def cancel(self, job_ids):
        self.cancelled.update(job_ids)
        return super().cancel(job_ids)


def test_provider_overrides_and_block_introspection(tmp_path, no_thread_leak):
    provider = CountingProvider(init_blocks=2, min_blocks=0, max_blocks=2)
    config = htex_config(tmp_path, max_workers_per_node=1, provider=provider)
    config.strategy, config.strategy_period = "none", 0.1
    dfk = parsl.load(config)
    try:
        htex = dfk.executors["htex"]
        assert wait_until(lambda: len(htex.connected_managers()) == 2, T), htex.status()
        assert len(provider.submitted) == 2
        manager = htex.connected_managers()[0]
        assert {"manager", "block_id", "worker_count", "tasks", "idle_duration", "active"} <= set(manager)
        assert manager["worker_count"] == 1 and manager["active"]
        # The versions the pool registered with, as Parsl's managers report theirs.
        assert manager["python_version"] == platform.python_version()
        assert manager["parsl_version"] == parsl.__version__
        assert sorted(htex.connected_blocks()) == ["0", "1"]
        status = htex.status()
        assert sorted(status) == ["0", "1"] and all(s.state == JobState.RUNNING for s in status.values())
        assert wait_until(lambda: all(s.state == JobState.RUNNING for s in htex.status_facade.values()), T)
        # scale_in: one idle block is drained (its pool exits, and with it the block).
        [retired] = htex.scale_in_facade(1, max_idletime=0)
        assert wait_until(lambda: htex.status()[retired].terminal, T), htex.status()
        assert wait_until(lambda: len(htex.connected_managers()) == 1, T)
        assert square(5).result(timeout=T) == 25
        jobs = list(provider.submitted)
    finally:
        dfk.cleanup()
    assert provider.cancelled == set(jobs), "every block is cancelled through the override at cleanup"
    assert wait_until(lambda: not any(pid_alive(int(j)) for j in jobs), T)


def test_callable_block_error_handler_fails_the_executor(tmp_path, no_thread_leak):
    seen = []

    def handler(executor, status):
        seen.append(dict(status))
        windowed_error_handler(executor, status, threshold=2)

    provider = LocalProvider(init_blocks=2, min_blocks=0, max_blocks=2, worker_init="exit 3")
    config = htex_config(tmp_path, provider=provider, block_error_handler=handler)
    config.strategy_period = 0.1
    dfk = parsl.load(config)
    try:
        htex = dfk.executors["htex"]
        with pytest.raises(parsl.BadStateException, match="EXIT CODE: 3"):
            square(2).result(timeout=T)
        assert htex.bad_state_is_set and isinstance(htex.executor_exception, TooManyJobFailuresError)
        assert seen and all(isinstance(s, JobStatus) for s in seen[-1].values())
        with pytest.raises(parsl.BadStateException):
            square(3).result(timeout=T)
    finally:
        dfk.cleanup()


def test_set_bad_state_and_fail_all(tmp_path, no_thread_leak):
    dfk = parsl.load(htex_config(tmp_path))
    try:
        htex = dfk.executors["htex"]
        assert square(2).result(timeout=T) == 4
        reason = RuntimeError("the site is down")
        htex.set_bad_state_and_fail_all(reason)
        assert htex.bad_state_is_set and htex.executor_exception is reason
        with pytest.raises(parsl.BadStateException, match="the site is down"):
            square(3).result(timeout=T)
    finally:
        dfk.cleanup()


def test_launcher_attributes_count_when_a_block_is_submitted(tmp_path, no_thread_leak):
    launcher = WrappedLauncher(prepend="env PERVADE_TEST_MARK=before")
    provider = LocalProvider(init_blocks=0, min_blocks=0, max_blocks=1, launcher=launcher)
    config = htex_config(tmp_path, provider=provider)
    config.strategy_period = 0.1
    dfk = parsl.load(config)
    try:
        launcher.prepend = "env PERVADE_TEST_MARK=after"  # before the first block starts
        assert environment("PERVADE_TEST_MARK").result(timeout=T) == "after"
    finally:
        dfk.cleanup()


def test_arguments_that_cannot_be_pickled_fail_with_serialization_error(tmp_path, no_thread_leak):
    from pervade.serialize.errors import SerializationError

    dfk = parsl.load(htex_config(tmp_path))
    try:
        future = square(x for x in range(3))
        assert isinstance(future.exception(timeout=T), SerializationError)
        assert isinstance(future.exception(), TypeError)  # what pervade raised before
    finally:
        dfk.cleanup()


def test_wrap_with_logs(caplog):
    import logging

    from pervade.process_loggers import wrap_with_logs

    caplog.set_level(logging.DEBUG)

    @wrap_with_logs
    def fine():
        return 5

    @wrap_with_logs(target="pervade.test")
    def broken():
        raise RuntimeError("deliberate")

    assert fine() == 5 and "Normal ending for fine on thread" in caplog.text
    with pytest.raises(RuntimeError):
        broken()
    assert any(r.name == "pervade.test" and "Exceptional ending for broken" in r.message for r in caplog.records)
