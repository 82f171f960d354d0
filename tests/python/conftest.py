"""Shared fixtures: every test runs against its own run_dir, always cleans its kernel up and
must leave no engine thread behind."""

import os
import time

import pytest

import pervade as parsl


def thread_count() -> int:
    return len(os.listdir("/proc/self/task"))


def wait_until(condition, timeout: float = 10.0, interval: float = 0.01) -> bool:
    """Polls condition() until it is true or the deadline passes; returns its last value."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value or time.monotonic() >= deadline:
            return value
        time.sleep(interval)


def pid_alive(pid: int) -> bool:
    """True while the process exists and is not a zombie."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            state = f.read().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return False
    return state != "Z"


# Every process this test session starts inherits this marker, so tests find their own pools
# and workers (and only those: other runs may share the machine) even after re-parenting.
SESSION_MARKER = f"PERVADE_TEST_SESSION={os.getpid()}-{time.monotonic_ns()}"
os.environ[SESSION_MARKER.split("=")[0]] = SESSION_MARKER.split("=")[1]


def own_processes(*names: bytes) -> list:
    """Pids of live processes started by this test session whose command line contains one of
    `names` (e.g. b"pervade-pool", b"pervade.worker")."""
    marker = SESSION_MARKER.encode()
    pids = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == os.getpid():
            continue
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                cmd = f.read().replace(b"\0", b" ")
            if not any(n in cmd for n in names):
                continue
            with open(f"/proc/{entry}/environ", "rb") as f:
                if marker not in f.read().split(b"\0"):
                    continue
        except OSError:
            continue
        if pid_alive(int(entry)):
            pids.append(int(entry))
    return pids


def _unload_global():
    try:
        loaded = parsl.dfk()
    except parsl.NoDataFlowKernelError:
        return
    loaded.cleanup()
    parsl.clear()


@pytest.fixture(autouse=True)
def no_thread_leak():
    """Every test: no kernel loaded before; afterwards every kernel is gone and the process has
    exactly as many OS threads as before the test."""
    _unload_global()
    before = thread_count()
    yield before
    _unload_global()
    after = wait_until(lambda: thread_count() == before, timeout=10.0)
    assert after, f"threads leaked: {before} before the test, {thread_count()} after cleanup"


@pytest.fixture
def run_dir(tmp_path):
    return str(tmp_path / "runinfo")


@pytest.fixture
def make_config(run_dir):
    """make_config(**kw) -> Config with the test's run_dir and (by default) a 4-thread executor."""

    def make(**kwargs):
        kwargs.setdefault("run_dir", run_dir)
        kwargs.setdefault("executors", [parsl.ThreadPoolExecutor(max_threads=4)])
        return parsl.Config(**kwargs)

    return make


@pytest.fixture
def load(make_config, no_thread_leak):
    """load(**config_kwargs) -> a loaded DataFlowKernel, cleaned up after the test."""
    kernels = []

    def do_load(**kwargs):
        kernel = parsl.load(make_config(**kwargs))
        kernels.append(kernel)
        return kernel

    yield do_load
    for kernel in kernels:
        kernel.cleanup()
    parsl.clear()


@pytest.fixture
def dfk(load):
    """The default kernel: one ThreadPoolExecutor with 4 threads, no retries."""
    return load()


# -- Test hosts and a Slurm cluster on this machine (tests/python/cluster/) -------------------


@pytest.fixture(scope="session")
def hosts_network():
    """Three hosts ("a", "b", "c"): network namespaces on a bridge; `.host_address` is this
    machine's side of the bridge (bind an interchange there), `.hosts[i].argv(cmd)` runs cmd on
    host i. Removed at the end of the session, with everything still running inside."""
    from cluster.netns import NETNS_PREFIX, Network, NetworkUnavailable, netns_list

    try:
        network = Network(["a", "b", "c"])
    except NetworkUnavailable as e:
        pytest.skip(f"SKIPPED LOUDLY: no network namespaces on this machine: {e}")
    yield network
    network.close()
    # Only ours count: another session on this machine may add or remove its own meanwhile.
    left = [n for n in netns_list() if n.startswith(f"{NETNS_PREFIX}{network._tag}-")]
    assert not left, f"network namespaces left: {left}"


@pytest.fixture(scope="session")
def slurm_cluster(tmp_path_factory):
    """A real Slurm cluster (Debian's slurm-wlm, installed when missing): a controller and three
    nodes, each a network namespace with its own hostname, one partition. Started once per
    session; see tests/python/cluster/slurm.py for what it exposes."""
    from cluster.slurm import SlurmCluster, SlurmUnavailable

    cluster = SlurmCluster(str(tmp_path_factory.mktemp("slurm")), nodes=3)
    try:
        cluster.start()
    except SlurmUnavailable as e:
        pytest.skip(f"SKIPPED LOUDLY: no Slurm test cluster on this machine: {e}")
    yield cluster
    cluster.stop()
    assert wait_until(lambda: not cluster.leftover_pids(), 30), f"Slurm processes left: {cluster.leftover_pids()}"


@pytest.fixture
def slurm(slurm_cluster, monkeypatch):
    """The session's Slurm cluster, with SLURM_CONF set in os.environ for the test (so sbatch,
    squeue and scancel run by pervade find it). The test must leave no job pending or running."""
    monkeypatch.setenv("SLURM_CONF", slurm_cluster.conf)
    yield slurm_cluster
    if not wait_until(lambda: not slurm_cluster.active_jobs(), 30):
        left = slurm_cluster.active_jobs()
        slurm_cluster.run(["scancel", "--full", f"--partition={slurm_cluster.partition}"], check=False)
        pytest.fail(f"the test left Slurm jobs behind: {left}")
