"""A pool killed with SIGKILL in the middle of a run (issue 14's target): the same N-task run on a
HighThroughputExecutor with one LocalProvider block, once undisturbed and once with `kill -9` of
its only pool when a third of the tasks are done. retries=2, default heartbeats (period 30 s,
threshold 120 s), the default strategy (simple, every 5 s): the pool's in-flight tasks must fail
and be retried, and a new block must start, without waiting for the heartbeat threshold.

  python benchmarks/faults.py [--tasks 2000] [--task-seconds 0.005] [--workers 2] [--json]

Prints the wall time of both runs and the difference (target: at most 10 s).
"""

import argparse
import json
import os
import signal
import tempfile
import threading
import time

import pervade as parsl


@parsl.python_app(executors=["htex"])
def work(i, seconds):
    import time

    time.sleep(seconds)
    return i


def pool_pids():
    """pervade-pool processes that are children of this driver's blocks (argv[0] ends with it)."""
    pids = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                argv0 = f.read().split(b"\0")[0]
            with open(f"/proc/{entry}/environ", "rb") as f:
                ours = f"PERVADE_FAULTS_BENCH={os.getpid()}".encode() in f.read().split(b"\0")
        except OSError:
            continue
        if ours and argv0.endswith(b"pervade-pool"):
            pids.append(int(entry))
    return pids


def run(args, kill: bool) -> dict:
    run_dir = tempfile.mkdtemp(prefix="pervade-faults-")
    config = parsl.Config(
        executors=[parsl.HighThroughputExecutor(label="htex", max_workers_per_node=args.workers,
                                                provider=parsl.LocalProvider(init_blocks=1, max_blocks=1))],
        run_dir=run_dir, retries=2, initialize_logging=False)
    with parsl.load(config) as dfk:
        executor = dfk.executors["htex"]
        while not executor.pools():
            time.sleep(0.01)
        done = threading.Semaphore(0)
        killed = {}
        t0 = time.perf_counter()
        futures = [work(i, args.task_seconds) for i in range(args.tasks)]
        for f in futures:
            f.add_done_callback(lambda _: done.release())
        if kill:
            for _ in range(args.tasks // 3):
                done.acquire()
            pids = pool_pids()
            assert len(pids) == 1, f"expected one pool, found {pids}"
            os.kill(pids[0], signal.SIGKILL)
            killed = {"killed_at_s": time.perf_counter() - t0, "in_flight_then": executor.outstanding()}
        results = [f.result() for f in futures]
        elapsed = time.perf_counter() - t0
        assert results == list(range(args.tasks))
        blocks = len(executor.blocks)
    return {"seconds": elapsed, "blocks": blocks, **killed}


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tasks", type=int, default=2000)
    parser.add_argument("--task-seconds", type=float, default=0.005)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    os.environ["PERVADE_FAULTS_BENCH"] = str(os.getpid())  # marks this driver's pools
    plain = run(args, kill=False)
    killed = run(args, kill=True)
    result = {"tasks": args.tasks, "task_seconds": args.task_seconds, "workers": args.workers,
              "without_kill": plain, "with_kill": killed, "cost_of_kill_s": killed["seconds"] - plain["seconds"]}
    if args.json:
        print(json.dumps(result))
    else:
        print(f"{args.tasks} tasks of {args.task_seconds} s on {args.workers} workers, retries=2, default heartbeats")
        print(f"  without kill: {plain['seconds']:.2f} s ({plain['blocks']} block)")
        print(f"  kill -9 of the pool after {killed['killed_at_s']:.2f} s: {killed['seconds']:.2f} s "
              f"({killed['blocks']} blocks)")
        print(f"  cost of the kill: {result['cost_of_kill_s']:.2f} s (target: <= 10 s)")


if __name__ == "__main__":
    main()
