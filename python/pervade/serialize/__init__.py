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

Futures inside a call's arguments (docs/protocol.md, "Python call"): a task's payload is the
pickle of (args, kwargs) in which each dependency is a call of `_dependency(k)` ("the value of
input k") or `_dependency(k, replacement)` ("replacement, once input k succeeded": a DataFuture's
File). Apps that can only run on pools are pickled at the call by `encode_call_finding_futures`,
whose pickler turns every future it meets, at any depth, into such a reference and returns the
futures in input order; the worker reads the payload with `load_call`, which resolves the
references from the TASK's inputs.

Big buffers (docs/protocol.md, "Out-of-band buffers"): a bytes, bytearray or contiguous
memoryview of at least 64 KiB given directly as an argument of a pool app is not copied into
the payload: it is pickled as a protocol-5 out-of-band `PickleBuffer`, travels as a frame of
its own, and the worker hands the bytes it read to `pickle.loads(buffers=...)`, so a bytes
argument reaches the function without another copy.

Parsl's `serialize()`, `deserialize()`, `pack_apply_message()` and `unpack_apply_message()`, for
users' code, are here too (facade.py): tasks do not travel through them.
"""

from __future__ import annotations

import copyreg
import functools
import hashlib
import io
import pickle
import sys
import threading
import traceback
import types
import weakref
from concurrent.futures import Future

import cloudpickle

from ..data import DataFuture
from ..errors import RemoteError
from ..futures import AppFuture
from .errors import SerializationError
# Parsl's parsl.serialize: serialize() / deserialize() for users' code (facade.py).
from .facade import deserialize, pack_apply_message, serialize, unpack_apply_message
from .pickling import _FLAT_TYPES, _MAIN, PROTOCOL
from .pickling import dumps as _dumps

_BIG_PICKLE = 64 * 1024
# Buffer arguments at least this big go out of band (see the module's doc).
_OUT_OF_BAND = 64 * 1024
_BUFFER_TYPES = frozenset((bytes, bytearray, memoryview))

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
        raise SerializationError(name, f"cannot serialize the function {name}: {e}") from e
    digest = hashlib.sha1(data).digest()
    if isinstance(fn, _CACHEABLE):
        try:
            ref = weakref.ref(fn, lambda r, key=key: _forget(key, r))
        except TypeError:
            pass  # not weakly referenceable: no cache
        else:
            _function_cache[key] = (ref, digest, data)
    return digest, data


# ---------------------------------------------------------------- calls and their dependencies


_loading = threading.local()  # .inputs: the TASK inputs of the payload load_call is reading


def _dependency(index, *replacement):
    """In a payload: the value of input `index` (or `replacement`, once that input succeeded).
    Called by pickle while load_call reads a payload on a worker."""
    inputs = getattr(_loading, "inputs", None)
    if inputs is None:
        raise RuntimeError(f"a task's payload refers to its dependency {index}, whose value only the worker running "
                           "the task has (read the payload with pervade.serialize.load_call and the TASK's inputs)")
    if not 0 <= index < len(inputs):
        raise LookupError(f"the payload refers to dependency {index}, the TASK has {len(inputs)} inputs")
    if replacement:
        return replacement[0]
    value = inputs[index]
    if type(value) is Loaded:
        return value.value
    # pickle memoizes each reference, so each input is unpickled once per payload.
    return pickle.loads(value)


class Loaded:
    """An input of load_call that is already a value, not bytes (a follower's input, which its
    worker still has in memory from the task it follows)."""

    __slots__ = ("value",)

    def __init__(self, value):
        self.value = value


class _Dependency:
    """Stands for dependency `index` in the arguments of a call encoded at launch (an app that may
    also run on threads: its dependencies are the kernel's plan, top-level only)."""

    __slots__ = ("index", "replacement")

    def __init__(self, index, replacement):
        self.index, self.replacement = index, replacement

    def __reduce__(self):
        if self.replacement is None:
            return _dependency, (self.index,)
        return _dependency, (self.index, self.replacement)


class _NestedFuture(TypeError):
    pass


# Future classes -> whether their instances are dependencies: every Future, except one whose
# class defines its own pickling (it then travels as an ordinary object, whichever pickler runs).
# AppFuture refuses to be pickled on purpose, so it and DataFuture are listed here.
_dependency_types = {Future: True, AppFuture: True, DataFuture: True}
_DEFAULT_PICKLING = (object.__reduce_ex__, object.__reduce__, getattr(object, "__getstate__", None))


def _is_dependency_type(cls) -> bool:
    known = _dependency_types.get(cls)
    if known is None:
        own = (cls.__reduce_ex__, cls.__reduce__, getattr(cls, "__getstate__", None)) != _DEFAULT_PICKLING
        known = _dependency_types[cls] = not own and cls not in copyreg.dispatch_table
    return known


class _FindFutures:
    """Mixin of the call picklers: reducer_override (called by pickle for every object that is not
    None, a bool, or an exact int, float, str, bytes, list, tuple, dict, set or frozenset) makes
    each future a reference to a task input. pickle memoizes the reference, so a future met twice
    is one input, and one object on the worker."""

    _futures = None  # None: futures are not allowed (apps encoded at launch)
    _indexes = None

    def _reference(self, future):
        futures = self._futures
        if futures is None:
            raise _NestedFuture(
                f"{future!r} is nested inside them: an app that may run on a ThreadPoolExecutor takes futures "
                "only as positional or keyword arguments and in inputs= (as Parsl); futures at any depth are "
                "found for apps that run only on HighThroughputExecutors")
        index = self._indexes.get(id(future))
        if index is None:
            index = self._indexes[id(future)] = len(futures)
            futures.append(future)
        if isinstance(future, DataFuture):
            return _dependency, (index, future.file_obj)
        return _dependency, (index,)


def _rebuild_buffer(buffer, writable):
    """A bytes (or, writable, a bytearray) argument sent out of band. The worker passes each
    buffer as the bytes object it read: a bytes argument is that object, not a copy."""
    if writable:
        return bytearray(buffer)
    return buffer if type(buffer) is bytes else bytes(buffer)


def _rebuild_memoryview(buffer, fmt, shape, readonly):
    view = memoryview(buffer if readonly else bytearray(buffer))
    return view if fmt == "B" and len(shape) == 1 else view.cast("B").cast(fmt, shape)


class _OutOfBand:
    """Stands for a big buffer argument while a call is pickled: it pickles as a rebuild of the
    buffer from an out-of-band PickleBuffer, which the pickler's buffer_callback collects."""

    __slots__ = ("obj",)

    def __init__(self, obj):
        self.obj = obj

    def __reduce_ex__(self, protocol):
        obj = self.obj
        if type(obj) is memoryview:
            return _rebuild_memoryview, (pickle.PickleBuffer(obj), obj.format, obj.shape, obj.readonly)
        return _rebuild_buffer, (pickle.PickleBuffer(obj), type(obj) is bytearray)


def _goes_out_of_band(value) -> bool:
    if type(value) is memoryview:
        # cast() rebuilds only C-contiguous views of native single-character formats.
        return value.nbytes >= _OUT_OF_BAND and value.c_contiguous and len(value.format.lstrip("@")) == 1
    return len(value) >= _OUT_OF_BAND


def _wrap_big_buffers(call):
    """The call with its big buffer arguments wrapped in _OutOfBand, or None when it has none
    (the usual case, found by one type check per argument)."""
    args, kwargs = call
    for a in args:
        if type(a) in _BUFFER_TYPES and _goes_out_of_band(a):
            break
    else:
        if not kwargs or not any(type(v) in _BUFFER_TYPES and _goes_out_of_band(v) for v in kwargs.values()):
            return None
    wrap = lambda v: _OutOfBand(v) if type(v) in _BUFFER_TYPES and _goes_out_of_band(v) else v  # noqa: E731
    return tuple(wrap(a) for a in args), (kwargs and {k: wrap(v) for k, v in kwargs.items()}) or kwargs


class _CallPickler(_FindFutures, pickle.Pickler):
    """Reused by its thread (making a C Pickler costs about as much as pickling a small call)."""

    _buffers = None  # the list out-of-band buffers go to while a call is pickled

    def __init__(self):
        self.out = io.BytesIO()
        pickle.Pickler.__init__(self, self.out, PROTOCOL, buffer_callback=self._buffer)
        self.busy = False

    def _buffer(self, buffer):
        if self._buffers is None:
            return True  # in band
        self._buffers.append(buffer.raw())
        return None

    def reducer_override(self, obj):
        if isinstance(obj, Future) and _is_dependency_type(type(obj)):
            return self._reference(obj)
        return NotImplemented


class _CloudCallPickler(_FindFutures, cloudpickle.Pickler):
    def __init__(self, file, futures, buffers=None):
        cloudpickle.Pickler.__init__(self, file, protocol=PROTOCOL,
                                     buffer_callback=None if buffers is None else _collector(buffers))
        self._futures, self._indexes = futures, {}

    def reducer_override(self, obj):
        if isinstance(obj, Future) and _is_dependency_type(type(obj)):
            return self._reference(obj)
        return super().reducer_override(obj)


def _collector(buffers):
    """A buffer_callback that sends every buffer out of band, into the list buffers."""
    return lambda buffer: buffers.append(buffer.raw())


_local = threading.local()


def _pickle_finding(obj, futures, buffers=None) -> bytes:
    """Pickles obj with this thread's _CallPickler (a new one if it is in use: re-entry)."""
    pickler = getattr(_local, "pickler", None)
    if pickler is None or pickler.busy:
        pickler = _CallPickler()
        if getattr(_local, "pickler", None) is None:
            _local.pickler = pickler
    pickler.busy = True
    pickler._futures, pickler._indexes, pickler._buffers = futures, {}, buffers
    out = pickler.out
    try:
        pickler.dump(obj)
        return out.getvalue()
    finally:
        # Nothing of this call stays referenced (the memo holds every object pickled).
        pickler.clear_memo()
        out.seek(0)
        out.truncate()
        pickler._futures = pickler._indexes = pickler._buffers = None
        pickler.busy = False


def _cloudpickle_finding(obj, futures, buffers=None) -> bytes:
    out = io.BytesIO()
    _CloudCallPickler(out, futures, buffers).dump(obj)
    return out.getvalue()


def _names_main(call, data: bytes) -> bool:
    """Whether the pickle of the (args, kwargs) call may refer to `__main__`. Scanning costs
    0.4 ms per MB, so a big pickle whose arguments are all plain scalars, str or bytes (which
    cannot name `__main__`) is not scanned."""
    if len(data) >= _BIG_PICKLE:
        args, kwargs = call
        if all(type(a) in _FLAT_TYPES for a in args) and (
                not kwargs or all(type(v) in _FLAT_TYPES for v in kwargs.values())):
            return False
    return _MAIN in data


def _dumps_call(call, find_futures: bool, has_future: bool = False, buffers=None):
    """(bytes, futures found in order, or None). As _dumps, and also finds futures. With a list
    `buffers`, big buffer arguments go out of band into it (see the module's doc).

    Fast path: plain pickle.dumps, with no Python callback per object. It cannot succeed on a
    call holding a dependency: an AppFuture refuses to be pickled, and any other Future holds the
    Condition made by Future.__init__, whose lock pickle refuses (a Future whose class defines its
    own pickling is no dependency: see _is_dependency_type). Only calls whose plain pickle fails
    (futures, lambdas, ...) or names `__main__` pay for the pickler that looks at each object;
    has_future (a future seen among the top-level arguments) skips the plain attempt.
    """
    data = None
    if buffers is not None:
        wrapped = _wrap_big_buffers(call)
        if wrapped is None:
            buffers = None
        else:
            call = wrapped
    if not has_future:
        try:
            if buffers is None:
                data = pickle.dumps(call, protocol=PROTOCOL)
            else:
                data = pickle.dumps(call, protocol=PROTOCOL, buffer_callback=_collector(buffers))
        except Exception:  # noqa: BLE001 - futures, or what only cloudpickle can do
            if buffers:
                buffers.clear()
        else:
            if not _names_main(call, data):
                return data, None
            if buffers:
                buffers.clear()
    if data is None:
        futures = [] if find_futures else None
        try:
            data = _pickle_finding(call, futures, buffers)
        except _NestedFuture:
            raise
        except Exception:  # noqa: BLE001 - cloudpickle gets its chance below
            data = None
            if buffers:
                buffers.clear()
        else:
            if _MAIN not in data:
                return data, futures
            if buffers:
                buffers.clear()
    futures = [] if find_futures else None
    return _cloudpickle_finding(call, futures, buffers), futures


def serialize_payload(args, kwargs, plan, name: str = "app", buffers=None) -> bytes:
    """The TASK payload of a call encoded at launch: pickle of (args, kwargs). With a list
    `buffers`, big buffer arguments go out of band into it.

    plan is the kernel's list of (kind, key, index, replacement) (see pervade.dataflow): each
    planned position (a future) travels as a reference to input `index` (or to `replacement`,
    a DataFuture's File). A future nested deeper raises TypeError, as do arguments that cannot be
    pickled; the message names the app.
    """
    if plan:
        from ..dataflow.dflow import _NO_VALUE, apply_plan
        args, kwargs = apply_plan(args, kwargs, plan, lambda index, replacement: _Dependency(
            index, None if replacement is _NO_VALUE else replacement))
    try:
        return _dumps_call((tuple(args), kwargs or None), False, buffers=buffers)[0]
    except Exception as e:  # noqa: BLE001 - reported to the caller with the app's name
        raise SerializationError(name, f"cannot serialize the arguments of {name}: {e}") from e


# What a HighThroughputExecutor takes in parsl_resource_specification: Parsl's `priority`, and
# beyond Parsl `cores`, `memory` (MB), `gpus` and `running_time` (seconds), by which its pools
# admit tasks (docs/htex.md, "Resources").
HTEX_RESOURCE_KEYS = frozenset({"priority", "cores", "memory", "gpus", "running_time"})
# What an executor in MPI mode takes (docs/mpi.md): Parsl's four keys, and priority.
MPI_RESOURCE_KEYS = frozenset({"num_nodes", "ranks_per_node", "num_ranks", "launcher_options"})


def _count(spec, key):
    """spec[key] as an int >= 1 (an int, or a str of one, as Parsl takes them); None if absent."""
    value = spec.get(key)
    if value is None:
        return None
    try:
        n = int(value) if isinstance(value, (int, str)) and not isinstance(value, bool) else None
    except ValueError:
        n = None
    if n is None or not 1 <= n < 2**63 or (n >= 2**31 and key != "memory"):
        from ..errors import InvalidResourceSpecification
        raise InvalidResourceSpecification({key}, f"{key} must be an integer >= 1, got {value!r}")
    return n


def node_request(spec):
    """What a checked spec asks of a node: (cores, memory MB, gpus, running_time s), zeros for
    absent keys. Raises InvalidResourceSpecification naming a key whose value is not a positive
    number."""
    running_time = spec.get("running_time")
    if running_time is None:
        running_time = 0.0
    elif isinstance(running_time, bool) or not isinstance(running_time, (int, float)) or not 0 < running_time <= 1e9:
        from ..errors import InvalidResourceSpecification
        raise InvalidResourceSpecification({"running_time"}, "running_time must be a number of seconds > 0 "
                                                              f"(at most 1e9), got {running_time!r}")
    return (_count(spec, "cores") or 0, _count(spec, "memory") or 0, _count(spec, "gpus") or 0, float(running_time))


def validate_resource_spec(spec) -> None:
    """Raises InvalidResourceSpecification, naming the keys, when spec (a dict) has keys a
    HighThroughputExecutor does not take or values that are not positive numbers."""
    invalid = set(spec) - HTEX_RESOURCE_KEYS
    if invalid:
        from ..errors import InvalidResourceSpecification
        raise InvalidResourceSpecification(
            invalid, "Task resource specification only accepts these types of resources: "
            + ", ".join(sorted(HTEX_RESOURCE_KEYS)))
    node_request(spec)


def mpi_request(spec):
    """The MPI part of a checked spec: (num_nodes, ranks_per_node, num_ranks, launcher_options),
    completed as docs/mpi.md says (num_nodes 0: no MPI keys; ranks_per_node 0: whole nodes).
    Raises InvalidResourceSpecification naming a bad key."""
    options = spec.get("launcher_options", "")
    if not isinstance(options, str):
        from ..errors import InvalidResourceSpecification
        raise InvalidResourceSpecification({"launcher_options"}, f"launcher_options must be a str, got {options!r}")
    nodes, per_node, ranks = _count(spec, "num_nodes"), _count(spec, "ranks_per_node"), _count(spec, "num_ranks")
    if nodes is None and per_node is None and ranks is None:
        return 0, 0, 0, options
    nodes = nodes or 1
    if per_node is None and ranks is not None:
        per_node = -(-ranks // nodes)
    elif ranks is None and per_node is not None:
        ranks = nodes * per_node
    elif per_node is not None and ranks > nodes * per_node:
        from ..errors import InvalidResourceSpecification
        raise InvalidResourceSpecification({"num_ranks"}, f"num_ranks {ranks} is more than num_nodes {nodes} x "
                                                          f"ranks_per_node {per_node}")
    return nodes, per_node or 0, ranks or 0, options


def _resource_request(kwargs, name):
    """(priority, request) of a call: request is None without a parsl_resource_specification,
    else mpi_request() + node_request() of it (which executor takes which keys is the executor's
    to check)."""
    if kwargs:
        spec = kwargs.get("parsl_resource_specification")
        if isinstance(spec, dict) and spec:
            invalid = set(spec) - HTEX_RESOURCE_KEYS - MPI_RESOURCE_KEYS
            if invalid:
                from ..errors import InvalidResourceSpecification
                raise InvalidResourceSpecification(
                    invalid, "Task resource specification only accepts these types of resources: "
                    + ", ".join(sorted(HTEX_RESOURCE_KEYS | MPI_RESOURCE_KEYS)))
            priority = spec.get("priority")
            if priority is None:
                priority = 0
            elif not isinstance(priority, int) or isinstance(priority, bool):
                raise TypeError(f"parsl_resource_specification priority of {name} must be an int, got {priority!r}")
            return priority, mpi_request(spec) + node_request(spec)
    return 0, None


def encode_call(fn, args, kwargs, plan, name: str = "app"):
    """One Python task for a pool, encoded at launch: (fn_hash, fn bytes, payload, priority,
    out-of-band buffers of the payload, resource request).

    priority is parsl_resource_specification["priority"] when the call has one (0 otherwise);
    how it orders tasks is up to the executor. The request is None without a spec, else its MPI
    keys (mpi_request()) followed by what it asks of a node (node_request()).
    """
    fn_hash, fn_bytes = serialize_function(fn)
    priority, request = _resource_request(kwargs, name)
    buffers = []
    return fn_hash, fn_bytes, serialize_payload(args, kwargs, plan, name, buffers), priority, buffers, request


def encode_call_finding_futures(fn, args, kwargs, name: str = "app"):
    """Encodes a call at submission: ((fn_hash, fn bytes, payload, priority, out-of-band
    buffers, resource request), futures).

    futures: the futures found at any depth of args and kwargs, each once, in input order (None
    when there are none); in the payload each is a reference to its input.
    """
    fn_hash, fn_bytes = serialize_function(fn)
    priority, request = _resource_request(kwargs, name)
    has_future = False
    for a in args:
        if isinstance(a, Future):
            has_future = True
            break
    else:
        if kwargs:
            for a in kwargs.values():
                if isinstance(a, Future):
                    has_future = True
                    break
    buffers = []
    try:
        payload, futures = _dumps_call((args, kwargs), True, has_future, buffers)
    except Exception as e:  # noqa: BLE001 - reported to the caller with the app's name
        raise SerializationError(name, f"cannot serialize the arguments of {name}: {e}") from e
    return (fn_hash, fn_bytes, payload, priority, buffers, request), futures or None


def load_call(payload: bytes, inputs=(), buffers=()):
    """(args, kwargs) of a TASK payload, with its dependencies' values from inputs (bytes each,
    or Loaded values) and its out-of-band buffers."""
    if not inputs:
        return pickle.loads(payload, buffers=buffers)
    previous = getattr(_loading, "inputs", None)
    _loading.inputs = inputs
    try:
        return pickle.loads(payload, buffers=buffers)
    finally:
        _loading.inputs = previous


def serialize_value(value) -> bytes:
    """A task's return value (raises what the picklers raise when it cannot be pickled)."""
    return _dumps(value)


def serialize_result(value):
    """A task's return value on a worker: (pickle bytes, out-of-band buffers). A bytes,
    bytearray or C-contiguous memoryview of at least 64 KiB goes out of band, as a big argument
    does (its buffer travels as a frame of its own); other values have no buffers."""
    if type(value) in _BUFFER_TYPES and _goes_out_of_band(value):
        buffers = []
        return pickle.dumps(_OutOfBand(value), protocol=PROTOCOL, buffer_callback=_collector(buffers)), buffers
    return _dumps(value), ()


def load_value(data, buffers=None):
    """A value, call payload or function that pervade pickled (not serialize()'s payloads)."""
    return pickle.loads(data, buffers=buffers)


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
    # With its chain of causes first ((exc, causes): pickle leaves __cause__ out; Parsl's wrapper
    # keeps the chain), then without it if a cause cannot travel, then as a RemoteError.
    causes = _causes(exc)
    for value in ([(exc, causes)] if causes else []) + [exc]:
        try:
            data = _dumps((value, traceback_text))
        except Exception:  # noqa: BLE001 - the next form
            continue
        if _loadable(data):
            return data
    try:
        message = str(exc)
    except Exception as e:  # noqa: BLE001 - even str() may fail
        message = f"<str() failed: {type(e).__name__}: {e}>"
    remote = RemoteError(_type_name(type(exc)), message, traceback_text)
    return pickle.dumps((remote, traceback_text), protocol=PROTOCOL)


def _causes(exc: BaseException) -> tuple:
    """exc.__cause__, its __cause__, ... (`raise ... from e` chains; not __context__, as Parsl)."""
    chain = []
    cause = exc.__cause__
    while cause is not None and len(chain) < 32 and not any(cause is c for c in chain):
        chain.append(cause)
        cause = cause.__cause__
    return tuple(chain)


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
    if type(exc) is tuple:  # with its chain of causes (serialize_exception)
        exc, causes = exc
        link = exc
        for cause in causes:
            link.__cause__ = cause
            link = cause
    if not isinstance(exc, BaseException):
        exc = RemoteError(type(exc).__name__, repr(exc), text)
    exc.remote_traceback = text
    if text and not isinstance(exc, RemoteError) and hasattr(exc, "add_note"):
        exc.add_note("Remote traceback:\n" + text.rstrip("\n"))
    return exc


__all__ = ["serialize_function", "serialize_payload", "encode_call", "encode_call_finding_futures", "load_call",
           "serialize_value", "load_value", "serialize_exception", "deserialize_exception", "format_traceback",
           "serialize", "deserialize", "pack_apply_message", "unpack_apply_message"]

# parsl.<package>.<submodule> without importing it first (_submodules.py)
from .._submodules import submodule_getattr  # noqa: E402
__getattr__ = submodule_getattr(__name__)
del submodule_getattr
