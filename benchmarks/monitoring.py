#!/usr/bin/env python3
"""What monitoring costs: no-op throughput with the monitoring database off and on, pervade vs
Parsl with MonitoringHub, and the row counts of a 1,000,000-task run.

    python3 benchmarks/monitoring.py                 # everything (Parsl from benchmarks/.venv-peers)
    python3 benchmarks/monitoring.py --quick         # small N, one repeat, 20,000-task count run
    python3 benchmarks/monitoring.py --no-parsl      # pervade only (no PyPI needed)
    python3 benchmarks/monitoring.py --million 0     # skip the count run
    python3 benchmarks/monitoring.py --executors htex  # pervade's HTEX only
    python3 benchmarks/monitoring.py --breakdown       # also CPU per task by thread and process
    python3 benchmarks/monitoring.py --writer-core     # the run on CPU 0, the database writer on CPU 1

Every measurement is a fresh subprocess running DRIVER below: `import pervade as parsl` (this
interpreter) or `import parsl` (the peers' venv, made by peers.py with `parsl[monitoring]`).
The executor is HighThroughputExecutor(label="htex", max_workers_per_node=2 (--workers),
provider=LocalProvider(init_blocks=1)) or ThreadPoolExecutor(max_threads=2); monitoring is
MonitoringHub(resource_monitoring_interval=30) (Parsl's default, resource monitoring on) with
the database in a fresh run_dir. Each process first waits for one task, then a warm-up batch of
200, then times --tasks no-op tasks (submit all, then result() of each): tasks/s = N / time.
Repeats alternate off/on; the table shows the median. Each run also reports the driver's CPU
time per timed task, from the start of the timed tasks to the end of cleanup() (all its threads:
engine, interchange, and the monitoring writer, which may finish its rows in cleanup()), steadier
than throughput on a shared machine. After a monitored run the driver also
counts the database's task rows (it must equal the tasks submitted).

The count run submits --million no-op tasks on the thread pool with monitoring on, in batches of
50,000 (bounded memory), cleans up, and checks: task rows == tasks, try rows == tasks, status
rows == 5 per task (pending, launched, running, running_ended, exec_done).
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import peers
from peers import BenchError, log

DRIVER = r'''
import json, os, sqlite3, sys, time
spec = json.loads(sys.argv[1])

def cpu_by_thread():
    """CPU seconds of this process's threads (by name; "main" for the main thread) and of its
    descendants ("pool: NAME"), from /proc."""
    tick, me, parent = os.sysconf("SC_CLK_TCK"), os.getpid(), {}
    for p in filter(str.isdigit, os.listdir("/proc")):
        try:
            text = open(f"/proc/{p}/stat").read()
        except OSError:
            continue
        parent[int(p)] = int(text[text.rfind(")") + 2:].split()[1])
    def ours(p):
        while p > 1 and p != me:
            p = parent.get(p, 0)
        return p == me
    out = {}
    for p in filter(ours, parent):
        try:
            for t in os.listdir(f"/proc/{p}/task"):
                text = open(f"/proc/{p}/task/{t}/stat").read()
                name, fields = text[text.find("(") + 1:text.rfind(")")], text[text.rfind(")") + 2:].split()
                key = ("main" if int(t) == me else name) if p == me else "pool: " + name
                out[key] = out.get(key, 0.0) + (int(fields[11]) + int(fields[12])) / tick
        except OSError:
            continue
    return out
if spec["framework"] == "parsl":
    import parsl
    from parsl.monitoring import MonitoringHub
    from parsl.providers import LocalProvider
    from parsl.executors import HighThroughputExecutor, ThreadPoolExecutor
else:
    import pervade as parsl
    from pervade.monitoring import MonitoringHub
    from pervade import LocalProvider, HighThroughputExecutor, ThreadPoolExecutor

@parsl.python_app
def noop():
    return 7

if spec.get("writer_core"):  # the run on CPU 0 (threads and processes started from here inherit it)
    os.sched_setaffinity(0, {0})

if spec["executor"] == "htex":
    ex = HighThroughputExecutor(label="htex", max_workers_per_node=spec.get("workers", 2), address="127.0.0.1",
                                provider=LocalProvider(init_blocks=1, min_blocks=1, max_blocks=1))
else:
    ex = ThreadPoolExecutor(label="threads", max_threads=2)
mon = MonitoringHub(resource_monitoring_enabled=spec.get("resources", True),
                    resource_monitoring_interval=30) if spec["monitoring"] else None
run_dir = spec["run_dir"]
parsl.load(parsl.Config(executors=[ex], run_dir=run_dir, monitoring=mon, initialize_logging=False,
                        usage_tracking=0))
noop().result()
if spec.get("writer_core"):  # ... and the monitoring writer alone on CPU 1
    for tid in os.listdir("/proc/self/task"):
        if open(f"/proc/self/task/{tid}/comm").read().strip() == "pv-monitor-db":
            os.sched_setaffinity(int(tid), {1})
[f.result() for f in [noop() for _ in range(200)]]
n = spec["tasks"]
batch = spec.get("batch") or n
threads_before = cpu_by_thread() if spec.get("breakdown") else {}
start, cpu_start = time.perf_counter(), time.process_time()
done = 0
while done < n:
    k = min(batch, n - done)
    futures = [noop() for _ in range(k)]
    for f in futures:
        assert f.result() == 7
    done += k
elapsed = time.perf_counter() - start
threads_after = cpu_by_thread() if spec.get("breakdown") else {}
parsl.dfk().cleanup()
driver_cpu = time.process_time() - cpu_start  # with cleanup: a writer behind the run catches up there
out = {"tasks_per_second": n / elapsed, "seconds": elapsed, "driver_cpu_us_per_task": driver_cpu / n * 1e6,
       "thread_us_per_task": {k: (v - threads_before.get(k, 0.0)) / n * 1e6 for k, v in threads_after.items()}}
if spec["monitoring"]:
    with sqlite3.connect(os.path.join(run_dir, "monitoring.db")) as db:
        out["task_rows"] = db.execute("SELECT count(*) FROM task").fetchone()[0]
        out["try_rows"] = db.execute("SELECT count(*) FROM try").fetchone()[0]
        out["status_rows"] = db.execute("SELECT count(*) FROM status").fetchone()[0]
        out["status_by_name"] = dict(db.execute("SELECT task_status_name, count(*) FROM status GROUP BY 1"))
print("RESULT " + json.dumps(out))
'''


def measure(python: str, spec: dict, timeout: float, env=None) -> dict:
    with tempfile.TemporaryDirectory(prefix="pervade-mon-bench-") as tmp:
        spec = dict(spec, run_dir=os.path.join(tmp, "runinfo"))
        code, out = peers.run([python, "-c", DRIVER, json.dumps(spec)], timeout=timeout, cwd=tmp, env=env)
    for line in out.splitlines():
        if line.startswith("RESULT "):
            return json.loads(line[len("RESULT "):])
    raise BenchError(f"{spec['framework']} run failed (exit {code}):\n{peers.tail(out)}")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--quick", action="store_true")
    p.add_argument("--tasks", type=int, help="timed no-op tasks per run (default 20000; --quick 3000)")
    p.add_argument("--parsl-tasks", type=int, help="timed tasks for Parsl runs (default 3000; --quick 1000)")
    p.add_argument("--repeats", type=int, help="runs per configuration (default 3; --quick 1)")
    p.add_argument("--million", type=int, help="tasks of the count run (default 1000000; --quick 20000; 0: skip)")
    p.add_argument("--no-parsl", action="store_true", help="skip Parsl (no PyPI needed)")
    p.add_argument("--executors", default="htex,threads", help="pervade's executors to measure (default htex,threads)")
    p.add_argument("--workers", type=int, default=2,
                   help="HTEX max_workers_per_node (default 2: one per core of this machine)")
    p.add_argument("--breakdown", action="store_true",
                   help="also print pervade's CPU per task by thread (driver) and process (pool, workers), "
                        "off and on, from /proc between the first and the last timed task")
    p.add_argument("--writer-core", action="store_true",
                   help="run pervade on CPU 0 and its monitoring writer thread alone on CPU 1: what monitoring "
                        "costs the run when the writer has a core to itself (needs 2 CPUs)")
    p.add_argument("--venv", type=Path, default=peers.DEFAULT_VENV)
    p.add_argument("--timeout", type=float, default=1800)
    args = p.parse_args(argv)
    if args.workers < 1:
        p.error(f"--workers must be at least 1, got {args.workers}")
    if args.writer_core and not {0, 1} <= os.sched_getaffinity(0):
        p.error("--writer-core needs CPUs 0 and 1")
    tasks = args.tasks or (3000 if args.quick else 20000)
    parsl_tasks = args.parsl_tasks or (1000 if args.quick else 3000)
    repeats = args.repeats or (1 if args.quick else 3)
    million = (20000 if args.quick else 1_000_000) if args.million is None else args.million
    print(f"command: {shlex.join([sys.executable, *sys.argv])}")

    rows = []
    breakdowns = []  # (executor, {monitoring: [per-run {thread: us per task}]})
    try:
        configs = [("pervade", e) for e in args.executors.split(",")]
        pythons = {"pervade": sys.executable}
        env = None
        if not args.no_parsl:
            venv_python, versions = peers.ensure_peers(args.venv.resolve(),
                                                       {"parsl": "parsl[monitoring]", "sqlalchemy": "parsl[monitoring]"},
                                                       args.timeout)
            pythons["parsl"] = str(venv_python)
            configs.append(("parsl", "htex"))
            print(f"parsl {versions['parsl']} from {args.venv}")
        for framework, executor in configs:
            results = {False: [], True: []}
            cpu = {False: [], True: []}
            threads = {False: [], True: []}
            n = parsl_tasks if framework == "parsl" else tasks
            if framework == "parsl":  # Parsl finds process_worker_pool.py on PATH
                env = dict(os.environ, PATH=f"{Path(pythons['parsl']).parent}:{os.environ['PATH']}")
            for r in range(repeats):
                for monitoring in ((False, True) if r % 2 == 0 else (True, False)):
                    res = measure(pythons[framework], {"framework": framework, "executor": executor,
                                                       "monitoring": monitoring, "tasks": n,
                                                       "workers": args.workers,
                                                       "breakdown": args.breakdown and framework == "pervade",
                                                       "writer_core": args.writer_core and framework == "pervade"},
                                  args.timeout, env if framework == "parsl" else None)
                    log(f"{framework} {executor} monitoring={'on' if monitoring else 'off'}: "
                        f"{res['tasks_per_second']:.0f} tasks/s, driver CPU {res['driver_cpu_us_per_task']:.1f} us/task "
                        f"(load average {os.getloadavg()[0]:.1f})")
                    if monitoring and res["task_rows"] != n + 201:
                        raise BenchError(f"{framework}: {res['task_rows']} task rows for {n + 201} tasks")
                    results[monitoring].append(res["tasks_per_second"])
                    cpu[monitoring].append(res["driver_cpu_us_per_task"])
                    threads[monitoring].append(res.get("thread_us_per_task", {}))
            off, on = statistics.median(results[False]), statistics.median(results[True])
            if args.breakdown and framework == "pervade":
                breakdowns.append((executor, threads))
            rows.append((framework, executor, n, off, on, statistics.median(cpu[False]), statistics.median(cpu[True])))
        if million:
            res = measure(sys.executable, {"framework": "pervade", "executor": "threads", "monitoring": True,
                                           "tasks": million, "batch": 50000}, args.timeout * 4)
            total = million + 201
            ok = (res["task_rows"] == total and res["try_rows"] == total and res["status_rows"] == 5 * total)
            print(f"\ncount run: {million} timed + 201 warm-up tasks, monitoring on, threads: "
                  f"{res['tasks_per_second']:.0f} tasks/s; task rows {res['task_rows']}, try rows {res['try_rows']}, "
                  f"status rows {res['status_rows']} {res['status_by_name']} -> {'OK' if ok else 'MISMATCH'}")
            if not ok:
                return 1
    except BenchError as e:
        print(f"monitoring benchmark: error: {e}", file=sys.stderr)
        return 1

    print(f"\n| framework | executor | tasks | monitoring off (tasks/s) | on (tasks/s) | on/off "
          f"| driver CPU off (µs/task) | on |")
    print("|---|---|---:|---:|---:|---:|---:|---:|")
    for framework, executor, n, off, on, cpu_off, cpu_on in rows:
        print(f"| {framework} | {executor} | {n} | {off:,.0f} | {on:,.0f} | {on / off:.2f} | {cpu_off:.1f} | {cpu_on:.1f} |")
    for executor, threads in breakdowns:
        print(f"\nCPU per task by thread, pervade {executor} (µs, medians; the writer's work after the last "
              f"result, done in cleanup(), is not in it):\n")
        print("| thread | off | on | on - off |")
        print("|---|---:|---:|---:|")
        names = sorted({k for runs in threads.values() for run in runs for k in run})
        med = {m: {k: statistics.median(run.get(k, 0.0) for run in threads[m]) for k in names} for m in (False, True)}
        for k in sorted(names, key=lambda k: -med[True][k]):
            if max(med[False][k], med[True][k]) >= 0.05:
                print(f"| {k} | {med[False][k]:.1f} | {med[True][k]:.1f} | {med[True][k] - med[False][k]:+.1f} |")
        print(f"| all | {sum(med[False].values()):.1f} | {sum(med[True].values()):.1f} | "
              f"{sum(med[True].values()) - sum(med[False].values()):+.1f} |")
    pv = {e: on for f, e, n, off, on, *_ in rows if f == "pervade"}
    pa = {e: on for f, e, n, off, on, *_ in rows if f == "parsl"}
    if "htex" in pv and "htex" in pa:
        print(f"\npervade/Parsl, HTEX with monitoring on: {pv['htex'] / pa['htex']:.1f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
