"""Parsl's parsl.serialize for users' code: serialize()/deserialize(), the serializer registries,
pack_apply_message() and parsl.executors.execute_task, and reading payloads Parsl made."""

import os
import pickle
import subprocess
import sys
import textwrap
from functools import partial

import pytest

from pervade import parsl_imports
from pervade.executors.execute_task import execute_task
from pervade.serialize import deserialize, pack_apply_message, serialize, unpack_apply_message
from pervade.serialize.base import SerializerBase
from pervade.serialize.concretes import DillSerializer, PickleSerializer
from pervade.serialize.errors import DeserializerPluginError
from pervade.serialize.facade import (additional_methods_for_deserialization, methods_for_data,
                                      register_method_for_data)


def add(*args, name="sum"):
    return f"{sum(args)} {name}"


class Upper(SerializerBase):
    """A user's serializer: its identifier is b"<module> <class>" (SerializerBase's default)."""

    def serialize(self, data):
        return str(data).upper().encode()

    def deserialize(self, body):
        return "read:" + body.decode()


@pytest.fixture
def data_methods():
    """Leaves the registries as the test found them."""
    saved, extra = dict(methods_for_data), dict(additional_methods_for_deserialization)
    yield
    methods_for_data.clear()
    methods_for_data.update(saved)
    additional_methods_for_deserialization.clear()
    additional_methods_for_deserialization.update(extra)


def test_round_trip_of_data_and_of_code_pickle_cannot_do():
    local = 7

    class Local:
        def __init__(self):
            self.v = local

    assert deserialize(serialize({"a": [1, 2.5, None]})) == {"a": [1, 2.5, None]}
    assert deserialize(serialize(Local())).v == 7  # a class local to a function: by value
    assert deserialize(serialize(lambda x: x + local))(1) == 8
    assert deserialize(serialize(partial(add, 1, name="n")))(2) == "3 n"


def test_payload_is_a_header_then_a_pickle_parsl_reads():
    payload = serialize([1, 2])
    header, body = payload.split(b"\n", 1)
    assert header == b"01"  # Parsl's PickleSerializer reads it: pickle.loads
    assert pickle.loads(body) == [1, 2]
    assert PickleSerializer().deserialize(PickleSerializer().serialize(3)) == 3


def test_pack_apply_message_and_execute_task():
    packed = pack_apply_message(add, (1, 2, 3), {"name": "boots"})
    assert isinstance(packed, bytes)
    func, args, kwargs = unpack_apply_message(packed)
    assert (func(*args, **kwargs), args, kwargs) == ("6 boots", (1, 2, 3), {"name": "boots"})
    assert execute_task(packed) == "6 boots"
    with pytest.raises(ZeroDivisionError):
        execute_task(pack_apply_message(lambda: 1 / 0, (), {}))


def test_a_registered_serializer_writes_and_a_plugin_header_is_read(data_methods):
    methods_for_data.clear()
    register_method_for_data(Upper())
    payload = serialize("abc")
    assert payload == b"test_parsl_serialize Upper\nABC"
    assert deserialize(payload) == "read:ABC"
    methods_for_data.clear()  # no longer registered: deserialize() imports the class the header names
    assert deserialize(payload) == "read:ABC"
    assert b"test_parsl_serialize Upper" in additional_methods_for_deserialization


def test_failing_serializers_fall_through_to_the_next(data_methods):
    class Refuses(Upper):
        identifier = b"refuses"

        def serialize(self, data):
            raise TypeError("not me")

    methods_for_data.clear()
    register_method_for_data(Refuses())
    with pytest.raises(TypeError, match="not me"):
        serialize(1)
    register_method_for_data(PickleSerializer())
    assert serialize(1).startswith(b"01\n")


def test_unknown_header_is_a_deserializer_plugin_error():
    with pytest.raises(DeserializerPluginError, match="no_such_module"):
        deserialize(b"no_such_module Thing\nbody")
    with pytest.raises(DeserializerPluginError):
        deserialize(b"no header at all")


def test_dill_payloads_need_dill():
    try:
        import dill
    except ModuleNotFoundError:
        with pytest.raises(ModuleNotFoundError, match="pip install dill"):
            deserialize(b"02\n" + pickle.dumps(1))
        with pytest.raises(ModuleNotFoundError, match="dill"):
            DillSerializer().serialize(1)
    else:  # a payload Parsl made with its default data serializer
        assert deserialize(b"02\n" + dill.dumps({"x": 1})) == {"x": 1}


def test_parsl_names_under_pervade_run(tmp_path):
    script = tmp_path / "script.py"
    script.write_text(textwrap.dedent("""
        from parsl.serialize import deserialize, serialize
        from parsl.serialize.facade import methods_for_code
        from parsl.executors.execute_task import execute_task
        from parsl.serialize.facade import pack_apply_message
        from parsl.executors.high_throughput.errors import ManagerLost, WorkerLost
        import parsl
        assert ManagerLost is parsl.ManagerLost and WorkerLost is parsl.WorkerLost
        print(deserialize(serialize(lambda: 5))(), len(methods_for_code), execute_task(pack_apply_message(max, (2, 9), {})))
    """))
    env = {k: v for k, v in os.environ.items() if k not in (parsl_imports.ENV_ENABLED, parsl_imports.ENV_TESTS)}
    out = subprocess.run([sys.executable, "-m", "pervade", "run", str(script)], capture_output=True, text=True,
                         env=env, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["5", "1", "9"]
