"""Parsl's parsl.serialize.base: the interface of a serializer for `pervade.serialize.serialize`
(docs/python.md, "Serializing objects")."""

from __future__ import annotations

from abc import abstractmethod
from functools import cached_property
from typing import Any


class SerializerBase:
    """A serializer for `serialize()` / `deserialize()`: bytes tagged with `identifier`.

    The identifier starts each payload (before a newline), so it must not contain b"\\n". By
    default it is b"<module> <class>", which lets `deserialize()` in another process import the
    class from the payload alone; a serializer may set a shorter fixed one (b"01")."""

    @cached_property
    def identifier(self) -> bytes:
        cls = type(self)
        return f"{cls.__module__} {cls.__name__}".encode()

    @abstractmethod
    def serialize(self, data: Any) -> bytes:
        ...

    @abstractmethod
    def deserialize(self, body: bytes) -> Any:
        ...


__all__ = ["SerializerBase"]
