"""Parsl's parsl.monitoring.radios.udp: monitoring messages as HMAC-signed UDP datagrams.

>>> radio = UDPRadio(address="10.0.0.5")          # the address senders reach the receiver at
>>> receiver = radio.create_receiver(run_dir="runinfo", resource_msgs=queue)   # binds a port
>>> radio.create_sender().send((MessageType.RESOURCE_INFO, {...}))  # anywhere radio is pickled to
>>> receiver.shutdown()

Each datagram is the HMAC (`hmac_digest`, with a random key of the digest's size made by
`create_receiver` and carried by the config) of the pickled message, then the pickle. The
receiver checks the HMAC before it unpickles anything; a datagram that does not match is dropped
and logged. UDP may lose datagrams: this radio is cheap, not reliable.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import pickle
import secrets
import socket
from multiprocessing.queues import Queue

from .base import MonitoringRadioReceiver, MonitoringRadioSender, RadioConfig
from .udp_router import start_udp_receiver

logger = logging.getLogger(__name__)


class UDPRadio(RadioConfig):
    """Monitoring messages as UDP datagrams to `address`:`port` (`port` None: the receiver picks a
    free one). After a shutdown the receiver waits for stragglers until no datagram came for
    `atexit_timeout` s. `debug`: the receiver's log at DEBUG."""

    def __init__(self, *, port: int | None = None, atexit_timeout: int = 3, address: str, debug: bool = False,
                 hmac_digest: str = "sha512"):
        self.port = port
        self.atexit_timeout = atexit_timeout
        self.address = address
        self.debug = debug
        self.hmac_digest = hmac_digest

    def create_receiver(self, *, run_dir: str, resource_msgs: Queue) -> MonitoringRadioReceiver:
        # A fresh key per run, as long as the digest (RFC 2104's advice for HMAC keys).
        self.hmac_key = secrets.token_bytes(hashlib.new(self.hmac_digest).digest_size)
        receiver = start_udp_receiver(monitoring_messages=resource_msgs, port=self.port, logdir=run_dir,
                                      debug=self.debug, atexit_timeout=self.atexit_timeout,
                                      hmac_key=self.hmac_key, hmac_digest=self.hmac_digest)
        self.port = receiver.port
        return receiver

    def create_sender(self) -> MonitoringRadioSender:
        if self.port is None or getattr(self, "hmac_key", None) is None:
            raise RuntimeError("UDPRadio.create_sender() needs create_receiver() first (it sets the port and key)")
        return UDPRadioSender(self.address, self.port, self.hmac_key, self.hmac_digest)


class UDPRadioSender(MonitoringRadioSender):
    """Sends signed datagrams to `address`:`port`. Used by one thread at a time."""

    def __init__(self, address: str, port: int, hmac_key: bytes, hmac_digest: str, *, timeout: int = 10) -> None:
        self.address = address
        self.port = port
        self.hmac_key = hmac_key
        self.hmac_digest = hmac_digest
        self.sock_timeout = timeout
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM, socket.IPPROTO_UDP)
        self.sock.settimeout(timeout)

    def send(self, message: object) -> None:
        """Sends `message`. As in Parsl, a failure (a message that cannot be pickled, one too big
        for a datagram, a full socket buffer) is logged and the message dropped: monitoring never
        breaks the code that reports."""
        try:
            data = pickle.dumps(message)
            self.sock.sendto(hmac.digest(self.hmac_key, data, self.hmac_digest) + data, (self.address, self.port))
        except Exception:
            logger.error("Dropped a monitoring message to UDP %s:%s", self.address, self.port, exc_info=True)


__all__ = ["UDPRadio", "UDPRadioSender"]
