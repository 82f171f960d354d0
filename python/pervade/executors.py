"""Executors, configured as in Parsl. Each one is backed by a C++ executor of the engine."""

from __future__ import annotations

import os

from . import _native
from .errors import ConfigurationError


class ParslExecutor:
    """Base class: an executor has a unique `label` and is started by a DataFlowKernel."""

    label: str = "undefined"
    run_dir: str = "."

    def _native_executor(self):  # pragma: no cover - abstract
        raise NotImplementedError

    def shutdown(self) -> None:
        """The kernel shuts its executors down in cleanup(); nothing to do by hand."""


class ThreadPoolExecutor(ParslExecutor):
    """Runs apps on threads of this process.

    >>> ThreadPoolExecutor(max_threads=4, label="local")

    Python code holds the GIL while it runs, so threads help apps that wait (I/O, sleep,
    subprocesses, bash apps) or release the GIL (NumPy). `thread_name_prefix`,
    `storage_access` and `working_dir` are accepted for Parsl compatibility and stored.
    """

    def __init__(self, label: str = "threads", max_threads: int | None = 2, thread_name_prefix: str | None = None,
                 storage_access=None, working_dir: str | None = None, remote_monitoring_radio=None):
        if not isinstance(label, str) or not label:
            raise ConfigurationError(f"ThreadPoolExecutor label must be a non-empty str, got {label!r}")
        if max_threads is None:
            max_threads = min(32, (os.cpu_count() or 1) + 4)  # concurrent.futures' default
        if not isinstance(max_threads, int) or isinstance(max_threads, bool) or max_threads < 1:
            raise ConfigurationError(f"ThreadPoolExecutor max_threads must be an int >= 1, got {max_threads!r}")
        self.label = label
        self.max_threads = max_threads
        self.thread_name_prefix = thread_name_prefix or f"ThreadPoolExecutor-{label}"
        self.storage_access = storage_access
        self.working_dir = working_dir
        self.remote_monitoring_radio = remote_monitoring_radio

    def _native_executor(self):
        return _native.thread_pool_executor(self.max_threads, self.label)

    def __repr__(self) -> str:
        return f"ThreadPoolExecutor(label={self.label!r}, max_threads={self.max_threads})"
