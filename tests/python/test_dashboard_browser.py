"""The dashboard in a real headless Chromium while a workflow runs: the numbers on the page
change as the run goes, lie within the database's counts at the time of the load, equal them
once the run is over, and screenshots are saved.

Until the engine's monitoring writer is merged, a synthetic.LiveRun thread appends the run's
rows to the database as that writer would.
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
from pervade.dashboard import synthetic

RUN = "live-run-0000"
TASKS = 300
RATE = 40.0   # tasks submitted per second: the run lasts about 8 s


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


def finished_in_db(path: str) -> int:
    with sqlite3.connect(path) as conn:
        return conn.execute("SELECT count(*) FROM status WHERE task_status_name IN ('exec_done','failed')").fetchone()[0]


def tasks_in_db(path: str) -> int:
    with sqlite3.connect(path) as conn:
        return conn.execute("SELECT count(*) FROM task").fetchone()[0]


@pytest.fixture
def dashboard(tmp_path):
    """(url, db path) of `pervade dashboard` (a real process) on a database being written."""
    path = str(tmp_path / "runinfo" / "monitoring.db")
    os.makedirs(os.path.dirname(path))
    run = synthetic.LiveRun(path, TASKS, rate=RATE, run_id=RUN)
    run.start()
    process = None
    try:
        assert run.started.wait(30)
        assert wait_until(lambda: tasks_in_db(path) > 0, 30)
        process = subprocess.Popen([sys.executable, "-m", "pervade", "dashboard", os.path.dirname(path), "--port", "0"],
                                   stdout=subprocess.PIPE, text=True)
        url = None
        for line in process.stdout:
            match = re.search(r"on (http://127\.0\.0\.1:\d+/)", line)
            if match:
                url = match.group(1)
                break
        assert url, "the dashboard did not say where it listens"
        yield url, path, run
    finally:
        run.stop()
        if process is not None:
            process.terminate()
            process.wait(30)
    assert run.error is None


def test_pages_follow_a_running_workflow(dashboard, tmp_path):
    url, path, run = dashboard
    browser = chromium()
    profile = str(tmp_path / "chromium-profile")
    shots = tmp_path / "screenshots"
    shots.mkdir()

    assert wait_until(lambda: finished_in_db(path) >= 20, 30)
    before = finished_in_db(path)
    dom = load_page(browser, f"{url}run/{RUN}/", str(shots / "overview-running.png"), profile)
    after = finished_in_db(path)
    first = count(dom, "exec_done") + count(dom, "failed")
    assert before <= first <= after
    assert 'http-equiv="refresh" content="2"' in dom   # a running workflow reloads itself every 2 s
    assert 0 < count(dom, "tasks") <= TASKS

    assert wait_until(lambda: finished_in_db(path) > after + 20, 30)
    dom = load_page(browser, f"{url}run/{RUN}/tasks", str(shots / "tasks-running.png"), profile)
    assert dom.count("<rect") > 20   # the task stream draws the tries done so far

    run.join(60)
    assert not run.is_alive()
    final = load_page(browser, f"{url}run/{RUN}/", str(shots / "overview-finished.png"), profile)
    with sqlite3.connect(path) as conn:
        states = dict(conn.execute("SELECT task_status_name, count(*) FROM status GROUP BY 1").fetchall())
    assert count(final, "tasks") == TASKS
    assert count(final, "exec_done") == states["exec_done"] > first
    assert count(final, "failed") == states["failed"] > 0
    assert count(final, "running") == count(final, "pending") == 0
    assert 'http-equiv="refresh"' not in final
    for name in ("overview-running.png", "tasks-running.png", "overview-finished.png"):
        assert (shots / name).stat().st_size > 10_000, name
    print(f"screenshots in {shots}")
