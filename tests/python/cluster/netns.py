"""Test hosts on one machine: network namespaces joined to the host by veth pairs on a bridge.

Who calls it: test fixtures, from the test's main thread (no threads of its own).

    with Network(["a", "b"]) as net:
        subprocess.run(net.hosts[0].argv(["hostname", "-I"]))   # runs inside namespace "a"
        net.host_address                                         # the host's side of the bridge

Each namespace is a host with its own loopback, an `eth0` at a private /24 address and a
default route through the host's bridge address (so `address_by_route` has an answer; the
host does not forward, so nothing leaves the machine). Subnets are chosen free under a lock,
so several test sessions on one machine (CI next to a developer) do not collide; names carry
the session's pid, and namespaces left by a session that was killed are removed by the next.
"""

from __future__ import annotations

import fcntl
import ipaddress
import json
import os
import re
import shutil
import signal
import subprocess
import time

LOCK_FILE = "/run/lock/pervade-test-network.lock"
NETNS_PREFIX = "pervade-"
SUBNETS = ipaddress.ip_network("10.250.0.0/16")  # carved into /24s, one per Network


class NetworkUnavailable(RuntimeError):
    """This machine cannot make network namespaces (not root, no `ip`, no permission)."""


def ip(*args, check=True) -> subprocess.CompletedProcess:
    return subprocess.run(["ip", *args], capture_output=True, text=True, check=check, timeout=30)


def netns_list() -> list:
    """Names of the network namespaces `ip netns` knows, sorted."""
    out = ip("-j", "netns", "list", check=False).stdout.strip()
    return sorted(entry["name"] for entry in json.loads(out)) if out else []


def netns_pids(name: str) -> list:
    out = ip("netns", "pids", name, check=False).stdout.split()
    return [int(p) for p in out if p.isdigit()]


def netns_inode(name: str) -> int:
    """The inode of a namespace: what os.stat('/proc/self/ns/net').st_ino gives inside it."""
    return os.stat(f"/run/netns/{name}").st_ino


def check_available() -> None:
    """Raises NetworkUnavailable with the reason when namespaces cannot be made here."""
    if os.geteuid() != 0:
        raise NetworkUnavailable("network namespaces need root (ip netns add)")
    for tool in ("ip", "nsenter", "unshare"):
        if shutil.which(tool) is None:
            raise NetworkUnavailable(f"{tool} is not installed (iproute2 / util-linux)")


def _kill_netns_processes(name: str, timeout: float = 10.0) -> None:
    """SIGKILLs every process in the namespace and waits until none is left."""
    deadline = time.monotonic() + timeout
    while True:
        pids = netns_pids(name)
        live = [p for p in pids if running(p)]
        if not live:
            return
        for pid in live:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        if time.monotonic() > deadline:
            raise RuntimeError(f"processes {live} in namespace {name} survive SIGKILL")
        time.sleep(0.05)


def running(pid: int) -> bool:
    """True while the process exists and is not a zombie (a zombie runs nothing; it stays
    until its parent reaps it, which may be an init that never does)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def remove_stale() -> None:
    """Removes namespaces and bridges of sessions that died without cleaning up."""
    for name in netns_list():
        m = re.match(rf"{NETNS_PREFIX}(\d+)n\d+-", name)
        if m and not running(int(m.group(1))):
            _kill_netns_processes(name)
            ip("netns", "delete", name, check=False)
    for link in json.loads(ip("-j", "link", "show", "type", "bridge", check=False).stdout or "[]"):
        m = re.match(r"pvbr(\d+)n\d+$", link["ifname"])
        if m and not running(int(m.group(1))):
            ip("link", "delete", link["ifname"], check=False)


def _used_networks() -> list:
    used = []
    for link in json.loads(ip("-j", "-4", "addr", "show").stdout or "[]"):
        for a in link.get("addr_info", []):
            used.append(ipaddress.ip_network(f"{a['local']}/{a['prefixlen']}", strict=False))
    for route in json.loads(ip("-j", "-4", "route", "show").stdout or "[]"):
        if route.get("dst") not in (None, "default"):
            used.append(ipaddress.ip_network(route["dst"], strict=False))
    return used


class Host:
    """One namespace: `name` (short), `netns` (ip netns name), `address` (on its eth0)."""

    def __init__(self, name: str, netns: str, address: str):
        self.name = name
        self.netns = netns
        self.address = address

    @property
    def inode(self) -> int:
        return netns_inode(self.netns)

    def argv(self, argv: list, hostname: str | None = None) -> list:
        """argv run inside this host's namespace; with `hostname`, also in a UTS namespace of its
        own with that hostname. nsenter rather than `ip netns exec`: the latter remounts /sys for
        the namespace, which hides /sys/fs/cgroup, and slurmd refuses to start without it."""
        prefix = ["nsenter", f"--net=/run/netns/{self.netns}"]
        if hostname is None:
            return prefix + list(argv)
        return prefix + ["unshare", "--uts", "sh", "-c", 'hostname "$0" && exec "$@"', hostname] + list(argv)

    def pids(self) -> list:
        """Live processes in this namespace."""
        return [p for p in netns_pids(self.netns) if running(p)]

    def commands(self) -> list:
        """(pid, argv as a list of bytes) of the live processes in this namespace."""
        found = []
        for pid in self.pids():
            try:
                with open(f"/proc/{pid}/cmdline", "rb") as f:
                    found.append((pid, f.read().split(b"\0")))
            except OSError:  # it ended meanwhile
                continue
        return found

    def __repr__(self) -> str:
        return f"Host({self.name!r}, {self.address})"


class Network:
    """A bridge on the host (address .1) and one namespace per name (addresses .2, .3, ...)."""

    _count = 0  # Networks made by this process: part of the names, so several can coexist

    def __init__(self, names: list):
        check_available()
        self.hosts: list = []
        self.links: list = []  # interfaces made in the machine's namespace: the bridge, veth ends
        self._bridge = None
        pid = os.getpid()
        Network._count += 1
        self._tag = f"{pid}n{Network._count}"
        os.makedirs(os.path.dirname(LOCK_FILE), exist_ok=True)
        with open(LOCK_FILE, "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            remove_stale()
            used = _used_networks()
            subnet = next((s for s in SUBNETS.subnets(new_prefix=24)
                           if s.network_address.packed[2] != 0 and not any(s.overlaps(u) for u in used)), None)
            if subnet is None:
                raise NetworkUnavailable(f"no free /24 left in {SUBNETS}")
            self.subnet = subnet
            addresses = list(subnet.hosts())
            self.host_address = str(addresses[0])
            # The bridge name carries our pid: a session that dies leaves it, the next removes it.
            bridge = f"pvbr{self._tag}"
            try:
                ip("link", "add", bridge, "type", "bridge")
                self._bridge = bridge
                self.links.append(bridge)
                ip("addr", "add", f"{self.host_address}/24", "dev", bridge)
                ip("link", "set", bridge, "up")
                for i, name in enumerate(names):
                    self._add_host(name, str(addresses[i + 1]), f"pv{self._tag}h{i}")
            except subprocess.CalledProcessError as e:
                self.close()
                raise NetworkUnavailable(f"{' '.join(e.cmd)} failed: {e.stderr.strip()}") from e
            except BaseException:
                self.close()
                raise

    def _add_host(self, name: str, address: str, veth: str) -> None:
        netns = f"{NETNS_PREFIX}{self._tag}-{name}"
        ip("netns", "add", netns)
        self.hosts.append(Host(name, netns, address))
        ip("link", "add", veth, "type", "veth", "peer", "name", "eth0", "netns", netns)
        self.links.append(veth)
        ip("link", "set", veth, "master", self._bridge, "up")
        ip("-n", netns, "addr", "add", f"{address}/24", "dev", "eth0")
        ip("-n", netns, "link", "set", "eth0", "up")
        ip("-n", netns, "link", "set", "lo", "up")
        ip("-n", netns, "route", "add", "default", "via", self.host_address)

    def host(self, name: str) -> Host:
        return next(h for h in self.hosts if h.name == name)

    def close(self) -> None:
        """Kills what still runs in the namespaces, deletes them and the bridge."""
        for host in self.hosts:
            _kill_netns_processes(host.netns)
            ip("netns", "delete", host.netns, check=False)
        self.hosts = []
        self.links = []
        if self._bridge:
            ip("link", "delete", self._bridge, check=False)
            self._bridge = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
