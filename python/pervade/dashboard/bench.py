"""`python -m pervade.dashboard.bench DB`: how long the dashboard takes on a database.

Times the first pass over the database, then starts a real dashboard server on loopback and
times each page over HTTP (the best and the worst of `--repeat` loads). With `--live N`, DB is
a new file that a synthetic run of N tasks writes meanwhile (at `--rate` tasks/s), and the
overview page is timed every second while it runs. A benchmark, not a test: it prints numbers.
"""

from __future__ import annotations

import argparse
import http.client
import sys
import threading
import time

from . import synthetic
from .db import Monitoring
from .server import DashboardServer


def load(server, path: str) -> float:
    """Seconds to GET `path` from `server`."""
    conn = http.client.HTTPConnection(*server.server_address[:2], timeout=120)
    try:
        start = time.perf_counter()
        conn.request("GET", path)
        response = conn.getresponse()
        response.read()
        assert response.status == 200, (path, response.status)
        return time.perf_counter() - start
    finally:
        conn.close()


def live(path: str, tasks: int, rate: float) -> None:
    run = synthetic.LiveRun(path, tasks, rate=rate, duration=0.002)
    run.start()
    run.started.wait(30)
    db = Monitoring(path)
    server = DashboardServer(db, ("127.0.0.1", 0))
    thread = threading.Thread(target=server.serve_forever, name="dashboard-bench")
    thread.start()
    times = []
    try:
        while run.is_alive():
            times.append(load(server, f"/run/{run.run_id}/"))
            print(f"{db.run(run.run_id).tasks:>8} tasks written, overview in {times[-1] * 1000:7.1f} ms", flush=True)
            time.sleep(1.0)   # a browser's reload interval, roughly
    finally:
        run.stop()
        server.shutdown()
        server.server_close()
        thread.join()
        db.close()
    print(f"{len(times)} loads while the run went: best {min(times) * 1000:.1f} ms, worst {max(times) * 1000:.1f} ms")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m pervade.dashboard.bench")
    parser.add_argument("path", help="a monitoring database or a run directory")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--live", type=int, metavar="N", help="write a synthetic run of N tasks into PATH meanwhile")
    parser.add_argument("--rate", type=float, default=2000.0, help="tasks per second of the --live run")
    args = parser.parse_args(argv)
    if args.live:
        live(args.path, args.live, args.rate)
        return 0
    start = time.perf_counter()
    db = Monitoring(args.path)
    db.read_all()
    print(f"first pass over the database (on a thread in `pervade dashboard`): {time.perf_counter() - start:.2f} s")
    run = db.workflows()[0]["run_id"]
    print(f"run {run}: {db.run(run).tasks} tasks")
    server = DashboardServer(db, ("127.0.0.1", 0))
    thread = threading.Thread(target=server.serve_forever, name="dashboard-bench")
    thread.start()
    try:
        for path in ("/", f"/run/{run}/", f"/run/{run}/tasks", f"/run/{run}/failures", f"/run/{run}/resources",
                     f"/run/{run}/pools", f"/run/{run}/dag", f"/run/{run}/task/{db.run(run).tasks // 2}"):
            times = [load(server, path) for _ in range(args.repeat)]
            print(f"{path:<48} best {min(times) * 1000:8.1f} ms   worst {max(times) * 1000:8.1f} ms")
    finally:
        server.shutdown()
        server.server_close()
        thread.join()
        db.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
