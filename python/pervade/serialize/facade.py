"""Parsl's parsl.serialize.facade: `serialize()` / `deserialize()` for users' code, and the
registries of serializers they use (docs/python.md, "Serializing objects").

A payload is `identifier + b"\\n" + body`, as in Parsl, so Parsl and pervade read each other's
payloads (dill's need the dill package). `serialize()` tries the registered serializers for code
(a callable) or for data in order and keeps the first that succeeds; `deserialize()` picks the
serializer named by the payload's header: a registered one, one of Parsl's (`concretes`), or a
class named b"<module> <class>", imported then.

pervade ships tasks with its own encoding (docs/protocol.md), not through these registries:
registering a serializer changes what these functions do, not how tasks travel.
"""

from __future__ import annotations

import importlib
import logging
from typing import Any, Dict, List

from . import concretes
from .base import SerializerBase
from .errors import DeserializerPluginError

logger = logging.getLogger(__name__)

methods_for_code: Dict[bytes, SerializerBase] = {}
methods_for_data: Dict[bytes, SerializerBase] = {}
# Serializers found from a payload's header: used to read, never chosen to write.
additional_methods_for_deserialization: Dict[bytes, SerializerBase] = {}
# Parsl's fixed identifiers, read without being registered (bytes that Parsl made).
_KNOWN = {b"01": concretes.PickleSerializer, b"02": concretes.DillSerializer, b"C2": concretes.DillCallableSerializer}


def register_method_for_code(s: SerializerBase) -> None:
    methods_for_code[s.identifier] = s


def register_method_for_data(s: SerializerBase) -> None:
    methods_for_data[s.identifier] = s


register_method_for_code(concretes.CloudPickleSerializer())
register_method_for_data(concretes.CloudPickleSerializer())


def serialize(obj: Any, buffer_threshold: int = int(1e6)) -> bytes:
    """obj as a payload, by the first registered serializer (for code if obj is callable, else
    for data) that can; if none can, the last one's exception. A payload over buffer_threshold
    bytes is logged as a warning, as in Parsl."""
    methods = methods_for_code if callable(obj) else methods_for_data
    if not methods:
        raise ValueError(f"no serializer registered for {'code' if callable(obj) else 'data'}")
    for method in methods.values():
        try:
            payload = method.identifier + b"\n" + method.serialize(obj)
        except Exception as e:  # noqa: BLE001 - the next serializer may succeed
            error = e
            continue
        if len(payload) > buffer_threshold:
            logger.warning("Serialized object exceeds buffer threshold of %d bytes, this could cause overflows",
                           buffer_threshold)
        return payload
    raise error


def _deserializer(header: bytes) -> SerializerBase:
    for methods in (methods_for_code, methods_for_data, additional_methods_for_deserialization):
        if header in methods:
            return methods[header]
    if header in _KNOWN:
        found = _KNOWN[header]()
    else:
        try:  # a plug-in: b"<module> <class>"
            module_name, class_name = header.split(b" ", 1)
            found = getattr(importlib.import_module(module_name.decode()), class_name.decode())()
        except Exception as e:
            raise DeserializerPluginError(header) from e
    additional_methods_for_deserialization[header] = found
    return found


def deserialize(payload: bytes) -> Any:
    """The object in a payload made by serialize() (pervade's or Parsl's)."""
    header, sep, body = bytes(payload).partition(b"\n")
    if not sep:
        raise DeserializerPluginError(header[:40])  # no header: not a payload of serialize()
    return _deserializer(header).deserialize(body)


def pack_buffers(buffers: List[bytes]) -> bytes:
    """Each buffer preceded by its length in decimal and a newline."""
    return b"".join(str(len(b)).encode() + b"\n" + bytes(b) for b in buffers)


def unpack_buffers(packed_buffer: bytes) -> List[bytes]:
    unpacked = []
    view = bytes(packed_buffer)
    while view:
        length, rest = view.split(b"\n", 1)
        n = int(length)
        unpacked.append(rest[:n])
        view = rest[n:]
    return unpacked


def pack_apply_message(func: Any, args: Any, kwargs: Any, buffer_threshold: int = int(128 * 1e6)) -> bytes:
    """A call (function, positional arguments, keyword arguments) as one buffer, as Parsl packs
    it: read it with unpack_apply_message(), run it with parsl.executors.execute_task."""
    return pack_buffers([serialize(func, buffer_threshold), serialize(args, buffer_threshold),
                         serialize(kwargs, buffer_threshold)])


def unpack_apply_message(packed_buffer: bytes) -> List[Any]:
    """[func, args, kwargs] from pack_apply_message()."""
    return [deserialize(b) for b in unpack_buffers(packed_buffer)]


def unpack_and_deserialize(packed_buffer: bytes) -> List[Any]:
    """unpack_apply_message(), checking that the buffer holds exactly a call's three parts."""
    unpacked = unpack_apply_message(packed_buffer)
    if len(unpacked) != 3:
        raise ValueError(f"a packed call has 3 buffers, this one {len(unpacked)}")
    return unpacked


__all__ = ["serialize", "deserialize", "pack_apply_message", "unpack_apply_message", "unpack_and_deserialize",
           "pack_buffers", "unpack_buffers", "register_method_for_code", "register_method_for_data",
           "methods_for_code", "methods_for_data", "additional_methods_for_deserialization"]
