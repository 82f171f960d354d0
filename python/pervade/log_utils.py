"""Helpers that attach a log handler to one of pervade's loggers (Parsl's parsl.log_utils).

`set_stream_logger()` shows pervade's records on stderr (handy in a notebook);
`set_file_logger(path)` writes them to a file. Both return a callable that removes what they
added. The engine's own events reach these handlers as Python records only while the dataflow
logger is enabled for their level (docs/logging.md).
"""

from __future__ import annotations

import io
import logging
from typing import Callable, Optional

# Parsl's layout of a file log line; the engine's log file (pervade.log) uses the same one.
DEFAULT_FORMAT = (
    "%(created)f %(asctime)s %(processName)s-%(process)d "
    "%(threadName)s-%(thread)d %(name)s:%(lineno)d %(funcName)s %(levelname)s: "
    "%(message)s"
)
_STREAM_FORMAT = "%(asctime)s %(name)s:%(lineno)d [%(levelname)s]  %(message)s"
_DATE_FORMAT = "%Y-%m-%d %H:%M:%S"


def _attach(handler: logging.Handler, name: str, level: int, format_string: str) -> Callable[[], None]:
    # The caller asks for these records, so (as in Parsl) the named logger passes everything to
    # its handlers; the handler's level filters. concurrent.futures reports exceptions raised by
    # done-callbacks only through its logger, so those records go to the same handler.
    logger = logging.getLogger(name)
    logger.setLevel(logging.DEBUG)
    handler.setLevel(level)
    handler.setFormatter(logging.Formatter(format_string, datefmt=_DATE_FORMAT))
    logger.addHandler(handler)
    futures_logger = logging.getLogger("concurrent.futures")
    futures_logger.addHandler(handler)

    def unregister_callback() -> None:
        logger.removeHandler(handler)
        futures_logger.removeHandler(handler)
        handler.close()

    return unregister_callback


def set_stream_logger(name: str = "pervade", level: int = logging.DEBUG, format_string: Optional[str] = None,
                      stream: Optional[io.TextIOBase] = None) -> Callable[[], None]:
    """Adds a stream handler (default stream: stderr) to logger `name`; returns a callable that
    removes it.

    >>> remove = pervade.set_stream_logger(level=logging.INFO)
    """
    return _attach(logging.StreamHandler(stream), name, level, format_string or _STREAM_FORMAT)


def set_file_logger(filename: str, name: str = "pervade", level: int = logging.DEBUG,
                    format_string: Optional[str] = None) -> Callable[[], None]:
    """Adds a handler writing to `filename` (appending) to logger `name`; returns a callable that
    removes and closes it.

    >>> remove = pervade.set_file_logger("my.log")
    """
    return _attach(logging.FileHandler(filename), name, level, format_string or DEFAULT_FORMAT)
