"""Back-pressure: a loop submits N no-op apps without keeping their futures, with or without
Config(max_unfinished_tasks=...), and reports the time and the peak resident memory.

  python benchmarks/backpressure.py --tasks 10000000 --limit 10000
  python benchmarks/backpressure.py --tasks 1000000 --limit 0          # no limit, for contrast
  python benchmarks/backpressure.py --tasks 1000000 --limit 10000 --callback   # count in a done-callback
  python benchmarks/backpressure.py --tasks 1000000 --sleep 0.0001 --limit 0   # tasks slower than the loop

Peak RSS is the process's high-water mark (getrusage ru_maxrss, as /usr/bin/time -v reports).
"""

import argparse
import json
import resource
import time

from memory import rss_mb

import pervade as parsl


@parsl.python_app
def noop():
    return 7


@parsl.python_app
def nap(seconds):
    time.sleep(seconds)  # releases the GIL: a consumer slower than the submitting loop
    return 7


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tasks", type=int, default=10_000_000)
    parser.add_argument("--limit", type=int, default=10_000, help="max_unfinished_tasks; 0: no limit")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--callback", action="store_true", help="count results in a done-callback")
    parser.add_argument("--sleep", type=float, default=0.0, help="each task sleeps this long (s) instead of a no-op")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()

    config = parsl.Config(executors=[parsl.ThreadPoolExecutor(max_threads=args.threads)], initialize_logging=False,
                          max_unfinished_tasks=args.limit or None)
    counted = [0]

    def count(f):
        counted[0] += f.result() == 7

    app = (lambda: nap(args.sleep)) if args.sleep else noop

    with parsl.load(config) as dfk:
        app().result()
        rss_start = rss_mb()
        max_outstanding = 0
        t0 = time.perf_counter()
        if args.callback:
            for i in range(args.tasks):
                app().add_done_callback(count)
                if i % 10_000 == 0:
                    max_outstanding = max(max_outstanding, dfk.outstanding_tasks)
        else:
            for i in range(args.tasks):
                app()
                if i % 10_000 == 0:
                    max_outstanding = max(max_outstanding, dfk.outstanding_tasks)
        submitted = time.perf_counter() - t0
        dfk.wait_for_current_tasks()
        elapsed = time.perf_counter() - t0
    if args.callback:
        assert counted[0] == args.tasks, (counted[0], args.tasks)
    result = {"tasks": args.tasks, "limit": args.limit, "threads": args.threads, "callback": args.callback, "sleep": args.sleep,
              "seconds_submitting": round(submitted, 2), "seconds_total": round(elapsed, 2),
              "tasks_per_second": round(args.tasks / elapsed), "max_outstanding_sampled": max_outstanding,
              "rss_start_mb": round(rss_start, 1), "peak_rss_mb": round(peak_rss_mb(), 1)}
    if args.json:
        print(json.dumps(result))
    else:
        for k, v in result.items():
            print(f"{k:>24}: {v}")


if __name__ == "__main__":
    main()
