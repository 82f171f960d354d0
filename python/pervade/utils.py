"""Helpers with Parsl's names in parsl.utils."""

from .memoization import get_all_checkpoints, get_last_checkpoint

__all__ = ["get_all_checkpoints", "get_last_checkpoint"]
