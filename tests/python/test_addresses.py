"""pervade.addresses (Parsl's address helpers), run inside test hosts (network namespaces with a
known address on eth0, tests/python/cluster/netns.py) and on this machine."""

import errno
import json
import os
import shutil
import subprocess
import sys
import textwrap

import pytest

from pervade import addresses

T = 60


def run_on(host, code: str, netns_exec: bool = False, hostname: str | None = None):
    """Runs `code` (which sets `result`) with this Python on `host`; returns result, or the
    raised exception as (type name, errno, message)."""
    program = textwrap.dedent("""
        import json, sys
        from pervade.addresses import *
        try:
        {code}
            out = {{"result": sorted(result) if isinstance(result, set) else result}}
        except Exception as e:
            out = {{"error": [type(e).__name__, getattr(e, "errno", None), str(e)]}}
        print(json.dumps(out))
    """).format(code=textwrap.indent(textwrap.dedent(code), "    "))
    argv = [sys.executable, "-c", program]
    if netns_exec:  # `ip netns exec` also puts /etc/netns/<name>/hosts over /etc/hosts
        inner = ["unshare", "--uts", "sh", "-c", 'hostname "$0" && exec "$@"', hostname, *argv] if hostname else argv
        argv = ["ip", "netns", "exec", host.netns, *inner]
    else:
        argv = host.argv(argv, hostname=hostname)
    done = subprocess.run(argv, capture_output=True, text=True, timeout=T)
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout)
    return out["result"] if "result" in out else tuple(out["error"])


def test_address_by_interface(hosts_network):
    for host in hosts_network.hosts[:2]:
        assert run_on(host, "result = address_by_interface('eth0')") == host.address
        assert run_on(host, "result = address_by_interface('lo')") == "127.0.0.1"
    assert addresses.address_by_interface("lo") == "127.0.0.1"


def test_address_by_interface_unknown_name_is_a_clear_error(hosts_network):
    kind, code, message = run_on(hosts_network.hosts[0], "result = address_by_interface('ib7')")
    assert (kind, code) == ("OSError", errno.ENODEV)
    assert "no network interface 'ib7'" in message and "eth0" in message and "lo" in message
    with pytest.raises(ValueError):
        addresses.address_by_interface("x" * 16)
    with pytest.raises(TypeError):
        addresses.address_by_interface(0)


def test_address_by_interface_without_address(hosts_network):
    host = hosts_network.hosts[0]
    # A veth pair inside the namespace: an interface with no address yet.
    subprocess.run(host.argv(["ip", "link", "add", "dummy7", "type", "veth", "peer", "name", "dummy8"]), check=True)
    try:
        kind, code, message = run_on(host, "result = address_by_interface('dummy7')")
        assert (kind, code) == ("OSError", errno.EADDRNOTAVAIL) and "has no address" in message
        subprocess.run(host.argv(["ip", "addr", "add", "fd42::7/64", "dev", "dummy7", "nodad"]), check=True)
        assert run_on(host, "result = address_by_interface('dummy7')") == "fd42::7"
    finally:
        subprocess.run(host.argv(["ip", "link", "delete", "dummy7"]), check=True)


def test_address_by_route(hosts_network):
    for host in hosts_network.hosts[:2]:  # their default route goes out of eth0
        assert run_on(host, "result = address_by_route()") == host.address
    # On this machine: the source address `ip route get` names (it sends nothing either).
    route = json.loads(subprocess.run(["ip", "-j", "route", "get", "8.8.8.8"], capture_output=True, text=True).stdout
                       or "[{}]")[0]
    if route.get("prefsrc"):
        assert addresses.address_by_route() == route["prefsrc"]


def test_address_by_route_without_a_route_is_a_clear_error(hosts_network):
    host = hosts_network.hosts[2]
    subprocess.run(host.argv(["ip", "route", "del", "default"]), check=True)
    try:
        kind, code, message = run_on(host, "result = address_by_route()")
        assert (kind, code) == ("OSError", errno.ENETUNREACH)
        assert "no route" in message and "address_by_interface" in message
    finally:
        subprocess.run(host.argv(["ip", "route", "add", "default", "via", hosts_network.host_address]), check=True)


def test_address_by_hostname(hosts_network):
    host = hosts_network.hosts[1]
    # `ip netns exec` reads /etc/netns/<name>/hosts as the namespace's /etc/hosts.
    etc = f"/etc/netns/{host.netns}"
    made_parent = not os.path.exists("/etc/netns")
    os.makedirs(etc)
    try:
        with open(f"{etc}/hosts", "w") as f:
            f.write(f"127.0.0.1 localhost\n{host.address} testhost-b\n")
        assert run_on(host, "result = address_by_hostname()", netns_exec=True, hostname="testhost-b") == host.address
    finally:
        shutil.rmtree(etc)
        if made_parent:
            os.rmdir("/etc/netns")
    assert addresses.address_by_hostname() == subprocess.run(
        ["getent", "ahostsv4", os.uname().nodename], capture_output=True, text=True).stdout.split()[0]


def test_get_all_and_any_address(hosts_network):
    host = hosts_network.hosts[0]
    # Interfaces (eth0, lo), the hostname's (this machine's name: 127.0.0.1 from /etc/hosts)
    # and the route's; no query of the internet.
    found = run_on(host, "result = get_all_addresses(query_timeout=None)")
    assert host.address in found and "127.0.0.1" in found
    assert set(found) <= {host.address, "127.0.0.1", addresses.address_by_hostname()}
    assert run_on(host, "result = get_any_address(query_timeout=None)") == host.address


# A web service like ipify, on this machine's side of the bridge: /ok answers the caller's
# address, /error HTTP 500, /junk a word, /silent nothing at all.
SERVER = """
import http.server, sys, threading
class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        if self.path == "/silent":
            threading.Event().wait()
        status, body = {"/ok": (200, self.client_address[0]), "/junk": (200, "hello")}.get(self.path, (500, "no"))
        self.send_response(status)
        self.end_headers()
        self.wfile.write(body.encode())
    def log_message(self, *args):
        pass
server = http.server.ThreadingHTTPServer((sys.argv[1], 0), Handler)
print(server.server_address[1], flush=True)
server.serve_forever()
"""


@pytest.fixture
def ip_service(hosts_network):
    proc = subprocess.Popen([sys.executable, "-c", SERVER, hosts_network.host_address], stdout=subprocess.PIPE,
                            text=True)
    try:
        port = int(proc.stdout.readline())
        yield f"http://{hosts_network.host_address}:{port}"
    finally:
        proc.kill()
        proc.wait(T)


def test_address_by_query(hosts_network, ip_service):
    host = hosts_network.hosts[0]
    assert run_on(host, f"result = address_by_query(timeout=10, url='{ip_service}/ok')") == host.address
    kind, _, message = run_on(host, f"result = address_by_query(timeout=10, url='{ip_service}/error')")
    assert kind == "RuntimeError" and "HTTP 500" in message
    kind, _, message = run_on(host, f"result = address_by_query(timeout=10, url='{ip_service}/junk')")
    assert kind == "RuntimeError" and "'hello', not an address" in message


def test_address_by_query_gives_up(hosts_network, ip_service):
    host = hosts_network.hosts[0]
    kind, _, message = run_on(host, f"result = address_by_query(timeout=1, url='{ip_service}/silent')")
    assert kind == "RuntimeError" and "no answer" in message and "within 1 s" in message


def test_address_by_query_without_a_route(hosts_network):
    host = hosts_network.hosts[2]
    subprocess.run(host.argv(["ip", "route", "del", "default"]), check=True)
    try:  # a documentation address, unreachable: the connect fails at once, nothing is sent
        kind, _, message = run_on(host, "result = address_by_query(timeout=10, url='http://203.0.113.9/')")
        assert kind == "RuntimeError" and "no answer from http://203.0.113.9/" in message
        assert "unreachable" in message.lower()
    finally:
        subprocess.run(host.argv(["ip", "route", "add", "default", "via", hosts_network.host_address]), check=True)


@pytest.mark.parametrize("address, port, url", [
    ("10.0.0.5", 55001, "tcp://10.0.0.5:55001"),
    ("10.0.0.5", "55001", "tcp://10.0.0.5:55001"),
    ("10.0.0.5", None, "tcp://10.0.0.5"),
    ("fe80::1", 55001, "tcp://[fe80::1]:55001"),
    ("::ffff:10.0.0.5", None, "tcp://::ffff:10.0.0.5"),
    ("*", None, "tcp://*"),
    ("*", "55001", "tcp://*:55001"),
])
def test_tcp_url_brackets_ipv6_before_a_port(address, port, url):
    assert addresses.tcp_url(address, port) == url


def test_tcp_url_of_a_name_that_is_no_address_is_a_value_error():
    with pytest.raises(ValueError):
        addresses.tcp_url("login1.cluster", 55001)
