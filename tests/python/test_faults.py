"""Failures are fast and named (issue 14): a worker interpreter that cannot start, a pool killed
with SIGKILL, a block whose process is gone, an executor that can never start a block. Real
interchange, pools and workers; every check counts or reads messages, none measures time."""

import logging
import os
import signal
import subprocess

import pytest
from conftest import own_processes, pid_alive, wait_until
from test_htex import htex_config, sleep_then

import pervade as parsl
from pervade import HighThroughputExecutor, LocalProvider, python_app

T = 60


@python_app(executors=["htex"])
def square(i):
    return i * i


def python_without_pervade():
    """The system interpreter, when it has no pervade (the tests' venv has it)."""
    python = "/usr/bin/python3"
    if not os.access(python, os.X_OK) or subprocess.run([python, "-c", "import pervade"],
                                                         capture_output=True).returncode == 0:
        pytest.skip("needs an interpreter without pervade at /usr/bin/python3")
    return python


def pool_pids():
    """This session's pervade-pool processes (not the block shells that started them)."""
    pids = []
    for pid in own_processes(b"pervade-pool"):
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            if f.read().split(b"\0")[0].endswith(b"pervade-pool"):
                pids.append(pid)
    return pids


def task_running_on_the_only_pool(executor, tmp_path):
    """(future, pool pid) of a 600 s task that a worker of the executor's one pool has started."""
    assert wait_until(lambda: len(executor.pools()) == 1, T)
    pidfile = str(tmp_path / "worker.pid")
    future = sleep_then(600, "never", pidfile=pidfile)
    assert wait_until(lambda: os.path.exists(pidfile), T)
    [pool] = pool_pids()
    return future, pool


@pytest.mark.parametrize("interpreter", ["missing", "without pervade"])
def test_a_worker_interpreter_that_cannot_start_fails_tasks_at_once_and_stops_the_blocks(
        tmp_path, no_thread_leak, interpreter):
    if interpreter == "missing":
        python, said = str(tmp_path / "no-such-python"), "No such file or directory"
    else:
        python, said = python_without_pervade(), "No module named 'pervade'"
    config = htex_config(tmp_path, heartbeat_threshold=120, python=python,
                         provider=LocalProvider(init_blocks=1, max_blocks=1))
    dfk = parsl.load(parsl.Config(executors=config.executors, run_dir=config.run_dir, strategy="simple",
                                  strategy_period=0.2))
    executor = dfk.executors["htex"]
    try:
        error = square(3).exception(timeout=T)
        # Failed by the pool's report, before any replacement block: not after heartbeat_threshold.
        assert isinstance(error, parsl.ManagerLost), repr(error)
        assert f"'{python}'" in str(error) and said in str(error), str(error)
        assert len(executor.blocks) == 1, "the first task failed only after a replacement block"
        # More work starts more blocks, each of which fails the same way and counts as failed:
        # three in a row fail the executor, and no more start.
        for future in [square(i) for i in range(5)]:
            error = future.exception(timeout=T)
            assert isinstance(error, (parsl.ManagerLost, parsl.BadStateException)), repr(error)
            assert said in str(error), str(error)
        assert wait_until(lambda: executor.bad_state_is_set, T), executor.block_status()
        assert said in str(executor.executor_exception)
        assert len(executor.blocks) == 3, executor.block_status()
        assert executor.pools() == [], "a pool that reported FAILED is not listed"
        with pytest.raises(parsl.BadStateException):
            square(4).result(timeout=T)
    finally:
        dfk.cleanup()


@pytest.mark.parametrize("same_host_ipc", [True, False], ids=["unix-socket", "tcp"])
def test_a_pool_killed_with_sigkill_fails_its_tasks_long_before_the_heartbeat_threshold(
        tmp_path, no_thread_leak, same_host_ipc):
    # heartbeat_threshold 1000 s: only the closed connection can fail the task within T.
    dfk = parsl.load(htex_config(tmp_path, heartbeat_period=30, heartbeat_threshold=1000,
                                 same_host_ipc=same_host_ipc))
    executor = dfk.executors["htex"]
    try:
        future, pool = task_running_on_the_only_pool(executor, tmp_path)
        os.kill(pool, signal.SIGKILL)
        error = future.exception(timeout=T)
        assert isinstance(error, parsl.ManagerLost), repr(error)
        assert "closed its connection" in str(error), str(error)
    finally:
        dfk.cleanup()


def test_a_block_whose_process_ended_loses_its_pools_at_once(tmp_path, no_thread_leak):
    """The pool is stopped (SIGSTOP: its connection stays open, it sends nothing) and its block's
    process is killed: the provider sees the block end, and the pool is lost then."""
    config = htex_config(tmp_path, heartbeat_period=30, heartbeat_threshold=1000)
    dfk = parsl.load(parsl.Config(executors=config.executors, run_dir=config.run_dir, strategy="simple",
                                  strategy_period=0.2))
    executor = dfk.executors["htex"]
    pool = 0
    try:
        future, pool = task_running_on_the_only_pool(executor, tmp_path)
        os.kill(pool, signal.SIGSTOP)
        [job] = executor.blocks.values()  # LocalProvider: the block's bash (the strategy replaces it)
        os.kill(int(job), signal.SIGKILL)
        error = future.exception(timeout=T)
        assert isinstance(error, parsl.ManagerLost), repr(error)
        assert "the provider reports the block" in str(error), str(error)
    finally:
        if pool and pid_alive(pool):
            os.kill(pool, signal.SIGKILL)
        dfk.cleanup()


def test_no_initial_block_and_none_allowed_waits_for_blocks_started_by_hand(tmp_path, caplog, no_thread_leak):
    # Parsl's pattern: load with no block, start one by hand later. Allowed, with a warning.
    provider = LocalProvider(init_blocks=0, min_blocks=0, max_blocks=0)
    executor = HighThroughputExecutor(label="htex", max_workers_per_node=1, provider=provider)
    with caplog.at_level(logging.WARNING, logger="pervade"):
        dfk = parsl.load(parsl.Config(executors=[executor], run_dir=str(tmp_path / "runinfo"), strategy_period=0.05))
    try:
        warned = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
        assert any("init_blocks=0" in m and "max_blocks=0" in m for m in warned), warned
        future = square(4)
        assert not future.done() and executor.blocks == {}
        provider.max_blocks = 1
        assert executor.scale_out_facade(1) == ["0"]
        assert future.result(timeout=T) == 16
    finally:
        dfk.cleanup()
