"""Helpers with Parsl's names in parsl.utils."""

from __future__ import annotations

import contextlib
import inspect
import logging
import os
import re
import signal
import subprocess
import threading
import time
from typing import Optional, Tuple

from .memoization import get_all_checkpoints, get_last_checkpoint

__all__ = ["RepresentationMixin", "Timer", "execute_wait", "get_all_checkpoints", "get_last_checkpoint", "get_version",
           "sanitize_dns_label_rfc1123", "sanitize_dns_subdomain_rfc1123", "time_limited_open",
           "wtime_to_minutes"]

logger = logging.getLogger(__name__)


class RepresentationMixin:
    """Gives a class a repr that reads like the call that made it: ``Foo(1, 'two', third=3)``.

    Every parameter of ``__init__`` is read back from the attribute of the same name (arguments
    without a default positionally, the others by keyword in name order). An attribute that is
    missing shows as ``<unrecorded>``, or raises AttributeError when the class attribute
    ``_validate_repr`` is true (Parsl's test suite turns that on to find such classes).
    """

    _validate_repr = False

    def __repr__(self) -> str:
        init = inspect.unwrap(type(self).__init__)
        positional, keywords = [], []
        for name, p in list(inspect.signature(init).parameters.items())[1:]:
            if p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
                continue
            if not hasattr(self, name) and self._validate_repr:
                raise AttributeError(f"class {type(self).__name__} uses {name} in the constructor, "
                                     "but does not define it as an attribute")
            value = getattr(self, name, "<unrecorded>")
            if p.default is p.empty and p.kind != p.KEYWORD_ONLY:
                positional.append(repr(value))
            else:
                keywords.append(f"{name}={value!r}")
        return f"{type(self).__name__}({', '.join(positional + sorted(keywords))})"


def get_version() -> str:
    """The version string workflows record with their results (Parsl's parsl.utils.get_version;
    pervade is installed, not run from a git work tree, so this is its VERSION)."""
    from .version import VERSION
    return VERSION


def wtime_to_minutes(time_string: str) -> int:
    """Whole minutes of a walltime "HH:MM:SS" (seconds are dropped, as in Parsl); site configs
    use it to size tasks to a block's walltime."""
    hours, minutes, _seconds = time_string.split(":")
    total = int(hours) * 60 + int(minutes)
    if total < 1:
        logger.warning("Time string '%s' parsed to %d minutes, less than 1", time_string, total)
    return total


@contextlib.contextmanager
def time_limited_open(path: str, mode: str, seconds: float = 1):
    """Opens `path`, waiting up to `seconds` for it to appear (a file a task is still writing
    on a shared file system); FileNotFoundError if it does not."""
    deadline = time.monotonic() + seconds
    while not os.path.exists(path) and time.monotonic() < deadline:
        time.sleep(0.05)
    with open(path, mode) as f:
        yield f


def execute_wait(cmd: str, walltime: Optional[float] = None) -> Tuple[int, str, str]:
    """Runs the shell command line `cmd` to completion: (exit code, stdout, stderr).

    >>> execute_wait("echo hi", 10)
    (0, 'hi\n', '')

    The command runs in a session (and process group) of its own. After `walltime` seconds
    (None: no limit) the whole group is killed and subprocess.TimeoutExpired raised; Parsl
    leaves the command running then, which would leave processes behind.
    """
    logger.debug("running %r", cmd)
    proc = subprocess.Popen(cmd, shell=True, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, start_new_session=True)
    try:
        out, err = proc.communicate(timeout=walltime)
    except BaseException:
        # Timeout or Ctrl-C: the command and whatever it started go; communicate() then
        # returns once their pipes close.
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        raise
    logger.debug("%r exited with %d", cmd, proc.returncode)
    return proc.returncode, out.decode("utf-8", "replace"), err.decode("utf-8", "replace")


def sanitize_dns_label_rfc1123(raw_string: str) -> str:
    """`raw_string` made a valid DNS label (RFC 1123: lower-case letters, digits and inner
    hyphens, at most 63 characters), e.g. for Kubernetes object names.

    >>> sanitize_dns_label_rfc1123("My_Job.1")
    'my-job-1'

    ValueError if nothing valid is left ("Sanitized DNS label is empty for input '...'").
    """
    label = re.sub(r"-{2,}", "-", re.sub(r"[^a-z0-9]", "-", raw_string.lower()))
    # Cut first, then strip: cutting may leave a hyphen at the end.
    label = label[:63].strip("-")
    if not label:
        raise ValueError(f"Sanitized DNS label is empty for input '{raw_string}'")
    return label


def sanitize_dns_subdomain_rfc1123(raw_string: str) -> str:
    """`raw_string` made a valid DNS subdomain (RFC 1123: dot-separated labels, each
    sanitized as by sanitize_dns_label_rfc1123, at most 253 characters in all).

    >>> sanitize_dns_subdomain_rfc1123("..Team.A_B..")
    'team.a-b'

    Empty parts between dots are dropped; a part with nothing valid in it raises ValueError, and
    so does an input with no part at all ("Sanitized DNS subdomain is empty for input '...'").
    """
    labels = [sanitize_dns_label_rfc1123(part) for part in raw_string.split(".") if part]
    subdomain = ".".join(labels)[:253].strip(".-")
    if not subdomain:
        raise ValueError(f"Sanitized DNS subdomain is empty for input '{raw_string}'")
    return subdomain


class Timer:
    """Calls `callback(*args)` at once and then every `interval` seconds on a daemon thread of
    its own until close() (Parsl's parsl.utils.Timer, which scripts use for periodic reports).
    A callback that raises is logged and called again at the next interval.

    >>> t = Timer(print, "tick", interval=60, name="report")  # prints "tick" now, then each minute
    >>> t.close()
    """

    def __init__(self, callback, *args, interval: float = 5, name: Optional[str] = None) -> None:
        self.interval = max(0, interval)
        self.cb_args = args
        self.callback = callback
        self._kill_event = threading.Event()
        thread_name = f"Timer-Thread-{id(self)}"
        self._thread = threading.Thread(target=self._run, name=f"{name}-{thread_name}" if name else thread_name,
                                        daemon=True)
        self._thread.start()

    def _run(self) -> None:
        self.make_callback()
        while not self._kill_event.wait(self.interval):
            self.make_callback()

    def make_callback(self) -> None:
        try:
            self.callback(*self.cb_args)
        except Exception:
            logger.error("Timer callback %r raised; it is called again at the next interval", self.callback,
                         exc_info=True)

    def close(self, timeout: Optional[float] = None) -> None:
        """Stops the calls and waits (up to `timeout` s) for the thread to end."""
        self._kill_event.set()
        self._thread.join(timeout=timeout)
