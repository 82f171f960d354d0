"""SlurmProvider against the real Slurm test cluster (tests/python/cluster/slurm.py): blocks
are real sbatch jobs whose pools srun starts on two nodes, states come from squeue (the cluster
has no accounting: sacct fails and the provider falls back), cleanup cancels with scancel, and
a wrong partition fails the executor with sbatch's own message."""

import pytest
from conftest import wait_until
from test_hosts import where
from test_slurm_cluster import pool_pids

import pervade as parsl
from pervade.errors import ParslError
from pervade.providers import JobState

T = 60


def slurm_htex(cluster, **provider_kw):
    provider = parsl.SlurmProvider(partition=cluster.partition, cmd_timeout=30, **provider_kw)
    return parsl.HighThroughputExecutor(label="htex", address=cluster.interchange_address, max_workers_per_node=1,
                                        heartbeat_period=0.5, heartbeat_threshold=3, short_task_prefetch=0,
                                        provider=provider)


def test_htex_blocks_are_slurm_jobs(slurm, tmp_path, no_thread_leak):
    executor = slurm_htex(slurm, nodes_per_block=2, init_blocks=1, launcher=parsl.SrunLauncher(),
                          walltime="00:10:00", worker_init="export PERVADE_TEST_INIT=1")
    dfk = parsl.load(parsl.Config(executors=[executor], run_dir=str(tmp_path / "runinfo")))
    try:
        assert wait_until(lambda: len(executor.pools()) == 2, T), (executor.block_status(), executor.refusals())
        hostnames = sorted(p["hostname"] for p in executor.pools())
        assert len(set(hostnames)) == 2 and set(hostnames) <= set(slurm.node_names)
        [(block, job)] = executor.blocks.items()
        assert slurm.job_state(job) == "RUNNING"
        assert executor.block_status()[block].state == JobState.RUNNING

        barrier = tmp_path / "barrier"
        barrier.mkdir()
        ran = sorted(f.result(timeout=T) for f in [where(str(barrier), 2) for _ in range(2)])
        nodes = {n.name: n for n in slurm.nodes}
        assert ran == sorted((nodes[h].inode, nodes[h].address, h) for h in hostnames)
    finally:
        dfk.cleanup()
        parsl.clear()
    # Cleanup tells the pools to stop, then scancels the block: whichever ends the job first.
    assert wait_until(lambda: slurm.job_state(job) in ("CANCELLED", "COMPLETED"), T), slurm.job_state(job)
    assert wait_until(lambda: not pool_pids(slurm), T), pool_pids(slurm)


def test_a_wrong_partition_fails_the_executor_with_sbatchs_message(slurm, tmp_path, no_thread_leak):
    executor = slurm_htex(slurm)
    executor.provider = parsl.SlurmProvider(partition="no-such-partition", cmd_timeout=30)
    with pytest.raises(ParslError, match="(?i)sbatch: error: .*invalid partition"):
        parsl.load(parsl.Config(executors=[executor], run_dir=str(tmp_path / "runinfo")))
    parsl.clear()
    assert not slurm.active_jobs()


@parsl.python_app(executors=["htex"])
def wait_for_file(path, i):
    import os
    import socket
    import time
    while not os.path.exists(path):  # the test releases the tasks once every block is up
        time.sleep(0.05)
    return i, socket.gethostname()


def test_blocks_scale_out_and_back_in_as_slurm_jobs(slurm, tmp_path, no_thread_leak):
    # No block at the start; outstanding work makes the strategy submit sbatch jobs up to
    # max_blocks (one exclusive node each), and idle blocks are drained and scancelled.
    executor = slurm_htex(slurm, nodes_per_block=1, init_blocks=0, min_blocks=0, max_blocks=3,
                          walltime="00:10:00")
    config = parsl.Config(executors=[executor], run_dir=str(tmp_path / "runinfo"), strategy="htex_auto_scale",
                          strategy_period=0.2, max_idletime=1)
    dfk = parsl.load(config)
    try:
        assert not slurm.active_jobs()
        release = tmp_path / "release"
        futures = [wait_for_file(str(release), i) for i in range(6)]
        assert wait_until(lambda: len(executor.pools()) == 3, T), (executor.block_status(), slurm.active_jobs())
        assert len(slurm.active_jobs()) == 3
        assert sorted(p["hostname"] for p in executor.pools()) == sorted(slurm.node_names)
        jobs = list(executor.blocks.values())
        release.touch()
        results = [f.result(timeout=T) for f in futures]
        assert [i for i, _ in results] == list(range(6))
        assert {h for _, h in results} <= set(slurm.node_names)
        # Back in: every block's job ends (cancelled by the strategy), no pool is left.
        assert wait_until(lambda: not slurm.active_jobs(), T), slurm.active_jobs()
        assert wait_until(lambda: executor.pools() == [], T), executor.pools()
        assert all(slurm.job_state(j) in ("CANCELLED", "COMPLETED") for j in jobs), [slurm.job_state(j) for j in jobs]
        assert all(s.terminal for s in executor.block_status().values())
        assert wait_for_file(str(release), 99).result(timeout=T)[0] == 99, "scales out again for new work"
    finally:
        dfk.cleanup()
        parsl.clear()
    assert wait_until(lambda: not pool_pids(slurm), T), pool_pids(slurm)
