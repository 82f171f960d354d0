"""pervade perf: measure a configuration the way parsl-perf does, plus latency modes.

  pervade perf [--config FILE] [--time S] [--argsize BYTES] [--iterate MODE] [--mode MODE] [--json]
               [--checkpoint MODE]

Modes:
  throughput  parsl-perf's workload: batches of a no-op app that returns 7 (with --argsize
              bytes of padding), each batch sized from the rate of the last, until a batch
              takes about --time seconds. Reports tasks/s per batch.
  chain       --tasks tasks, each depending on the previous one (submitted at once);
              reports the time per link of the chain (dependency + dispatch + run latency).
  roundtrip   submit one task, wait for its result, repeat --tasks times; reports the median
              and 99th percentile of the per-task round trip.

--checkpoint MODE (throughput mode) measures memoization's cost: the no-op app gets cache=True
and a distinct argument per task (so that no call is a memo hit), and the run writes a
checkpoint in MODE (task_exit, periodic (every second), dfk_exit, manual), or keeps results in
memory only (memory). Earlier checkpoints are not loaded.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import statistics
import sys
import itertools
import time
from concurrent.futures import as_completed

import pervade
from pervade import _native, python_app


@python_app
def app(extra_payload, parsl_resource_specification={}):  # noqa: B006 - Parsl's signature
    return 7


@python_app(cache=True)
def cached_app(index, extra_payload, parsl_resource_specification={}):  # noqa: B006
    return 7


@python_app
def link(previous, extra_payload):
    return previous + 1


def load_config(path: str | None, threads: int):
    if path is None:
        return pervade.Config(executors=[pervade.ThreadPoolExecutor(max_threads=threads)], initialize_logging=False)
    spec = importlib.util.spec_from_file_location("pervade_perf_config", path)
    if spec is None or spec.loader is None:
        raise SystemExit(f"pervade perf: cannot load config file {path!r}")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    if hasattr(module, "config"):
        return module.config
    if hasattr(module, "fresh_config"):
        return module.fresh_config()
    raise SystemExit(f"pervade perf: {path} defines neither `config` nor `fresh_config()`")


def parse_iterate(value: str):
    if value in ("estimate", "exponential"):
        return value
    try:
        sizes = [int(v) for v in value.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"Invalid iteration mode: {value}") from None
    if not sizes or any(s < 1 for s in sizes):
        raise argparse.ArgumentTypeError(f"Invalid iteration mode: {value}")
    return sizes


def throughput(args, say):
    payload = "x" * args.argsize
    sizes = args.iterate if isinstance(args.iterate, list) else None
    n = sizes[0] if sizes else 10
    index = itertools.count()
    iteration = 1
    results = []
    while True:
        say(f"==== Iteration {iteration} ====\nWill run {n} tasks\nSubmitting tasks / invoking apps")  # parsl-perf's lines
        start = time.perf_counter()
        if args.checkpoint:
            futures = [cached_app(next(index), payload, parsl_resource_specification=args.resources)
                       for _ in range(n)]
        else:
            futures = [app(payload, parsl_resource_specification=args.resources) for _ in range(n)]
        submitted = time.perf_counter() - start
        say(f"All {n} tasks submitted ... waiting for completion")
        for f in as_completed(futures):
            if f.result() != 7:
                raise SystemExit(f"pervade perf: a task returned {f.result()!r}, expected 7")
        delta = time.perf_counter() - start
        rate = n / delta
        results.append({"iteration": iteration, "tasks": n, "seconds": delta, "tasks_per_second": rate,
                        "submit_tasks_per_second": n / submitted if submitted > 0 else float("inf")})
        say(f"Submission took {submitted:.3f} seconds = {n / submitted:.3f} tasks/second")
        say(f"Runtime: actual {delta:.3f}s vs target {args.time}s")
        say(f"Tasks per second: {rate:.3f}")
        iteration += 1
        if sizes:
            if iteration > len(sizes):
                break
            n = sizes[iteration - 1]
        elif args.iterate == "exponential":
            if not (delta < args.time or iteration <= 2):
                break
            n *= 2
        else:
            if not (delta < 0.75 * args.time or iteration <= 2):
                break
            n = max(1, int(args.time * rate))
    return {"mode": "throughput", "argsize": args.argsize, "checkpoint": args.checkpoint, "iterations": results,
            "tasks_per_second": results[-1]["tasks_per_second"]}


def chain(args, say):
    payload = "x" * args.argsize
    start = time.perf_counter()
    f = app(payload)
    for _ in range(args.tasks - 1):
        f = link(f, payload)
    value = f.result()
    delta = time.perf_counter() - start
    if value != 7 + args.tasks - 1:
        raise SystemExit(f"pervade perf: chain returned {value}, expected {7 + args.tasks - 1}")
    per_task = delta / args.tasks
    say(f"Chain of {args.tasks} tasks: {delta:.3f}s, {per_task * 1e6:.1f} us per task, "
        f"{args.tasks / delta:.1f} tasks/s")
    return {"mode": "chain", "tasks": args.tasks, "seconds": delta, "latency_us_per_task": per_task * 1e6,
            "tasks_per_second": args.tasks / delta}


def roundtrip(args, say):
    payload = "x" * args.argsize
    samples = []
    for _ in range(args.tasks):
        t0 = time.perf_counter()
        app(payload).result()
        samples.append(time.perf_counter() - t0)
    samples.sort()
    median = statistics.median(samples)
    p99 = samples[min(len(samples) - 1, int(0.99 * len(samples)))]
    say(f"Round trip over {args.tasks} tasks: median {median * 1e6:.1f} us, p99 {p99 * 1e6:.1f} us")
    return {"mode": "roundtrip", "tasks": args.tasks, "median_us": median * 1e6, "p99_us": p99 * 1e6}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="pervade perf", description="Measure performance of pervade configurations")
    parser.add_argument("--config", help="Python file that defines `config` or `fresh_config()` "
                                         "(default: a ThreadPoolExecutor with --threads threads)")
    parser.add_argument("--threads", type=int, default=2, help="threads of the default executor (default 2)")
    parser.add_argument("--resources", type=str, default="{}", help="parsl_resource_specification, as a Python dict")
    parser.add_argument("--time", type=float, default=120, help="target seconds per batch (default 120)")
    parser.add_argument("--argsize", type=int, default=0, help="bytes of padding passed to each task (default 0)")
    parser.add_argument("--iterate", type=parse_iterate, default="estimate",
                        help="estimate (default), exponential, or a comma-separated list of batch sizes")
    parser.add_argument("--mode", choices=("throughput", "chain", "roundtrip"), default="throughput")
    parser.add_argument("--tasks", type=int, default=10000, help="tasks for chain and roundtrip modes (default 10000)")
    modes = [m.name for m in _native.CheckpointMode if m != _native.CheckpointMode.none]  # the engine's names
    parser.add_argument("--checkpoint", choices=("memory", *modes),
                        help="throughput mode: memoize each task (distinct keys) and checkpoint in this mode")
    parser.add_argument("--json", action="store_true", help="print one JSON object with the results, nothing else")
    parser.add_argument("--version", action="version", version=f"pervade perf from pervade {pervade.__version__}")
    args = parser.parse_args(argv)
    if args.time <= 0 or args.argsize < 0 or args.tasks < 1 or args.threads < 1:
        parser.error("--time and --tasks and --threads must be positive, --argsize not negative")
    try:
        args.resources = eval(args.resources, {}, {})  # noqa: S307 - same contract as parsl-perf
    except Exception as e:  # noqa: BLE001
        parser.error(f"--resources is not a Python expression: {e}")
    say = (lambda *_: None) if args.json else (lambda text: print(text, flush=True))
    config = load_config(args.config, args.threads)
    if args.checkpoint:
        mode = None if args.checkpoint == "memory" else args.checkpoint
        config.memoizer = pervade.BasicMemoizer(checkpoint_mode=mode, checkpoint_files=[],
                                                checkpoint_period=1 if mode == "periodic" else None)
    with pervade.load(config):
        result = {"throughput": throughput, "chain": chain, "roundtrip": roundtrip}[args.mode](args, say)
        say("Tests complete - leaving DFK block")
    say("The end")
    if args.json:
        print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
