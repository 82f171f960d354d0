"""Parsl's parsl.data_provider.globus: GlobusStaging is accepted in configs; transfers are not
implemented (docs/staging.md): a globus:// File fails at the call with a clear error."""

from __future__ import annotations

from ..utils import RepresentationMixin
from .staging import Staging


class GlobusStaging(Staging, RepresentationMixin):
    """globus://<endpoint>/<path> Files (Parsl's arguments). pervade cannot test Globus here, so
    it does not transfer: staging such a File raises NotImplementedError at the app call."""

    def __init__(self, endpoint_uuid: str, endpoint_path: str | None = None, local_path: str | None = None):
        self.endpoint_uuid = endpoint_uuid
        self.endpoint_path = endpoint_path
        self.local_path = local_path

    def can_stage_in(self, file) -> bool:
        return file.scheme == "globus"

    def can_stage_out(self, file) -> bool:
        return file.scheme == "globus"

    def _refuse(self, file):
        raise NotImplementedError(f"GlobusStaging cannot stage {file.url}: Globus transfers are not "
                                  "implemented in pervade (docs/staging.md)")

    def stage_in(self, dm, executor, file, parent_fut):
        self._refuse(file)

    def stage_out(self, dm, executor, file, app_fu):
        self._refuse(file)


__all__ = ["GlobusStaging"]
