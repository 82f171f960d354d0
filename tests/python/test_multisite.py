"""Several executors in one Config (multi-site): threads in this process and two
HighThroughputExecutors whose pools run on different test hosts; apps pinned with
executors=[...] run where they are pinned (checked by the network namespace they run in)."""

import os

import pytest
from test_hosts import host_htex, running_on_hosts

import pervade as parsl
from pervade import ThreadPoolExecutor, python_app

T = 60


@pytest.fixture
def sites(hosts_network, tmp_path, no_thread_leak):
    address = hosts_network.host_address
    executors = [ThreadPoolExecutor(label="local", max_threads=2), host_htex("site_a", address),
                 host_htex("site_b", address)]
    yield from running_on_hosts(tmp_path, hosts_network, executors, [("site_a", "a"), ("site_b", "b")])


def netns_app(executors):
    """An app that returns the inode of the network namespace it runs in. (Made here rather than
    at module level so it is shipped by value: workers cannot import this test module.)"""
    def netns():
        import os
        return os.stat("/proc/self/ns/net").st_ino
    return python_app(netns, executors=executors)


on_local = netns_app(["local"])
on_a = netns_app(["site_a"])
on_b = netns_app(["site_b"])
on_a_or_b = netns_app(["site_a", "site_b"])


@python_app(executors=["local"])
def start(x):
    return [x]


@python_app(executors=["site_a"])
def step_a(trail):
    import os
    return trail + [("a", os.stat("/proc/self/ns/net").st_ino)]


@python_app(executors=["site_b"])
def step_b(trail):
    import os
    return trail + [("b", os.stat("/proc/self/ns/net").st_ino)]


@python_app(executors=["local"])
def finish(trail):
    return len(trail), trail[0] * 10


def test_pinned_apps_run_on_their_site(sites, hosts_network):
    a, b = hosts_network.host("a").inode, hosts_network.host("b").inode
    here = os.stat("/proc/self/ns/net").st_ino
    assert [f.result(timeout=T) for f in [on_local() for _ in range(5)]] == [here] * 5
    assert [f.result(timeout=T) for f in [on_a() for _ in range(10)]] == [a] * 10
    assert [f.result(timeout=T) for f in [on_b() for _ in range(10)]] == [b] * 10


def test_app_on_two_labels_runs_on_either(sites, hosts_network):
    a, b = hosts_network.host("a").inode, hosts_network.host("b").inode
    futures = [on_a_or_b() for _ in range(64)]
    ran = [f.result(timeout=T) for f in futures]
    assert set(ran) <= {a, b}
    # The kernel picks one of the labels at random for each task (as Parsl does): 64 tasks all
    # on one site would have a probability of 2^-63.
    assert set(ran) == {a, b}
    assert {f.task_record["executor"] for f in futures} == {"site_a", "site_b"}


def test_chain_crosses_executors(sites, hosts_network):
    a, b = hosts_network.host("a").inode, hosts_network.host("b").inode
    trail = start(7)
    for _ in range(3):
        trail = step_b(step_a(trail))
    count, first = finish(trail).result(timeout=T)
    assert (count, first) == (7, 70)  # 1 start + 3 * (a, b) steps
    assert trail.result(timeout=T) == [7] + [("a", a), ("b", b)] * 3


@python_app(executors=["site_a"])
def fail_on_a():
    raise ValueError("site a failed")


def test_failure_crosses_executors(sites):
    with pytest.raises(parsl.DependencyError):
        finish(step_b(fail_on_a())).result(timeout=T)
