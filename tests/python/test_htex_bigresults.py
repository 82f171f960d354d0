"""Big results on the HighThroughputExecutor (docs/htex.md, "Big results"; docs/protocol.md,
"Out-of-band buffers"): a bytes-like result of 64 KiB or more travels out of band, in frames of
its own, and comes back byte-exact. Real interchange, pool and workers (LocalProvider)."""

import hashlib
import os

import pytest
from test_htex import running_htex

from pervade import python_app

T = 60
KB = 1 << 10
MB = 1 << 20


@pytest.fixture
def htex(tmp_path, no_thread_leak):
    yield from running_htex(tmp_path)


@python_app(executors=["htex"])
def make(kind, size, seed=0):
    """A result of `kind` and `size` bytes, the same bytes for the same seed (by value: self-contained)."""
    import array
    import random
    data = random.Random(seed).randbytes(size)
    if kind == "bytes":
        return data
    if kind == "bytearray":
        return bytearray(data)
    if kind == "memoryview":
        return memoryview(data)
    if kind == "doubles":
        return memoryview(array.array("d", data[:size - size % 8]))
    raise ValueError(kind)


def expected(size, seed=0):
    import random
    return random.Random(seed).randbytes(size)


@python_app(executors=["htex"])
def digest(data):
    import hashlib
    return type(data).__name__, len(data), hashlib.sha1(data).hexdigest()


@python_app(executors=["htex"])
def grow(data):
    """The next link of a chain: its input with one more byte."""
    return data + b"+"


def test_big_results_of_every_kind_round_trip_byte_exact(htex):
    sizes = [64 * KB, 64 * KB + 1, MB, 20 * MB]
    futures = {(kind, size): make(kind, size, seed=size) for kind in ("bytes", "bytearray") for size in sizes}
    for (kind, size), future in futures.items():
        value = future.result(timeout=T)
        assert type(value).__name__ == kind
        assert value == expected(size, seed=size)
    view = make("memoryview", MB, seed=3).result(timeout=T)
    assert type(view) is memoryview and view.readonly and view.tobytes() == expected(MB, seed=3)
    doubles = make("doubles", MB, seed=4).result(timeout=T)
    assert doubles.format == "d" and doubles.tobytes() == expected(MB, seed=4)


def test_a_bytearray_result_is_writable_and_its_own_copy(htex):
    future = make("bytearray", MB, seed=5)
    first = future.result(timeout=T)
    first[:4] = b"abcd"
    assert future.result(timeout=T) is first, "result() gives the one value"
    assert make("bytearray", MB, seed=5).result(timeout=T) == expected(MB, seed=5)


def test_small_results_are_unchanged(htex):
    assert make("bytes", 64 * KB - 1, seed=6).result(timeout=T) == expected(64 * KB - 1, seed=6)
    assert digest(b"abc").result(timeout=T) == ("bytes", 3, hashlib.sha1(b"abc").hexdigest())


def test_a_big_result_feeds_a_dependent_task(htex):
    produced = make("bytes", 5 * MB, seed=7)
    data = expected(5 * MB, seed=7)
    assert digest(produced).result(timeout=T) == ("bytes", 5 * MB, hashlib.sha1(data).hexdigest())
    # Also when the dependent is called after its input is done (then never a follower).
    produced.result(timeout=T)
    assert digest(produced).result(timeout=T) == ("bytes", 5 * MB, hashlib.sha1(data).hexdigest())


def test_a_big_bytes_result_is_one_object_however_often_it_is_decoded(htex):
    """The driver moves a big result's frame into a bytes object as it arrives (releasing the
    frame's pages as it copies): every later use must still see the whole value."""
    produced = make("bytes", 20 * MB, seed=11)
    data = expected(20 * MB, seed=11)
    digest_of_data = ("bytes", 20 * MB, hashlib.sha1(data).hexdigest())
    assert digest(produced).result(timeout=T) == digest_of_data  # decoded in the driver for the pool
    first = produced.result(timeout=T)
    assert first == data
    assert produced.result(timeout=T) is first
    assert digest(produced).result(timeout=T) == digest_of_data


def test_a_chain_of_big_values_computes_the_right_values(htex):
    # Called ahead of their inputs: followers on the pool, whose inputs are big results.
    for size in (MB, 20 * MB):
        chain = [make("bytes", size, seed=8)]
        for _ in range(5):
            chain.append(grow(chain[-1]))
        data = expected(size, seed=8)
        assert chain[-1].result(timeout=T) == data + b"+" * 5
        assert [len(f.result(timeout=T)) for f in chain] == [size + k for k in range(6)]


def test_many_big_results_at_once(htex):
    futures = [make("bytes", 2 * MB, seed=k) for k in range(20)]
    for k, future in enumerate(futures):
        assert future.result(timeout=T) == expected(2 * MB, seed=k)
    assert os.getpid()  # the driver is still here: nothing crashed on the way


@python_app(executors=["htex"], cache=True)
def cached(size):
    return b"c" * size


def test_a_big_result_is_not_memoized_and_its_call_runs_again(htex):
    # docs/python.md, "Differences from Parsl": out-of-band buffers are not in the memo table.
    assert cached(10).result(timeout=T) == b"c" * 10
    small = cached(10)
    assert small.result(timeout=T) == b"c" * 10 and small.task_status() == "memo_done"
    assert cached(MB).result(timeout=T) == b"c" * MB
    big = cached(MB)
    assert big.result(timeout=T) == b"c" * MB and big.task_status() == "exec_done"
