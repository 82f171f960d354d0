"""Pools on other hosts: a HighThroughputExecutor whose interchange binds this machine's side of
a bridge, and pervade-pool processes started inside network namespaces (test hosts with their
own addresses and hostnames, tests/python/cluster/netns.py) that connect to it over TCP with
CurveZMQ, as pools on the nodes of a cluster do."""

import glob
import os

import pytest
from cluster.pools import HostPools
from conftest import wait_until

import pervade as parsl
from pervade import HighThroughputExecutor, LocalProvider, python_app

T = 60


def host_htex(label, address, **kw):
    """An executor that starts no block itself (init_blocks=0): the test starts its pools."""
    options = dict(label=label, address=address, max_workers_per_node=2, heartbeat_period=0.5,
                   heartbeat_threshold=3, short_task_prefetch=0, provider=LocalProvider(init_blocks=0))
    options.update(kw)
    return HighThroughputExecutor(**options)


def running_on_hosts(tmp_path, network, executors, placement):
    """Loads a Config with `executors`, starts pools as `placement` says ([(executor label, host
    name)]), waits until they registered; yields (dfk, HostPools). Afterwards: cleanup, then the
    hosts must run nothing (the pools exit by themselves once the interchange is gone)."""
    dfk = parsl.load(parsl.Config(executors=executors, run_dir=str(tmp_path / "runinfo")))
    pools = HostPools(str(tmp_path / "pools"))
    try:
        for i, (label, host) in enumerate(placement):
            pools.start(network.host(host), dfk.executors[label], block_id=str(i))
        for label in {label for label, _ in placement}:
            ex = dfk.executors[label]
            want = sum(1 for lbl, _ in placement if lbl == label)
            assert wait_until(lambda: len(ex.pools()) == want, T), f"{label}: pools {ex.pools()}, " \
                                                                   f"refusals {ex.refusals()}"
        yield dfk, pools
        dfk.cleanup()
        assert wait_until(lambda: not any(h.pids() for h in network.hosts), T), \
            f"processes left on the hosts: {[(h.name, h.pids()) for h in network.hosts]}"
    finally:
        parsl.clear()
        left = pools.stop()
        assert not left, f"processes survive SIGKILL on the hosts: {left}"


@pytest.fixture
def two_hosts(hosts_network, tmp_path, no_thread_leak):
    """One executor "htex" with a pool on host a and one on host b."""
    yield from running_on_hosts(tmp_path, hosts_network, [host_htex("htex", hosts_network.host_address)],
                                [("htex", "a"), ("htex", "b")])


@python_app(executors=["htex"])
def where(barrier_dir=None, count=0):
    """(network namespace inode, eth0 address, hostname); with a barrier, first waits until
    `count` tasks arrived, so they must all run at the same time."""
    import os
    import socket
    import time
    from pervade.addresses import address_by_interface
    if barrier_dir:
        open(os.path.join(barrier_dir, f"{os.getpid()}-{time.monotonic_ns()}"), "w").close()
        deadline = time.monotonic() + 60
        while len(os.listdir(barrier_dir)) < count:
            if time.monotonic() > deadline:
                raise TimeoutError("the other tasks never ran alongside")
            time.sleep(0.01)
    return os.stat("/proc/self/ns/net").st_ino, address_by_interface("eth0"), socket.gethostname()


@python_app(executors=["htex"])
def started_then_sleep(path, seconds):
    import os
    import time
    with open(path + ".tmp", "w") as f:
        f.write(str(os.stat("/proc/self/ns/net").st_ino))
    os.rename(path + ".tmp", path)
    time.sleep(seconds)


def test_pools_connect_over_tcp_with_curve(two_hosts, hosts_network):
    dfk, pools = two_hosts
    executor = dfk.executors["htex"]
    assert executor.encrypted and "--curve-server-key" in executor.pool_command("x")
    assert f"--address {hosts_network.host_address}:" in executor.pool_command("x")
    assert sorted(p["hostname"] for p in executor.pools()) == ["host-a", "host-b"]
    # The pool command also names the interchange's same-host socket, which a pool in another
    # network namespace (another host) must not use: both logs say why, and CurveZMQ.
    assert "--ipc ipc://" in executor.pool_command("x")
    logs = sorted(glob.glob(os.path.join(pools.log_dir, "pool-htex-*.log")))
    assert len(logs) == 2
    for path in logs:
        with open(path) as f:
            text = f.read()
        assert "not using the same-host socket" in text and "not on the interchange's host" in text, text
        assert ", CurveZMQ" in text, text


def test_tasks_run_on_both_hosts(two_hosts, hosts_network, tmp_path):
    # Four tasks that can only finish together, on two pools of two workers each: both hosts run.
    barrier = tmp_path / "barrier"
    barrier.mkdir()
    results = [f.result(timeout=T) for f in [where(str(barrier), 4) for _ in range(4)]]
    a, b = hosts_network.host("a"), hosts_network.host("b")
    assert sorted(results) == sorted([(a.inode, a.address, "host-a")] * 2 + [(b.inode, b.address, "host-b")] * 2)
    assert os.stat("/proc/self/ns/net").st_ino not in {a.inode, b.inode}


def test_lost_host_gives_manager_lost(two_hosts, hosts_network, tmp_path):
    _, pools = two_hosts
    started = tmp_path / "started"
    fut = started_then_sleep(str(started), 600)
    assert wait_until(started.exists, T)
    inode = int(started.read_text())
    lost, kept = [(h, p) for h, p in pools.started if h.inode == inode], \
                 [(h, p) for h, p in pools.started if h.inode != inode]
    assert len(lost) == 1 and len(kept) == 1
    pools.kill(lost[0][1])  # the host "dies": its pool and workers with it
    with pytest.raises((parsl.ManagerLost, parsl.WorkerLost)):
        fut.result(timeout=T)
    assert wait_until(lambda: not lost[0][0].pids(), T)
    # Work goes on on the other host.
    assert where().result(timeout=T)[0] == kept[0][0].inode


def test_network_is_removed_with_what_runs_inside(hosts_network):
    """Network.close() (the fixtures' teardown) kills what still runs in its namespaces and
    removes them and the bridge: `ip netns list` and the links are as before."""
    import subprocess

    from cluster.netns import Network, ip, netns_list

    before = netns_list()
    network = Network(["x", "y"])
    links = network.links
    try:
        assert len(netns_list()) == len(before) + 2
        assert len(links) == 3 and all(ip("link", "show", link, check=False).returncode == 0 for link in links)
        sleeper = subprocess.Popen(network.host("y").argv(["sleep", "600"]))
        assert wait_until(lambda: network.host("y").pids() == [sleeper.pid], T)
        # Its own subnet, apart from the session's network.
        assert network.subnet != hosts_network.subnet
    finally:
        network.close()
    assert sleeper.wait(T) == -9
    assert netns_list() == before
    assert not any(ip("link", "show", link, check=False).returncode == 0 for link in links)
