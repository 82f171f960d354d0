"""Config / load / misuse errors. The autouse thread fixture checks none of them leaks a thread."""

import os

import pytest
import typeguard

import pervade as parsl
from pervade import bash_app, python_app

T = 30


@python_app
def ident(x):
    return x


@bash_app
def echo(text, stdout=None, stderr=None):
    return f"echo {text}"


def test_app_before_load_raises(no_thread_leak):
    with pytest.raises(parsl.NoDataFlowKernelError, match="load"):
        ident(1)
    with pytest.raises(parsl.NoDataFlowKernelError, match="load"):
        parsl.dfk()
    with pytest.raises(parsl.NoDataFlowKernelError):
        parsl.wait_for_current_tasks()


def test_load_twice_raises(make_config, no_thread_leak):
    first = parsl.load(make_config())
    try:
        with pytest.raises(parsl.ConfigurationError, match="Config has already been loaded"):
            parsl.load(make_config())
        assert parsl.dfk() is first
    finally:
        first.cleanup()


def test_load_after_clear(make_config, no_thread_leak):
    first = parsl.load(make_config())
    parsl.clear()
    second = parsl.load(make_config())
    try:
        assert parsl.dfk() is second and second is not first
        assert ident(5).result(timeout=T) == 5
    finally:
        first.cleanup()
        second.cleanup()


def test_load_after_cleanup(make_config, no_thread_leak):
    first = parsl.load(make_config())
    first.cleanup()
    second = parsl.load(make_config())
    try:
        assert ident(6).result(timeout=T) == 6
    finally:
        second.cleanup()


def test_load_default_config(tmp_path, monkeypatch, no_thread_leak):
    monkeypatch.chdir(tmp_path)
    kernel = parsl.load()
    try:
        assert kernel.run_dir == str(tmp_path / "runinfo" / "000")
        assert ident(1).result(timeout=T) == 1
        assert [e.label for e in kernel.config.executors] == ["threads"]
    finally:
        kernel.cleanup()


def test_unknown_executor_label_fails_the_future_with_value_error(load):
    """As in Parsl: the call returns a future, which fails when the task would be launched."""
    load(executors=[parsl.ThreadPoolExecutor(label="alpha"), parsl.ThreadPoolExecutor(label="beta")])

    @python_app(executors=["nope"])
    def pinned():
        return 1

    with pytest.raises(ValueError) as info:
        pinned().result(timeout=T)
    message = str(info.value)
    assert "nope" in message
    assert "alpha" in message and "beta" in message
    # The kernel is still usable.
    assert ident(2).result(timeout=T) == 2


def test_unknown_executor_label_waits_for_its_dependencies(load):
    """Parsl launches, and so fails, the task only once its dependencies are done."""
    from concurrent.futures import Future

    load()

    @python_app(executors=["nope"])
    def pinned(x):
        return x

    pending = Future()
    future = pinned(pending)
    assert not future.done()
    pending.set_result(1)
    with pytest.raises(ValueError, match="nope"):
        future.result(timeout=T)
    parsl.wait_for_current_tasks()


def test_duplicate_executor_labels(run_dir):
    with pytest.raises(parsl.ConfigurationError, match="unique labels"):
        parsl.Config(executors=[parsl.ThreadPoolExecutor(label="x"), parsl.ThreadPoolExecutor(label="x")],
                     run_dir=run_dir)


def test_reserved_internal_label(run_dir):
    with pytest.raises(parsl.ConfigurationError):
        parsl.Config(executors=[parsl.ThreadPoolExecutor(label="_parsl_internal")], run_dir=run_dir)


def test_invalid_exit_mode(run_dir):
    # Parsl's Config is checked by typeguard: its TypeCheckError, as there.
    with pytest.raises(typeguard.TypeCheckError):
        parsl.Config(exit_mode="sometimes", run_dir=run_dir)


@pytest.mark.parametrize("threads", [0, -1, 1.5, True])
def test_invalid_max_threads(threads):
    with pytest.raises(parsl.ConfigurationError):
        parsl.ThreadPoolExecutor(max_threads=threads)


@pytest.mark.parametrize("kwargs", [{"retries": 1.5}, {"usage_tracking": "yes"}, {"run_dir": 3},
                                    {"garbage_collect": "no"}, {"strategy_period": "5"}, {"project_name": 1}])
def test_config_options_of_the_wrong_type(run_dir, kwargs):
    # Parsl's Config is checked by typeguard: an option of the wrong type is its TypeCheckError
    # (docs/userguide/advanced/usage_tracking.rst takes an int level).
    with pytest.raises(typeguard.TypeCheckError):
        parsl.Config(**{"run_dir": run_dir, **kwargs})


@pytest.mark.parametrize("kwargs", [{"retries": -1}, {"usage_tracking": 7},
                                    {"retry_handler": 3}, {"internal_tasks_max_threads": 0}])
def test_invalid_config_values(run_dir, kwargs):
    with pytest.raises(parsl.ConfigurationError):
        parsl.Config(run_dir=run_dir, **kwargs)


def test_invalid_executors_argument(load):
    with pytest.raises((parsl.ConfigurationError, TypeError)):
        python_app(lambda: 1, executors="threads")
    with pytest.raises(parsl.ConfigurationError):
        parsl.Config(executors=["threads"])


def test_config_executors_read_only(make_config):
    cfg = make_config(executors=[parsl.ThreadPoolExecutor(label="a")])
    assert isinstance(cfg.executors, tuple)
    assert [e.label for e in cfg.executors] == ["a"]
    with pytest.raises(AttributeError):
        cfg.executors = []


def test_empty_executors_means_default(make_config):
    cfg = make_config(executors=[])
    assert [e.label for e in cfg.executors] == ["threads"]


@pytest.mark.parametrize("spec", [5, 0, -2, ("a", "w", "x"), ("a",), 1.5, ["/tmp/x"], ("a", None)])
def test_wrongly_typed_stdout_spec_fails_the_future(dfk, spec):
    # As Parsl: checked where the command runs, with typeguard's TypeCheckError.
    with pytest.raises(typeguard.TypeCheckError):
        echo("x", stdout=spec).result(timeout=T)
    with pytest.raises(typeguard.TypeCheckError):
        echo("x", stderr=spec).result(timeout=T)


@pytest.mark.parametrize("spec", ["", ("{tmp}/x", "rw"), ("{tmp}/x", "badmode")])
def test_unusable_stdout_spec_value_fails_the_future(dfk, tmp_path, spec):
    spec = tuple(s.format(tmp=tmp_path) for s in spec) if isinstance(spec, tuple) else spec
    with pytest.raises(parsl.BadStdStreamFile):
        echo("x", stdout=spec).result(timeout=T)


def test_python_app_stdout_spec_is_not_checked(dfk):
    # Parsl only opens stdout/stderr for bash apps: a Python app gets the value as given.
    @python_app
    def with_stdout(stdout=None):
        return stdout

    assert with_stdout(stdout=("a", "b", "c")).result(timeout=T) == ("a", "b", "c")


def test_unopenable_stdout_fails_the_future(dfk):
    f = echo("x", stdout="/proc/nonexistent/dir/out")
    with pytest.raises(parsl.BadStdStreamFile):
        f.result(timeout=T)
    g = echo("x", stderr="/proc/nonexistent/dir/err")
    with pytest.raises(parsl.BadStdStreamFile):
        g.result(timeout=T)
    assert f.task_status() == "failed"


def test_unopenable_stdout_file(dfk, tmp_path):
    """A path whose parent is a regular file cannot be opened either."""
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(parsl.BadStdStreamFile):
        echo("x", stdout=str(blocker / "out")).result(timeout=T)


def test_outputs_must_be_files(dfk, tmp_path):
    with pytest.raises(TypeError):
        echo("x", outputs=[str(tmp_path / "plain-string")])


def test_run_dir_numbering(make_config, run_dir, no_thread_leak):
    made = []
    for _ in range(3):
        kernel = parsl.load(make_config())
        made.append(kernel.run_dir)
        kernel.cleanup()
    assert made == [os.path.join(os.path.abspath(run_dir), n) for n in ("000", "001", "002")]
    assert sorted(os.listdir(run_dir)) == ["000", "001", "002"]


def test_run_dir_continues_after_existing(make_config, run_dir, no_thread_leak):
    os.makedirs(os.path.join(run_dir, "007"))
    kernel = parsl.load(make_config())
    kernel.cleanup()
    assert kernel.run_dir.endswith(os.sep + "008")


def test_log_file_written(make_config, no_thread_leak):
    kernel = parsl.load(make_config())
    kernel.cleanup()
    assert os.path.exists(os.path.join(kernel.run_dir, "pervade.log"))


def test_initialize_logging_false(make_config, no_thread_leak):
    kernel = parsl.load(make_config(initialize_logging=False))
    kernel.cleanup()
    assert os.listdir(kernel.run_dir) == []


def test_std_autopath(make_config, tmp_path, no_thread_leak):
    seen = []

    def autopath(record, kind):
        seen.append((record["func_name"], kind))
        return str(tmp_path / f"custom.{kind}")

    kernel = parsl.load(make_config(std_autopath=autopath))
    try:
        f = echo("custom", stdout=parsl.AUTO_LOGNAME)
        assert f.result(timeout=T) == 0
        assert f.stdout == str(tmp_path / "custom.stdout")
        assert (tmp_path / "custom.stdout").read_text() == "custom\n"
        assert seen == [("echo", "stdout")]
    finally:
        kernel.cleanup()


def test_load_with_unusable_run_dir(no_thread_leak):
    with pytest.raises(OSError):
        parsl.load(parsl.Config(run_dir="/proc/pervade-cannot-create-this"))
    with pytest.raises(parsl.NoDataFlowKernelError):
        parsl.dfk()


def test_retry_handler_bad_return_value_fails_task(load):
    """A handler that returns something that is not a number must fail the task, not hang it."""
    load(retries=3, retry_handler=lambda e, rec: None)

    @python_app
    def bad():
        raise ValueError("x")

    f = bad()
    assert f.exception(timeout=T) is not None
    assert f.task_status() == "failed"
