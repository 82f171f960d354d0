"""Parsl's parsl.dataflow.futures: AppFuture (defined in pervade.futures), and Future, which
Parsl's module imports from concurrent.futures and workflows import from here."""

from concurrent.futures import Future

from ..futures import AppFuture

__all__ = ["Future", "AppFuture"]
