"""Parsl's parsl.serialize.errors: what a call that cannot be serialized fails with, and what
`deserialize()` raises."""

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


class DeserializationError(ParslError):
    """Something could not be deserialized; reason says what."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason

    def __str__(self) -> str:
        return f"Failed to deserialize objects. Reason: {self.reason}"


class DeserializerPluginError(ParslError):
    """`deserialize()` found no serializer for the payload's header (not registered, not one of
    Parsl's, and not an importable b"<module> <class>")."""

    def __init__(self, header: bytes) -> None:
        super().__init__(header)
        self.header = header

    def __str__(self) -> str:
        return f"Failed to load deserializer plugin for header {self.header!r}"


__all__ = ["SerializationError", "DeserializationError", "DeserializerPluginError"]
