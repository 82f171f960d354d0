"""Parsl's parsl.monitoring.message_type: the tags of monitoring messages.

A monitoring message is a pair `(MessageType.X, {...})`; the radios (pervade.monitoring.radios)
carry such pairs from senders to a receiver's queue. pervade's own monitoring does not use them
(its events reach the database writer in process: docs/monitoring.md), but users' code and
Parsl-compatible tools do, with Parsl's numbers.
"""

from enum import Enum


class MessageType(Enum):
    TASK_INFO = 0         # a task's state, launch, completion
    RESOURCE_INFO = 1     # resource use of a task's processes
    WORKFLOW_INFO = 2     # the workflow's start and end
    NODE_INFO = 3         # a node's capacity (a pool joining, heartbeats)
    BLOCK_INFO = 4        # a block's state
    WORKER_TASK_INFO = 5  # a task starting or ending on a worker


__all__ = ["MessageType"]
