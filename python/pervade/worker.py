"""A Python worker of pervade-pool: runs Python tasks one at a time.

    python -m pervade.worker --fd N --rank R [--pool-id ID] [--block-id ID] [--log-level L] [--log-file F]

Talks to the pool over the inherited socket N (one end of a socketpair) with length-prefixed
msgpack frames (docs/protocol.md, "Pool ⇄ worker"): sends READY [2, rank, pid] at start, then
answers each TASK [1, task_id, fn_hash, fn, payload, inputs, after, buffer_sizes] (the raw
bytes of the out-of-band buffers follow the frame) with RESULT [3, task_id, status, payload,
buffer_sizes] (a big bytes-like result's buffer follows it the same way).
A TASK with `after` pairs [input, task_id] is a follower: input `input` is the value of this
worker's previous task `task_id`, still in memory; if that task did not succeed here (or its
value was not kept), the follower is answered with status 4 (not started). EXIT [4] or the end
of the connection: exit status 0. A frame that is not one of these messages: an error in the
log and exit status 2.

Nothing is written to stdout (it belongs to the tasks). The worker logs to stderr at --log-level
(a number, Python's levels; default WARNING: stderr only on errors); pervade-pool passes its own
level (docs/logging.md).
"""

from __future__ import annotations

import argparse
import logging
import os
import pickle
import signal
import socket
import struct
import sys

import msgpack

from . import parsl_imports
from .errors import AppTimeout
from .serialize import (Loaded, format_traceback, load_call, load_value, serialize_exception, serialize_result)

# Named, not __name__: pools run this module as __main__ (python -m pervade.worker).
logger = logging.getLogger("pervade.worker")

TASK, READY, RESULT, EXIT = 1, 2, 3, 4
SUCCESS, FAILED, NOT_STARTED = 0, 1, 4
_KEEP_VALUE_BELOW = 1 << 24  # results up to this pickled size (buffers included) stay in memory for a follower
EXIT_OK, EXIT_PROTOCOL = 0, 2

_HEADER = struct.Struct("<I")
_SMALL_FRAME = 1 << 16  # below this the header and body go out in one send
_LARGE_FRAME = 1 << 26  # above this a frame is read in pieces
_RECV_SIZE = 1 << 16
_unpackb = msgpack.unpackb
_loads = pickle.loads


class ProtocolError(Exception):
    """The pool sent something that is not a valid frame."""


class _Connection:
    """Frames over the pool's socket. Reads go through one buffer (a recv brings in every frame
    the pool has queued: with short tasks that is several TASKs), writes are one sendall per
    frame with a reused msgpack Packer."""

    def __init__(self, fd: int):
        self.sock = socket.socket(fileno=fd)
        # Processes started by tasks must not hold the pool's socket open.
        self.sock.set_inheritable(False)
        self._buffer = b""  # received, not yet parsed from _pos on
        self._pos = 0
        self._packer = msgpack.Packer(use_bin_type=True)

    def read(self):
        """The next message (a list), or None at the end of the connection."""
        buffer, pos = self._buffer, self._pos
        if len(buffer) - pos < 4:
            buffer, pos = self._fill(4)
            if len(buffer) - pos < 4:
                if len(buffer) == pos:
                    return None
                raise ProtocolError("connection closed in the middle of a frame header")
        (length,) = _HEADER.unpack_from(buffer, pos)
        start = pos + 4
        end = start + length
        if end <= len(buffer):
            body = buffer[start:end]
            self._pos = end
        else:
            body = self._read_body(length)
        try:
            message = _unpackb(body, raw=False)
        except Exception as e:  # noqa: BLE001 - any decoding failure is a broken frame
            raise ProtocolError(f"frame of {length} bytes is not msgpack: {type(e).__name__}: {e}") from None
        if type(message) is not list or not message or type(message[0]) is not int:
            raise ProtocolError(f"frame is not a message (msgpack array starting with its type): {message!r:.200}")
        return message

    def read_buffer(self, size: int) -> bytes:
        """The raw bytes of an out-of-band buffer that follow a TASK frame: what is buffered,
        then the rest straight from the socket into one bytes object (recv with MSG_WAITALL)."""
        buffer, pos = self._buffer, self._pos
        have = len(buffer) - pos
        if have >= size:
            self._pos = pos + size
            return buffer[pos:pos + size]
        prefix = buffer[pos:]
        self._buffer, self._pos = b"", 0
        pieces, left = [prefix] if prefix else [], size - have
        while left:
            try:
                piece = self.sock.recv(min(left, _LARGE_FRAME), socket.MSG_WAITALL)
            except ConnectionResetError:
                piece = b""
            if not piece:
                raise ProtocolError(f"connection closed in the middle of an out-of-band buffer ({size - left} of "
                                    f"{size} bytes)")
            pieces.append(piece)
            left -= len(piece)
        return pieces[0] if len(pieces) == 1 else b"".join(pieces)

    def _recv(self) -> bytes:
        try:
            return self.sock.recv(_RECV_SIZE)
        except ConnectionResetError:
            return b""

    def _fill(self, need: int):
        """Reads until `need` bytes are buffered (fewer at the end of the connection)."""
        buffer = self._buffer[self._pos:]
        while len(buffer) < need:
            data = self._recv()
            if not data:
                break
            buffer = buffer + data if buffer else data
        self._buffer, self._pos = buffer, 0
        return buffer, 0

    def _read_body(self, length: int) -> bytes:
        """A frame body longer than what is buffered: the buffered part, then the socket."""
        start = self._pos + 4
        pieces = [self._buffer[start:]]
        left = length - len(pieces[0])
        self._buffer, self._pos = b"", 0
        # A large (or corrupt) length is read in pieces rather than allocated all up front.
        while left:
            piece = bytearray(min(left, _LARGE_FRAME))
            view, got = memoryview(piece), 0
            while got < len(piece):
                try:
                    n = self.sock.recv_into(view[got:])
                except ConnectionResetError:
                    n = 0
                if not n:
                    break
                got += n
            pieces.append(piece[:got] if got < len(piece) else piece)
            left -= got
            if got < len(piece):
                raise ProtocolError(f"connection closed in the middle of a frame ({length - left} of {length} bytes)")
        return b"".join(pieces)

    def write(self, message, buffers=()) -> None:
        """One frame, then the raw bytes of its out-of-band buffers (sent from their memory)."""
        body = self._packer.pack(message)
        header = _HEADER.pack(len(body))
        if len(body) < _SMALL_FRAME:
            self.sock.sendall(header + body)
        else:
            self.sock.sendall(header)
            self.sock.sendall(body)
        for buffer in buffers:
            self.sock.sendall(buffer)

    def close(self) -> None:
        self.sock.close()


def _check_task(message):
    """Validates a TASK message; returns its fields."""
    if len(message) != 9:
        raise ProtocolError(f"TASK has {len(message) - 1} fields, expected 8")
    _, task_id, fn_hash, fn, payload, inputs, after, buffer_sizes, placement = message
    # msgpack gives exact ints, bytes (bin) and lists: exact type checks suffice (and a bool is not an int).
    if type(task_id) is not int or task_id < 0:
        raise ProtocolError(f"TASK task_id is not an unsigned integer: {task_id!r:.100}")
    if type(fn_hash) is not bytes or not (fn is None or type(fn) is bytes) or type(payload) is not bytes:
        raise ProtocolError(f"TASK {task_id}: fn_hash, fn and payload must be bin (fn may be nil)")
    if type(inputs) is not list or (inputs and not all(type(b) is bytes for b in inputs)):
        raise ProtocolError(f"TASK {task_id}: inputs must be an array of bin")
    if type(after) is not list or (after and not all(
            type(a) is list and len(a) == 2 and all(type(x) is int and x >= 0 for x in a) for a in after)):
        raise ProtocolError(f"TASK {task_id}: after must be an array of [input, task_id] pairs")
    if type(buffer_sizes) is not list or (buffer_sizes and not all(
            type(n) is int and n >= 0 for n in buffer_sizes)):
        raise ProtocolError(f"TASK {task_id}: buffer sizes must be an array of unsigned integers")
    if placement is not None and not (
            type(placement) is list and len(placement) == 3 and type(placement[0]) is list
            and type(placement[1]) is list and type(placement[2]) is list
            and all(type(c) is int and c >= 0 for c in placement[0])
            and all(type(a) is str for a in placement[1])
            and all(type(v) is list and len(v) == 2 and type(v[0]) is str and type(v[1]) is str
                    for v in placement[2])):
        raise ProtocolError(f"TASK {task_id}: placement must be nil or [[cpu, ...], [accelerator id, ...], "
                            "[[name, value], ...]]")
    return task_id, fn_hash, fn, payload, inputs, after, buffer_sizes, placement


# What a task that was given accelerators of its own sees them through (as the pool sets them
# for a worker pinned to one accelerator).
_ACCELERATOR_VARIABLES = ("CUDA_VISIBLE_DEVICES", "ROCR_VISIBLE_DEVICES", "ZE_AFFINITY_MASK")


class _FunctionLoadFailed:
    """Cache entry for a function whose bytes could not be unpickled: every task using its
    hash fails with the same error instead of 'no function for hash'."""

    def __init__(self, exc: BaseException, text: str):
        self.exc = exc
        self.text = text


def _call_with_walltime(fn, seconds, args, kwargs):
    """fn(*args, **kwargs), with AppTimeout raised in it once it has run `seconds`. A SIGALRM
    timer (tasks run in the worker's main thread) rather than Parsl's asynchronous exception: the
    exception comes at the same point of Python code, and a function blocked in a system call
    (sleep, a socket, a lock) is woken by the signal and stopped too, instead of running on."""

    def expired(signum, frame):
        raise AppTimeout(f"Function {getattr(fn, '__name__', 'app')} exceeded its walltime of {seconds} s")

    previous = signal.signal(signal.SIGALRM, expired)
    signal.setitimer(signal.ITIMER_REAL, float(seconds))
    try:
        return fn(*args, **kwargs)
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


class Worker:
    def __init__(self, connection: _Connection, rank: int):
        self.connection = connection
        self.rank = rank
        self.functions: dict[bytes, object] = {}
        self.last = None  # (task_id, value) of the previous task, when it succeeded

    def serve(self) -> int:
        """Runs tasks until EXIT or the end of the connection; returns the exit status."""
        read, write, run = self.connection.read, self.connection.write, self.run  # the loop runs per task
        try:
            write([READY, self.rank, os.getpid()])
            while True:
                message = read()
                if message is None:
                    return EXIT_OK
                kind = message[0]
                if kind == TASK:
                    task_id, fn_hash, fn, payload, inputs, after, buffer_sizes, placement = _check_task(message)
                    # The bytes of its out-of-band buffers follow the frame: read them in any case.
                    buffers = [self.connection.read_buffer(n) for n in buffer_sizes] if buffer_sizes else ()
                    if after:
                        inputs = self._follow(after, inputs)
                        if inputs is None:
                            self.last = None
                            if fn is not None:
                                self._keep_function(fn_hash, fn)  # later tasks carry only the hash
                            write([RESULT, task_id, NOT_STARTED, b"the task it follows did not succeed on this worker", []])
                            continue
                    self.last = None
                    if placement is None:
                        status, result, result_buffers = run(task_id, fn_hash, fn, payload, inputs, buffers)
                    else:
                        status, result, result_buffers = self._run_placed(placement, task_id, fn_hash, fn, payload,
                                                                          inputs, buffers)
                    del buffers
                    _flush_std_streams()
                    if result_buffers:
                        write([RESULT, task_id, status, result, [b.nbytes for b in result_buffers]], result_buffers)
                        del result_buffers
                    else:
                        write([RESULT, task_id, status, result, []])
                elif kind == EXIT:
                    return EXIT_OK
                else:
                    raise ProtocolError(f"unknown message type {kind} (expected TASK={TASK} or EXIT={EXIT})")
        except ProtocolError as e:
            logger.error("worker rank %d pid %d: protocol error: %s", self.rank, os.getpid(), e)
            return EXIT_PROTOCOL
        except (BrokenPipeError, ConnectionResetError):
            return EXIT_OK  # the pool is gone

    def _run_placed(self, placement, *task):
        """Runs a task that asked for resources on the CPUs and accelerators the pool gave it
        (docs/htex.md, "Resources"), with the variables it gave it (an MPI task's nodes and
        launch prefixes, docs/mpi.md), then gives the worker its own back."""
        cpus, accelerators, variables = placement
        names = (*_ACCELERATOR_VARIABLES, *(name for name, _ in variables)) if variables else _ACCELERATOR_VARIABLES
        saved_env = {name: os.environ.get(name) for name in names}
        saved_cpus = os.sched_getaffinity(0) if cpus else None
        try:
            if cpus:
                try:
                    os.sched_setaffinity(0, cpus)
                except OSError as e:
                    logger.warning("task %d: cannot run on CPUs %s: %s", task[0], cpus, e)
            if accelerators:
                for name in _ACCELERATOR_VARIABLES:
                    os.environ[name] = ",".join(accelerators)
            for name, value in variables:
                os.environ[name] = value
            return self.run(*task)
        finally:
            if saved_cpus is not None:
                os.sched_setaffinity(0, saved_cpus)
            for name, value in saved_env.items():
                if value is None:
                    os.environ.pop(name, None)
                else:
                    os.environ[name] = value

    def _follow(self, after, inputs):
        """The inputs of a follower, with the previous task's value put in; None if it is not here."""
        last = self.last
        inputs = list(inputs)
        for index, task_id in after:
            if last is None or last[0] != task_id or index >= len(inputs):
                return None
            inputs[index] = Loaded(last[1])
        return inputs

    def _keep_function(self, fn_hash: bytes, fn_bytes) -> None:
        try:
            self._function(fn_hash, fn_bytes)
        except BaseException as e:  # noqa: BLE001 - cached: the first task that uses it reports it
            if isinstance(e, KeyboardInterrupt):
                raise

    def _function(self, fn_hash: bytes, fn_bytes):
        fn = self.functions.get(fn_hash)
        if fn is None:
            if fn_bytes is None:
                raise LookupError(f"worker has no function for hash {fn_hash.hex()} (the TASK carried no function "
                                  "and none was received with that hash before)")
            try:
                fn = load_value(fn_bytes)
            except BaseException as e:
                self.functions[fn_hash] = _FunctionLoadFailed(e, format_traceback(e))
                raise
            self.functions[fn_hash] = fn
        elif isinstance(fn, _FunctionLoadFailed):
            raise RuntimeError(f"the function (hash {fn_hash.hex()}) could not be unpickled on this worker: "
                               f"{type(fn.exc).__name__}: {fn.exc}\n{fn.text}")
        return fn

    def run(self, task_id, fn_hash, fn_bytes, payload, inputs, buffers=()):
        """Runs one task; returns (status, payload bytes, out-of-band buffers of the payload).
        Never raises for the task's sake."""
        fn = None
        try:
            fn = self.functions.get(fn_hash)
            if fn is None or type(fn) is _FunctionLoadFailed:
                fn = self._function(fn_hash, fn_bytes)
            # The dependencies' values (inputs) go where the payload refers to them, at any depth.
            args, kwargs = load_call(payload, inputs, buffers) if inputs or buffers else _loads(payload)
            if not kwargs:
                result = fn(*args)
            elif kwargs.get("walltime"):
                # Counted from here, where the task starts, as Parsl's timeout wrapper does: the
                # executor leaves walltime to the pool (a task queued there has not started).
                result = _call_with_walltime(fn, kwargs["walltime"], args, kwargs)
            else:
                result = fn(*args, **kwargs)
        except BaseException as e:  # noqa: BLE001 - SystemExit too: a task's sys.exit() is its failure
            if isinstance(e, KeyboardInterrupt):
                raise
            return FAILED, serialize_exception(e, format_traceback(e, _task_frames(e.__traceback__))), ()
        try:
            data, result_buffers = serialize_result(result)
        except BaseException as e:  # noqa: BLE001 - reported as the task's failure
            if isinstance(e, KeyboardInterrupt):
                raise
            name = getattr(fn, "__qualname__", None) or getattr(fn, "__name__", None) or type(fn).__name__
            error = TypeError(f"the result of task {task_id} ({name}) could not be pickled: it is a "
                              f"{type(result).__qualname__} object, and pickling failed with "
                              f"{type(e).__name__}: {e}")
            return FAILED, serialize_exception(error, format_traceback(e)), ()
        if (len(data) + sum(b.nbytes for b in result_buffers) if result_buffers else len(data)) < _KEEP_VALUE_BELOW:
            self.last = (task_id, result)
        return SUCCESS, data, result_buffers


def _task_frames(tb):
    """Skips the worker's own frames at the top of a task's traceback."""
    while tb is not None and tb.tb_next is not None and tb.tb_frame.f_code in _OWN_CODE:
        tb = tb.tb_next
    return tb


_OWN_CODE = {Worker.run.__code__}


def _flush_std_streams() -> None:
    try:
        sys.stdout.flush()
    except Exception:  # noqa: BLE001 - a task may have closed or replaced it
        pass
    try:
        sys.stderr.flush()
    except Exception:  # noqa: BLE001
        pass


def _set_environment(rank: int, pool_id: str | None, block_id: str | None) -> None:
    values = {"RANK": str(rank), "POOL_ID": pool_id, "BLOCK_ID": block_id}
    for suffix, value in values.items():
        if value is None:
            continue
        os.environ.setdefault(f"PERVADE_{'WORKER_' if suffix == 'RANK' else ''}{suffix}", value)
        os.environ.setdefault(f"PARSL_WORKER_{suffix}", value)


def _die_with_parent() -> None:
    """A worker must not outlive its pool: if the pool is killed (SIGKILL gives it no chance to
    stop its workers), Linux sends this process SIGKILL too (PR_SET_PDEATHSIG)."""
    parent = os.getppid()
    try:
        import ctypes
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGKILL, 0, 0, 0)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        return  # not Linux: the worker still exits when its socket closes
    if os.getppid() != parent:  # the pool died before the request took effect
        os._exit(0)


def _keep_big_buffers_on_the_heap() -> None:
    """Big arguments (a megabyte or more per task) are read into a new bytes object for each
    task: glibc would mmap and munmap each one (page faults and zeroed pages, several times the
    cost of reading it). Keep them on the heap instead, as pervade-pool does (mallopt)."""
    try:
        import ctypes
        libc = ctypes.CDLL(None, use_errno=True)
        libc.mallopt(-3, 32 << 20)   # M_MMAP_THRESHOLD
        libc.mallopt(-1, 128 << 20)  # M_TRIM_THRESHOLD
    except (OSError, AttributeError):
        pass  # not glibc: only slower


def _log_to_stderr(level: int, log_file: str | None) -> None:
    """This process is pervade's own: its "pervade" logger writes to stderr (the block's log) at
    the pool's level, and to log_file too (this worker's file in the block's log directory)."""
    from .log_utils import DEFAULT_FORMAT
    formatter = logging.Formatter(DEFAULT_FORMAT, datefmt="%Y-%m-%d %H:%M:%S")
    package = logging.getLogger("pervade")
    handlers = [logging.StreamHandler(sys.stderr)]
    if log_file:
        try:  # private, as everything under a run_dir (0600)
            fd = os.open(log_file, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o600)
            handlers.append(logging.StreamHandler(os.fdopen(fd, "a", buffering=1)))
        except OSError as e:
            print(f"pervade worker: cannot open {log_file}: {e}; logging to stderr only", file=sys.stderr)
    for handler in handlers:
        handler.setFormatter(formatter)
        package.addHandler(handler)
    package.setLevel(level)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m pervade.worker", description=__doc__.splitlines()[0])
    parser.add_argument("--fd", type=int, required=True, help="the inherited socket to the pool")
    parser.add_argument("--rank", type=int, required=True, help="this worker's rank within its pool")
    parser.add_argument("--pool-id", default=None)
    parser.add_argument("--block-id", default=None)
    parser.add_argument("--log-level", type=int, default=logging.WARNING)
    parser.add_argument("--log-file", default=None, help="also log to this file")
    options = parser.parse_args(argv)
    _log_to_stderr(options.log_level, options.log_file)
    _die_with_parent()
    _keep_big_buffers_on_the_heap()
    _set_environment(options.rank, options.pool_id, options.block_id)
    # A driver run by `pervade run` maps parsl imports to pervade; tasks' modules need it here too.
    parsl_imports.install_from_environment()
    try:
        connection = _Connection(options.fd)
    except OSError as e:
        logger.error("worker rank %d: cannot use fd %d: %s", options.rank, options.fd, e)
        return EXIT_PROTOCOL
    logger.info("worker rank %d pid %d of pool %s (block %s) started", options.rank, os.getpid(), options.pool_id,
                options.block_id)
    try:
        status = Worker(connection, options.rank).serve()
    finally:
        connection.close()
    logger.info("worker rank %d exiting with status %d", options.rank, status)
    return status


if __name__ == "__main__":
    sys.exit(main())
