#!/usr/bin/env python3
"""The elasticity experiment of the Parsl paper (Babuji et al., HPDC 2019, section on
elasticity), time-scaled, on a local HighThroughputExecutor: utilization and makespan of a
4-stage workflow with fixed blocks and with an elastic strategy.

    python3 benchmarks/elasticity.py                 # both runs, 3 repeats each, a table
    python3 benchmarks/elasticity.py --repeats 1 --json
    python3 benchmarks/elasticity.py --strategy simple --max-idletime 0.1

Workflow: stage 1 is 20 tasks of 100 s, stage 2 one task of 50 s that depends on all of
stage 1, stage 3 20 tasks of 100 s that depend on it, stage 4 one task of 50 s that depends on
all of stage 3. Durations are divided by --scale (100: 1 s and 0.5 s); tasks sleep.

Blocks are 1 node with 1 worker (LocalProvider, max_workers_per_node=1): the workflow's
widest stage needs 20 of them, so both runs may use up to 20.
  fixed    Config(strategy="none"), LocalProvider(init_blocks=20, min_blocks=20, max_blocks=20)
  elastic  Config(strategy=<--strategy>, strategy_period=<--period>, max_idletime=<--max-idletime>),
           LocalProvider(init_blocks=20, min_blocks=0, max_blocks=20)
Both submit the whole workflow as soon as load() returns, and are timed from just before
load(): both pay the same start-up of 20 pools and their Python workers, so the makespan
difference is what scaling in and out costs during the workflow.

Measured:
  makespan     load() -> last result.
  busy         worker-seconds spent in tasks (each task reports its own start and end).
  provisioned  block-seconds within the makespan: for each block, from when it was submitted
               (the initial ones: the start of load()) to when the provider reported it
               ended (or the end). A monitor
               thread polls the executor's block states every 10 ms.
  utilization  busy / provisioned (1 worker per block).
The paper reports 68.15% without and 84.28% with elasticity, for a 9.9% longer makespan.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import threading
import time

import pervade as parsl
from pervade import HighThroughputExecutor, LocalProvider, python_app

WIDTH = 20


@python_app(executors=["htex"])
def stage(duration, *deps):
    """Sleeps `duration` s after its dependencies; returns (start, end) wall times."""
    import time

    start = time.time()
    time.sleep(duration)
    return start, time.time()


class BlockMonitor:
    """Records when each block was first seen and first seen ended (a thread; 10 ms polls)."""

    def __init__(self, executor, start: float):
        self.executor = executor
        # The initial blocks were submitted by load(), which started at `start`.
        self.first_seen: dict[str, float] = {b: start for b in executor.blocks}
        self.ended: dict[str, float] = {}
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.run, daemon=True)
        self.thread.start()

    def run(self):
        while not self.stop.is_set():
            self.poll()
            self.stop.wait(0.01)

    def poll(self):
        now = time.time()
        for block, status in self.executor.block_status().items():
            self.first_seen.setdefault(block, now)
            if status.terminal:
                self.ended.setdefault(block, now)

    def provisioned(self, start: float, end: float) -> float:
        total = 0.0
        for block, seen in self.first_seen.items():
            lo, hi = max(seen, start), min(self.ended.get(block, end), end)
            total += max(0.0, hi - lo)
        return total

    def close(self):
        self.stop.set()
        self.thread.join()


def run_once(kind: str, args) -> dict:
    elastic = kind == "elastic"
    provider = LocalProvider(init_blocks=WIDTH, min_blocks=0 if elastic else WIDTH, max_blocks=WIDTH)
    executor = HighThroughputExecutor(label="htex", max_workers_per_node=1, provider=provider,
                                      worker_port_range=(56000, 57000))
    with tempfile.TemporaryDirectory() as run_dir:
        config = parsl.Config(executors=[executor], run_dir=run_dir, initialize_logging=False,
                              strategy=args.strategy if elastic else "none", strategy_period=args.period,
                              max_idletime=args.max_idletime)
        t0 = time.time()
        dfk = parsl.load(config)  # starts the 20 initial blocks
        try:
            monitor = BlockMonitor(executor, t0)
            long, short = 100 / args.scale, 50 / args.scale
            s1 = [stage(long) for _ in range(WIDTH)]
            s2 = stage(short, *s1)
            s3 = [stage(long, s2) for _ in range(WIDTH)]
            s4 = stage(short, *s3)
            spans = [f.result() for f in s1 + [s2] + s3 + [s4]]
            t1 = time.time()
            monitor.poll()
            monitor.close()
            busy = sum(end - start for start, end in spans)
            provisioned = monitor.provisioned(t0, t1)
            return {"kind": kind, "makespan": t1 - t0, "busy": busy, "provisioned": provisioned,
                    "utilization": busy / provisioned, "blocks_started": len(executor.blocks)}
        finally:
            dfk.cleanup()
            parsl.clear()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--scale", type=float, default=100, help="divide the paper's durations by this (default 100)")
    ap.add_argument("--strategy", default="htex_auto_scale", choices=["simple", "htex_auto_scale"])
    ap.add_argument("--period", type=float, default=0.05, help="strategy_period, s (default 0.05)")
    ap.add_argument("--max-idletime", type=float, default=0.05, help="max_idletime, s (default 0.05)")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--json", action="store_true", help="every sample as JSON")
    args = ap.parse_args()

    samples = []
    for _ in range(args.repeats):
        for kind in ("fixed", "elastic"):
            samples.append(run_once(kind, args))
            print(f"# {samples[-1]}", file=sys.stderr)
    if args.json:
        print(json.dumps({"args": vars(args), "samples": samples}, indent=1))
        return 0

    def median(kind, key):
        return statistics.median(s[key] for s in samples if s["kind"] == kind)

    print(f"elasticity, scale 1/{args.scale:g}, {WIDTH} blocks of 1 worker, strategy {args.strategy}, "
          f"strategy_period {args.period:g} s, max_idletime {args.max_idletime:g} s, median of {args.repeats}")
    print("| run | makespan, s | utilization | blocks started |")
    print("|---|---|---|---|")
    for kind in ("fixed", "elastic"):
        print(f"| {kind} | {median(kind, 'makespan'):.2f} | {100 * median(kind, 'utilization'):.2f}% | "
              f"{median(kind, 'blocks_started'):.0f} |")
    cost = median("elastic", "makespan") / median("fixed", "makespan") - 1
    print(f"makespan change with elasticity: {100 * cost:+.1f}%")
    return 0


if __name__ == "__main__":
    sys.exit(main())
