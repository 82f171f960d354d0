"""Parsl's parsl.jobs.strategy: the Strategy class, for scripts that scale executors by hand.

pervade's HighThroughputExecutor scales itself: its engine runs the strategy on a thread of its
own (docs/scaling.md), and a kernel never calls this class. It is here for code that drives
Parsl's interface directly: `Strategy(strategy=..., max_idletime=...)`, `add_executors`, then
`strategize(executors)` on anything with Parsl's executor interface (`provider`, `outstanding()`,
`status_facade`, `workers_per_node`, `bad_state_is_set`, `scale_out_facade(n)`,
`scale_in_facade(n, max_idletime=None)`). The decisions are the engine's (the same state
machine as the executors' own strategy thread); this class gathers the numbers and carries
them out.
"""

from __future__ import annotations

import logging
import time
import warnings

from .. import _native

logger = logging.getLogger(__name__)


class Strategy:
    """Scales the blocks of executors: "none" (only init_blocks), "simple", "htex_auto_scale"."""

    def __init__(self, *, strategy: str | None, max_idletime: float) -> None:
        if strategy is None:
            warnings.warn("literal None for strategy choice is deprecated. Use string 'none' instead.",
                          DeprecationWarning)
            strategy = "none"
        if strategy not in ("none", "simple", "htex_auto_scale"):
            raise KeyError(strategy)  # Parsl's error for an unknown name
        self.strategy = strategy
        self.max_idletime = max_idletime
        self.executors: dict = {}  # label -> {"first": True until its init_blocks were started}
        self._engines: dict = {}   # label -> the engine's strategy for that executor

    def add_executors(self, executors) -> None:
        for executor in executors:
            self.executors[executor.label] = {"first": True}

    def strategize(self, executors) -> None:
        for executor in executors:
            if executor.bad_state_is_set:
                logger.info("[Scaling executor %s] not strategizing: the executor has failed", executor.label)
                continue
            state = self.executors[executor.label]
            if state["first"]:
                state["first"] = False
                executor.scale_out_facade(executor.provider.init_blocks)
            if self.strategy == "none":
                continue
            self._decide(executor)

    def _decide(self, executor) -> None:
        provider = executor.provider
        engine = self._engines.get(executor.label)
        if engine is None:
            engine = self._engines[executor.label] = _native.ScalingStrategy(
                self.strategy, provider.min_blocks, provider.max_blocks, float(provider.parallelism),
                float(self.max_idletime), provider.nodes_per_block)
        blocks = [(str(block_id), int(s.state)) for block_id, s in executor.status_facade.items()]
        start, retire = engine.decide(time.monotonic(), executor.outstanding(), int(executor.workers_per_node),
                                      blocks)
        if retire:
            logger.debug("[Scaling executor %s] scaling in %d blocks", executor.label, len(retire))
            if self.strategy == "htex_auto_scale":
                executor.scale_in_facade(len(retire), max_idletime=self.max_idletime)
            else:
                executor.scale_in_facade(len(retire))
        if start:
            logger.debug("[Scaling executor %s] scaling out %d blocks", executor.label, start)
            executor.scale_out_facade(start)


__all__ = ["Strategy"]
