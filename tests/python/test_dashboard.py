"""The web dashboard over HTTP: pages of a finished run match the database, database text is
escaped, paths outside the routes are rejected, the database is never written, bad input fails."""

import html
import http.client
import os
import re
import shutil
import sqlite3
import subprocess
import sys
import threading

import pytest

from conftest import wait_until
from pervade.dashboard import synthetic
from pervade.dashboard.db import Monitoring, NotMonitoringDatabase
from pervade.dashboard.server import DashboardServer

RUN = "synthetic-run-0000"
TASKS = 600


@pytest.fixture(scope="module")
def finished_db(tmp_path_factory):
    path = str(tmp_path_factory.mktemp("mon") / "monitoring.db")
    synthetic.fill(path, TASKS, seed=3, run_id=RUN)
    return path


@pytest.fixture
def serve():
    """serve(path) -> (host, port) of a dashboard on loopback; stopped after the test."""
    started = []

    def start(path):
        db = Monitoring(path)
        server = DashboardServer(db, ("127.0.0.1", 0))
        thread = threading.Thread(target=server.serve_forever, name="dashboard-test-server")
        thread.start()
        started.append((server, thread, db))
        return server.server_address[:2]

    yield start
    for server, thread, db in started:
        server.shutdown()
        server.server_close()
        thread.join(10)
        db.close()


def get(address, path, method="GET"):
    conn = http.client.HTTPConnection(*address, timeout=30)
    try:
        conn.request(method, path)
        response = conn.getresponse()
        return response.status, response.read().decode()
    finally:
        conn.close()


def cell(page, element_id):
    match = re.search(rf'id="{element_id}">([^<]*)<', page)
    assert match, f"no element {element_id} in the page"
    return match.group(1)


def sql(path, query, args=()):
    with sqlite3.connect(path) as conn:
        return conn.execute(query, args).fetchall()


def test_overview_counts_match_the_database(finished_db, serve):
    address = serve(finished_db)
    status, page = get(address, f"/run/{RUN}/")
    assert status == 200
    finals = dict(sql(finished_db, "SELECT task_status_name, count(*) FROM status WHERE task_status_name IN"
                                   " ('exec_done','failed') GROUP BY 1"))
    assert finals["failed"] > 0 and finals["exec_done"] > 0
    assert int(cell(page, "count-tasks")) == TASKS
    assert int(cell(page, "count-exec_done")) == finals["exec_done"]
    assert int(cell(page, "count-failed")) == finals["failed"]
    assert int(cell(page, "count-running")) == 0 and int(cell(page, "count-pending")) == 0
    assert "http-equiv=\"refresh\"" not in page   # a finished run does not reload
    apps = sql(finished_db, "SELECT task_func_name, count(*) FROM task GROUP BY 1")
    for app, n in apps:
        assert re.search(rf"<td>{app}</td><td class=\"n\">{n}</td>", page), app


def test_every_page_answers(finished_db, serve):
    address = serve(finished_db)
    for path in ("/", f"/run/{RUN}/", f"/run/{RUN}/tasks", f"/run/{RUN}/failures", f"/run/{RUN}/resources",
                 f"/run/{RUN}/resources?threshold_mb=100", f"/run/{RUN}/pools", f"/run/{RUN}/dag", f"/run/{RUN}/task/7"):
        status, page = get(address, path)
        assert status == 200, path
        assert page.startswith("<!DOCTYPE html>") and "Traceback" not in page, path


def test_failures_page_shows_exception_text_and_std_paths(finished_db, serve):
    address = serve(finished_db)
    _, page = get(address, f"/run/{RUN}/failures")
    failed = sql(finished_db, "SELECT task_id FROM status WHERE task_status_name = 'failed' ORDER BY rowid DESC LIMIT 3")
    assert int(cell(page, "failed-count")) == len(sql(finished_db, "SELECT 1 FROM status WHERE task_status_name='failed'"))
    for (task_id,) in failed:
        error, = sql(finished_db, "SELECT task_fail_history FROM try WHERE task_id = ? AND task_fail_history != ''", (task_id,))[0]
        stdout, stderr = sql(finished_db, "SELECT task_stdout, task_stderr FROM task WHERE task_id = ?", (task_id,))[0]
        assert html.escape(error) in page and stdout in page and stderr in page


def test_memory_threshold_flags_tasks(finished_db, serve):
    address = serve(finished_db)
    mib = 1024 * 1024
    for threshold in (100, 300):
        _, page = get(address, f"/run/{RUN}/resources?threshold_mb={threshold}")
        expected, = sql(finished_db, "SELECT count(*) FROM (SELECT max(psutil_process_memory_resident) AS peak FROM resource"
                                     " GROUP BY run_id, task_id) WHERE peak >= ?", (threshold * mib,))[0]
        assert int(cell(page, "heavy-count")) == expected
    assert expected > 0
    heaviest = sql(finished_db, "SELECT task_id FROM resource GROUP BY task_id ORDER BY max(psutil_process_memory_resident) DESC"
                                " LIMIT 3")
    for (task_id,) in heaviest:
        assert f"/task/{task_id}\">{task_id}</a>" in page
    for bad in ("lots", "100.5"):
        assert get(address, f"/run/{RUN}/resources?threshold_mb={bad}")[0] == 400


def test_pools_page_lists_blocks_and_nodes(finished_db, serve):
    _, page = get(serve(finished_db), f"/run/{RUN}/pools")
    for host, in sql(finished_db, "SELECT DISTINCT hostname FROM node"):
        assert f"<td>{host}</td>" in page
    assert page.count("<td>RUNNING</td>") == 2   # each block's latest status only


def test_database_text_is_escaped(finished_db, serve, tmp_path):
    path = str(tmp_path / "monitoring.db")
    shutil.copy(finished_db, path)
    evil = "<script>alert(1)</script>"
    with sqlite3.connect(path) as conn:
        conn.execute("UPDATE workflow SET workflow_name = ?", (evil,))
        conn.execute("UPDATE task SET task_func_name = ? WHERE task_id % 4 = 0", (evil,))
        conn.execute("UPDATE try SET task_fail_history = ?, hostname = ? WHERE task_fail_history != ''", (evil, evil))
    address = serve(path)
    failed_task, = sql(path, "SELECT task_id FROM try WHERE task_fail_history = ? AND task_id % 4 = 0", (evil,))[0]
    for page_path in ("/", f"/run/{RUN}/", f"/run/{RUN}/tasks", f"/run/{RUN}/failures", f"/run/{RUN}/resources",
                      f"/run/{RUN}/task/{failed_task}"):
        status, page = get(address, page_path)
        assert status == 200 and evil not in page and html.escape(evil) in page, page_path


def test_dependency_graph_of_a_small_run(tmp_path, serve):
    path = str(tmp_path / "monitoring.db")
    synthetic.fill(path, 40, seed=5, run_id=RUN)   # a seed with two failures
    evil = "<b>x</b>"
    with sqlite3.connect(path) as conn:
        conn.execute("UPDATE task SET task_func_name = ? WHERE task_id = 3", (evil,))
        edges = sum(len(d.split(",")) for (d,) in conn.execute("SELECT task_depends FROM task WHERE task_depends IS NOT NULL"))
    status, page = get(serve(path), f"/run/{RUN}/dag")
    assert status == 200 and edges > 0
    assert page.count("<circle") == 40 and page.count("<line") == edges
    failed = len(sql(path, "SELECT 1 FROM status WHERE task_status_name = 'failed'"))
    assert failed == 2 and page.count('stroke="#d64545"') == failed
    assert evil not in page and html.escape(evil) in page


def test_paths_outside_the_routes_are_rejected(finished_db, serve):
    address = serve(finished_db)
    for path in ("/etc/passwd", "/../../etc/passwd", f"/run/{RUN}/../../etc/passwd", f"/run/{RUN}/task/x",
                 "/run/no-such-run/", f"/run/{RUN}/task/999999", f"/run/{RUN}/static/x.js", "//etc/passwd", "/run//", "/run/%2e%2e/"):
        status, page = get(address, path)
        assert status == 404, path
        assert "root:" not in page
    assert get(address, "/", method="HEAD") == (200, "")
    assert get(address, "/", method="POST")[0] == 501
    assert get(address, "/", method="DELETE")[0] == 501


def test_database_is_opened_read_only(finished_db):
    db = Monitoring(finished_db)
    try:
        with pytest.raises(sqlite3.OperationalError, match="readonly"):
            db.query("CREATE TABLE x (a)")
    finally:
        db.close()


def test_aggregates_grow_with_appended_rows(finished_db, tmp_path):
    """refresh() reads only new rows, and its totals equal a full count afterwards."""
    path = str(tmp_path / "monitoring.db")
    shutil.copy(finished_db, path)
    db = Monitoring(path)
    try:
        db.refresh()
        before = db.run(RUN).counts()
        with sqlite3.connect(path) as conn:
            conn.execute("INSERT INTO task SELECT task_id + 100000, run_id, task_depends, task_func_name, task_memoize,"
                         " task_hashsum, task_inputs, task_outputs, task_stdin, task_stdout, task_stderr, task_time_invoked,"
                         " NULL, 0, 0 FROM task WHERE task_id < 10")
            conn.execute("INSERT INTO status SELECT task_id + 100000, task_status_name, timestamp, run_id, try_id FROM status"
                         " WHERE task_id < 5 AND task_status_name = 'exec_done'")
        db.refresh()
        after = db.run(RUN).counts()
        assert sum(after.values()) == sum(before.values()) + 10
        copied = len(sql(path, "SELECT 1 FROM status WHERE task_id >= 100000 AND task_status_name = 'exec_done'"))
        assert copied > 0 and after["exec_done"] == before["exec_done"] + copied
        assert after["pending"] == 5
    finally:
        db.close()


def test_reading_in_chunks_gives_the_same_totals(finished_db):
    whole, chunked = Monitoring(finished_db), Monitoring(finished_db)
    try:
        whole.read_all()
        steps = 0
        while not chunked.refresh(max_rows=500):
            steps += 1
            assert not chunked.caught_up
            read, total = chunked.progress()
            assert 0 < read < total
        assert steps > 3 and chunked.caught_up
        a, b = whole.run(RUN), chunked.run(RUN)
        assert a.counts() == b.counts() and a.failed_total == b.failed_total
        assert a.memory_mib == b.memory_mib and a.heaviest == b.heaviest
        assert {k: v.tasks for k, v in a.apps.items()} == {k: v.tasks for k, v in b.apps.items()}
    finally:
        whole.close()
        chunked.close()


def test_pages_answer_while_a_big_database_is_read(finished_db, serve, monkeypatch):
    """A page during the first pass says how far it got and reloads itself; numbers complete after it."""
    from pervade.dashboard import db as db_module
    monkeypatch.setattr(db_module, "CHUNK_ROWS", 100)
    address = serve(finished_db)
    status, page = get(address, f"/run/{RUN}/")
    assert status == 200
    assert 'id="note"' in page and "reading the database" in page and 'http-equiv="refresh"' in page
    assert wait_until(lambda: 'id="note"' not in get(address, f"/run/{RUN}/")[1], 60)
    assert int(cell(get(address, f"/run/{RUN}/")[1], "count-tasks")) == TASKS


def test_state_of_a_task_is_that_of_its_highest_try_whatever_the_row_order(finished_db, tmp_path):
    """Workers' rows (running, running_ended) may land after the kernel's: they never revive a task."""
    path = str(tmp_path / "monitoring.db")
    shutil.copy(finished_db, path)
    ts = "2030-01-01 00:00:00.000000"
    base = 100000
    with sqlite3.connect(path) as conn:
        conn.execute("INSERT INTO task SELECT task_id + ?, run_id, task_depends, task_func_name, task_memoize, task_hashsum,"
                     " task_inputs, task_outputs, task_stdin, task_stdout, task_stderr, task_time_invoked, NULL, 0, 0"
                     " FROM task WHERE task_id < 4", (base,))
        rows = [(0, "pending", 0), (0, "launched", 0),                                          # launched
                (1, "pending", 0), (1, "launched", 0), (1, "running", 0),                       # running
                (2, "pending", 0), (2, "launched", 0), (2, "fail_retryable", 0), (2, "pending", 1),
                (2, "running_ended", 0),                                                        # pending: try 1 waits
                (3, "pending", 0), (3, "launched", 0), (3, "exec_done", 0)]
        conn.executemany("INSERT INTO status VALUES (?,?,?,?,?)",
                         [(base + t, name, f"{ts[:-1]}{i}", RUN, try_id) for i, (t, name, try_id) in enumerate(rows)])
    db = Monitoring(path)
    try:
        db.read_all()
        counts = db.run(RUN).counts()
        assert (counts["launched"], counts["running"], counts["pending"]) == (1, 1, 1)
        with sqlite3.connect(path) as conn:   # late worker rows for a finished task, and the end of the others
            conn.executemany("INSERT INTO status VALUES (?,?,?,?,?)",
                             [(base + 3, "running", "2030-01-02 00:00:00.000000", RUN, 0),
                              (base + 3, "running_ended", "2030-01-02 00:00:00.000001", RUN, 0),
                              (base + 1, "exec_done", "2030-01-02 00:00:00.000002", RUN, 0)])
        db.read_all()
        counts = db.run(RUN).counts()
        assert (counts["launched"], counts["running"], counts["pending"]) == (1, 0, 1)
    finally:
        db.close()


@pytest.mark.parametrize("make, message", [
    (lambda d: os.path.join(d, "missing.db"), "no such file"),
    (lambda d: d, "holds no monitoring.db"),
    (lambda d: open(os.path.join(d, "notes.txt"), "w").write("not sqlite" * 100) and os.path.join(d, "notes.txt"),
     "not an SQLite database"),
    (lambda d: sqlite3.connect(os.path.join(d, "other.db")).execute("CREATE TABLE t (a)") and os.path.join(d, "other.db"),
     "not a monitoring database"),
])
def test_bad_input_exits_non_zero_with_a_message(tmp_path, make, message):
    path = make(str(tmp_path))
    with pytest.raises(NotMonitoringDatabase, match=message):
        Monitoring(path)
    for command in ("dashboard", "status", "top"):
        done = subprocess.run([sys.executable, "-m", "pervade", command, path], capture_output=True, text=True, timeout=60,
                              stdin=subprocess.DEVNULL)
        assert done.returncode != 0, command
        assert message in done.stderr and "Traceback" not in done.stderr, (command, done.stderr)
