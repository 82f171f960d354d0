"""`import pervade as parsl` is a drop-in for a Parsl script."""

import os
import subprocess
import sys
import textwrap

import pytest

import pervade as parsl

PUBLIC_NAMES = [
    "python_app", "bash_app", "join_app", "Config", "ThreadPoolExecutor", "load", "clear", "dfk",
    "wait_for_current_tasks", "File", "DataFuture", "AppFuture", "AUTO_LOGNAME", "DataFlowKernel",
]
EXCEPTIONS = [
    "DependencyError", "JoinError", "BashExitFailure", "BashAppNoReturn", "MissingOutputs", "AppTimeout",
    "BadStdStreamFile", "NoDataFlowKernelError", "ConfigurationError",
]


@pytest.mark.parametrize("name", PUBLIC_NAMES + EXCEPTIONS)
def test_public_name_is_exported(name):
    assert hasattr(parsl, name), name
    assert name in parsl.__all__


@pytest.mark.parametrize("name", EXCEPTIONS)
def test_exceptions_are_parsl_errors(name):
    cls = getattr(parsl, name)
    assert issubclass(cls, Exception)
    assert issubclass(cls, parsl.ParslError)


def test_exception_hierarchy_matches_parsl():
    assert issubclass(parsl.BashExitFailure, parsl.AppException)
    assert issubclass(parsl.AppTimeout, parsl.AppException)
    assert issubclass(parsl.BashAppNoReturn, parsl.AppException)
    assert not issubclass(parsl.MissingOutputs, parsl.AppException)
    assert not issubclass(parsl.BadStdStreamFile, parsl.AppException)
    assert issubclass(parsl.DependencyError, parsl.errors.PropagatedException)
    assert issubclass(parsl.JoinError, parsl.errors.PropagatedException)


def test_auto_logname_is_minus_one():
    assert parsl.AUTO_LOGNAME == -1


def test_futures_are_concurrent_futures():
    import concurrent.futures as cf
    assert issubclass(parsl.AppFuture, cf.Future)
    assert issubclass(parsl.DataFuture, cf.Future)


SCRIPT = r'''
import os
import sys

import pervade as parsl
from pervade import bash_app, python_app
from pervade.data import File


@python_app
def square(x):
    return x * x


@python_app
def total(*values):
    return sum(values)


@bash_app
def write_numbers(n, outputs=(), stdout=None, stderr=None):
    return "seq 1 {} > {}".format(n, outputs[0].filepath)


@python_app
def sum_file(inputs=()):
    with open(inputs[0].filepath) as f:
        return sum(int(line) for line in f if line.strip())


config = parsl.Config(executors=[parsl.ThreadPoolExecutor(max_threads=4, label="local")],
                      run_dir=sys.argv[1])

with parsl.load(config):
    squares = [square(i) for i in range(100)]
    reduced = total(*squares)
    produced = write_numbers(50, outputs=[File(os.path.join(sys.argv[2], "numbers.txt"))],
                             stdout=os.path.join(sys.argv[2], "w.out"),
                             stderr=os.path.join(sys.argv[2], "w.err"))
    from_file = sum_file(inputs=[produced.outputs[0]])
    print("sum_of_squares", reduced.result(timeout=60))
    print("sum_from_file", from_file.result(timeout=60))
    print("bash_result", produced.result(timeout=60))

try:
    parsl.dfk()
except parsl.NoDataFlowKernelError:
    print("unloaded")

children = []
for entry in os.listdir("/proc"):
    if entry.isdigit():
        try:
            with open("/proc/%s/stat" % entry) as f:
                if int(f.read().rsplit(")", 1)[1].split()[1]) == os.getpid():
                    children.append(entry)
        except OSError:
            pass
print("children", len(children))
print("threads", len(os.listdir("/proc/self/task")))
'''


def _session_members(sid: int):
    """Live processes whose session id is sid (orphans keep it after re-parenting)."""
    members = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[3]) == sid and fields[0] != "Z":
            members.append(int(entry))
    return members


def test_parsl_style_script_runs(tmp_path):
    script = tmp_path / "workflow.py"
    script.write_text(textwrap.dedent(SCRIPT))
    # A session of its own: anything the script leaves running keeps that session id.
    proc = subprocess.Popen([sys.executable, str(script), str(tmp_path / "runinfo"), str(tmp_path)],
                            cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    try:
        stdout, stderr = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, stderr
    lines = stdout.splitlines()
    assert "sum_of_squares {}".format(sum(i * i for i in range(100))) in lines
    assert "sum_from_file {}".format(sum(range(1, 51))) in lines
    assert "bash_result 0" in lines
    assert "unloaded" in lines
    assert "children 0" in lines          # no child process is left once the kernel is cleaned up
    assert "threads 1" in lines           # and no engine thread
    assert (tmp_path / "numbers.txt").read_text().split() == [str(i) for i in range(1, 51)]
    assert (tmp_path / "runinfo" / "000").is_dir()
    # The script and everything it started are gone: nothing is left in its session.
    assert _session_members(proc.pid) == []
