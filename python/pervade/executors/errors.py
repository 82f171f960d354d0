"""Parsl's parsl.executors.errors: the executors' exceptions (defined in pervade.errors)."""

from ..errors import (BadMessage, BadStateException, ExecutorError, InvalidResourceSpecification, ScalingFailed,
                      UnsupportedFeatureError)

__all__ = ["BadMessage", "BadStateException", "ExecutorError", "InvalidResourceSpecification", "ScalingFailed",
           "UnsupportedFeatureError"]
