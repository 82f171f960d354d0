"""Big results (issue 14): a pool app returns `bytes` of --mb megabytes; the driver gets it with
`result()`. Prints the time from the call to the value in the driver, and the driver's peak
resident memory above what it had before the call, as a multiple of the result's size.

  python benchmarks/big_results.py [--mb 1024] [--repeats 1] [--json]

Target: 1 GB in <= 3 s with the driver's memory <= 1.2x the result. The peak is the process's
VmHWM (never reset), so each run is its own process: use --repeats for more timings.
"""

import argparse
import json
import tempfile
import time

import pervade as parsl


@parsl.python_app(executors=["htex"])
def make(size):
    return b"x" * size


def status_kb(field: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return 0


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mb", type=int, default=1024)
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    size = args.mb << 20
    config = parsl.Config(
        executors=[parsl.HighThroughputExecutor(label="htex", max_workers_per_node=1,
                                                provider=parsl.LocalProvider(init_blocks=1))],
        run_dir=tempfile.mkdtemp(prefix="pervade-bigresults-"), initialize_logging=False)
    seconds = []
    with parsl.load(config):
        assert make(10).result() == b"x" * 10  # pool and worker up, function shipped
        base_kb = status_kb("VmRSS")
        for _ in range(args.repeats):
            t0 = time.perf_counter()
            value = make(size).result()
            seconds.append(time.perf_counter() - t0)
            assert len(value) == size
            del value
        peak_kb = status_kb("VmHWM")
    result = {"mb": args.mb, "seconds": seconds,
              "driver_peak_over_base_x_result": (peak_kb - base_kb) * 1024 / size}
    if args.json:
        print(json.dumps(result))
    else:
        print(f"{args.mb} MB result: " + ", ".join(f"{s:.2f} s" for s in seconds) +
              f"; driver peak memory {result['driver_peak_over_base_x_result']:.2f}x the result above its base")


if __name__ == "__main__":
    main()
