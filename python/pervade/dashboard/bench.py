"""`python -m pervade.dashboard.bench DB`: how long the dashboard takes on a database.

Times the first pass over the database, then starts a real dashboard server on loopback and
times each page over HTTP (the best and the worst of `--repeat` loads). A benchmark, not a
test: it prints numbers.
"""

from __future__ import annotations

import argparse
import http.client
import sys
import threading
import time

from .db import Monitoring
from .server import DashboardServer


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m pervade.dashboard.bench")
    parser.add_argument("path", help="a monitoring database or a run directory")
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args(argv)
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
            times = []
            for _ in range(args.repeat):
                conn = http.client.HTTPConnection(*server.server_address[:2], timeout=120)
                t = time.perf_counter()
                conn.request("GET", path)
                response = conn.getresponse()
                response.read()
                times.append(time.perf_counter() - t)
                conn.close()
                assert response.status == 200, (path, response.status)
            print(f"{path:<48} best {min(times) * 1000:8.1f} ms   worst {max(times) * 1000:8.1f} ms")
    finally:
        server.shutdown()
        server.server_close()
        thread.join()
        db.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
