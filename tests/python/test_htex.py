"""HighThroughputExecutor end to end: the real interchange, real pervade-pool processes and
real Python workers on this machine (LocalProvider)."""

import math
import os
import shlex
import signal
import subprocess
import sys
import textwrap

import pytest
from conftest import own_processes, pid_alive, wait_until

import pervade as parsl
from pervade import HighThroughputExecutor, LocalProvider, bash_app, python_app

T = 60


def htex_config(tmp_path, retries=0, **kw):
    options = dict(label="htex", max_workers_per_node=2, heartbeat_period=0.5, heartbeat_threshold=3,
                   worker_port_range=(56000, 57000), provider=LocalProvider(init_blocks=1))
    options.update(kw)
    return parsl.Config(executors=[HighThroughputExecutor(**options)], run_dir=str(tmp_path / "runinfo"),
                        retries=retries)


def running_htex(tmp_path, **kw):
    """Loads htex_config(tmp_path, **kw), yields its executor once its pool registered; at the
    end cleans up and checks that no pool or worker process is left."""
    dfk = parsl.load(htex_config(tmp_path, **kw))
    executor = dfk.executors["htex"]
    assert wait_until(lambda: len(executor.pools()) == 1, T), f"no pool registered; refusals: {executor.refusals()}"
    yield executor
    pids = pool_tree_pids()
    dfk.cleanup()
    assert wait_until(lambda: not any(pid_alive(p) for p in pids), T), "pool processes left behind"


@pytest.fixture
def htex(tmp_path, no_thread_leak):
    yield from running_htex(tmp_path)


def pool_tree_pids():
    """Pids of this test session's pervade-pool processes and their workers."""
    return own_processes(b"pervade-pool", b"pervade.worker")


def worker_pids():
    return own_processes(b"pervade.worker")


@python_app(executors=["htex"])
def add(a, b):
    return a + b


@python_app(executors=["htex"])
def where():
    import os
    return os.getpid(), os.environ.get("PERVADE_WORKER_RANK"), os.environ.get("PARSL_WORKER_RANK")


@python_app(executors=["htex"])
def boom(msg):
    raise KeyError(msg)


@python_app(executors=["htex"])
def sleep_then(seconds, value, pidfile=None):
    import os
    import time
    if pidfile:
        with open(pidfile + ".tmp", "w") as f:
            f.write(str(os.getpid()))
        os.rename(pidfile + ".tmp", pidfile)
    time.sleep(seconds)
    return value


@bash_app(executors=["htex"])
def echo(msg, stdout=None):
    return f"echo {msg}"


def test_python_apps_run_in_worker_processes(htex):
    futures = [add(i, i) for i in range(50)]
    assert [f.result(timeout=T) for f in futures] == [2 * i for i in range(50)]
    pid, rank, parsl_rank = where().result(timeout=T)
    assert pid != os.getpid()
    assert rank in ("0", "1") and parsl_rank == rank


def test_dependencies_chain_through_workers(htex):
    f = add(0, 1)
    for _ in range(20):
        f = add(f, 1)
    assert f.result(timeout=T) == 21


def test_large_prefetch_loses_no_task(tmp_path, no_thread_leak):
    # Thousands of tasks in flight to one pool: none may be dropped by a ZeroMQ queue limit.
    dfk = parsl.load(htex_config(tmp_path, prefetch_capacity=3000))
    try:
        futures = [add(i, 1) for i in range(6000)]
        assert [f.result(timeout=T) for f in futures] == [i + 1 for i in range(6000)]
    finally:
        dfk.cleanup()


def test_closures_are_shipped_by_value(htex):
    offset = 100

    @python_app(executors=["htex"])
    def shifted(x):
        return x + offset

    assert [shifted(i).result(timeout=T) for i in range(3)] == [100, 101, 102]


def test_remote_exception_keeps_type_and_traceback(htex):
    with pytest.raises(KeyError) as info:
        boom("missing").result(timeout=T)
    assert "missing" in str(info.value)
    assert "raise KeyError(msg)" in getattr(info.value, "remote_traceback", "")


def test_bash_app_on_pool(htex, tmp_path):
    out = tmp_path / "echo.out"
    assert echo("hello", stdout=str(out)).result(timeout=T) == 0
    assert out.read_text().strip() == "hello"


def test_pool_status(htex):
    pools = htex.pools()
    assert len(pools) == 1
    assert pools[0]["worker_count"] == 2
    assert pools[0]["block_id"] == "0"


@python_app(executors=["htex"])
def sleep_with_walltime(seconds, pidfile, walltime=None):
    return sleep_then.func(seconds, "late", pidfile)


def test_walltime_stops_the_task_on_its_worker(htex, tmp_path):
    # The worker times the call from its start, with a timer signal: the sleep is woken and the
    # function stopped with AppTimeout, so the same worker is free again, not killed.
    pidfile = str(tmp_path / "worker.pid")
    fut = sleep_with_walltime(600, pidfile, walltime=1)
    with pytest.raises(parsl.AppTimeout):
        fut.result(timeout=T)
    pid = int(open(pidfile).read())
    assert pid_alive(pid)
    # Two tasks at once on the two workers: each takes a worker of its own only if the timed-out
    # one is free again (else both would run, one after the other, on the other worker).
    pidfiles = [str(tmp_path / f"after-{i}.pid") for i in range(2)]
    assert [f.result(timeout=T) for f in [sleep_then(2, i, pidfile=p) for i, p in enumerate(pidfiles)]] == [0, 1]
    assert pid in {int(open(p).read()) for p in pidfiles}, "the timed-out task still runs on its worker"


def test_killed_worker_gives_worker_lost(htex, tmp_path):
    pidfile = str(tmp_path / "worker.pid")
    fut = sleep_then(60, "never", pidfile=pidfile)
    assert wait_until(lambda: os.path.exists(pidfile), T)
    os.kill(int(open(pidfile).read()), signal.SIGKILL)
    with pytest.raises(parsl.WorkerLost):
        fut.result(timeout=T)
    # The pool replaced the worker: work goes on.
    assert add(2, 3).result(timeout=T) == 5


def test_killed_worker_with_retries_completes(tmp_path, no_thread_leak):
    dfk = parsl.load(htex_config(tmp_path, retries=2))
    try:
        pidfile = str(tmp_path / "worker.pid")
        fut = sleep_then(3, "done", pidfile=pidfile)
        assert wait_until(lambda: os.path.exists(pidfile), T)
        os.kill(int(open(pidfile).read()), signal.SIGKILL)
        assert fut.result(timeout=T) == "done"
        assert fut.task_record["fail_count"] == 1
    finally:
        dfk.cleanup()


def test_killed_pool_gives_manager_lost(htex, tmp_path):
    pidfile = str(tmp_path / "worker.pid")
    fut = sleep_then(60, "never", pidfile=pidfile)
    assert wait_until(lambda: os.path.exists(pidfile), T)
    for pid in pool_tree_pids():
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            if b"pervade-pool" in f.read():
                os.kill(pid, signal.SIGKILL)
    with pytest.raises((parsl.ManagerLost, parsl.WorkerLost)):
        fut.result(timeout=T)


def test_python_version_mismatch_is_refused(tmp_path, no_thread_leak):
    dfk = parsl.load(htex_config(tmp_path, provider=LocalProvider(init_blocks=0)))
    try:
        executor = dfk.executors["htex"]
        argv = shlex.split(executor.pool_command("9"))
        argv[argv.index("--python-version") + 1] = "2.7.18"
        executor.provider.submit(" ".join(shlex.quote(a) for a in argv), 1, log_path=str(tmp_path / "old.log"))
        assert wait_until(lambda: executor.refusals(), T)
        assert "2.7.18" in executor.refusals()[0]
    finally:
        dfk.cleanup()


def test_pool_without_the_key_cannot_register(tmp_path, no_thread_leak):
    dfk = parsl.load(htex_config(tmp_path, provider=LocalProvider(init_blocks=0)))
    try:
        executor = dfk.executors["htex"]
        argv = shlex.split(executor.pool_command("7"))
        assert "--curve-server-key" in argv, "encryption is on by default"
        i = argv.index("--curve-server-key")
        del argv[i:i + 2]
        # As a pool on another host: without the same-host socket, only TCP + CurveZMQ is left.
        i = argv.index("--ipc")
        del argv[i:i + 4]  # --ipc URL --host-id ID
        argv[argv.index("--heartbeat-threshold") + 1] = "2"
        job = executor.provider.submit(" ".join(shlex.quote(a) for a in argv), 1,
                                       log_path=str(tmp_path / "keyless.log"))
        # The keyless pool gets no answer to REGISTER, gives up, and never appears as a pool.
        assert wait_until(lambda: executor.provider.status([job])[0].terminal, T)
        assert executor.pools() == []
        executor.start_blocks(1)  # a pool with the key works
        assert add(20, 22).result(timeout=T) == 42
    finally:
        dfk.cleanup()


def test_unpicklable_arguments_fail_the_future(htex):
    import threading
    fut = add(threading.Lock(), 1)  # as in Parsl: not raised at the call
    with pytest.raises(TypeError, match="cannot serialize the arguments of add"):
        fut.result(timeout=T)


@pytest.mark.parametrize("spec", ["bogus", "list", "list:", "list:0,a", "list:3-1", "list:0::1", "list:1024", 5])
def test_bad_cpu_affinity_is_a_configuration_error(spec):
    with pytest.raises(parsl.ConfigurationError, match="cpu_affinity"):
        HighThroughputExecutor(cpu_affinity=spec)


def test_resource_options_reach_the_pool(tmp_path, no_thread_leak):
    # The pool decides on its node: 3 workers (max 3; 4 per CPU allowed), CPUs alternating.
    ex = HighThroughputExecutor(cpu_affinity="Alternating", max_workers_per_node=float("inf"))
    assert ex.cpu_affinity == "alternating" and ex.max_workers_per_node == math.inf
    assert HighThroughputExecutor(available_accelerators=2).available_accelerators == ["0", "1"]
    dfk = parsl.load(htex_config(tmp_path, max_workers_per_node=3, cores_per_worker=0.25, mem_per_worker=0.001,
                                 cpu_affinity="alternating"))
    try:
        executor = dfk.executors["htex"]
        assert executor.workers_per_node == 3
        # Parsl's estimate: this machine does not bound it (the pool will).
        assert HighThroughputExecutor(max_workers_per_node=64).workers_per_node == 64
        argv = shlex.split(executor.pool_command("5"))
        assert "--workers" not in argv
        for option, value in (("--max-workers", "3"), ("--cores-per-worker", "0.25"), ("--mem-per-worker", "0.001"),
                              ("--cpu-affinity", "alternating")):
            assert argv[argv.index(option) + 1] == value
        assert wait_until(lambda: len(executor.pools()) == 1, T), executor.refusals()
        assert executor.pools()[0]["worker_count"] == 3
        assert wait_until(lambda: len(worker_pids()) == 3, T)
        cpus = sorted(os.sched_getaffinity(0))
        expected = sorted(sorted(cpus[i::3] or [cpus[i % len(cpus)]]) for i in range(3))
        assert sorted(sorted(os.sched_getaffinity(pid)) for pid in worker_pids()) == expected
        omp, ncpus = omp_threads().result(timeout=T)
        assert omp == str(ncpus), "a pinned worker's OMP_NUM_THREADS is its CPU count"
    finally:
        dfk.cleanup()


@python_app(executors=["htex"])
def omp_threads():
    import os
    return os.environ.get("OMP_NUM_THREADS"), len(os.sched_getaffinity(0))


def test_pools_of_a_killed_driver_exit(tmp_path):
    """A driver killed with SIGKILL cannot stop its pools: they notice the closed connection
    and exit well before the heartbeat threshold (120 s here), with their workers."""
    script = tmp_path / "driver.py"
    script.write_text(textwrap.dedent(f"""
        import os, sys, time
        import pervade as parsl
        config = parsl.Config(executors=[parsl.HighThroughputExecutor(
            label="htex", max_workers_per_node=2, heartbeat_threshold=120,
            worker_port_range=(57000, 58000), provider=parsl.LocalProvider(init_blocks=1))],
            run_dir={str(tmp_path / "runinfo")!r})
        parsl.load(config)

        @parsl.python_app
        def pid():
            import os
            return os.getpid(), os.getppid()

        print(*pid().result(), flush=True)
        time.sleep(600)
    """))
    driver = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, text=True)
    try:
        worker, pool = map(int, driver.stdout.readline().split())
        assert pid_alive(worker) and pid_alive(pool)
    finally:
        driver.kill()
        driver.wait()
    assert wait_until(lambda: not pid_alive(pool) and not pid_alive(worker), 30), \
        "the pool of a killed driver is still running"


@python_app
def wait_for_path(path):
    import os
    import time
    while not os.path.exists(path):
        time.sleep(0.02)
    return "done"


def test_drain_period_drains_each_pool_that_long_after_it_started(tmp_path, no_thread_leak):
    """Parsl's drain_period: the pool takes no new task drain_period s after it started, lets its
    running task finish, then exits (and with strategy 'none' no block replaces it)."""
    release = tmp_path / "release"
    config = htex_config(tmp_path, drain_period=1, provider=LocalProvider(init_blocks=1, min_blocks=0, max_blocks=1))
    config.strategy = "none"
    with parsl.load(config) as dfk:
        htex = dfk.executors["htex"]
        running = wait_for_path(str(release))
        assert wait_until(lambda: htex.connected_managers() and htex.connected_managers()[0]["draining"], T), \
            htex.connected_managers()
        assert not running.done()
        release.touch()
        assert running.result(timeout=T) == "done"
        assert wait_until(lambda: not htex.connected_managers(), T), "the drained pool did not exit"


def test_drain_period_must_be_a_number_of_seconds():
    for bad in (-1, "5", float("inf"), True):
        with pytest.raises(parsl.ConfigurationError, match="drain_period"):
            HighThroughputExecutor(drain_period=bad)
    for never in (None, 0):  # as in Parsl
        assert HighThroughputExecutor(drain_period=never).drain_period == never
