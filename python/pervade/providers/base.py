"""Parsl's parsl.providers.base: the providers' base class (defined in pervade.providers)."""

from . import ExecutionProvider

__all__ = ["ExecutionProvider"]
