"""Parsl's parsl.executors.high_throughput.manager_selector: the classes a Parsl config passes as
`HighThroughputExecutor(manager_selector=...)`, so that such configs load.

pervade's interchange places tasks itself (C++, src/interchange) and does not call them: the
option is stored without effect (docs/compat.md, "Options"). `sort_managers` orders manager ids
as Parsl's interchange would, for code that calls it.
"""

from __future__ import annotations

import random
from abc import ABCMeta, abstractmethod


class ManagerSelector(metaclass=ABCMeta):
    """Orders the managers (pools) that may get the next tasks."""

    @abstractmethod
    def sort_managers(self, ready_managers: dict, manager_list: set) -> list:
        """manager_list (ids, keys of ready_managers: records with a 'block_id') in the order
        they should be offered tasks."""


class RandomManagerSelector(ManagerSelector):
    """Parsl's default: a random order, spreading tasks over every pool."""

    def sort_managers(self, ready_managers: dict, manager_list: set) -> list:
        managers = list(manager_list)
        random.shuffle(managers)
        return managers


class BlockIdManagerSelector(ManagerSelector):
    """By block id (pools without one first), so that tasks fill some blocks and others can be
    scaled in."""

    def sort_managers(self, ready_managers: dict, manager_list: set) -> list:
        def block(manager):
            block_id = ready_managers[manager]["block_id"]
            return (block_id is not None, block_id or "")
        return sorted(manager_list, key=block)


__all__ = ["ManagerSelector", "RandomManagerSelector", "BlockIdManagerSelector"]
