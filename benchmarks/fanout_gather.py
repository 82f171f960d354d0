"""A fan-out gathered with result(): 100,000 no-op tasks submitted at once on the default
ThreadPoolExecutor, then each future's result() read in order (no concurrent.futures.wait or
as_completed, which make every future's Condition). Prints the best of three rounds, tasks/s.

  python benchmarks/fanout_gather.py

pervade perf (parsl-perf's workload) gathers with as_completed; this is the other common way."""
import time, tempfile, pervade as parsl
parsl.load(parsl.Config(run_dir=tempfile.mkdtemp()))
@parsl.python_app
def app():
    return 7
app().result()
best = 0
for _ in range(3):
    t = time.perf_counter()
    futs = [app() for _ in range(100_000)]
    assert all(f.result() == 7 for f in futs)
    best = max(best, 100_000 / (time.perf_counter() - t))
    del futs
print(f"{best:,.0f}")
parsl.dfk().cleanup()
