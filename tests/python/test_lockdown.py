"""Hardening against bad values and other local users (issue 14): values checked at
construction, concurrent starts in one run_dir, private run directories, checkpoints on
read-only storage, and a flood of TCP connections from an unprivileged user during a run."""

import math
import multiprocessing
import os
import pwd
import shutil
import stat
import subprocess
import sys
import tempfile
import textwrap

import pytest
from conftest import wait_until

import pervade as parsl
from pervade import File, HighThroughputExecutor, LocalProvider, python_app
from pervade.errors import ConfigurationError

T = 60
TEST_USER = "pvlockdown"

# ------------------------------------------------------------------ values checked at construction

BAD_HTEX_VALUES = [
    ("worker_port", -1), ("worker_port", 0), ("worker_port", 70000), ("worker_port", True), ("worker_port", "54000"),
    ("worker_port_range", (0, 10)), ("worker_port_range", (100, 50)), ("worker_port_range", (1000, 70000)),
    ("worker_port_range", "ab"), ("worker_port_range", (1.5, 2000)),
    ("heartbeat_period", math.inf), ("heartbeat_period", math.nan), ("heartbeat_period", 0), ("heartbeat_period", -1),
    ("heartbeat_threshold", math.inf), ("heartbeat_threshold", math.nan), ("heartbeat_threshold", "120"),
    ("same_host_ipc", "false"), ("encrypted", 0), ("worker_debug", "no"), ("follow_dependencies", None),
    ("available_accelerators", -1), ("available_accelerators", "0,1"),
    ("prefetch_capacity", "3"), ("prefetch_capacity", 10**12), ("prefetch_capacity", -1), ("prefetch_capacity", 2.0),
    ("short_task_prefetch", 10**12), ("address", 127001), ("address", ""), ("python", 3),
]


@pytest.mark.parametrize("option,value", BAD_HTEX_VALUES)
def test_bad_htex_values_are_configuration_errors_naming_the_option(option, value):
    with pytest.raises(ConfigurationError) as e:
        HighThroughputExecutor(**{option: value})
    assert option.split("_range")[0] in str(e.value)


def test_good_htex_values_are_kept():
    e = HighThroughputExecutor(worker_port=1, worker_port_range=[65535, 65535], available_accelerators=0,
                               same_host_ipc=False, prefetch_capacity=1_000_000, heartbeat_period=0.5)
    assert (e.worker_port, e.worker_port_range, e.available_accelerators) == (1, (65535, 65535), [])
    assert e.same_host_ipc is False


@pytest.mark.parametrize("walltime", [math.inf, math.nan, -math.inf])
def test_non_finite_walltime_fails_at_the_call(load, walltime):
    load()

    @python_app
    def f(walltime=1):
        return 1

    with pytest.raises(parsl.ConfigurationError, match="walltime"):
        f(walltime=walltime)


def test_an_empty_file_is_refused():
    with pytest.raises(parsl.ConfigurationError, match="File"):
        File("")


# ------------------------------------------------------------------ run_dir

def _start_in(run_dir, barrier, results):
    barrier.wait()
    try:
        dfk = parsl.DataFlowKernel(parsl.Config(run_dir=run_dir))
        results.put(dfk.run_dir)
        dfk.cleanup()
    except Exception as e:  # the test reports it
        results.put(f"error: {e!r}")


def test_sixteen_concurrent_starts_in_one_run_dir_all_succeed(tmp_path):
    ctx = multiprocessing.get_context("spawn")
    barrier, results = ctx.Barrier(16), ctx.Queue()
    procs = [ctx.Process(target=_start_in, args=(str(tmp_path / "runinfo"), barrier, results)) for _ in range(16)]
    for p in procs:
        p.start()
    try:
        dirs = [results.get(timeout=T) for _ in procs]
    finally:
        for p in procs:
            p.join(timeout=T)
            if p.is_alive():
                p.kill()
    assert not [d for d in dirs if d.startswith("error")], dirs
    assert len(set(dirs)) == 16
    assert sorted(os.listdir(tmp_path / "runinfo")) == [f"{i:03}" for i in range(16)]


# ------------------------------------------------------------------ permissions

def ensure_test_user() -> pwd.struct_passwd:
    """An unprivileged local user for the tests (made with useradd when missing; needs root)."""
    if os.geteuid() != 0:
        pytest.skip("needs root to act as a second, unprivileged user")
    try:
        return pwd.getpwnam(TEST_USER)
    except KeyError:
        subprocess.run(["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", TEST_USER],
                       check=True, capture_output=True)
        return pwd.getpwnam(TEST_USER)


def as_test_user(args, **kw):
    user = ensure_test_user()
    return subprocess.Popen(["setpriv", f"--reuid={user.pw_uid}", f"--regid={user.pw_gid}", "--clear-groups",
                             "--inh-caps=-all", *args], **kw)


@python_app(executors=["htex"], cache=True)
def shout(x):
    print(f"secret output {x}")
    return x


def test_run_directory_is_private_to_its_owner(no_thread_leak):
    # A run_dir every user can reach, as a shared project directory would be.
    base = tempfile.mkdtemp(prefix="pervade-lockdown-", dir="/tmp")
    os.chmod(base, 0o755)
    try:
        config = parsl.Config(executors=[HighThroughputExecutor(
            label="htex", max_workers_per_node=1, worker_port_range=(56000, 57000),
            provider=LocalProvider(init_blocks=1))], run_dir=os.path.join(base, "runinfo"),
            checkpoint_mode="task_exit")
        dfk = parsl.load(config)
        run = dfk.run_dir
        assert [shout(i).result(timeout=T) for i in range(3)] == [0, 1, 2]
        parsl.dfk().cleanup()
        parsl.clear()
        seen = []
        for root, dirs, files in os.walk(run):
            for d in dirs:
                mode = stat.S_IMODE(os.lstat(os.path.join(root, d)).st_mode)
                assert mode == 0o700, f"{os.path.join(root, d)} has mode {oct(mode)}"
            for f in files:
                path = os.path.join(root, f)
                if os.path.islink(path):  # parsl.log -> pervade.log: a link's own mode means nothing
                    assert os.path.dirname(os.path.realpath(path)) == os.path.realpath(root), path
                    continue
                mode = stat.S_IMODE(os.lstat(path).st_mode)
                assert mode == 0o600, f"{path} has mode {oct(mode)}"
                seen.append(f)
        assert stat.S_IMODE(os.stat(run).st_mode) == 0o700
        assert {"pervade.log", "tasks.db", "block-0.log"} <= set(seen), seen
        # Another user can read none of it, even knowing the paths.
        log = os.path.join(run, "htex", "block-0.log")
        checkpoint = os.path.join(run, "checkpoint", "tasks.db")
        assert "secret output" in open(log).read()
        probe = as_test_user([sys.executable, "-I", "-c", textwrap.dedent("""
            import sys
            for path in sys.argv[1:]:
                try:
                    open(path, "rb").read()
                    print("READ", path)
                except PermissionError:
                    pass
        """), log, checkpoint, os.path.join(run, "pervade.log")], stdout=subprocess.PIPE, text=True)
        out, _ = probe.communicate(timeout=T)
        assert probe.returncode == 0 and "READ" not in out, out
    finally:
        shutil.rmtree(base, ignore_errors=True)


# ------------------------------------------------------------------ checkpoints on read-only storage

RO_APP = """
import os
from pervade import python_app

@python_app(cache=True)
def triple(x):
    return 3 * x + int(os.environ.get("RAN_AGAIN_OFFSET", "0"))
"""


def test_a_checkpoint_on_read_only_storage_loads_and_answers(load, tmp_path, monkeypatch):
    (tmp_path / "lockdown_ro_app.py").write_text(RO_APP)
    monkeypatch.syspath_prepend(str(tmp_path))
    from lockdown_ro_app import triple

    dfk = load(checkpoint_mode="task_exit")
    assert [triple(i).result(timeout=T) for i in range(10)] == [3 * i for i in range(10)]
    source = os.path.join(dfk.run_dir, "checkpoint")
    parsl.dfk().cleanup()
    parsl.clear()
    assert sorted(os.listdir(source)) == ["tasks.db", "tasks.pkl"], "the WAL is folded into tasks.db at the end of a run"
    # Only a copy of tasks.db, on a read-only mount: every result is in it (a task run again
    # would add 1000), and loading writes nothing.
    copy = tmp_path / "ro"
    copy.mkdir()
    shutil.copy(os.path.join(source, "tasks.db"), copy)
    script = textwrap.dedent(f"""
        import pervade as parsl
        from lockdown_ro_app import triple
        with parsl.load(parsl.Config(run_dir={str(tmp_path / 'runinfo2')!r}, checkpoint_files=[{str(copy)!r}])):
            print(sum(triple(i).result() for i in range(10)))
    """)
    mount = f"mount --bind {copy} {copy} && mount -o remount,bind,ro {copy} {copy} && "
    env = dict(os.environ, PYTHONPATH=str(tmp_path), RAN_AGAIN_OFFSET="1000")
    result = subprocess.run(["unshare", "-m", "sh", "-c", mount + f'{sys.executable} -c "$0"', script],
                            capture_output=True, text=True, timeout=T, env=env)
    if result.returncode != 0 and "Traceback" not in result.stderr:
        pytest.skip(f"cannot make a read-only mount here: {result.stderr.strip()}")
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == [str(sum(3 * i for i in range(10)))]
    assert os.listdir(copy) == ["tasks.db"]


# ------------------------------------------------------------------ a flood of TCP connections

FLOODER = textwrap.dedent("""
    # Keeps up to N idle TCP connections open to the port (no key, no handshake), opening a
    # new one for each the server closes; says "ready" once N were opened.
    import selectors, socket, sys
    port, n = int(sys.argv[1]), int(sys.argv[2])
    sel = selectors.DefaultSelector()
    def open_one():
        s = socket.socket()
        s.setblocking(False)
        s.connect_ex(("127.0.0.1", port))
        sel.register(s, selectors.EVENT_READ)
    for _ in range(n):
        open_one()
    print("ready", flush=True)
    while True:
        for key, _ in sel.select():
            try:
                data = key.fileobj.recv(4096)
            except OSError:
                data = b""
            if not data:
                sel.unregister(key.fileobj)
                key.fileobj.close()
                open_one()
""")

FLOODED_DRIVER = textwrap.dedent("""
    # A run whose driver may hold 512 descriptors: it waits for the flood (stdin), then runs
    # tasks and starts a new block, which must register.
    import os
    import sys
    import time

    import pervade as parsl
    from pervade import HighThroughputExecutor, LocalProvider, python_app

    run_dir, stderr_path = sys.argv[1], sys.argv[2]
    CAP_REACHED = "TCP connections are open, the most this process allows"
    os.dup2(os.open(stderr_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600), 2)
    executor = HighThroughputExecutor(label="htex", max_workers_per_node=2, worker_port_range=(56000, 57000),
                                      provider=LocalProvider(init_blocks=1, max_blocks=2))
    dfk = parsl.load(parsl.Config(executors=[executor], run_dir=run_dir, strategy="none"))

    @python_app(executors=["htex"])
    def square(x):
        return x * x

    assert square(3).result(timeout=60) == 9

    def within(seconds, call):
        # The guard closes connections over its cap as libzmq reports them, so while a flood
        # pours in the table may be full for a moment (docs/htex.md): a call that needs a new
        # descriptor may be retried for that long, not longer.
        deadline = time.monotonic() + seconds
        while True:
            try:
                return call()
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.01)

    def descriptors():
        return within(2, lambda: len(os.listdir("/proc/self/fd")))

    def opens_a_file(seconds):
        def opened():
            with open(stderr_path):
                return True
        return within(seconds, opened)

    baseline = descriptors()  # before the flood
    stderr_fd = os.open(stderr_path, os.O_RDONLY)  # read with no new descriptor while the flood is on
    print(executor._native.port, flush=True)
    sys.stdin.readline()  # the flooder has opened its connections: wait until they hold our descriptors
    # Wait until the flood holds all the connections the guard lets in (the limit, 512, less a
    # reserve of 256): the guard says so on stderr, which goes to a file here.
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and CAP_REACHED.encode() not in os.pread(stderr_fd, 1 << 20, 0):
        time.sleep(0.05)
    assert opens_a_file(2), "the flood holds the descriptors kept in reserve"
    print("descriptors in use", descriptors(), "baseline", baseline, flush=True)
    futures = [square(i) for i in range(500)]
    failed = sum(1 for f in futures if f.exception(timeout=120) is not None)
    # The flood keeps going for 3 s more (enough to fill the table without a cap), then a new
    # block must start and register.
    flood_until = time.monotonic() + 3
    while time.monotonic() < flood_until:
        time.sleep(0.05)
        assert descriptors() >= baseline + 64, "the flood stopped"
        assert opens_a_file(2), "the flood holds the descriptors kept in reserve"
    new_block = executor.start_blocks(1)[0]
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not any(p["block_id"] == new_block for p in executor.pools()):
        time.sleep(0.1)
    registered = any(p["block_id"] == new_block for p in executor.pools())
    print("failed", failed, "new block registered", registered, "executor failed", executor.bad_state_is_set, flush=True)
    dfk.cleanup()
""")


def test_a_connection_flood_by_another_user_does_not_stop_the_run(tmp_path):
    ensure_test_user()
    stderr_path = tmp_path / "driver.stderr"
    driver = subprocess.Popen(
        [sys.executable, "-c", FLOODED_DRIVER, str(tmp_path / "runinfo"), str(stderr_path)], stdin=subprocess.PIPE,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True,
        preexec_fn=lambda: __import__("resource").setrlimit(__import__("resource").RLIMIT_NOFILE, (512, 512)))
    flooder = None
    try:
        port = driver.stdout.readline().strip()
        assert port.isdigit(), driver.communicate(timeout=T)
        # Six times the driver's descriptors, from a user without the key.
        flooder = as_test_user(["/usr/bin/python3", "-I", "-c", FLOODER, port, "3000"], stdout=subprocess.PIPE,
                               text=True, start_new_session=True)
        assert flooder.stdout.readline().strip() == "ready"
        driver.stdin.write("go\n")
        driver.stdin.flush()
        out, _ = driver.communicate(timeout=4 * T)
        err = stderr_path.read_text()
        assert driver.returncode == 0, err
        assert "failed 0 new block registered True executor failed False" in out, (out, err)
        # The flood reached the cap: without it the 3,000 connections would have taken all the
        # driver's 512 descriptors.
        assert "TCP connections are open, the most this process allows" in err, (out, err)
    finally:
        for p in (flooder, driver):
            if p is not None and p.poll() is None:
                os.killpg(p.pid, 9)
                p.wait(timeout=T)


# ------------------------------------------------------------------ block log cap

@python_app(executors=["htex"])
def print_megabytes(n):
    import sys
    line = "x" * 1023 + "\n"
    for _ in range(n * 1024):
        sys.stdout.write(line)
    print("the last line", flush=True)
    return n


def test_a_task_printing_40_mb_leaves_a_capped_rotated_block_log(tmp_path, no_thread_leak):
    dfk = parsl.load(parsl.Config(executors=[HighThroughputExecutor(
        label="htex", max_workers_per_node=1, worker_port_range=(56000, 57000),
        provider=LocalProvider(init_blocks=1))], run_dir=str(tmp_path / "runinfo")))
    try:
        assert print_megabytes(40).result(timeout=4 * T) == 40
    finally:
        dfk.cleanup()
        parsl.clear()
    log = os.path.join(dfk.run_dir, "htex", "block-0.log")
    limit = 16 << 20
    assert os.path.getsize(log) <= limit + (64 << 10)
    assert limit - (64 << 10) <= os.path.getsize(log + ".1") <= limit + (64 << 10)
    assert stat.S_IMODE(os.stat(log).st_mode) == 0o600
    with open(log) as f:
        text = f.read()
    assert "the last line" in text
    assert "exiting with status" in text, "the pool's own last words arrive after the task output"


# ------------------------------------------------------------------ encrypted=False

@pytest.mark.parametrize("address,loud", [("127.0.0.1", False), ("*", True)])
def test_unencrypted_tcp_is_announced(tmp_path, no_thread_leak, caplog, recwarn, address, loud):
    executor = HighThroughputExecutor(label="htex", address=address, encrypted=False,
                                      worker_port_range=(56000, 57000), provider=LocalProvider(init_blocks=0))
    dfk = parsl.load(parsl.Config(executors=[executor], run_dir=str(tmp_path / "runinfo"), strategy="none"))
    dfk.cleanup()
    parsl.clear()
    assert any("encrypted=False" in r.getMessage() and "run code" in r.getMessage() for r in caplog.records)
    runtime = [w for w in recwarn.list if issubclass(w.category, RuntimeWarning) and "encrypted=False" in str(w.message)]
    assert bool(runtime) == loud
