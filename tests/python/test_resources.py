"""parsl_resource_specification on a HighThroughputExecutor: Parsl's `priority` and pervade's
`cores`, `memory` (MB), `gpus` and `running_time` (docs/htex.md, "Resources" and "Walltime-aware
blocks"). Checked at the call; on real pools, a node runs at most what it has at once (observed
from inside the tasks), a request no pool can hold fails at once, and pools of blocks with a
walltime signal their tasks and drain before the end."""
import os
import uuid

import pytest

import pervade as parsl
from pervade import HighThroughputExecutor, LocalProvider, python_app
from pervade.executors.errors import InvalidResourceSpecification

CPUS = len(os.sched_getaffinity(0))


def test_validate_resource_spec_takes_priority_and_pervades_resources():
    htex = HighThroughputExecutor()
    assert htex.validate_resource_spec({}) is None
    assert htex.validate_resource_spec({"priority": 2, "cores": 2, "memory": 100, "gpus": 1,
                                        "running_time": 2.5}) is None
    with pytest.raises(InvalidResourceSpecification) as e:
        htex.validate_resource_spec({"disk": 2, "priority": 1})
    assert e.value.invalid_keys == {"disk"}
    assert "only accepts these types of resources: cores, gpus, memory, priority, running_time" in str(e.value)


@pytest.mark.parametrize("key, value", [("cores", 0), ("cores", -1), ("cores", 1.5), ("cores", True),
                                        ("memory", 0), ("memory", "1GB"), ("gpus", -2), ("running_time", 0),
                                        ("running_time", -5), ("running_time", float("nan"))])
def test_a_value_that_is_not_a_positive_number_names_its_key(key, value):
    with pytest.raises(InvalidResourceSpecification) as e:
        HighThroughputExecutor().validate_resource_spec({key: value})
    assert e.value.invalid_keys == {key}
    assert f"{key} must be" in str(e.value)


@python_app
def echo(x, parsl_resource_specification={}):  # noqa: B006 - Parsl's signature
    return x


@python_app
def occupy(directory, weight, expect, parsl_resource_specification={}):  # noqa: B006
    """Runs while `weight` is counted in `directory` (one file per running task, named by its
    weight); waits until the running tasks' weights add up to `expect` (or 10 s), then a little
    longer so that a task started beyond the limit would be seen. Returns the largest total seen,
    its CUDA_VISIBLE_DEVICES and its CPUs."""
    import os
    import time
    import uuid

    def total():
        return sum(int(name.split("-")[0]) for name in os.listdir(directory))

    mine = os.path.join(directory, f"{weight}-{uuid.uuid4().hex}")
    open(mine, "w").close()
    try:
        most = total()
        deadline = time.monotonic() + 10
        while most < expect and time.monotonic() < deadline:
            time.sleep(0.01)
            most = max(most, total())
        linger = time.monotonic() + 0.3
        while time.monotonic() < linger:
            most = max(most, total())
            time.sleep(0.01)
        return most, os.environ.get("CUDA_VISIBLE_DEVICES"), sorted(os.sched_getaffinity(0))
    finally:
        os.remove(mine)


def htex_config(tmp_path, provider=None, **options):
    options.setdefault("max_workers_per_node", 4)
    options.setdefault("cores_per_worker", 0.25)
    return parsl.Config(executors=[HighThroughputExecutor(label="htex", provider=provider or LocalProvider(init_blocks=1),
                                                          **options)],
                        run_dir=str(tmp_path / "runinfo"), strategy_period=0.2)


def running_dir(tmp_path):
    d = tmp_path / f"running-{uuid.uuid4().hex[:6]}"
    d.mkdir()
    return str(d)


def test_an_app_call_with_an_unknown_key_or_a_bad_value_raises_at_the_call(tmp_path):
    with parsl.load(htex_config(tmp_path)):
        assert echo(1, parsl_resource_specification={"priority": 3}).result(timeout=60) == 1
        with pytest.raises(InvalidResourceSpecification) as e:
            echo(2, parsl_resource_specification={"disk": 2})
        assert e.value.invalid_keys == {"disk"}
        with pytest.raises(InvalidResourceSpecification) as e:
            echo(2, parsl_resource_specification={"cores": -1})
        assert e.value.invalid_keys == {"cores"}


def test_a_node_runs_at_most_its_cores_worth_of_tasks_each_on_cpus_of_its_own(tmp_path):
    # 4 workers, CPUS cores: tasks of one core each run CPUS at a time, each pinned to one CPU.
    directory = running_dir(tmp_path)
    with parsl.load(htex_config(tmp_path, cpu_affinity="block")):
        futures = [occupy(directory, 1, CPUS, parsl_resource_specification={"cores": 1}) for _ in range(3 * CPUS)]
        results = [f.result(timeout=120) for f in futures]
    assert max(most for most, _, _ in results) == CPUS
    assert all(len(cpus) == 1 for _, _, cpus in results)


def test_memory_limits_how_many_tasks_run_at_once(tmp_path):
    # The node offers 1 GiB (PARSL_MEMORY_GB): two tasks of 400 MB fit at once, not three.
    directory = running_dir(tmp_path)
    provider = LocalProvider(init_blocks=1, worker_init="export PARSL_MEMORY_GB=1")
    with parsl.load(htex_config(tmp_path, provider)):
        futures = [occupy(directory, 1, 2, parsl_resource_specification={"memory": 400}) for _ in range(6)]
        assert max(f.result(timeout=120)[0] for f in futures) == 2


def test_gpus_limit_tasks_and_each_task_sees_only_its_own(tmp_path):
    directory = running_dir(tmp_path)
    with parsl.load(htex_config(tmp_path, available_accelerators=["a", "b", "c", "d"])):
        futures = [occupy(directory, 1, 2, parsl_resource_specification={"gpus": 2}) for _ in range(6)]
        results = [f.result(timeout=120) for f in futures]
    assert max(most for most, _, _ in results) == 2
    for _, visible, _ in results:
        ids = visible.split(",")
        assert len(ids) == 2 and set(ids) <= {"a", "b", "c", "d"}


def test_mixed_sizes_all_complete_and_never_exceed_the_node(tmp_path):
    # Tasks of 1 core, of all the node's cores and without a request, interleaved: the big ones
    # are not starved by the small ones, and the cores in use never exceed the node's.
    directory = running_dir(tmp_path)
    with parsl.load(htex_config(tmp_path)):
        futures = []
        for i in range(12):
            if i % 4 == 3:
                futures.append(occupy(directory, CPUS, CPUS, parsl_resource_specification={"cores": CPUS}))
            else:
                futures.append(occupy(directory, 1, CPUS, parsl_resource_specification={"cores": 1}))
            futures.append(echo(i))
        results = [f.result(timeout=180) for f in futures]
    assert max(r[0] for r in results if isinstance(r, tuple)) == CPUS
    assert [r for r in results if not isinstance(r, tuple)] == list(range(12))


def test_a_request_no_pool_can_hold_fails_naming_it_and_the_largest_pool(tmp_path):
    with parsl.load(htex_config(tmp_path)):
        with pytest.raises(InvalidResourceSpecification) as e:
            echo(1, parsl_resource_specification={"cores": CPUS + 1, "memory": 10}).result(timeout=60)
        assert e.value.invalid_keys == {"cores"}
        assert f"the task asks for {CPUS + 1} cores, 10 MB, 0 GPUs" in str(e.value)
        assert f"the largest: {CPUS} cores" in str(e.value)
        assert echo(2, parsl_resource_specification={"cores": CPUS}).result(timeout=60) == 2


# ---------------------------------------------------------------- walltime-aware blocks

@python_app
def wait_for_sigterm(timeout):
    """Returns True once the worker gets SIGTERM (within timeout), as a task saving its state
    would; the worker's own handler is put back."""
    import signal
    import time
    got = []
    previous = signal.signal(signal.SIGTERM, lambda *_: got.append(True))
    try:
        deadline = time.monotonic() + timeout
        while not got and time.monotonic() < deadline:
            time.sleep(0.02)
        return bool(got)
    finally:
        signal.signal(signal.SIGTERM, previous)


@python_app
def block_of_this_worker(parsl_resource_specification={}):  # noqa: B006
    import os
    return os.environ["PARSL_WORKER_BLOCK_ID"]


def test_before_its_walltime_ends_a_pool_signals_its_tasks_drains_and_timed_tasks_go_to_a_new_block(tmp_path):
    # Blocks run 12 s; 8 s before the end (after 4 s) the pool sends SIGTERM to its tasks and is
    # drained; a task declaring 5 s then waits for a new block, which the strategy starts.
    provider = LocalProvider(init_blocks=1, max_blocks=2, walltime="00:00:12")
    with parsl.load(htex_config(tmp_path, provider, walltime_grace=8)):
        first = block_of_this_worker().result(timeout=60)
        assert wait_for_sigterm(60).result(timeout=90) is True
        # Longer than any block runs tasks: fails at once, naming the key.
        with pytest.raises(InvalidResourceSpecification) as e:
            echo(1, parsl_resource_specification={"running_time": 5}).result(timeout=60)
        assert e.value.invalid_keys == {"running_time"}
        assert "blocks run tasks for 4 s" in str(e.value)
        later = block_of_this_worker(parsl_resource_specification={"running_time": 3}).result(timeout=120)
        assert later != first
