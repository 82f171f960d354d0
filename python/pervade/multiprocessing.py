"""Parsl's parsl.multiprocessing: multiprocessing contexts fixed to one start method, and a helper
that makes sure a child process ends.

The monitoring radios' receivers (pervade.monitoring.radios) run in `spawn` processes: a fresh
interpreter inherits no threads or locks from the driver (the engine's threads among them), which
`fork` would copy in whatever state they were.

>>> from pervade.multiprocessing import SpawnProcess, join_terminate_close_proc
>>> p = SpawnProcess(target=print, args=("hello",))
>>> p.start()
>>> join_terminate_close_proc(p, timeout=5)
"""

from __future__ import annotations

import logging
import multiprocessing
from multiprocessing.context import ForkProcess as ForkProcessType
from multiprocessing.context import SpawnProcess as SpawnProcessType
from typing import Callable

logger = logging.getLogger(__name__)

ForkContext = multiprocessing.get_context("fork")
SpawnContext = multiprocessing.get_context("spawn")

ForkProcess: Callable[..., ForkProcessType] = ForkContext.Process
SpawnProcess: Callable[..., SpawnProcessType] = SpawnContext.Process
SpawnEvent = SpawnContext.Event
SpawnQueue = SpawnContext.Queue


def join_terminate_close_proc(process: multiprocessing.process.BaseProcess, *, timeout: float = 30) -> None:
    """Waits up to `timeout` s for `process` to end by itself, then sends it SIGTERM and waits
    `timeout` s more, then SIGKILL and waits again; closes it once it has ended (its `exitcode`
    and other attributes then raise ValueError). At most 3 × `timeout` s; a process that
    survives even SIGKILL (stuck in the kernel) is logged and left open.

    >>> join_terminate_close_proc(receiver_process, timeout=10)
    """
    process.join(timeout)
    for signal_name, send in (("SIGTERM", process.terminate), ("SIGKILL", process.kill)):
        if not process.is_alive():
            break
        logger.error("Process %s (pid %s) did not end within %s s: sending %s", process.name, process.pid,
                     timeout, signal_name)
        send()
        process.join(timeout)
    if process.is_alive():
        logger.error("Process %s (pid %s) did not end even after SIGKILL; not closing it", process.name, process.pid)
        return
    process.close()


__all__ = ["ForkContext", "SpawnContext", "ForkProcess", "SpawnProcess", "SpawnEvent", "SpawnQueue",
           "join_terminate_close_proc"]
