"""Parsl's parsl.data_provider.file_noop: local files need no staging."""

from __future__ import annotations

from ..utils import RepresentationMixin
from .staging import Staging


class NoOpFileStaging(Staging, RepresentationMixin):
    """Claims file: URLs (and plain paths) and does nothing: the task reads and writes them where
    they are (a shared file system, or the same machine)."""

    def can_stage_in(self, file) -> bool:
        return file.scheme == "file"

    def can_stage_out(self, file) -> bool:
        return file.scheme == "file"


__all__ = ["NoOpFileStaging"]
