"""The engine's log seen from Python (docs/logging.md).

The engine reports its events to a C++ LogObserver, which writes them to the run's log file on
its own thread. Python records of pervade's loggers join that file through `ToEngineLog`, so one
writer keeps every line in order. The other way round, when a Python handler wants the engine's
records (the dataflow logger is enabled for their level), the observer hands them over in
batches on its writer thread and `forward` makes them real LogRecords with Parsl's extras.
"""

from __future__ import annotations

import logging
import pathlib
from typing import Callable, Iterable

from . import _native

DATAFLOW_LOGGER = "pervade.dataflow.dflow"  # task and workflow records
EXECUTORS_LOGGER = "pervade.executors"      # block and pool records
_NUMBERS = ("parsl.task", "parsl.try_id", "parsl.dependency_task")
_OFF = 1000  # above every level: the observer records nothing for Python


class ToEngineLog(logging.Handler):
    """Python records into the engine's log file, formatted here, written by the engine."""

    def __init__(self, observer, level: int, formatter: logging.Formatter):
        super().__init__(level)
        self.setFormatter(formatter)
        self._observer = observer

    def emit(self, record: logging.LogRecord) -> None:
        if getattr(record, "pervade_engine", False):
            return  # forwarded from the engine, which has written it already
        try:
            self._observer.write_line(self.format(record))
        except Exception:  # noqa: BLE001 - logging's own error report
            self.handleError(record)


def forward_level() -> int:
    """The lowest level the engine's loggers are enabled for now (_OFF when none): the engine
    hands Python its records at that level and above."""
    loggers = (logging.getLogger(DATAFLOW_LOGGER), logging.getLogger(EXECUTORS_LOGGER))
    for level in (logging.DEBUG, logging.INFO, logging.WARNING, logging.ERROR):
        if any(lg.isEnabledFor(level) for lg in loggers):
            return level
    return _OFF


def forward(batch) -> None:
    """On the observer's writer thread (GIL held): each engine record becomes a LogRecord of its
    logger, with Parsl's extras as attributes ("parsl.task", ...)."""
    for created, level, name, function, message, extras in batch:
        lg = logging.getLogger(name)
        if not lg.isEnabledFor(level):
            continue
        for key in _NUMBERS:  # ids are ints in Parsl's records
            if key in extras:
                extras[key] = int(extras[key])
        record = lg.makeRecord(name, level, "(engine)", 0, message, None, None, function, extras)
        record.created = created
        record.msecs = (created - int(created)) * 1000
        record.threadName, record.thread = "engine", 0
        record.pervade_engine = True
        lg.handle(record)


def _observer(path: str, json_lines: bool, level: int):
    fwd = forward_level()
    return _native.LogObserver(path, json_lines, level, fwd, forward if fwd < _OFF else None)


def engine_log(config, path: pathlib.Path, *, json_lines: bool, formatter: logging.Formatter,
               loggers: Iterable[str]) -> Callable[[], None]:
    """For FileLogging and JSONLogging: the engine writes `path` at config.level; Python records
    of `loggers` at that level join it. Sets config.engine_observer; returns the undo."""
    path.parent.mkdir(parents=True, exist_ok=True)
    # Parsl's name for the same file (parsl.log, parsl.jsonlog): Parsl users' habits, scripts
    # and tests look for it in run_dir/NNN.
    alias = path.with_name("parsl" + path.suffix)
    if alias != path and not alias.exists() and not alias.is_symlink():
        try:
            alias.symlink_to(path.name)
        except OSError:  # a file system without symbolic links: the log keeps its own name only
            pass
    observer = _observer(str(path), json_lines, config.level)
    handler = ToEngineLog(observer, config.level, formatter)
    loggers = tuple(loggers)
    for name in loggers:
        logging.getLogger(name).addHandler(handler)
    config.engine_observer = observer

    def undo() -> None:
        for name in loggers:
            logging.getLogger(name).removeHandler(handler)
        config.engine_observer = None
        observer.stop()

    return undo


def forwarding_observer():
    """An observer without a file that only forwards engine records to Python handlers, or None
    when no engine logger is enabled."""
    return _observer("", False, _OFF) if forward_level() < _OFF else None
