"""CPU time per task of each thread of the driver: N no-op apps submitted in one loop, then
gathered. CPU time, unlike throughput, hardly moves when other programs share the machine, so it
shows what a change to the submission or completion path costs.

  python benchmarks/thread_cpu.py --tasks 200000                       # ThreadPoolExecutor, 2 threads
  python benchmarks/thread_cpu.py --tasks 50000 --config benchmarks/configs/htex_local.py

Prints one JSON object: submit_cpu_us (the submitting thread, during the loop), process_cpu_us,
tasks_per_second (wall, submission to last result) and threads_us (each thread by name, e.g.
pv-completion, pv-reactor; "python" is the main thread), all per task.
"""

import argparse
import importlib.util
import json
import os
import time

import pervade as parsl


@parsl.python_app
def noop(i):
    return 7


def thread_cpu() -> dict:
    """CPU seconds of each thread of this process, summed by thread name (/proc)."""
    tick = os.sysconf("SC_CLK_TCK")
    out = {}
    for tid in os.listdir("/proc/self/task"):
        try:
            with open(f"/proc/self/task/{tid}/comm") as f:
                name = f.read().strip()
            with open(f"/proc/self/task/{tid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:  # the thread ended meanwhile
            continue
        out[name] = out.get(name, 0.0) + (int(fields[11]) + int(fields[12])) / tick  # utime + stime
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tasks", type=int, default=200000)
    parser.add_argument("--config", help="a Python file defining `config` (default: 2 threads)")
    args = parser.parse_args()
    if args.config:
        spec = importlib.util.spec_from_file_location("bench_config", args.config)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        config = module.config
    else:
        config = parsl.Config(executors=[parsl.ThreadPoolExecutor(max_threads=2)], initialize_logging=False)
    dfk = parsl.load(config)
    try:
        [f.result() for f in [noop(i) for i in range(2000)]]  # warm-up: pools connected, caches filled
        before, t0, p0 = thread_cpu(), time.perf_counter(), time.process_time()
        c0 = time.thread_time()
        futures = [noop(i) for i in range(args.tasks)]
        c1 = time.thread_time()
        [f.result() for f in futures]
        t1, p1, after = time.perf_counter(), time.process_time(), thread_cpu()
    finally:
        dfk.cleanup()
    n = args.tasks
    print(json.dumps({"tasks": n, "submit_cpu_us": (c1 - c0) / n * 1e6, "process_cpu_us": (p1 - p0) / n * 1e6,
                      "tasks_per_second": n / (t1 - t0),
                      "threads_us": {k: round((v - before.get(k, 0.0)) / n * 1e6, 3) for k, v in after.items()
                                     if v > before.get(k, 0.0)}}))


if __name__ == "__main__":
    main()
