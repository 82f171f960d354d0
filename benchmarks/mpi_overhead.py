"""An MPI app's overhead against a bare srun of the same program (docs/mpi.md, BENCHMARKS.md).

Starts the Slurm test cluster (tests/python/cluster; root, network namespaces), builds an MPI
hello (MPI_Init, an allreduce, MPI_Finalize) with MPICH's mpicc, loads an MPIExecutor whose one
block holds the cluster's nodes, and then alternates, `--runs` times each:
  - app:  a bash app `$PARSL_MPI_PREFIX hello` with {"num_nodes": 2, "ranks_per_node": 2}, timed
          from the call to its result();
  - bare: `srun --jobid <the block's job> --overlap` of the same program on the same two nodes,
          run in the block's first node (where the pool's workers run theirs), timed around the
          command (nsenter into the node's namespace included).
Prints the medians and the overhead (app - bare).

    python benchmarks/mpi_overhead.py [--runs 15] [--nodes 3]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "tests", "python"))

HELLO = r"""
#include <mpi.h>
#include <stdio.h>
int main(int argc, char** argv) {
  int rank, sum = 0;
  MPI_Init(&argc, &argv);
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  MPI_Allreduce(&rank, &sum, 1, MPI_INT, MPI_SUM, MPI_COMM_WORLD);
  if (rank == 0) printf("sum %d\n", sum);
  MPI_Finalize();
  return 0;
}
"""


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=15)
    parser.add_argument("--nodes", type=int, default=3)
    args = parser.parse_args()

    import pervade as parsl
    from cluster.slurm import SlurmCluster

    work = tempfile.mkdtemp(prefix="pervade-mpi-bench-")
    with open(os.path.join(work, "hello.c"), "w") as f:
        f.write(HELLO)
    hello = os.path.join(work, "hello")
    subprocess.run(["mpicc", "-O2", "-o", hello, hello + ".c"], check=True)
    cluster = SlurmCluster(os.path.join(work, "slurm"), nodes=args.nodes).start()
    os.environ["SLURM_CONF"] = cluster.conf
    try:
        executor = parsl.MPIExecutor(
            label="mpi", address=cluster.interchange_address, max_workers_per_block=2, mpi_launcher="srun",
            provider=parsl.SlurmProvider(partition=cluster.partition, nodes_per_block=args.nodes, cmd_timeout=30,
                                         walltime="00:30:00", launcher=parsl.SimpleLauncher()))

        @parsl.bash_app(executors=["mpi"])
        def app(stdout=None, parsl_resource_specification=None):
            return f'echo "$PARSL_MPI_NODELIST"; $PARSL_MPI_PREFIX {hello}'

        spec = {"num_nodes": 2, "ranks_per_node": 2, "launcher_options": "--mpi=pmi2"}
        with parsl.load(parsl.Config(executors=[executor], run_dir=os.path.join(work, "runinfo"))):
            while not executor.pools():
                time.sleep(0.1)
            [job] = executor.blocks.values()
            out = os.path.join(work, "first.out")
            app(stdout=out, parsl_resource_specification=spec).result()  # warm: worker, function, nodes
            nodes = open(out).readline().strip()
            bare_cmd = ["srun", f"--jobid={job}", "--overlap", "--mpi=pmi2", "--ntasks", "4", "--ntasks-per-node",
                        "2", "--nodelist", nodes, "--nodes", "2", hello]
            app_times, bare_times = [], []
            for i in range(args.runs):
                start = time.perf_counter()
                assert app(stdout=os.path.join(work, f"app{i}.out"), parsl_resource_specification=spec).result() == 0
                app_times.append(time.perf_counter() - start)
                start = time.perf_counter()
                subprocess.run(cluster.nodes[0].argv(bare_cmd, hostname=cluster.node_names[0]), check=True,
                               capture_output=True)
                bare_times.append(time.perf_counter() - start)
        app_ms, bare_ms = statistics.median(app_times) * 1e3, statistics.median(bare_times) * 1e3
        print(f"nodes {nodes}, {args.runs} runs each, alternating")
        print(f"bare srun   median {bare_ms:7.1f} ms  (min {min(bare_times) * 1e3:.1f})")
        print(f"MPI app     median {app_ms:7.1f} ms  (min {min(app_times) * 1e3:.1f})")
        print(f"overhead    {app_ms - bare_ms:7.1f} ms  ({(app_ms - bare_ms) / bare_ms * 100:.1f}% of the bare run)")
    finally:
        cluster.stop()
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
