"""Exceptions, with Parsl's names, hierarchy and messages (so `except parsl.X` keeps working)."""

from __future__ import annotations

import time
from concurrent.futures import CancelledError


class ParslError(Exception):
    """Base class of every pervade error."""


class ConfigurationError(ParslError):
    """A configuration or API misuse: duplicate labels, load() twice, a bad option."""


class OptionalModuleMissing(ParslError):
    """A feature needs a module that is not installed (raised by users' plug-ins as in Parsl)."""

    def __init__(self, module_names, reason: str):
        super().__init__(module_names, reason)
        self.module_names = module_names
        self.reason = reason

    def __str__(self) -> str:
        return (f"The functionality requested requires optional modules {self.module_names} which could "
                f"not be imported, because: {self.reason}")


class NoDataFlowKernelError(ParslError):
    """An app was called (or dfk() asked for) before a config was loaded."""


class InternalConsistencyError(ParslError):
    pass


class DataFlowKernelClosed(ParslError):
    """The task was not run because its DataFlowKernel was cleaned up first (pervade only)."""


class TaskCancelled(ParslError, CancelledError):
    """The task was cancelled (AppFuture.cancel()) before it finished (pervade only: Parsl cannot
    cancel). The cancelled future's result() raises concurrent.futures.CancelledError, as any
    cancelled Future does; this is the cause its dependents' DependencyError names, and what is
    raised inside a running Python app to stop it."""


class AppException(ParslError):
    pass


class BashExitFailure(AppException):
    def __init__(self, app_name: str, exitcode: int):
        self.app_name = app_name
        self.exitcode = exitcode

    def __str__(self) -> str:
        return f"bash_app {self.app_name} failed with unix exit code {self.exitcode}"


class AppTimeout(AppException):
    """The app ran past its walltime and was stopped."""


class BashAppNoReturn(AppException):
    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


class AppBadFormatting(ParslError):
    pass


class MissingOutputs(ParslError):
    def __init__(self, reason: str, outputs):
        super().__init__(reason, outputs)
        self.reason = reason
        self.outputs = outputs

    def __str__(self) -> str:
        return f"Missing Outputs: {self.outputs}, Reason: {self.reason}"


class BadStdStreamFile(ParslError):
    def __init__(self, reason: str):
        super().__init__(reason)
        self._reason = reason

    def __str__(self) -> str:
        return f"Bad Stream File: {self._reason}"


class DataFlowException(ParslError):
    pass


class BadCheckpoint(DataFlowException):
    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason

    def __str__(self) -> str:
        return self.reason


class PropagatedException(DataFlowException):
    """A failure caused by the failure of other tasks.

    dependent_exceptions_tids: list of (exception, description) for each failed task,
    description being e.g. "task 3". The message follows the first failed dependency down to
    the root cause, which also becomes __cause__.
    """

    def __init__(self, dependent_exceptions_tids, task_id, *, failure_description: str):
        self.dependent_exceptions_tids = dependent_exceptions_tids
        self.task_id = task_id
        self._failure_description = failure_description
        sequence = []
        current = self
        while isinstance(current, PropagatedException) and current.dependent_exceptions_tids:
            exc, description = current.dependent_exceptions_tids[0]
            more = " (+ others)" if len(current.dependent_exceptions_tids) > 1 else ""
            sequence.append(f"{description}{more}")
            current = exc
        self._cause_sequence = sequence
        if current is not self and isinstance(current, BaseException):
            self.__cause__ = current

    def __str__(self) -> str:
        via = " <- ".join(self._cause_sequence)
        return f"{self._failure_description} for task {self.task_id}. The representative cause is via {via}"


class DependencyError(PropagatedException):
    """A task was not run because tasks it depends on failed. Never retried."""

    def __init__(self, dependent_exceptions_tids, task_id):
        super().__init__(dependent_exceptions_tids, task_id, failure_description="Dependency failure")


class JoinError(PropagatedException):
    """Futures returned by a join app's body failed. Never retried."""

    def __init__(self, dependent_exceptions_tids, task_id):
        super().__init__(dependent_exceptions_tids, task_id, failure_description="Join failure")


class ExecutorError(ParslError):
    def __init__(self, executor, reason: str):
        self.executor = executor
        self.reason = reason

    def __str__(self) -> str:
        label = getattr(self.executor, "label", self.executor)
        return f"Executor {label} failed due to: {self.reason}"


class BadStateException(ExecutorError):
    """The executor cannot run tasks any more (its blocks keep failing before a pool connects,
    docs/scaling.md); every outstanding and later task on it fails with this. reason has the
    provider's message and the tail of the last failed block's log."""

    def __init__(self, executor, reason: str):
        super().__init__(executor, reason)

    def __reduce__(self):
        return (type(self), (self.executor, self.reason))


class UnsupportedFeatureError(ExecutorError):
    """A feature the executor does not have (raised by executors written in Python, as in Parsl)."""

    def __init__(self, feature, current_executor, target_executor):
        super().__init__(current_executor, f"{feature} is unsupported")
        self.feature = feature
        self.current_executor = current_executor
        self.target_executor = target_executor

    def __str__(self) -> str:
        if self.target_executor:
            return (f"The {self.feature} feature is unsupported in {self.current_executor}. "
                    f"Please checkout {self.target_executor} for this feature")
        return f"The {self.feature} feature is unsupported in {self.current_executor}."


class ScalingFailed(ExecutorError):
    """An executor could not add blocks (its provider's submit failed)."""

    def __str__(self) -> str:
        label = getattr(self.executor, "label", self.executor)
        return f"Executor {label} failed to scale due to: {self.reason}"


class BadMessage(ParslError):
    """A message an executor cannot read."""

    def __init__(self, reason):
        super().__init__(reason)
        self.reason = reason

    def __str__(self) -> str:
        return f"Received an unsupported message. Reason:{self.reason}"


class InvalidResourceSpecification(ExecutorError):
    """parsl_resource_specification has keys the executor does not take (as Parsl raises it),
    values it cannot take, or asks for more than any pool of the executor offers (pervade's
    `cores`, `memory`, `gpus`, `running_time`: docs/htex.md). invalid_keys: the set of those keys."""

    def __init__(self, invalid_keys, message: str = ""):
        self.invalid_keys = invalid_keys
        self.message = message

    def __str__(self) -> str:
        return f"Invalid Resource Specification Supplied: {self.invalid_keys}. {self.message}"

    def __reduce__(self):
        return (type(self), (self.invalid_keys, self.message))


class RemoteError(ParslError):
    """A task raised an exception on a worker that could not be sent back as itself (it could
    not be pickled, or not unpickled here). Keeps the remote type name, message and traceback.
    """

    def __init__(self, type_name: str, message: str, traceback_text: str = ""):
        super().__init__(type_name, message, traceback_text)
        self.type_name = type_name
        self.message = message
        self.traceback_text = traceback_text

    def __str__(self) -> str:
        text = f"{self.type_name}: {self.message}" if self.message else self.type_name
        if self.traceback_text:
            text += "\n\nRemote traceback:\n" + self.traceback_text.rstrip("\n")
        return text


class WorkerLost(ParslError):
    """The worker process running the task died (it exited or was killed) before returning a
    result. reason says what the pool saw (exit status or signal), when known."""

    def __init__(self, worker_id, hostname, reason: str | None = None):
        super().__init__(worker_id, hostname)
        self.worker_id = worker_id
        self.hostname = hostname
        self.reason = reason

    def __str__(self) -> str:
        if self.worker_id is None:  # the pool's own account names the worker
            return f"Task failure due to loss of worker: {self.reason}"
        text = f"Task failure due to loss of worker {self.worker_id} on host {self.hostname}"
        return f"{text}: {self.reason}" if self.reason else text


class ManagerLost(ParslError):
    """The pool (Parsl's manager) that held the task was lost: it missed heartbeats for longer
    than the heartbeat threshold, or its connection ended."""

    def __init__(self, manager_id, hostname, reason: str | None = None):
        super().__init__(manager_id, hostname)
        self.manager_id = manager_id
        self.hostname = hostname
        self.reason = reason
        self.tstamp = time.time()

    def __str__(self) -> str:
        if self.manager_id is None:  # the interchange's account names the pool and host
            return f"Task failure due to loss of manager: {self.reason}"
        manager = self.manager_id.decode(errors="replace") if isinstance(self.manager_id, bytes) else self.manager_id
        return f"Task failure due to loss of manager {manager} on host {self.hostname}"
