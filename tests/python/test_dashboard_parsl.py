"""The dashboard and `pervade status` on a database written by Parsl itself (MonitoringHub), the
reference for the schema: Parsl from PyPI in its own virtual environment under build/, a run
with a thread pool and a HighThroughputExecutor, failures, retries and a bash app's std files."""

import os
import re
import sqlite3
import subprocess
import sys
import textwrap

import pytest

from conftest import own_processes, wait_until
from pervade.dashboard.db import Monitoring

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
# Shared with test_monitoring_visualize.py: one install of Parsl serves both.
VENV = os.path.join(REPO, "build", "visualize-venv")

SCRIPT = textwrap.dedent('''
    import sys
    import parsl
    from parsl import bash_app, python_app
    from parsl.config import Config
    from parsl.executors import HighThroughputExecutor, ThreadPoolExecutor
    from parsl.monitoring import MonitoringHub
    from parsl.providers import LocalProvider

    @python_app(executors=["threads"])
    def square(x):
        if x % 7 == 3:
            raise ValueError(f"bad input {x}")
        return x * x

    @python_app(executors=["htex"])
    def total(*xs):
        return sum(xs)

    @bash_app(executors=["htex"])
    def shout(i, stdout=None, stderr=None):
        return f"echo hello {i}; exit {1 if i == 2 else 0}"

    def main(run_dir):
        config = Config(executors=[ThreadPoolExecutor(label="threads", max_threads=4),
                                   HighThroughputExecutor(label="htex", max_workers_per_node=2,
                                                          provider=LocalProvider(init_blocks=1, max_blocks=1))],
                        monitoring=MonitoringHub(resource_monitoring_interval=1), retries=1, run_dir=run_dir)
        with parsl.load(config):
            futures = [square(i) for i in range(20)]
            futures += [total(*futures[4:8]), total(*futures[:4])]   # the second one's input 3 fails: dep_fail
            futures += [shout(i, stdout=f"{run_dir}/out.{i}", stderr=f"{run_dir}/err.{i}") for i in range(4)]
            for f in futures:
                f.exception()

    if __name__ == "__main__":   # Parsl's monitoring starts processes with spawn
        main(sys.argv[1])
''')


@pytest.fixture(scope="module")
def parsl_run_dir(tmp_path_factory):
    python = os.path.join(VENV, "bin", "python")
    if not os.path.exists(python):
        subprocess.run([sys.executable, "-m", "venv", VENV], check=True, timeout=300)
    if subprocess.run([python, "-c", "import parsl.monitoring.db_manager"], capture_output=True).returncode != 0:
        install = subprocess.run([python, "-m", "pip", "install", "-q", "parsl[monitoring,visualization]"], capture_output=True,
                                 text=True, timeout=900)
        if install.returncode != 0:
            pytest.skip(f"SKIPPED LOUDLY: parsl[monitoring,visualization] could not be installed from PyPI: {install.stderr[-500:]}")
    work = tmp_path_factory.mktemp("parsl")
    script = work / "run.py"
    script.write_text(SCRIPT)
    run_dir = str(work / "runinfo")
    env = {**os.environ, "PATH": f"{os.path.join(VENV, 'bin')}:{os.environ['PATH']}"}   # HTEX starts process_worker_pool.py
    done = subprocess.run([python, str(script), run_dir], capture_output=True, text=True, timeout=300, cwd=work, env=env)
    assert done.returncode == 0, done.stderr[-2000:]
    assert wait_until(lambda: not own_processes(b"visualize-venv"), 60), "Parsl left processes behind"
    return run_dir


def test_counts_failures_and_std_paths_of_a_parsl_run(parsl_run_dir):
    path = os.path.join(parsl_run_dir, "monitoring.db")
    with sqlite3.connect(path) as conn:
        finals = dict(conn.execute("SELECT task_status_name, count(*) FROM status"
                                   " WHERE task_status_name IN ('exec_done','failed','dep_fail') GROUP BY 1"))
        tasks, = conn.execute("SELECT count(*) FROM task").fetchone()
    assert tasks == 26 and finals["failed"] >= 3 and finals["dep_fail"] == 1
    db = Monitoring(parsl_run_dir)
    try:
        db.read_all()
        run_id = db.workflows()[0]["run_id"]
        stats = db.run(run_id)
        counts = stats.counts()
        # Finished: nothing pending or running, whatever order the workers' rows landed in.
        assert counts == {"pending": 0, "launched": 0, "running": 0, "exec_done": finals["exec_done"], "memo_done": 0,
                          "failed": finals["failed"], "dep_fail": finals["dep_fail"]}
        assert stats.apps["square"].retries == stats.apps["square"].states["failed"] == 3
        assert stats.apps["shout"].memory_max > 0     # HTEX tasks were sampled
    finally:
        db.close()
    out = subprocess.run([sys.executable, "-m", "pervade", "status", parsl_run_dir], capture_output=True, text=True,
                         timeout=60).stdout
    assert "ValueError('bad input 3')" in out and "BashExitFailure" in out
    assert f"{parsl_run_dir}/out.2" in out and f"{parsl_run_dir}/err.2" in out
    assert re.search(rf"dep_fail {finals['dep_fail']}\b", out)
