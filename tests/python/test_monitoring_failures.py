"""The monitoring database's troubles never stop a run: a database locked by another connection
holds events back until it is free, a full disk loses them; either is said in the run's log
(pervade.log), the writer's own log (database_manager.log) and on stderr. Parsl's log files of
the database manager, and the block states it records."""

import json
import os
import sqlite3
import subprocess
import sys
import textwrap

import pytest
from conftest import wait_until

import pervade as parsl
from pervade import HighThroughputExecutor, LocalProvider, SimpleLauncher, python_app
from pervade.logconfigs.json import JSONLogging
from pervade.monitoring import MonitoringHub

T = 60


@python_app
def double(x):
    return 2 * x


def read(path):
    with open(path) as f:
        return f.read()


def test_a_locked_database_holds_events_back_and_the_run_goes_on(load, run_dir):
    dfk = load(monitoring=MonitoringHub(resource_monitoring_interval=0))
    db = os.path.join(run_dir, "monitoring.db")
    other = sqlite3.connect(db, isolation_level=None)
    other.execute("BEGIN IMMEDIATE")  # the write lock, held while the tasks run
    try:
        assert [double(i).result(timeout=T) for i in range(10)] == [2 * i for i in range(10)]
        log = os.path.join(dfk.run_dir, "pervade.log")
        assert wait_until(lambda: "is locked by another connection" in read(log), T), read(log)
    finally:
        other.execute("ROLLBACK")
        other.close()
    dfk.cleanup()
    with sqlite3.connect(db) as c:
        assert c.execute("SELECT count(*) FROM task").fetchone()[0] == 10  # nothing lost
    assert "WARNING: the monitoring database" in read(log)
    manager_log = read(os.path.join(dfk.run_dir, "database_manager.log"))
    assert "is free again" in manager_log and "0 lost" in manager_log


def test_a_full_disk_loses_events_loudly_and_the_run_goes_on(tmp_path):
    # A file size limit stands in for a full disk: writes past it fail with EFBIG.
    script = tmp_path / "run.py"
    script.write_text(textwrap.dedent("""
        import resource, signal
        import pervade as parsl
        from pervade.monitoring import MonitoringHub
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (1 << 20, 1 << 20))

        @parsl.python_app
        def noop(i):
            return i

        config = parsl.Config(executors=[parsl.ThreadPoolExecutor(max_threads=2)], run_dir="runinfo",
                              monitoring=MonitoringHub(resource_monitoring_interval=0))
        with parsl.load(config) as dfk:
            assert sum(noop(i).result() for i in range(6000)) == sum(range(6000))
            print(dfk.run_dir)
    """))
    done = subprocess.run([sys.executable, str(script)], cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert "ERROR: writing the monitoring database" in done.stderr
    run = done.stdout.strip().splitlines()[-1]
    log = read(os.path.join(run, "pervade.log"))
    assert "pervade.monitoring.db_manager:0 write ERROR: writing the monitoring database" in log, log
    assert "monitoring events were lost" in read(os.path.join(run, "database_manager.log"))


def test_the_database_manager_logs_where_parsl_does(load):
    # Parsl's test_log_config: database_manager.log in the run's directory, or .jsonlog with JSONLogging.
    dfk = load(monitoring=MonitoringHub())
    double(1).result(timeout=T)
    assert os.path.exists(os.path.join(dfk.run_dir, "database_manager.log"))
    dfk.cleanup()
    text = read(os.path.join(dfk.run_dir, "database_manager.log"))
    assert " pervade.monitoring.db_manager:0 start INFO: Database manager started: writing " in text, text
    assert "DEBUG" not in text  # INFO unless monitoring_debug


def test_json_logging_gives_a_json_database_manager_log(load):
    dfk = load(monitoring=MonitoringHub(monitoring_debug=True), initialize_logging=JSONLogging(level=10))
    double(1).result(timeout=T)
    dfk.cleanup()
    lines = [json.loads(line) for line in read(os.path.join(dfk.run_dir, "database_manager.jsonlog")).splitlines()]
    assert lines[0]["name"] == "pervade.monitoring.db_manager" and lines[0]["levelname"] == "INFO"
    assert any(r["msg"].startswith("committed ") for r in lines)
    assert not os.path.exists(os.path.join(dfk.run_dir, "database_manager.log"))


@pytest.mark.parametrize("strategy", ["none", "simple"])
def test_a_block_and_its_pool_are_recorded_until_shutdown(tmp_path, no_thread_leak, strategy):
    # Parsl's test_htex_init_blocks_vs_monitoring: one PENDING and one SCALED_IN row for the block;
    # and the pool's node rows end with it inactive.
    db = tmp_path / "monitoring.db"
    config = parsl.Config(
        run_dir=str(tmp_path), strategy=strategy, strategy_period=0.1,
        executors=[HighThroughputExecutor(label="htex", cores_per_worker=1, max_workers_per_node=1,
                                          provider=LocalProvider(init_blocks=1, min_blocks=0, max_blocks=0,
                                                                 launcher=SimpleLauncher()))],
        monitoring=MonitoringHub(logging_endpoint=f"sqlite:///{db}"))
    with parsl.load(config) as dfk:
        run_id = dfk.run_id
        assert double(3).result(timeout=T) == 6
    with sqlite3.connect(db) as c:
        rows = c.execute("SELECT status FROM block WHERE block_id='0' AND run_id=? ORDER BY timestamp",
                         (run_id,)).fetchall()
        nodes = c.execute("SELECT active FROM node WHERE run_id=? ORDER BY timestamp", (run_id,)).fetchall()
    assert nodes[0] == (1,) and nodes[-1] == (0,), nodes
    statuses = [r[0] for r in rows]
    assert statuses.count("PENDING") == 1 and statuses.count("SCALED_IN") == 1, statuses
    assert statuses[0] == "PENDING" and statuses[-1] == "SCALED_IN", statuses
