"""Staging with test hosts (network namespaces, tests/python/cluster/netns.py).

RSyncStaging over ssh: an sshd started by the test on host "a" with keys made for the test; the
task's node (this machine) pulls its input from that host and pushes its output back, as a worker
node would from the submit host. Pools on hosts a and b stage their own tasks' inputs from a
server on this machine, each through its own node cache."""

import os
import re
import shutil
import subprocess

import pytest
from conftest import wait_until

from pervade import File, ThreadPoolExecutor, python_app
from pervade.data_provider.rsync import RSyncStaging
from pervade.data_provider.transfer import StagingError

T = 60


@pytest.fixture
def ssh_host(hosts_network, tmp_path, monkeypatch):
    """(host, its log): sshd on host "a" accepting this test's key for root; RSYNC_RSH set so that
    rsync's ssh uses that key and trusts the host."""
    for tool in ("rsync", "ssh", "ssh-keygen"):
        if shutil.which(tool) is None or not os.path.exists("/usr/sbin/sshd"):
            pytest.skip(f"SKIPPED LOUDLY: {tool} or /usr/sbin/sshd is missing (make deps installs rsync, openssh-server)")
    host = hosts_network.host("a")
    keys = tmp_path / "ssh"
    keys.mkdir()
    for name in ("host_key", "id"):
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(keys / name)], check=True, timeout=30)
    shutil.copy(keys / "id.pub", keys / "authorized_keys")
    config = keys / "sshd_config"
    config.write_text(f"ListenAddress {host.address}\nPort 22\nHostKey {keys / 'host_key'}\n"
                      f"AuthorizedKeysFile {keys / 'authorized_keys'}\nPermitRootLogin prohibit-password\n"
                      "PasswordAuthentication no\nKbdInteractiveAuthentication no\nUsePAM no\nStrictModes no\n"
                      "PidFile none\n")
    os.makedirs("/run/sshd", mode=0o755, exist_ok=True)  # sshd's privilege separation directory
    log = tmp_path / "sshd.log"
    with open(log, "wb") as out:
        sshd = subprocess.Popen(host.argv(["/usr/sbin/sshd", "-D", "-e", "-f", str(config)]), stdout=out,
                                stderr=subprocess.STDOUT)
    monkeypatch.setenv("RSYNC_RSH", f"ssh -i {keys / 'id'} -o BatchMode=yes -o StrictHostKeyChecking=no "
                                    "-o UserKnownHostsFile=/dev/null -o LogLevel=ERROR -o ConnectTimeout=10")
    try:
        assert wait_until(lambda: "Server listening" in log.read_text() or sshd.poll() is not None, T), log.read_text()
        assert sshd.poll() is None, log.read_text()
        yield host, log
    finally:
        sshd.terminate()
        sshd.wait(timeout=T)


@python_app
def upper(inputs=(), outputs=()):
    with open(inputs[0]) as src, open(outputs[0], "w") as dst:
        dst.write(src.read().upper())
    return os.fspath(inputs[0])


def test_rsync_in_and_out_over_ssh(load, ssh_host, tmp_path):
    host, log = ssh_host
    remote = tmp_path / "remote"
    remote.mkdir()
    (remote / "in.txt").write_text("hello over ssh\n")
    work = tmp_path / "work"
    load(executors=[ThreadPoolExecutor(max_threads=2, working_dir=str(work),
                                       storage_access=[RSyncStaging(f"root@{host.address}")])])
    fut = upper(inputs=[File(str(remote / "in.txt"))], outputs=[File(str(remote / "out.txt"))])
    assert fut.result(timeout=T) == str(work / "in.txt")  # the task read its node's copy
    fut.outputs[0].result(timeout=T)
    assert (remote / "out.txt").read_text() == "HELLO OVER SSH\n"  # pushed back by rsync
    assert (work / "out.txt").read_text() == "HELLO OVER SSH\n"
    assert len(re.findall("Accepted publickey for root", log.read_text())) == 2  # both went through sshd


def test_rsync_bad_host_fails_the_task(load, ssh_host, tmp_path):
    source = tmp_path / "in.txt"
    source.write_text("x")
    load(executors=[ThreadPoolExecutor(max_threads=2, working_dir=str(tmp_path / "work"),
                                       storage_access=[RSyncStaging("root@no-such-host.invalid")])])
    with pytest.raises(StagingError, match="rsync") as e:
        upper(inputs=[File(str(source))], outputs=[File(str(tmp_path / "out.txt"))]).result(timeout=T)
    assert str(source) in str(e.value)
    assert not (tmp_path / "work" / "in.txt").exists()


# ---------------------------------------------------------------------------------- pools on test hosts


@python_app(executors=["htex"])
def staged_on(f, barrier_dir, count):
    """(hostname, sha256 of the staged file) once `count` tasks have started: with as many
    workers in all, every pool runs its share."""
    import hashlib
    import socket
    import time

    open(os.path.join(barrier_dir, f"{socket.gethostname()}-{os.getpid()}"), "w").close()
    deadline = time.monotonic() + 60
    while len(os.listdir(barrier_dir)) < count and time.monotonic() < deadline:
        time.sleep(0.01)
    with open(f, "rb") as fh:
        return socket.gethostname(), hashlib.sha256(fh.read()).hexdigest()


def test_pools_on_two_hosts_stage_their_own_inputs(hosts_network, tmp_path, monkeypatch, no_thread_leak):
    """Pools on hosts a and b fetch an input from a server on this machine (over the test network)
    for their own tasks; each host has its own node cache: one GET per host."""
    import hashlib

    import pervade as parsl
    from cluster.pools import HostPools
    from staging_servers import FileServer
    from test_hosts import host_htex

    from pervade.data_provider.http import HTTPInTaskStaging

    server = FileServer(address=hosts_network.host_address)
    data = os.urandom(100_000)
    url = server.add("/input.bin", data)
    ex = host_htex("htex", hosts_network.host_address, working_dir=str(tmp_path / "work"),
                   storage_access=[HTTPInTaskStaging()])
    dfk = parsl.load(parsl.Config(executors=[ex], run_dir=str(tmp_path / "runinfo")))
    pools = HostPools(str(tmp_path / "pools"))
    try:
        for name in ("a", "b"):
            monkeypatch.setenv("PERVADE_STAGING_CACHE", str(tmp_path / f"cache-{name}"))  # the pool's node cache
            pools.start(hosts_network.host(name), ex, block_id=name)
        assert wait_until(lambda: len(ex.pools()) == 2, T), ex.refusals()
        barrier = tmp_path / "barrier"
        barrier.mkdir()
        results = [f.result(timeout=T) for f in [staged_on(File(url), str(barrier), 4) for _ in range(4)]]
        assert sorted(results) == [("host-a", hashlib.sha256(data).hexdigest())] * 2 + \
            [("host-b", hashlib.sha256(data).hexdigest())] * 2
        assert server.gets["/input.bin"] == 2  # one transfer per host
        dfk.cleanup()
    finally:
        parsl.clear()
        left = pools.stop()
        server.stop()
        assert not left, f"processes left on the hosts: {left}"
