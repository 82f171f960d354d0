"""Parsl's parsl.monitoring.radios.udp_router: the UDP radio's receiver process."""

from __future__ import annotations

import hashlib
import hmac
import logging
import os
import pickle
import socket
import time
from multiprocessing.queues import Queue

from .receiver_process import ProcessRadioReceiver, start_receiver_process

logger = logging.getLogger(__name__)

# The receiver checks for shutdown this often (s) while no datagram comes.
POLL_INTERVAL = 0.1
# The largest UDP payload: a datagram is read whole (a cut one would fail its HMAC).
MAX_DATAGRAM = 65535


class UDPRadioReceiver(ProcessRadioReceiver):
    """The UDP radio's receiver: `process`, `port`, `exit_event`, `shutdown()`."""


class UDPRouter:
    """Runs in the receiver process: the socket, bound on every interface at `port` (None: any
    free port), and the loop that checks datagrams and puts their messages on `resource_msgs`."""

    def __init__(self, *, port: int | None, hmac_key: bytes, hmac_digest: str, atexit_timeout: float,
                 resource_msgs: Queue) -> None:
        self.hmac_key = hmac_key
        self.hmac_digest = hmac_digest
        self.digest_size = hashlib.new(hmac_digest).digest_size
        self.atexit_timeout = atexit_timeout
        self.resource_msgs = resource_msgs
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM, socket.IPPROTO_UDP)
        try:
            self.sock.bind(("0.0.0.0", port or 0))
        except OSError as e:
            raise RuntimeError(f"Could not bind to udp_port {port}: {e}") from e
        self.port = self.sock.getsockname()[1]
        self.sock.settimeout(POLL_INTERVAL)
        logger.info("UDP radio receiver listening on 0.0.0.0:%d", self.port)

    def serve(self, exit_event) -> None:
        while not exit_event.is_set():
            self.receive_one()
        # Senders may still be reporting the end of their work: take datagrams until none came
        # for atexit_timeout s.
        logger.info("UDP radio receiver draining (atexit_timeout %s s)", self.atexit_timeout)
        quiet_since = time.monotonic()
        while time.monotonic() - quiet_since < self.atexit_timeout:
            if self.receive_one():
                quiet_since = time.monotonic()
        self.sock.close()

    def receive_one(self) -> bool:
        """Handles one datagram if one comes within POLL_INTERVAL; False if none came."""
        try:
            datagram, sender = self.sock.recvfrom(MAX_DATAGRAM)
        except socket.timeout:
            return False
        signature, data = datagram[:self.digest_size], datagram[self.digest_size:]
        # The HMAC is checked before unpickling: a pickle from anyone else could run code here.
        # Noise is logged (with its source, never its content) and the receiver goes on.
        if not hmac.compare_digest(signature, hmac.digest(self.hmac_key, data, self.hmac_digest)):
            logger.error("HMAC does not match on received message (from %s:%s, %d bytes)", *sender[:2], len(datagram))
            return True
        try:
            message = pickle.loads(data)
        except Exception:
            logger.error("Could not unpickle a signed message from %s:%s", *sender[:2], exc_info=True)
            return True
        logger.debug("Message from %s:%s: %s", *sender[:2], message)
        self.resource_msgs.put(message)
        return True


def start_udp_receiver(*, monitoring_messages: Queue, port: int | None, logdir: str, debug: bool,
                       atexit_timeout: int, hmac_key: bytes, hmac_digest: str) -> UDPRadioReceiver:
    """Starts the UDP receiver process (log: `logdir`/monitoring_udp_router.log) and returns once it
    listens; its `port` is the bound one."""
    return start_receiver_process(UDPRadioReceiver, UDPRouter, name="Monitoring-UDP-Router-Process",
                                  log_file=os.path.join(logdir, "monitoring_udp_router.log"),
                                  log_level=logging.DEBUG if debug else logging.INFO,
                                  port=port, hmac_key=hmac_key, hmac_digest=hmac_digest,
                                  atexit_timeout=atexit_timeout, resource_msgs=monitoring_messages)


__all__ = ["UDPRadioReceiver", "start_udp_receiver"]
