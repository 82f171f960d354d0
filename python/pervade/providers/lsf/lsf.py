"""Parsl's parsl.providers.lsf.lsf: LSFProvider (defined in pervade.providers)."""

from .. import LSFProvider

__all__ = ["LSFProvider"]
