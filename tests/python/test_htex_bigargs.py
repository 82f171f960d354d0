"""Big arguments and the same-host socket of the HighThroughputExecutor (docs/htex.md,
"Security" and "Big arguments"; docs/protocol.md, "Out-of-band buffers")."""

import glob
import os
import shlex
import stat
import types

import pytest
from conftest import own_processes, pid_alive, wait_until
from test_htex import htex_config as config
from test_htex import running_htex

import pervade as parsl
from pervade import python_app

T = 60
MB = 1 << 20


def block_logs(tmp_path) -> str:
    text = ""
    for path in glob.glob(str(tmp_path / "runinfo" / "**" / "block-*.log"), recursive=True):
        with open(path) as f:
            text += f.read()
    return text


def ipc_path(executor) -> str:
    argv = shlex.split(executor.pool_command("0"))
    return argv[argv.index("--ipc") + 1][len("ipc://"):]


@python_app(executors=["htex"])
def describe(*args, **kwargs):
    """Type, size and checksum of each argument (shipped by value: self-contained)."""
    import hashlib
    import types

    def one(value):
        raw = value.data if isinstance(value, types.SimpleNamespace) else value
        raw = raw.tobytes() if isinstance(raw, memoryview) else bytes(raw, "utf-8") if isinstance(raw, str) \
            else bytes(raw)
        return type(value).__name__, len(raw), hashlib.sha1(raw).hexdigest()

    return [one(a) for a in args] + [(k, *one(v)) for k, v in sorted(kwargs.items())]


expected = describe.func  # the same, in the driver


@python_app(executors=["htex"])
def size_or_die(data, marker):
    """Kills its worker the first time (no marker file yet); returns len(data) on the retry."""
    if not os.path.exists(marker):
        open(marker, "w").close()
        os._exit(9)
    return len(data)


@pytest.fixture
def htex(tmp_path, no_thread_leak):
    yield from running_htex(tmp_path)


def test_a_pool_on_this_host_uses_the_unix_socket_which_cleanup_removes(tmp_path, no_thread_leak):
    dfk = parsl.load(config(tmp_path))
    executor = dfk.executors["htex"]
    path = ipc_path(executor)
    assert os.path.exists(path) and stat.S_ISSOCK(os.stat(path).st_mode)
    assert stat.S_IMODE(os.stat(os.path.dirname(path)).st_mode) == 0o700, "only this user reaches the socket"
    assert wait_until(lambda: len(executor.pools()) == 1, T)
    assert describe(b"x" * MB).result(timeout=T) == expected(b"x" * MB)
    assert f"interchange ipc://{path} (same host, Unix socket)" in block_logs(tmp_path)
    pids = own_processes(b"pervade-pool", b"pervade.worker")
    dfk.cleanup()
    assert not os.path.exists(path) and not os.path.exists(os.path.dirname(path)), "socket left behind"
    assert wait_until(lambda: not any(pid_alive(p) for p in pids), T), "pool processes left behind"


def test_without_same_host_ipc_the_pool_uses_tcp_and_curve(tmp_path, no_thread_leak):
    dfk = parsl.load(config(tmp_path, same_host_ipc=False))
    try:
        executor = dfk.executors["htex"]
        assert "--ipc" not in shlex.split(executor.pool_command("0"))
        assert describe(b"y" * MB, key=bytearray(b"z" * MB)).result(timeout=T) == \
            expected(b"y" * MB, key=bytearray(b"z" * MB))
        assert ", CurveZMQ" in block_logs(tmp_path)
        assert not glob.glob(str(tmp_path / "runinfo" / "**" / "ipc-*"), recursive=True)
    finally:
        dfk.cleanup()


def test_big_arguments_of_every_kind_arrive_intact(htex):
    import array
    big = os.urandom(MB)
    cases = [
        ((big,), {}),
        ((os.urandom(50 * MB),), {}),
        ((bytearray(big),), {}),
        ((memoryview(big),), {}),
        ((memoryview(array.array("d", range(200_000))),), {}),
        ((types.SimpleNamespace(data=big),), {}),  # big bytes inside an object: pickled in band
        ((b"small", big), {"key": bytearray(big[:100_000]), "other": "text"}),
    ]
    futures = [describe(*args, **kwargs) for args, kwargs in cases]
    for (args, kwargs), future in zip(cases, futures):
        assert future.result(timeout=T) == expected(*args, **kwargs)


def test_many_tasks_share_one_big_argument(htex):
    data = os.urandom(MB)
    futures = [describe(data) for _ in range(200)]
    assert all(f.result(timeout=T) == expected(data) for f in futures)


def test_a_bytearray_is_taken_at_the_call(htex):
    # Changing the buffer after the call does not change what the task gets (as with pickle).
    data = bytearray(b"a" * MB)
    future = describe(data)
    before = expected(bytes(data))
    data[:] = b"b" * MB
    assert future.result(timeout=T) == [("bytearray", *before[0][1:])]


def test_a_retried_task_gets_its_big_argument_again(tmp_path, no_thread_leak):
    dfk = parsl.load(config(tmp_path, retries=1))
    try:
        data = os.urandom(3 * MB)
        marker = str(tmp_path / "died-once")
        assert size_or_die(data, marker).result(timeout=T) == 3 * MB
        assert os.path.exists(marker), "the first try really died"
    finally:
        dfk.cleanup()
