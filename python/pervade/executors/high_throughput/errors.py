"""Parsl's parsl.executors.high_throughput.errors: what a task of a HighThroughputExecutor
fails with when its pool (Parsl's manager) or its worker is lost (defined in pervade.errors)."""

from ...errors import ManagerLost, WorkerLost

__all__ = ["ManagerLost", "WorkerLost"]
