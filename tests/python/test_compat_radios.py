"""Parsl's monitoring radios as executor configuration: a script that names one runs unchanged on
pervade and gets the same monitoring database (pervade's own transport, whatever the radio)."""

import sqlite3
import textwrap

import pytest

import pervade
from pervade.errors import ConfigurationError
from pervade.executors.status_handling import BlockProviderExecutor
from pervade.monitoring.radios import FilesystemRadio, HTEXRadio, MultiprocessingQueueRadio, RadioConfig, UDPRadio

from test_compat_run import run


def test_radios_are_kept_on_the_executors_and_checked():
    udp = UDPRadio(address="localhost", atexit_timeout=0)
    assert (udp.address, udp.port, udp.atexit_timeout, udp.hmac_digest) == ("localhost", None, 0, "sha512")
    assert repr(udp) == "UDPRadio(address='localhost', atexit_timeout=0, debug=False, hmac_digest='sha512', port=None)"
    with pytest.raises(TypeError):
        UDPRadio()  # address is required, as in Parsl
    assert pervade.ThreadPoolExecutor(remote_monitoring_radio=udp).remote_monitoring_radio is udp
    assert pervade.ThreadPoolExecutor().remote_monitoring_radio is None
    htex = pervade.HighThroughputExecutor()
    assert isinstance(htex.remote_monitoring_radio, HTEXRadio)  # Parsl's default for HTEX
    assert isinstance(htex, BlockProviderExecutor)
    assert not isinstance(pervade.ThreadPoolExecutor(), BlockProviderExecutor)
    fs = FilesystemRadio()
    assert pervade.HighThroughputExecutor(remote_monitoring_radio=fs).remote_monitoring_radio is fs
    assert isinstance(MultiprocessingQueueRadio(), RadioConfig)
    with pytest.raises(ConfigurationError, match="remote_monitoring_radio must be a RadioConfig"):
        pervade.HighThroughputExecutor(remote_monitoring_radio="udp")


RADIO_SCRIPT = """
    import sqlite3, sys
    import parsl
    from parsl.config import Config
    from parsl.executors import HighThroughputExecutor, ThreadPoolExecutor
    from parsl.monitoring import MonitoringHub
    from parsl.monitoring.radios.filesystem import FilesystemRadio
    from parsl.monitoring.radios.udp import UDPRadio
    from parsl.providers import LocalProvider

    @parsl.python_app(executors=["threads"])
    def on_thread(x):
        return x + 1

    @parsl.python_app(executors=["htex"])
    def on_pool(x):
        return 2 * x

    config = Config(run_dir=sys.argv[1], monitoring=MonitoringHub(resource_monitoring_interval=0),
                    executors=[ThreadPoolExecutor(label="threads",
                                                  remote_monitoring_radio=UDPRadio(address="localhost", atexit_timeout=0)),
                               HighThroughputExecutor(label="htex", max_workers_per_node=1,
                                                      remote_monitoring_radio=FilesystemRadio(),
                                                      provider=LocalProvider(init_blocks=1))])
    with parsl.load(config):
        print(on_pool(on_thread(1)).result(timeout=60))
"""


def test_a_script_naming_radios_writes_the_monitoring_database(tmp_path):
    script = tmp_path / "radios.py"
    script.write_text(textwrap.dedent(RADIO_SCRIPT))
    run_dir = tmp_path / "runinfo"
    r = run(["run", str(script), str(run_dir)], cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "4"
    with sqlite3.connect(run_dir / "monitoring.db") as db:
        assert db.execute("SELECT count(*) FROM task").fetchone()[0] == 2
        assert db.execute("SELECT task_executor FROM try ORDER BY task_id").fetchall() == [("threads",), ("htex",)]
        assert db.execute("SELECT count(*) FROM status WHERE task_status_name='exec_done'").fetchone()[0] == 2
        assert db.execute("SELECT count(*) FROM node WHERE active=1").fetchone()[0] >= 1  # the pool joined
