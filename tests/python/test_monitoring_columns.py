"""The monitoring database's columns in Parsl's formats (parsl/dataflow/dflow.py,
_create_task_log_info): task_hashsum, task_inputs, task_outputs, task_stdout, task_stderr,
memoization, and the blocks' states, each read from a real run's database."""

import os
import re
from concurrent.futures import Future

import pytest
from test_monitoring import one, rows

import pervade as parsl
from pervade import File, python_app
from pervade.monitoring import MonitoringHub

T = 60


@python_app(cache=True)
def inc(x):
    return x + 1


@python_app
def first(inputs=None, outputs=None):
    return inputs[0] if inputs else None


@python_app
def stdapp(stdout=None, stderr=None):
    pass


class PathLike(os.PathLike):
    def __init__(self, path):
        self.path = path

    def __fspath__(self):
        return self.path


@pytest.fixture
def monitored(load, run_dir):
    """load(**config) with monitoring on; returns (dfk, path of the database)."""

    def go(**kwargs):
        kwargs.setdefault("monitoring", MonitoringHub(resource_monitoring_interval=0))
        return load(**kwargs), os.path.join(run_dir, "monitoring.db")

    return go


def test_memoized_tasks_have_parsl_hashsums_and_memo_done(monitored):
    # As Parsl's test_memoization_representation: four calls, two of them answered from the memo table.
    dfk, db = monitored()
    f1, f2 = inc(4), inc(17)
    assert (f1.result(timeout=T), f2.result(timeout=T)) == (5, 18)
    f3, f4 = inc(4), inc(4)
    assert (f3.result(timeout=T), f4.result(timeout=T)) == (5, 5)
    hashes = [f.task_record["hashsum"] for f in (f1, f2, f3, f4)]
    dfk.cleanup()
    assert hashes[0] == hashes[2] == hashes[3] != hashes[1] and hashes[0]
    assert one(db, "SELECT count(*) FROM task") == 4
    assert rows(db, "SELECT task_hashsum FROM task ORDER BY task_id") == [(h,) for h in hashes]
    assert one(db, "SELECT count(*) FROM status WHERE task_status_name='exec_done'") == 2
    assert one(db, "SELECT count(*) FROM status WHERE task_status_name='memo_done'") == 2
    # TEXT in Parsl's schema: the flag is stored as text, as Parsl's bool becomes there.
    assert {r[0] for r in rows(db, "SELECT task_memoize FROM task")} == {"1"}


def test_unmemoized_task_has_no_hashsum(monitored):
    dfk, db = monitored()
    first(inputs=[1]).result(timeout=T)
    dfk.cleanup()
    assert rows(db, "SELECT task_hashsum, task_memoize FROM task") == [(None, "0")]


def test_inputs_and_outputs_are_written_as_parsl_writes_them(monitored, tmp_path):
    dfk, db = monitored()
    out = File(str(tmp_path / "out.txt"))
    plain = first(inputs=[1, "a"], outputs=[out])
    pending = Future()  # a plain future, done only after the call (Parsl's test_incomplete_futures)
    waits = first(inputs=[pending])
    chained = first(inputs=[inc(1), 7])
    failed_dependency = Future()
    dep_fail = first(inputs=[failed_dependency])
    none = first()
    pending.set_result(31337)
    failed_dependency.set_exception(ValueError("no"))
    assert waits.result(timeout=T) == 31337 and chained.result(timeout=T) == 2 and plain.result(timeout=T) == 1
    with pytest.raises(parsl.DependencyError):
        dep_fail.result(timeout=T)
    none.result(timeout=T)
    dfk.cleanup()

    def inputs_outputs(future):
        return rows(db, f"SELECT task_inputs, task_outputs FROM task WHERE task_id={future.tid}")[0]

    # The task gets a staged copy of each output File (as in Parsl): the same repr but its own address.
    recorded_inputs, recorded_outputs = inputs_outputs(plain)
    assert (recorded_inputs, re.sub(" at 0x[0-9a-f]+", "", recorded_outputs)) == \
        ("[1, 'a']", re.sub(" at 0x[0-9a-f]+", "", str([out])))
    assert inputs_outputs(waits) == ("[31337]", "None")  # with the future's value, once known
    assert inputs_outputs(chained) == ("[2, 7]", "None")
    assert inputs_outputs(none) == ("None", "None")
    # A dependency that failed: the future stays (Parsl never resolves it).
    assert inputs_outputs(dep_fail)[0].startswith("[<Future at ")


@pytest.mark.parametrize("spec, expected", [
    ("hello.txt", "hello.txt"),
    (None, ""),
    (("tuple.txt", "w"), "tuple.txt"),
    (PathLike("pl.txt"), "pl.txt"),
    (PathLike(b"pl2.txt"), "pl2.txt"),
    ((PathLike(b"pl4.txt"), "w"), "pl4.txt"),
    (File("file:///tmp/pl5"), "file:///tmp/pl5"),
])
@pytest.mark.parametrize("stream", ["stdout", "stderr"])
def test_std_streams_of_a_python_app_as_parsl_names_them(monitored, tmp_path, monkeypatch, stream, spec, expected):
    monkeypatch.chdir(tmp_path)
    dfk, db = monitored()
    stdapp(**{stream: spec}).result(timeout=T)
    dfk.cleanup()
    assert one(db, f"SELECT task_{stream} FROM task") == expected


def test_auto_logname_is_the_absolute_path(monitored):
    dfk, db = monitored()
    stdapp(stdout=parsl.AUTO_LOGNAME).result(timeout=T)
    dfk.cleanup()
    path = one(db, "SELECT task_stdout FROM task")
    assert os.path.isabs(path) and path.endswith("/task_0000_stdapp.stdout"), path
