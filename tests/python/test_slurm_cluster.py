"""The Slurm test cluster itself (tests/python/cluster/slurm.py): real slurmctld and slurmd
daemons from Debian, nodes that are distinct hosts, sbatch/squeue/scancel and their errors."""

import os
import subprocess

import pytest
from conftest import wait_until
from test_hosts import host_htex, where
from test_htex import pool_tree_pids

import pervade as parsl

T = 60

# Each task of the step prints its node's hostname, network namespace inode and address.
WHO = 'echo "$(hostname) $(stat -L -c %i /proc/self/ns/net) $(hostname -I)"'


def sbatch(cluster, *args) -> str:
    return cluster.run(["sbatch", "--parsable", *args]).stdout.strip().split(";")[0]


def test_two_node_job_runs_on_two_hosts(slurm, tmp_path):
    gate = tmp_path / "gate"
    out = tmp_path / "who.out"
    script = tmp_path / "job.sh"
    # The job waits for the gate so the test sees it running in squeue before it ends.
    script.write_text(f"#!/bin/bash\nwhile [ ! -e {gate} ]; do sleep 0.1; done\n"
                      f"srun --ntasks-per-node=1 bash -c '{WHO}' > {out}\n")
    job = sbatch(slurm, "-N2", f"--output={tmp_path}/job.log", str(script))
    assert wait_until(lambda: slurm.job_state(job) == "RUNNING", T), slurm.job_state(job)
    squeue = slurm.run(["squeue", "-h", "-o", "%i %T %D %P"]).stdout.split("\n")
    assert f"{job} RUNNING 2 {slurm.partition}" in squeue
    gate.touch()
    assert wait_until(lambda: slurm.job_state(job) == "COMPLETED", T), slurm.job_state(job)

    rows = sorted(line.split() for line in out.read_text().splitlines())
    assert len(rows) == 2, rows
    by_name = {node.name: node for node in slurm.nodes}
    names = [r[0] for r in rows]
    assert len(set(names)) == 2 and set(names) <= set(by_name)
    for name, inode, address in rows:
        assert int(inode) == by_name[name].inode
        assert address == by_name[name].address
    assert int(rows[0][1]) != os.stat("/proc/self/ns/net").st_ino


def test_scancel_stops_a_running_job(slurm, tmp_path):
    started = tmp_path / "started"
    job = sbatch(slurm, "-N1", f"--output={tmp_path}/job.log",
                 f"--wrap=echo $$ > {started}.tmp && mv {started}.tmp {started} && exec sleep 600")
    assert wait_until(lambda: started.exists(), T), slurm.job_state(job)
    pid = int(started.read_text())
    assert slurm.job_state(job) == "RUNNING"
    slurm.run(["scancel", job])
    assert wait_until(lambda: slurm.job_state(job) == "CANCELLED", T), slurm.job_state(job)
    assert wait_until(lambda: not os.path.exists(f"/proc/{pid}") or open(f"/proc/{pid}/stat").read().split()[2] == "Z",
                      T), "the cancelled job's process still runs"


def test_wrong_partition_is_sbatch_error(slurm, tmp_path):
    done = slurm.run(["sbatch", "-p", "no-such-partition", "--wrap=true"], check=False)
    assert done.returncode != 0
    assert "invalid partition" in done.stderr.lower()
    assert not slurm.active_jobs()


def test_cluster_stops_without_leftovers(tmp_path):
    """A cluster of its own (one node): after stop() no daemon, job or namespace is left."""
    from cluster.netns import netns_list
    from cluster.slurm import SlurmCluster, SlurmUnavailable

    cluster = SlurmCluster(str(tmp_path / "slurm"), nodes=1)
    try:
        cluster.start()
    except SlurmUnavailable as e:
        pytest.skip(f"SKIPPED LOUDLY: no Slurm test cluster on this machine: {e}")
    own = {h.netns for h in cluster.network.hosts}  # other sessions on the machine add and remove theirs
    try:
        job = cluster.run(["sbatch", "--parsable", "--wrap=exec sleep 600"]).stdout.strip()
        assert wait_until(lambda: cluster.job_state(job) == "RUNNING", T)
        assert cluster.leftover_pids()
    finally:
        cluster.stop()
    assert wait_until(lambda: not cluster.leftover_pids(), T), cluster.leftover_pids()
    assert not own & set(netns_list())
    with pytest.raises(subprocess.CalledProcessError):
        cluster.run(["squeue"], timeout=30)


def pool_pids(cluster) -> list:
    """pervade-pool and worker processes on the cluster's nodes."""
    on_nodes = {pid for node in cluster.nodes for pid in node.pids()}
    return [pid for pid in pool_tree_pids() if pid in on_nodes]


def test_htex_pools_as_a_slurm_job(slurm, tmp_path, no_thread_leak):
    """What SlurmProvider does, by hand: a 2-node job runs the pool command on each node with
    srun; the pools reach the interchange at cluster.interchange_address; scancel ends them."""
    dfk = parsl.load(parsl.Config(executors=[host_htex("htex", slurm.interchange_address, max_workers_per_node=1)],
                                  run_dir=str(tmp_path / "runinfo")))
    try:
        executor = dfk.executors["htex"]
        script = tmp_path / "block.sh"
        script.write_text(f"#!/bin/bash\nsrun --ntasks-per-node=1 {executor.pool_command('0')}\n")
        job = sbatch(slurm, "-N2", f"--output={tmp_path}/block.log", str(script))
        assert wait_until(lambda: len(executor.pools()) == 2, T), (slurm.job_state(job), executor.refusals())
        hostnames = sorted(p["hostname"] for p in executor.pools())
        assert len(set(hostnames)) == 2 and set(hostnames) <= set(slurm.node_names)
        barrier = tmp_path / "barrier"
        barrier.mkdir()
        ran = sorted(f.result(timeout=T) for f in [where(str(barrier), 2) for _ in range(2)])
        nodes = {n.name: n for n in slurm.nodes}
        assert ran == sorted((nodes[h].inode, nodes[h].address, h) for h in hostnames)
        slurm.run(["scancel", job])
        assert wait_until(lambda: slurm.job_state(job) == "CANCELLED", T), slurm.job_state(job)
        assert wait_until(lambda: not executor.pools(), T), executor.pools()
    finally:
        dfk.cleanup()
        parsl.clear()
    assert wait_until(lambda: not pool_pids(slurm), T), pool_pids(slurm)
