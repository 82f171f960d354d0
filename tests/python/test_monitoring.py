"""MonitoringHub end to end: Parsl's database written by the engine for thread-pool and HTEX tasks,
bad endpoints, and a script that ends with an exception."""

import os
import shutil
import sqlite3
import subprocess
import sys
import textwrap
import warnings

import pytest
from conftest import wait_until

import pervade as parsl
from pervade import HighThroughputExecutor, LocalProvider, python_app
from pervade.errors import ConfigurationError
from pervade.monitoring import MonitoringHub

T = 60


def rows(db, sql):
    with sqlite3.connect(db) as c:
        return c.execute(sql).fetchall()


def one(db, sql):
    return rows(db, sql)[0][0]


@python_app(executors=["threads"])
def double(x):
    return 2 * x


@python_app(executors=["threads"])
def fails(msg):
    raise ValueError(msg)


@python_app(executors=["htex"])
def on_pool(x):
    return x + 1


@python_app(executors=["htex"])
def flaky(marker):
    # Fails on its first try only: the marker file says it ran before.
    if not os.path.exists(marker):
        open(marker, "w").close()
        raise RuntimeError("first try fails")
    return "ok"


def test_threads_and_htex_run_writes_parsl_tables(tmp_path, no_thread_leak):
    run_dir = str(tmp_path / "runinfo")
    config = parsl.Config(
        executors=[parsl.ThreadPoolExecutor(label="threads", max_threads=2),
                   HighThroughputExecutor(label="htex", max_workers_per_node=2, heartbeat_period=0.5,
                                          heartbeat_threshold=3, worker_port_range=(56000, 57000),
                                          provider=LocalProvider(init_blocks=1))],
        run_dir=run_dir, retries=1,
        monitoring=MonitoringHub(workflow_name="mon-test", resource_monitoring_interval=1))
    dfk = parsl.load(config)
    a = double(1)
    b = on_pool(a)
    f = flaky(str(tmp_path / "marker"))
    bad = fails("no")
    assert b.result(timeout=T) == 3
    assert f.result(timeout=T) == "ok"
    with pytest.raises(ValueError):
        bad.result(timeout=T)
    run_id = dfk.run_id
    dfk.cleanup()

    db = os.path.join(run_dir, "monitoring.db")  # Parsl's place: the Config's run_dir, not run_dir/NNN
    assert rows(db, "SELECT run_id, workflow_name, tasks_completed_count, tasks_failed_count FROM workflow") == [
        (run_id, "mon-test", 3, 1)]
    assert one(db, "SELECT rundir FROM workflow") == dfk.run_dir
    assert one(db, "SELECT time_completed FROM workflow") is not None
    assert one(db, "SELECT count(*) FROM task") == 4
    assert one(db, "SELECT task_func_name FROM task WHERE task_id=1") == "on_pool"
    assert one(db, "SELECT task_depends FROM task WHERE task_id=1") == "0"
    # flaky and fails ran twice (retries=1): 2 + 2 + 1 + 1 tries.
    assert one(db, "SELECT count(*) FROM try") == 6
    assert rows(db, "SELECT try_id, task_executor FROM try WHERE task_id=2 ORDER BY try_id") == [(0, "htex"), (1, "htex")]
    assert one(db, "SELECT task_fail_history FROM try WHERE task_id=2 AND try_id=0").find("first try fails") >= 0
    # HTEX tries know their pool's host and block.
    host, block = rows(db, "SELECT hostname, block_id FROM try WHERE task_id=1")[0]
    assert host and block == "0"
    statuses = [r[0] for r in rows(db, "SELECT task_status_name FROM status WHERE task_id=2 ORDER BY timestamp, rowid")]
    assert statuses[0] == "pending" and statuses[-1] == "exec_done"
    assert statuses.count("fail_retryable") == 1 and statuses.count("launched") == 2
    assert one(db, "SELECT count(*) FROM node WHERE active=1") >= 1
    assert one(db, "SELECT worker_count FROM node LIMIT 1") == 2
    assert one(db, "SELECT cpu_count FROM node LIMIT 1") >= 1
    assert one(db, "SELECT total_memory FROM node LIMIT 1") > 0
    # Resource samples of the thread task and the pool task: both end within kFirstSampleAfter
    # (10 ms) of their start, so each has one sample, its last, as in Parsl.
    for task in (0, 1):
        kinds = [r[0] for r in rows(db, f"SELECT psutil_process_status FROM resource WHERE task_id={task} "
                                        "ORDER BY timestamp")]
        assert kinds == ["finished"], (task, kinds)
    assert one(db, "SELECT psutil_process_memory_resident FROM resource WHERE task_id=1 LIMIT 1") > 0
    # The block the executor started, with its provider job id.
    status, job = rows(db, "SELECT status, job_id FROM block WHERE block_id='0' AND executor_label='htex' "
                           "ORDER BY timestamp LIMIT 1")[0]
    assert status == "PENDING" and job


@python_app(executors=["htex"])
def burn(cpu_seconds):
    import time
    start = time.process_time()
    while time.process_time() - start < cpu_seconds:
        pass
    return True


def load_one_worker_htex(tmp_path):
    """A monitored HTEX of one worker, sampled every 30 s: (the loaded kernel, its run_dir)."""
    run_dir = str(tmp_path / "runinfo")
    config = parsl.Config(
        executors=[HighThroughputExecutor(label="htex", max_workers_per_node=1, worker_port_range=(56000, 57000),
                                          provider=LocalProvider(init_blocks=1))],
        run_dir=run_dir, monitoring=MonitoringHub(resource_monitoring_interval=30))
    return parsl.load(config), run_dir


def test_back_to_back_pool_tasks_each_have_their_own_samples(tmp_path, no_thread_leak):
    # One worker runs them one after the other (the pool starts each as the previous one ends,
    # from the same reading of the worker's counters): the task that runs 0.2 s gets a first and
    # a last sample, the quick ones only their last (they end within 10 ms), and the CPU a task
    # burns is its own, not its neighbours'.
    dfk, run_dir = load_one_worker_htex(tmp_path)
    futures = [on_pool(i) for i in range(20)] + [burn(0.2)] + [on_pool(i) for i in range(20)]
    assert all(f.result(timeout=T) for f in futures)
    dfk.cleanup()
    db = os.path.join(run_dir, "monitoring.db")
    kinds = rows(db, "SELECT task_id, group_concat(psutil_process_status) FROM "
                     "(SELECT task_id, psutil_process_status FROM resource ORDER BY task_id, timestamp, rowid) GROUP BY 1")
    assert kinds == [(i, "running,finished" if i == 20 else "finished") for i in range(41)]
    cpu = dict(rows(db, "SELECT task_id, psutil_process_time_user + psutil_process_time_system FROM resource "
                        "WHERE psutil_process_status='finished'"))
    assert cpu[20] >= 0.15
    assert cpu[21] < 0.15 and cpu[19] < 0.15


@python_app(executors=["htex"])
def dies_after(seconds):
    import os
    import time
    time.sleep(seconds)
    os._exit(3)


def test_a_task_whose_worker_dies_keeps_its_first_sample(tmp_path, no_thread_leak):
    # The first sample is held until the task's next one; a task that ran 50 ms and took its
    # worker down with it has no next one, and its first sample is what it leaves.
    dfk, run_dir = load_one_worker_htex(tmp_path)
    with pytest.raises(parsl.WorkerLost):
        dies_after(0.05).result(timeout=T)
    dfk.cleanup()
    db = os.path.join(run_dir, "monitoring.db")
    assert rows(db, "SELECT task_id, psutil_process_status FROM resource") == [(0, "running")]
    assert one(db, "SELECT psutil_process_memory_resident FROM resource") > 0


def test_an_interval_of_0_samples_nothing_as_in_parsl(tmp_path, no_thread_leak):
    run_dir = str(tmp_path / "runinfo")
    config = parsl.Config(
        executors=[parsl.ThreadPoolExecutor(label="threads", max_threads=2),
                   HighThroughputExecutor(label="htex", max_workers_per_node=1, worker_port_range=(56000, 57000),
                                          provider=LocalProvider(init_blocks=1))],
        run_dir=run_dir, monitoring=MonitoringHub(resource_monitoring_interval=0))
    dfk = parsl.load(config)
    assert [double(1).result(timeout=T), on_pool(1).result(timeout=T)] == [2, 2]
    dfk.cleanup()
    db = os.path.join(run_dir, "monitoring.db")
    assert one(db, "SELECT count(*) FROM try") == 2
    assert one(db, "SELECT count(*) FROM resource") == 0


def test_default_workflow_name_is_the_script_and_version_the_start(load, run_dir):
    dfk = load(monitoring=MonitoringHub())
    dfk.cleanup()
    db = os.path.join(run_dir, "monitoring.db")
    name, version = rows(db, "SELECT workflow_name, workflow_version FROM workflow")[0]
    assert name == "test_monitoring.py" or name.endswith(".py")
    assert len(version) == 19  # "2026-12-01 23:05:01"


@parsl.bash_app(executors=["threads"])
def shout(stdout=None, stderr=None):
    return "echo hi; echo oops >&2; exit 3"


def test_bash_app_streams_are_in_the_task_table(load, run_dir, tmp_path):
    out, err = str(tmp_path / "out.txt"), str(tmp_path / "err.txt")
    dfk = load(monitoring=MonitoringHub(), executors=[parsl.ThreadPoolExecutor(label="threads")])
    with pytest.raises(parsl.BashExitFailure):
        shout(stdout=out, stderr=(err, "w")).result(timeout=T)
    double(1).result(timeout=T)
    dfk.cleanup()
    db = os.path.join(run_dir, "monitoring.db")
    assert rows(db, "SELECT task_stdout, task_stderr FROM task WHERE task_id=0") == [(out, err)]
    assert rows(db, "SELECT task_stdout, task_stderr FROM task WHERE task_id=1") == [("", "")]
    assert "exit code 3" in one(db, "SELECT task_fail_history FROM try WHERE task_id=0")


def test_sqlite_endpoint_is_used(load, tmp_path):
    path = tmp_path / "elsewhere" / "mon.db"
    dfk = load(monitoring=MonitoringHub(logging_endpoint=f"sqlite:///{path}"))
    double(2).result(timeout=T)
    dfk.cleanup()
    assert one(str(path), "SELECT count(*) FROM task") == 1


@pytest.mark.parametrize("endpoint, says", [
    ("postgresql://user@host/db", "not supported"),
    ("just-a-path.db", "not a database URL"),
    ("sqlite:///", "names no file"),
    ("sqlite:////proc/pervade-nope/monitoring.db", "/proc/pervade-nope"),
])
def test_unusable_endpoint_is_a_configuration_error_at_load(make_config, no_thread_leak, endpoint, says):
    with pytest.raises(ConfigurationError) as info:
        parsl.load(make_config(monitoring=MonitoringHub(logging_endpoint=endpoint)))
    assert says in str(info.value)
    parsl.clear()


def test_parsl_signature():
    with pytest.raises(TypeError):
        MonitoringHub(no_such_option=1)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        hub = MonitoringHub(hub_address="127.0.0.1", hub_port=55055, workflow_version="v1", monitoring_debug=True,
                            resource_monitoring_enabled=False, resource_monitoring_interval=0)
    assert [w.category for w in caught] == [DeprecationWarning, DeprecationWarning]
    assert hub.workflow_version == "v1" and hub.resource_monitoring_enabled is False
    # Kept as given, as Parsl keeps it (a script may print or compare it).
    assert repr(MonitoringHub(resource_monitoring_interval=10).resource_monitoring_interval) == "10"


def test_script_ending_in_an_exception_loses_nothing(tmp_path):
    """The interpreter exits through an exception: atexit cleanup writes every row and the end."""
    script = tmp_path / "script.py"
    script.write_text(textwrap.dedent(f"""
        import pervade as parsl
        from pervade.monitoring import MonitoringHub

        @parsl.python_app
        def inc(x):
            return x + 1

        parsl.load(parsl.Config(run_dir={str(tmp_path / 'runinfo')!r}, monitoring=MonitoringHub()))
        futures = [inc(i) for i in range(200)]
        [f.result() for f in futures]
        raise SystemExit("the script fails")
    """))
    proc = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=T)
    assert proc.returncode != 0, proc.stderr
    db = str(tmp_path / "runinfo" / "monitoring.db")
    assert one(db, "SELECT count(*) FROM task") == 200
    assert one(db, "SELECT count(*) FROM status WHERE task_status_name='exec_done'") == 200
    assert one(db, "SELECT tasks_completed_count FROM workflow") == 200
    assert one(db, "SELECT time_completed FROM workflow") is not None


def test_sigkill_of_the_driver_keeps_what_was_committed(tmp_path):
    """A driver killed with SIGKILL: every task the database shows finished has all its rows."""
    script = tmp_path / "forever.py"
    script.write_text(textwrap.dedent(f"""
        import sys
        import pervade as parsl
        from pervade.monitoring import MonitoringHub

        @parsl.python_app
        def inc(x):
            return x + 1

        parsl.load(parsl.Config(run_dir={str(tmp_path / 'runinfo')!r}, monitoring=MonitoringHub()))
        i = 0
        while True:  # until killed
            [f.result() for f in [inc(j) for j in range(100)]]
            i += 100
            print(i, flush=True)
    """))
    proc = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, text=True, start_new_session=True)
    db = str(tmp_path / "runinfo" / "monitoring.db")
    try:
        assert int(proc.stdout.readline()) == 100  # the driver runs

        def finished():
            try:
                return one(db, "SELECT count(*) FROM status WHERE task_status_name='exec_done'") >= 500
            except sqlite3.Error:
                return False

        assert wait_until(finished, T), "no committed rows while the driver ran"
    finally:
        os.killpg(proc.pid, 9)
        proc.wait(timeout=T)
    assert proc.returncode == -9
    done = one(db, "SELECT count(*) FROM status WHERE task_status_name='exec_done'")
    assert done >= 500
    assert one(db, "SELECT count(*) FROM task WHERE task_time_returned IS NOT NULL") == done
    assert one(db, "SELECT count(*) FROM try WHERE task_try_time_returned IS NOT NULL") == done
    assert one(db, "SELECT time_completed FROM workflow") is None


def test_ctrl_c_loses_nothing(tmp_path):
    """SIGINT (Ctrl-C) while the script waits: KeyboardInterrupt, exit cleanup, every row and the end written."""
    script = tmp_path / "interrupted.py"
    script.write_text(textwrap.dedent(f"""
        import threading
        import pervade as parsl
        from pervade.monitoring import MonitoringHub

        @parsl.python_app
        def inc(x):
            return x + 1

        parsl.load(parsl.Config(run_dir={str(tmp_path / 'runinfo')!r}, monitoring=MonitoringHub()))
        [f.result() for f in [inc(i) for i in range(300)]]
        print("done", flush=True)
        threading.Event().wait()  # until Ctrl-C
    """))
    proc = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    try:
        assert proc.stdout.readline().strip() == "done"
        proc.send_signal(2)
        _, err = proc.communicate(timeout=T)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, 9)
            proc.wait()
    assert "KeyboardInterrupt" in err
    db = str(tmp_path / "runinfo" / "monitoring.db")
    assert one(db, "SELECT count(*) FROM task WHERE task_time_returned IS NOT NULL") == 300
    assert one(db, "SELECT count(*) FROM status WHERE task_status_name='exec_done'") == 300
    assert one(db, "SELECT time_completed FROM workflow") is not None


def test_the_database_is_private(tmp_path, no_thread_leak):
    """monitoring.db and its WAL hold task names, errors and std paths: mode 0600, whatever the umask."""
    run_dir = str(tmp_path / "runinfo")
    old = os.umask(0o022)
    try:
        config = parsl.Config(executors=[parsl.ThreadPoolExecutor(label="threads", max_threads=1)], run_dir=run_dir,
                              monitoring=MonitoringHub(resource_monitoring_enabled=False))
        with parsl.load(config):
            assert double(2).result(timeout=T) == 4
            files = [f for f in os.listdir(run_dir) if f.startswith("monitoring.db")]
            assert "monitoring.db" in files
            for f in files:
                assert os.stat(os.path.join(run_dir, f)).st_mode & 0o777 == 0o600, f
    finally:
        os.umask(old)


def test_cleanup_leaves_the_run_in_monitoring_db_alone(tmp_path, no_thread_leak):
    """The writer closes the database at cleanup: its WAL is folded in and removed, so the file
    alone (copied, archived) holds the whole run."""
    run_dir = str(tmp_path / "runinfo")
    config = parsl.Config(executors=[parsl.ThreadPoolExecutor(label="threads", max_threads=1)], run_dir=run_dir,
                          monitoring=MonitoringHub(resource_monitoring_enabled=False))
    with parsl.load(config):
        assert [double(i).result(timeout=T) for i in range(5)] == [0, 2, 4, 6, 8]
    assert sorted(f for f in os.listdir(run_dir) if f.startswith("monitoring.db")) == ["monitoring.db"]
    copy = str(tmp_path / "copy.db")
    shutil.copy(os.path.join(run_dir, "monitoring.db"), copy)
    with sqlite3.connect(copy) as db:
        assert db.execute("SELECT count(*) FROM task").fetchone()[0] == 5
