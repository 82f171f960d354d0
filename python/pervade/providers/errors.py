"""Parsl's parsl.providers.errors: what providers raise. pervade's providers raise
SubmitException when a block cannot be submitted (ExecutionProvider.submit); the other classes
are there for code written against Parsl's providers (subclasses raise them)."""

from __future__ import annotations

import warnings

from ..errors import ParslError

__all__ = ["ExecutionProviderException", "ScaleOutFailed", "SchedulerMissingArgs", "ScriptPathError",
           "SubmitException"]


class ExecutionProviderException(ParslError):
    """Base of the providers' errors."""


class ScaleOutFailed(ExecutionProviderException):
    """A provider could not add blocks."""

    def __init__(self, provider, reason):
        super().__init__(provider, reason)
        self.provider = provider
        self.reason = reason

    def __str__(self) -> str:
        return f"Unable to scale out {self.provider} provider: {self.reason}"


class SchedulerMissingArgs(ExecutionProviderException):
    """A job script template lacks values it needs."""

    def __init__(self, missing_keywords, sitename):
        super().__init__(missing_keywords, sitename)
        self.missing_keywords = missing_keywords
        self.sitename = sitename

    def __str__(self) -> str:
        return f"SchedulerMissingArgs: Pool:{self.sitename} Arg:{self.missing_keywords}"


class ScriptPathError(ExecutionProviderException):
    """A job script could not be written."""

    def __init__(self, script_path, reason):
        super().__init__(script_path, reason)
        self.script_path = script_path
        self.reason = reason

    def __str__(self) -> str:
        return f"Unable to write submit script:{self.script_path} Reason:{self.reason}"


class SubmitException(ExecutionProviderException):
    """A job could not be submitted: `message` says why; `stdout`, `stderr` and `retcode` are the
    submit command's when known.

    >>> raise SubmitException("htex.block-0", "sbatch: error: invalid partition specified")
    """

    def __init__(self, job_name: str, message: str, stdout=None, stderr=None, retcode=None):
        super().__init__(job_name, message)
        self.job_name = job_name
        self.message = message
        self.stdout = stdout
        self.stderr = stderr
        self.retcode = retcode

    @property
    def task_name(self) -> str:
        """The old name of job_name (deprecated in Parsl, which warns the same way)."""
        warnings.warn("SubmitException.task_name is deprecated; use .job_name instead", DeprecationWarning,
                      stacklevel=2)
        return self.job_name

    def __str__(self) -> str:
        known = [f"{name}={value!r}" for name, value in
                 (("retcode", self.retcode), ("stdout", self.stdout), ("stderr", self.stderr)) if value is not None]
        return f"Cannot launch job {self.job_name}: {self.message}" + (f" ({', '.join(known)})" if known else "")
