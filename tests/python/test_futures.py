"""File and DataFuture (Parsl's data-flow objects)."""

import pathlib
from concurrent.futures import Future

import pytest

import pervade as parsl
from pervade import File


def test_file_from_relative_path():
    f = File("a/b.txt")
    assert (f.scheme, f.path, f.filename, f.filepath) == ("file", "a/b.txt", "b.txt", "a/b.txt")
    assert str(f) == "a/b.txt"


def test_file_from_file_url_and_pathlike():
    f = File("file:///x/y.txt")
    assert f.path == "/x/y.txt" and f.url == "file:///x/y.txt" and f.filepath == "/x/y.txt"
    g = File(pathlib.Path("p/q.txt"))
    assert g.url == "p/q.txt" and g.filepath == "p/q.txt"
    import os
    assert os.fspath(g) == "p/q.txt"


def test_remote_file_has_no_filepath():
    f = File("globus://ep1/~/d.txt")
    assert (f.scheme, f.netloc, f.path) == ("globus", "ep1", "/~/d.txt")
    with pytest.raises(ValueError):
        f.filepath


def test_file_repr_and_cleancopy():
    f = File("a/b.txt")
    assert repr(f).startswith("<File at 0x") and "url=a/b.txt scheme=file netloc= path=a/b.txt filename=b.txt" in repr(f)
    f.local_path = "/local/b.txt"
    assert f.filepath == "/local/b.txt"
    c = f.cleancopy()
    assert c is not f and c.url == f.url and c.local_path is None


def test_file_rejects_non_path():
    with pytest.raises(TypeError):
        File(5)


def test_datafuture_follows_parent():
    parent = Future()
    f = File("out.txt")
    d = parsl.DataFuture(parent, f, tid=7)
    assert not d.done()
    assert d.tid == 7 and d.filepath == "out.txt" and d.filename == "out.txt"
    assert "representing" in repr(d) and repr(d).endswith("not done>")
    parent.set_result("ignored")
    assert d.result(timeout=0) is f
    assert repr(d).endswith(" done>")


def test_datafuture_failure_follows_parent():
    parent = Future()
    d = parsl.DataFuture(parent, File("x"), tid=1)
    parent.set_exception(OSError("nope"))
    assert isinstance(d.exception(timeout=0), OSError)


def test_datafuture_requires_file():
    with pytest.raises(TypeError):
        parsl.DataFuture(Future(), "not a file")


def test_datafuture_cancel_cancels_its_parent():
    parent = Future()
    d = parsl.DataFuture(parent, File("x"))
    assert d.cancel() is True
    assert parent.cancelled() and d.cancelled()
    assert d.cancel() is True


def test_datafuture_of_a_finished_parent_cannot_be_cancelled():
    parent = Future()
    d = parsl.DataFuture(parent, File("x"))
    parent.set_result(None)
    assert d.cancel() is False
    assert not d.cancelled() and d.result(timeout=0).filepath == "x"


def test_user_made_datafuture_as_dependency(dfk):
    """A DataFuture not made by the kernel is an ordinary future dependency: its value is the File."""
    parent = Future()
    data = parsl.DataFuture(parent, File("made-by-hand.txt"))

    @parsl.python_app
    def name_of(f):
        return f.filepath

    fut = name_of(data)
    parent.set_result(None)
    assert fut.result(timeout=30) == "made-by-hand.txt"
