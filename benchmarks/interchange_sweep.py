#!/usr/bin/env python3
"""The interchange sweep of issue 17: build/benchmarks/cpp/interchange_scale once per point.

    python3 benchmarks/interchange_sweep.py --quick              # a few small points (minutes)
    python3 benchmarks/interchange_sweep.py                      # the whole sweep (a quiet machine, an hour or more)
    python3 benchmarks/interchange_sweep.py --pools 1 10 100 1000 10000 --workers 100 --service-ms 0 --tasks 200000
    python3 benchmarks/interchange_sweep.py --pools 1000 10000 --workers 100 --service-ms 0 --idle-s 3   # + heartbeat cost
    python3 benchmarks/interchange_sweep.py --plot-only results.jsonl

Points: pools 1, 10, 100, 1,000, 10,000 x workers per pool 1, 10, 100 x service 0, 1, 100 ms,
with as many tasks as keep every worker busy for a while (capped at 1,000,000), plus the deep
queue (10,000,000 no-op tasks) at 1,000 pools x 100 workers. Each point's JSON line goes to
--results (appended, so an interrupted sweep can be resumed with --resume), then a Markdown
table goes to stdout and a plot of throughput and interchange CPU per task against the number
of pools to --plot (docs/interchange_scale.png).

The plot needs matplotlib, which is not a dependency of pervade: when this Python lacks it, the
script runs its plotting step with benchmarks/.venv-plot/bin/python, made with
    python3 -m venv benchmarks/.venv-plot && benchmarks/.venv-plot/bin/pip install matplotlib
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import subprocess
import sys
from pathlib import Path

logger = logging.getLogger(__name__)

ROOT = Path(__file__).resolve().parent.parent
BINARY = ROOT / "build" / "benchmarks" / "cpp" / "interchange_scale"
PLOT_PYTHON = ROOT / "benchmarks" / ".venv-plot" / "bin" / "python"

FULL_POOLS = [1, 10, 100, 1_000, 10_000]
FULL_WORKERS = [1, 10, 100]
FULL_SERVICE_MS = [0, 1, 100]
MAX_TASKS = 1_000_000
# How long each worker should be kept busy at a point with a service time (seconds).
BUSY_S = 5


def tasks_for(pools: int, workers: int, service_ms: float, quick: bool) -> int:
    cap = 20_000 if quick else MAX_TASKS
    if service_ms == 0:
        return cap
    per_worker = max(1, int(BUSY_S * 1000 / service_ms))
    return max(min(cap, pools * workers * per_worker), min(cap, 10_000))


def points(args: argparse.Namespace) -> list[dict]:
    quick = args.quick
    pools = args.pools or ([1, 10, 100] if quick else FULL_POOLS)
    workers = args.workers or ([1, 10] if quick else FULL_WORKERS)
    services = args.service_ms or ([0, 1] if quick else FULL_SERVICE_MS)
    grid = [(p, w, s) for s in services for w in workers for p in pools]
    out = [dict(pools=p, workers=w, service_ms=s, tasks=args.tasks or tasks_for(p, w, s, quick)) for p, w, s in grid]
    if not (quick or args.pools or args.workers or args.service_ms or args.tasks):
        out.append(dict(pools=1_000, workers=100, service_ms=0, tasks=10_000_000))
    return out


def command(point: dict, binary: Path, idle_s: float) -> list[str]:
    cmd = [str(binary), "--pools", str(point["pools"]), "--workers-per-pool", str(point["workers"]),
           "--tasks", str(point["tasks"]), "--service-ms", str(point["service_ms"]), "--json"]
    if idle_s > 0:
        # Heartbeats every second for the idle window: enough exchanges to measure their cost,
        # which the binary also scales to the default 30 s period. The period holds for the
        # run too, whose CPU per task then includes 30 times the default heartbeat traffic.
        cmd += ["--heartbeat-period", "1", "--idle-s", str(idle_s)]
    return cmd


def key(point: dict) -> tuple:
    return (point["pools"], point["workers_per_pool"] if "workers_per_pool" in point else point["workers"],
            float(point["service_ms"]), point["tasks"])


def run(args: argparse.Namespace) -> list[dict]:
    results_path = Path(args.results)
    done = {}
    if args.resume and results_path.exists():
        for line in results_path.read_text().splitlines():
            r = json.loads(line)
            done[key(r)] = r
    results = []
    for point in points(args):
        if key(point) in done:
            results.append(done[key(point)])
            continue
        cmd = command(point, Path(args.binary), args.idle_s)
        logger.info("running %s", " ".join(cmd))
        load_before = os.getloadavg()[0]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode != 0:
            logger.error("point %s failed (%d): %s", point, proc.returncode, proc.stderr.strip()[-2000:])
            continue
        r = json.loads(proc.stdout.strip().splitlines()[-1])
        # The machine's 1-minute load average before and after the point: other work on the
        # same cores moves wall-clock figures (tasks/s, latency, register_s) far more than CPU/task.
        r["load_average"] = f"{load_before:.1f}–{os.getloadavg()[0]:.1f}"
        results.append(r)
        with results_path.open("a") as f:
            f.write(json.dumps(r) + "\n")
    return results


def table(results: list[dict]) -> str:
    cols = [("pools", "pools"), ("workers_per_pool", "workers/pool"), ("service_ms", "service ms"),
            ("tasks", "tasks"), ("tasks_per_s", "tasks/s"), ("latency_p50_us", "p50 µs"),
            ("latency_p99_us", "p99 µs"), ("cpu_per_task_us", "ix CPU/task µs"), ("register_s", "register s"),
            ("driver_rss_per_pool_bytes", "RSS/pool B"), ("dispatcher_bytes_per_pool", "ours/pool B"),
            ("zeromq_bytes_per_pool", "ZeroMQ/pool B"), ("kernel_socket_bytes_per_pool", "kernel sockets/pool B"),
            ("driver_rss_per_queued_task_bytes", "RSS/queued task B"),
            ("heartbeat_cpu_fraction_at_30s", "heartbeat CPU @30 s"), ("load_average", "load")]
    lines = ["| " + " | ".join(title for _, title in cols) + " |", "|" + "---|" * len(cols)]
    for r in results:
        lines.append("| " + " | ".join(str(r.get(name, "")) for name, _ in cols) + " |")
    return "\n".join(lines)


def plot(results: list[dict], path: str) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (top, bottom) = plt.subplots(2, 1, figsize=(8, 8), sharex=True)
    series: dict[tuple, list[dict]] = {}
    for r in results:
        if r["tasks"] > MAX_TASKS:
            continue  # the deep-queue point is in the table only
        series.setdefault((r["workers_per_pool"], float(r["service_ms"])), []).append(r)
    for (workers, service), rs in sorted(series.items()):
        rs.sort(key=lambda r: r["pools"])
        label = f"{workers} workers/pool, {service:g} ms"
        top.plot([r["pools"] for r in rs], [r["tasks_per_s"] for r in rs], marker="o", label=label)
        bottom.plot([r["pools"] for r in rs], [r["cpu_per_task_us"] for r in rs], marker="o", label=label)
    top.set_ylabel("tasks/s (dispatched and completed)")
    bottom.set_ylabel("interchange CPU per task (µs)")
    bottom.set_xlabel("pools")
    for ax in (top, bottom):
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.grid(True, which="both", alpha=0.3)
    top.legend(fontsize=7)
    top.set_title("One interchange, simulated pools (build/benchmarks/cpp/interchange_scale)")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    logger.info("wrote %s", path)


def plot_anywhere(results_path: str, path: str, results: list[dict]) -> None:
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        if not PLOT_PYTHON.exists():
            logger.error("no matplotlib: make %s (see this script's docstring) for the plot", PLOT_PYTHON.parent.parent)
            return
        # (Its --plot-only prints the table again: the caller has printed it.)
        subprocess.run([str(PLOT_PYTHON), __file__, "--plot-only", results_path, "--plot", path], check=True,
                       stdout=subprocess.DEVNULL)
        return
    plot(results, path)


def main() -> int:
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--binary", default=str(BINARY))
    p.add_argument("--quick", action="store_true", help="a few small points, to try the sweep")
    p.add_argument("--pools", type=int, nargs="+", help="only these pool counts")
    p.add_argument("--workers", type=int, nargs="+", help="only these workers per pool")
    p.add_argument("--service-ms", type=float, nargs="+", help="only these service times")
    p.add_argument("--tasks", type=int, help="this many tasks at every point")
    p.add_argument("--results", default="interchange_sweep.jsonl", help="JSON lines, one per point (appended)")
    p.add_argument("--resume", action="store_true", help="skip points already in --results")
    p.add_argument("--idle-s", type=float, default=0,
                   help="also measure heartbeat cost: this many seconds of heartbeats only per point, with "
                        "heartbeat_period 1 s for the whole point (0, the default: the default period, 30 s). "
                        "At 10,000 pools the 1 s period's heartbeats cost most of the interchange's CPU "
                        "per task during the run")
    p.add_argument("--plot", default=str(ROOT / "docs" / "interchange_scale.png"))
    p.add_argument("--plot-only", metavar="RESULTS", help="plot (and tabulate) these results without running")
    args = p.parse_args()
    if args.plot_only:
        results = [json.loads(line) for line in Path(args.plot_only).read_text().splitlines()]
        print(table(results))
        plot(results, args.plot)
        return 0
    results = run(args)
    print(table(results))
    plot_anywhere(args.results, args.plot, results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
