"""Transfers for the staging providers: atomic (temporary name, then rename), verified against
the File's checksum, every failure a StagingError naming the URL. URLs go through the C++
transfer engine (src/staging/transfer.cpp, libcurl); zip members through PartFile.

Who calls it: staging tasks and staging wrappers, on whichever worker thread runs the task.
"""

from __future__ import annotations

import functools
import hashlib
import logging
import os
import tempfile

from .. import _native
from ..errors import ParslError

logger = logging.getLogger(__name__)

DEFAULT_TIMEOUT = 60.0  # seconds without progress (connect, or between reads) before a transfer fails
PROGRESS_INTERVAL = 10.0  # seconds between the log lines of a long transfer


class StagingError(ParslError):
    """A File could not be staged: `url` and `reason` say which and why."""

    def __init__(self, url: str, reason: str):
        super().__init__(url, reason)
        self.url = url
        self.reason = reason

    def __str__(self) -> str:
        return f"staging {self.url} failed: {self.reason}"


def local_path_for(file, working_dir, name=None) -> str:
    """Where a provider puts a staged file: `name` (default the URL's file name) under the
    executor's working_dir, or relative to the task's current directory without one (as Parsl)."""
    name = file.filename if name is None else name
    return os.path.join(working_dir, name) if working_dir else name


class PartFile:
    """A file being written under a temporary name beside its final one; `commit` renames it
    into place, anything else removes it (a failed or killed transfer never leaves a file under
    the final name)."""

    def __init__(self, url: str, path: str):
        self.url, self.path = url, path
        directory = os.path.dirname(path) or "."
        try:
            os.makedirs(directory, exist_ok=True)
            fd, self.temp = tempfile.mkstemp(prefix=f".{os.path.basename(path)}.", suffix=".part", dir=directory)
        except OSError as e:
            raise StagingError(url, f"cannot write {path}: {e}") from e
        self.out = os.fdopen(fd, "wb")
        self.sha256 = hashlib.sha256()

    def write(self, data) -> None:
        self.out.write(data)
        self.sha256.update(data)

    def commit(self, checksum) -> None:
        self.out.close()
        if checksum is not None:
            got = "sha256:" + self.sha256.hexdigest()
            if got != checksum:
                raise StagingError(self.url, f"checksum mismatch: expected {checksum}, received {got}")
        os.replace(self.temp, self.path)

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb):
        if exc_type is not None:
            self.out.close()
            try:
                os.unlink(self.temp)
            except FileNotFoundError:
                pass
        return False


def node_cache_settings() -> tuple:
    """(cache directory or "" for none, its limit in bytes, transfers at once) on this node, from
    PERVADE_STAGING_CACHE (default <tmp>/pervade-staging-<uid>; "off": no cache),
    PERVADE_STAGING_CACHE_GB (default 10) and PERVADE_STAGING_PARALLEL (default 4)."""
    cache = os.environ.get("PERVADE_STAGING_CACHE")
    if cache is None:
        cache = os.path.join(tempfile.gettempdir(), f"pervade-staging-{os.getuid()}")
    elif cache.lower() in ("", "off", "none", "0"):
        cache = ""
    try:
        limit = int(float(os.environ.get("PERVADE_STAGING_CACHE_GB", "10")) * 2**30)
        parallel = int(os.environ.get("PERVADE_STAGING_PARALLEL", "4"))
    except ValueError as e:
        raise ValueError(f"PERVADE_STAGING_CACHE_GB / PERVADE_STAGING_PARALLEL must be numbers: {e}") from None
    return os.path.abspath(cache) if cache else "", max(0, limit), max(1, parallel)


def fetch(url: str, path: str, checksum: str | None = None, timeout: float | None = None) -> None:
    """Downloads an http, https or ftp URL to `path` with the C++ transfer engine, without the GIL
    (include/pervade/staging.hpp): atomic, verified against `checksum`, through this node's cache
    (one transfer per URL and version per node). HTTPS verifies the server against the system's
    trust store ($SSL_CERT_FILE / $SSL_CERT_DIR replace it)."""
    cache_dir, cache_limit, parallel = node_cache_settings()
    ok, error, from_cache, size, _ = _native.staging_fetch(
        url, os.path.abspath(path), checksum or "", DEFAULT_TIMEOUT if timeout is None else float(timeout),
        cache_dir, cache_limit, parallel, PROGRESS_INTERVAL, logger.info)
    if not ok:
        raise StagingError(url, error)
    logger.debug("staged %s to %s (%d bytes%s)", url, path, size, ", from the node cache" if from_cache else "")


def fetch_task(working_dir, timeout=None, parent_fut=None, outputs=(), _parsl_staging_inhibit=True):
    """The body of a separate stage-in task: fetches outputs[0] to its local_path."""
    file = outputs[0]
    fetch(file.url, file.local_path, file.checksum, timeout)


def fetch_then_run(func, file, timeout, /, *args, **kwargs):
    """The body of a task staged in-task: fetches `file`, then runs the task's own function."""
    fetch(file.url, file.local_path, file.checksum, timeout)
    return func(*args, **kwargs)


def in_task(func, file, timeout):
    """`func` wrapped to fetch `file` first (a partial: pickled by reference, not by value)."""
    return functools.update_wrapper(functools.partial(fetch_then_run, func, file, timeout), func)
