"""Parsl's module layout (`sed s/parsl/pervade/` on a script's imports works), and Parsl's
options: every option Parsl's config classes take is accepted, any other raises TypeError."""

import ast
import importlib
import inspect
import pathlib

import pytest

import pervade
from pervade import launchers, providers

# module path below pervade -> names it must define, each the same object as pervade's own.
LAYOUT = {
    "app.app": ["python_app", "bash_app", "join_app", "AUTO_LOGNAME"],
    "app.errors": ["AppException", "AppBadFormatting", "BashExitFailure", "AppTimeout", "BashAppNoReturn",
                   "MissingOutputs", "BadStdStreamFile"],
    "app.python": ["PythonApp", "timeout"],
    "app.bash": ["BashApp"],
    "app.futures": ["DataFuture", "Future"],
    "config": ["Config"],
    "dataflow.dflow": ["DataFlowKernel", "DataFlowKernelLoader"],
    "dataflow.errors": ["DataFlowException", "BadCheckpoint", "PropagatedException", "DependencyError", "JoinError"],
    "dataflow.futures": ["AppFuture", "Future"],
    "dataflow.memoization": ["BasicMemoizer", "id_for_memo"],
    "data_provider.files": ["File"],
    "data_provider.staging": ["Staging"],
    "data_provider.data_manager": ["DataManager", "default_staging"],
    "data_provider.file_noop": ["NoOpFileStaging"],
    "data_provider.http": ["HTTPSeparateTaskStaging", "HTTPInTaskStaging"],
    "data_provider.ftp": ["FTPSeparateTaskStaging", "FTPInTaskStaging"],
    "data_provider.zip": ["ZipFileStaging", "ZipAuthorityError", "zip_path_split"],
    "data_provider.rsync": ["RSyncStaging"],
    "data_provider.globus": ["GlobusStaging"],
    "executors": ["ThreadPoolExecutor", "HighThroughputExecutor"],
    "executors.base": [],
    "executors.threads": ["ThreadPoolExecutor"],
    "executors.high_throughput.executor": ["HighThroughputExecutor"],
    "executors.high_throughput.errors": ["ManagerLost", "WorkerLost"],
    "executors.execute_task": ["execute_task"],
    "executors.high_throughput.manager_selector": ["ManagerSelector", "RandomManagerSelector",
                                                   "BlockIdManagerSelector"],
    "serialize": ["serialize", "deserialize", "pack_apply_message", "unpack_apply_message"],
    "serialize.facade": ["serialize", "deserialize", "pack_apply_message", "unpack_apply_message",
                         "register_method_for_code", "register_method_for_data", "methods_for_code",
                         "methods_for_data", "additional_methods_for_deserialization"],
    "serialize.base": ["SerializerBase"],
    "serialize.concretes": ["PickleSerializer", "DillSerializer", "DillCallableSerializer"],
    "serialize.errors": ["SerializationError", "DeserializationError", "DeserializerPluginError"],
    "providers": ["LocalProvider", "SlurmProvider", "PBSProProvider", "TorqueProvider", "LSFProvider",
                  "GridEngineProvider", "CondorProvider"],
    "providers.base": [],
    "providers.cluster_provider": [],
    "providers.local.local": ["LocalProvider"],
    "providers.slurm.slurm": ["SlurmProvider"],
    "providers.pbspro.pbspro": ["PBSProProvider"],
    "providers.torque.torque": ["TorqueProvider"],
    "providers.lsf.lsf": ["LSFProvider"],
    "providers.grid_engine.grid_engine": ["GridEngineProvider"],
    "providers.condor.condor": ["CondorProvider"],
    "launchers": ["SimpleLauncher", "SingleNodeLauncher", "SrunLauncher", "MpiExecLauncher", "WrappedLauncher"],
    "launchers.launchers": ["SimpleLauncher", "SingleNodeLauncher", "SrunLauncher", "MpiExecLauncher"],
    "launchers.base": ["Launcher"],
    "launchers.errors": ["BadLauncher"],
    "addresses": ["address_by_hostname", "address_by_interface", "address_by_route", "address_by_query",
                  "get_all_addresses", "get_any_address"],
    "utils": ["get_all_checkpoints", "get_last_checkpoint", "get_version", "wtime_to_minutes"],
    "errors": ["ParslError", "ConfigurationError", "NoDataFlowKernelError", "OptionalModuleMissing"],
    "executors.errors": ["ExecutorError", "BadStateException", "InvalidResourceSpecification", "ScalingFailed",
                         "UnsupportedFeatureError", "BadMessage"],
    "jobs.states": ["JobState", "JobStatus"],
    "usage_tracking.levels": [],
    "version": ["VERSION"],
    "concurrent": ["ParslPoolExecutor"],
}


@pytest.mark.parametrize("path", sorted(LAYOUT))
def test_parsl_module_path_exists(path):
    module = importlib.import_module(f"pervade.{path}")
    for name in LAYOUT[path]:
        value = getattr(module, name)
        if hasattr(pervade, name) and not inspect.ismodule(getattr(pervade, name)):  # not pervade.serialize
            assert value is getattr(pervade, name), f"pervade.{path}.{name} is not pervade.{name}"


def test_manager_selectors_load_in_a_config_and_order_as_parsls():
    from pervade.executors.high_throughput.manager_selector import BlockIdManagerSelector, RandomManagerSelector
    selector = BlockIdManagerSelector()
    assert pervade.HighThroughputExecutor(manager_selector=selector).manager_selector is selector
    ready = {b"a": {"block_id": "2"}, b"b": {"block_id": None}, b"c": {"block_id": "1"}}
    assert selector.sort_managers(ready, {b"a", b"b", b"c"}) == [b"b", b"c", b"a"]
    assert sorted(RandomManagerSelector().sort_managers(ready, {b"a", b"c"})) == [b"a", b"c"]


def test_submodule_classes_are_the_same_objects():
    from pervade.executors.base import ParslExecutor
    from pervade.providers.base import ExecutionProvider
    from pervade.providers.cluster_provider import ClusterProvider
    assert issubclass(pervade.ThreadPoolExecutor, ParslExecutor)
    assert issubclass(pervade.SlurmProvider, ClusterProvider) and issubclass(ClusterProvider, ExecutionProvider)


@pytest.mark.parametrize("name, executor", [("local_threads", pervade.ThreadPoolExecutor),
                                            ("htex_local", pervade.HighThroughputExecutor)])
def test_ready_made_configs_define_config(name, executor):
    module = importlib.import_module(f"pervade.configs.{name}")
    assert isinstance(module.config, pervade.Config)
    assert [type(e) for e in module.config.executors] == [executor]


def test_ready_made_local_threads_runs(run_dir, no_thread_leak):
    from pervade.configs.local_threads import config
    config.run_dir = run_dir

    @pervade.python_app
    def inc(x):
        return x + 1

    with pervade.load(config):
        assert inc(inc(1)).result() == 3


def test_parsl_pool_executor(make_config, no_thread_leak):
    from pervade.concurrent import ParslPoolExecutor

    with ParslPoolExecutor(make_config()) as pool:
        first = pool.submit(pow, 2, 5)
        assert pool.submit(pow, first, 2).result() == 1024  # its futures are dependencies
        assert list(pool.map(pow, [2, 3], [5, 2])) == [32, 9]
        assert pool.app_count == 1
    with pytest.raises(pervade.NoDataFlowKernelError):
        pervade.dfk()  # the pool's kernel is cleaned up with it
    with pytest.raises(RuntimeError, match="shut down"):
        pool.submit(pow, 1, 1)
    with pytest.raises(ValueError):
        ParslPoolExecutor()


def test_parsl_pool_executor_leaves_a_given_kernel_running(dfk):
    from pervade.concurrent import ParslPoolExecutor

    with ParslPoolExecutor(dfk=dfk) as pool:
        assert pool.submit(len, "abc").result() == 3
    assert pervade.dfk() is dfk


def test_timeout_interrupts_a_long_call_only():
    import threading
    import time
    from pervade.app.python import timeout

    def spin(stop):
        while not stop.is_set():  # bytecode keeps running: the asynchronous exception lands
            pass

    with pytest.raises(pervade.AppTimeout):
        timeout(spin, 0.05)(threading.Event())
    done = threading.Event()
    assert timeout(lambda: 7, 0.05)() == 7
    deadline = time.monotonic() + 0.5
    while time.monotonic() < deadline:  # the cancelled timer must not fire later in this thread
        done.wait(0.01)


def test_version_is_in_one_place():
    assert pervade.__version__ == pervade.VERSION == pervade.version.VERSION


def test_representation_mixin():
    from pervade.utils import RepresentationMixin

    class Foo(RepresentationMixin):
        def __init__(self, first, second=2, *, third="3"):
            self.first, self.second = first, second

    assert repr(Foo(1, second=5)) == "Foo(1, second=5, third='<unrecorded>')"
    Foo._validate_repr = True
    with pytest.raises(AttributeError, match="uses third in the constructor"):
        repr(Foo(1))


from pervade.data_provider.globus import GlobusStaging  # noqa: E402
from pervade.data_provider.rsync import RSyncStaging  # noqa: E402

# Parsl's (2026.10.26) option names for each class pervade has.
PARSL_OPTIONS = {
    pervade.Config: "executors memoizer dependency_resolver exit_mode garbage_collect internal_tasks_max_threads "
                    "retries retry_handler run_dir std_autopath strategy strategy_period max_idletime monitoring "
                    "usage_tracking project_name initialize_logging",
    pervade.HighThroughputExecutor: "label provider launch_cmd interchange_launch_cmd address loopback_address "
                                    "worker_port worker_port_range interchange_port_range storage_access working_dir "
                                    "worker_debug cores_per_worker mem_per_worker max_workers_per_node cpu_affinity "
                                    "available_accelerators prefetch_capacity heartbeat_threshold heartbeat_period "
                                    "drain_period poll_period address_probe_timeout worker_logdir_root "
                                    "manager_selector block_error_handler encrypted remote_monitoring_radio",
    pervade.ThreadPoolExecutor: "label max_threads thread_name_prefix storage_access working_dir remote_monitoring_radio",
    pervade.BasicMemoizer: "checkpoint_files checkpoint_period checkpoint_mode memoize",
    pervade.LocalProvider: "nodes_per_block launcher init_blocks min_blocks max_blocks worker_init cmd_timeout "
                           "parallelism",
    pervade.SlurmProvider: "partition account qos constraint clusters nodes_per_block cores_per_node mem_per_node "
                           "gpus_per_node gres init_blocks min_blocks max_blocks parallelism walltime "
                           "scheduler_options regex_job_id worker_init cmd_timeout status_batch_size exclusive launcher",
    pervade.PBSProProvider: "account queue scheduler_options select_options worker_init nodes_per_block cpus_per_node "
                            "init_blocks min_blocks max_blocks parallelism launcher walltime cmd_timeout",
    pervade.TorqueProvider: "account queue scheduler_options worker_init nodes_per_block init_blocks min_blocks "
                            "max_blocks parallelism launcher walltime cmd_timeout",
    pervade.LSFProvider: "nodes_per_block cores_per_block cores_per_node init_blocks min_blocks max_blocks parallelism "
                         "walltime scheduler_options worker_init project queue cmd_timeout bsub_redirection "
                         "request_by_nodes launcher",
    pervade.GridEngineProvider: "nodes_per_block init_blocks min_blocks max_blocks parallelism walltime "
                                "scheduler_options worker_init launcher cmd_timeout queue",
    pervade.CondorProvider: "nodes_per_block cores_per_slot mem_per_slot init_blocks min_blocks max_blocks parallelism "
                            "environment project scheduler_options transfer_input_files walltime worker_init launcher "
                            "requirements cmd_timeout cmd_chunk_size",
    pervade.SimpleLauncher: "debug",
    pervade.WrappedLauncher: "prepend debug",
    pervade.SingleNodeLauncher: "debug fail_on_any",
    pervade.SrunLauncher: "debug overrides",
    pervade.AprunLauncher: "debug overrides",
    pervade.SrunMPILauncher: "debug overrides",
    pervade.JsrunLauncher: "debug overrides",
    pervade.GnuParallelLauncher: "debug",
    pervade.MpiExecLauncher: "debug bind_cmd overrides",
    pervade.MpiRunLauncher: "debug bash_location overrides",
    RSyncStaging: "hostname",
    GlobusStaging: "endpoint_uuid endpoint_path local_path",
}


def parameters(cls):
    return list(inspect.signature(cls.__init__).parameters.values())[1:]


@pytest.mark.parametrize("cls", PARSL_OPTIONS, ids=lambda c: c.__name__)
def test_every_parsl_option_is_accepted(cls):
    names = {p.name for p in parameters(cls)}
    assert set(PARSL_OPTIONS[cls].split()) <= names, set(PARSL_OPTIONS[cls].split()) - names


@pytest.mark.parametrize("cls", PARSL_OPTIONS, ids=lambda c: c.__name__)
def test_unknown_option_is_a_type_error(cls):
    assert not any(p.kind == p.VAR_KEYWORD for p in parameters(cls)), f"{cls.__name__} takes **kwargs"
    args = ["srun"] if cls is pervade.WrappedLauncher else []
    with pytest.raises(TypeError, match="unexpected keyword argument 'max_wokers_per_node'"):
        cls(*args, max_wokers_per_node=1)


def test_removed_parsl_option_is_parsls_type_error():
    # Parsl removed HighThroughputExecutor(max_workers=) in favour of max_workers_per_node.
    with pytest.raises(TypeError, match="unexpected keyword argument 'max_workers'"):
        pervade.HighThroughputExecutor(max_workers=4)


def module_imports(root: pathlib.Path) -> dict:
    """pervade module -> the pervade modules it imports at module level (imports inside functions
    run later and cannot make a cycle at import time). `from P import name` counts as importing
    P.name when that is a module, else P."""
    sources = {}
    for path in root.rglob("*.py"):
        parts = path.relative_to(root).with_suffix("").parts
        is_package = parts[-1] == "__init__"
        module = ".".join(("pervade",) + (parts[:-1] if is_package else parts))
        sources[module] = (path, module if is_package else module.rsplit(".", 1)[0])
    modules = set(sources) | {f"pervade.{p.name.split('.')[0]}" for p in root.glob("*.so")}
    graph = {}
    for module, (path, package) in sources.items():
        edges = set()
        for node in ast.parse(path.read_text()).body:
            if isinstance(node, ast.Import):
                edges.update(a.name for a in node.names)
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    anchor = package.split(".")[:len(package.split(".")) - node.level + 1]
                    base = ".".join(anchor + ([base] if base else []))
                for a in node.names:
                    edges.add(f"{base}.{a.name}" if f"{base}.{a.name}" in modules else base)
        graph[module] = {e for e in edges if e in sources and e != module}
    return graph


def find_cycles(graph: dict) -> list:
    cycles, state = [], {}

    def visit(module, path):
        state[module] = "open"
        for target in sorted(graph[module]):
            if state.get(target) == "open":
                cycles.append(path[path.index(target):] + [target])
            elif target not in state:
                visit(target, path + [target])
        state[module] = "done"

    for module in sorted(graph):
        if module not in state:
            visit(module, [module])
    return cycles


def test_cycle_finder_finds_a_cycle(tmp_path):
    (tmp_path / "a.py").write_text("from . import b\n")
    (tmp_path / "b.py").write_text("import os\nfrom .a import thing\n")
    (tmp_path / "c.py").write_text("def f():\n    from . import a\n")  # lazy: not an edge
    graph = module_imports(tmp_path)
    assert graph["pervade.c"] == set()
    assert find_cycles(graph) == [["pervade.a", "pervade.b", "pervade.a"]]


def test_no_import_cycle_between_modules():
    """pervade's modules import each other in one direction only (a cycle makes import order
    matter and leaves names half-initialised)."""
    graph = module_imports(pathlib.Path(pervade.__file__).parent)
    assert graph["pervade.worker"] >= {"pervade.serialize", "pervade.parsl_imports"}  # the walk sees imports
    cycles = find_cycles(graph)
    assert not cycles, "import cycles: " + "; ".join(" -> ".join(c) for c in cycles)
