"""Parsl's parsl.monitoring.radios.zmq: ZMQRadioSender, monitoring messages over a ZeroMQ
DEALER socket to a receiver from zmq_router.start_zmq_receiver (CurveZMQ-encrypted when both
are given the same `cert_dir`: pervade.curvezmq.create_certificates).

>>> r = start_zmq_receiver(monitoring_messages=q, loopback_address="127.0.0.1",
...                        port_range=(49152, 65535), logdir="runinfo", worker_debug=False, cert_dir=None)
>>> ZMQRadioSender("127.0.0.1", r.port, cert_dir=None).send((MessageType.NODE_INFO, {...}))
"""

from __future__ import annotations

from typing import Optional

import zmq

from ... import curvezmq
from .base import MonitoringRadioSender


def tcp_url(address: str, port: int | None = None) -> str:
    """`tcp://address[:port]`, with an IPv6 address in brackets."""
    host = f"[{address}]" if ":" in address else address
    return f"tcp://{host}" + (f":{port}" if port is not None else "")


class ZMQRadioSender(MonitoringRadioSender):
    """Sends pickled messages to `hub_address`:`hub_zmq_port`. Used by one thread (ZeroMQ sockets
    are not thread-safe). Messages queue in memory while the receiver is unreachable."""

    def __init__(self, hub_address: str, hub_zmq_port: int, cert_dir: Optional[str]) -> None:
        self._context = curvezmq.ClientContext(cert_dir=cert_dir)
        self._hub_channel = self._context.socket(zmq.DEALER)
        self._hub_channel.set_hwm(0)  # never drop or block: monitoring waits in memory instead
        self._hub_channel.connect(tcp_url(hub_address, hub_zmq_port))

    def send(self, message: object) -> None:
        self._hub_channel.send_pyobj(message)

    def close(self, linger: int | None = None) -> None:
        """Closes the socket and its context (pervade's addition; Parsl's sender has no close).
        Messages still queued are sent first for up to `linger` ms (None: until they are sent);
        a process that exits without closing may lose them."""
        self._hub_channel.close(linger=linger)
        self._context.term()


__all__ = ["ZMQRadioSender"]
