"""Parsl's parsl.jobs.error_handlers: rules that decide from the states of an executor's blocks
that it cannot work, and fail it.

A HighThroughputExecutor's `block_error_handler` may be one of these (or any function
`handler(executor, {block_id: JobStatus})`); the executor's strategy thread calls it after each
poll of the provider (docs/scaling.md). Each takes `threshold` (bind it with functools.partial).
"""

from __future__ import annotations

from .errors import TooManyJobFailuresError
from .states import JobState

# A block counts as failed when the provider says it failed, or has lost it.
_FAILED = (JobState.FAILED, JobState.MISSING)


def noop_error_handler(executor, status: dict, threshold: int = 3) -> None:
    """Never fails the executor (block_error_handler=False)."""


def simple_error_handler(executor, status: dict, threshold: int = 3) -> None:
    """Fails the executor when every block it has started failed, and there are at least
    max(1, provider.init_blocks) of them (that count replaces `threshold`, as in Parsl)."""
    init_blocks = getattr(executor.provider, "init_blocks", None)
    if init_blocks is not None:
        threshold = max(1, init_blocks)
    failed = sum(1 for s in status.values() if s.state in _FAILED)
    if len(status) >= threshold and failed == len(status):
        executor.set_bad_state_and_fail_all(_failures(status))


def windowed_error_handler(executor, status: dict, threshold: int = 3) -> None:
    """Fails the executor when the `threshold` most recently started blocks (by block id) all
    failed."""
    latest = sorted(status, key=int)[-threshold:]
    if len(latest) == threshold and all(status[b].state in _FAILED for b in latest):
        executor.set_bad_state_and_fail_all(_failures(status))


def _failures(status: dict) -> TooManyJobFailuresError:
    """One error listing every block's message and exit code."""
    parts = []
    for n, s in enumerate(status.values(), start=1):
        lines = [f"Error {n}:"]
        if s.message:
            lines.append(f"\t{s.message}")
        if s.exit_code is not None:
            lines.append(f"\tEXIT CODE: {s.exit_code}")
        parts.append("\n".join(lines))
    return TooManyJobFailuresError("\n".join(parts) or "No error messages received")


__all__ = ["noop_error_handler", "simple_error_handler", "windowed_error_handler"]
