"""Addresses of this machine, to choose the one HighThroughputExecutor binds and pools connect to.

Parsl's names and behaviour (`from parsl.addresses import ...` becomes
`from pervade.addresses import ...`):

    from pervade.addresses import address_by_interface
    HighThroughputExecutor(address=address_by_interface("ib0"), provider=SlurmProvider(...))

Which helper gives an address the compute nodes reach depends on the site's network, so the
choice is the user's: `address_by_interface` (the interface facing the nodes: the most
reliable), `address_by_hostname` (the hostname's address; often 127.0.0.1 on laptops and
containers, useless to other hosts), `address_by_route` (the source address of the default
route), `address_by_query` (the public address, asked of a web service: needs the internet),
`get_all_addresses` / `get_any_address` (all of them / the first that works). IPv4 only, as
Parsl's, except that `address_by_interface` falls back to the interface's global IPv6 address
when it has no IPv4 one. Standard library only (ioctl on Linux).
"""

from __future__ import annotations

import errno
import fcntl
import ipaddress
import logging
import platform
import socket
import struct
import urllib.error
import urllib.request

logger = logging.getLogger(__name__)

SIOCGIFADDR = 0x8915  # Linux <linux/sockios.h>: an interface's IPv4 address
IFNAMSIZ = 16  # interface names have at most 15 bytes and a NUL
QUERY_URL = "https://api.ipify.org"
ROUTE_PROBE = ("8.8.8.8", 80)  # any internet address: only the routing table is consulted


def address_by_route() -> str:
    """The source address this host uses for its default route (the route towards the internet).

    >>> address_by_route()
    '192.0.2.2'

    Nothing is sent: connecting a UDP socket only asks the kernel's routing table which address
    it would send from. Raises OSError when the host has no such route.
    """
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        try:
            s.connect(ROUTE_PROBE)
        except OSError as e:
            raise OSError(e.errno, f"address_by_route: this host has no route to the internet ({e.strerror}); "
                                   "use address_by_interface(name) instead") from e
        address = s.getsockname()[0]
    logger.debug("address_by_route: %s", address)
    return address


def address_by_query(timeout: float = 30, url: str = QUERY_URL) -> str:
    """This host's public address, as a web service (ipify by default) sees it.

    >>> address_by_query(timeout=5)
    '203.0.113.7'

    Needs the internet; behind NAT the answer is the router's address. Every failure (no
    network, no answer within `timeout` seconds, an HTTP error, an answer that is not an
    address) raises RuntimeError saying which.
    """
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            text = response.read(64).decode("ascii", "replace").strip()
    except urllib.error.HTTPError as e:
        raise RuntimeError(f"address_by_query: {url} answered HTTP {e.code}") from e
    except (urllib.error.URLError, OSError) as e:  # socket.timeout is an OSError
        reason = getattr(e, "reason", e)
        raise RuntimeError(f"address_by_query: no answer from {url} within {timeout} s: {reason}") from e
    try:
        ipaddress.ip_address(text)
    except ValueError as e:
        raise RuntimeError(f"address_by_query: {url} answered {text[:40]!r}, not an address") from e
    logger.debug("address_by_query: %s", text)
    return text


def address_by_hostname() -> str:
    """The IPv4 address this host's name resolves to.

    >>> address_by_hostname()
    '10.1.2.3'

    Where the hostname maps to 127.0.0.1 (common in containers) the answer reaches this host
    only. Raises OSError when the name does not resolve.
    """
    name = platform.node()
    try:
        address = socket.gethostbyname(name)
    except OSError as e:
        raise OSError(errno.ENOENT, f"address_by_hostname: the hostname {name!r} does not resolve: {e}") from e
    logger.debug("address_by_hostname: %s -> %s", name, address)
    return address


def address_by_interface(ifname: str) -> str:
    """The address of network interface `ifname` (e.g. "eth0", "ib0").

    >>> address_by_interface("lo")
    '127.0.0.1'

    Its IPv4 address, or its global IPv6 address when it has no IPv4 one. Raises OSError
    (errno ENODEV) naming the interfaces there are when `ifname` does not exist, OSError
    (EADDRNOTAVAIL) when it has no address.
    """
    if not isinstance(ifname, str):
        raise TypeError(f"address_by_interface: the interface name must be a str, got {ifname!r}")
    name = ifname.encode()
    if not name or len(name) >= IFNAMSIZ or b"\0" in name:
        raise ValueError(f"address_by_interface: {ifname!r} is not an interface name (1 to {IFNAMSIZ - 1} bytes)")
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        try:
            # struct ifreq: the name, then a struct sockaddr_in whose address starts at byte 20.
            ifreq = fcntl.ioctl(s.fileno(), SIOCGIFADDR, struct.pack("256s", name))
            return socket.inet_ntoa(ifreq[20:24])
        except OSError as e:
            if e.errno == errno.ENODEV:
                names = ", ".join(n for _, n in socket.if_nameindex())
                raise OSError(errno.ENODEV, f"address_by_interface: no network interface {ifname!r} on this "
                                            f"host (it has: {names})") from None
            if e.errno != errno.EADDRNOTAVAIL:
                raise
    ipv6 = _global_ipv6(ifname)
    if ipv6:
        return ipv6
    raise OSError(errno.EADDRNOTAVAIL, f"address_by_interface: interface {ifname!r} has no address")


def _global_ipv6(ifname: str) -> str | None:
    """The first global IPv6 address of an interface, from /proc/net/if_inet6 (Linux)."""
    try:
        with open("/proc/net/if_inet6") as f:
            for line in f:
                hexaddr, _index, _prefix, scope, _flags, name = line.split()
                if name == ifname and int(scope, 16) == 0:  # scope 0: global
                    return str(ipaddress.IPv6Address(bytes.fromhex(hexaddr)))
    except OSError:
        pass
    return None


def _finders(query_timeout: float | None) -> list:
    finders = [address_by_hostname, address_by_route]
    if query_timeout is not None:
        finders.append(lambda: address_by_query(timeout=query_timeout))
    return finders


def get_all_addresses(query_timeout: float | None = 30) -> set:
    """Every address found for this host: each interface's, the hostname's, the default route's
    and (unless `query_timeout` is None) the public one; finders that fail are skipped.

    >>> get_all_addresses(query_timeout=None)
    {'127.0.0.1', '10.1.2.3'}
    """
    found = set()
    for _index, name in socket.if_nameindex():
        try:
            found.add(address_by_interface(name))
        except OSError as e:
            logger.debug("get_all_addresses: interface %s: %s", name, e)
    for finder in _finders(query_timeout):
        try:
            found.add(finder())
        except (OSError, RuntimeError) as e:
            logger.debug("get_all_addresses: %s", e)
    return found


def get_any_address(query_timeout: float | None = 30) -> str:
    """One address of this host: a non-loopback interface's if there is one, else the first
    finder that answers (hostname, route, query). Raises OSError when none does.

    >>> get_any_address()
    '10.1.2.3'
    """
    loopback = None
    for _index, name in socket.if_nameindex():
        try:
            address = address_by_interface(name)
        except OSError:
            continue
        if not ipaddress.ip_address(address).is_loopback:
            return address
        loopback = loopback or address
    for finder in _finders(query_timeout):
        try:
            return finder()
        except (OSError, RuntimeError) as e:
            logger.debug("get_any_address: %s", e)
    if loopback:
        return loopback
    raise OSError(errno.EADDRNOTAVAIL, "get_any_address: no address found for this host")


def tcp_url(address: str, port: int | str | None = None) -> str:
    """The ZeroMQ TCP endpoint of an address and port, as Parsl's helper writes it: an IPv6
    address is bracketed when a port follows ("tcp://[::1]:55001"), "*" stands for every
    interface, and no port (None, 0 or "") gives the address alone. A string that is neither
    "*" nor an IP address raises ValueError."""
    suffix = f":{port}" if port else ""
    if address == "*":
        return f"tcp://*{suffix}"
    if ipaddress.ip_address(address).version == 6 and suffix:
        return f"tcp://[{address}]{suffix}"
    return f"tcp://{address}{suffix}"
