"""Parsl's parsl.executors.high_throughput.executor (the class is defined in pervade.executors)."""

from .. import HighThroughputExecutor

__all__ = ["HighThroughputExecutor"]
