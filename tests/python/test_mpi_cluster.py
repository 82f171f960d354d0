"""MPI apps on real MPI (Debian's MPICH, mpi4py) on the Slurm test cluster (docs/mpi.md): one
MPIExecutor block of the cluster's three nodes (2 cores each), its pool on the first node.
A C program built here and an mpi4py one run as bash apps, launched with srun and with mpiexec;
each rank reports its host and network namespace inode, which must be those of the nodes the
task was given. Two MPI tasks run at once on disjoint nodes, MPI and single-core tasks mix, a
task asking for more nodes than the block has fails, and after cleanup() no pool, rank or MPI
process is left on any host."""

import shutil
import subprocess
import sys

import pytest
from conftest import wait_until
from test_slurm_cluster import pool_pids

import pervade as parsl
from pervade.executors.errors import InvalidResourceSpecification

T = 90

# Each rank prints: rank, size, host, network namespace inode, and the sum of all ranks (an
# allreduce: the ranks really talk to each other).
HELLO_C = r"""
#include <mpi.h>
#include <stdio.h>
#include <sys/stat.h>
#include <unistd.h>
int main(int argc, char** argv) {
  MPI_Init(&argc, &argv);
  int rank, size, sum = 0;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  MPI_Comm_size(MPI_COMM_WORLD, &size);
  MPI_Allreduce(&rank, &sum, 1, MPI_INT, MPI_SUM, MPI_COMM_WORLD);
  char host[256];
  gethostname(host, sizeof host);
  struct stat ns;
  stat("/proc/self/ns/net", &ns);
  printf("rank %d %d %s %lu %d\n", rank, size, host, (unsigned long)ns.st_ino, sum);
  MPI_Finalize();
  return 0;
}
"""

HELLO_PY = """
import os, socket
from mpi4py import MPI
comm = MPI.COMM_WORLD
total = comm.allreduce(comm.Get_rank())
print("rank", comm.Get_rank(), comm.Get_size(), socket.gethostname(), os.stat("/proc/self/ns/net").st_ino, total,
      flush=True)
"""


@pytest.fixture(scope="module")
def programs(tmp_path_factory):
    if shutil.which("mpicc") is None or shutil.which("mpiexec") is None:
        pytest.skip("SKIPPED LOUDLY: MPICH is not installed (make deps installs mpich and libmpich-dev)")
    d = tmp_path_factory.mktemp("mpi")
    (d / "hello.c").write_text(HELLO_C)
    subprocess.run(["mpicc", "-O1", "-o", str(d / "hello"), str(d / "hello.c")], check=True)
    (d / "hello.py").write_text(HELLO_PY)
    return d


@pytest.fixture
def mpi_block(slurm, programs, tmp_path):
    """A loaded MPIExecutor (srun) whose one block is all three nodes; yields its executor."""
    executor = parsl.MPIExecutor(
        label="mpi", address=slurm.interchange_address, max_workers_per_block=4, mpi_launcher="srun",
        heartbeat_period=0.5, heartbeat_threshold=5,
        provider=parsl.SlurmProvider(partition=slurm.partition, nodes_per_block=3, init_blocks=1, cmd_timeout=30,
                                     walltime="00:10:00", launcher=parsl.SimpleLauncher()))
    dfk = parsl.load(parsl.Config(executors=[executor], run_dir=str(tmp_path / "runinfo")))
    try:
        assert wait_until(lambda: len(executor.pools()) == 1, T), (executor.block_status(), executor.refusals())
        yield executor
    finally:
        dfk.cleanup()
        parsl.clear()
    assert wait_until(lambda: not slurm.active_jobs(), T), slurm.active_jobs()
    assert wait_until(lambda: not pool_pids(slurm) and not mpi_pids(slurm, programs), T), \
        (pool_pids(slurm), mpi_pids(slurm, programs))


def pids_running(cluster, *marks) -> list:
    """Processes on the cluster's nodes whose command line holds one of `marks`."""
    return [pid for node in cluster.nodes for pid, argv in node.commands()
            if any(m.encode() in b" ".join(argv) for m in marks)]


def sleeping(cluster, seconds: str) -> list:
    """(node, pid) of the `sleep <seconds>` processes (ranks) on the cluster's nodes."""
    return [(node.name, pid) for node in cluster.nodes for pid, argv in node.commands()
            if argv[0].endswith(b"sleep") and argv[1:2] == [seconds.encode()]]


def mpi_pids(cluster, programs) -> list:
    """Ranks and MPI launcher processes left on the cluster's nodes."""
    return pids_running(cluster, str(programs), "hydra_pmi_proxy", "mpiexec")


@parsl.bash_app(executors=["mpi"])
def run_mpi(command, gate=None, parsl_resource_specification=None, stdout=None, stderr=None):
    wait = ""
    if gate:  # both tasks must have their nodes before either runs its program
        wait = f'touch {gate}/"$PARSL_MPI_NODELIST"; while [ ! -e {gate}/go ]; do sleep 0.05; done; '
    return f'echo "nodes $PARSL_MPI_NODELIST"; {wait}{command}'


@parsl.python_app(executors=["mpi"])
def single_core(i, parsl_resource_specification=None):
    import socket
    return i, socket.gethostname()


def ranks(path, cluster):
    """(nodes given, {host: ranks there}) from a run's output; checks what every rank printed."""
    lines = path.read_text().split("\n")
    nodes = lines[0].split()[1].split(",")
    rows = [line.split() for line in lines if line.startswith("rank ")]
    size = len(rows)
    inodes = {n.name: n.inode for n in cluster.nodes}
    per_host = {}
    for _, rank, n, host, inode, total in rows:
        assert int(n) == size and int(total) == size * (size - 1) // 2, rows
        assert int(inode) == inodes[host], (host, inode)  # the rank ran in that node's namespace
        per_host[host] = per_host.get(host, 0) + 1
    assert sorted(int(r[1]) for r in rows) == list(range(size))
    return nodes, per_host


def test_mpi_programs_run_on_exactly_the_nodes_they_were_given(mpi_block, slurm, programs, tmp_path):
    hello, hello_py = programs / "hello", programs / "hello.py"
    srun = {"launcher_options": "--mpi=pmi2"}
    out = {name: tmp_path / f"{name}.out" for name in ("c_srun", "c_mpiexec", "py_srun")}
    futures = [
        run_mpi(f"$PARSL_MPI_PREFIX {hello}", stdout=str(out["c_srun"]),
                parsl_resource_specification={"num_nodes": 2, "ranks_per_node": 2, **srun}),
        # MPICH's mpiexec (Hydra starts its proxies with srun inside the job); -iface: the node
        # names do not resolve in the test cluster, so the ranks meet on the nodes' addresses.
        run_mpi(f"$PARSL_MPIEXEC_PREFIX {hello}", stdout=str(out["c_mpiexec"]),
                parsl_resource_specification={"num_nodes": 3, "num_ranks": 3, "launcher_options": "-iface eth0"}),
        run_mpi(f"$PARSL_SRUN_PREFIX {sys.executable} {hello_py}", stdout=str(out["py_srun"]),
                parsl_resource_specification={"num_nodes": 1, "ranks_per_node": 2, **srun}),
    ]
    for f in futures:
        assert f.result(timeout=T) == 0
    nodes, per_host = ranks(out["c_srun"], slurm)
    assert len(nodes) == 2 and per_host == {n: 2 for n in nodes}
    nodes, per_host = ranks(out["c_mpiexec"], slurm)
    assert sorted(nodes) == slurm.node_names and per_host == {n: 1 for n in nodes}
    nodes, per_host = ranks(out["py_srun"], slurm)
    assert len(nodes) == 1 and per_host == {nodes[0]: 2}


def test_two_mpi_tasks_run_side_by_side_on_disjoint_nodes_among_single_core_tasks(mpi_block, slurm, programs,
                                                                                   tmp_path):
    gate = tmp_path / "gate"
    gate.mkdir()
    spec = {"num_nodes": 1, "ranks_per_node": 2, "launcher_options": "--mpi=pmi2"}
    outs = [tmp_path / "a.out", tmp_path / "b.out"]
    mpi = [run_mpi(f"$PARSL_MPI_PREFIX {programs / 'hello'}", gate=str(gate), stdout=str(o),
                   parsl_resource_specification=spec) for o in outs]
    small = [single_core(i, parsl_resource_specification={"priority": 1}) for i in range(20)]
    assert wait_until(lambda: len(list(gate.iterdir())) == 2, T), list(gate.iterdir())
    (gate / "go").touch()
    assert [f.result(timeout=T)[0] for f in small] == list(range(20))
    assert all(f.result(timeout=T) == 0 for f in mpi)
    (nodes_a, per_a), (nodes_b, per_b) = ranks(outs[0], slurm), ranks(outs[1], slurm)
    assert len(nodes_a) == len(nodes_b) == 1 and nodes_a != nodes_b
    assert per_a == {nodes_a[0]: 2} and per_b == {nodes_b[0]: 2}
    # More nodes than the block has: at once, naming the key.
    with pytest.raises(InvalidResourceSpecification) as e:
        run_mpi("true", parsl_resource_specification={"num_nodes": 4}).result(timeout=T)
    assert e.value.invalid_keys == {"num_nodes"} and "the block has 3" in str(e.value)
    # More ranks per node than Slurm says a node has cores.
    with pytest.raises(InvalidResourceSpecification) as e:
        run_mpi("true", parsl_resource_specification={"num_nodes": 1, "ranks_per_node": 3}).result(timeout=T)
    assert e.value.invalid_keys == {"ranks_per_node"}
    # Cancelled while its ranks run: they stop on every node (the pool kills the launcher, srun
    # ends the step), and the nodes are free again.
    seconds = str(hash(str(tmp_path)) % 1000 + 1000)  # marks this test's ranks
    running = run_mpi(f"$PARSL_MPI_PREFIX sleep {seconds}", parsl_resource_specification={**spec, "num_nodes": 3})
    assert wait_until(lambda: len(sleeping(slurm, seconds)) == 6, T), sleeping(slurm, seconds)
    assert running.cancel() is True
    assert wait_until(lambda: not pids_running(slurm, f"sleep {seconds}"), T), pids_running(slurm, f"sleep {seconds}")
    assert run_mpi("true", parsl_resource_specification={**spec, "num_nodes": 3}).result(timeout=T) == 0
