"""Synthetic monitoring databases in Parsl's schema, for developing and testing the dashboard.

`python -m pervade.dashboard.synthetic OUT.db --tasks N` writes a finished run of N tasks;
`LiveRun` is a thread that appends a run's rows while it "runs", as a monitoring writer
would. The tables and columns are those of Parsl's parsl/monitoring/db_manager.py, with the
DDL SQLAlchemy emits for SQLite (DATETIME columns hold 'YYYY-MM-DD HH:MM:SS.ffffff' text).
"""

from __future__ import annotations

import argparse
import datetime
import heapq
import logging
import random
import sqlite3
import sys
import threading
import time

logger = logging.getLogger(__name__)

SCHEMA = """
CREATE TABLE IF NOT EXISTS workflow (
    run_id TEXT NOT NULL, workflow_name TEXT, workflow_version TEXT, time_began DATETIME NOT NULL,
    time_completed DATETIME, host TEXT NOT NULL, user TEXT NOT NULL, rundir TEXT NOT NULL,
    tasks_failed_count INTEGER NOT NULL, tasks_completed_count INTEGER NOT NULL,
    PRIMARY KEY (run_id));
CREATE TABLE IF NOT EXISTS status (
    task_id INTEGER NOT NULL, task_status_name TEXT NOT NULL, timestamp DATETIME NOT NULL,
    run_id TEXT NOT NULL, try_id INTEGER NOT NULL,
    PRIMARY KEY (task_id, run_id, task_status_name, timestamp),
    FOREIGN KEY(run_id) REFERENCES workflow (run_id));
CREATE TABLE IF NOT EXISTS task (
    task_id INTEGER NOT NULL, run_id TEXT NOT NULL, task_depends TEXT, task_func_name TEXT NOT NULL,
    task_memoize TEXT NOT NULL, task_hashsum TEXT, task_inputs TEXT, task_outputs TEXT,
    task_stdin TEXT, task_stdout TEXT, task_stderr TEXT, task_time_invoked DATETIME,
    task_time_returned DATETIME, task_fail_count INTEGER NOT NULL, task_fail_cost FLOAT NOT NULL,
    PRIMARY KEY (task_id, run_id));
CREATE INDEX IF NOT EXISTS ix_task_task_hashsum ON task (task_hashsum);
CREATE TABLE IF NOT EXISTS try (
    try_id INTEGER NOT NULL, task_id INTEGER NOT NULL, run_id TEXT NOT NULL, block_id TEXT,
    hostname TEXT, task_executor TEXT NOT NULL, task_try_time_launched DATETIME,
    task_try_time_running DATETIME, task_try_time_returned DATETIME, task_fail_history TEXT,
    task_joins TEXT,
    PRIMARY KEY (try_id, task_id, run_id));
CREATE TABLE IF NOT EXISTS node (
    id INTEGER NOT NULL, run_id TEXT NOT NULL, hostname TEXT NOT NULL, uid TEXT NOT NULL,
    block_id TEXT NOT NULL, cpu_count INTEGER NOT NULL, total_memory BIGINT NOT NULL,
    active BOOLEAN NOT NULL, worker_count INTEGER NOT NULL, python_v TEXT NOT NULL,
    timestamp DATETIME NOT NULL, last_heartbeat DATETIME NOT NULL,
    PRIMARY KEY (id));
CREATE TABLE IF NOT EXISTS block (
    run_id TEXT NOT NULL, executor_label TEXT NOT NULL, block_id TEXT NOT NULL, job_id TEXT,
    timestamp DATETIME NOT NULL, status TEXT NOT NULL,
    PRIMARY KEY (run_id, block_id, executor_label, timestamp));
CREATE TABLE IF NOT EXISTS resource (
    try_id INTEGER NOT NULL, task_id INTEGER NOT NULL, run_id TEXT NOT NULL, timestamp DATETIME NOT NULL,
    resource_monitoring_interval FLOAT, psutil_process_pid INTEGER, psutil_process_memory_percent FLOAT,
    psutil_process_children_count FLOAT, psutil_process_time_user FLOAT, psutil_process_time_system FLOAT,
    psutil_process_memory_virtual FLOAT, psutil_process_memory_resident FLOAT,
    psutil_process_disk_read FLOAT, psutil_process_disk_write FLOAT, psutil_process_status TEXT,
    psutil_cpu_num TEXT, psutil_process_num_ctx_switches_voluntary FLOAT,
    psutil_process_num_ctx_switches_involuntary FLOAT,
    PRIMARY KEY (try_id, task_id, run_id, timestamp),
    FOREIGN KEY(run_id) REFERENCES workflow (run_id));
"""

APPS = ("simulate", "analyze", "reduce", "plot")
HOSTS = ("node-a", "node-b", "node-c", "node-d")
WORKERS_PER_HOST = 8
MIB = 1024 * 1024
FAILURE_TEXT = "ValueError('input %d out of range')"


def stamp(t: float) -> str:
    """A Unix time as SQLAlchemy stores a DateTime in SQLite."""
    return datetime.datetime.fromtimestamp(t).strftime("%Y-%m-%d %H:%M:%S.%f")


class Plan:
    """What happens to each task of a synthetic run: app, worker, times, outcome (deterministic by seed).

    Tasks run on WORKERS_PER_HOST workers on each of HOSTS, each on the first free worker,
    for `duration` seconds times a factor per app.
    """

    def __init__(self, n_tasks: int, seed: int = 1, failure_rate: float = 0.02, duration: float = 0.001):
        self.n_tasks = n_tasks
        self.rng = random.Random(seed)
        self.failure_rate = failure_rate
        self.duration = duration
        self.free = [(0.0, h, w) for h in range(len(HOSTS)) for w in range(WORKERS_PER_HOST)]   # a heap

    def task(self, task_id: int, t_submit: float) -> dict:
        rng = self.rng
        app = APPS[task_id % len(APPS)]
        free_at, host, worker = heapq.heappop(self.free)
        fails = rng.random() < self.failure_rate
        retried = fails and rng.random() < 0.5     # half the failures fail once, then succeed
        launched = max(t_submit + rng.uniform(0.0025, 0.0035), free_at)   # a retry's rows fit in between
        running = launched + rng.uniform(0.0001, 0.001)
        returned = running + self.duration * rng.uniform(0.5, 1.5) * (1 + APPS.index(app))
        heapq.heappush(self.free, (returned, host, worker))
        depends = [task_id - 1 - k for k in range(rng.randrange(3)) if task_id - 1 - k >= 0]
        return {"task_id": task_id, "app": app, "host": HOSTS[host], "block": str(host % 2),
                "fails": fails and not retried, "retried": retried, "submit": t_submit, "launched": launched,
                "running": running, "returned": returned, "depends": depends,
                "rss": rng.uniform(20, 400 if app == "simulate" else 120) * MIB,
                "cpu_user": (returned - running) * rng.uniform(0.5, 1.0)}


def create_schema(conn: sqlite3.Connection) -> None:
    conn.executescript(SCHEMA)


def insert_workflow(conn, run_id: str, t0: float, rundir: str, name: str = "synthetic") -> None:
    conn.execute("INSERT INTO workflow VALUES (?,?,?,?,NULL,?,?,?,0,0)",
                 (run_id, name, "1.0", stamp(t0), "localhost", "pervade", rundir))


def insert_pool(conn, run_id: str, t0: float, executor: str = "htex") -> None:
    """Two blocks of two nodes each, as an HTEX run would record them."""
    for block in ("0", "1"):
        conn.execute("INSERT INTO block VALUES (?,?,?,?,?,?)", (run_id, executor, block, f"job.{block}", stamp(t0), "PENDING"))
        conn.execute("INSERT INTO block VALUES (?,?,?,?,?,?)", (run_id, executor, block, f"job.{block}", stamp(t0 + 0.001), "RUNNING"))
    for i, host in enumerate(HOSTS):
        conn.execute("INSERT INTO node (run_id, hostname, uid, block_id, cpu_count, total_memory, active, worker_count,"
                     " python_v, timestamp, last_heartbeat) VALUES (?,?,?,?,?,?,?,?,?,?,?)",
                     (run_id, host, f"uid-{host}", str(i % 2), 8, 16 * 1024 * MIB, 1, WORKERS_PER_HOST, "3.11.2",
                      stamp(t0), stamp(t0)))


def task_row(run_id: str, p: dict, finished: bool) -> tuple:
    return (p["task_id"], run_id, ",".join(map(str, p["depends"])) or None, p["app"], "False", None, "None", "None", None,
            f"/runinfo/000/task_logs/{p['task_id']}.stdout", f"/runinfo/000/task_logs/{p['task_id']}.stderr",
            stamp(p["submit"]), stamp(p["returned"]) if finished else None,
            (1 if p["fails"] or p["retried"] else 0) if finished else 0, 0.0)


def status_rows(run_id: str, p: dict) -> list[tuple]:
    """(task_id, name, timestamp, run_id, try_id) for each state change, in order."""
    tid, rows = p["task_id"], [(p["task_id"], "pending", stamp(p["submit"]), run_id, 0)]
    try_id = 0
    if p["retried"]:
        rows += [(tid, "launched", stamp(p["launched"] - 0.002), run_id, 0),
                 (tid, "fail_retryable", stamp(p["launched"] - 0.0015), run_id, 0),
                 (tid, "pending", stamp(p["launched"] - 0.001), run_id, 1)]
        try_id = 1
    rows += [(tid, "launched", stamp(p["launched"]), run_id, try_id),
             (tid, "running", stamp(p["running"]), run_id, try_id),
             (tid, "running_ended", stamp(p["returned"] - 0.0001), run_id, try_id),
             (tid, "failed" if p["fails"] else "exec_done", stamp(p["returned"]), run_id, try_id)]
    return rows


def try_rows(run_id: str, p: dict, finished: bool) -> list[tuple]:
    rows = []
    if p["retried"]:
        rows.append((0, p["task_id"], run_id, p["block"], p["host"], "htex", stamp(p["launched"] - 0.002), None,
                     stamp(p["launched"] - 0.0015), FAILURE_TEXT % p["task_id"], None))
    fail = FAILURE_TEXT % p["task_id"] if p["fails"] and finished else ""
    rows.append((1 if p["retried"] else 0, p["task_id"], run_id, p["block"], p["host"], "htex", stamp(p["launched"]),
                 stamp(p["running"]), stamp(p["returned"]) if finished else None, fail, None))
    return rows


def resource_rows(run_id: str, p: dict) -> list[tuple]:
    """A first and a last sample of the task's process tree, as pervade-pool records them."""
    try_id = 1 if p["retried"] else 0
    out = []
    for t, fraction in ((p["running"], 0.3), (p["returned"] - 0.0002, 1.0)):
        out.append((try_id, p["task_id"], run_id, stamp(t), 1.0, 1000 + p["task_id"] % 30000, fraction,
                    0.0, p["cpu_user"] * fraction, 0.01 * fraction, p["rss"] * 2, p["rss"] * fraction,
                    4096.0 * fraction, 1024.0 * fraction, "running", "1", 3.0, 1.0))
    return out


def fill(path: str, n_tasks: int, seed: int = 1, run_id: str = "synthetic-run-0000",
         rate: float = 20000.0, batch: int = 20000, rundir: str = "/runinfo/000") -> None:
    """Write a finished run of `n_tasks` tasks submitted at `rate` per second (in database time)."""
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=OFF")
    create_schema(conn)
    t0 = time.time() - n_tasks / rate - 5
    insert_workflow(conn, run_id, t0, rundir)
    insert_pool(conn, run_id, t0)
    plan = Plan(n_tasks, seed)
    failed = done = 0
    last = t0
    for start in range(0, n_tasks, batch):
        plans = [plan.task(i, t0 + 0.5 + i / rate) for i in range(start, min(n_tasks, start + batch))]
        conn.executemany("INSERT INTO task VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)", [task_row(run_id, p, True) for p in plans])
        conn.executemany("INSERT INTO status VALUES (?,?,?,?,?)", [r for p in plans for r in status_rows(run_id, p)])
        conn.executemany("INSERT INTO try VALUES (?,?,?,?,?,?,?,?,?,?,?)", [r for p in plans for r in try_rows(run_id, p, True)])
        conn.executemany("INSERT INTO resource VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
                         [r for p in plans for r in resource_rows(run_id, p)])
        failed += sum(p["fails"] for p in plans)
        done += sum(not p["fails"] for p in plans)
        last = max(last, max(p["returned"] for p in plans))
        conn.commit()
    conn.execute("UPDATE workflow SET time_completed=?, tasks_failed_count=?, tasks_completed_count=? WHERE run_id=?",
                 (stamp(last + 0.1), failed, done, run_id))
    conn.commit()
    conn.close()


class LiveRun(threading.Thread):
    """Appends a run of `n_tasks` tasks to a database in real time, as a monitoring writer would.

    Started and stopped by one thread (a test or the CLI); the thread itself only writes the db.
    Tasks are submitted at `rate` per second, each row lands when its wall-clock time has come,
    and the workflow is marked completed after the last task; `stop()` ends it early.
    """

    def __init__(self, path: str, n_tasks: int, rate: float = 50.0, run_id: str = "live-run-0000", seed: int = 2,
                 duration: float = 0.15):
        super().__init__(name="synthetic-live-run", daemon=True)
        self.path, self.n_tasks, self.rate, self.run_id = path, n_tasks, rate, run_id
        self.plan = Plan(n_tasks, seed, failure_rate=0.1, duration=duration)
        self._stop_event = threading.Event()
        self.started = threading.Event()   # set once the schema and the workflow row are committed
        self.error: BaseException | None = None

    def stop(self) -> None:
        self._stop_event.set()
        self.join(timeout=30)

    def run(self) -> None:
        try:
            self._run()
        except BaseException as e:  # reported to the test that started it
            self.error = e
            logger.exception("synthetic live run failed")

    def _run(self) -> None:
        conn = sqlite3.connect(self.path)
        conn.execute("PRAGMA journal_mode=WAL")
        create_schema(conn)
        t0 = time.time()
        insert_workflow(conn, self.run_id, t0, "/runinfo/001", name="synthetic-live")
        insert_pool(conn, self.run_id, t0)
        conn.commit()
        self.started.set()
        plans = [self.plan.task(i, t0 + 0.2 + i / self.rate) for i in range(self.n_tasks)]
        # Each task is written in three steps, at their times: submitted, started, finished.
        events = sorted([(p["submit"], 0, i) for i, p in enumerate(plans)] + [(p["running"], 1, i) for i, p in enumerate(plans)]
                        + [(p["returned"], 2, i) for i, p in enumerate(plans)])
        run, next_event, finished = self.run_id, 0, 0
        while next_event < len(events) and not self._stop_event.is_set():
            now = time.time()
            while next_event < len(events) and events[next_event][0] <= now:
                _, step, i = events[next_event]
                p = plans[i]
                statuses = status_rows(run, p)
                if step == 0:
                    conn.execute("INSERT INTO task VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)", task_row(run, p, False))
                    conn.execute("INSERT INTO status VALUES (?,?,?,?,?)", statuses[0])
                elif step == 1:
                    conn.executemany("INSERT INTO status VALUES (?,?,?,?,?)", statuses[1:-2])
                    conn.executemany("INSERT INTO try VALUES (?,?,?,?,?,?,?,?,?,?,?)", try_rows(run, p, False))
                else:
                    conn.executemany("INSERT INTO status VALUES (?,?,?,?,?)", statuses[-2:])
                    conn.executemany("INSERT OR REPLACE INTO try VALUES (?,?,?,?,?,?,?,?,?,?,?)", try_rows(run, p, True))
                    conn.executemany("INSERT INTO resource VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)", resource_rows(run, p))
                    conn.execute("UPDATE task SET task_time_returned=?, task_fail_count=? WHERE task_id=? AND run_id=?",
                                 (stamp(p["returned"]), 1 if p["fails"] or p["retried"] else 0, p["task_id"], run))
                    finished += 1
                next_event += 1
            conn.commit()
            self._stop_event.wait(0.05)
        if finished == self.n_tasks:
            failed = sum(p["fails"] for p in plans)
            conn.execute("UPDATE workflow SET time_completed=?, tasks_failed_count=?, tasks_completed_count=? WHERE run_id=?",
                         (stamp(time.time()), failed, self.n_tasks - failed, self.run_id))
            conn.commit()
        conn.close()


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m pervade.dashboard.synthetic",
                                     description="Write a finished synthetic run into a monitoring database (Parsl's schema).")
    parser.add_argument("path")
    parser.add_argument("--tasks", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args(argv)
    fill(args.path, args.tasks, args.seed)
    return 0


if __name__ == "__main__":
    sys.exit(main())
