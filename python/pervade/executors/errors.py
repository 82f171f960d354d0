"""Parsl's parsl.executors.errors: the executors' exceptions (defined in pervade.errors)."""

from ..errors import BadStateException, ExecutorError, InvalidResourceSpecification

__all__ = ["BadStateException", "ExecutorError", "InvalidResourceSpecification"]
