"""Parsl's parsl.data_provider.files: File (defined in pervade.data)."""

from ..data import File

__all__ = ["File"]
