"""Parsl's parsl.providers.local.local: LocalProvider (defined in pervade.providers)."""

from .. import LocalProvider

__all__ = ["LocalProvider"]
