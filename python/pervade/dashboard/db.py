"""Read-only access to a monitoring database in Parsl's schema, fast on million-task runs.

The database is opened with SQLite's `mode=ro`; nothing is ever written to it, and no index is
added (Parsl's tools must keep working on it unchanged). Speed comes from one fact of the
schema: `task`, `status` and `resource` rows are only appended, so their rowids grow.
`Monitoring.refresh()` aggregates in SQL only the rows appended since its last call (counts
per state and app, durations, finishes per second, failed tasks, per-task memory peaks, the
tasks now in an executor); pages read those aggregates plus a few primary-key or rowid-bounded
queries.
"""

from __future__ import annotations

import array
import dataclasses
import heapq
import os
import sqlite3
import threading
import urllib.parse
from collections import defaultdict

TABLES = ("workflow", "task", "try", "status", "resource", "node", "block")
FINAL_STATES = ("exec_done", "memo_done", "failed", "dep_fail")
FAILED_STATES = ("failed", "dep_fail")
# Tasks not final are shown as pending, launched or running (running_ended and joining count as running).
LIVE_STATES = ("pending", "launched", "running")
STATES = LIVE_STATES + FINAL_STATES
CHUNK_ROWS = 100_000     # rows of each table one refresh() reads at most
FAILURES_KEPT = 1000     # failed tasks whose ids are kept, the latest
HEAVIEST_KEPT = 100      # tasks with the largest memory peak that are kept
DENSE_GROWTH = 1 << 20   # how far past the known task ids TaskPeaks grows its array
MIB = 1024 * 1024


class NotMonitoringDatabase(Exception):
    """The path given is missing, not SQLite, or lacks Parsl's monitoring tables."""


def find_database(path: str) -> str:
    """The monitoring.db of a run directory (or of its parent: runinfo/003 is one run of runinfo),
    or `path` itself when it is a file."""
    if os.path.isdir(path):
        for candidate in (os.path.join(path, "monitoring.db"), os.path.join(path, os.pardir, "monitoring.db")):
            if os.path.isfile(candidate):
                return os.path.normpath(candidate)
        raise NotMonitoringDatabase(f"{path} holds no monitoring.db (was monitoring on for this run?)")
    if not os.path.exists(path):
        raise NotMonitoringDatabase(f"{path}: no such file or directory")
    return path


def connect(path: str) -> sqlite3.Connection:
    """A read-only connection to a monitoring database; NotMonitoringDatabase if it is not one."""
    uri = "file:" + urllib.parse.quote(os.path.abspath(path)) + "?mode=ro"
    try:
        conn = sqlite3.connect(uri, uri=True, check_same_thread=False)
        names = {row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    except sqlite3.DatabaseError as e:
        raise NotMonitoringDatabase(f"{path} is not an SQLite database ({e})") from None
    missing = [t for t in TABLES if t not in names]
    if missing:
        conn.close()
        raise NotMonitoringDatabase(f"{path} is not a monitoring database (no table {', '.join(missing)})")
    return conn


def seconds(column: str) -> str:
    """SQL for a DATETIME column as Unix seconds (a float)."""
    return f"((julianday({column}) - 2440587.5) * 86400.0)"


@dataclasses.dataclass
class AppStats:
    tasks: int = 0
    states: dict = dataclasses.field(default_factory=lambda: defaultdict(int))
    retries: int = 0
    duration_sum: float = 0.0
    duration_max: float = 0.0
    memory_max: float = 0.0   # bytes, peak resident set size over all samples
    memory_sum: float = 0.0
    cpu_max: float = 0.0      # seconds, user + system of one sample
    samples: int = 0

    @property
    def finished(self) -> int:
        return sum(self.states[s] for s in FINAL_STATES)

    @property
    def duration_mean(self) -> float:
        done = self.states["exec_done"] + self.states["failed"]
        return self.duration_sum / done if done else 0.0


@dataclasses.dataclass
class RunStats:
    """Aggregates of one workflow run, grown by Monitoring.refresh(); pages get copies (snapshot())."""
    tasks: int = 0
    final: dict = dataclasses.field(default_factory=lambda: defaultdict(int))
    apps: dict = dataclasses.field(default_factory=lambda: defaultdict(AppStats))
    finished_per_second: dict = dataclasses.field(default_factory=lambda: defaultdict(int))
    failed: list = dataclasses.field(default_factory=list)   # (task_id, try_id), the latest FAILURES_KEPT
    failed_total: int = 0
    launched: int = 0      # tasks in an executor, not yet running
    running: int = 0
    running_by_host: dict = dataclasses.field(default_factory=dict)
    memory_mib: dict = dataclasses.field(default_factory=lambda: defaultdict(int))   # whole MiB of peak -> tasks
    heaviest: dict = dataclasses.field(default_factory=dict)   # task_id -> (peak bytes, app), the HEAVIEST_KEPT

    def counts(self) -> dict:
        """Tasks per state; pending is what is neither final nor in an executor."""
        out = {s: self.final[s] for s in FINAL_STATES}
        in_flight = self.tasks - sum(out.values())
        out["running"] = min(self.running, in_flight)
        out["launched"] = min(self.launched, in_flight - out["running"])
        out["pending"] = in_flight - out["running"] - out["launched"]
        return {s: out[s] for s in STATES}

    def tasks_over(self, threshold_mib: int) -> int:
        """Tasks whose peak resident memory reached `threshold_mib` MiB."""
        return sum(n for mib, n in self.memory_mib.items() if mib >= threshold_mib)

    def snapshot(self) -> "RunStats":
        copy = dataclasses.replace(self, final=defaultdict(int, self.final), failed=self.failed[-FAILURES_KEPT:],
                                   finished_per_second=defaultdict(int, self.finished_per_second),
                                   running_by_host=dict(self.running_by_host), memory_mib=defaultdict(int, self.memory_mib),
                                   heaviest=dict(self.heaviest))
        copy.apps = {app: dataclasses.replace(a, states=defaultdict(int, a.states)) for app, a in self.apps.items()}
        return copy


class TaskPeaks:
    """Peak resident memory of each task of a run, 4 bytes per task (task ids are dense from 0)."""

    def __init__(self):
        self.dense = array.array("f")
        self.sparse: dict[int, float] = {}   # ids far beyond the dense range

    def swap(self, task_id: int, peak: float) -> float:
        """Stores max(old, peak) and returns the old value (0 if none)."""
        if task_id < len(self.dense) + DENSE_GROWTH:
            if task_id >= len(self.dense):
                grow = max(task_id + 1, 2 * len(self.dense)) - len(self.dense)
                self.dense.extend(array.array("f", bytes(4 * grow)))
            old = self.dense[task_id]
            if peak > old:
                self.dense[task_id] = peak
            return old
        old = self.sparse.get(task_id, 0.0)
        self.sparse[task_id] = max(old, peak)
        return old


class Monitoring:
    """A monitoring database and its running aggregates. Any thread may call any method.

    refresh() reads the rows appended since the last call, at most CHUNK_ROWS per table, on its
    own connection; page queries use a second one. start_catching_up() runs the first pass over
    a big database on a thread while pages already answer (showing how far it got).
    """

    def __init__(self, path: str):
        self.path = find_database(path)
        self._conn = connect(self.path)                # for page queries, under _query_lock
        self._query_lock = threading.Lock()
        self._refresh_conn = connect(self.path)        # for refresh(), under _refresh_lock
        self._refresh_lock = threading.Lock()
        self._refresh_conn.executescript(
            """CREATE TEMP TABLE active (run_id TEXT, task_id INTEGER, try_id INTEGER, state TEXT, PRIMARY KEY (run_id, task_id));
               CREATE TEMP TABLE candidate (run_id TEXT, task_id INTEGER, PRIMARY KEY (run_id, task_id));""")
        self._stats_lock = threading.Lock()            # guards _runs, _peaks, _cursor, _ends
        self._runs: dict[str, RunStats] = defaultdict(RunStats)
        self._peaks: dict[str, TaskPeaks] = defaultdict(TaskPeaks)
        self._cursor = {"task": 0, "status": 0, "resource": 0}   # last rowid read of each table
        self._ends = dict(self._cursor)                          # last rowid there was, at the last refresh
        self._closing = threading.Event()
        self._catch_up_thread: threading.Thread | None = None

    def close(self) -> None:
        self._closing.set()
        if self._catch_up_thread is not None:
            self._catch_up_thread.join()
        with self._refresh_lock:
            self._refresh_conn.close()
        with self._query_lock:
            self._conn.close()

    def query(self, sql: str, args=()) -> list:
        with self._query_lock:
            return self._conn.execute(sql, args).fetchall()

    @property
    def caught_up(self) -> bool:
        with self._stats_lock:
            return self._cursor == self._ends

    def progress(self) -> tuple[int, int]:
        """(rows read, rows there were) over the appended-only tables, as of the last refresh."""
        with self._stats_lock:
            return sum(self._cursor.values()), sum(self._ends.values())

    def start_catching_up(self) -> None:
        """Reads everything there is on a thread (ended by close()), unless one is at it already."""
        with self._stats_lock:
            if self._catch_up_thread is not None and self._catch_up_thread.is_alive():
                return
            self._catch_up_thread = threading.Thread(target=self.read_all, name="dashboard-catch-up", daemon=True)
            self._catch_up_thread.start()

    def read_all(self) -> None:
        """Reads every row there is now (or until close())."""
        while not self._closing.is_set() and not self.refresh():
            pass

    def refresh(self, max_rows: int | None = None) -> bool:
        """Adds up to `max_rows` (CHUNK_ROWS) new rows of each table to the aggregates; True when all are read."""
        limit = max_rows or CHUNK_ROWS
        with self._refresh_lock:
            if self._closing.is_set():
                return True
            conn = self._refresh_conn
            conn.execute("BEGIN")   # one snapshot for all tables
            try:
                ranges = self._next_ranges(conn, limit)
                self._refresh_tasks(conn, *ranges["task"])
                self._refresh_status(conn, *ranges["status"])
                self._refresh_resources(conn, *ranges["resource"])
                self._refresh_active(conn, *ranges["status"])
            finally:
                conn.execute("COMMIT")
            with self._stats_lock:
                for table, (_, high, end) in ranges.items():
                    self._cursor[table], self._ends[table] = high, end
                return self._cursor == self._ends

    def _next_ranges(self, conn, limit: int) -> dict:
        """table -> (low, high, end): read rowids low < rowid <= high of the `end` there are."""
        ends = {table: conn.execute(f"SELECT coalesce(max(rowid), 0) FROM {table}").fetchone()[0] for table in self._cursor}
        if any(ends[table] < low for table, low in self._cursor.items()):   # the file was replaced: start over
            with self._stats_lock:
                self._runs.clear()
                self._peaks.clear()
                self._cursor = dict.fromkeys(self._cursor, 0)
            conn.execute("DELETE FROM temp.active")
        return {table: (low, min(ends[table], low + limit), ends[table]) for table, low in self._cursor.items()}

    def _refresh_tasks(self, conn, low: int, high: int, _end: int) -> None:
        rows = conn.execute("SELECT run_id, coalesce(task_func_name, '?'), count(*) FROM task WHERE rowid > ? AND rowid <= ? GROUP BY 1, 2",
                            (low, high)).fetchall()
        with self._stats_lock:
            for run_id, app, n in rows:
                self._runs[run_id].tasks += n
                self._runs[run_id].apps[app].tasks += n

    def _refresh_status(self, conn, low: int, high: int, _end: int) -> None:
        # Final rows joined to their task and try (primary key lookups) for app and run time: from the
        # try's start (running, else launched, else the task's submission) to the final row.
        start = (f"coalesce({seconds('y.task_try_time_running')}, {seconds('y.task_try_time_launched')}, "
                 f"{seconds('t.task_time_invoked')})")
        finals = conn.execute(
            f"""SELECT s.run_id, coalesce(t.task_func_name, '?'), s.task_status_name, CAST({seconds('s.timestamp')} AS INTEGER),
                       count(*), sum({seconds('s.timestamp')} - {start}), max({seconds('s.timestamp')} - {start})
                FROM status s LEFT JOIN task t ON t.task_id = s.task_id AND t.run_id = s.run_id
                LEFT JOIN try y ON y.try_id = s.try_id AND y.task_id = s.task_id AND y.run_id = s.run_id
                WHERE s.rowid > ? AND s.rowid <= ?
                  AND s.task_status_name IN ('exec_done','memo_done','failed','dep_fail','fail_retryable')
                GROUP BY 1, 2, 3, 4""", (low, high)).fetchall()
        failed = conn.execute("SELECT run_id, task_id, try_id FROM status WHERE rowid > ? AND rowid <= ?"
                              " AND task_status_name IN ('failed','dep_fail') ORDER BY rowid", (low, high)).fetchall()
        with self._stats_lock:
            for run_id, app, state, second, n, dsum, dmax in finals:
                run, stats = self._runs[run_id], self._runs[run_id].apps[app]
                if state == "fail_retryable":
                    stats.retries += n
                    continue
                run.final[state] += n
                stats.states[state] += n
                run.finished_per_second[second] += n
                if state in ("exec_done", "failed"):
                    stats.duration_sum += dsum or 0.0
                    stats.duration_max = max(stats.duration_max, dmax or 0.0)
            for run_id, task_id, try_id in failed:
                run = self._runs[run_id]
                run.failed.append((task_id, try_id))
                run.failed_total += 1
                if len(run.failed) > 2 * FAILURES_KEPT:
                    del run.failed[:-FAILURES_KEPT]

    def _refresh_resources(self, conn, low: int, high: int, _end: int) -> None:
        rows = conn.execute(
            """SELECT r.run_id, r.task_id, coalesce(t.task_func_name, '?'), count(*), sum(r.psutil_process_memory_resident),
                      max(r.psutil_process_memory_resident),
                      max(coalesce(r.psutil_process_time_user, 0) + coalesce(r.psutil_process_time_system, 0))
               FROM resource r LEFT JOIN task t ON t.task_id = r.task_id AND t.run_id = r.run_id
               WHERE r.rowid > ? AND r.rowid <= ? GROUP BY 1, 2""", (low, high)).fetchall()
        with self._stats_lock:
            candidates = defaultdict(list)   # run_id -> (peak, task_id, app) that may enter its heaviest
            for run_id, task_id, app, n, msum, mmax, cmax in rows:
                run, mmax = self._runs[run_id], mmax or 0.0
                stats = run.apps[app]
                stats.samples += n
                stats.memory_sum += msum or 0.0
                stats.memory_max = max(stats.memory_max, mmax)
                stats.cpu_max = max(stats.cpu_max, cmax or 0.0)
                old = self._peaks[run_id].swap(task_id, mmax)
                if mmax > old:   # the task's peak moves up from the bucket it was in
                    if old > 0:
                        run.memory_mib[int(old // MIB)] -= 1
                    run.memory_mib[int(mmax // MIB)] += 1
                    candidates[run_id].append((mmax, task_id, app))
            for run_id, new in candidates.items():
                run = self._runs[run_id]
                merged = dict(run.heaviest)
                for peak, task_id, app in new:
                    if peak > merged.get(task_id, (0.0,))[0]:
                        merged[task_id] = (peak, app)
                run.heaviest = dict(heapq.nlargest(HEAVIEST_KEPT, merged.items(), key=lambda item: item[1][0]))

    def _refresh_active(self, conn, low: int, high: int, _end: int) -> None:
        """Tasks now in an executor: their latest try has a launched or running row and no end.

        Rows from workers (running, running_ended) may land after the kernel's final row, so a
        task's state is not its latest row: it is taken from all rows of its highest try. Only
        candidates are looked at: tasks active before, and tasks with a launched or running row
        among the new rows but no final row there. They are few (bounded by the workers) and
        live in TEMP tables (the only things this connection writes: they are not in the file).
        """
        conn.execute("DELETE FROM temp.candidate")
        conn.execute("""INSERT INTO temp.candidate SELECT run_id, task_id FROM status WHERE rowid > ? AND rowid <= ?
                        GROUP BY run_id, task_id
                        HAVING max(task_status_name IN ('exec_done','memo_done','failed','dep_fail')) = 0
                           AND max(task_status_name IN ('launched','running','running_ended','joining')) = 1""",
                     (low, high))
        conn.execute("INSERT OR IGNORE INTO temp.candidate SELECT run_id, task_id FROM temp.active")
        tries = conn.execute(
            """SELECT s.run_id, s.task_id, s.try_id,
                      max(s.task_status_name IN ('exec_done','memo_done','failed','dep_fail','fail_retryable')),
                      max(s.task_status_name IN ('running','running_ended','joining')),
                      max(s.task_status_name = 'launched')
               FROM temp.candidate c CROSS JOIN status s ON s.task_id = c.task_id AND s.run_id = c.run_id
               GROUP BY 1, 2, 3 ORDER BY 1, 2, 3""").fetchall()
        latest = {(run_id, task_id): (try_id, ended, running, launched)
                  for run_id, task_id, try_id, ended, running, launched in tries}   # ordered: the highest try wins
        conn.execute("DELETE FROM temp.active")
        conn.executemany("INSERT INTO temp.active VALUES (?,?,?,?)",
                         [(run_id, task_id, try_id, "running" if running else "launched")
                          for (run_id, task_id), (try_id, ended, running, launched) in latest.items()
                          if not ended and (running or launched)])
        rows = conn.execute(
            """SELECT a.run_id, a.state = 'launched', y.hostname, count(*) FROM temp.active a
               LEFT JOIN try y ON y.try_id = a.try_id AND y.task_id = a.task_id AND y.run_id = a.run_id
               GROUP BY 1, 2, 3""").fetchall()
        with self._stats_lock:
            for run in self._runs.values():
                run.launched = run.running = 0
                run.running_by_host = {}
            for run_id, state, host, n in rows:
                self._count_active(self._runs[run_id], state, host, n)

    @staticmethod
    def _count_active(run: RunStats, launched: bool, host, n: int) -> None:
        if launched:
            run.launched += n
        else:
            run.running += n
            run.running_by_host[host] = run.running_by_host.get(host, 0) + n

    def run(self, run_id: str) -> RunStats:
        """A copy of a run's aggregates."""
        with self._stats_lock:
            return self._runs[run_id].snapshot() if run_id in self._runs else RunStats()

    # Direct queries: each reads a bounded number of rows through a primary key or the rowid.

    def workflows(self) -> list[dict]:
        return [dict(zip(("run_id", "workflow_name", "workflow_version", "time_began", "time_completed", "host",
                          "user", "rundir", "began", "completed"), row))
                for row in self.query(f"""SELECT run_id, workflow_name, workflow_version, time_began, time_completed,
                                                host, user, rundir, {seconds('time_began')}, {seconds('time_completed')}
                                         FROM workflow ORDER BY time_began DESC""")]

    def workflow(self, run_id: str) -> dict | None:
        return next((w for w in self.workflows() if w["run_id"] == run_id), None)

    def run_in(self, directory: str) -> str | None:
        """The run_id of the workflow whose rundir is `directory` (such as runinfo/003), if any."""
        target = os.path.realpath(directory)
        return next((w["run_id"] for w in self.workflows() if w["rundir"] and os.path.realpath(w["rundir"]) == target), None)

    def failures(self, run_id: str, limit: int = 100) -> list[dict]:
        """The latest failed tasks, newest first, with each failed try's exception text."""
        out = []
        for task_id, try_id in reversed(self.run(run_id).failed[-limit:]):
            task = self.query("SELECT task_func_name, task_stdout, task_stderr, task_depends, task_fail_count"
                              " FROM task WHERE task_id = ? AND run_id = ?", (task_id, run_id))
            marks = ",".join("?" * (try_id + 1))
            tries = self.query(f"SELECT try_id, hostname, task_fail_history FROM try WHERE try_id IN ({marks})"
                               " AND task_id = ? AND run_id = ? ORDER BY try_id", (*range(try_id + 1), task_id, run_id))
            app, stdout, stderr, depends, fail_count = task[0] if task else ("?", None, None, None, 0)
            out.append({"task_id": task_id, "app": app, "stdout": stdout, "stderr": stderr, "depends": depends,
                        "fail_count": fail_count,
                        "tries": [{"try_id": t, "host": h, "error": e} for t, h, e in tries]})
        return out

    def recent_tries(self, run_id: str, limit: int = 400) -> list[dict]:
        """The latest tries (a sample of the task stream), with their app and times in Unix seconds."""
        rows = self.query(
            f"""SELECT y.task_id, y.try_id, y.task_executor, y.hostname, y.block_id, t.task_func_name,
                       {seconds('y.task_try_time_launched')}, {seconds('y.task_try_time_running')},
                       {seconds('y.task_try_time_returned')}, y.task_fail_history
                FROM (SELECT * FROM try WHERE run_id = ? ORDER BY rowid DESC LIMIT ?) y
                LEFT JOIN task t ON t.task_id = y.task_id AND t.run_id = y.run_id""", (run_id, limit))
        return [dict(zip(("task_id", "try_id", "executor", "host", "block", "app", "launched", "running", "returned", "error"), r))
                for r in rows]

    def blocks(self, run_id: str) -> list[dict]:
        rows = self.query("""SELECT executor_label, block_id, job_id, status, timestamp FROM block b
                             WHERE run_id = ? AND timestamp = (SELECT max(timestamp) FROM block c WHERE c.run_id = b.run_id
                                   AND c.block_id = b.block_id AND c.executor_label = b.executor_label)
                             ORDER BY executor_label, block_id""", (run_id,))
        return [dict(zip(("executor", "block_id", "job_id", "status", "timestamp"), r)) for r in rows]

    def nodes(self, run_id: str) -> list[dict]:
        rows = self.query("""SELECT hostname, uid, block_id, cpu_count, total_memory, active, worker_count, python_v,
                                    timestamp, last_heartbeat FROM node
                             WHERE id IN (SELECT max(id) FROM node WHERE run_id = ? GROUP BY uid) ORDER BY hostname""",
                          (run_id,))
        busy = self.run(run_id).running_by_host
        out = []
        for r in rows:
            node = dict(zip(("hostname", "uid", "block_id", "cpu_count", "total_memory", "active", "worker_count",
                             "python_v", "timestamp", "last_heartbeat"), r))
            node["busy"] = busy.get(node["hostname"], 0)
            out.append(node)
        return out

    def task(self, run_id: str, task_id: int) -> dict | None:
        with self._query_lock:
            cursor = self._conn.execute("SELECT * FROM task WHERE task_id = ? AND run_id = ?", (task_id, run_id))
            row = cursor.fetchone()
            names = [d[0] for d in cursor.description]
        if row is None:
            return None
        out = dict(zip(names, row))
        out["status"] = self.query("SELECT task_status_name, timestamp, try_id FROM status WHERE task_id = ? AND run_id = ?"
                                   " ORDER BY timestamp", (task_id, run_id))
        tries = self.query("SELECT max(try_id) FROM status WHERE task_id = ? AND run_id = ?", (task_id, run_id))[0][0] or 0
        marks = ",".join("?" * (tries + 1))
        out["tries"] = self.query(f"""SELECT try_id, hostname, block_id, task_executor, task_try_time_launched,
                                            task_try_time_running, task_try_time_returned, task_fail_history
                                     FROM try WHERE try_id IN ({marks}) AND task_id = ? AND run_id = ? ORDER BY try_id""",
                                  (*range(tries + 1), task_id, run_id))
        out["resources"] = self.query(f"""SELECT timestamp, psutil_process_memory_resident, psutil_process_memory_virtual,
                                                psutil_process_time_user, psutil_process_time_system
                                         FROM resource WHERE try_id IN ({marks}) AND task_id = ? AND run_id = ?
                                         ORDER BY timestamp""", (*range(tries + 1), task_id, run_id))
        return out

    def dependency_graph(self, run_id: str, limit: int) -> tuple[list[tuple], set] | None:
        """((task_id, app, depends) of every task, ids of the failed ones), or None when the run has
        more than `limit` tasks."""
        if self.run(run_id).tasks > limit:
            return None
        tasks = self.query("SELECT task_id, task_func_name, task_depends FROM task WHERE run_id = ? ORDER BY task_id LIMIT ?",
                           (run_id, limit + 1))
        ids = [t[0] for t in tasks]
        failed = {row[0] for row in self.query(
            f"SELECT task_id FROM status WHERE task_id IN ({','.join('?' * len(ids))}) AND run_id = ?"
            " AND task_status_name IN ('failed','dep_fail')", (*ids, run_id))}
        return tasks, failed
