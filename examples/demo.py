"""The main demo: a small genomics-style workflow on this machine, written as a Parsl script.

Stage 1 (bash):   generate "reads" files, one per sample, with a shell command.
Stage 2 (python): count the GC content of each file (fan-out; inputs are the DataFutures), on
                  a HighThroughputExecutor: a local pervade-pool with 2 worker processes.
Stage 3 (join):   a join app reduces the per-sample counts into one summary.
Stage 4 (bash):   write a report from the summary, chained through a File.
Then it measures the throughput of no-op apps on this machine, on threads and on the pool.

Run with `make demo` (or `python examples/demo.py [--samples N] [--workdir DIR]`).
"""

import argparse
import os
import tempfile
import time

import pervade as parsl
from pervade import File, bash_app, join_app, python_app


@bash_app(executors=["threads"])
def make_reads(sample, n_reads, outputs=()):
    # A deterministic pseudo-random sequence per sample: awk with a seeded generator.
    return (f"awk 'BEGIN {{ srand({sample}); for (i = 0; i < {n_reads}; i++) {{ s = \"\"; "
            f"for (j = 0; j < 60; j++) s = s substr(\"ACGT\", int(rand() * 4) + 1, 1); print s }} }}' "
            f"> {outputs[0]}")


@python_app(executors=["htex"])
def gc_count(inputs=()):
    gc = total = 0
    with open(inputs[0]) as f:
        for line in f:
            line = line.strip()
            gc += line.count("G") + line.count("C")
            total += len(line)
    return {"file": os.path.basename(inputs[0].filepath), "gc": gc, "bases": total}


@python_app(executors=["threads"])
def merge(inputs=()):
    counts = inputs
    return {"samples": len(counts), "gc": sum(c["gc"] for c in counts), "bases": sum(c["bases"] for c in counts)}


@join_app
def summarize(read_files):
    # A join app returns futures; its own future resolves to their result.
    return merge(inputs=[gc_count(inputs=[f]) for f in read_files])


@bash_app(executors=["threads"])
def report(summary, outputs=(), stdout=None):
    fraction = summary["gc"] / summary["bases"]
    return (f"printf 'samples=%d bases=%d gc_fraction=%.4f\\n' {summary['samples']} {summary['bases']} {fraction}"
            f" > {outputs[0]} && cat {outputs[0]}")


@python_app(executors=["threads"])
def noop():
    return 7


@python_app(executors=["htex"])
def noop_on_pool():
    return 7


def throughput(app, n, where):
    t0 = time.perf_counter()
    futures = [app() for _ in range(n)]
    assert all(f.result() == 7 for f in futures)
    print(f"throughput: {n} no-op python apps at {n / (time.perf_counter() - t0):,.0f} tasks/s ({where})")


def main():
    parser = argparse.ArgumentParser(description="pervade demo workflow")
    parser.add_argument("--samples", type=int, default=16, help="number of samples (default 16)")
    parser.add_argument("--reads", type=int, default=2000, help="reads per sample (default 2000)")
    parser.add_argument("--noop-tasks", type=int, default=50000, help="tasks in the throughput run (default 50000)")
    parser.add_argument("--workdir", default=None, help="where files go (default: a temporary directory)")
    args = parser.parse_args()
    workdir = args.workdir or tempfile.mkdtemp(prefix="pervade_demo_")
    os.makedirs(workdir, exist_ok=True)

    config = parsl.Config(executors=[
        parsl.ThreadPoolExecutor(label="threads", max_threads=4),
        parsl.HighThroughputExecutor(label="htex", max_workers_per_node=2,
                                     provider=parsl.LocalProvider(init_blocks=1)),
    ], run_dir=os.path.join(workdir, "runinfo"), retries=1)
    with parsl.load(config):
        t0 = time.perf_counter()
        reads = [make_reads(s, args.reads, outputs=[File(os.path.join(workdir, f"sample_{s:03}.txt"))])
                 for s in range(args.samples)]
        summary = summarize([r.outputs[0] for r in reads])
        out = report(summary, outputs=[File(os.path.join(workdir, "report.txt"))],
                     stdout=os.path.join(workdir, "report.stdout"))
        out.result()
        elapsed = time.perf_counter() - t0
        s = summary.result()
        print(f"workflow: {args.samples} samples, {s['bases']} bases, GC fraction {s['gc'] / s['bases']:.4f} "
              f"({len(reads) * 2 + 3} tasks in {elapsed:.2f} s)")
        with open(out.outputs[0].filepath) as f:
            print("report:", f.read().strip())

        throughput(noop, args.noop_tasks, "ThreadPoolExecutor, 4 threads")
        throughput(noop_on_pool, args.noop_tasks // 2, "HighThroughputExecutor, 1 local pool of 2 worker processes")
    print(f"files in {workdir}")


if __name__ == "__main__":
    main()
