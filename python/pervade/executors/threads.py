"""Parsl's parsl.executors.threads: ThreadPoolExecutor (defined in pervade.executors)."""

from . import ThreadPoolExecutor

__all__ = ["ThreadPoolExecutor"]
