"""No-op throughput of one pool per block over MPI (pool_mode="mpi", pervade-exex-pool) against
ordinary pools, one per node (pool_mode="node"), on the same nodes (docs/mpi.md, BENCHMARKS.md).

Starts the Slurm test cluster (tests/python/cluster; root, network namespaces) and then
alternates the two modes, `--repeats` times each: a HighThroughputExecutor whose one block is all
the cluster's nodes (srun, one pool or one rank per node, `--workers` workers per node) is loaded,
`--warmup` no-op tasks start every worker, then `--tasks` no-op python_apps are submitted at once
and waited for; tasks per second = tasks / (time from the first submission to the last result).
Prints each run (with the CPU time the pools, or ranks, and the workers spent per task) and the
medians; the issue's target is mpi / node >= 0.8.

    python benchmarks/exex_throughput.py [--tasks 200000] [--repeats 5] [--nodes 3] [--workers 2]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "tests", "python"))


def noop():
    return None


def cpu_seconds(cluster) -> dict:
    """CPU time (user + system) so far of the pools (ranks) and of the workers on the nodes."""
    tick = os.sysconf("SC_CLK_TCK")
    used = {"pools": 0.0, "workers": 0.0}
    for node in cluster.nodes:
        for pid in node.pids():
            try:
                with open(f"/proc/{pid}/cmdline", "rb") as f:
                    argv0 = f.read().split(b"\0")[:3]
                with open(f"/proc/{pid}/stat") as f:
                    fields = f.read().rsplit(")", 1)[1].split()
            except OSError:
                continue
            kind = "pools" if argv0[0].endswith((b"/pervade-pool", b"/pervade-exex-pool")) else \
                "workers" if b"pervade.worker" in argv0 else None
            if kind:
                used[kind] += (int(fields[11]) + int(fields[12])) / tick
    return used


def run_once(parsl, cluster, mode: str, args, work: str, n: int) -> tuple:
    launcher = parsl.SrunLauncher(overrides="--mpi=pmi2" if mode == "mpi" else "")
    executor = parsl.HighThroughputExecutor(
        label=f"{mode}{n}", address=cluster.interchange_address, pool_mode=mode, max_workers_per_node=args.workers,
        short_task_prefetch=args.short_task_prefetch,
        provider=parsl.SlurmProvider(partition=cluster.partition, nodes_per_block=args.nodes, init_blocks=1,
                                     cmd_timeout=30, walltime="00:30:00", launcher=launcher))
    app = parsl.python_app(noop, executors=[executor.label])
    with parsl.load(parsl.Config(executors=[executor], run_dir=os.path.join(work, "runinfo"))):
        deadline = time.monotonic() + 120
        while sum(p["worker_count"] for p in executor.pools()) < args.nodes * args.workers:
            if time.monotonic() > deadline:
                raise RuntimeError(f"{mode}: the block's workers did not all connect: {executor.pools()}")
            time.sleep(0.1)
        for f in [app() for _ in range(args.warmup)]:
            f.result()
        before = cpu_seconds(cluster)
        start = time.perf_counter()
        futures = [app() for _ in range(args.tasks)]
        for f in futures:
            f.result()
        elapsed = time.perf_counter() - start
        after = cpu_seconds(cluster)
    parsl.clear()
    per_task = {k: (after[k] - before[k]) / args.tasks * 1e6 for k in after}  # CPU us per task
    return args.tasks / elapsed, per_task


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tasks", type=int, default=200000)
    parser.add_argument("--warmup", type=int, default=2000)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--nodes", type=int, default=3)
    parser.add_argument("--workers", type=int, default=2, help="workers per node")
    parser.add_argument("--short-task-prefetch", type=int, default=16, help="the executor's, for both modes")
    parser.add_argument("--modes", default="node,mpi", help="which pool modes to run (e.g. mpi alone, to profile it)")
    args = parser.parse_args()

    import pervade as parsl
    from cluster.slurm import SlurmCluster

    work = tempfile.mkdtemp(prefix="pervade-exex-bench-")
    cluster = SlurmCluster(os.path.join(work, "slurm"), nodes=args.nodes).start()
    os.environ["SLURM_CONF"] = cluster.conf
    rates = {"node": [], "mpi": []}
    cpu = {"node": [], "mpi": []}
    try:
        for i in range(args.repeats):
            modes = args.modes.split(",")
            for mode in (modes if i % 2 == 0 else modes[::-1]):  # alternate which goes first
                rate, per_task = run_once(parsl, cluster, mode, args, work, i)
                rates[mode].append(rate)
                cpu[mode].append(per_task)
                print(f"run {i + 1} {mode:4s}: {rate:8.0f} tasks/s; CPU per task: pools {per_task['pools']:5.1f} us, "
                      f"workers {per_task['workers']:5.1f} us", flush=True)
    finally:
        cluster.stop()
    if not all(rates.values()):
        return 0
    node, mpi = statistics.median(rates["node"]), statistics.median(rates["mpi"])
    print(f"median over {args.repeats} runs of {args.tasks} no-op tasks on {args.nodes} nodes x {args.workers} "
          f"workers: node {node:.0f} tasks/s, mpi {mpi:.0f} tasks/s, mpi/node {mpi / node:.2f}")
    for mode in ("node", "mpi"):
        print(f"median CPU per task, {mode}: pools (ranks) "
              f"{statistics.median(c['pools'] for c in cpu[mode]):.1f} us, workers "
              f"{statistics.median(c['workers'] for c in cpu[mode]):.1f} us")
    return 0


if __name__ == "__main__":
    sys.exit(main())
