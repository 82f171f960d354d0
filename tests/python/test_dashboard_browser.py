"""The dashboard in a real headless Chromium while a real pervade workflow runs (a ThreadPoolExecutor
with MonitoringHub, in its own process): the numbers on the pages equal the database's while the
run goes, change as it goes on, equal them once it is over, and screenshots are saved.

The workflow runs three phases of tasks (a tenth of them fail); the tasks of phases 2 and 3 wait
for a gate file the test creates, so the run holds still at known points while the pages load:
the counts on the page must then equal the database's exactly, with tasks in the executor.
"""

import os
import re
import shutil
import signal
import sqlite3
import subprocess
import sys

import pytest

from conftest import wait_until

PHASE = 40      # tasks per phase
THREADS = 4

WORKFLOW = r'''
import os, sys, time
import pervade as parsl
from pervade.monitoring import MonitoringHub

run_dir, gates, phase, threads = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])

@parsl.python_app
def work(i, gate):
    import os, time
    deadline = time.monotonic() + 120   # never hang the test's run if the gate never opens
    while gate and not os.path.exists(gate) and time.monotonic() < deadline:
        time.sleep(0.01)
    if i % 10 == 3:
        raise ValueError(f"task {i} fails on purpose")
    return i

parsl.load(parsl.Config(executors=[parsl.ThreadPoolExecutor(label="threads", max_threads=threads)], run_dir=run_dir,
                        monitoring=MonitoringHub(workflow_name="browser-live", resource_monitoring_interval=1)))
for p in range(3):
    gate = os.path.join(gates, f"gate{p}") if p else None
    futures = [work(p * phase + i, gate) for i in range(phase)]
    for f in futures:
        f.exception()
parsl.dfk().cleanup()
'''


def chromium() -> str:
    """The chromium binary, installed from Debian when missing (skipped loudly if impossible)."""
    found = shutil.which("chromium")
    if found is None and os.geteuid() == 0 and shutil.which("apt-get"):
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        for command in (["apt-get", "install", "-y", "-q", "chromium"], ["apt-get", "update", "-q"],
                        ["apt-get", "install", "-y", "-q", "chromium"]):   # update only if the first try fails
            if shutil.which("chromium"):
                break
            subprocess.run(command, capture_output=True, timeout=900, env=env)
        found = shutil.which("chromium")
    if found is None:
        pytest.skip("SKIPPED LOUDLY: Debian's chromium is not installed and could not be installed")
    return found


def load_page(browser: str, url: str, screenshot: str, profile: str) -> str:
    """The DOM of `url` after Chromium loaded it; a screenshot of it is written to `screenshot`."""
    process = subprocess.Popen([browser, "--headless", "--no-sandbox", "--disable-gpu", f"--user-data-dir={profile}",
                                "--window-size=1200,900", f"--screenshot={screenshot}", "--dump-dom", url],
                               stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        dom, _ = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
    assert process.returncode == 0, url
    return dom.decode()


def count(dom: str, state: str) -> int:
    match = re.search(rf'id="count-{state}">(\d+)<', dom)
    assert match, f"no count of {state} on the page"
    return int(match.group(1))


def query(path: str, sql: str):
    """The first value of `sql`'s first row; None while the database or its tables do not exist
    yet (the writer makes the file, then the tables)."""
    if not os.path.exists(path):
        return None
    with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as conn:
        try:
            return conn.execute(sql).fetchone()[0]
        except sqlite3.OperationalError as e:
            if "no such table" in str(e):
                return None
            raise


def final_in_db(path: str, state: str) -> int:
    return query(path, f"SELECT count(*) FROM status WHERE task_status_name='{state}'") or 0


def held_at(path: str, phase: int) -> bool:
    """The run is held at the gate of `phase`: every earlier task is final, every task of the
    phase is launched, THREADS of them run, and the rows of all this are committed (the task rows
    of unfinished tasks may follow their status rows by up to 3 commit intervals)."""
    first = phase * PHASE
    return (final_in_db(path, "exec_done") + final_in_db(path, "failed") == first
            and query(path, "SELECT count(*) FROM task") == first + PHASE
            and query(path, f"SELECT count(*) FROM status WHERE task_id >= {first} "
                            "AND task_status_name='launched'") == PHASE
            and query(path, f"SELECT count(*) FROM status WHERE task_id >= {first} "
                            "AND task_status_name='running'") == THREADS)


@pytest.fixture
def live_run(tmp_path):
    """(dashboard url, db path, gates dir, workflow process) for a real workflow being run."""
    run_dir, gates = tmp_path / "runinfo", tmp_path / "gates"
    gates.mkdir()
    path = str(run_dir / "monitoring.db")
    workflow = subprocess.Popen([sys.executable, "-c", WORKFLOW, str(run_dir), str(gates), str(PHASE), str(THREADS)],
                                cwd=tmp_path, start_new_session=True)
    dashboard = None
    try:
        assert wait_until(lambda: workflow.poll() is not None or query(path, "SELECT count(*) FROM workflow"), 60)
        assert workflow.poll() is None, "the workflow ended before its run was in the database"
        dashboard = subprocess.Popen([sys.executable, "-m", "pervade", "dashboard", str(run_dir), "--port", "0"],
                                     stdout=subprocess.PIPE, text=True, start_new_session=True)
        url = None
        for line in dashboard.stdout:
            match = re.search(r"on (http://127\.0\.0\.1:\d+/)", line)
            if match:
                url = match.group(1)
                break
        assert url, "the dashboard did not say where it listens"
        yield url, path, gates, workflow
    finally:
        for process in (dashboard, workflow):
            if process is not None and process.poll() is None:
                os.killpg(process.pid, signal.SIGKILL)
            if process is not None:
                process.wait(30)


def test_pages_follow_a_running_workflow(live_run, tmp_path):
    url, path, gates, workflow = live_run
    browser = chromium()
    profile = str(tmp_path / "chromium-profile")
    shots = tmp_path / "screenshots"
    shots.mkdir()
    run_id = query(path, "SELECT run_id FROM workflow")
    overview = f"{url}run/{run_id}/"

    seen = []
    for phase in (1, 2):   # the run held at the gate of phase 1, then of phase 2
        assert wait_until(lambda: held_at(path, phase), 60), f"the run never held at phase {phase}"
        dom = load_page(browser, overview, str(shots / f"overview-phase{phase}.png"), profile)
        assert 'http-equiv="refresh" content="2"' in dom   # a running workflow reloads itself every 2 s
        assert count(dom, "tasks") == (phase + 1) * PHASE == query(path, "SELECT count(*) FROM task")
        assert count(dom, "exec_done") == final_in_db(path, "exec_done")
        assert count(dom, "failed") == final_in_db(path, "failed") > 0
        assert count(dom, "running") == THREADS
        assert count(dom, "pending") + count(dom, "launched") + count(dom, "running") == PHASE
        seen.append(count(dom, "exec_done"))
        if phase == 2:
            dom = load_page(browser, f"{url}run/{run_id}/tasks", str(shots / "tasks-running.png"), profile)
            assert dom.count("<rect") >= 2 * PHASE   # the task stream draws the tries done so far
        (gates / f"gate{phase}").touch()
    assert seen[0] < seen[1]   # the numbers changed as the run went on

    assert workflow.wait(120) == 0
    final = load_page(browser, overview, str(shots / "overview-finished.png"), profile)
    assert 'http-equiv="refresh"' not in final
    assert count(final, "tasks") == 3 * PHASE
    assert count(final, "exec_done") == final_in_db(path, "exec_done") == 3 * PHASE * 9 // 10 > seen[1]
    assert count(final, "failed") == final_in_db(path, "failed") == 3 * PHASE // 10
    assert count(final, "running") == count(final, "pending") == count(final, "launched") == 0
    for name in ("overview-phase1.png", "overview-phase2.png", "tasks-running.png", "overview-finished.png"):
        assert (shots / name).stat().st_size > 10_000, name
    print(f"screenshots in {shots}")
