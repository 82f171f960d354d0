"""Parsl's parsl.jobs.states: a block's JobState and JobStatus (defined in pervade.providers)."""

from ..providers import JobState, JobStatus

TERMINAL_STATES = [s for s in JobState if s.terminal]

__all__ = ["JobState", "JobStatus", "TERMINAL_STATES"]
