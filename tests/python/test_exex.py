"""One pool per block over MPI (pool_mode="mpi", pervade-exex-pool; docs/mpi.md, "One pool per
block"): rank 0 alone registers with the interchange, for the workers of every rank; the other
ranks run their node's workers and exchange tasks and results with rank 0 over MPI (Debian's
MPICH). On this host: a block of two ranks started by mpiexec. On the Slurm test cluster: a
block of three nodes started by srun, where tasks land on every node (host and network
namespace inode), a killed rank's tasks fail with WorkerLost while the other nodes go on, and
after cleanup() no rank, worker or MPI process is left on any node."""

import os
import shutil
import signal

import pytest
from conftest import own_processes, wait_until
from test_mpi_cluster import pids_running

import pervade as parsl
from pervade.errors import ConfigurationError, WorkerLost

T = 60

pytestmark = pytest.mark.skipif(shutil.which("mpiexec") is None,
                                reason="SKIPPED LOUDLY: MPICH is not installed (make deps installs it)")


def exex_pids() -> list:
    return own_processes(b"pervade-exex-pool", b"pervade.worker", b"hydra_pmi_proxy", b"mpiexec")


@parsl.python_app(executors=["exex"])
def gated(gate, timeout=T):
    """Says where it runs once all the tasks of the gate started (each worker holds one)."""
    import os
    import socket
    import time
    open(os.path.join(gate, f"{socket.gethostname()}-{os.getpid()}"), "w").close()
    deadline = time.monotonic() + timeout
    while not os.path.exists(os.path.join(gate, "go")) and time.monotonic() < deadline:
        time.sleep(0.05)
    return socket.gethostname(), os.stat("/proc/self/ns/net").st_ino, os.environ.get("PMI_RANK"), os.getpid()


@parsl.python_app(executors=["exex"])
def double(x):
    return 2 * x


def run_gated(gate, count):
    """`count` gated tasks; returns their futures once all have started."""
    gate.mkdir()
    futures = [gated(str(gate)) for _ in range(count)]
    assert wait_until(lambda: len(list(gate.iterdir())) == count, T), sorted(p.name for p in gate.iterdir())
    return futures


def test_pool_mode_is_checked():
    with pytest.raises(ConfigurationError, match="pool_mode must be"):
        parsl.HighThroughputExecutor(pool_mode="rank")
    with pytest.raises(ConfigurationError, match="SimpleLauncher starts no MPI job"):
        parsl.HighThroughputExecutor(pool_mode="mpi", provider=parsl.LocalProvider(launcher=parsl.SimpleLauncher()))
    with pytest.raises(ConfigurationError, match="cannot be combined with MPI mode"):
        parsl.HighThroughputExecutor(enable_mpi_mode=True, pool_mode="mpi",
                                     provider=parsl.LocalProvider(launcher=parsl.SimpleLauncher()))
    assert parsl.HighThroughputExecutor().pool_mode == "node"


def test_one_pool_for_two_ranks_on_this_host(tmp_path, monkeypatch):
    monkeypatch.setenv("PERVADE_SCRIPT_DIR", str(tmp_path))  # MpiExecLauncher's host file
    executor = parsl.HighThroughputExecutor(
        label="exex", pool_mode="mpi", max_workers_per_node=2, heartbeat_period=0.5, heartbeat_threshold=5,
        provider=parsl.LocalProvider(nodes_per_block=2, init_blocks=1, launcher=parsl.MpiExecLauncher()))
    dfk = parsl.load(parsl.Config(executors=[executor], run_dir=str(tmp_path / "runinfo")))
    try:
        assert wait_until(lambda: len(executor.pools()) == 1, T), (executor.block_status(), executor.refusals())
        assert executor.pools()[0]["worker_count"] == 4  # two ranks of two workers
        futures = run_gated(tmp_path / "gate", 4)
        (tmp_path / "gate" / "go").touch()
        placed = [f.result(timeout=T) for f in futures]
        assert sorted(rank for _, _, rank, _ in placed) == ["0", "0", "1", "1"]  # both ranks' workers ran one
        assert [f.result(timeout=T) for f in [double(i) for i in range(200)]] == [2 * i for i in range(200)]
        # Cancelled while they run: rank 0 has every worker killed, on its rank, and started again.
        running = run_gated(tmp_path / "cancelled", 4)
        assert all(f.cancel() for f in running)
        futures = run_gated(tmp_path / "again", 4)
        (tmp_path / "again" / "go").touch()
        assert sorted(f.result(timeout=T)[2] for f in futures) == ["0", "0", "1", "1"]
        # A remote worker killed while it runs a task: WorkerLost, and its rank starts another.
        gate = tmp_path / "killed"
        futures = run_gated(gate, 4)
        pids = [int(p.name.rsplit("-", 1)[1]) for p in gate.iterdir()]
        victim = next(pid for pid in pids if b"\0PMI_RANK=1\0" in b"\0" + open(f"/proc/{pid}/environ", "rb").read())
        os.kill(victim, signal.SIGKILL)
        (gate / "go").touch()
        outcomes = []
        for f in futures:
            try:
                outcomes.append(f.result(timeout=T)[3])
            except WorkerLost as e:
                outcomes.append(str(e))
        lost = [o for o in outcomes if isinstance(o, str)]
        assert len(lost) == 1 and "rank 1" in lost[0] and "signal 9" in lost[0], outcomes
        futures = run_gated(tmp_path / "after", 4)
        (tmp_path / "after" / "go").touch()
        assert sorted(f.result(timeout=T)[2] for f in futures) == ["0", "0", "1", "1"]
    finally:
        dfk.cleanup()
        parsl.clear()
    assert wait_until(lambda: not exex_pids(), T), exex_pids()


def agent_pid(node):
    """The pervade-exex-pool rank running on `node` (a test cluster host)."""
    return next((pid for pid, argv in node.commands() if argv[0].endswith(b"/pervade-exex-pool")), None)


def left_on_nodes(cluster) -> list:
    """Ranks, workers and srun steps still on the cluster's nodes."""
    return pids_running(cluster, "pervade-exex-pool", "pervade.worker", "slurmstepd: [")


def test_a_block_of_three_nodes_over_mpi_on_the_slurm_cluster(slurm, tmp_path):
    """srun starts one rank per node; tasks land on every node; a killed rank's tasks fail with
    WorkerLost while the other nodes go on; cleanup() leaves nothing on any node."""
    executor = parsl.HighThroughputExecutor(
        label="exex", address=slurm.interchange_address, pool_mode="mpi", max_workers_per_node=2,
        heartbeat_period=0.5, heartbeat_threshold=3,
        provider=parsl.SlurmProvider(partition=slurm.partition, nodes_per_block=3, init_blocks=1, cmd_timeout=30,
                                     walltime="00:10:00", launcher=parsl.SrunLauncher(overrides="--mpi=pmi2")))
    dfk = parsl.load(parsl.Config(executors=[executor], run_dir=str(tmp_path / "runinfo")))
    try:
        assert wait_until(lambda: len(executor.pools()) == 1, T), (executor.block_status(), executor.refusals())
        pool = executor.pools()[0]
        assert pool["worker_count"] == 6  # one pool for the three nodes' workers
        inodes = {n.name: n.inode for n in slurm.nodes}
        futures = run_gated(tmp_path / "gate", 6)
        (tmp_path / "gate" / "go").touch()
        placed = [f.result(timeout=T) for f in futures]
        assert sorted(host for host, _, _, _ in placed) == sorted(slurm.node_names * 2)
        assert all(inodes[host] == inode for host, inode, _, _ in placed)  # run in that node's namespace

        # A rank other than 0 is killed while its two workers run tasks.
        victim = next(n for n in slurm.nodes if n.name != pool["hostname"])
        futures = run_gated(tmp_path / "gate2", 6)
        os.kill(agent_pid(victim), signal.SIGKILL)
        (tmp_path / "gate2" / "go").touch()
        lost, done = [], []
        for f in futures:
            try:
                done.append(f.result(timeout=T)[0])
            except WorkerLost as e:
                lost.append(str(e))
        assert len(lost) == 2 and all(victim.name in text for text in lost), lost
        assert sorted(done) == sorted(n for n in slurm.node_names * 2 if n != victim.name)
        # The other nodes go on.
        assert [f.result(timeout=T) for f in [double(i) for i in range(50)]] == [2 * i for i in range(50)]
    finally:
        dfk.cleanup()
        parsl.clear()
    assert wait_until(lambda: not slurm.active_jobs(), T), slurm.active_jobs()
    assert wait_until(lambda: not left_on_nodes(slurm), T), left_on_nodes(slurm)
