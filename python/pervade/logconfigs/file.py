"""FileLogging: the run's log in a file, <log_dir>/<log_name>.log (Parsl's layout)."""

from __future__ import annotations

import logging
import pathlib
from typing import Callable

from ..log_utils import DEFAULT_FORMAT
from ..logging_engine import engine_log
from .base import LogConfig


class FileLogging(LogConfig):
    """Writes the engine's events and pervade's Python records at `level` or above to
    <run_dir>/pervade.log; Python records are formatted with `format_string`.

    >>> Config(initialize_logging=FileLogging(level=logging.INFO))
    """

    def __init__(self, *, format_string: str = DEFAULT_FORMAT, level: int = logging.DEBUG):
        super().__init__()
        self.format_string = format_string
        self.level = level

    def initialize_logging(self, *, log_dir: pathlib.Path, log_name: str) -> Callable[[], None]:
        return engine_log(self, pathlib.Path(log_dir) / (log_name + ".log"), json_lines=False,
                          formatter=logging.Formatter(self.format_string, datefmt="%Y-%m-%d %H:%M:%S"),
                          loggers=("pervade", "concurrent.futures"))
