"""Idioms of published Parsl workflows (docs/compat.md, "Idioms from published Parsl workflows"):
what they import, subclass and pass, checked against Parsl's behaviour."""

import concurrent.futures
import os
from functools import partial

import pytest

import pervade as parsl
from pervade import HighThroughputExecutor, LocalProvider, python_app
from pervade.launchers import Launcher

T = 60


def test_names_workflows_import_from_parsls_modules():
    from pervade.app.futures import Future as AppModuleFuture
    from pervade.dataflow.futures import Future as DataflowFuture
    from pervade.launchers.base import Launcher as BaseLauncher
    from pervade.launchers.errors import BadLauncher
    from pervade.providers.errors import ExecutionProviderException
    from pervade.utils import get_version, wtime_to_minutes
    from pervade.version import VERSION

    assert AppModuleFuture is concurrent.futures.Future and DataflowFuture is concurrent.futures.Future
    assert BaseLauncher is Launcher
    assert issubclass(BadLauncher, TypeError) and issubclass(BadLauncher, ExecutionProviderException)
    assert get_version() == VERSION
    assert wtime_to_minutes("01:30:59") == 90 and wtime_to_minutes("00:00:30") == 0


def test_errors_users_raise_have_parsls_messages():
    from pervade.errors import OptionalModuleMissing
    from pervade.executors.errors import BadMessage, ScalingFailed, UnsupportedFeatureError

    assert str(OptionalModuleMissing(["zmq"], "not installed")) == (
        "The functionality requested requires optional modules ['zmq'] which could not be imported, "
        "because: not installed")
    htex = HighThroughputExecutor(label="site")
    assert str(ScalingFailed(htex, "no nodes")) == "Executor site failed to scale due to: no nodes"
    assert isinstance(ScalingFailed(htex, "x"), parsl.ExecutorError)
    assert str(UnsupportedFeatureError("mpi", "threads", None)) == "The mpi feature is unsupported in threads."
    assert str(BadMessage("garbled")) == "Received an unsupported message. Reason:garbled"


def test_a_launcher_must_be_a_launcher():
    from pervade.launchers.errors import BadLauncher

    with pytest.raises(BadLauncher, match="Bad Launcher provided"):
        LocalProvider(launcher=lambda command, tasks_per_node, nodes_per_block: command)


class EnvLauncher(Launcher):
    """A user's launcher, as container wrappers are written (Parsl's abstract __call__ only)."""

    def __init__(self, value):
        super().__init__(debug=True)
        self.value = value

    def __call__(self, command, tasks_per_node, nodes_per_block, script_dir=""):
        return f"export PERVADE_TEST_WRAPPED={self.value}\n{command}"


@python_app
def environment(name):
    import os
    return os.environ.get(name)


def test_users_launcher_wraps_each_block(tmp_path, no_thread_leak):
    provider = LocalProvider(init_blocks=1, launcher=EnvLauncher("my-container"))
    config = parsl.Config(executors=[HighThroughputExecutor(label="htex", max_workers_per_node=1,
                                                            provider=provider)],
                          run_dir=str(tmp_path / "runinfo"))
    with parsl.load(config):
        assert environment("PERVADE_TEST_WRAPPED").result(timeout=T) == "my-container"


CALLS = []


def record(tag, x, scale=1):
    CALLS.append((tag, x))
    return x * scale


def test_apps_of_partials_are_memoized_by_function_and_bound_arguments(load):
    load()
    tripled = partial(record, "t", scale=3)
    tripled.__name__ = "tripled"  # how workflows name each task type
    app = parsl.python_app(cache=True)(tripled)
    assert app(2).result(timeout=T) == 6 and app(2).result(timeout=T) == 6
    assert CALLS == [("t", 2)]  # the second call was a memo hit
    doubled = partial(record, "t", scale=2)
    doubled.__name__ = "tripled"
    assert parsl.python_app(cache=True)(doubled)(2).result(timeout=T) == 4  # other bound arguments: run
    assert CALLS == [("t", 2), ("t", 2)]


@python_app(cache=True)
def stamp(x):
    import uuid
    return (x, uuid.uuid4().hex)


def test_memo_settings_set_on_a_config_after_it_was_made_count_at_load(make_config, run_dir, no_thread_leak):
    """Workflows set the memoizer or checkpoint_files (get_last_checkpoint() to restart) on a
    config they built or imported, then load it."""
    from pervade.memoization import BasicMemoizer, get_all_checkpoints

    config = make_config()
    config.memoizer = BasicMemoizer(checkpoint_mode="task_exit")
    with parsl.load(config):
        first = stamp(1).result(timeout=T)
    assert len(get_all_checkpoints(run_dir)) == 1
    again = make_config()
    again.checkpoint_files = get_all_checkpoints(run_dir)  # older Parsl's spelling
    with parsl.load(again):
        f = stamp(1)
        assert f.result(timeout=T) == first and f.task_record["from_memo"]


def test_htex_log_directories_are_parsls(tmp_path, no_thread_leak):
    htex = HighThroughputExecutor(label="site", provider=LocalProvider(init_blocks=0))
    assert htex.worker_logdir == htex.logdir == "./site"
    with parsl.load(parsl.Config(executors=[htex], run_dir=str(tmp_path / "runinfo"))) as dfk:
        assert htex.logdir == f"{dfk.run_dir}/site" and htex.worker_logdir == htex.logdir
    assert HighThroughputExecutor(label="x", worker_logdir_root="/scratch").worker_logdir == "/scratch/x"


@pytest.mark.parametrize("module, name, needs", [
    ("pervade", "WorkQueueExecutor", "work_queue"),
    ("pervade.executors", "WorkQueueExecutor", "work_queue"),
    ("pervade.executors", "FluxExecutor", "flux"),
    ("pervade.executors", "GlobusComputeExecutor", "globus_compute_sdk"),
    ("pervade.executors.taskvine", "TaskVineExecutor", "taskvine"),
    ("pervade.providers", "KubernetesProvider", "kubernetes"),
    ("pervade.providers", "AWSProvider", "boto3"),
    ("pervade.providers", "AzureProvider", "azure"),
    ("pervade.providers", "GoogleCloudProvider", "googleapiclient"),
])
def test_parsls_executors_and_providers_pervade_lacks_import_but_do_not_construct(module, name, needs):
    """A site module imports every executor it might pick (chiltepin: GlobusComputeExecutor); the
    script runs as long as it does not make one, as Parsl without the executor's module."""
    import importlib

    from pervade.errors import OptionalModuleMissing

    cls = getattr(importlib.import_module(module), name)
    base = parsl.executors.ParslExecutor if name.endswith("Executor") else parsl.providers.ExecutionProvider
    assert issubclass(cls, base) and cls.__name__ == name
    with pytest.raises(OptionalModuleMissing, match=f"pervade does not have Parsl's {name}") as raised:
        cls(label="x")
    assert needs in raised.value.module_names


def test_taskvine_configs_hold_their_options():
    """Parsl's vineex_local config makes a TaskVineManagerConfig before the executor."""
    from pervade.executors.taskvine import TaskVineFactoryConfig, TaskVineManagerConfig

    assert TaskVineManagerConfig(port=9000, project_name="p").project_name == "p"
    assert TaskVineFactoryConfig(min_workers=2).min_workers == 2
