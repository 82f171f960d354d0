"""Parsl's parsl.configs.local_threads: apps run on threads of this process."""

from ..config import Config
from ..executors import ThreadPoolExecutor

config = Config(executors=[ThreadPoolExecutor()])
