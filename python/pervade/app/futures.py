"""Parsl's parsl.app.futures: DataFuture (defined in pervade.data), and Future, which Parsl's
module imports from concurrent.futures and workflows import from here."""

from concurrent.futures import Future

from ..data import DataFuture

__all__ = ["Future", "DataFuture"]
