"""Parsl's parsl.tests.configs.htex_local: one HighThroughputExecutor pool on this machine,
no scaling (strategy "none")."""

from ...config import Config
from ...executors import HighThroughputExecutor
from ...launchers import SimpleLauncher
from ...providers import LocalProvider


def fresh_config():
    return Config(executors=[HighThroughputExecutor(label="htex_local", worker_debug=True, cores_per_worker=1,
                                                    provider=LocalProvider(init_blocks=1, max_blocks=1,
                                                                           launcher=SimpleLauncher()))],
                  strategy="none")


config = fresh_config()
