"""Parsl's parsl.data_provider.rsync: local paths of the submit host, copied with rsync (over ssh)
to and from the node that runs the task."""

from __future__ import annotations

import functools
import logging
import os
import subprocess

from ..utils import RepresentationMixin
from .staging import Staging
from .transfer import StagingError, local_path_for

logger = logging.getLogger(__name__)


def _rsync(url: str, source: str, destination: str) -> None:
    """rsync source destination; a failure is a StagingError with rsync's own message. rsync
    writes to a temporary name and renames it when complete. The remote shell is rsync's: ssh,
    or $RSYNC_RSH (e.g. "ssh -i key -o ...")."""
    directory = os.path.dirname(destination)
    if directory and ":" not in destination:
        os.makedirs(directory, exist_ok=True)
    try:
        done = subprocess.run(["rsync", "--", source, destination], stdin=subprocess.DEVNULL,
                              capture_output=True, text=True)
    except OSError as e:
        raise StagingError(url, f"cannot run rsync: {e}") from e
    if done.returncode != 0:
        raise StagingError(url, f"rsync {source} {destination} exited with {done.returncode}: "
                                f"{done.stderr.strip()[-2000:]}")


def rsync_then_run(func, file, hostname, /, *args, **kwargs):
    _rsync(file.url, f"{hostname}:{file.path}", file.local_path)
    return func(*args, **kwargs)


def run_then_rsync(func, file, hostname, /, *args, **kwargs):
    result = func(*args, **kwargs)
    _rsync(file.url, file.local_path, f"{hostname}:{file.path}")
    return result


class RSyncStaging(Staging, RepresentationMixin):
    """Files named by paths of `hostname` (the submit side, an ssh server with rsync): the task's
    node copies each input from there before the task runs and each output back after it,
    to and from <working_dir>/<file name>. The nodes must log in to `hostname` without a
    password (keys; $RSYNC_RSH may give ssh its options)."""

    def __init__(self, hostname: str):
        self.hostname = hostname

    def can_stage_in(self, file) -> bool:
        return file.scheme == "file"

    def can_stage_out(self, file) -> bool:
        return file.scheme == "file"

    def _localize(self, dm, executor, file) -> None:
        file.path = os.path.abspath(file.path)  # rsync's remote side needs the absolute path
        file.local_path = local_path_for(file, dm.working_dir(executor))

    def stage_in(self, dm, executor, file, parent_fut):
        self._localize(dm, executor, file)
        return None

    def stage_out(self, dm, executor, file, app_fu):
        self._localize(dm, executor, file)
        return None

    def replace_task(self, dm, executor, file, func):
        return functools.update_wrapper(functools.partial(rsync_then_run, func, file, self.hostname), func)

    def replace_task_stage_out(self, dm, executor, file, func):
        return functools.update_wrapper(functools.partial(run_then_rsync, func, file, self.hostname), func)


__all__ = ["RSyncStaging"]
