"""Parsl's parsl.tests.configs.local_threads: apps run on threads of this process."""

from ...config import Config
from ...executors import ThreadPoolExecutor


def fresh_config():
    return Config(executors=[ThreadPoolExecutor()])


config = fresh_config()
