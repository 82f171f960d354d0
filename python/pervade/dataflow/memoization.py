"""Parsl's parsl.dataflow.memoization (defined in pervade.memoization)."""

from ..memoization import BasicMemoizer, id_for_memo

__all__ = ["BasicMemoizer", "id_for_memo"]
