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
    return socket.gethostname(), os.stat("/proc/self/ns/net").st_ino, os.environ.get("PMI_RANK")


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


def test_one_pool_for_two_ranks_on_this_host(tmp_path):
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
        assert sorted(rank for _, _, rank in placed) == ["0", "0", "1", "1"]  # both ranks' workers ran one
        assert [f.result(timeout=T) for f in [double(i) for i in range(200)]] == [2 * i for i in range(200)]
    finally:
        dfk.cleanup()
        parsl.clear()
    assert wait_until(lambda: not exex_pids(), T), exex_pids()
