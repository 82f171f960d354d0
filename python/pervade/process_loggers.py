"""Parsl's parsl.process_loggers: wrap_with_logs, for the top-level function of a thread or
process, whose exceptions would otherwise reach no log."""

from __future__ import annotations

import functools
import logging
import threading
from typing import Callable


def wrap_with_logs(fn: Callable | None = None, target: str = __name__) -> Callable:
    """Decorator: logs to the logger named `target` how each call of the function ended —
    "Normal ending for <name> on thread <thread>" at DEBUG, or "Exceptional ending ..." at ERROR
    with the traceback — and passes the result or the exception on.

    >>> @wrap_with_logs
    ... def main_loop(): ...
    >>> @wrap_with_logs(target="myapp.worker")
    ... def worker(): ...
    """

    def decorate(func: Callable) -> Callable:
        @functools.wraps(func)
        def wrapped(*args, **kwargs):
            where = f"{func.__name__} on thread {threading.current_thread().name}"
            logger = logging.getLogger(target)
            try:
                result = func(*args, **kwargs)
            except Exception:
                logger.error("Exceptional ending for %s", where, exc_info=True)
                raise
            logger.debug("Normal ending for %s", where)
            return result

        return wrapped

    return decorate(fn) if fn is not None else decorate


__all__ = ["wrap_with_logs"]
