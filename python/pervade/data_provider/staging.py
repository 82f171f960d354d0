"""Parsl's parsl.data_provider.staging: the base class of staging providers (user plug-ins too)."""

from __future__ import annotations

from concurrent.futures import Future
from typing import TYPE_CHECKING, Callable, Optional

from ..data import DataFuture, File

if TYPE_CHECKING:
    from .data_manager import DataManager


class Staging:
    """A staging provider: moves the Files of a task between where they live and where it runs.

    For each File (or DataFuture) among a task's arguments, its `inputs=`, and each File of its
    `outputs=`/`stdout=`/`stderr=`, the executor's `storage_access` list (default_staging when
    None) is searched in order; the first provider whose can_stage_in (can_stage_out) says yes
    handles it, with a fresh copy of the File that it may change (typically `local_path`).

    A provider adds tasks to the graph (stage_in returns a DataFuture the task then waits for;
    stage_out returns a Future its output's DataFuture waits for), wraps the task's function
    (replace_task / replace_task_stage_out), or both. This base class handles no file.
    """

    def can_stage_in(self, file: File) -> bool:
        """True if this provider stages `file` in (usually decided by its URL scheme)."""
        return False

    def can_stage_out(self, file: File) -> bool:
        """True if this provider stages `file` out."""
        return False

    def stage_in(self, dm: "DataManager", executor: str, file: File,
                 parent_fut: Optional[Future]) -> Optional[DataFuture]:
        """Called at submission. Returns a DataFuture (of a stage-in task, say) that replaces the
        argument and that the task waits for, or None: the argument becomes `file` itself (or a
        DataFuture of it completing with `parent_fut`, when the argument was a DataFuture)."""
        return None

    def stage_out(self, dm: "DataManager", executor: str, file: File, app_fu: Future) -> Optional[Future]:
        """Called at submission, before the task runs: work that must follow the task depends on
        `app_fu`. Returns a Future that the output's DataFuture completes with, or None: the
        output's DataFuture then completes with the task."""
        return None

    def replace_task(self, dm: "DataManager", executor: str, file: File, func: Callable) -> Optional[Callable]:
        """For a file staged in: a function to run instead of `func` (usually `func` wrapped in
        staging code), or None to keep it."""
        return None

    def replace_task_stage_out(self, dm: "DataManager", executor: str, file: File,
                               func: Callable) -> Optional[Callable]:
        """As replace_task, for a file staged out."""
        return None


__all__ = ["Staging"]
