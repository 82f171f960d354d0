#!/usr/bin/env python3
"""pervade's HighThroughputExecutor vs Parsl's HighThroughputExecutor, Dask distributed and Ray,
on this machine, in one run.

    python3 benchmarks/compare_htex.py              # full run (about half an hour on 2 cores)
    python3 benchmarks/compare_htex.py --quick      # smoke run: small N, one repeat
    python3 benchmarks/compare_htex.py --json       # every sample as one JSON object on stdout
    python3 benchmarks/compare_htex.py --markdown   # a section ready to paste into BENCHMARKS.md
    python3 benchmarks/compare_htex.py --frameworks pervade,parsl   # a subset

The peers come from PyPI (`parsl`, `dask[distributed]`, `ray`) into benchmarks/.venv-peers
(created with `python3 -m venv` when missing, reused while the imports work, only what is
missing is installed; see peers.py). pervade is the one the interpreter running this script
imports (`make python`).

Every measurement is a fresh subprocess: pervade's with this interpreter, the peers' with the
venv's python (its bin/ first on PATH, where Parsl finds process_worker_pool.py). All run the
same WORKER source below; pervade and Parsl run the same lines of it, differing only in
`import parsl` versus `import pervade as parsl`. Each framework gets 2 workers (--workers):
  pervade, Parsl  Config(executors=[HighThroughputExecutor(label="htex", address="127.0.0.1",
                  max_workers_per_node=2, encrypted=True, provider=LocalProvider(init_blocks=1,
                  min_blocks=1, max_blocks=1))], run_dir=<temp>, usage_tracking=0,
                  initialize_logging=False); CurveZMQ on, the default of both (--unencrypted
                  turns it off for both; Dask and Ray do not encrypt)
  Dask            LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                  dashboard_address=None) + Client; client.submit(..., pure=False)
  Ray             ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False); @ray.remote
                  functions, 1 CPU per task, so 2 run at a time
Before anything is timed each process waits for one task's result (the "start" row: import,
start-up, block or cluster start, first round trip) and then for a warm-up batch (200 no-op
tasks), so workers are connected and have the functions.

Workloads (defaults; --quick shrinks them):
  noop        20000 tasks returning 7, all submitted at once, then all results gathered and
              asserted (Parsl/pervade: result() of each future in order; Dask: client.gather;
              Ray: ray.get of the list). tasks/s = N / (first submit -> last result).
  args        the same with one bytes argument, the task returning len(arg): 1 B x 5000,
              1 KB x 5000, 100 KB x 2000, 1 MB x 500 tasks, in that order in one process.
              The same bytes object is passed to every task, so each framework ships it
              each time.
  chain       1000 tasks, each taking the previous task's future (Dask: its Future, Ray: its
              ObjectRef) as its argument, all submitted at once. Every link has a done
              callback (add_done_callback on the future; Ray: on ref.future()) that records
              the time the driver learns of its completion. Reported: the MEDIAN of the
              intervals between consecutive links' completions (what a link costs end to
              end, robust to one slow link), and wall time / N (first submit -> last result).
              If a framework hands completions to the driver in bursts, the median interval
              understates the cost and wall / N is the better figure.
  roundtrip   submit one no-op task, wait for its result; 20 unmeasured, then 300 measured;
              the median.
Each workload runs --repeats times (default 3) per framework, alternating which framework
goes first; the table shows the MEDIAN of the repeats, --json every sample. A failing
framework (timeout, crash, import error) does not stop the others: its error text is kept and
shown; after 2 failures in a row its remaining runs are skipped.

Cleanup: each subprocess runs in its own session and carries a marker in its environment,
which every process it starts inherits. After it exits (or is killed at --timeout), processes
still carrying the marker get 10 s to exit, then the subprocess's process group and every
marked process are killed; what had to be killed is reported as "left behind".
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import shlex
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import peers  # this folder's shared helpers: the peers' venv, messages
from peers import BenchError, cpu_model, fmt_number, log, tail

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
FRAMEWORKS = ("pervade", "parsl", "dask", "ray")
PEERS = ("parsl", "dask", "ray")
# import name -> pip requirement, for the peers' venv
PEER_PACKAGES = {"parsl": "parsl", "dask": "dask[distributed]", "distributed": "dask[distributed]", "ray": "ray"}
DEFAULT_TIMEOUT = 10 * 60  # seconds per measurement subprocess
INSTALL_TIMEOUT = 30 * 60  # seconds for venv creation and pip (Ray's wheel is large)
MARK = "PERVADE_BENCH_RUN"  # environment variable inherited by everything a measurement starts
GRACE = 10.0  # seconds a measurement's processes get to exit by themselves after it returns

# ---------------------------------------------------------------------------------------------
# The worker: one workload, one framework, one fresh interpreter.
WORKER = r'''
import json, os, statistics, sys, time
_t0 = time.perf_counter()


# The task bodies, the same for every framework.
def noop():
    return 7


def size(arg):
    return len(arg)


def link(previous):
    return previous + 1


class ParslLike:
    """Parsl and pervade: the same lines, only the module bound to `parsl` differs."""

    def __init__(self):
        if FRAMEWORK == "parsl":
            import parsl
        else:
            import pervade as parsl
        self.parsl = parsl
        self.version = parsl.__version__
        htex = parsl.executors.HighThroughputExecutor(
            label="htex", address="127.0.0.1", max_workers_per_node=SPEC["workers"], encrypted=SPEC["encrypted"],
            provider=parsl.providers.LocalProvider(init_blocks=1, min_blocks=1, max_blocks=1))
        self.dfk = parsl.load(parsl.Config(executors=[htex], run_dir=SPEC["run_dir"], usage_tracking=0,
                                           initialize_logging=False))
        self.apps = {f.__name__: parsl.python_app(f) for f in (noop, size, link)}

    def submit(self, fn, *args):
        return self.apps[fn.__name__](*args)

    def gather(self, futures):
        return [f.result() for f in futures]

    def result(self, future):
        return future.result()

    def on_done(self, future, callback):
        future.add_done_callback(callback)

    def close(self):
        self.dfk.cleanup()
        self.parsl.clear()


class Dask:
    def __init__(self):
        import dask
        import distributed
        self.version = f"{dask.__version__} (distributed {distributed.__version__})"
        self.cluster = distributed.LocalCluster(n_workers=SPEC["workers"], threads_per_worker=1, processes=True,
                                                dashboard_address=None, local_directory=SPEC["run_dir"])
        self.client = distributed.Client(self.cluster)
        self.client.wait_for_workers(SPEC["workers"])

    def submit(self, fn, *args):
        return self.client.submit(fn, *args, pure=False)

    def gather(self, futures):
        return self.client.gather(futures)

    def result(self, future):
        return future.result()

    def on_done(self, future, callback):
        future.add_done_callback(callback)

    def close(self):
        self.client.close()
        self.cluster.close()


class Ray:
    def __init__(self):
        import ray
        self.ray = ray
        self.version = ray.__version__
        # Ray's temp dir holds its sockets; a short path keeps them under the AF_UNIX limit.
        ray.init(num_cpus=SPEC["workers"], include_dashboard=False, log_to_driver=False,
                 _temp_dir=os.path.join(SPEC["run_dir"], "ray"))
        self.remotes = {f.__name__: ray.remote(f) for f in (noop, size, link)}

    def submit(self, fn, *args):
        return self.remotes[fn.__name__].remote(*args)

    def gather(self, refs):
        return self.ray.get(refs)

    def result(self, ref):
        return self.ray.get(ref)

    def on_done(self, ref, callback):
        ref.future().add_done_callback(callback)

    def close(self):
        self.ray.shutdown()


def batch(fx, fn, args, n, expected):
    """n tasks submitted at once, then every result gathered and checked."""
    start = time.perf_counter()
    futures = [fx.submit(fn, *args) for _ in range(n)]
    submitted = time.perf_counter()
    results = fx.gather(futures)
    end = time.perf_counter()
    assert len(results) == n and all(r == expected for r in results), (len(results), expected)
    return {"tasks": n, "seconds": end - start, "tasks_per_second": n / (end - start),
            "submit_seconds": submitted - start}


def noop_workload(fx):
    return batch(fx, noop, (), SPEC["tasks"], 7)


def args_workload(fx):
    sizes = []
    for nbytes, n in SPEC["sizes"]:
        sizes.append({"bytes": nbytes, **batch(fx, size, (b"x" * nbytes,), n, nbytes)})
    return {"sizes": sizes}


def chain_workload(fx):
    n = SPEC["chain"]
    stamps = []  # list.append is atomic: callbacks may run on any thread
    stamp = lambda _future: stamps.append(time.perf_counter())
    futures = []  # every link stays referenced, so no framework drops one (or its callback)
    start = time.perf_counter()
    futures.append(fx.submit(noop))
    fx.on_done(futures[-1], stamp)
    for _ in range(n - 1):
        futures.append(fx.submit(link, futures[-1]))
        fx.on_done(futures[-1], stamp)
    value = fx.result(futures[-1])
    end = time.perf_counter()
    assert value == 7 + n - 1, value
    deadline = time.monotonic() + 30  # the last callbacks may run just after result() returns
    while len(stamps) < n and time.monotonic() < deadline:
        time.sleep(0.001)
    assert len(stamps) == n, f"{len(stamps)} of {n} done callbacks ran"
    stamps.sort()
    gaps = sorted(b - a for a, b in zip(stamps, stamps[1:]))
    return {"tasks": n, "seconds": end - start, "wall_us_per_task": (end - start) / n * 1e6,
            "median_link_us": statistics.median(gaps) * 1e6,
            "p90_link_us": gaps[int(0.9 * (len(gaps) - 1))] * 1e6}


def roundtrip_workload(fx):
    for _ in range(SPEC["roundtrip_warmup"]):
        assert fx.result(fx.submit(noop)) == 7
    samples = []
    for _ in range(SPEC["roundtrip"]):
        t = time.perf_counter()
        assert fx.result(fx.submit(noop)) == 7
        samples.append(time.perf_counter() - t)
    samples.sort()
    return {"tasks": len(samples), "median_us": statistics.median(samples) * 1e6,
            "p99_us": samples[int(0.99 * (len(samples) - 1))] * 1e6}


# Everything below runs only in the measured process: Dask starts its workers with
# multiprocessing's "spawn", which imports this file again under another name.
if __name__ == "__main__":
    FRAMEWORK, MODE, SPEC = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
    fx = {"pervade": ParslLike, "parsl": ParslLike, "dask": Dask, "ray": Ray}[FRAMEWORK]()
    try:
        assert fx.result(fx.submit(noop)) == 7
        ready = time.perf_counter() - _t0
        warm = [fx.submit(noop) for _ in range(SPEC["warmup"])]
        assert all(r == 7 for r in fx.gather(warm))
        del warm
        result = {"ready_ms": ready * 1e3,
                  **{"noop": noop_workload, "args": args_workload, "chain": chain_workload,
                     "roundtrip": roundtrip_workload}[MODE](fx)}
    finally:
        fx.close()
    print("RESULT " + json.dumps({"framework": FRAMEWORK, "version": fx.version, "mode": MODE,
                                  "python": sys.version.split()[0], **result}), flush=True)
'''


# ---------------------------------------------------------------------------------------------
# Running one measurement, and making sure nothing it started survives it.

def marked_processes(mark: str) -> dict[int, str]:
    """{pid: command line} of the processes whose environment carries MARK=mark."""
    needle = f"{MARK}={mark}".encode()
    found = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/environ", "rb") as f:
                if needle not in f.read().split(b"\0"):
                    continue
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                found[int(entry)] = f.read().replace(b"\0", b" ").decode(errors="replace").strip()[:120]
        except OSError:  # gone meanwhile, or a zombie (its environ reads as empty)
            continue
    return found


def reap(proc: subprocess.Popen, mark: str, grace: float) -> list[str]:
    """Gives the marked processes `grace` seconds to exit, then kills the subprocess's process
    group and every marked process that is left. Returns the command lines that had to be killed."""
    deadline = time.monotonic() + grace
    left = marked_processes(mark)
    while left and time.monotonic() < deadline:
        time.sleep(0.2)
        left = marked_processes(mark)
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    for pid in left:
        try:
            os.kill(pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
    return sorted(left.values())


def measure(framework: str, python: str, mode: str, spec: dict, workdir: Path, worker: Path, env: dict,
            timeout: float, run_number: int) -> dict:
    run_dir = workdir / f"{run_number:03d}"  # short: Ray's sockets live below it
    run_dir.mkdir()
    mark = f"{os.getpid()}-{run_number}"
    cmd = [python, str(worker), framework, mode, json.dumps(dict(spec, run_dir=str(run_dir)))]
    load_before = os.getloadavg()[0]  # per run, so samples taken while the machine was busy stand out
    started = time.monotonic()
    proc = subprocess.Popen(cmd, cwd=run_dir, env=dict(env, **{MARK: mark}), stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, start_new_session=True)
    exited = timed_out = False
    try:
        out, _ = proc.communicate(timeout=timeout)
        exited = True
    except subprocess.TimeoutExpired:
        timed_out = True
        os.killpg(proc.pid, signal.SIGKILL)
        out, _ = proc.communicate()
    finally:
        # Grace only for a process that exited by itself; after a timeout or Ctrl-C, kill at once.
        left = reap(proc, mark, GRACE if exited else 0)
    if timed_out:
        left = []  # killed on purpose with the timed-out process: not a framework's leftovers
    wall = time.monotonic() - started
    results = [line[len("RESULT "):] for line in out.splitlines() if line.startswith("RESULT ")]
    if timed_out or proc.returncode != 0 or not results:
        why = f"timed out after {timeout:.0f}s" if timed_out else f"exit {proc.returncode}"
        return {"framework": framework, "mode": mode, "error": f"{why}\n{tail(out)}", "left_behind": left,
                "process_seconds": wall, "load_before": load_before, "load_after": os.getloadavg()[0]}
    result = json.loads(results[-1])
    result.update(process_seconds=wall, left_behind=left, load_before=load_before, load_after=os.getloadavg()[0])
    return result


# ---------------------------------------------------------------------------------------------
# The table: one row per figure. value(run) picks the figure from a run's result.

def rows_for(spec: dict) -> list[dict]:
    rows = [{"name": f"no-op tasks, {spec['tasks']} at once", "unit": "tasks/s", "mode": "noop", "higher": True,
             "value": lambda r: r["tasks_per_second"]}]
    for i, (nbytes, n) in enumerate(spec["sizes"]):
        rows.append({"name": f"{_bytes(nbytes)} argument, {n} tasks", "unit": "tasks/s", "mode": "args",
                     "higher": True, "value": lambda r, i=i: r["sizes"][i]["tasks_per_second"]})
    rows += [
        {"name": f"chain of {spec['chain']}: median link", "unit": "us", "mode": "chain", "higher": False,
         "value": lambda r: r["median_link_us"]},
        {"name": f"chain of {spec['chain']}: wall / {spec['chain']}", "unit": "us", "mode": "chain",
         "higher": False, "value": lambda r: r["wall_us_per_task"]},
        {"name": f"round trip, median of {spec['roundtrip']}", "unit": "us", "mode": "roundtrip",
         "higher": False, "value": lambda r: r["median_us"]},
        {"name": "start: import -> first result", "unit": "ms", "mode": None, "higher": False,
         "value": lambda r: r["ready_ms"]},
    ]
    return rows


def _bytes(n: int) -> str:
    for unit, scale in (("MB", 1 << 20), ("KB", 1 << 10)):
        if n >= scale and n % scale == 0:
            return f"{n // scale} {unit}"
    return f"{n} B"


def build_report(runs: dict, spec: dict, frameworks: list, repeats: int, command: str, peer_versions: dict,
                 pythons: dict, load_at_start: float) -> dict:
    table = []
    for row in rows_for(spec):
        if row["mode"] is not None and row["mode"] not in spec["workloads"]:
            continue
        values = {}
        for fw in frameworks:
            tried = [r for rs in runs[fw].values() for r in rs if row["mode"] in (None, r["mode"])]
            samples = [row["value"](r) for r in tried if "error" not in r]
            values[fw] = {"median": statistics.median(samples) if samples else None, "samples": samples,
                          "failed": len(tried) - len(samples)}
        ratios = {}
        mine = values.get("pervade", {}).get("median")
        for peer in frameworks:
            theirs = values[peer]["median"]
            if peer != "pervade" and mine and theirs:
                ratios[peer] = mine / theirs if row["higher"] else theirs / mine
        table.append({"workload": f"{row['name']} ({row['unit']})", "unit": row["unit"],
                      "higher_is_better": row["higher"], "values": values, "ratios": ratios})

    status = {}
    for fw in frameworks:
        all_runs = [r for rs in runs[fw].values() for r in rs]
        failed = [r for r in all_runs if "error" in r]
        good = [r for r in all_runs if "error" not in r]
        status[fw] = {"runs": len(all_runs), "failed": len(failed),
                      "version": good[0]["version"] if good else peer_versions.get(fw, "?"),
                      "python": good[0]["python"] if good else "?", "interpreter": pythons[fw],
                      "errors": [f"{r['mode']}: {r['error']}" for r in failed],
                      "left_behind": [f"{r['mode']}: {c}" for r in all_runs for c in r.get("left_behind", [])]}
    return {
        "benchmark": "benchmarks/compare_htex.py",
        "date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
        "command": command,
        "cwd": os.getcwd(),
        "repository": _git_describe(),
        "nproc": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        "cpu": cpu_model(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        # Other work on the machine skews everything; the 1-minute load average tells whether there was any.
        "load_average": {"start": load_at_start, "end": os.getloadavg()[0],
                         "highest": max([load_at_start] + [r["load_after"] for rs in runs.values()
                                                           for mode in rs.values() for r in mode])},
        "frameworks": status,
        "settings": {**spec, "repeats": repeats, "statistic": "median of repeats"},
        "rows": table,
        "runs": runs,
    }


def _git_describe() -> str:
    try:
        out = subprocess.run(["git", "-C", str(REPO), "describe", "--always", "--dirty"], capture_output=True,
                             text=True, timeout=10)
        return out.stdout.strip() or "?"
    except (OSError, subprocess.SubprocessError):
        return "?"


def _cell(value: dict) -> str:
    if value["median"] is not None:
        return fmt_number(value["median"])
    return "FAILED" if value["failed"] else "-"  # "-": not run (skipped after failures, or interrupted)


def _status_text(s: dict) -> str:
    if s["runs"] == 0:
        return "not run"
    if not s["failed"]:
        return f"ok ({s['runs']} runs)"
    first = s["errors"][0].splitlines()
    detail = " / ".join(line.strip() for line in first[:1] + first[-1:])
    return f"FAILED {s['failed']} of {s['runs']} runs: {detail}"


def _cells(report: dict) -> tuple[list[str], list[list[str]]]:
    fws = list(report["frameworks"])
    peers_run = [p for p in fws if p != "pervade"]
    headers = ["workload", *fws] + ([f"x {p}" for p in peers_run] if "pervade" in fws else [])
    body = []
    for row in report["rows"]:
        cells = [row["workload"]] + [_cell(row["values"][fw]) for fw in fws]
        if "pervade" in fws:
            cells += [f"{row['ratios'][p]:.2f}" if p in row["ratios"] else "-" for p in peers_run]
        body.append(cells)
    return headers, body


RATIO_NOTE = ("x peer = how many times better pervade is than that peer: pervade/peer for tasks/s, "
              "peer/pervade for times, so above 1 means pervade is better.")


def _settings_text(report: dict) -> str:
    s = report["settings"]
    return (f"{s['workers']} workers per framework, HTEX encrypted={s['encrypted']}, warm-up {s['warmup']} tasks, "
            f"{s['repeats']} repeat(s) in fresh processes; values are the median of the repeats")


def _load_text(report: dict) -> str:
    load = report["load_average"]
    return (f"1-minute load average {load['start']:.2f} at the start, {load['end']:.2f} at the end, "
            f"{load['highest']:.2f} at most after a measurement")


def print_table(report: dict) -> None:
    print("pervade HighThroughputExecutor vs Parsl HTEX, Dask distributed, Ray -- same machine, same run")
    print(f"date:      {report['date']}")
    print(f"command:   {report['command']}   (in {report['cwd']}, repository at {report['repository']})")
    print(f"machine:   nproc={report['nproc']}, {report['cpu']}, {report['platform']}, python {report['python']}")
    print(f"settings:  {_settings_text(report)}")
    print(f"load:      {_load_text(report)}")
    print()
    width = max(len(st["version"]) for st in report["frameworks"].values())
    for fw, st in report["frameworks"].items():
        print(f"  {fw:<8} {st['version']:<{width}}  {_status_text(st)}")
    print()
    headers, body = _cells(report)
    widths = [max(len(h), *(len(c[i]) for c in body)) for i, h in enumerate(headers)]
    print(" | ".join(f"{h:{'<' if i == 0 else '>'}{w}}" for i, (h, w) in enumerate(zip(headers, widths))))
    print("-+-".join("-" * w for w in widths))
    for cells in body:
        print(" | ".join(f"{c:{'<' if i == 0 else '>'}{w}}" for i, (c, w) in enumerate(zip(cells, widths))))
    print()
    print(RATIO_NOTE)
    _print_problems(report, print)
    print("every sample, in run order:")
    for row in report["rows"]:
        for fw, v in row["values"].items():
            print(f"  {row['workload']:<{widths[0]}}  {fw:<8} {', '.join(fmt_number(x) for x in v['samples']) or '-'}")


def _print_problems(report: dict, out) -> None:
    for fw, st in report["frameworks"].items():
        for err in st["errors"]:
            out(f"{fw} FAILED in {err.rstrip()}")
        if st["left_behind"]:
            out(f"{fw}: {len(st['left_behind'])} process(es) still running after the measured process exited "
                f"(+{GRACE:.0f} s), killed: " + "; ".join(st["left_behind"][:5]))


def markdown(report: dict) -> str:
    headers, body = _cells(report)
    fw = report["frameworks"]
    lines = [f"## HighThroughputExecutor vs Parsl, Dask and Ray ({report['date'][:10]})", "",
             "```", report["command"], "```", "",
             f"Machine: {report['nproc']} cores ({report['cpu']}), {report['platform']}, "
             f"Python {report['python']}. Repository at {report['repository']}. Load: {_load_text(report)}.", "",
             "Versions: " + ", ".join(f"{name} {st['version']}" for name, st in fw.items()) + ".", "",
             f"Settings: {_settings_text(report)}. {RATIO_NOTE}", ""]
    bad = [f"{name}: {_status_text(st)}" for name, st in fw.items() if st["failed"] or not st["runs"]]
    if bad:
        lines += ["**Not all frameworks ran:** " + "; ".join(bad), ""]
    lines.append("| " + " | ".join(headers) + " |")
    lines.append("| " + " | ".join(["---"] + ["---:"] * (len(headers) - 1)) + " |")
    lines += ["| " + " | ".join(cells) + " |" for cells in body]
    problems = []
    _print_problems(report, problems.append)
    if problems:
        lines += [""] + [f"- {p.splitlines()[0]}" for p in problems]
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------------------------------------

def parse_sizes(text: str) -> list[list[int]]:
    """'1:5000,1024:5000' -> [[1, 5000], [1024, 5000]] (bytes:tasks)."""
    sizes = []
    for part in text.split(","):
        nbytes, _, n = part.partition(":")
        sizes.append([int(nbytes), int(n)])
    return sizes


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description="pervade HTEX vs Parsl HTEX, Dask and Ray, same workloads, same run",
                                     formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    parser.add_argument("--quick", action="store_true", help="smoke run: small N, one repeat")
    parser.add_argument("--json", nargs="?", const="-", metavar="FILE",
                        help="write the results as one JSON object to FILE (stdout without FILE)")
    parser.add_argument("--markdown", nargs="?", const="-", metavar="FILE",
                        help="write a section for BENCHMARKS.md to FILE (stdout without FILE)")
    parser.add_argument("--frameworks", default=",".join(FRAMEWORKS),
                        help=f"comma-separated subset of {','.join(FRAMEWORKS)} (default all)")
    parser.add_argument("--repeats", type=int, help="fresh-process runs per workload and framework (default 3, quick 1)")
    parser.add_argument("--workers", type=int, default=2, help="workers per framework (default 2)")
    parser.add_argument("--tasks", type=int, help="no-op tasks (default 20000, quick 1000)")
    parser.add_argument("--sizes", help="argument sizes as bytes:tasks,... "
                                         "(default 1:5000,1024:5000,102400:2000,1048576:500; quick a tenth)")
    parser.add_argument("--chain", type=int, help="links in the dependency chain (default 1000, quick 100)")
    parser.add_argument("--roundtrip", type=int, help="measured round trips (default 300, quick 50)")
    parser.add_argument("--workloads", default="noop,args,chain,roundtrip", help="comma-separated subset to run")
    parser.add_argument("--unencrypted", action="store_true", help="HTEX with encrypted=False for pervade and Parsl")
    parser.add_argument("--venv", type=Path, default=peers.DEFAULT_VENV, help=f"peers' venv (default {peers.DEFAULT_VENV})")
    parser.add_argument("--timeout", type=float, default=DEFAULT_TIMEOUT,
                        help=f"seconds allowed per measurement subprocess (default {DEFAULT_TIMEOUT})")
    parser.add_argument("--show-worker", action="store_true", help="print the worker source and exit")
    args = parser.parse_args(argv)
    if args.show_worker:
        print(WORKER.strip())
        return 0

    frameworks = [f.strip() for f in args.frameworks.split(",") if f.strip()]
    workloads = [w.strip() for w in args.workloads.split(",") if w.strip()]
    if not frameworks or set(frameworks) - set(FRAMEWORKS):
        parser.error(f"--frameworks takes names from {','.join(FRAMEWORKS)}")
    if not workloads or set(workloads) - {"noop", "args", "chain", "roundtrip"}:
        parser.error("--workloads takes names from noop,args,chain,roundtrip")
    frameworks = [f for f in FRAMEWORKS if f in frameworks]  # fixed column order
    quick = args.quick
    repeats = args.repeats or (1 if quick else 3)
    try:
        sizes = parse_sizes(args.sizes or ("1:500,1024:500,102400:200,1048576:50" if quick
                                           else "1:5000,1024:5000,102400:2000,1048576:500"))
    except ValueError:
        parser.error("--sizes takes bytes:tasks pairs separated by commas, e.g. 1:5000,1048576:500")
    spec = {"workloads": workloads, "workers": args.workers, "encrypted": not args.unencrypted,
            "tasks": args.tasks or (1000 if quick else 20000), "sizes": sizes,
            "chain": args.chain or (100 if quick else 1000),
            "roundtrip": args.roundtrip or (50 if quick else 300), "roundtrip_warmup": 20,
            "warmup": 50 if quick else 200}
    if (repeats < 1 or args.workers < 1 or spec["tasks"] < 1 or spec["chain"] < 2 or spec["roundtrip"] < 1
            or any(b < 0 or n < 1 for b, n in spec["sizes"])):
        parser.error("--repeats, --workers, --tasks, --sizes, --roundtrip must be positive, --chain at least 2")
    command = shlex.join(getattr(sys, "orig_argv", [sys.executable, *sys.argv]))

    try:
        pythons = {"pervade": sys.executable}
        peer_versions: dict = {}
        if set(frameworks) & set(PEERS):
            wanted = {m: p for m, p in PEER_PACKAGES.items()
                      if m in frameworks or (m == "distributed" and "dask" in frameworks)}
            venv_python, peer_versions = peers.ensure_peers(args.venv.resolve(), wanted, INSTALL_TIMEOUT)
            pythons.update({p: str(venv_python) for p in PEERS})
        if "pervade" in frameworks:
            check = subprocess.run([sys.executable, "-c", "import pervade"], capture_output=True, text=True,
                                   cwd=tempfile.gettempdir())
            if check.returncode != 0:
                raise BenchError(f"`import pervade` fails in {sys.executable} (run `make python` first):\n"
                                 f"{tail(check.stderr)}")
    except BenchError as e:
        print(f"compare_htex: error: {e}", file=sys.stderr)
        return 1

    # Each interpreter sees only its own site-packages; the peers' bin/ comes first on PATH,
    # where Parsl looks for process_worker_pool.py and interchange.py.
    base_env = dict(os.environ, PARSL_TRACKING="false", RAY_USAGE_STATS_ENABLED="0", PYTHONDONTWRITEBYTECODE="1")
    base_env.pop("PYTHONPATH", None)
    peer_env = dict(base_env, PATH=f"{args.venv.resolve() / 'bin'}{os.pathsep}{base_env.get('PATH', '')}",
                    VIRTUAL_ENV=str(args.venv.resolve()))
    runs: dict[str, dict[str, list[dict]]] = {fw: {} for fw in frameworks}
    load_at_start = os.getloadavg()[0]
    failures_in_a_row = dict.fromkeys(frameworks, 0)
    run_number = 0
    interrupted = False
    with tempfile.TemporaryDirectory(prefix="htex-") as tmp:
        workdir = Path(tmp)
        worker = workdir / "worker.py"
        worker.write_text(WORKER)
        try:
            for mode in workloads:
                for rep in range(repeats):
                    order = frameworks[rep % len(frameworks):] + frameworks[:rep % len(frameworks)]
                    for fw in order:
                        if failures_in_a_row[fw] >= 2:
                            continue  # it failed twice in a row: do not spend the timeout on it again
                        run_number += 1
                        r = measure(fw, pythons[fw], mode, spec, workdir, worker,
                                    base_env if fw == "pervade" else peer_env, args.timeout, run_number)
                        runs[fw].setdefault(mode, []).append(r)
                        failures_in_a_row[fw] = failures_in_a_row[fw] + 1 if "error" in r else 0
                        log(f"[run] {mode:<9} {fw:<7} #{rep + 1}: {describe(r)}")
        except KeyboardInterrupt:
            interrupted = True  # report what was measured so far
            log("compare_htex: interrupted; reporting what was measured")

    report = build_report(runs, spec, frameworks, repeats, command, peer_versions, pythons, load_at_start)
    on_stdout = False
    for option, text in ((args.json, lambda: json.dumps(report, indent=2, default=str)),
                         (args.markdown, lambda: markdown(report))):
        if option == "-":
            print(text())
            on_stdout = True
        elif option:
            Path(option).write_text(text() + "\n")
            log(f"[report] wrote {option}")
    if not on_stdout:
        print_table(report)
    # A framework that failed is reported in the table, not by the exit status.
    return 130 if interrupted else 0


def describe(r: dict) -> str:
    if "error" in r:
        return "FAILED: " + r["error"].splitlines()[0]
    text = f"ready {r['ready_ms']:.0f} ms, "
    if r["mode"] == "noop":
        text += f"{r['tasks']} tasks {r['tasks_per_second']:.0f}/s"
    elif r["mode"] == "args":
        text += ", ".join(f"{_bytes(s['bytes'])} {s['tasks_per_second']:.0f}/s" for s in r["sizes"])
    elif r["mode"] == "chain":
        text += f"median link {r['median_link_us']:.0f} us, wall/N {r['wall_us_per_task']:.0f} us"
    else:
        text += f"median {r['median_us']:.0f} us, p99 {r['p99_us']:.0f} us"
    if r.get("left_behind"):
        text += f"; {len(r['left_behind'])} process(es) left behind, killed"
    return text + f" [load {r['load_before']:.1f} -> {r['load_after']:.1f}]"


if __name__ == "__main__":
    sys.exit(main())
