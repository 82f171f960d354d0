"""Providers get blocks of nodes for executors; launchers start the pool command on them.

The classes here are configuration with Parsl's names and parameters; each builds the C++
provider or launcher of the engine (include/pervade/provider.hpp) that does the work. An
executor asks its provider for the native object when the DataFlowKernel starts it.
"""

from __future__ import annotations

import enum

from . import _native
from .errors import ConfigurationError


class JobState(enum.IntEnum):
    """A block's state as the provider sees it (Parsl's parsl.jobs.states.JobState)."""

    UNKNOWN = 0
    PENDING = 1
    RUNNING = 2
    CANCELLED = 3
    COMPLETED = 4
    FAILED = 5
    TIMEOUT = 6
    HELD = 7
    MISSING = 8
    SCALED_IN = 9

    @property
    def terminal(self) -> bool:
        """The job will not run again."""
        return self in (JobState.CANCELLED, JobState.COMPLETED, JobState.FAILED, JobState.TIMEOUT,
                        JobState.MISSING, JobState.SCALED_IN)


class JobStatus:
    """State of one job, with the scheduler's message and (once it ended) its exit code."""

    def __init__(self, state: JobState, message: str = "", exit_code=None, log_path: str = ""):
        self.state = JobState(state)
        self.message = message
        self.exit_code = exit_code
        self.log_path = log_path

    @property
    def terminal(self) -> bool:
        return self.state.terminal

    def __repr__(self) -> str:
        extra = f", exit_code={self.exit_code}" if self.exit_code is not None else ""
        return f"JobStatus({self.state.name}{extra}, {self.message!r})"


class SimpleLauncher:
    """Runs the command once per block, unchanged."""

    def __init__(self, debug: bool = True):
        self.debug = debug

    def _native_launcher(self):
        return _native.simple_launcher()

    def __call__(self, command: str, tasks_per_node: int, nodes_per_block: int) -> str:
        """The block script's launch line for `command` (as Parsl's launchers are called)."""
        return self._native_launcher().wrap(command, tasks_per_node, nodes_per_block)


class SingleNodeLauncher(SimpleLauncher):
    """Runs tasks_per_node x nodes_per_block copies of the command in parallel on the node the
    block script runs on, and waits for all; the block fails if every copy failed (or, with
    fail_on_any, if any failed)."""

    def __init__(self, debug: bool = True, fail_on_any: bool = False):
        super().__init__(debug)
        self.fail_on_any = fail_on_any

    def _native_launcher(self):
        return _native.single_node_launcher(bool(self.fail_on_any))


def _check_blocks(owner: str, nodes_per_block, init_blocks, min_blocks, max_blocks, parallelism, cmd_timeout):
    for name, value in (("nodes_per_block", nodes_per_block), ("init_blocks", init_blocks),
                        ("min_blocks", min_blocks), ("max_blocks", max_blocks)):
        if not isinstance(value, int) or isinstance(value, bool) or value < 0:
            raise ConfigurationError(f"{owner} {name} must be an int >= 0, got {value!r}")
    if nodes_per_block < 1:
        raise ConfigurationError(f"{owner} nodes_per_block must be >= 1")
    if min_blocks > max_blocks:
        raise ConfigurationError(f"{owner} min_blocks ({min_blocks}) > max_blocks ({max_blocks})")
    if not isinstance(parallelism, (int, float)) or isinstance(parallelism, bool) or not 0 <= parallelism <= 1:
        raise ConfigurationError(f"{owner} parallelism must be a number between 0 and 1, got {parallelism!r}")
    if not isinstance(cmd_timeout, (int, float)) or isinstance(cmd_timeout, bool) or not cmd_timeout > 0:
        raise ConfigurationError(f"{owner} cmd_timeout must be a number of seconds > 0, got {cmd_timeout!r}")


class ExecutionProvider:
    """Base of the providers: the block parameters and the native object.

    submit/status/cancel work once the provider's native object exists (an executor using it
    was started, or the first call made it); they are what the executor uses, and tests may
    call them directly.
    """

    label = "provider"

    def __init__(self, nodes_per_block: int = 1, launcher=None, init_blocks: int = 1, min_blocks: int = 0,
                 max_blocks: int = 1, worker_init: str = "", cmd_timeout: float = 30, parallelism: float = 1):
        owner = type(self).__name__
        _check_blocks(owner, nodes_per_block, init_blocks, min_blocks, max_blocks, parallelism, cmd_timeout)
        launcher = launcher if launcher is not None else SingleNodeLauncher()
        if not hasattr(launcher, "_native_launcher"):
            raise ConfigurationError(f"{owner} launcher must be one of pervade's launchers, got {launcher!r}")
        if not isinstance(worker_init, str):
            raise ConfigurationError(f"{owner} worker_init must be a str of shell lines, got {worker_init!r}")
        self.nodes_per_block = nodes_per_block
        self.launcher = launcher
        self.init_blocks = init_blocks
        self.min_blocks = min_blocks
        self.max_blocks = max_blocks
        self.worker_init = worker_init
        self.cmd_timeout = cmd_timeout
        self.parallelism = parallelism
        self._native = None

    def _make_native(self):  # pragma: no cover - abstract
        raise NotImplementedError

    def _native_provider(self):
        """The engine's provider object (made once, shared by the executor and these methods)."""
        if self._native is None:
            self._native = self._make_native()
        return self._native

    def submit(self, command: str, tasks_per_node: int, job_name: str = "pervade.block", log_path: str = "") -> str:
        """Starts a block running `command`; returns its job id."""
        return self._native_provider().submit(command, tasks_per_node, job_name, log_path or "")

    def status(self, job_ids) -> list:
        """A JobStatus for each job id, in order (unknown ids are MISSING)."""
        return [JobStatus(*s) for s in self._native_provider().status(list(job_ids))]

    def cancel(self, job_ids) -> list:
        """Stops the jobs; True for each one that is known and no longer runs."""
        return self._native_provider().cancel(list(job_ids))

    def __repr__(self) -> str:
        return (f"{type(self).__name__}(init_blocks={self.init_blocks}, min_blocks={self.min_blocks}, "
                f"max_blocks={self.max_blocks}, nodes_per_block={self.nodes_per_block})")


class LocalProvider(ExecutionProvider):
    """Blocks are process trees on this machine: the block script runs under /bin/bash in a
    session of its own; cancel() sends SIGTERM to the session's process group, then SIGKILL
    after `cancel_grace` seconds.

    >>> LocalProvider(init_blocks=1, max_blocks=2, worker_init="source env.sh")

    `move_files` is accepted for Parsl compatibility (nothing to move on one machine).
    """

    label = "local"

    def __init__(self, nodes_per_block: int = 1, launcher=None, init_blocks: int = 1, min_blocks: int = 0,
                 max_blocks: int = 1, worker_init: str = "", cmd_timeout: float = 30, parallelism: float = 1,
                 move_files=None, cancel_grace: float = 5.0):
        super().__init__(nodes_per_block, launcher, init_blocks, min_blocks, max_blocks, worker_init, cmd_timeout,
                         parallelism)
        if not isinstance(cancel_grace, (int, float)) or not cancel_grace >= 0:
            raise ConfigurationError(f"LocalProvider cancel_grace must be a number of seconds >= 0, got {cancel_grace!r}")
        self.move_files = move_files
        self.cancel_grace = float(cancel_grace)

    def _make_native(self):
        return _native.local_provider(self.nodes_per_block, self.init_blocks, self.min_blocks, self.max_blocks,
                                      float(self.parallelism), self.worker_init, self.launcher._native_launcher(),
                                      float(self.cmd_timeout), self.cancel_grace)
