"""NoopLogging: sets up nothing (no log file); records still go to whatever handlers exist."""

from __future__ import annotations

import pathlib
from typing import Callable

from .base import LogConfig


class NoopLogging(LogConfig):
    """No logging configuration at all: for benchmarks, or when the application configures
    logging itself."""

    def initialize_logging(self, *, log_dir: pathlib.Path, log_name: str) -> Callable[[], None]:
        return lambda: None
