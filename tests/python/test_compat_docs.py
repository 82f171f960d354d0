"""The examples of Parsl's documentation (docs/compat.md, "Examples of Parsl's documentation"):
what they import, read back and print, checked against Parsl's behaviour."""

import math
import os
import subprocess
import sys
import textwrap

import pytest

import pervade as parsl
from pervade import bash_app, python_app
from pervade import parsl_imports


def run_script(tmp_path, text, *args, timeout=120):
    """Runs `text` as a script under `pervade run` in a fresh interpreter (imports as a new
    script sees them); returns the completed process."""
    script = tmp_path / "script.py"
    script.write_text(textwrap.dedent(text))
    env = dict(os.environ)
    env.pop(parsl_imports.ENV_ENABLED, None)
    env.pop(parsl_imports.ENV_TESTS, None)
    return subprocess.run([sys.executable, "-m", "pervade", "run", *args], cwd=tmp_path, env=env, text=True,
                          capture_output=True, timeout=timeout)


def test_submodules_are_attributes_of_their_package_after_import_parsl(tmp_path):
    # Parsl's docs and scripts write parsl.app.errors.AppTimeout after a bare `import parsl`
    # (Parsl's packages import their submodules while they load).
    done = run_script(tmp_path, """
        import parsl
        print(parsl.app.errors.AppTimeout is parsl.AppTimeout)
        print(parsl.providers.slurm.slurm.SlurmProvider is parsl.SlurmProvider)
        print(parsl.dataflow.memoization.id_for_memo is parsl.id_for_memo)
        print(parsl.executors.high_throughput.errors.WorkerLost.__name__)
        print(hasattr(parsl, "no_such_module"), hasattr(parsl.app, "_private"))
        try:
            from parsl.executors import NoSuchExecutor
        except ImportError as e:
            print("ImportError", "cannot import name 'NoSuchExecutor'" in str(e))
    """, "script.py")
    assert done.returncode == 0, done.stderr
    assert done.stdout.split("\n") == ["True", "True", "True", "WorkerLost", "False False", "ImportError True", ""]


def test_a_submodule_that_fails_to_import_says_why():
    from pervade._submodules import submodule_getattr

    getattr_ = submodule_getattr("pervade")
    with pytest.raises(AttributeError, match="module 'pervade' has no attribute 'nope'"):
        getattr_("nope")
    with pytest.raises(AttributeError):
        getattr_("__wrapped__")  # dunders are never imported
    assert getattr_("version").VERSION == parsl.__version__


def test_parsls_test_configs_import(tmp_path):
    # docs/userguide/workflows/checkpoints.rst: from parsl.tests.configs.local_threads import config
    done = run_script(tmp_path, """
        from parsl.tests.configs.local_threads import config, fresh_config
        from parsl.tests.configs.htex_local import fresh_config as htex_fresh_config
        print(type(config.executors[0]).__name__, fresh_config() is not fresh_config())
        htex = htex_fresh_config()
        print(htex.executors[0].label, htex.strategy, htex.executors[0].provider.init_blocks)
    """, "script.py")
    assert done.returncode == 0, done.stderr
    assert done.stdout == "ThreadPoolExecutor True\nhtex_local none 1\n"


def test_htex_max_workers_per_node_is_infinite_when_unbounded():
    # Parsl keeps `max_workers_per_node or float("inf")`.
    assert parsl.HighThroughputExecutor().max_workers_per_node == math.inf
    assert parsl.HighThroughputExecutor(max_workers_per_node=56).max_workers_per_node == 56
    ex = parsl.HighThroughputExecutor(available_accelerators=2)
    assert ex.max_workers_per_node == math.inf and ex.workers_per_node == 2


def test_fail_cost_is_the_sum_of_integer_costs(load):
    # docs/userguide/workflows/exceptions.rst's retry handler returns 1 or 100: Parsl's
    # task_record['fail_cost'] is then an int (100, not 100.0).
    def handler(exception, task_record):
        return 100 if isinstance(exception, parsl.BashExitFailure) and exception.exitcode == 9 else 1

    load(retries=2, retry_handler=handler)

    @bash_app
    def exit_with(code):
        return f"exit {code}"

    nine, three = exit_with(9), exit_with(3)
    for future in (nine, three):
        with pytest.raises(parsl.BashExitFailure):
            future.result(timeout=60)
    assert (nine.task_record["fail_cost"], three.task_record["fail_cost"]) == (100, 3)
    assert type(nine.task_record["fail_cost"]) is int

    def halves(exception, task_record):
        return 0.5

    parsl.dfk().cleanup()
    parsl.clear()
    load(retries=1, retry_handler=halves)

    @python_app
    def fail():
        raise ValueError("x")

    f = fail()
    with pytest.raises(ValueError):
        f.result(timeout=60)
    assert f.task_record["fail_cost"] == 1.5


def test_default_std_autopath_is_parsls_name(load, tmp_path):
    # docs/userguide/advanced/plugins.rst: Config(std_autopath=) replaces
    # DataFlowKernel.default_std_autopath, which names AUTO_LOGNAME files.
    dfk = load()
    record = {"id": 12, "func_name": "f", "kwargs": {"label": "x"}}
    assert parsl.DataFlowKernel.default_std_autopath(dfk, record, "stdout") == os.path.join(
        dfk.run_dir, "task_logs", "0000", "task_0012_f_x.stdout")
    assert dfk.default_std_autopath({"id": 12345, "func_name": "g", "kwargs": {}}, "stderr") == os.path.join(
        dfk.run_dir, "task_logs", "0001", "task_12345_g.stderr")

    @bash_app
    def echo(msg, stdout=parsl.AUTO_LOGNAME):
        return f"echo {msg}"

    future = echo("hi")
    future.result(timeout=60)
    assert future.stdout == dfk.default_std_autopath({"id": future.tid, "func_name": "echo", "kwargs": {}}, "stdout")
    assert open(future.stdout).read() == "hi\n"


def test_memoizer_base_class_is_there_and_a_memoizer_from_scratch_is_refused():
    from pervade.dataflow.memoization import BasicMemoizer, Memoizer

    assert issubclass(BasicMemoizer, Memoizer)

    class FromScratch(Memoizer):
        def check_memo(self, task):
            return None

    with pytest.raises(parsl.ConfigurationError, match="BasicMemoizer"):
        parsl.Config(memoizer=FromScratch())


def test_providers_keep_parsls_none_for_options_not_given():
    slurm = parsl.SlurmProvider(worker_init="conda activate env; which python")
    assert (slurm.partition, slurm.account, slurm.qos, slurm.constraint, slurm.clusters) == (None,) * 5
    assert slurm.worker_init == "conda activate env; which python\n"  # Parsl adds the newline
    assert slurm.regex_job_id == r"Submitted batch job (?P<id>\S*)"
    pbs = parsl.PBSProProvider(select_options="ngpus=4")
    assert (pbs.account, pbs.queue, pbs.select_options) == (None, None, "ngpus=4")
    assert parsl.PBSProProvider(account="ACCT", queue="debug").account == "ACCT"
    assert (parsl.TorqueProvider().account, parsl.LSFProvider().project, parsl.GridEngineProvider().queue) == (None,) * 3
    assert parsl.CondorProvider(worker_init="x").worker_init == "x\n"
    # The engine still takes them (None is the scheduler's default) and checks their types.
    with pytest.raises(parsl.ConfigurationError, match="partition"):
        parsl.SlurmProvider(partition=3)


def test_parsl_perf_module_runs_under_pervade_run(tmp_path):
    # docs/userguide/advanced/parsl_perf.rst: python -m parsl.benchmark.perf --config ...
    (tmp_path / "conf.py").write_text("from parsl.configs.local_threads import config\n")
    env = dict(os.environ)
    env.pop(parsl_imports.ENV_ENABLED, None)
    done = subprocess.run([sys.executable, "-m", "pervade", "run", "-m", "parsl.benchmark.perf", "--config", "conf.py",
                           "--time", "1", "--iterate", "5,10"], cwd=tmp_path, env=env, text=True,
                          capture_output=True, timeout=120)
    assert done.returncode == 0, done.stderr
    # parsl-perf's lines, in its order (the figures differ)
    lines = [line.split(" took ")[0].split(":")[0] for line in done.stdout.splitlines()]
    assert lines == ["==== Iteration 1 ====", "Will run 5 tasks", "Submitting tasks / invoking apps",
                     "All 5 tasks submitted ... waiting for completion", "Submission", "Runtime", "Tasks per second",
                     "==== Iteration 2 ====", "Will run 10 tasks", "Submitting tasks / invoking apps",
                     "All 10 tasks submitted ... waiting for completion", "Submission", "Runtime", "Tasks per second",
                     "Tests complete - leaving DFK block", "The end"]
    from pervade.benchmark.perf import cli_run
    assert callable(cli_run)


def test_names_of_parsls_api_reference():
    # docs/reference.rst lists these; every other name there was already pervade's.
    from pervade.app.errors import ParslError
    from pervade.errors import OptionalModuleMissing
    from pervade.executors.radical import RadicalPilotExecutor
    from pervade.utils import Timer

    assert ParslError is parsl.ParslError
    with pytest.raises(OptionalModuleMissing, match="RadicalPilotExecutor"):
        RadicalPilotExecutor()
    assert Timer.__init__.__kwdefaults__ == {"interval": 5, "name": None}


def test_timer_calls_back_at_once_then_every_interval_until_closed():
    import threading

    from conftest import wait_until
    from pervade.utils import Timer

    calls = []
    timer = Timer(lambda *a: calls.append(a), "x", 1, interval=0.01, name="report")
    assert wait_until(lambda: len(calls) >= 3)
    assert calls[0] == ("x", 1)
    assert any(t.name.startswith("report-Timer-Thread-") for t in threading.enumerate())
    timer.close()
    n = len(calls)
    assert not timer._thread.is_alive() and len(calls) == n

    def boom():
        calls.append("boom")
        raise RuntimeError("the callback fails")

    timer = Timer(boom, interval=0.01)
    assert wait_until(lambda: calls.count("boom") >= 2)  # a failing callback is called again
    timer.close()


def test_datafuture_repr_names_the_public_module(tmp_path):
    # docs/userguide/workflows/futures.rst prints hello.outputs: Parsl prints
    # [<parsl.app.futures.DataFuture object at 0x... representing <File ...> not done>].
    from concurrent.futures import Future

    from pervade.data import DataFuture

    df = DataFuture(Future(), parsl.File("a.txt"), 3)
    assert repr(df).startswith("<pervade.app.futures.DataFuture object at 0x")
    assert repr(df).endswith("representing " + repr(df.file_obj) + " not done>")

    class Mine(DataFuture):
        pass

    assert repr(Mine(Future(), parsl.File("a.txt"), 3)).startswith(f"<{__name__}.{Mine.__qualname__} object")
    done = run_script(tmp_path, """
        import parsl
        from parsl import bash_app, File
        parsl.load()

        @bash_app
        def echo(message, outputs=()):
            return 'echo {} &> {}'.format(message, outputs[0])

        hello = echo('Hello World!', outputs=[File('hello1.txt')])
        hello.result()
        print(hello.outputs)
        print(parsl.dfk())
    """, "script.py")
    assert done.returncode == 0, done.stderr
    outputs, kernel = done.stdout.splitlines()
    assert outputs.startswith("[<parsl.app.futures.DataFuture object at 0x") and "url=hello1.txt" in outputs
    assert outputs.endswith(" done>]")
    assert kernel.startswith("<parsl.dataflow.dflow.DataFlowKernel object at 0x")


def test_kernels_repr_names_its_module(dfk):
    assert repr(dfk) == f"<pervade.dataflow.dflow.DataFlowKernel object at {hex(id(dfk))}>"


def test_pool_map_takes_parsls_arguments(make_config):
    # Parsl's ParslPoolExecutor.map(fn, *iterables, timeout=None, chunksize=1, buffersize=None)
    from pervade.concurrent import ParslPoolExecutor

    with ParslPoolExecutor(make_config()) as pool:
        assert list(pool.map(abs, [-1, -2, 3], buffersize=2, chunksize=4, timeout=60)) == [1, 2, 3]


def test_a_finished_futures_repr_names_its_results_type():
    # docs/userguide/overview.rst prints a future: on Parsl's HTEX it says "returned int" as soon
    # as the task is done; a pool's result is unpickled for it.
    import pickle

    from pervade import _native
    from pervade import futures as app_futures
    from pervade.futures import AppFuture, PickledResult

    fut = AppFuture(None, _native.BoundApp(print, None, "app"))
    assert "state=pending" in repr(fut)
    app_futures.complete([fut, app_futures.RESULT, PickledResult(pickle.dumps(4))])
    assert repr(fut).endswith("state=finished returned int>")
    assert fut.result() == 4
    broken = AppFuture(None, _native.BoundApp(print, None, "app"))
    app_futures.complete([broken, app_futures.RESULT, PickledResult(b"not a pickle")])
    assert repr(broken).endswith("state=finished returned PickledResult>")  # the repr does not raise
    with pytest.raises(pickle.UnpicklingError):
        broken.result()


def test_htex_address_none_is_the_default():
    # Parsl's signature has address=None (its default); a config that passes it explicitly loads.
    assert parsl.HighThroughputExecutor(address=None).address == parsl.HighThroughputExecutor().address == "127.0.0.1"
    assert parsl.MPIExecutor(address=None).address == "127.0.0.1"
    with pytest.raises(parsl.ConfigurationError, match="address"):
        parsl.HighThroughputExecutor(address="")
