"""Memory of finished tasks from Python: submit N no-op apps in batches, then report the
resident memory per finished task while the futures are held, and after they are dropped.

  python benchmarks/memory.py [--tasks 1000000] [--batch 100000] [--json]
  python benchmarks/memory.py --rounds 4 --tasks 200000   # RSS held/dropped per round: leaks show as growth
"""

import argparse
import gc
import json
import time

import pervade as parsl


def rss_mb() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


@parsl.python_app
def noop():
    return 7


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--tasks", type=int, default=1_000_000)
    parser.add_argument("--batch", type=int, default=100_000)
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--rounds", type=int, default=0, help="repeat: submit --tasks at once, wait, drop")
    args = parser.parse_args()
    if args.rounds:
        return rounds(args)
    with parsl.load(parsl.Config(executors=[parsl.ThreadPoolExecutor(max_threads=2)], initialize_logging=False)):
        noop().result()
        gc.collect()
        base = rss_mb()
        t0 = time.perf_counter()
        held = []
        for start in range(0, args.tasks, args.batch):
            held.extend(noop() for _ in range(min(args.batch, args.tasks - start)))
            parsl.wait_for_current_tasks()
        assert all(f.result() == 7 for f in held)
        elapsed = time.perf_counter() - t0
        gc.collect()
        with_futures = rss_mb()
        del held
        gc.collect()
        dropped = rss_mb()
    result = {"tasks": args.tasks, "seconds": elapsed, "rss_base_mb": base, "rss_with_futures_mb": with_futures,
              "bytes_per_finished_task_with_future": (with_futures - base) * 1024 * 1024 / args.tasks,
              "rss_after_drop_mb": dropped}
    if args.json:
        print(json.dumps(result))
    else:
        for k, v in result.items():
            print(f"{k}: {v:,.1f}" if isinstance(v, float) else f"{k}: {v}")


def rounds(args):
    with parsl.load(parsl.Config(executors=[parsl.ThreadPoolExecutor(max_threads=2)], initialize_logging=False)):
        for r in range(args.rounds):
            held = [noop() for _ in range(args.tasks)]
            parsl.wait_for_current_tasks()
            held_mb = rss_mb()
            del held
            gc.collect()
            print(f"round {r + 1}: {args.tasks} tasks, RSS held {held_mb:,.0f} MB, dropped {rss_mb():,.0f} MB", flush=True)


if __name__ == "__main__":
    main()
