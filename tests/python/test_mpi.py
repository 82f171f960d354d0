"""MPI mode (docs/mpi.md) on this machine: Parsl's API and checks, the resource specification's
keys, and the variables each task sees, with pools whose block's nodes come from a PBS node file
(as Parsl's own tests do). Real MPI programs on the Slurm test cluster: test_mpi_cluster.py."""

import pytest
from conftest import pid_alive, wait_until

import pervade as parsl
from pervade import HighThroughputExecutor, LocalProvider, MPIExecutor, SimpleLauncher, bash_app, python_app
from pervade.executors.errors import InvalidResourceSpecification
from pervade.executors.high_throughput.mpi_prefix_composer import compose_all, validate_resource_spec
from pervade.launchers import SrunLauncher
from pervade.providers import SlurmProvider
from pervade.serialize import mpi_request

T = 60


def test_mpi_executor_takes_parsls_launchers_and_needs_a_simple_launcher():
    for launcher in ("srun", "aprun", "mpiexec"):
        assert MPIExecutor(mpi_launcher=launcher, provider=SlurmProvider(launcher=SimpleLauncher())).mpi_launcher \
            == launcher
    with pytest.raises(ValueError, match="bad_launcher"):
        MPIExecutor(mpi_launcher="bad_launcher", provider=SlurmProvider(launcher=SimpleLauncher()))
    with pytest.raises(TypeError, match="SimpleLauncher"):
        MPIExecutor(provider=SlurmProvider(launcher=SrunLauncher()))
    with pytest.raises(TypeError, match="SimpleLauncher"):
        HighThroughputExecutor(enable_mpi_mode=True, provider=LocalProvider())
    htex = HighThroughputExecutor(enable_mpi_mode=True, mpi_launcher="srun", provider=LocalProvider(launcher=SimpleLauncher()))
    assert htex.enable_mpi_mode and htex.mpi_launcher == "srun"
    assert MPIExecutor(max_workers_per_block=3).max_workers_per_node == 3


def test_resource_specs_are_checked_and_completed_as_in_parsl():
    assert mpi_request({"num_nodes": 2, "ranks_per_node": 3}) == (2, 3, 6, "")
    assert mpi_request({"num_nodes": "2", "num_ranks": 5}) == (2, 3, 5, "")  # ceil(5 / 2) ranks per node
    assert mpi_request({"num_ranks": 4}) == (1, 4, 4, "")  # one node when only ranks are given
    assert mpi_request({"num_nodes": 3}) == (3, 0, 0, "")  # whole nodes
    assert mpi_request({"launcher_options": "-x"}) == (0, 0, 0, "-x")  # no nodes: an ordinary task
    for spec, key in (({"num_nodes": 0}, "num_nodes"), ({"num_nodes": -1}, "num_nodes"),
                      ({"ranks_per_node": "two"}, "ranks_per_node"), ({"num_ranks": True}, "num_ranks"),
                      ({"num_nodes": 1, "ranks_per_node": 2, "num_ranks": 3}, "num_ranks"),
                      ({"launcher_options": 5}, "launcher_options")):
        with pytest.raises(InvalidResourceSpecification) as e:
            mpi_request(spec)
        assert e.value.invalid_keys == {key}, spec
    mpi = MPIExecutor(provider=LocalProvider(launcher=SimpleLauncher()))
    assert mpi.validate_resource_spec({"num_nodes": 2, "ranks_per_node": 1}) is None
    assert mpi.validate_resource_spec({"launcher_options": "--debug_foo"}) is None
    with pytest.raises(InvalidResourceSpecification, match="requires optional parsl_resource_specification"):
        mpi.validate_resource_spec({})
    with pytest.raises(InvalidResourceSpecification) as e:
        validate_resource_spec({"num_nodes": 2, "BAD_OPT": 1})
    assert e.value.invalid_keys == {"BAD_OPT"}
    with pytest.raises(InvalidResourceSpecification):
        HighThroughputExecutor().validate_resource_spec({"num_nodes": 2})


def test_prefixes_have_parsls_formats():
    table = compose_all("srun", {"num_nodes": 2, "num_ranks": 8, "ranks_per_node": 4}, ["node1", "node2"])
    assert table == {
        "PARSL_MPIEXEC_PREFIX": "mpiexec -n 8 -ppn 4 -hosts node1,node2 ",
        "PARSL_SRUN_PREFIX": "srun --ntasks 8 --ntasks-per-node 4 --nodelist node1,node2 --nodes 2 ",
        "PARSL_APRUN_PREFIX": "aprun -n 8 -N 4 -node-list node1,node2 ",
        "PARSL_MPI_PREFIX": "srun --ntasks 8 --ntasks-per-node 4 --nodelist node1,node2 --nodes 2 ",
    }


@pytest.fixture
def pbs_nodes(tmp_path):
    """A PBS node file of four nodes (the pool's node list: nothing runs on them here)."""
    path = tmp_path / "pbs_nodefile"
    path.write_text("node1\nnode2\nnode3\nnode4\n")
    return path


def mpi_config(tmp_path, nodefile, launcher="mpiexec", workers=2, executor=MPIExecutor, **options):
    if executor is MPIExecutor:
        options["max_workers_per_block"] = workers
    else:
        options.update(enable_mpi_mode=True, max_workers_per_node=workers)
    return parsl.Config(executors=[executor(
        label="mpi", mpi_launcher=launcher,
        provider=LocalProvider(worker_init=f"export PBS_NODEFILE={nodefile}", launcher=SimpleLauncher()), **options)],
        run_dir=str(tmp_path / "runinfo"))


@python_app
def parsl_variables(parsl_resource_specification={}):  # noqa: B006 - Parsl's signature
    import os
    return {k: v for k, v in os.environ.items() if k.startswith("PARSL_") and not k.startswith("PARSL_WORKER_")}


@bash_app
def echo_prefix(parsl_resource_specification, stdout=None):
    return 'echo "$PARSL_MPI_PREFIX hostname"'


def test_tasks_see_parsls_variables_with_nodes_of_their_own(tmp_path, pbs_nodes):
    with parsl.load(mpi_config(tmp_path, pbs_nodes)):
        env = parsl_variables(parsl_resource_specification={"num_nodes": 3, "ranks_per_node": 5}).result(timeout=T)
        assert env["PARSL_NUM_NODES"] == "3" and env["PARSL_RANKS_PER_NODE"] == "5"
        assert env["PARSL_NUM_RANKS"] == "15"
        nodes = env["PARSL_MPI_NODELIST"].split(",")
        assert len(nodes) == 3 and set(nodes) <= {"node1", "node2", "node3", "node4"}
        assert env["PARSL_MPI_PREFIX"] == env["PARSL_MPIEXEC_PREFIX"] == \
            f"mpiexec -n 15 -ppn 5 -hosts {env['PARSL_MPI_NODELIST']} "
        assert env["PARSL_SRUN_PREFIX"].startswith("srun --ntasks 15 --ntasks-per-node 5 --nodelist")
        # The next task on that worker does not keep them.
        assert "PARSL_MPI_NODELIST" not in parsl_variables(parsl_resource_specification={"priority": 1}).result(T)
        out = tmp_path / "prefix.out"
        spec = {"num_nodes": 1, "num_ranks": 2, "launcher_options": "-l"}
        assert echo_prefix(parsl_resource_specification=spec, stdout=str(out)).result(T) == 0
        assert out.read_text().startswith("mpiexec -n 2 -ppn 2 -hosts node")
        assert out.read_text().rstrip().endswith("-l hostname")


def test_enable_mpi_mode_and_srun_prefix(tmp_path, pbs_nodes):
    with parsl.load(mpi_config(tmp_path, pbs_nodes, launcher="srun", executor=HighThroughputExecutor)):
        env = parsl_variables(parsl_resource_specification={"num_nodes": 2, "num_ranks": 3}).result(timeout=T)
        assert env["PARSL_MPI_PREFIX"] == env["PARSL_SRUN_PREFIX"]
        assert env["PARSL_RANKS_PER_NODE"] == "2" and env["PARSL_NUM_RANKS"] == "3"


@python_app
def hold_nodes(path, parsl_resource_specification={}):  # noqa: B006 - Parsl's signature
    import os
    import time
    open(os.path.join(path, os.environ["PARSL_MPI_NODELIST"].replace(",", "_")), "w").close()
    while not os.path.exists(os.path.join(path, "go")):
        time.sleep(0.01)
    return os.environ["PARSL_MPI_NODELIST"].split(",")


def test_running_tasks_never_share_nodes_and_bad_requests_fail_naming_the_key(tmp_path, pbs_nodes):
    """Two tasks of 2 whole nodes each run at once on disjoint nodes (both must start for either to
    end); a task without a spec, one asking for more nodes than the block has, and MPI keys on an
    executor not in MPI mode fail with InvalidResourceSpecification."""
    gate = tmp_path / "gate"
    gate.mkdir()
    with parsl.load(mpi_config(tmp_path, pbs_nodes)):
        a = hold_nodes(str(gate), parsl_resource_specification={"num_nodes": 2})
        b = hold_nodes(str(gate), parsl_resource_specification={"num_nodes": 2})
        assert wait_until(lambda: len(list(gate.iterdir())) == 2, T)
        (gate / "go").touch()
        nodes_a, nodes_b = a.result(timeout=T), b.result(timeout=T)
        assert len(nodes_a) == len(nodes_b) == 2 and not set(nodes_a) & set(nodes_b)
        with pytest.raises(InvalidResourceSpecification, match="requires optional parsl_resource_specification"):
            parsl_variables().result(timeout=T)
        with pytest.raises(InvalidResourceSpecification) as e:
            parsl_variables(parsl_resource_specification={"num_nodes": 5}).result(timeout=T)
        assert e.value.invalid_keys == {"num_nodes"}
        assert "asks for 5 nodes (num_nodes) but the block has 4" in str(e.value)
    config = parsl.Config(executors=[HighThroughputExecutor(label="htex", max_workers_per_node=1)],
                          run_dir=str(tmp_path / "runinfo2"))
    with parsl.load(config):
        with pytest.raises(InvalidResourceSpecification, match="not in MPI mode") as e:
            parsl_variables(parsl_resource_specification={"num_nodes": 1}).result(timeout=T)
        assert e.value.invalid_keys == {"num_nodes"}


@bash_app
def launched(pidfile, parsl_resource_specification=None):
    # Stands for an MPI launcher and its ranks: the shell's and a child's pids, written once both exist.
    return f"sleep 600 & echo $$ $! > {pidfile}.tmp && mv {pidfile}.tmp {pidfile}; wait"


def test_a_cancelled_mpi_task_is_stopped_with_its_processes_and_its_nodes_are_free_again(tmp_path, pbs_nodes):
    pidfile = tmp_path / "pids"
    with parsl.load(mpi_config(tmp_path, pbs_nodes, workers=1)):
        fut = launched(str(pidfile), parsl_resource_specification={"num_nodes": 4})
        assert wait_until(pidfile.exists, T)
        pids = [int(p) for p in pidfile.read_text().split()]
        assert fut.cancel() is True
        assert wait_until(lambda: not any(pid_alive(p) for p in pids), T), "the task's processes survived"
        env = parsl_variables(parsl_resource_specification={"num_nodes": 4}).result(timeout=T)
        assert env["PARSL_MPI_NODELIST"] == "node1,node2,node3,node4"


def test_a_launcher_missing_on_the_block_fails_the_executor_with_the_reason(tmp_path, pbs_nodes):
    with parsl.load(mpi_config(tmp_path, pbs_nodes, launcher="aprun")):  # no aprun on this machine
        with pytest.raises(Exception, match=r"'aprun' \(mpi_launcher\) is not on the PATH"):
            parsl_variables(parsl_resource_specification={"num_nodes": 1}).result(timeout=T)


def test_an_explicit_host_list_names_the_nodes_and_their_cores(tmp_path):
    with pytest.raises(parsl.errors.ConfigurationError, match="mpi_hosts"):
        HighThroughputExecutor(mpi_hosts=["a"])
    for bad in ("a,b", [], ["a:2", "b"], ["a:0"], ["a b"]):
        with pytest.raises(parsl.errors.ConfigurationError, match="mpi_hosts"):
            MPIExecutor(mpi_hosts=bad)
    config = parsl.Config(executors=[MPIExecutor(label="mpi", max_workers_per_block=2, mpi_hosts=["h1:2", "h2:2"])],
                          run_dir=str(tmp_path / "runinfo"))
    with parsl.load(config):
        env = parsl_variables(parsl_resource_specification={"num_nodes": 2, "ranks_per_node": 2}).result(timeout=T)
        assert env["PARSL_MPI_NODELIST"] == "h1,h2"
        with pytest.raises(InvalidResourceSpecification) as e:  # the list says 2 cores per host
            parsl_variables(parsl_resource_specification={"ranks_per_node": 3}).result(timeout=T)
        assert e.value.invalid_keys == {"ranks_per_node"}
