"""Task states with Parsl's names and numbers (parsl.dataflow.states).

The engine's TaskState (include/pervade/state.hpp) uses the same numbers, so a state crosses
from C++ as an int and becomes a member here with States(number).
"""

from enum import IntEnum


class States(IntEnum):
    """The state of a task in the kernel: pending -> launched -> exec_done on the usual path."""

    pending = 0         # waiting for dependencies (or to be launched)
    running = 2         # seen only by monitoring, never in a task record (as in Parsl)
    exec_done = 3       # ran and succeeded
    failed = 4          # failed with no retry left
    dep_fail = 5        # a dependency failed: never launched
    launched = 7        # handed to an executor
    fail_retryable = 8  # failed, will be tried again
    memo_done = 9       # answered from the memo table
    joining = 10        # a join app's body ran; waiting for the futures it returned
    running_ended = 11  # seen only by monitoring
    cancelled = 12      # pervade only: AppFuture.cancel() (Parsl cannot cancel)

    def __str__(self) -> str:
        return f"{type(self).__name__}.{self.name}"


FINAL_FAILURE_STATES = {States.failed, States.dep_fail, States.cancelled}
FINAL_STATES = {States.exec_done, States.memo_done, *FINAL_FAILURE_STATES}

__all__ = ["States", "FINAL_STATES", "FINAL_FAILURE_STATES"]
