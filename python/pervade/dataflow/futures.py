"""Parsl's parsl.dataflow.futures: AppFuture (defined in pervade.futures)."""

from ..futures import AppFuture

__all__ = ["AppFuture"]
