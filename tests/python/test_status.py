"""`pervade status` and `pervade top` on monitoring databases, run as real processes."""

import os
import pty
import re
import select
import signal
import sqlite3
import subprocess
import sys

import pytest

from pervade.dashboard import synthetic

RUN = "synthetic-run-0000"


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    """A run directory whose monitoring.db holds a finished run of 400 tasks."""
    path = tmp_path_factory.mktemp("runinfo")
    synthetic.fill(str(path / "monitoring.db"), 400, seed=5, run_id=RUN)
    return str(path)


def pervade(*args):
    return subprocess.run([sys.executable, "-m", "pervade", *args], capture_output=True, text=True, timeout=60,
                          stdin=subprocess.DEVNULL)


def test_status_prints_counts_rate_apps_and_failures(run_dir):
    done = pervade("status", run_dir)
    assert done.returncode == 0, done.stderr
    out = done.stdout
    with sqlite3.connect(os.path.join(run_dir, "monitoring.db")) as conn:
        states = dict(conn.execute("SELECT task_status_name, count(*) FROM status GROUP BY 1"))
        apps = dict(conn.execute("SELECT task_func_name, count(*) FROM task GROUP BY 1"))
        last_failed, = conn.execute("SELECT task_id FROM status WHERE task_status_name = 'failed' ORDER BY rowid DESC").fetchone()
        error, = conn.execute("SELECT task_fail_history FROM try WHERE task_id = ? AND task_fail_history != ''",
                              (last_failed,)).fetchone()
    assert f"run {RUN}" in out and "completed" in out
    assert f"tasks 400 " in out
    assert f"exec_done {states['exec_done']} " in out and f"failed {states['failed']} " in out
    assert re.search(r"rate \d+\.\d tasks/s", out)
    for app, n in apps.items():
        assert re.search(rf"^{app} +{n} +{n} ", out, re.M), app
    assert f"task {last_failed} " in out and error in out
    assert f"/task_logs/{last_failed}.stderr" in out


def test_status_of_an_unknown_run_says_so(run_dir):
    done = pervade("status", run_dir, "--run", "nope")
    assert "no workflow 'nope'" in done.stdout


def test_status_of_one_run_directory_shows_that_run(tmp_path):
    """runinfo/000 and runinfo/001 share runinfo/monitoring.db: each shows its own run; runinfo the latest."""
    runinfo = tmp_path / "runinfo"
    for i, tasks in enumerate((30, 50)):
        (runinfo / f"00{i}").mkdir(parents=True)
        synthetic.fill(str(runinfo / "monitoring.db"), tasks, run_id=f"run-{i}", rundir=str(runinfo / f"00{i}"))
    assert "run run-0 " in pervade("status", str(runinfo / "000")).stdout
    assert "tasks 30 " in pervade("status", str(runinfo / "000")).stdout
    assert "run run-1 " in pervade("status", str(runinfo / "001")).stdout
    assert "run run-1 " in pervade("status", str(runinfo)).stdout


def test_top_redraws_until_q(run_dir):
    """top on a terminal (a pty): draws the summary, and quits with status 0 on q."""
    pid, fd = pty.fork()
    if pid == 0:   # the child: becomes `pervade top` on the pty
        os.execv(sys.executable, [sys.executable, "-m", "pervade", "top", run_dir, "--interval", "0.2"])
    output = b""
    try:
        while b"q to quit" not in output:
            ready, _, _ = select.select([fd], [], [], 30)
            assert ready, f"top drew nothing: {output!r}"
            output += os.read(fd, 65536)
        os.write(fd, b"q")
        _, status = os.waitpid(pid, 0)
        pid = None
    finally:
        if pid is not None:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
        os.close(fd)
    assert os.waitstatus_to_exitcode(status) == 0
    assert f"run {RUN}".encode() in output and b"\x1b[2J" in output and b"exec_done" in output


def test_top_quits_on_ctrl_c(run_dir):
    process = subprocess.Popen([sys.executable, "-m", "pervade", "top", run_dir], stdout=subprocess.PIPE,
                               stdin=subprocess.DEVNULL)
    try:
        first = process.stdout.read1(65536)
        while b"q to quit" not in first:
            first += process.stdout.read1(65536)
        process.send_signal(signal.SIGINT)
        assert process.wait(30) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
