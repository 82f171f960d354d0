"""Parsl's parsl.data_provider.ftp: ftp URLs staged in as a task of their own, or inside the task
that reads them (anonymous login unless the URL carries user:password@)."""

from __future__ import annotations

from .http import _InTask, _SeparateTask


class FTPSeparateTaskStaging(_SeparateTask):
    """ftp URLs, each fetched by a stage-in task of its own (shared file system)."""

    schemes = ("ftp",)


class FTPInTaskStaging(_InTask):
    """ftp URLs, fetched by the task that reads them."""

    schemes = ("ftp",)


__all__ = ["FTPSeparateTaskStaging", "FTPInTaskStaging"]
