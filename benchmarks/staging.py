#!/usr/bin/env python3
"""File staging: pervade against Parsl's HTTPSeparateTaskStaging and against curl, in one run.

    python3 benchmarks/staging.py              # the three workloads below
    python3 benchmarks/staging.py --quick      # small sizes (a smoke run)
    python3 benchmarks/staging.py --markdown   # a section ready to paste into BENCHMARKS.md

One local HTTP server (http.server's handler sending bodies with sendfile(2), a process of its own
serving a temporary directory on 127.0.0.1; its request log is the server-side count of transfers)
serves every workload:

  fan-out   100 tasks (--files), each staging in its own 10 MB file (--file-mb) and returning its
            size, on a HighThroughputExecutor with 2 workers (--workers) and a LocalProvider block,
            with each framework's default staging (HTTPSeparateTaskStaging: a stage-in task per
            file, then the task). Time: first submit -> last result, after a warm-up task. pervade
            and Parsl (from PyPI into benchmarks/.venv-peers, or --peers-venv) run the same script, differing only
            in `import parsl` versus `import pervade as parsl`.
  big       one 1 GB file (--big-mb): `curl -sf -o FILE URL` against one pervade task on a
            ThreadPoolExecutor with HTTPInTaskStaging (the node cache off, then on: on, the file is
            written to the cache and copied out). Best of --repeats.
  one-url   1,000 tasks (--same) on HTEX all staging the same URL: the server's log must show
            exactly one GET.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from peers import BenchError, cpu_model, ensure_peers, log  # noqa: E402

PARSL = {"parsl": "parsl==2026.10.26"}

# Run by pervade (import pervade as parsl) and by Parsl (import parsl): argv = mode, run_dir, then
# the mode's arguments; prints one JSON line.
WORKER = r'''
import importlib, json, os, sys, time
MODE, RUN_DIR = sys.argv[1], sys.argv[2]
PKG = "pervade" if os.environ.get("BENCH_ENGINE") == "pervade" else "parsl"
parsl = importlib.import_module(PKG)
HTTPInTaskStaging = importlib.import_module(PKG + ".data_provider.http").HTTPInTaskStaging
LocalProvider = importlib.import_module(PKG + ".providers").LocalProvider
from_parsl = parsl.File, parsl.python_app, parsl.Config, parsl.HighThroughputExecutor, parsl.ThreadPoolExecutor
File, python_app, Config, HighThroughputExecutor, ThreadPoolExecutor = from_parsl


@python_app
def size(f):
    import os  # Parsl ships __main__'s functions without their module's globals
    return os.path.getsize(f)


def htex(workers, work):
    return HighThroughputExecutor(label="htex", address="127.0.0.1", max_workers_per_node=workers,
                                  working_dir=work, provider=LocalProvider(init_blocks=1, min_blocks=1, max_blocks=1))


if MODE == "fanout":
    base, n, workers, work = sys.argv[3], int(sys.argv[4]), int(sys.argv[5]), sys.argv[6]
    with parsl.load(Config(executors=[htex(workers, work)], run_dir=RUN_DIR, strategy="none",
                           usage_tracking=0, initialize_logging=False)):
        size(File(f"{base}/warm.bin")).result()
        start = time.perf_counter()
        futs = [size(File(f"{base}/f{i}.bin")) for i in range(n)]
        total = sum(f.result() for f in futs)
        print(json.dumps({"seconds": time.perf_counter() - start, "bytes": total}))
elif MODE == "big":
    url, work = sys.argv[3], sys.argv[4]
    ex = ThreadPoolExecutor(max_threads=1, working_dir=work, storage_access=[HTTPInTaskStaging()])
    with parsl.load(Config(executors=[ex], run_dir=RUN_DIR, usage_tracking=0, initialize_logging=False)):
        start = time.perf_counter()
        total = size(File(url)).result()
        print(json.dumps({"seconds": time.perf_counter() - start, "bytes": total}))
elif MODE == "same":
    url, n, workers, work = sys.argv[3], int(sys.argv[4]), int(sys.argv[5]), sys.argv[6]
    with parsl.load(Config(executors=[htex(workers, work)], run_dir=RUN_DIR, strategy="none",
                           usage_tracking=0, initialize_logging=False)):
        start = time.perf_counter()
        total = sum(f.result() for f in [size(File(url)) for _ in range(n)])
        print(json.dumps({"seconds": time.perf_counter() - start, "bytes": total}))
'''


# The file server: http.server's handler answering GET and HEAD from a directory, the body sent
# with sendfile(2) (so the server is not what limits the transfers), one log line per request.
SERVER = r'''
import email.utils, os, sys
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer


class Handler(SimpleHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self):
        f = self.send_head()
        if f:
            try:
                self.wfile.flush()
                self.connection.sendfile(f)
            finally:
                f.close()


os.chdir(sys.argv[1])
ThreadingHTTPServer(("127.0.0.1", int(sys.argv[2])), Handler).serve_forever()
'''


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """SERVER on a directory; gets(path) counts the GETs of a path in its log."""

    def __init__(self, root: Path, log_path: Path):
        self.port = free_port()
        self.log_path = log_path
        self._log = open(log_path, "wb")
        self.proc = subprocess.Popen([sys.executable, "-c", SERVER, str(root), str(self.port)], stdout=self._log,
                                     stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 30
        while True:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                break
            except OSError:
                if time.monotonic() > deadline or self.proc.poll() is not None:
                    raise BenchError("the HTTP server did not start")
                time.sleep(0.05)
        self.base = f"http://127.0.0.1:{self.port}"

    def gets(self, path: str) -> int:
        self._log.flush()
        return len(re.findall(rf'"GET {re.escape(path)} HTTP', self.log_path.read_text(errors="replace")))

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(timeout=30)
        self._log.close()


def run_worker(python: str, engine: str, args: list, work: Path, env_extra: dict | None = None) -> dict:
    script = work / "worker.py"
    script.write_text(WORKER)
    env = dict(os.environ, BENCH_ENGINE=engine, **(env_extra or {}))
    if engine == "parsl":
        env["PATH"] = str(Path(python).parent) + os.pathsep + env["PATH"]  # process_worker_pool.py
    run_dir = tempfile.mkdtemp(prefix=f"{engine}-", dir=work)
    done = subprocess.run([python, str(script), args[0], run_dir, *args[1:]], capture_output=True, text=True,
                          env=env, timeout=3600, cwd=run_dir)
    if done.returncode != 0:
        raise BenchError(f"{engine} {args[0]} failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def write_random(path: Path, megabytes: int) -> None:
    chunk = os.urandom(1 << 20)
    with open(path, "wb") as f:
        for _ in range(megabytes):
            f.write(chunk)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true")
    p.add_argument("--markdown", action="store_true")
    p.add_argument("--files", type=int, default=100)
    p.add_argument("--file-mb", type=int, default=10)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--big-mb", type=int, default=1024)
    p.add_argument("--same", type=int, default=1000)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--frameworks", default="pervade,parsl")
    p.add_argument("--peers-venv", type=Path, default=HERE / ".venv-peers",
                   help="the venv Parsl is installed into (made when missing)")
    o = p.parse_args(argv)
    if o.quick:
        o.files, o.file_mb, o.big_mb, o.same, o.repeats = 10, 1, 64, 50, 1
    frameworks = o.frameworks.split(",")
    pythons = {"pervade": sys.executable}
    if "parsl" in frameworks:
        python, versions = ensure_peers(o.peers_venv, PARSL, 1800)
        pythons["parsl"] = str(python)
        log(f"[staging] Parsl {versions.get('parsl')}")
    work = Path(tempfile.mkdtemp(prefix="pervade-staging-bench-"))
    root = work / "served"
    root.mkdir()
    for i in range(o.files):
        write_random(root / f"f{i}.bin", o.file_mb)
    write_random(root / "warm.bin", 1)
    write_random(root / "big.bin", o.big_mb)
    write_random(root / "same.bin", 1)
    server = Server(root, work / "server.log")
    rows = []
    try:
        for engine in frameworks:
            cache = {"PERVADE_STAGING_CACHE": str(work / f"cache-fanout-{engine}")}
            r = run_worker(pythons[engine], engine, ["fanout", server.base, str(o.files), str(o.workers),
                                                     str(work / f"fanout-{engine}")], work, cache)
            rows.append(("fan-out", engine, f"{o.files} x {o.file_mb} MB", r["seconds"],
                         r["bytes"] / r["seconds"] / 1e6))
            log(f"[staging] fan-out {engine}: {r['seconds']:.2f} s")
        url = f"{server.base}/big.bin"
        best = {}
        for _ in range(o.repeats):
            target = work / "curl.bin"
            start = time.perf_counter()
            subprocess.run(["curl", "-sf", "-o", str(target), url], check=True, timeout=3600)
            best["curl"] = min(best.get("curl", 1e9), time.perf_counter() - start)
            target.unlink()
            for label, cache in (("pervade (no cache)", "off"), ("pervade (node cache)", str(work / "cache-big"))):
                shutil.rmtree(work / "cache-big", ignore_errors=True)
                shutil.rmtree(work / "big", ignore_errors=True)
                r = run_worker(sys.executable, "pervade", ["big", url, str(work / "big")], work,
                               {"PERVADE_STAGING_CACHE": cache})
                best[label] = min(best.get(label, 1e9), r["seconds"])
        size = o.big_mb * (1 << 20)
        for label, seconds in best.items():
            rows.append(("big", label, f"{o.big_mb} MB", seconds, size / seconds / 1e6))
            log(f"[staging] big {label}: {seconds:.2f} s")
        before = server.gets("/same.bin")
        r = run_worker(sys.executable, "pervade", ["same", f"{server.base}/same.bin", str(o.same), str(o.workers),
                                                   str(work / "same")], work,
                       {"PERVADE_STAGING_CACHE": str(work / "cache-same")})
        transfers = server.gets("/same.bin") - before
        rows.append(("one-url", "pervade", f"{o.same} tasks, 1 URL", r["seconds"], transfers))
        log(f"[staging] one-url: {transfers} GET(s) for {o.same} tasks")
    finally:
        server.stop()
        shutil.rmtree(work, ignore_errors=True)
    print_rows(rows, o)
    return 0


def print_rows(rows, o) -> None:
    if o.markdown:
        print(f"Measured {datetime.date.today()} on {cpu_model()} ({os.cpu_count()} cores): "
              f"`python3 benchmarks/staging.py{' --quick' if o.quick else ''}`\n")
        print("| workload | engine | size | seconds | MB/s (one-url: GETs on the server) |\n|---|---|---|---|---|")
        for w, engine, size, seconds, rate in rows:
            print(f"| {w} | {engine} | {size} | {seconds:.2f} | {rate:.0f} |")
        return
    for w, engine, size, seconds, rate in rows:
        print(f"{w:8} {engine:22} {size:20} {seconds:8.2f} s  {rate:10.0f}")


if __name__ == "__main__":
    sys.exit(main())
