"""make compat's bookkeeping (compat/run.py): how the per-phase records of a pytest run, possibly
killed in the middle of a test, become one outcome per test."""

import importlib.util
import json
import pathlib

ROOT = pathlib.Path(__file__).resolve().parents[2]
spec = importlib.util.spec_from_file_location("compat_run", ROOT / "compat" / "run.py")
compat_run = importlib.util.module_from_spec(spec)
spec.loader.exec_module(compat_run)


def phase(nodeid, when, outcome="passed", message="", xfail=False):
    return {"nodeid": nodeid, "when": when, "outcome": outcome, "xfail": xfail, "message": message}


def write(path, records):
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return path


def test_outcomes_of_a_finished_run(tmp_path):
    record = write(tmp_path / "r.jsonl", [
        {"nodeid": "a", "when": "start"}, phase("a", "setup"), phase("a", "call"), phase("a", "teardown"),
        {"nodeid": "b", "when": "start"}, phase("b", "setup"), phase("b", "call", "failed", "boom"),
        phase("b", "teardown", "failed", "later"),
        {"nodeid": "c", "when": "start"}, phase("c", "setup"), phase("c", "call"),
        phase("c", "teardown", "failed", "no tasks attribute"),
        {"nodeid": "d", "when": "start"}, phase("d", "setup", "skipped", "not here"), phase("d", "teardown"),
        {"nodeid": "e", "when": "start"}, phase("e", "setup"), phase("e", "call", "skipped", xfail=True),
        phase("e", "teardown"),
        phase("mod.py", "collect", "failed", "ImportError"),
        {"nodeid": "", "when": "finish", "outcome": "1"},
    ])
    results, running, finished = compat_run.outcomes(record)
    assert finished and running is None
    assert results == {"a": ("passed", ""), "b": ("failed", "boom"), "c": ("teardown_error", "no tasks attribute"),
                       "d": ("skipped", "not here"), "e": ("skipped", ""), "mod.py": ("failed", "ImportError")}
    assert compat_run.summarize(results) == {"passed": 1, "failed": 2, "teardown_error": 1, "skipped": 2}


def test_a_killed_run_names_the_test_it_was_in(tmp_path):
    record = write(tmp_path / "r.jsonl", [
        {"nodeid": "a", "when": "start"}, phase("a", "setup"), phase("a", "call"), phase("a", "teardown"),
        {"nodeid": "b", "when": "start"}, phase("b", "setup"), phase("b", "call"),  # hung in teardown
    ])
    results, running, finished = compat_run.outcomes(record)
    assert not finished and running == "b"
    assert results["a"] == ("passed", "")


def test_saving_some_folders_keeps_the_others(tmp_path):
    path = tmp_path / "pervade-threads.json"
    compat_run.save_results(path, ["f1", "f2"], {"f1/t.py::a": ("passed", ""), "f2/t.py::b": ("failed", "x")}, "1")
    compat_run.save_results(path, ["f2"], {"f2/t.py::c": ("passed", "")}, "1")
    assert json.loads(path.read_text())["results"] == {"f1/t.py::a": ["passed", ""], "f2/t.py::c": ["passed", ""]}


def test_saving_a_top_level_file_replaces_its_tests_only(tmp_path):
    """A test file directly in parsl/tests (--folders top) is its own "folder": a new run of it
    drops its old test ids (a test Parsl removed) and keeps the folders' results."""
    path = tmp_path / "pervade-local.json"
    compat_run.save_results(path, ["test_summary.py", "f1"], {"test_summary.py::old": ("passed", ""),
                                                              "f1/t.py::a": ("passed", "")}, "1")
    compat_run.save_results(path, ["test_summary.py"], {"test_summary.py::new": ("failed", "x")}, "1")
    assert json.loads(path.read_text())["results"] == {"f1/t.py::a": ["passed", ""],
                                                       "test_summary.py::new": ["failed", "x"]}
    assert compat_run.place_of("test_htex/mpi/test_mpiex.py::test_init") == "test_htex"
