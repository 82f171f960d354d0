"""Parsl's parsl.serialize.concretes: serializers for `serialize()` / `deserialize()`.

`PickleSerializer` (b"01"), `DillSerializer` (b"02") and `DillCallableSerializer` (b"C2") make
and read the bytes Parsl's do. pervade's default, `CloudPickleSerializer`, writes pickles too
(tagged b"01", read by `pickle.loads`, so Parsl's `PickleSerializer` reads them), made by
cloudpickle when plain pickle cannot make a usable one (lambdas, closures, what `__main__`
defines), as pervade ships tasks. dill is not one of pervade's dependencies: the Dill
serializers import it when first used.
"""

from __future__ import annotations

import functools
import pickle
from typing import Any

from .base import SerializerBase
from .pickling import dumps


class PickleSerializer(SerializerBase):
    """Plain pickle: what pickle can name (not lambdas, closures, classes local to a function)."""

    identifier = b"01"

    def serialize(self, data: Any) -> bytes:
        return pickle.dumps(data)

    def deserialize(self, body: bytes) -> Any:
        return pickle.loads(body)


class CloudPickleSerializer(PickleSerializer):
    """pervade's default for data and code: plain pickle, or cloudpickle (by value) for what
    pickle cannot do or would name in `__main__`. The bytes are a pickle either way, read as
    PickleSerializer reads them."""

    def serialize(self, data: Any) -> bytes:
        return dumps(data)


def _dill():
    try:
        import dill
    except ModuleNotFoundError as e:
        raise ModuleNotFoundError("Parsl's dill serializers need the dill package, which pervade does not "
                                  "install: pip install dill", name="dill") from e
    return dill


class DillSerializer(SerializerBase):
    """dill: more than pickle handles (interactively defined functions, closures)."""

    identifier = b"02"

    def serialize(self, data: Any) -> bytes:
        return _dill().dumps(data)

    def deserialize(self, body: bytes) -> Any:
        return _dill().loads(body)


class DillCallableSerializer(DillSerializer):
    """dill for functions, each serialized (and read) once: functions are taken as immutable."""

    identifier = b"C2"
    serialize = functools.lru_cache(DillSerializer.serialize)
    deserialize = functools.lru_cache(DillSerializer.deserialize)


__all__ = ["PickleSerializer", "CloudPickleSerializer", "DillSerializer", "DillCallableSerializer"]
