"""Parsl's parsl.data_provider.http: http and https URLs staged in as a task of their own, or
inside the task that reads them."""

from __future__ import annotations

from ..utils import RepresentationMixin
from .staging import Staging
from .transfer import fetch_task, in_task, local_path_for


class _UrlStaging(Staging, RepresentationMixin):
    """Stage-in of the URLs of `schemes` to <working_dir>/<file name> (or <file name> in the
    task's directory). timeout: seconds without progress before a transfer fails (pervade only)."""

    schemes: tuple = ()

    def __init__(self, timeout: float | None = None):
        self.timeout = timeout

    def can_stage_in(self, file) -> bool:
        return file.scheme in self.schemes

    def _set_local_path(self, dm, executor, file):
        working_dir = dm.working_dir(executor)
        file.local_path = local_path_for(file, working_dir)
        return working_dir


class _SeparateTask(_UrlStaging):
    """A stage-in task on the same executor, which the task waits for: the executor's workers
    must share a file system (or the working_dir) with the ones that run the task."""

    def stage_in(self, dm, executor, file, parent_fut):
        working_dir = self._set_local_path(dm, executor, file)
        stage_in_app = dm.staging_app(fetch_task, executor)
        app_fut = stage_in_app(working_dir, self.timeout, outputs=[file], _parsl_staging_inhibit=True,
                               parent_fut=parent_fut)
        return app_fut.outputs[0]


class _InTask(_UrlStaging):
    """The task itself fetches the file before its function runs: no shared file system needed."""

    def stage_in(self, dm, executor, file, parent_fut):
        self._set_local_path(dm, executor, file)
        return None

    def replace_task(self, dm, executor, file, func):
        return in_task(func, file, self.timeout)


class HTTPSeparateTaskStaging(_SeparateTask):
    """http and https URLs, each fetched by a stage-in task of its own (shared file system)."""

    schemes = ("http", "https")


class HTTPInTaskStaging(_InTask):
    """http and https URLs, fetched by the task that reads them."""

    schemes = ("http", "https")


__all__ = ["HTTPSeparateTaskStaging", "HTTPInTaskStaging"]
