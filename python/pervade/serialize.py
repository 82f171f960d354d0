"""Serialization of functions, arguments, results and exceptions for the Python workers.

Used by the driver (what it sends) and by `pervade.worker` (what it reads and returns); see
docs/protocol.md, "Task kinds, statuses and payloads".

Everything is pickle protocol 5. Plain pickle is tried first (fast, C); cloudpickle is the
fallback for what plain pickle cannot do (lambdas, closures, classes and functions defined in
the driver's `__main__`). The result of either is read with `pickle.loads`.

A pickle that refers by name to something in `__main__` is useless on a worker, whose
`__main__` is `pervade.worker`, so such a pickle is made again with cloudpickle, which sends
those objects by value: the check is a search for b"__main__" in the bytes (a false positive
only costs the slower pickler).
"""

from __future__ import annotations

import functools
import hashlib
import pickle
import sys
import traceback
import types
import weakref

import cloudpickle

from .errors import RemoteError

PROTOCOL = 5
_MAIN = b"__main__"

# id(fn) -> (weakref to fn, hash, bytes): identity keyed, so a hit is one dict lookup and one
# weakref call. Only for kinds of callables that are immutable in practice (see _cacheable).
_function_cache: dict = {}
_CACHEABLE = (types.FunctionType, types.BuiltinFunctionType, type, functools.partial)


def _pickled_by_value_modules():
    return getattr(getattr(cloudpickle, "cloudpickle", None), "_PICKLE_BY_VALUE_MODULES", ())


def _importable(fn) -> bool:
    """True when pickle can refer to fn by module and qualified name and a worker finds it."""
    module_name = getattr(fn, "__module__", None)
    qualname = getattr(fn, "__qualname__", None)
    if not isinstance(module_name, str) or not isinstance(qualname, str) or module_name == "__main__":
        return False
    by_value = _pickled_by_value_modules()
    if by_value and any(module_name == m or module_name.startswith(m + ".") for m in by_value):
        return False  # cloudpickle.register_pickle_by_value(module) asked for by-value
    obj = sys.modules.get(module_name)
    if obj is None:
        return False
    for part in qualname.split("."):
        obj = getattr(obj, part, None)
        if obj is None:
            return False
    return obj is fn


def _dumps_function(fn) -> bytes:
    if isinstance(fn, (types.FunctionType, types.BuiltinFunctionType, type)) and _importable(fn):
        try:
            return pickle.dumps(fn, protocol=PROTOCOL)
        except Exception:  # noqa: BLE001 - cloudpickle gets its chance below
            pass
    return cloudpickle.dumps(fn, protocol=PROTOCOL)


def _forget(key, ref):
    entry = _function_cache.get(key)
    if entry is not None and entry[0] is ref:
        del _function_cache[key]


def serialize_function(fn) -> tuple[bytes, bytes]:
    """Returns (SHA-1 digest of the bytes, the pickled function).

    By reference (plain pickle) when the function is importable by its module and qualified
    name outside `__main__`; by value (cloudpickle) otherwise. The result is cached per
    function object (functions, classes, builtins, functools.partial): a function pickled by
    value is therefore sent as it was at its first submission (as with Parsl's cache).
    """
    key = id(fn)
    entry = _function_cache.get(key)
    if entry is not None and entry[0]() is fn:
        return entry[1], entry[2]
    try:
        data = _dumps_function(fn)
    except Exception as e:  # noqa: BLE001 - re-raised with the function's name
        name = getattr(fn, "__qualname__", None) or getattr(fn, "__name__", None) or repr(fn)
        raise TypeError(f"cannot serialize the function {name}: {e}") from e
    digest = hashlib.sha1(data).digest()
    if isinstance(fn, _CACHEABLE):
        try:
            ref = weakref.ref(fn, lambda r, key=key: _forget(key, r))
        except TypeError:
            pass  # not weakly referenceable: no cache
        else:
            _function_cache[key] = (ref, digest, data)
    return digest, data


def _dumps(obj) -> bytes:
    """Plain pickle, or cloudpickle when plain pickle fails or refers to `__main__`."""
    try:
        data = pickle.dumps(obj, protocol=PROTOCOL)
    except Exception:  # noqa: BLE001 - lambdas, local classes...: cloudpickle's job
        return cloudpickle.dumps(obj, protocol=PROTOCOL)
    if _MAIN in data:
        return cloudpickle.dumps(obj, protocol=PROTOCOL)
    return data


def serialize_payload(args, kwargs, plan, name: str = "app") -> bytes:
    """The TASK payload: pickle of (args, kwargs, plan).

    plan is the kernel's list of (kind, key, index, replacement) (see pervade.dataflow); its
    "use the dependency's value" sentinel does not survive pickling, so on the wire it is
    None (the worker puts the sentinel back). Raises TypeError naming the app when the
    arguments cannot be pickled.
    """
    if plan:
        from .dataflow import _NO_VALUE, apply_plan
        # The futures themselves stay behind: each planned position travels as None and is
        # filled on the worker from `inputs`.
        args, kwargs = apply_plan(args, kwargs, plan, lambda index, replacement: None)
        plan = [(kind, key, index, None if replacement is _NO_VALUE else replacement)
                for kind, key, index, replacement in plan]
    try:
        return _dumps((tuple(args), kwargs or None, plan or None))
    except Exception as e:  # noqa: BLE001 - reported to the caller with the app's name
        raise TypeError(f"cannot serialize the arguments of {name}: {e}") from e


def encode_call(fn, args, kwargs, plan, name: str = "app") -> tuple[bytes, bytes, bytes, int]:
    """One Python task for a pool: (fn_hash, fn bytes, payload, priority).

    priority is parsl_resource_specification["priority"] when the call has one (0 otherwise);
    how it orders tasks is up to the executor.
    """
    fn_hash, fn_bytes = serialize_function(fn)
    priority = 0
    if kwargs:
        spec = kwargs.get("parsl_resource_specification")
        if isinstance(spec, dict) and spec.get("priority") is not None:
            priority = spec["priority"]
            if not isinstance(priority, int) or isinstance(priority, bool):
                raise TypeError(f"parsl_resource_specification priority of {name} must be an int, got {priority!r}")
    return fn_hash, fn_bytes, serialize_payload(args, kwargs, plan, name), priority


def serialize_value(value) -> bytes:
    """A task's return value (raises what the picklers raise when it cannot be pickled)."""
    return _dumps(value)


def deserialize(data):
    return pickle.loads(data)


def _loadable(data: bytes) -> bool:
    try:
        pickle.loads(data)
    except Exception:  # noqa: BLE001 - e.g. an exception whose __init__ does not take its args
        return False
    return True


def format_traceback(exc: BaseException, tb=None) -> str:
    """The traceback text of exc, starting at tb (default: exc.__traceback__)."""
    if tb is None:
        tb = exc.__traceback__
    return "".join(traceback.format_exception(type(exc), exc, tb))


def serialize_exception(exc: BaseException, traceback_text: str | None = None) -> bytes:
    """Pickle of (exc, traceback_text) for a RESULT with status 1.

    When exc cannot be pickled, or its pickle cannot be loaded again (an exception class
    whose __init__ does not accept its own args), it is replaced by
    RemoteError(type name, message, traceback_text).
    """
    if traceback_text is None:
        traceback_text = format_traceback(exc)
    try:
        data = _dumps((exc, traceback_text))
    except Exception:  # noqa: BLE001 - replaced below
        data = None
    if data is None or not _loadable(data):
        try:
            message = str(exc)
        except Exception as e:  # noqa: BLE001 - even str() may fail
            message = f"<str() failed: {type(e).__name__}: {e}>"
        remote = RemoteError(_type_name(type(exc)), message, traceback_text)
        data = pickle.dumps((remote, traceback_text), protocol=PROTOCOL)
    return data


def _type_name(cls) -> str:
    module = getattr(cls, "__module__", None)
    if module in (None, "builtins", "__main__"):
        return cls.__qualname__
    return f"{module}.{cls.__qualname__}"


def deserialize_exception(data: bytes) -> BaseException:
    """The exception of a status 1 RESULT, with the remote traceback text attached as
    `remote_traceback` and (Python >= 3.11) as a note shown under the local traceback."""
    try:
        exc, text = pickle.loads(data)
    except Exception as e:  # noqa: BLE001 - e.g. the exception's module is missing here
        return RemoteError("<unknown>", f"the task's exception could not be unpickled: {type(e).__name__}: {e}")
    if not isinstance(exc, BaseException):
        exc = RemoteError(type(exc).__name__, repr(exc), text)
    exc.remote_traceback = text
    if text and not isinstance(exc, RemoteError) and hasattr(exc, "add_note"):
        exc.add_note("Remote traceback:\n" + text.rstrip("\n"))
    return exc


__all__ = ["serialize_function", "serialize_payload", "encode_call", "serialize_value", "deserialize", "serialize_exception",
           "deserialize_exception", "format_traceback"]
