"""The Slurm test cluster itself (tests/python/cluster/slurm.py): real slurmctld and slurmd
daemons from Debian, nodes that are distinct hosts, sbatch/squeue/scancel and their errors."""

import os
import subprocess

from conftest import wait_until

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
    import pytest

    before = netns_list()
    cluster = SlurmCluster(str(tmp_path / "slurm"), nodes=1)
    try:
        cluster.start()
    except SlurmUnavailable as e:
        pytest.skip(f"SKIPPED LOUDLY: no Slurm test cluster on this machine: {e}")
    try:
        job = cluster.run(["sbatch", "--parsable", "--wrap=exec sleep 600"]).stdout.strip()
        assert wait_until(lambda: cluster.job_state(job) == "RUNNING", T)
        assert cluster.leftover_pids()
    finally:
        cluster.stop()
    assert wait_until(lambda: not cluster.leftover_pids(), T), cluster.leftover_pids()
    assert netns_list() == before
    with pytest.raises(subprocess.CalledProcessError):
        cluster.run(["squeue"], timeout=30)
