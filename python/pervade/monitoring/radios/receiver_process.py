"""The receivers that run in a process of their own (UDP, ZeroMQ, filesystem radios): starting
the process, waiting until it is ready, stopping it."""

from __future__ import annotations

import logging
import os
import queue
import time

from ...log_utils import set_file_logger
from ...multiprocessing import SpawnEvent, SpawnProcess, SpawnQueue, join_terminate_close_proc
from ..errors import MonitoringRouterStartError
from .base import MonitoringRadioReceiver

logger = logging.getLogger(__name__)

# How long a receiver process may take to start (a fresh interpreter importing pervade) and open
# its socket before start_receiver_process gives up.
READY_TIMEOUT = 120.0


class ProcessRadioReceiver(MonitoringRadioReceiver):
    """A receiver running in `process` (a SpawnProcess), listening on `port` (None: no port).
    Setting `exit_event` asks it to stop; `shutdown()` sets it and waits for the process to end
    (then SIGTERM, SIGKILL), after which `process` is closed. Called from the thread that made it."""

    def __init__(self, *, process, exit_event, port: int | None) -> None:
        self.process = process
        self.exit_event = exit_event
        self.port = port

    def shutdown(self) -> None:
        self.exit_event.set()
        join_terminate_close_proc(self.process)


def _receiver_main(router_class, ready, exit_event, log_file: str, log_level: int, kwargs: dict) -> None:
    """The receiver process: opens the router (`router_class(**kwargs)`: its socket or
    directory), reports ready with its port, or the error, then serves until `exit_event`."""
    os.makedirs(os.path.dirname(log_file) or ".", exist_ok=True)
    set_file_logger(log_file, level=log_level)
    try:
        router = router_class(**kwargs)
    except Exception as e:
        logger.error("%s could not start", router_class.__name__, exc_info=True)
        ready.put(("failed", f"{type(e).__name__}: {e}"))
        return
    ready.put(("ready", router.port))
    logger.info("%s serving (port %s)", router_class.__name__, router.port)
    try:
        router.serve(exit_event)
    except Exception:
        logger.error("%s failed", router_class.__name__, exc_info=True)
        raise
    logger.info("%s finished", router_class.__name__)


def start_receiver_process(receiver_class, router_class, *, name: str, log_file: str, log_level: int,
                           **kwargs) -> ProcessRadioReceiver:
    """Starts `router_class(**kwargs)` in a new spawn process (logging to `log_file`) and returns
    `receiver_class(process=..., exit_event=..., port=...)` once it is ready. A router that cannot
    start raises RuntimeError with its error; a process that ends first, or is not ready after
    READY_TIMEOUT s, MonitoringRouterStartError. Either way no process is left."""
    ready = SpawnQueue(maxsize=1)
    exit_event = SpawnEvent()
    process = SpawnProcess(target=_receiver_main, name=name, daemon=True,
                           args=(router_class, ready, exit_event, log_file, log_level, kwargs))
    process.start()
    try:
        status, detail = _wait_ready(ready, process)
    except BaseException:
        exit_event.set()
        join_terminate_close_proc(process, timeout=5)
        raise
    finally:
        ready.close()
        ready.join_thread()
    if status == "failed":
        join_terminate_close_proc(process, timeout=5)
        raise RuntimeError(f"{name} failed to start: {detail} (log: {log_file})")
    logger.debug("%s ready, pid %s, port %s", name, process.pid, detail)
    return receiver_class(process=process, exit_event=exit_event, port=detail)


def _wait_ready(ready, process) -> tuple:
    deadline = time.monotonic() + READY_TIMEOUT
    while True:
        # A process that ended reported whatever it could before: one last look at the queue.
        alive = process.is_alive()
        try:
            return ready.get(timeout=0.5 if alive else 0.1)
        except queue.Empty:
            pass
        if not alive:
            raise MonitoringRouterStartError(f"{process.name} ended with exit code {process.exitcode} "
                                             "before it was ready")
        if time.monotonic() > deadline:
            raise MonitoringRouterStartError(f"{process.name} was not ready after {READY_TIMEOUT:g} s")
