"""parsl_resource_specification on a HighThroughputExecutor: Parsl's validation (only `priority`
is taken; any other key raises InvalidResourceSpecification), through the executor's method and
through an app call on a real pool."""
import pytest

import pervade as parsl
from pervade import HighThroughputExecutor, LocalProvider, python_app
from pervade.executors.errors import InvalidResourceSpecification


def test_validate_resource_spec_takes_priority_only():
    htex = HighThroughputExecutor()
    assert htex.validate_resource_spec({}) is None
    assert htex.validate_resource_spec({"priority": 2}) is None
    with pytest.raises(InvalidResourceSpecification) as e:
        htex.validate_resource_spec({"num_nodes": 2, "priority": 1})
    assert e.value.invalid_keys == {"num_nodes"}
    assert "only accepts these types of resources: priority" in str(e.value)


@python_app
def echo(x, parsl_resource_specification={}):  # noqa: B006 - Parsl's signature
    return x


def test_an_app_call_with_an_unknown_key_fails_with_invalid_resource_specification(tmp_path):
    config = parsl.Config(executors=[HighThroughputExecutor(label="htex", max_workers_per_node=1,
                                                            provider=LocalProvider(init_blocks=1))],
                          run_dir=str(tmp_path / "runinfo"))
    with parsl.load(config):
        assert echo(1, parsl_resource_specification={"priority": 3}).result(timeout=60) == 1
        with pytest.raises(InvalidResourceSpecification) as e:
            echo(2, parsl_resource_specification={"cores": 2}).result(timeout=60)
        assert e.value.invalid_keys == {"cores"}
