"""JSONLogging: the run's log as JSON objects, one a line, in <log_dir>/<log_name>.jsonlog."""

from __future__ import annotations

import json
import logging
import pathlib
from typing import Callable

from ..logging_engine import engine_log
from .base import LogConfig


class JSONFormatter(logging.Formatter):
    """A record as Parsl's JSONLogging writes it: its fields and every parsl.* extra (as text)."""

    def format(self, record: logging.LogRecord) -> str:
        d = {"created": record.created, "process": record.process, "processName": record.processName,
             "threadName": record.threadName, "thread": record.thread, "name": record.name,
             "lineno": record.lineno, "funcname": record.funcName, "levelname": record.levelname,
             "msg": str(record.msg), "formatted": record.getMessage()}
        for key, value in record.__dict__.items():
            if key.startswith("parsl."):
                try:
                    d[key] = str(value)
                except Exception as e:  # noqa: BLE001 - shown instead of the value
                    d[key] = f"UNREPRESENTABLE: {e!r}"
        return json.dumps(d)


class JSONLogging(LogConfig):
    """Writes the engine's events and every Python record (all loggers, as Parsl's does) at
    `level` or above to <run_dir>/pervade.jsonlog, one JSON object a line.

    >>> Config(initialize_logging=JSONLogging(level=logging.DEBUG))
    """

    def __init__(self, *, level: int = logging.DEBUG):
        super().__init__()
        self.level = level

    def initialize_logging(self, *, log_dir: pathlib.Path, log_name: str) -> Callable[[], None]:
        return engine_log(self, pathlib.Path(log_dir) / (log_name + ".jsonlog"), json_lines=True,
                          formatter=JSONFormatter(), loggers=("",))
