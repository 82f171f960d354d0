"""Parsl's parsl.serialize.errors: what a call that cannot be serialized fails with."""

from ..errors import ParslError


class SerializationError(ParslError, TypeError):
    """A function or its arguments cannot be pickled to go to a worker; the future of the call
    fails with this (as in Parsl). Also a TypeError, which pervade raised before."""

    def __init__(self, fname: str, reason: str = ""):  # reason: what failed, naming fname
        super().__init__(fname, reason)
        self.fname = fname
        self.reason = reason

    def __str__(self) -> str:
        return self.reason or f"Failed to serialize objects for an invocation of function {self.fname}"


__all__ = ["SerializationError"]
