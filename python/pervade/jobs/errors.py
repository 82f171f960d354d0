"""Parsl's parsl.jobs.errors: the error the block error handlers fail an executor with."""

from ..errors import ParslError


class TooManyJobFailuresError(ParslError):
    """An executor's blocks failed too often (a block error handler gave up on it)."""


__all__ = ["TooManyJobFailuresError"]
