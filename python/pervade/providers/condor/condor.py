"""Parsl's parsl.providers.condor.condor: CondorProvider (defined in pervade.providers)."""

from .. import CondorProvider

__all__ = ["CondorProvider"]
