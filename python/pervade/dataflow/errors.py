"""Parsl's parsl.dataflow.errors (the classes are defined in pervade.errors)."""

from ..errors import BadCheckpoint, DataFlowException, DependencyError, JoinError, PropagatedException

__all__ = ["BadCheckpoint", "DataFlowException", "DependencyError", "JoinError", "PropagatedException"]
