"""Parsl's parsl.executors.base: the executors' base class (defined in pervade.executors)."""

from . import ParslExecutor

__all__ = ["ParslExecutor"]
