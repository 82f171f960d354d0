"""Parsl's parsl.app.futures: DataFuture (defined in pervade.data)."""

from ..data import DataFuture

__all__ = ["DataFuture"]
