"""pervade.worker as a real process, with the test acting as pervade-pool on the other end of
a socketpair; and pervade.serialize on its own."""

import os
import pickle
import socket
import struct
import subprocess
import sys
import threading
import types
from concurrent.futures import Future

import msgpack
import pytest

from pervade.data import DataFuture, File
from pervade._native import BoundApp
from pervade.dataflow.dflow import _NO_VALUE
from pervade.errors import InvalidResourceSpecification, ManagerLost, ParslError, RemoteError, WorkerLost
from pervade import futures as app_futures
from pervade.futures import AppFuture, PickledResult
from pervade.serialize import (deserialize_exception, encode_call, encode_call_finding_futures, load_value,
                               load_call, serialize_exception, serialize_function, serialize_payload,
                               serialize_value)

T = 30  # seconds: every read and every wait is bounded by this
TASK, READY, RESULT, EXIT = 1, 2, 3, 4
HERE = os.path.dirname(os.path.abspath(__file__))


# ---------------------------------------------------------------- task code, importable by the worker

def add(a, b=0):
    return a + b


def add_all(a, b, inputs=()):
    return a + b + sum(inputs)


def describe(*args, **kwargs):
    return args, kwargs


def raise_nested(message):
    def inner():
        raise ValueError(message)
    inner()


def raise_from(message):
    try:
        try:
            {}["missing"]
        except KeyError as e:
            raise OSError("disk") from e
    except OSError as e:
        raise ValueError(message) from e


def raise_from_unpicklable():
    try:
        raise LockedError("holds a lock")
    except LockedError as e:
        raise ValueError("cause cannot travel") from e


class CustomError(Exception):
    pass


def raise_custom(code):
    raise CustomError("custom", code)


class LockedError(Exception):
    """Cannot be pickled, even by cloudpickle: it holds a lock."""

    def __init__(self, message):
        super().__init__(message)
        self.lock = threading.Lock()


def raise_locked():
    raise LockedError("holds a lock")


class BadInitError(Exception):
    """Pickles, but does not unpickle: __init__ does not accept its own args."""

    def __init__(self, a, b):
        super().__init__(f"{a}/{b}")


def raise_bad_init():
    raise BadInitError(1, 2)


def return_lock():
    return threading.Lock()


def call_exit(code):
    sys.exit(code)


def environment(*names):
    return {name: os.environ.get(name) for name in names}


def shout(text):
    print(text)
    return len(text)


def fd_visible_to_child(fd):
    """Exit status of a child process (started without closing fds) that fstat()s fd."""
    return subprocess.run([sys.executable, "-c", f"import os; os.fstat({fd})"], close_fds=False,
                          stderr=subprocess.DEVNULL).returncode


def size_and_echo(data):
    return len(data), data


def class_name(obj):
    return type(obj).__name__, obj.value


def identity(*args, **kwargs):
    return args, kwargs


def same_object(a, b):
    return a is b


class Holder:
    def __init__(self, item):
        self.item = item


def held(holder):
    return holder.item


class SelfPickledFuture(Future):
    """A Future whose class defines its own pickling: an ordinary argument, not a dependency."""

    def __init__(self, tag):
        super().__init__()
        self.tag = tag

    def __reduce__(self):
        return SelfPickledFuture, (self.tag,)


def tag_of(f):
    return f.tag


# ---------------------------------------------------------------- the pool's side


class Pool:
    """Starts a worker and speaks the pool's side of the protocol."""

    def __init__(self, tmp_path, rank=3, args=(), env=None):
        self.sock, child = socket.socketpair()
        self.sock.settimeout(T)
        self.fd = child.fileno()
        environment = dict(os.environ if env is None else env)
        environment["PYTHONPATH"] = os.pathsep.join(filter(None, [HERE, environment.get("PYTHONPATH")]))
        self.stdout_path = tmp_path / "worker.stdout"
        self.stderr_path = tmp_path / "worker.stderr"
        with open(self.stdout_path, "wb") as out, open(self.stderr_path, "wb") as err:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "pervade.worker", "--fd", str(self.fd), "--rank", str(rank), *args],
                pass_fds=[self.fd], stdin=subprocess.DEVNULL, stdout=out, stderr=err, env=environment)
        child.close()
        self.sent = set()

    # frames
    def _recv_exact(self, n):
        data = bytearray()
        while len(data) < n:
            chunk = self.sock.recv(n - len(data))
            if not chunk:
                raise EOFError(f"worker closed the connection ({len(data)} of {n} bytes)")
            data += chunk
        return bytes(data)

    def recv(self):
        (length,) = struct.unpack("<I", self._recv_exact(4))
        return msgpack.unpackb(self._recv_exact(length), raw=False)

    def send_raw(self, body: bytes):
        self.sock.sendall(struct.pack("<I", len(body)) + body)

    def send(self, message):
        self.send_raw(msgpack.packb(message, use_bin_type=True))

    # tasks
    def submit(self, task_id, fn, args=(), kwargs=None, plan=None, inputs=(), send_fn=None, payload=None, after=(),
               buffers=None, placement=None):
        fn_hash, fn_bytes = serialize_function(fn)
        if send_fn is None:
            send_fn = fn_hash not in self.sent
        self.sent.add(fn_hash)
        if payload is None:
            buffers = []
            payload = serialize_payload(args, kwargs, plan, name=getattr(fn, "__name__", "fn"), buffers=buffers)
        buffers = [bytes(b) for b in buffers or ()]
        self.send([TASK, task_id, fn_hash, fn_bytes if send_fn else None, payload, list(inputs),
                   [list(a) for a in after], [len(b) for b in buffers], placement])
        for b in buffers:  # the raw bytes of the out-of-band buffers follow the frame
            self.sock.sendall(b)

    def run_found(self, task_id, fn, args=(), kwargs=None, values=None):
        """Encodes fn(*args, **kwargs) as at submission (futures found at any depth), sends it with
        values[future] as each found future's input; returns (status, payload)."""
        (fn_hash, _, payload, _, buffers, _), futures = encode_call_finding_futures(fn, args, kwargs, fn.__name__)
        inputs = [serialize_value(values[id(f)]) for f in futures or ()]
        self.submit(task_id, fn, payload=payload, inputs=inputs, buffers=buffers)
        return self.result(task_id)

    def result(self, task_id):
        message = self.recv()
        assert message[:2] == [RESULT, task_id], message
        status, payload = message[2], message[3]
        assert isinstance(payload, bytes)
        return status, payload

    def call(self, task_id, fn, *args, **kwargs):
        """Runs fn(*args, **kwargs) on the worker; its value, or raises its exception."""
        self.submit(task_id, fn, args, kwargs)
        status, payload = self.result(task_id)
        if status == 0:
            return load_value(payload)
        assert status == 1
        raise deserialize_exception(payload)

    def ready(self):
        message = self.recv()
        assert message[0] == READY, message
        return message

    def wait(self):
        return self.proc.wait(timeout=T)

    def stderr(self):
        return self.stderr_path.read_text()

    def stdout(self):
        return self.stdout_path.read_text()

    def close(self):
        """Always leaves the process reaped (killed if it outlives the timeout)."""
        try:
            self.sock.close()
            try:
                self.proc.wait(timeout=T)
            except subprocess.TimeoutExpired:
                pass
        finally:
            if self.proc.poll() is None:
                self.proc.kill()
                self.proc.wait(timeout=T)


@pytest.fixture
def start(tmp_path):
    pools = []

    def make(**kwargs):
        directory = tmp_path / f"worker{len(pools)}"
        directory.mkdir()
        pool = Pool(directory, **kwargs)
        pools.append(pool)
        return pool

    yield make
    for pool in pools:
        pool.close()
    for pool in pools:
        assert pool.proc.poll() is not None


@pytest.fixture
def pool(start):
    """A worker that has said READY."""
    p = start()
    p.ready()
    return p


# ---------------------------------------------------------------- start and stop


def test_ready_names_rank_and_pid(start):
    p = start(rank=7)
    assert p.ready() == [READY, 7, p.proc.pid]


def test_exit_message_ends_the_worker_with_status_0(pool):
    assert pool.call(1, add, 1, 2) == 3
    pool.send([EXIT])
    assert pool.wait() == 0
    assert pool.stderr() == "" and pool.stdout() == ""


def test_end_of_connection_ends_the_worker_with_status_0(pool):
    pool.sock.close()
    assert pool.wait() == 0
    assert pool.stderr() == ""


@pytest.mark.parametrize("body, complaint", [
    (b"\xc1", "not msgpack"),                                  # a byte msgpack never uses
    (b"", "not msgpack"),                                      # an empty frame
    (msgpack.packb([1, 2, 3]) + b"\x00", "not msgpack"),      # extra data after the message
    (msgpack.packb({"type": 1}), "not a message"),            # not an array
    (msgpack.packb([]), "not a message"),
    (msgpack.packb(["task"]), "not a message"),
    (msgpack.packb([99]), "unknown message type 99"),
    (msgpack.packb([READY, 0, 1]), "unknown message type 2"),
    (msgpack.packb([TASK, 1, b"h"]), "TASK has 2 fields"),
    (msgpack.packb([TASK, 1, b"h", None, b"", [], []]), "TASK has 6 fields"),
    (msgpack.packb([TASK, 1, "not bin", None, b"", [], [], [], None]), "must be bin"),
    (msgpack.packb([TASK, -1, b"h", None, b"", [], [], [], None]), "unsigned"),
    (msgpack.packb([TASK, 1, b"h", None, b"", [1], [], [], None]), "array of bin"),
    (msgpack.packb([TASK, 1, b"h", None, b"", [], [[0]], [], None]), "after must be"),
    (msgpack.packb([TASK, 1, b"h", None, b"", [], [[0, -1]], [], None]), "after must be"),
    (msgpack.packb([TASK, 1, b"h", None, b"", [], None, [], None]), "after must be"),
    (msgpack.packb([TASK, 1, b"h", None, b"", [], [], [-1], None]), "buffer sizes"),
    (msgpack.packb([TASK, 1, b"h", None, b"", [], [], b"\x01", None]), "buffer sizes"),
    (msgpack.packb([TASK, 1, b"h", None, b"", [], [], [], [[-1], [], []]]), "placement"),
    (msgpack.packb([TASK, 1, b"h", None, b"", [], [], [], [[0], [1], []]]), "placement"),
    (msgpack.packb([TASK, 1, b"h", None, b"", [], [], [], [[0], []]]), "placement"),
    (msgpack.packb([TASK, 1, b"h", None, b"", [], [], [], [[], [], [["A"]]]]), "placement"),
], ids=["bad-byte", "empty", "extra-data", "map", "empty-array", "str-type", "unknown-type", "ready-type",
        "short-task", "no-buffers", "str-hash", "negative-id", "int-input", "short-after", "negative-after",
        "nil-after", "negative-size", "bin-sizes", "negative-cpu", "int-accelerator", "two-part-placement",
        "bad-variable"])
def test_a_broken_frame_ends_the_worker_with_status_2(pool, body, complaint):
    pool.send_raw(body)
    assert pool.wait() == 2
    assert "protocol error" in pool.stderr() and complaint in pool.stderr()
    assert pool.stdout() == ""


def test_a_frame_cut_short_ends_the_worker_with_status_2(pool):
    pool.sock.sendall(struct.pack("<I", 100) + b"\x93\x01")
    pool.sock.shutdown(socket.SHUT_WR)
    assert pool.wait() == 2
    assert "middle of a frame" in pool.stderr()


def test_an_out_of_band_buffer_cut_short_ends_the_worker_with_status_2(pool):
    fn_hash, fn_bytes = serialize_function(len)
    pool.send([TASK, 1, fn_hash, fn_bytes, serialize_payload((b"x",), None, None), [], [], [1000], None])
    pool.sock.sendall(b"y" * 10)
    pool.sock.shutdown(socket.SHUT_WR)
    assert pool.wait() == 2
    assert "middle of an out-of-band buffer (10 of 1000 bytes)" in pool.stderr()


# ---------------------------------------------------------------- big arguments


class HoldsBytes:
    def __init__(self, data):
        self.data = data

    def __eq__(self, other):
        return type(other) is HoldsBytes and other.data == self.data


def describe_argument(value, *more, key=None):
    """What the function received: type, size and a checksum of each argument."""
    import hashlib
    out = []
    for v in (value, *more, *([key] if key is not None else [])):
        raw = v.data if isinstance(v, HoldsBytes) else v
        raw = raw.tobytes() if isinstance(raw, memoryview) else bytes(raw)
        out.append((type(v).__name__, len(raw), hashlib.sha1(raw).hexdigest(),
                    (v.format, v.shape, v.readonly) if isinstance(v, memoryview) else None))
    return out


def _expected(*values):
    return describe_argument(*values)


@pytest.mark.parametrize("size", [64 * 1024, 1 << 20, 50 << 20])
def test_big_bytes_travel_out_of_band_and_arrive_intact(pool, size):
    data = os.urandom(1024) * (size // 1024)
    (_, _, payload, _, buffers, _), _ = encode_call_finding_futures(describe_argument, (data,), None, "d")
    assert len(buffers) == 1 and buffers[0].nbytes == size, "the bytes went out of band"
    assert len(payload) < 1024, "and not into the payload"
    assert pool.run_found(1, describe_argument, (data,), values={}) == (0, serialize_value(_expected(data)))


def test_every_kind_of_big_buffer_arrives_as_what_was_passed(pool):
    import array
    big = os.urandom(300_000)
    ints = memoryview(array.array("i", range(100_000)))
    cases = [
        ((bytearray(big),), None),
        ((memoryview(big),), None),                    # read-only view of bytes
        ((memoryview(bytearray(big)),), None),         # writable view
        ((ints,), None),                               # format "i"
        ((ints.cast("B").cast("i", [1000, 100]),), None),  # two dimensions
        ((b"small", big), {"key": bytearray(big[:70_000])}),
        ((memoryview(big)[::2],), None),               # not contiguous: in band (cloudpickle sends its bytes)
        ((HoldsBytes(big),), None),                    # big bytes inside an object: pickled in band
    ]
    for i, (args, kwargs) in enumerate(cases):
        status, payload = pool.run_found(i, describe_argument, args, kwargs, values={})
        got, expected = load_value(payload), describe_argument(*args, **(kwargs or {}))
        if i == 6:
            assert status == 0 and got[0][1:3] == expected[0][1:3]  # the same bytes
            continue
        assert (status, got) == (0, expected), i


def test_big_buffers_beside_futures_go_out_of_band_too(pool):
    data = b"z" * (1 << 20)
    a = AppFuture(None, BoundApp(print, None, "producer"))
    (_, _, payload, _, buffers, _), futures = encode_call_finding_futures(add, (data, [a]), None, "add")
    assert futures == [a] and len(buffers) == 1 and len(payload) < 1024
    status, value = pool.run_found(1, describe_argument, (data, [a]), values={id(a): 5})
    assert status == 0


# ---------------------------------------------------------------- running tasks


def test_module_function_goes_by_reference(pool):
    fn_hash, fn_bytes = serialize_function(add)
    assert fn_bytes == pickle.dumps(add, protocol=5)  # a name, not code
    assert len(fn_bytes) < 100 and b"test_worker" in fn_bytes
    assert pool.call(1, add, 2, b=3) == 5
    assert pool.call(2, add, "a", "b") == "ab"


def test_closure_and_lambda_go_by_value(pool):
    offset = 100

    def shifted(x):
        return x + offset

    square = lambda x: x * x  # noqa: E731
    for fn in (shifted, square):
        with pytest.raises(Exception):
            pickle.dumps(fn)
    assert pool.call(1, shifted, 1) == 101
    assert pool.call(2, square, 12) == 144


def test_function_is_sent_once_then_only_its_hash(pool):
    def triple(x):
        return 3 * x

    first = serialize_function(triple)
    assert serialize_function(triple) is not None and serialize_function(triple)[1] is first[1]  # cached
    pool.submit(1, triple, (2,), send_fn=True)
    assert load_value(pool.result(1)[1]) == 6
    pool.submit(2, triple, (5,), send_fn=False)
    assert pool.result(2) == (0, serialize_value(15))
    pool.submit(3, triple, (7,), send_fn=True)  # sent again: harmless
    assert load_value(pool.result(3)[1]) == 21


def test_unknown_hash_without_function_is_an_error_result(pool):
    pool.send([TASK, 1, b"\x01" * 20, None, serialize_payload((), None, None), [], [], [], None])
    status, payload = pool.result(1)
    assert status == 1
    exc = deserialize_exception(payload)
    assert isinstance(exc, LookupError)
    assert "no function for hash " + "01" * 20 in str(exc)
    assert pool.call(2, add, 1, 1) == 2  # still serving


def test_function_that_cannot_be_loaded_fails_each_of_its_tasks(pool, monkeypatch):
    module = types.ModuleType("no_such_mod_")
    exec("def fn():\n    return 1\n", module.__dict__)
    monkeypatch.setitem(sys.modules, "no_such_mod_", module)  # here, not on the worker
    fn_hash, fn_bytes = serialize_function(module.fn)
    assert b"no_such_mod_" in fn_bytes and len(fn_bytes) < 100
    pool.send([TASK, 1, fn_hash, fn_bytes, serialize_payload((), None, None), [], [], [], None])
    status, payload = pool.result(1)
    assert status == 1 and isinstance(deserialize_exception(payload), ModuleNotFoundError)
    pool.send([TASK, 2, fn_hash, None, serialize_payload((), None, None), [], [], [], None])
    status, payload = pool.result(2)
    assert status == 1
    exc = deserialize_exception(payload)
    assert "could not be unpickled" in str(exc) and "no_such_mod_" in str(exc)


def test_dependency_values_go_where_the_plan_says(pool):
    # add_all(<dep 0>, b=<dep 1>, inputs=[1, <dep 2>, <File replacing dep 3>... ])
    values = [10, 20, 300]
    plan = [(0, 0, 0, _NO_VALUE), (1, "b", 1, _NO_VALUE), (2, 1, 2, _NO_VALUE)]
    pool.submit(1, add_all, (None,), {"b": None, "inputs": [1, None]}, plan,
                [serialize_value(v) for v in values])
    status, payload = pool.result(1)
    assert (status, load_value(payload)) == (0, 10 + 20 + 1 + 300)


def test_plan_replacement_file_is_passed_instead_of_the_value(pool):
    f = File("/tmp/some/out.txt")
    plan = [(0, 1, 0, _NO_VALUE), (2, 0, 1, f)]
    pool.submit(1, describe, ("first", None), {"inputs": [None]}, plan,
                [serialize_value("from dep"), serialize_value(0)])
    args, kwargs = load_value(pool.result(1)[1])
    assert args == ("first", "from dep")
    assert isinstance(kwargs["inputs"][0], File) and kwargs["inputs"][0].filepath == "/tmp/some/out.txt"


def test_planned_positions_travel_as_references_to_their_inputs():
    payload = serialize_payload((1, 5), {"k": 2}, [(0, 0, 0, _NO_VALUE), (1, "k", 1, File("/x"))])
    args, kwargs = load_call(payload, [serialize_value("v"), serialize_value("unused")])
    assert args == ("v", 5) and kwargs["k"].filepath == "/x"
    assert load_value(serialize_payload([], {}, [])) == ((), None)
    with pytest.raises(RuntimeError, match="refers to its dependency 0"):
        load_value(payload)  # the references need the TASK's inputs


def test_nested_dependencies_are_replaced_by_their_values_on_the_worker(pool):
    a, b, c = Future(), Future(), Future()
    values = {id(a): 1, id(b): [2, 3], id(c): {"x": 4}}
    args = ([a, (b, {"deep": [[c]]})], {"k": a})
    status, payload = pool.run_found(1, identity, args, {"kw": {"set": frozenset([1]), "f": b}}, values)
    assert status == 0
    assert load_value(payload) == (([1, ([2, 3], {"deep": [[{"x": 4}]]})], {"k": 1}),
                                    {"kw": {"set": frozenset([1]), "f": [2, 3]}})


def test_futures_in_sets_and_object_attributes_are_found(pool):
    a, b = Future(), Future()
    values = {id(a): "in a set", id(b): "in an attribute"}
    status, payload = pool.run_found(1, identity, ({a}, Holder(b)), None, values)
    assert status == 0
    (found_set, holder), _ = load_value(payload)
    assert found_set == {"in a set"} and holder.item == "in an attribute"


def test_the_same_future_twice_is_one_input_and_one_object():
    a = Future()
    (_, _, payload, _, _, _), futures = encode_call_finding_futures(same_object, (a, [a]), None, "same_object")
    assert futures == [a]
    args, _ = load_call(payload, [serialize_value([1, 2])])
    assert args[0] is args[1][0] and args[0] == [1, 2]


def test_data_future_travels_as_its_file(pool):
    parent = Future()
    df = DataFuture(parent, File("/data/out.txt"))
    status, payload = pool.run_found(1, held, (Holder(df),), None, {id(df): "never read"})
    assert status == 0
    got = load_value(payload)
    assert isinstance(got, File) and got.filepath == "/data/out.txt"


def test_futures_are_found_by_the_cloudpickle_fallback(pool):
    a = Future()
    status, payload = pool.run_found(1, identity, (lambda x: x + 1, [a]), None, {id(a): 41})
    assert status == 0
    (fn, [value]), _ = load_value(payload)
    assert fn(value) == 42


def test_calls_without_futures_are_plain_pickles():
    (_, _, payload, _, _, _), futures = encode_call_finding_futures(add, (1, [2.5, "x"]), {"b": (3,)}, "add")
    assert futures is None and payload == pickle.dumps(((1, [2.5, "x"]), {"b": (3,)}), protocol=5)


def test_a_future_that_pickles_itself_is_an_ordinary_argument(pool):
    (_, _, payload, _, _, _), futures = encode_call_finding_futures(tag_of, (SelfPickledFuture("mine"),), None, "tag_of")
    assert futures is None
    pool.submit(1, tag_of, payload=payload)
    assert load_value(pool.result(1)[1]) == "mine"


def test_an_app_future_refuses_to_be_pickled():
    with pytest.raises(TypeError, match="AppFuture cannot be pickled"):
        pickle.dumps(AppFuture(None, BoundApp(print, None, "some_app")))


def test_a_nested_future_of_an_app_encoded_at_launch_is_a_type_error():
    with pytest.raises(TypeError, match="cannot serialize the arguments of my_app: .* nested inside"):
        serialize_payload(([Future()],), None, None, name="my_app")


def test_an_input_that_cannot_be_unpickled_fails_the_task(pool):
    a = Future()
    (_, _, payload, _, _, _), _ = encode_call_finding_futures(identity, ([a],), None, "identity")
    pool.submit(1, identity, payload=payload, inputs=[b"not a pickle"])
    status, result = pool.result(1)
    assert status == 1 and isinstance(deserialize_exception(result), pickle.UnpicklingError)
    pool.submit(2, identity, payload=payload, inputs=[])  # no inputs: the reference cannot be resolved
    status, result = pool.result(2)
    assert status == 1 and "refers to its dependency 0" in str(deserialize_exception(result))
    assert pool.call(3, add, 1, 2) == 3


class PicklesACallWhilePickled:
    """Re-enters the call pickler from inside a pickle (it must not share its state)."""

    def __init__(self, inner):
        self.inner = inner

    def __reduce__(self):
        (_, _, payload, _, _, _), futures = encode_call_finding_futures(add, (self.inner, 1), None, "add")
        return bytes, (payload,)


def test_the_call_pickler_is_clean_after_a_failure_and_on_re_entry():
    a, b = Future(), Future()
    with pytest.raises(TypeError, match="cannot serialize the arguments of add"):
        encode_call_finding_futures(add, (a, [threading.Lock()]), None, "add")
    (_, _, payload, _, _, _), futures = encode_call_finding_futures(add, (a, PicklesACallWhilePickled(b)), None, "add")
    assert futures == [a]
    first, inner_payload = load_call(payload, [serialize_value(1)])[0]
    assert first == 1 and load_call(inner_payload, [serialize_value(2)]) == ((2, 1), None)


def test_pickled_result_is_loaded_once():
    r = PickledResult(pickle.dumps([1, 2]))
    first = r.load()
    assert first == [1, 2] and r.load() is first and r.data is None


def test_tasks_sent_in_one_write_are_answered_in_order(pool):
    # The pool writes a worker's share of short tasks at once; the worker answers each in turn,
    # including a frame cut across two writes.
    fn_hash, fn_bytes = serialize_function(add)
    frames = b""
    for i in range(5):
        body = msgpack.packb([TASK, 100 + i, fn_hash, fn_bytes if i == 0 else None,
                              serialize_payload((i, 10), None, None, "add"), [], [], [], None], use_bin_type=True)
        frames += struct.pack("<I", len(body)) + body
    pool.sock.sendall(frames[:-3])
    pool.sock.sendall(frames[-3:])
    for i in range(5):
        assert pool.result(100 + i) == (0, serialize_value(i + 10))
    assert pool.call(105, add, 1, b=2) == 3


def test_a_finished_futures_result_makes_no_condition():
    # Gathering a fan-out's results must not cost a Condition per future (pervade.futures).
    fut = AppFuture(None, BoundApp(print, None, "app"))
    app_futures.complete([fut, app_futures.RESULT, PickledResult(pickle.dumps([1]))])  # as the engine completes it
    assert fut.result() == [1] and fut.result() == [1]
    assert "_condition" not in fut.__dict__
    failed = AppFuture(None, BoundApp(print, None, "app"))
    app_futures.complete([failed, app_futures.EXCEPTION, ValueError("no")])
    with pytest.raises(ValueError, match="no"):
        failed.result()


def test_large_arguments_and_results(pool):
    data = os.urandom(3 << 20)
    assert pool.call(1, size_and_echo, data) == (len(data), data)


def test_an_object_of_a_class_from_main_travels_by_value(pool, monkeypatch):
    """The driver's __main__ is not the worker's: such objects go by value (cloudpickle)."""
    main = sys.modules["__main__"]
    thing = type("MainThing", (), {"__module__": "__main__", "__init__": lambda self, v: setattr(self, "value", v)})
    thing.__qualname__ = "MainThing"
    monkeypatch.setattr(main, "MainThing", thing, raising=False)
    assert pickle.loads(pickle.dumps(thing(1))).value == 1  # by reference works here...
    assert pool.call(1, class_name, thing(42)) == ("MainThing", 42)  # ...and by value there


# ---------------------------------------------------------------- failures


def test_exception_keeps_type_message_and_remote_traceback(pool):
    with pytest.raises(ValueError) as info:
        pool.call(1, raise_nested, "bad thing")
    assert str(info.value) == "bad thing"
    text = info.value.remote_traceback
    assert "in raise_nested" in text and "in inner" in text and "ValueError: bad thing" in text
    assert "pervade/worker.py" not in text  # the worker's own frames are left out
    assert any("Remote traceback" in note and "in inner" in note for note in info.value.__notes__)


def test_exception_keeps_its_chain_of_causes(pool):
    """`raise ... from e` in a task: the driver's exception has the same __cause__ chain (as
    Parsl's RemoteExceptionWrapper keeps it), so its traceback shows the causes."""
    with pytest.raises(ValueError) as info:
        pool.call(1, raise_from, "bad input")
    cause = info.value.__cause__
    assert type(cause) is OSError and str(cause) == "disk"
    assert type(cause.__cause__) is KeyError and cause.__cause__.__cause__ is None


def test_exception_whose_cause_cannot_travel_keeps_its_own_type(pool):
    with pytest.raises(ValueError, match="cause cannot travel") as info:
        pool.call(1, raise_from_unpicklable)
    assert info.value.__cause__ is None


def test_exception_of_a_test_module_class_keeps_its_type_and_args(pool):
    with pytest.raises(CustomError) as info:
        pool.call(1, raise_custom, 7)
    assert info.value.args == ("custom", 7)


def test_exception_from_a_closure_keeps_its_type(pool):
    class LocalError(Exception):
        pass

    def fail():
        raise LocalError("local")

    with pytest.raises(Exception) as info:
        pool.call(1, fail)
    assert type(info.value) is LocalError and str(info.value) == "local"  # cloudpickle keeps class identity


@pytest.mark.parametrize("fn, type_name, message", [
    (raise_locked, "test_worker.LockedError", "holds a lock"),
    (raise_bad_init, "test_worker.BadInitError", "1/2"),
])
def test_exception_that_cannot_travel_becomes_remote_error(pool, fn, type_name, message):
    with pytest.raises(RemoteError) as info:
        pool.call(1, fn)
    e = info.value
    assert isinstance(e, ParslError)
    assert (e.type_name, e.message) == (type_name, message)
    assert f"in {fn.__name__}" in e.traceback_text and e.remote_traceback == e.traceback_text
    assert str(e).startswith(f"{type_name}: {message}") and "Remote traceback:" in str(e)
    assert f"in {fn.__name__}" in str(e)
    assert pool.call(2, add, 1, 2) == 3


def test_result_that_cannot_be_pickled_is_an_error_result(pool):
    with pytest.raises(TypeError, match="result of task 1 \\(return_lock\\) could not be pickled") as info:
        pool.call(1, return_lock)
    assert "lock" in str(info.value)
    assert pool.call(2, add, 2, 2) == 4


@pytest.mark.parametrize("code", [0, 3, "message"])
def test_sys_exit_in_a_task_is_an_error_result_and_the_worker_goes_on(pool, code):
    with pytest.raises(SystemExit) as info:
        pool.call(1, call_exit, code)
    assert info.value.code == code
    assert "in call_exit" in info.value.remote_traceback
    assert pool.call(2, add, 20, 22) == 42
    assert pool.proc.poll() is None


def test_arguments_that_cannot_be_pickled_raise_type_error_naming_the_app():
    with pytest.raises(TypeError, match="^cannot serialize the arguments of my_app: "):
        serialize_payload((threading.Lock(),), None, None, name="my_app")


# ---------------------------------------------------------------- the task's process


def test_environment_variables_are_set_for_tasks(start):
    env = dict(os.environ)
    for name in ("PERVADE_WORKER_RANK", "PERVADE_POOL_ID", "PERVADE_BLOCK_ID", "PARSL_WORKER_RANK",
                 "PARSL_WORKER_POOL_ID", "PARSL_WORKER_BLOCK_ID"):
        env.pop(name, None)
    env["PARSL_WORKER_BLOCK_ID"] = "set-by-pool"  # already set: kept
    p = start(rank=5, args=("--pool-id", "pool-a", "--block-id", "9"), env=env)
    p.ready()
    seen = p.call(1, environment, "PERVADE_WORKER_RANK", "PERVADE_POOL_ID", "PERVADE_BLOCK_ID",
                  "PARSL_WORKER_RANK", "PARSL_WORKER_POOL_ID", "PARSL_WORKER_BLOCK_ID")
    assert seen == {"PERVADE_WORKER_RANK": "5", "PERVADE_POOL_ID": "pool-a", "PERVADE_BLOCK_ID": "9",
                    "PARSL_WORKER_RANK": "5", "PARSL_WORKER_POOL_ID": "pool-a",
                    "PARSL_WORKER_BLOCK_ID": "set-by-pool"}


def test_task_output_reaches_stdout_by_the_time_of_its_result(pool):
    assert pool.call(1, shout, "hello from the task") == 19
    assert pool.stdout() == "hello from the task\n"  # flushed before the RESULT was sent
    pool.send([EXIT])
    assert pool.wait() == 0
    assert pool.stdout() == "hello from the task\n" and pool.stderr() == ""


def test_processes_started_by_tasks_do_not_inherit_the_pool_socket(pool):
    assert pool.call(1, fd_visible_to_child, pool.fd) != 0
    assert pool.call(2, fd_visible_to_child, 0) == 0  # the check itself works


# ---------------------------------------------------------------- serialize and errors on their own


def test_function_cache_is_per_object_and_forgets_dead_functions():
    def make():
        def f():
            return 1
        return f

    f, g = make(), make()
    assert serialize_function(f)[1] is serialize_function(f)[1]
    assert serialize_function(f)[0] == serialize_function(g)[0]  # same code, same hash
    import pervade.serialize as s
    key = id(f)
    assert key in s._function_cache
    del f
    assert key not in s._function_cache


def test_bound_methods_and_partials_serialize():
    import functools

    class Adder:
        def __init__(self, n):
            self.n = n

        def add(self, x):
            return x + self.n

    for fn in (Adder(2).add, functools.partial(add, 40)):
        fn_hash, fn_bytes = serialize_function(fn)
        assert len(fn_hash) == 20
        assert load_value(fn_bytes)(2) in (4, 42)


def test_serialize_exception_round_trip_without_a_worker():
    try:
        raise KeyError("k")
    except KeyError as e:
        exc = deserialize_exception(serialize_exception(e))
    assert isinstance(exc, KeyError) and exc.args == ("k",)
    assert "raise KeyError" in exc.remote_traceback


def test_exception_that_cannot_be_unpickled_here_becomes_remote_error():
    data = pickle.dumps((RemoteError("x", "y", "tb"), "tb"))
    data = data.replace(b"pervade.errors", b"pervade.nowhere")
    exc = deserialize_exception(data)
    assert isinstance(exc, RemoteError) and "could not be unpickled" in str(exc)


def test_lost_errors_have_parsls_messages_and_pickle():
    w = WorkerLost(3, "node1")
    assert str(w) == "Task failure due to loss of worker 3 on host node1"
    assert str(WorkerLost(3, "node1", reason="killed by signal 9")).endswith(": killed by signal 9")
    m = ManagerLost(b"pool-7", "node2")
    assert str(m) == "Task failure due to loss of manager pool-7 on host node2"
    assert str(ManagerLost("pool-7", "node2")) == str(m)
    for e in (w, m, RemoteError("T", "m", "tb")):
        assert isinstance(e, ParslError)
        copy = pickle.loads(pickle.dumps(e))
        assert type(copy) is type(e) and str(copy) == str(e)
    assert pickle.loads(pickle.dumps(WorkerLost(1, "h", reason="r"))).reason == "r"




def test_encode_call_gives_hash_function_payload_priority_and_request():
    fn_hash, fn_bytes, payload, priority, buffers, request = encode_call(add, (1,), {"b": 2}, None, "add")
    assert buffers == [] and request is None
    assert (fn_hash, fn_bytes) == serialize_function(add)
    assert load_value(payload) == ((1,), {"b": 2}) and priority == 0
    spec = {"parsl_resource_specification": {"priority": 7}}
    assert encode_call(add, (), spec, None, "add")[3:] == (7, [], (0, 0, 0, "", 0, 0, 0, 0.0))
    spec = {"parsl_resource_specification": {"cores": 2, "memory": 500, "running_time": 3}}
    assert encode_call(add, (), spec, None, "add")[5] == (0, 0, 0, "", 2, 500, 0, 3.0)
    with pytest.raises(TypeError, match="priority of add must be an int"):
        encode_call(add, (), {"parsl_resource_specification": {"priority": "high"}}, None, "add")


# ---- followers: TASK `after` pairs take an input from the worker's previous task, in memory.

class Box:
    pass


_made = []  # on the worker: the boxes make_box returned


def make_box():
    _made.append(Box())
    return _made[-1]


def is_made_here(box):
    return box is _made[-1]


def raise_value_error():
    raise ValueError("no box")


def submit_follower(pool, task_id, fn, of_task):
    (fn_hash, _, payload, _, _, _), futures = encode_call_finding_futures(fn, (Future(),), None, fn.__name__)
    assert len(futures) == 1
    pool.submit(task_id, fn, payload=payload, inputs=[b""], after=[(0, of_task)])


def test_a_follower_gets_the_value_of_the_previous_task_in_memory(pool):
    assert isinstance(pool.call(1, make_box), Box)
    submit_follower(pool, 2, is_made_here, of_task=1)
    status, payload = pool.result(2)
    assert status == 0 and load_value(payload) is True
    # The same value sent as bytes is a copy: the follower above really used the one in memory.
    (fn_hash, _, payload, _, _, _), _ = encode_call_finding_futures(is_made_here, (Future(),), None, "is_made_here")
    pool.submit(3, is_made_here, payload=payload, inputs=[serialize_value(Box())])
    status, payload = pool.result(3)
    assert status == 0 and load_value(payload) is False


def test_a_follower_of_a_failed_or_other_task_is_not_started(pool):
    with pytest.raises(ValueError):
        pool.call(1, raise_value_error)
    submit_follower(pool, 2, is_made_here, of_task=1)
    assert pool.result(2)[0] == 4
    assert isinstance(pool.call(3, make_box), Box)
    submit_follower(pool, 4, is_made_here, of_task=1)  # not the previous task
    assert pool.result(4)[0] == 4
    # The function arrived with a follower that did not start: later tasks carry only its hash.
    assert pool.call(5, make_box) is not None
    submit_follower(pool, 6, is_made_here, of_task=5)
    status, payload = pool.result(6)
    assert status == 0 and load_value(payload) is True


def _placement_seen():
    import os
    return sorted(os.sched_getaffinity(0)), os.environ.get("CUDA_VISIBLE_DEVICES"), os.environ.get("ZE_AFFINITY_MASK")


def test_a_placed_task_runs_on_its_cpus_with_its_accelerators_and_the_worker_gets_its_own_back(pool):
    pool.submit(1, _placement_seen)
    status, payload = pool.result(1)
    assert status == 0
    own = load_value(payload)
    cpu = own[0][-1]
    pool.submit(2, _placement_seen, placement=[[cpu], ["7", "8"], []])
    status, payload = pool.result(2)
    assert status == 0 and load_value(payload) == ([cpu], "7,8", "7,8")
    pool.submit(3, _placement_seen)
    status, payload = pool.result(3)
    assert status == 0 and load_value(payload) == own


def _mpi_variables():
    import os
    return {k: v for k, v in os.environ.items() if k.startswith("PARSL_") and k != "PARSL_WORKER_RANK"
            and not k.startswith("PARSL_WORKER_")}


def test_a_task_runs_with_the_variables_the_pool_gave_it_and_the_worker_gets_its_own_back(pool):
    pool.submit(1, _mpi_variables)
    status, payload = pool.result(1)
    assert status == 0
    own = load_value(payload)
    pool.submit(2, _mpi_variables, placement=[[], [], [["PARSL_NUM_NODES", "2"], ["PARSL_MPI_NODELIST", "a,b"]]])
    status, payload = pool.result(2)
    assert status == 0 and load_value(payload) == {**own, "PARSL_NUM_NODES": "2", "PARSL_MPI_NODELIST": "a,b"}
    pool.submit(3, _mpi_variables)
    status, payload = pool.result(3)
    assert status == 0 and load_value(payload) == own
