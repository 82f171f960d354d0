"""Parsl's parsl.monitoring.radios.zmq_router: start_zmq_receiver, the receiver process of
ZMQRadioSender's messages.

Without a `cert_dir` anyone who can connect to the port can have the receiver unpickle what they
send (run code there): bind it to a loopback address, or give both ends a `cert_dir`.
"""

from __future__ import annotations

import logging
import os
from multiprocessing.queues import Queue
from typing import Optional, Tuple

import zmq

from ... import curvezmq
from .receiver_process import ProcessRadioReceiver, start_receiver_process
from .zmq import tcp_url

logger = logging.getLogger(__name__)

# The receiver checks for shutdown this often (ms) while no message comes.
POLL_INTERVAL_MS = 100


class ZMQRadioReceiver(ProcessRadioReceiver):
    """The receiver: `process`, `port`, `exit_event` and `shutdown()`; `close()` is Parsl's name
    for `shutdown()` on this class."""

    def close(self) -> None:
        self.shutdown()


class ZMQRouter:
    """Runs in the receiver process: a DEALER socket bound to `address` at a free port of
    `port_range`, whose (tag, payload) messages go to `resource_msgs`."""

    def __init__(self, *, address: str, port_range: Tuple[int, int], cert_dir: Optional[str],
                 resource_msgs: Queue) -> None:
        self.resource_msgs = resource_msgs
        self.context = curvezmq.ServerContext(cert_dir=cert_dir)
        self.sock = self.context.socket(zmq.DEALER)
        self.sock.setsockopt(zmq.LINGER, 0)
        self.sock.set_hwm(0)
        self.port = self.sock.bind_to_random_port(tcp_url(address), min_port=port_range[0], max_port=port_range[1])
        logger.info("ZMQ radio receiver bound to %s:%d%s", address, self.port,
                    " (CurveZMQ)" if self.context.encrypted else "")

    def serve(self, exit_event) -> None:
        while not exit_event.is_set():
            if not self.sock.poll(POLL_INTERVAL_MS):
                continue
            try:
                message = self.sock.recv_pyobj(zmq.NOBLOCK)
            except zmq.Again:
                continue
            except Exception:
                # Garbage on the port (anyone may connect) must not stop the receiver.
                logger.warning("Failure processing a ZMQ message", exc_info=True)
                continue
            if not (isinstance(message, tuple) and len(message) == 2):
                logger.warning("Dropped a ZMQ message that is not a (tag, payload) pair: %.200r", message)
                continue
            logger.debug("Message: %s", message)
            self.resource_msgs.put(message)
        self.sock.close()
        self.context.destroy()


def start_zmq_receiver(*, monitoring_messages: Queue, loopback_address: str, port_range: Tuple[int, int],
                       logdir: str, worker_debug: bool, cert_dir: Optional[str]) -> ZMQRadioReceiver:
    """Starts the receiver process (log: `logdir`/monitoring_zmq_router.log) and returns once it is
    bound; its `port` is the bound one."""
    return start_receiver_process(ZMQRadioReceiver, ZMQRouter, name="Monitoring-ZMQ-Router-Process",
                                  log_file=os.path.join(logdir, "monitoring_zmq_router.log"),
                                  log_level=logging.DEBUG if worker_debug else logging.INFO,
                                  address=loopback_address, port_range=tuple(port_range), cert_dir=cert_dir,
                                  resource_msgs=monitoring_messages)


__all__ = ["ZMQRadioReceiver", "start_zmq_receiver"]
