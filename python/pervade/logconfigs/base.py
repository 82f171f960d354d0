"""LogConfig: how a run sets up logging (Config(initialize_logging=LogConfig)), and the
reference counting that lets several kernels in one process share one configuration."""

from __future__ import annotations

import abc
import logging
import pathlib
import threading
import uuid
from typing import Callable

logger = logging.getLogger(__name__)


class LogConfig(abc.ABC):
    """Sets up logging in this process for a run; subclass it for your own policy.

    >>> class Quiet(LogConfig):
    ...     def initialize_logging(self, *, log_dir, log_name):
    ...         return lambda: None

    A configuration pervade knows how to write from the engine (FileLogging, JSONLogging) sets
    `engine_observer` while it is initialized: the kernel gives its events to it.
    """

    engine_observer = None

    def __init__(self) -> None:
        self.uuid = uuid.uuid4()

    @abc.abstractmethod
    def initialize_logging(self, *, log_dir: pathlib.Path, log_name: str) -> Callable[[], None]:
        """Sets up logging into log_dir (log_name: the component, "pervade" for the kernel) and
        returns a callable that undoes it."""


class _ConfigReference:
    """One initialized LogConfig: the callable that undoes it and how many users it has."""

    def __init__(self, uninit_callback: Callable[[], None]) -> None:
        self.uninit_callback = uninit_callback
        self.count = 1


# Per interpreter, as the logging module's own state is; keyed by LogConfig.uuid, so that copies
# of one configuration (pickled to another component and back) count as the same one. Parsl's
# names: its test suite and users' tools read them.
_initialized_log_contexts: dict[uuid.UUID, _ConfigReference] = {}
_initialized_log_context_lock = threading.Lock()


def oneshot_initialize_logging(*, log_config: LogConfig, log_dir: pathlib.Path, log_name: str) -> None:
    """Initializes log_config unless it (or a copy with its uuid) already is; then only counts
    one more user. The first initialization's log_dir and log_name hold until the last user
    uninitializes."""
    with _initialized_log_context_lock:
        entry = _initialized_log_contexts.get(log_config.uuid)
        if entry is not None:
            entry.count += 1
            logger.debug("%r already initialized, now with %d users", log_config, entry.count)
            return
        undo = log_config.initialize_logging(log_dir=log_dir, log_name=log_name)
        if not callable(undo):
            raise TypeError(f"{log_config!r}.initialize_logging must return a callable that undoes it, got {undo!r}")
        _initialized_log_contexts[log_config.uuid] = _ConfigReference(undo)
        logger.debug("initialized %r", log_config)


def oneshot_uninitialize_logging(*, log_config: LogConfig) -> None:
    """One user of log_config is done; the last one undoes its initialization."""
    with _initialized_log_context_lock:
        entry = _initialized_log_contexts.get(log_config.uuid)
        if entry is None:
            raise RuntimeError(f"{log_config!r} is not initialized (uninitialized more often than initialized?)")
        entry.count -= 1
        if entry.count > 0:
            return
        del _initialized_log_contexts[log_config.uuid]
        logger.debug("last user of %r is done", log_config)
        entry.uninit_callback()
