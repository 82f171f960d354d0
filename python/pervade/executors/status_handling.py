"""Parsl's parsl.executors.status_handling: BlockProviderExecutor (defined in pervade.executors)."""

from . import BlockProviderExecutor

__all__ = ["BlockProviderExecutor"]
