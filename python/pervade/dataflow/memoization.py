"""Parsl's parsl.dataflow.memoization (defined in pervade.memoization)."""

from ..memoization import BasicMemoizer, Memoizer, id_for_memo

__all__ = ["BasicMemoizer", "Memoizer", "id_for_memo"]
