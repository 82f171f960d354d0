"""bash_app: commands, std streams, exit codes, outputs, walltime."""

import os

import pytest

import pervade as parsl
from pervade import bash_app, python_app

from conftest import pid_alive, wait_until

T = 30


@bash_app
def run(command, stdout=None, stderr=None, walltime=None, outputs=()):
    return command


def test_bash_returns_zero(dfk):
    assert run("true").result(timeout=T) == 0


def test_stdout_and_stderr_to_path(dfk, tmp_path):
    out, err = tmp_path / "out.txt", tmp_path / "err.txt"
    run("echo hello; echo oops >&2", stdout=str(out), stderr=str(err)).result(timeout=T)
    assert out.read_text() == "hello\n"
    text = err.read_text()
    assert text.startswith("--> executable follows <--\n")
    assert "echo hello; echo oops >&2\n--> end executable <--" in text
    assert text.endswith("oops\n")


def test_stdout_appends(dfk, tmp_path):
    out = tmp_path / "out.txt"
    out.write_text("first\n")
    run("echo second", stdout=str(out)).result(timeout=T)
    run("echo third", stdout=out).result(timeout=T)  # os.PathLike works too
    assert out.read_text() == "first\nsecond\nthird\n"


def test_stdout_tuple_w_truncates(dfk, tmp_path):
    out = tmp_path / "out.txt"
    out.write_text("old content that must go\n")
    run("echo new", stdout=(str(out), "w")).result(timeout=T)
    assert out.read_text() == "new\n"
    run("echo more", stdout=(str(out), "a")).result(timeout=T)
    assert out.read_text() == "new\nmore\n"


def test_stdout_creates_parent_directories(dfk, tmp_path):
    out = tmp_path / "a" / "b" / "out.txt"
    run("echo nested", stdout=str(out)).result(timeout=T)
    assert out.read_text() == "nested\n"


def test_auto_logname(dfk, run_dir):
    @bash_app
    def greet(name, stdout=parsl.AUTO_LOGNAME, stderr=parsl.AUTO_LOGNAME):
        return f"echo hello {name}; echo warn >&2"

    f = greet("world")
    assert f.result(timeout=T) == 0
    expected_dir = os.path.join(os.path.abspath(run_dir), "000", "task_logs", "0000")
    assert f.stdout == os.path.join(expected_dir, "task_{}_greet.stdout".format(str(f.tid).zfill(4)))
    assert f.stderr == os.path.join(expected_dir, "task_{}_greet.stderr".format(str(f.tid).zfill(4)))
    with open(f.stdout) as h:
        assert h.read() == "hello world\n"
    with open(f.stderr) as h:
        text = h.read()
    assert text.startswith("--> executable follows <--")
    assert text.endswith("warn\n")


def test_auto_logname_at_call_and_label(dfk, run_dir):
    f = run("echo labelled", stdout=parsl.AUTO_LOGNAME, label="LBL")
    with pytest.raises(TypeError):  # label= reaches the function, which does not take it
        f.result(timeout=T)

    @bash_app
    def labelled(label=None, stdout=None):
        return "echo labelled"

    g = labelled(stdout=parsl.AUTO_LOGNAME, label="LBL")
    assert g.result(timeout=T) == 0
    assert os.path.basename(g.stdout) == "task_{}_labelled_LBL.stdout".format(str(g.tid).zfill(4))
    with open(g.stdout) as h:
        assert h.read() == "labelled\n"


def test_stdout_property_returns_spec(dfk, tmp_path):
    path = str(tmp_path / "o.txt")
    f = run("echo x", stdout=path)
    assert f.stdout == path
    assert f.stderr is None
    f.result(timeout=T)


def test_nonzero_exit_raises_bash_exit_failure(dfk):
    @bash_app
    def exit_with(code):
        return f"exit {code}"

    with pytest.raises(parsl.BashExitFailure) as info:
        exit_with(3).result(timeout=T)
    assert info.value.exitcode == 3
    assert info.value.app_name == "exit_with"
    assert str(info.value) == "bash_app exit_with failed with unix exit code 3"


def test_command_not_found_exit_code(dfk):
    with pytest.raises(parsl.BashExitFailure) as info:
        run("this-command-does-not-exist-pervade", stderr=os.devnull).result(timeout=T)
    assert info.value.exitcode == 127


@pytest.mark.parametrize("command", [None, 5])
def test_a_body_that_returns_no_str_fails_with_value_error(dfk, command):
    @bash_app
    def nothing():
        return command

    with pytest.raises(ValueError, match="nothing.*must return its command line as a str") as info:
        nothing().result(timeout=T)
    assert type(command).__name__ in str(info.value)


def test_exception_in_body_propagates(dfk):
    @bash_app
    def bad_format(x):
        return "echo {missing}".format(x=x)

    with pytest.raises(KeyError):
        bad_format(1).result(timeout=T)


def test_missing_outputs(dfk, tmp_path):
    made, missing = tmp_path / "made.txt", tmp_path / "missing.txt"
    outputs = [parsl.File(str(made)), parsl.File(str(missing))]
    f = run(f"touch {made}", outputs=outputs)
    with pytest.raises(parsl.MissingOutputs) as info:
        f.result(timeout=T)
    assert [o.filepath for o in info.value.outputs] == [str(missing)]
    assert "Missing Outputs" in str(info.value)
    assert made.exists()


def test_outputs_present(dfk, tmp_path):
    target = tmp_path / "out.dat"
    f = run(f"echo data > {target}", outputs=[parsl.File(str(target))])
    assert f.outputs[0].result(timeout=T).filepath == str(target)
    assert f.result(timeout=T) == 0


def test_bash_output_feeds_python_app(dfk, tmp_path):
    target = parsl.File(str(tmp_path / "seq.txt"))

    @python_app
    def count_lines(inputs=()):
        with open(inputs[0].filepath) as f:
            return len(f.readlines())

    made = run(f"seq 1 7 > {target.filepath}", outputs=[target])
    assert count_lines(inputs=[made.outputs[0]]).result(timeout=T) == 7


def test_bash_dependency_on_python_future(dfk, tmp_path):
    @python_app
    def word():
        return "dependency-value"

    @bash_app
    def echo(text, stdout=None):
        return f"echo {text}"

    out = tmp_path / "o.txt"
    echo(word(), stdout=str(out)).result(timeout=T)
    assert out.read_text() == "dependency-value\n"


def test_defaults_are_passed_to_bash_function(dfk, tmp_path):
    """Parsl passes every default of a bash app as a keyword, so a default stdout redirects and a
    future used as a default is resolved."""

    @python_app
    def word():
        return "from-a-future"

    out = tmp_path / "defaults.txt"
    dependency = word()

    @bash_app
    def with_defaults(greeting="hi", value=dependency, stdout=str(out)):
        return f"echo {greeting} {value}"

    assert with_defaults().result(timeout=T) == 0
    assert with_defaults(greeting="bye").result(timeout=T) == 0
    assert out.read_text() == "hi from-a-future\nbye from-a-future\n"


def test_walltime_kills_whole_process_group(dfk, tmp_path):
    pids = tmp_path / "pids"
    command = f"echo $$ > {pids}; (sleep 30; echo late >> {tmp_path / 'late'}) & echo $! >> {pids}; wait"
    f = run(command, walltime=0.5)
    with pytest.raises(parsl.AppTimeout):
        f.result(timeout=10)
    recorded = [int(p) for p in pids.read_text().split()]
    assert len(recorded) == 2
    assert wait_until(lambda: not any(pid_alive(p) for p in recorded), timeout=10), \
        f"processes still alive after AppTimeout: {[p for p in recorded if pid_alive(p)]}"
    assert not (tmp_path / "late").exists()


def test_walltime_not_reached(dfk, tmp_path):
    out = tmp_path / "o.txt"
    assert run("echo fast", stdout=str(out), walltime=20).result(timeout=T) == 0
    assert out.read_text() == "fast\n"


def test_bash_walltime_frees_worker(load, tmp_path):
    load(executors=[parsl.ThreadPoolExecutor(max_threads=1)])
    with pytest.raises(parsl.AppTimeout):
        run("sleep 30", walltime=0.5).result(timeout=10)
    assert run("true").result(timeout=T) == 0


def test_bash_apps_run_concurrently(load, tmp_path):
    """Two bash apps on a 2-thread executor each wait for the other's file: only possible if both run
    at once (the command holds no GIL while it runs)."""
    load(executors=[parsl.ThreadPoolExecutor(max_threads=2)])
    a, b = tmp_path / "a", tmp_path / "b"
    wait_for = "for i in $(seq 1 200); do [ -e {} ] && exit 0; sleep 0.05; done; exit 1"
    fa = run(f"touch {a}; " + wait_for.format(b))
    fb = run(f"touch {b}; " + wait_for.format(a))
    assert fa.result(timeout=T) == 0 and fb.result(timeout=T) == 0


def test_stderr_tuple_w_truncates_and_keeps_header(dfk, tmp_path):
    err = tmp_path / "err.txt"
    err.write_text("stale\n")
    run("echo fresh >&2", stderr=(str(err), "w")).result(timeout=T)
    text = err.read_text()
    assert "stale" not in text
    assert text.startswith("--> executable follows <--\necho fresh >&2\n--> end executable <--\n")
    assert text.endswith("fresh\n")


def test_file_as_stdout_truncates(dfk, tmp_path):
    out = tmp_path / "out.txt"
    out.write_text("old\n")
    run("echo via-file", stdout=parsl.File(str(out))).result(timeout=T)
    assert out.read_text() == "via-file\n"


def test_same_file_for_stdout_and_stderr(dfk, tmp_path):
    log = tmp_path / "both.log"
    run("echo to-out; echo to-err >&2", stdout=str(log), stderr=str(log)).result(timeout=T)
    text = log.read_text()
    assert text.startswith("--> executable follows <--")
    assert "to-out\n" in text and "to-err\n" in text


def test_bash_exit_failure_is_retried(load, tmp_path):
    load(retries=2)
    counter = tmp_path / "count"
    # Fails until it has run three times.
    command = f"echo x >> {counter}; [ $(wc -l < {counter}) -ge 3 ]"
    assert run(command).result(timeout=T) == 0
    assert counter.read_text().count("x") == 3
