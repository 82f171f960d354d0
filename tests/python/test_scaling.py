"""Elastic blocks end to end (docs/scaling.md): the Config's strategy scales a local
HighThroughputExecutor's LocalProvider blocks out with the work and back in when idle, with
real pools and workers; blocks that keep failing fail the futures with the reason."""

import os

import pytest
from conftest import pid_alive, wait_until
from test_htex import htex_config

import pervade as parsl
from pervade import LocalProvider, python_app

T = 60


@python_app(executors=["htex"])
def gated(i, gate):
    """Holds its worker until the gate file exists (so that demand stays up while we look)."""
    import os
    import time

    while not os.path.exists(gate):
        time.sleep(0.02)
    return i * i


@python_app(executors=["htex"])
def square(i):
    return i * i


def scaling_config(tmp_path, strategy, provider, retries=0):
    config = htex_config(tmp_path, retries=retries, max_workers_per_node=1, provider=provider)
    return parsl.Config(executors=config.executors, run_dir=config.run_dir, retries=retries, strategy=strategy,
                        strategy_period=0.2, max_idletime=0.5)


def active(executor):
    return [b for b, s in executor.block_status().items() if not s.terminal]


@pytest.mark.parametrize("strategy", ["simple", "htex_auto_scale"])
def test_blocks_scale_out_with_work_and_back_in_when_idle(tmp_path, no_thread_leak, strategy):
    dfk = parsl.load(scaling_config(tmp_path, strategy, LocalProvider(init_blocks=0, min_blocks=0, max_blocks=3)))
    try:
        executor = dfk.executors["htex"]
        gate = str(tmp_path / "gate")
        futures = [gated(i, gate) for i in range(6)]
        assert wait_until(lambda: len(executor.pools()) == 3, T), f"not scaled out: {executor.block_status()}"
        assert len(executor.blocks) == 3, "never more than max_blocks"
        pools_seen = executor.pools()
        open(gate, "w").close()
        assert [f.result(timeout=T) for f in futures] == [i * i for i in range(6)]
        # Idle for max_idletime: every block is drained, then cancelled (min_blocks=0).
        assert wait_until(lambda: not active(executor) and not executor.pools(), T), executor.block_status()
        pools = [int(p["pool_id"].rsplit("-", 1)[1]) for p in pools_seen]
        jobs = [int(j) for j in executor.blocks.values()]  # LocalProvider: the block's bash
        assert wait_until(lambda: not any(pid_alive(p) for p in pools + jobs), T), "retired blocks left processes"
        states = {s.state for s in executor.block_status().values()}
        assert states <= {parsl.providers.JobState.COMPLETED, parsl.providers.JobState.CANCELLED}, states
        # New work scales out again from nothing.
        assert square(7).result(timeout=T) == 49
        assert len(executor.blocks) >= 4
        jobs = [int(j) for j in executor.blocks.values()]
    finally:
        dfk.cleanup()
    assert wait_until(lambda: not any(pid_alive(p) for p in jobs), T), "blocks left at cleanup"


@pytest.mark.parametrize("retries", [0, 2])
def test_failing_blocks_fail_the_futures_with_the_reason(tmp_path, no_thread_leak, retries):
    provider = LocalProvider(init_blocks=1, max_blocks=2, worker_init="echo scratch is not mounted >&2; exit 3")
    dfk = parsl.load(scaling_config(tmp_path, "simple", provider, retries=retries))
    try:
        future = square(3)
        with pytest.raises(parsl.BadStateException) as info:
            future.result(timeout=T)
        assert isinstance(info.value, parsl.ExecutorError)
        text = str(info.value)
        assert "Executor htex failed due to" in text
        assert "exit code 3" in text and "scratch is not mounted" in text, text
        with pytest.raises(parsl.BadStateException):
            square(4).result(timeout=T)  # later tasks fail at once
        executor = dfk.executors["htex"]
        assert executor.bad_state_is_set and "exit code 3" in str(executor.executor_exception)
        assert len(executor.blocks) == 3, "no endless resubmission"
        assert all(s.terminal for s in executor.block_status().values())
    finally:
        dfk.cleanup()


def test_bad_scaling_options_are_configuration_errors():
    with pytest.raises(parsl.ConfigurationError):
        parsl.Config(strategy="greedy")
    with pytest.raises(parsl.ConfigurationError):
        parsl.Config(strategy_period=0)
    with pytest.raises(parsl.ConfigurationError):
        parsl.Config(max_idletime=-1)
    assert parsl.Config(strategy=None).strategy == "none"
