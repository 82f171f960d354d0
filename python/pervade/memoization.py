"""Memoization and checkpoints: the key of an app call, and how Config's options reach the engine.

The memo table and the checkpoint files live in the C++ engine (src/core/memo_store.cpp). Python
computes only what needs Python: the key of a call, a digest of the function's identity and of
its arguments, normalised by ``id_for_memo`` (a functools.singledispatch function, as in Parsl:
register a handler to make your own types memoizable).

>>> @id_for_memo.register(Point)
... def _(p, output_ref=False):
...     return id_for_memo((p.x, p.y))
"""

from __future__ import annotations

import hashlib
import logging
import os
import pickle
import types
from concurrent.futures import Future
from functools import lru_cache, partial, singledispatch
from typing import Optional, Sequence

from . import _native
from .errors import ConfigurationError

logger = logging.getLogger(__name__)

KEY_SIZE = 32  # bytes of a key: the engine's kMemoKeySize


@singledispatch
def id_for_memo(obj, output_ref: bool = False) -> bytes:
    """Bytes that identify `obj` for memoization: equal for values that are "the same", different
    otherwise. output_ref=True for values in outputs= (files that do not exist yet)."""
    raise ValueError(f"unknown type for memoization: {type(obj)}; register a handler with "
                     f"pervade.memoization.id_for_memo.register({type(obj).__name__})")


@id_for_memo.register(str)
@id_for_memo.register(bytes)
@id_for_memo.register(int)
@id_for_memo.register(float)
@id_for_memo.register(complex)
@id_for_memo.register(bool)
@id_for_memo.register(type(None))
def _id_plain(obj, output_ref: bool = False) -> bytes:
    return pickle.dumps(obj)


def _exact(obj, cls):
    # Subclasses may carry state that the base type's handler would not see.
    if type(obj) is not cls:
        raise ValueError(f"id_for_memo cannot work on subclasses of {cls.__name__} ({type(obj)})")


@id_for_memo.register(list)
def _id_list(obj: list, output_ref: bool = False) -> bytes:
    _exact(obj, list)
    return pickle.dumps(["list"] + [id_for_memo(e, output_ref=output_ref) for e in obj])


@id_for_memo.register(tuple)
def _id_tuple(obj: tuple, output_ref: bool = False) -> bytes:
    _exact(obj, tuple)
    return pickle.dumps(["tuple"] + [id_for_memo(e, output_ref=output_ref) for e in obj])


@id_for_memo.register(dict)
def _id_dict(obj: dict, output_ref: bool = False) -> bytes:
    """Keys in sorted order, so that insertion order does not matter; values as output refs if asked."""
    _exact(obj, dict)
    parts = ["dict"]
    for k in sorted(obj):
        parts.append(id_for_memo(k))
        parts.append(id_for_memo(obj[k], output_ref=output_ref))
    return pickle.dumps(parts)


def _code_identity(code: types.CodeType) -> list:
    """What a function does, not where it sits: bytecode, names and constants (nested code too),
    but not the file name or line numbers, so moving a function does not invalidate its results."""
    consts = [_const_identity(c) for c in code.co_consts]
    return [code.co_code, code.co_names, code.co_varnames, consts]


def _const_identity(c):
    if isinstance(c, types.CodeType):
        return _code_identity(c)
    if isinstance(c, frozenset):  # `x in {"a", "b"}`: its repr's order changes with the hash seed
        return sorted(repr(e) for e in c)
    return repr(c)


@id_for_memo.register(types.FunctionType)
@lru_cache(maxsize=1024)
def _id_function(f: types.FunctionType, output_ref: bool = False) -> bytes:
    """A function by its qualified name and its code: editing the body invalidates its results."""
    code = hashlib.blake2b(pickle.dumps(_code_identity(f.__code__)), digest_size=16).digest()
    return pickle.dumps(["function", f.__module__, f.__qualname__, code])


@id_for_memo.register(types.BuiltinFunctionType)
def _id_builtin(f, output_ref: bool = False) -> bytes:
    return pickle.dumps(["builtin", getattr(f, "__module__", None), f.__qualname__])


@id_for_memo.register(partial)
def _id_partial(p: partial, output_ref: bool = False) -> bytes:
    """A functools.partial, which workflows make apps of (to give each task type its own name): its
    function and the arguments bound to it. Parsl keys any app function by its name only."""
    return pickle.dumps(["partial", id_for_memo(p.func), id_for_memo(p.args), id_for_memo(p.keywords)])


class _NotReady(Exception):
    """A future in the arguments has no value yet: the key is made once it has."""


@id_for_memo.register(Future)
def _id_future(f: Future, output_ref: bool = False) -> bytes:
    from .data import DataFuture
    if isinstance(f, DataFuture):  # stands for its file
        return id_for_memo(f.file_obj, output_ref=output_ref)
    if not f.done() or f.cancelled() or f.exception() is not None:
        raise _NotReady()  # a failed one: the task fails with DependencyError before any key
    return id_for_memo(f.result(), output_ref=output_ref)


def _register_file():
    from .data import File

    @id_for_memo.register(File)
    def _id_file(f, output_ref: bool = False) -> bytes:
        return pickle.dumps(["File", f.url])


_register_file()


_SCALARS = frozenset((str, int, float, bool, type(None), bytes))


def _flat(values) -> int:
    """Only scalars, lists/tuples of scalars and dicts of str to scalars: values whose repr
    identifies them exactly (a dict's once its items are sorted, see _SortedDict). 0: not flat,
    1: flat, 2: flat with dicts."""
    result = 1
    for v in values:
        t = type(v)
        if t in _SCALARS:
            continue
        if t is tuple or t is list:
            if not all(type(e) in _SCALARS for e in v):
                return 0
        elif t is dict:
            if not all(type(k) is str and type(e) in _SCALARS for k, e in v.items()):
                return 0
            result = 2
        else:
            return 0
    return result


_FUNC_IDS: dict = {}


class _SortedDict:
    """A dict in the fast path's key material: sorted items, with a repr no other value has."""

    __slots__ = ("items",)

    def __init__(self, d):
        self.items = sorted(d.items())

    def __repr__(self):
        return f"<dict {self.items!r}>"


def _canon(v):
    return _SortedDict(v) if type(v) is dict else v


def make_key(func, args, kwargs, ignore_for_cache=()) -> bytes:
    """The memo key of func(*args, **kwargs), as Parsl makes it: kwargs named in ignore_for_cache
    are left out, outputs= is keyed as output references. Raises _NotReady for a pending future."""
    kwargs = dict(kwargs) if kwargs else {}
    for k in ignore_for_cache:
        kwargs.pop(k, None)
    flat_args = _flat(args)
    flat_kwargs = flat_args and _flat(kwargs.values())
    if flat_kwargs:
        # Fast path for the common call (about 10x cheaper than id_for_memo on each value): the
        # repr of scalars is exact (1, 1.0, True and "1" differ) and independent of object
        # identity, unlike pickle's memo. The type decides the path, so a value is always keyed
        # the same way.
        if flat_args == 2:
            args = tuple(map(_canon, args))
        items = sorted(kwargs.items()) if flat_kwargs == 1 else sorted((k, _canon(v)) for k, v in kwargs.items())
        material = repr((args, items)).encode("utf-8", "surrogatepass")
        func_id = _FUNC_IDS.get(func) if type(func) is types.FunctionType else None
        if func_id is None:
            func_id = id_for_memo(func)
            if type(func) is types.FunctionType:  # apps are few and live long: keep their identity
                if len(_FUNC_IDS) > 4096:  # but not every lambda made in a loop
                    _FUNC_IDS.clear()
                _FUNC_IDS[func] = func_id
        return hashlib.blake2b(b"flat" + func_id + material, digest_size=KEY_SIZE).digest()
    parts = []
    outputs = kwargs.pop("outputs", None)
    if outputs is not None:
        parts.append(id_for_memo(outputs, output_ref=True))
    parts.append(id_for_memo(kwargs))
    parts.append(id_for_memo(func))
    parts.append(id_for_memo(tuple(args)))
    return hashlib.blake2b(b"".join(parts), digest_size=KEY_SIZE).digest()


def memo_for_call(func, args, kwargs, ignore_for_cache=(), plugin=None):
    """What the engine gets for a memoized call: the key now when every argument has a value
    (the common case), else a function that makes it once the futures are done (the engine calls
    it then, on its completion thread).

    A key that cannot be made (an argument id_for_memo does not know, or a handler that raises)
    fails the task, not the call, as in Parsl: the function then raises that error once the
    dependencies are done.

    plugin: a memoizer whose class overrides check_memo: it is asked about every call, once the
    futures are done (see BasicMemoizer.check_memo)."""
    if plugin is not None:
        return partial(_ask_plugin, plugin, func, args, kwargs, ignore_for_cache)
    try:
        return make_key(func, args, kwargs, ignore_for_cache)
    except _NotReady:
        return lambda: make_key(func, *_with_values(args, kwargs), ignore_for_cache)
    except Exception as error:  # noqa: BLE001 - reported on the future
        return partial(_raise, error)


def _raise(error):
    raise error


class _MemoTable:
    """What BasicMemoizer.check_memo answers: "the engine's memo table decides" (see there)."""

    def __repr__(self) -> str:
        return "<pervade memo table>"


MEMO_TABLE = _MemoTable()


def _ask_plugin(memoizer, func, args, kwargs, ignore_for_cache) -> bytes:
    """The key of a call as a memoizer plug-in decides it (on the engine's completion thread,
    once the futures among the arguments are done): b"" when check_memo says no (the call runs
    and is not recorded)."""
    args, kwargs = _with_values(args, kwargs)
    record = {"id": None, "func": func, "func_name": getattr(func, "__name__", "app"), "args": args,
              "kwargs": kwargs or {}, "memoize": True, "ignore_for_cache": list(ignore_for_cache), "hashsum": None}
    answer = memoizer.check_memo(record)
    if answer is None:
        return b""
    if answer is not MEMO_TABLE:
        raise TypeError(f"{type(memoizer).__name__}.check_memo returned {answer!r}: in pervade the memo table is "
                        "the engine's; return None (do not memoize this call) or super().check_memo(task)")
    return bytes.fromhex(record["hashsum"])


def _with_values(args, kwargs):
    """args and kwargs with each future that is an argument or an item of inputs= replaced by
    its value, so that a call made with a future has the key of the same call made with its
    value (and takes the same fast path in make_key)."""
    def value(v):
        return v.result() if isinstance(v, Future) else v

    args = tuple(map(value, args))
    if kwargs:
        kwargs = {k: value(v) for k, v in kwargs.items()}
        if isinstance(kwargs.get("inputs"), (list, tuple)):
            kwargs["inputs"] = type(kwargs["inputs"])(map(value, kwargs["inputs"]))
    return args, kwargs


def not_memoizable(value, error) -> None:
    """Called by the engine when a memoized task's result cannot be pickled: the task still
    succeeds with it, but it is not memoized."""
    logger.warning("a memoized result of type %s cannot be pickled and is not memoized: %s",
                   type(value).__name__, error)


# ---------------------------------------------------------------- configuration


class Memoizer:
    """Parsl's base class of memoizers (parsl.dataflow.memoization.Memoizer), for isinstance
    checks and type hints. pervade runs BasicMemoizer and its subclasses: the memo table lives in
    the engine, so Config refuses a Memoizer written from scratch (ConfigurationError); to decide
    per call, subclass BasicMemoizer and override check_memo."""


class BasicMemoizer(Memoizer):
    """Memoization and checkpoint settings of a Config (Parsl's BasicMemoizer).

    >>> Config(memoizer=BasicMemoizer(checkpoint_mode="task_exit", checkpoint_files=get_all_checkpoints()))

    checkpoint_files: checkpoints to load at start: directories <run_dir>/NNN/checkpoint (see
        get_all_checkpoints / get_last_checkpoint) or tasks.db files. Default: every checkpoint
        under the config's run_dir when a checkpoint_mode is set, none otherwise.
    checkpoint_mode: None (results memoized in memory only), "task_exit" (each result is in the
        file before its future completes), "periodic", "dfk_exit", "manual" (dfk.checkpoint()).
    checkpoint_period: for "periodic": "HH:MM:SS" or a number of seconds.
    memoize: False disables memoization for every app (cache=True has no effect).
    pickle_copy: also append each checkpointed result to checkpoint/tasks.pkl, in Parsl's format,
        for tools that read Parsl's checkpoints (pervade loads tasks.db). False writes tasks.db
        only, which halves the disk a checkpoint of big results takes (pervade's extension).
    """

    def __init__(self, *, checkpoint_files: Optional[Sequence[str]] = None, checkpoint_period=None,
                 checkpoint_mode: Optional[str] = None, memoize: bool = True, pickle_copy: bool = True):
        mode = _engine_mode(checkpoint_mode)
        if isinstance(checkpoint_files, (str, os.PathLike)):
            checkpoint_files = [checkpoint_files]
        self.checkpoint_files = None if checkpoint_files is None else [os.fspath(f) for f in checkpoint_files]
        self.checkpoint_mode = checkpoint_mode
        self.checkpoint_period = checkpoint_period
        self.memoize = memoize
        if not isinstance(pickle_copy, bool):
            raise ConfigurationError(f"pickle_copy must be True or False, got {pickle_copy!r}")
        self.pickle_copy = pickle_copy
        self.period_seconds = _period_seconds(checkpoint_period) if checkpoint_period is not None else 0.0
        if mode == _native.CheckpointMode.periodic and checkpoint_period is None:
            raise ConfigurationError("Checkpoint period must be specified with periodic checkpoint mode")

    _dfk = None  # the kernel using these settings (set when it starts)

    def check_memo(self, task) -> object:
        """Parsl's plug-in point: a subclass that overrides this is asked about every call of a
        cache=True app once its arguments have values; `task` is a task record with func,
        func_name, args, kwargs (values), ignore_for_cache, memoize. Returning None runs the
        call without the memo table (nothing recalled, nothing recorded); returning
        super().check_memo(task) lets the engine's table answer it (recalled, or run and
        recorded), and sets task["hashsum"]. Unlike Parsl's, this returns no Future (the table
        lives in the engine): a plug-in can veto memoization but not supply results."""
        if not self.memoize or not task.get("memoize", True):
            task["hashsum"] = None
            return None
        key = make_key(task["func"], tuple(task["args"]), task["kwargs"], task.get("ignore_for_cache") or ())
        task["hashsum"] = key.hex()
        return MEMO_TABLE

    def _plugin(self):
        """self when a subclass overrides check_memo (apps must then ask it), else None."""
        return self if type(self).check_memo is not BasicMemoizer.check_memo and self.memoize else None

    def checkpoint(self) -> int:
        """Writes the memoized results not yet in this run's checkpoint; returns how many (as
        dfk.checkpoint(); Parsl's dfk.memoizer.checkpoint())."""
        if self._dfk is None:
            raise ConfigurationError("this memoizer is not used by a loaded DataFlowKernel")
        return self._dfk.checkpoint()

    def native_options(self, run_dir: str, config_run_dir: str):
        """(memoize, mode, period seconds, this run's checkpoint dir, files to load, Parsl pickle
        copy) for the engine."""
        files = self.checkpoint_files
        if files is None:
            files = get_all_checkpoints(config_run_dir) if self.checkpoint_mode is not None else []
        return (bool(self.memoize), _engine_mode(self.checkpoint_mode), self.period_seconds,
                os.path.join(run_dir, "checkpoint"), list(files), getattr(self, "pickle_copy", True))


def _engine_mode(checkpoint_mode):
    """The engine's CheckpointMode of Parsl's checkpoint_mode: the engine alone knows the names,
    and raises ConfigurationError naming the valid ones for any other."""
    return _native.checkpoint_mode(None if checkpoint_mode is None else str(checkpoint_mode))


def _period_seconds(period) -> float:
    if isinstance(period, (int, float)) and not isinstance(period, bool) and period > 0:
        return float(period)
    try:
        h, m, s = (int(x) for x in str(period).split(":"))
        seconds = h * 3600 + m * 60 + s
    except ValueError:
        seconds = 0
    if seconds <= 0:
        raise ConfigurationError(f"invalid checkpoint_period {period!r}: expected HH:MM:SS or seconds > 0")
    return float(seconds)


def get_all_checkpoints(rundir: str = "runinfo") -> list:
    """The checkpoint directories of every run under rundir (<rundir>/NNN/checkpoint), oldest
    first: a value for checkpoint_files."""
    if not os.path.isdir(rundir):
        return []
    found = []
    for run in sorted(os.listdir(rundir)):
        path = os.path.abspath(os.path.join(rundir, run, "checkpoint"))
        if os.path.isdir(path):
            found.append(path)
    return found


def get_last_checkpoint(rundir: str = "runinfo") -> list:
    """The checkpoint of the most recent run under rundir that has one, as a list of 0 or 1
    paths. Checkpoints are per run: earlier runs' results are not in it (see get_all_checkpoints)."""
    if not os.path.isdir(rundir):
        return []
    for run in sorted((d for d in os.listdir(rundir) if d.isdigit()), key=int, reverse=True):
        path = os.path.abspath(os.path.join(rundir, run, "checkpoint"))
        if os.path.isdir(path):
            return [path]
    return []
