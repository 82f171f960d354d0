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
    assert wait_until(lambda: slurm.job_state(job) == "CANCELLED", T), slurm.job_state(job)
    assert wait_until(lambda: not pool_pids(slurm), T), pool_pids(slurm)


def test_a_wrong_partition_fails_the_executor_with_sbatchs_message(slurm, tmp_path, no_thread_leak):
    executor = slurm_htex(slurm)
    executor.provider = parsl.SlurmProvider(partition="no-such-partition", cmd_timeout=30)
    with pytest.raises(ParslError, match="(?i)sbatch: error: .*invalid partition"):
        parsl.load(parsl.Config(executors=[executor], run_dir=str(tmp_path / "runinfo")))
    parsl.clear()
    assert not slurm.active_jobs()
