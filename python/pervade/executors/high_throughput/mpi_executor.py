"""Parsl's parsl.executors.high_throughput.mpi_executor (the class is defined in pervade.executors)."""

from .. import MPIExecutor

__all__ = ["MPIExecutor"]
