#!/usr/bin/env python3
"""Parsl's ThreadPoolExecutor vs pervade's ThreadPoolExecutor, same machine, same run.

    python3 benchmarks/compare_threads.py            # full run (a few minutes)
    python3 benchmarks/compare_threads.py --quick    # smoke run, small N, one repeat
    python3 benchmarks/compare_threads.py --json     # results as one JSON object on stdout

Parsl comes from PyPI into a virtual environment of its own, benchmarks/.venv-peers (created
with `python3 -m venv` on first use, reused while `import parsl` works there). pervade is the
one installed in the interpreter running this script (`make python`).

Every measurement runs in a fresh subprocess: Parsl's with the venv's python, pervade's with
this interpreter. Both run the SAME worker source (WORKER below), which differs only in its
first import -- `import parsl` or `import pervade as parsl` -- so the comparison is like for
like and doubles as a drop-in compatibility check. Both use max_threads=2 (by default),
usage tracking off, run_dir in a temp dir, file logging off (initialize_logging=False, as
`pervade perf` does) except in the throughput_logged workload.

Workloads (N are the defaults; --quick shrinks them):
  throughput  parsl-perf's workload: a python_app `app(extra_payload,
              parsl_resource_specification={})` returning 7, argsize 0. Batches of 2000 then
              20000 tasks, each batch submitted whole, then awaited with as_completed, each
              result asserted == 7. tasks/s = N / (first submit -> last completion).
  throughput_logged
              the same with initialize_logging=True for both, the default of Parsl's Config
              and so what parsl-perf measures with a config that does not turn it off
              (Parsl writes a DEBUG-level parsl.log, pervade a pervade.log).
  chain       2000 tasks, each depending on the previous task's future, all submitted at
              once; reports wall time / 2000 per link.
  roundtrip   submit one task, wait for its result, 500 times (after 20 unmeasured warm-up
              round trips); reports the median.
  startup     `import` of the framework + load(config), from the top of the worker.
Each workload is repeated (3 times by default) in fresh processes, alternating frameworks;
the table shows the MEDIAN of the repeats, and every sample is in --json and the run log.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import peers  # this folder's shared helpers: the peers' venv, subprocesses in their own group
from peers import BenchError, cpu_model, fmt_number, log, run
from peers import tail as _tail

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
DEFAULT_VENV = peers.DEFAULT_VENV
DEFAULT_TIMEOUT = 15 * 60  # seconds, per subprocess (venv creation, pip install, each measurement)

# ---------------------------------------------------------------------------------------------
# The worker: one workload, one framework, one fresh interpreter. The same text runs under
# Parsl and under pervade; only the module bound to the name `parsl` differs.
WORKER = r'''
import json, os, statistics, sys, time
_t0 = time.perf_counter()
FRAMEWORK, MODE, SPEC = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
if FRAMEWORK == "parsl":
    import parsl
else:
    import pervade as parsl
from concurrent.futures import as_completed


@parsl.python_app
def app(extra_payload, parsl_resource_specification={}):
    return 7


@parsl.python_app
def link(previous, extra_payload):
    return previous + 1


def throughput(payload):
    batches = []
    for n in SPEC["batches"]:
        start = time.perf_counter()
        futures = [app(payload, parsl_resource_specification={}) for _ in range(n)]
        submitted = time.perf_counter() - start
        for f in as_completed(futures):
            assert f.result() == 7, f.result()
        delta = time.perf_counter() - start
        batches.append({"tasks": n, "seconds": delta, "tasks_per_second": n / delta,
                        "submit_tasks_per_second": n / submitted})
        del futures
    return {"batches": batches}


def chain(payload):
    n = SPEC["chain"]
    start = time.perf_counter()
    f = app(payload)
    for _ in range(n - 1):
        f = link(f, payload)
    value = f.result()
    delta = time.perf_counter() - start
    assert value == 7 + n - 1, value
    return {"tasks": n, "seconds": delta, "us_per_task": delta / n * 1e6}


def roundtrip(payload):
    for _ in range(SPEC["warmup"]):
        assert app(payload).result() == 7
    samples = []
    for _ in range(SPEC["roundtrip"]):
        t = time.perf_counter()
        assert app(payload).result() == 7
        samples.append(time.perf_counter() - t)
    samples.sort()
    return {"tasks": len(samples), "median_us": statistics.median(samples) * 1e6,
            "p99_us": samples[min(len(samples) - 1, int(0.99 * len(samples)))] * 1e6}


config = parsl.Config(
    executors=[parsl.ThreadPoolExecutor(label="threads", max_threads=SPEC["threads"])],
    run_dir=SPEC["run_dir"], usage_tracking=0, initialize_logging=SPEC["logging"])
dfk = parsl.load(config)
startup = time.perf_counter() - _t0
try:
    result = {"startup_ms": startup * 1e3}
    result.update({"throughput": throughput, "chain": chain, "roundtrip": roundtrip,
                   "startup": lambda payload: {}}[MODE]("x" * SPEC["argsize"]))
finally:
    dfk.cleanup()
    parsl.clear()
version = getattr(parsl, "__version__", None) or getattr(parsl, "VERSION", "?")
print("RESULT " + json.dumps({"framework": FRAMEWORK, "module": parsl.__name__, "version": str(version),
                              "file": parsl.__file__, "python": sys.version.split()[0],
                              "mode": MODE, **result}), flush=True)
'''


def ensure_peers(venv: Path, timeout: float) -> Path:
    """The peers' venv python, with Parsl installed (see peers.py)."""
    return peers.ensure_peers(venv, {"parsl": "parsl"}, timeout)[0]


# ---------------------------------------------------------------------------------------------
# Measurements.

# name -> (worker mode, changes to the spec)
WORKLOADS = {
    "throughput": ("throughput", {}),
    "throughput_logged": ("throughput", {"logging": True}),
    "chain": ("chain", {}),
    "roundtrip": ("roundtrip", {}),
    "startup": ("startup", {}),
}


def measure(framework: str, python: str, mode: str, spec: dict, workdir: Path, worker: Path,
            timeout: float) -> dict:
    run_dir = tempfile.mkdtemp(prefix=f"{framework}-{mode}-", dir=workdir)
    spec = dict(spec, run_dir=run_dir)
    env = dict(os.environ, PARSL_TRACKING="false", PYTHONDONTWRITEBYTECODE="1")
    env.pop("PYTHONPATH", None)  # each interpreter sees only its own site-packages
    started = time.monotonic()
    code, out = run([python, str(worker), framework, mode, json.dumps(spec)], timeout=timeout, cwd=workdir, env=env)
    wall = time.monotonic() - started
    results = [line[len("RESULT "):] for line in out.splitlines() if line.startswith("RESULT ")]
    if code != 0 or not results:
        raise BenchError(f"{framework} {mode} run failed (exit {code}) with {python}:\n{_tail(out)}")
    result = json.loads(results[-1])
    result["process_seconds"] = wall
    return result


def summarize(samples: list[float], lower_is_better: bool) -> dict:
    return {"median": statistics.median(samples), "best": min(samples) if lower_is_better else max(samples),
            "samples": samples}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description="Parsl vs pervade ThreadPoolExecutor, same workloads, same run",
                                     formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    parser.add_argument("--quick", action="store_true", help="smoke run: small N, one repeat")
    parser.add_argument("--json", action="store_true", help="print the results as one JSON object on stdout")
    parser.add_argument("--repeats", type=int, help="fresh-process runs per workload and framework (default 3, quick 1)")
    parser.add_argument("--threads", type=int, default=2, help="max_threads of both executors (default 2)")
    parser.add_argument("--batches", help="comma-separated throughput batch sizes (default 2000,20000; quick 200,1000)")
    parser.add_argument("--chain", type=int, help="tasks in the dependency chain (default 2000, quick 200)")
    parser.add_argument("--roundtrip", type=int, help="measured round trips (default 500, quick 50)")
    parser.add_argument("--venv", type=Path, default=DEFAULT_VENV, help=f"peers' venv (default {DEFAULT_VENV})")
    parser.add_argument("--timeout", type=float, default=DEFAULT_TIMEOUT,
                        help=f"seconds allowed per subprocess (default {DEFAULT_TIMEOUT})")
    parser.add_argument("--show-worker", action="store_true", help="print the worker source and exit")
    args = parser.parse_args(argv)
    if args.show_worker:
        print(WORKER.strip())
        return 0

    repeats = args.repeats or (1 if args.quick else 3)
    batches = [int(b) for b in (args.batches or ("200,1000" if args.quick else "2000,20000")).split(",")]
    spec = {"threads": args.threads, "batches": batches, "chain": args.chain or (200 if args.quick else 2000),
            "roundtrip": args.roundtrip or (50 if args.quick else 500), "warmup": 20, "argsize": 0,
            "logging": False}
    if repeats < 1 or args.threads < 1 or spec["chain"] < 1 or spec["roundtrip"] < 1 or min(batches) < 1:
        parser.error("--repeats, --threads, --batches, --chain and --roundtrip must be positive")
    command = shlex.join(getattr(sys, "orig_argv", [sys.executable, *sys.argv]))

    try:
        parsl_python = str(ensure_peers(args.venv.resolve(), args.timeout))
        pervade_python = sys.executable
        check = subprocess.run([pervade_python, "-c", "import pervade"], capture_output=True, text=True,
                               cwd=tempfile.gettempdir())
        if check.returncode != 0:
            raise BenchError(f"`import pervade` fails in {pervade_python} (run `make python` first):\n"
                             f"{_tail(check.stderr)}")
        pythons = {"parsl": parsl_python, "pervade": pervade_python}
        runs: dict[str, dict[str, list[dict]]] = {fw: {} for fw in pythons}
        with tempfile.TemporaryDirectory(prefix="pervade-compare-") as tmp:
            workdir = Path(tmp)
            worker = workdir / "worker.py"
            worker.write_text(WORKER)
            for mode in WORKLOADS:
                worker_mode, overrides = WORKLOADS[mode]
                for rep in range(repeats):
                    order = ("parsl", "pervade") if rep % 2 == 0 else ("pervade", "parsl")
                    for fw in order:
                        r = measure(fw, pythons[fw], worker_mode, dict(spec, **overrides), workdir, worker,
                                    args.timeout)
                        runs[fw].setdefault(mode, []).append(r)
                        log(f"[run] {mode:<10} {fw:<7} #{rep + 1}: {describe(mode, r)}")
    except BenchError as e:
        print(f"compare_threads: error: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("compare_threads: interrupted", file=sys.stderr)
        return 130

    report = build_report(runs, spec, repeats, command)
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        print_table(report)
    return 0


def describe(mode: str, r: dict) -> str:
    if mode.startswith("throughput"):
        return ", ".join(f"{b['tasks']} tasks {b['tasks_per_second']:.0f}/s" for b in r["batches"])
    if mode == "chain":
        return f"{r['us_per_task']:.1f} us/task"
    if mode == "roundtrip":
        return f"median {r['median_us']:.1f} us, p99 {r['p99_us']:.1f} us"
    return f"{r['startup_ms']:.0f} ms"


def build_report(runs: dict, spec: dict, repeats: int, command: str) -> dict:
    rows = []

    def row(name, unit, key_fn, mode, higher_is_better):
        vals = {fw: summarize([key_fn(r) for r in runs[fw][mode]], lower_is_better=not higher_is_better)
                for fw in ("parsl", "pervade")}
        p, v = vals["parsl"]["median"], vals["pervade"]["median"]
        ratio = (v / p) if higher_is_better else (p / v)
        rows.append({"workload": name, "unit": unit, "higher_is_better": higher_is_better,
                     "parsl": vals["parsl"], "pervade": vals["pervade"],
                     "ratio": ratio, "ratio_definition": "pervade/parsl" if higher_is_better else "parsl/pervade"})

    for i, n in enumerate(spec["batches"]):
        row(f"throughput, batch of {n} (tasks/s)", "tasks/s",
            lambda r, i=i: r["batches"][i]["tasks_per_second"], "throughput", True)
    for i, n in enumerate(spec["batches"]):
        row(f"throughput, logging on, batch of {n} (tasks/s)", "tasks/s",
            lambda r, i=i: r["batches"][i]["tasks_per_second"], "throughput_logged", True)
    row(f"chain of {spec['chain']} (us/task)", "us/task", lambda r: r["us_per_task"], "chain", False)
    row(f"round trip, median of {spec['roundtrip']} (us)", "us", lambda r: r["median_us"], "roundtrip", False)
    row("import + load(config) (ms)", "ms", lambda r: r["startup_ms"], "startup", False)

    first = {fw: runs[fw]["throughput"][0] for fw in ("parsl", "pervade")}
    return {
        "benchmark": "benchmarks/compare_threads.py",
        "date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
        "command": command,
        "cwd": os.getcwd(),
        "nproc": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        "cpu": cpu_model(),
        "platform": platform.platform(),
        "python": {fw: first[fw]["python"] for fw in first},
        "versions": {fw: first[fw]["version"] for fw in first},
        "interpreters": {fw: first[fw]["file"] for fw in first},
        "settings": {**spec, "repeats": repeats, "statistic": "median of repeats",
                     "workloads": {name: {"worker_mode": m, **o} for name, (m, o) in WORKLOADS.items()},
                     "executor": "ThreadPoolExecutor", "usage_tracking": 0},
        "rows": rows,
        "runs": runs,
    }


def print_table(report: dict) -> None:
    s = report["settings"]
    print("Parsl vs pervade: ThreadPoolExecutor, same worker source, fresh process per run")
    print(f"date:     {report['date']}")
    print(f"command:  {report['command']}   (in {report['cwd']})")
    print(f"machine:  nproc={report['nproc']}, {report['cpu']}, {report['platform']}")
    print(f"python:   parsl side {report['python']['parsl']}, pervade side {report['python']['pervade']}")
    print(f"versions: parsl {report['versions']['parsl']}, pervade {report['versions']['pervade']}")
    print(f"settings: max_threads={s['threads']}, argsize={s['argsize']}, usage_tracking=0, "
          f"initialize_logging=False except where noted, {s['repeats']} repeat(s); "
          "values are the median of the repeats")
    print()
    headers = ("workload", "parsl", "pervade", "ratio")
    table = [(r["workload"], fmt_number(r["parsl"]["median"]), fmt_number(r["pervade"]["median"]),
              f"{r['ratio']:.1f}x ({r['ratio_definition']})") for r in report["rows"]]
    widths = [max(len(h), *(len(t[i]) for t in table)) for i, h in enumerate(headers)]
    align = ("<", ">", ">", "<")
    line = " | ".join(f"{h:{a}{w}}" for h, a, w in zip(headers, align, widths))
    print(line)
    print("-+-".join("-" * w for w in widths))
    for t in table:
        print(" | ".join(f"{c:{a}{w}}" for c, a, w in zip(t, align, widths)))
    print()
    print("ratio > 1 means pervade is better (throughput: pervade/parsl; latency and time: parsl/pervade).")
    print("every sample, in run order (best in brackets):")
    for r in report["rows"]:
        for fw in ("parsl", "pervade"):
            samples = ", ".join(fmt_number(x) for x in r[fw]["samples"])
            print(f"  {r['workload']:<{widths[0]}}  {fw:<7} {samples}  [{fmt_number(r[fw]['best'])}]")


if __name__ == "__main__":
    sys.exit(main())
