"""Providers get blocks of nodes for executors; launchers start the pool command on them.

The classes here are configuration with Parsl's names, parameters and defaults; each builds
the C++ provider of the engine (include/pervade/provider.hpp, batch_providers.hpp) that does
the work: LocalProvider (processes on this machine) and the batch schedulers SlurmProvider,
PBSProProvider, TorqueProvider, LSFProvider, GridEngineProvider and CondorProvider. An
executor asks its provider for the native object when the DataFlowKernel starts it.
"""

from __future__ import annotations

import enum

import math
import os
import re
import weakref

from .. import _native
from .._unavailable import unavailable
from ..errors import ConfigurationError, ParslError
from ..utils import execute_wait as _execute_wait
# The launchers live in pervade.launchers; importable from here too, as before.
from ..launchers import (AprunLauncher, GnuParallelLauncher, JsrunLauncher, Launcher, MpiExecLauncher,  # noqa: F401
                        MpiRunLauncher, SimpleLauncher, SingleNodeLauncher, SrunLauncher, SrunMPILauncher,
                        WrappedLauncher)
from ..launchers.errors import BadLauncher
from .errors import SubmitException


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

    def __str__(self) -> str:
        return f"{type(self).__name__}.{self.name}"  # Parsl's text


class JobStatus:
    """State of one job, with the scheduler's message (None when there is none, as in Parsl),
    (once it ended) its exit code, and where its output goes.

    `log_path` is the job's log: its stdout and stderr both, for pervade's blocks. Parsl's
    `stdout_path` and `stderr_path` default to it; `stdout`, `stderr` (the whole file) and
    `stdout_summary`, `stderr_summary` (its first and last KiB when longer than 2 KiB) read them,
    None when there is no such file.
    """

    SUMMARY_TRUNCATION_THRESHOLD = 2048  # Parsl's name

    def __init__(self, state: JobState, message: str | None = None, exit_code=None, log_path: str = "",
                 stdout_path: str | None = None, stderr_path: str | None = None):
        self.state = JobState(state)
        self.message = message or None  # the engine says "" for none
        self.exit_code = exit_code
        self.log_path = log_path
        self.stdout_path = stdout_path or log_path or None
        self.stderr_path = stderr_path or log_path or None

    @property
    def stdout(self) -> str | None:
        return _read_text(self.stdout_path)

    @property
    def stderr(self) -> str | None:
        return _read_text(self.stderr_path)

    @property
    def stdout_summary(self) -> str | None:
        return _read_text(self.stdout_path, self.SUMMARY_TRUNCATION_THRESHOLD)

    @property
    def stderr_summary(self) -> str | None:
        return _read_text(self.stderr_path, self.SUMMARY_TRUNCATION_THRESHOLD)

    @property
    def terminal(self) -> bool:
        return self.state.terminal

    @property
    def status_name(self) -> str:
        return self.state.name

    # Parsl's repr and str.
    def __repr__(self) -> str:
        extra = f"state={self.state} message={self.message}" if self.message else f"state={self.state}"
        return f"<{type(self).__module__}.{type(self).__qualname__} object at {hex(id(self))}, {extra}>"

    def __str__(self) -> str:
        return f"{self.state} ({self.message})" if self.message else f"{self.state}"


def _read_text(path: str | None, limit: int | None = None) -> str | None:
    """The text of the file at `path` (None if there is none or it cannot be read); with a
    `limit`, a longer file gives its first and last limit/2 bytes around a "..." line."""
    if not path:
        return None
    try:
        with open(path, "rb") as f:
            size = os.fstat(f.fileno()).st_size
            if limit is None or size <= limit:
                data = f.read()
            else:
                head = f.read(limit // 2)
                f.seek(size - limit // 2)
                data = head + b"\n...\n" + f.read()
    except OSError:
        return None
    return data.decode("utf-8", "replace")


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
    #: Seconds between status polls a scaling strategy should use (Parsl's value per provider).
    status_polling_interval = 5

    def __init__(self, nodes_per_block: int = 1, launcher=None, init_blocks: int = 1, min_blocks: int = 0,
                 max_blocks: int = 1, worker_init: str = "", cmd_timeout: float = 30, parallelism: float = 1):
        owner = type(self).__name__
        _check_blocks(owner, nodes_per_block, init_blocks, min_blocks, max_blocks, parallelism, cmd_timeout)
        launcher = launcher if launcher is not None else SingleNodeLauncher()
        if not isinstance(launcher, Launcher):
            raise BadLauncher(launcher)
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

    def _options(self):
        """The block parameters as the engine's ProviderOptions."""
        o = _native.ProviderOptions()
        o.nodes_per_block = self.nodes_per_block
        o.init_blocks = self.init_blocks
        o.min_blocks = self.min_blocks
        o.max_blocks = self.max_blocks
        o.parallelism = float(self.parallelism)
        o.worker_init = self.worker_init
        # Through Python, so that the launcher's attributes count as they are when each block is
        # submitted (as in Parsl).
        o.launcher = _native.python_launcher(self.launcher, self.launcher._native_launcher())
        o.cmd_timeout = float(self.cmd_timeout)
        o.script_dir = os.fspath(getattr(self, "script_dir", None) or "")  # Parsl takes a path-like too
        return o

    def _make_native(self):  # pragma: no cover - abstract
        raise NotImplementedError

    def _native_provider(self):
        """The engine's provider object (made once, shared by the executor and these methods)."""
        if self._native is None:
            self._native = self._make_native()
        return self._native

    def _engine_provider(self):
        """The provider the executor's engine calls: the native one, or, when this class
        overrides submit, status or cancel (a subclass counting its jobs, say), a native wrapper
        that calls those methods (with the GIL, on the engine's strategy thread)."""
        native = self._native_provider()
        cls = type(self)
        if any(getattr(cls, name) is not getattr(ExecutionProvider, name) for name in ("submit", "status", "cancel")):
            return _native.python_provider(self, native)
        return native

    def submit(self, command: str, tasks_per_node: int, job_name: str = "pervade.block", log_path: str = "") -> str:
        """Starts a block running `command`; returns its job id. SubmitException (Parsl's
        parsl.providers.errors) says why a block could not be submitted."""
        try:
            return self._native_provider().submit(command, tasks_per_node, job_name, log_path or "")
        except ConfigurationError:
            raise
        except ParslError as e:
            raise SubmitException(job_name, str(e)) from e

    def status(self, job_ids) -> list:
        """A JobStatus for each job id, in order (unknown ids are MISSING)."""
        job_ids = list(job_ids)
        native = self._native_provider()
        statuses = [JobStatus(*s) for s in native.status(job_ids)]
        if isinstance(native, _native.BatchProvider):
            # A batch job submitted without a block log has a file per stream.
            files = {job_id: (out, err) for job_id, out, err, _, _ in native.jobs()}
            for job_id, s in zip(job_ids, statuses):
                if job_id in files:
                    s.stdout_path, s.stderr_path = files[job_id]
        return statuses

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
    `walltime` ("HH:MM:SS", beyond Parsl; None: no end): how long each block's pools run; they
    end as a batch job's would, with the HighThroughputExecutor's walltime_grace
    (docs/htex.md, "Walltime-aware blocks").
    """

    label = "local"

    def __init__(self, nodes_per_block: int = 1, launcher=None, init_blocks: int = 1, min_blocks: int = 0,
                 max_blocks: int = 1, worker_init: str = "", cmd_timeout: float = 30, parallelism: float = 1,
                 move_files=None, cancel_grace: float = 5.0, walltime: str | None = None):
        super().__init__(nodes_per_block, launcher, init_blocks, min_blocks, max_blocks, worker_init, cmd_timeout,
                         parallelism)
        if not isinstance(cancel_grace, (int, float)) or not cancel_grace >= 0:
            raise ConfigurationError(f"LocalProvider cancel_grace must be a number of seconds >= 0, got {cancel_grace!r}")
        if walltime is not None and (not isinstance(walltime, str) or not _WALLTIME.match(walltime)):
            raise ConfigurationError(f"LocalProvider walltime must be None or a str 'HH:MM:SS', got {walltime!r}")
        self.walltime = walltime
        self.move_files = move_files
        self.cancel_grace = float(cancel_grace)

    def _make_native(self):
        return _native.local_provider(self._options(), self.cancel_grace)


_WALLTIME = re.compile(r"^\d+:[0-5]\d:[0-5]\d$")


def _opt_str(owner: str, name: str, value) -> str | None:
    """None (the scheduler's default) or a str, kept as given: scripts read Parsl's None back."""
    if value is None:
        return None
    if not isinstance(value, str):
        raise ConfigurationError(f"{owner} {name} must be a str or None, got {value!r}")
    return value


def _set_native(native, provider, names) -> None:
    """Copies the provider's options to the engine's options object; a str option left None is
    the engine's "" (the scheduler's default)."""
    for name in names:
        value = getattr(provider, name)
        if value is None and isinstance(getattr(native, name), str):
            value = ""
        setattr(native, name, value)


def _opt_int(owner: str, name: str, value, minimum: int = 1):
    if value is None:
        return None
    if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
        raise ConfigurationError(f"{owner} {name} must be None or an int >= {minimum}, got {value!r}")
    return value


class ClusterProvider(ExecutionProvider):
    """Base of the batch-scheduler providers (Parsl's ClusterProvider): each block is one batch
    job. The job script (worker_init, then the launcher's wrapping of the command) is written
    to `script_dir` (default: a submit_scripts directory next to the block's log in the run
    directory), submitted with the scheduler's command, its state read for all live blocks
    with one status command call, and cancelled with the scheduler's command. Each scheduler
    command runs at most `cmd_timeout` seconds; a command that is missing, fails, times out or
    prints something unexpected gives an error that quotes it (submit and status raise, cancel
    returns False and the reason shows in the block's status message).
    """

    status_polling_interval = 60  # schedulers ask clients not to poll them often

    def __init__(self, nodes_per_block, launcher, init_blocks, min_blocks, max_blocks, worker_init, cmd_timeout,
                 parallelism, walltime, scheduler_options):
        super().__init__(nodes_per_block, launcher, init_blocks, min_blocks, max_blocks, worker_init, cmd_timeout,
                         parallelism)
        owner = type(self).__name__
        if not isinstance(walltime, str) or not _WALLTIME.match(walltime):
            raise ConfigurationError(f"{owner} walltime must be a str 'HH:MM:SS', got {walltime!r}")
        self.walltime = walltime
        self.scheduler_options = _opt_str(owner, "scheduler_options", scheduler_options)
        self.script_dir = None  # set before the first submit to choose where job scripts go

    def _validate(self):
        """Builds a native object once to let the engine check the values (it runs nothing)."""
        self._make_native()

    def _native_provider(self):
        fresh = self._native is None
        native = super()._native_provider()
        if fresh and ("execute_wait" in vars(self) or type(self).execute_wait is not ClusterProvider.execute_wait):
            # The engine's scheduler commands go through the overriding execute_wait. A weak
            # reference: the native object must not keep its Python provider alive.
            native.set_command_runner(_command_runner(weakref.ref(self)))
        return native

    def execute_wait(self, cmd: str, timeout: float | None = None) -> tuple[int, str, str]:
        """Runs the shell command line `cmd` (default limit: cmd_timeout seconds): (exit code,
        stdout, stderr). Override it (in a subclass, or on the provider before it is first used)
        to run the scheduler's commands another way, e.g. over ssh: the engine then runs every
        sbatch/squeue/scancel (qsub, ...) through it, as Parsl's providers do.

        >>> class Remote(SlurmProvider):
        ...     def execute_wait(self, cmd, timeout=None):
        ...         return super().execute_wait(f"ssh login1 {shlex.quote(cmd)}", timeout)
        """
        return _execute_wait(cmd, self.cmd_timeout if timeout is None else timeout)

    @property
    def resources(self) -> dict:
        """Parsl's job table: job id -> {"job_id", "status" (the last known JobStatus; no
        scheduler call), "job_stdout_path", "job_stderr_path", "script_path"} for every job
        submitted so far. A snapshot: changing it changes nothing."""
        if self._native is None:
            return {}
        return {job_id: {"job_id": job_id,
                         "status": JobStatus(*status, stdout_path=stdout_path, stderr_path=stderr_path),
                         "job_stdout_path": stdout_path, "job_stderr_path": stderr_path, "script_path": script_path}
                for job_id, stdout_path, stderr_path, script_path, status in self._native.jobs()}

    def job_script(self, command: str, tasks_per_node: int = 1, job_name: str = "pervade.block",
                   log_path: str = "") -> str:
        """The job script submit() would write for a block running `command` (nothing is run)."""
        return self._native_provider().job_script(command, tasks_per_node, job_name, log_path or "")


def _command_runner(provider_ref):
    """The engine's runner of a provider's scheduler commands: its execute_wait. None (the
    provider is gone) lets the engine spawn the command itself."""
    def run(command_line: str, timeout: float):
        provider = provider_ref()
        if provider is None:
            return None
        result = provider.execute_wait(command_line, timeout)
        if result is None:  # not "spawn it yourself": the override forgot to return
            raise TypeError(f"execute_wait({command_line!r}) returned None, not (exit code, stdout, stderr)")
        return result
    return run


class SlurmProvider(ClusterProvider):
    """Blocks are Slurm jobs: sbatch submits, sacct (squeue where accounting is disabled) reads
    their states, scancel cancels.

    >>> SlurmProvider(partition="debug", nodes_per_block=2, walltime="01:00:00",
    ...               launcher=SrunLauncher(), worker_init="module load python")  # doctest: +SKIP

    `mem_per_node` is in GB; `cores_per_node` sets --cpus-per-task to cores_per_node divided by
    the block's tasks per node; `scheduler_options` lines are added verbatim after the
    generated #SBATCH lines. `status_batch_size` is accepted for Parsl compatibility: pervade
    asks for every live job in one call.
    """

    label = "slurm"

    def __init__(self, partition: str | None = None, account: str | None = None, qos: str | None = None,
                 constraint: str | None = None, clusters: str | None = None, nodes_per_block: int = 1,
                 cores_per_node: int | None = None, mem_per_node: int | None = None,
                 gpus_per_node: int | None = None, gres: str | None = None, init_blocks: int = 1,
                 min_blocks: int = 0, max_blocks: int = 1, parallelism: float = 1, walltime: str = "00:10:00",
                 scheduler_options: str = "", regex_job_id: str = r"Submitted batch job (?P<id>\S*)",
                 worker_init: str = "", cmd_timeout: int = 10, status_batch_size: int = 50, exclusive: bool = True,
                 launcher=None):
        super().__init__(nodes_per_block, launcher, init_blocks, min_blocks, max_blocks, worker_init, cmd_timeout,
                         parallelism, walltime, scheduler_options)
        o = "SlurmProvider"
        self.partition = _opt_str(o, "partition", partition)
        self.account = _opt_str(o, "account", account)
        self.qos = _opt_str(o, "qos", qos)
        self.constraint = _opt_str(o, "constraint", constraint)
        self.clusters = _opt_str(o, "clusters", clusters)
        self.cores_per_node = _opt_int(o, "cores_per_node", cores_per_node)
        self.mem_per_node = _opt_int(o, "mem_per_node", mem_per_node)
        self.gpus_per_node = _opt_int(o, "gpus_per_node", gpus_per_node)
        self.gres = _opt_str(o, "gres", gres)
        self.regex_job_id = _opt_str(o, "regex_job_id", regex_job_id)
        self.worker_init = worker_init + "\n"  # as Parsl's SlurmProvider keeps it
        self.status_batch_size = _opt_int(o, "status_batch_size", status_batch_size)
        if not isinstance(exclusive, bool):
            raise ConfigurationError(f"SlurmProvider exclusive must be a bool, got {exclusive!r}")
        self.exclusive = exclusive
        self._validate()

    def _make_native(self):
        s = _native.SlurmOptions()
        _set_native(s, self, ("partition", "account", "qos", "constraint", "clusters", "cores_per_node", "mem_per_node",
                              "gpus_per_node", "gres", "walltime", "scheduler_options", "regex_job_id", "exclusive"))
        return _native.slurm_provider(self._options(), s)


class PBSProProvider(ClusterProvider):
    """Blocks are PBS Pro jobs: qsub (with -q queue, -A account), qstat -x, qdel. The job asks
    for ``select=<nodes_per_block>:ncpus=<cpus_per_node><select_options>``.

    >>> PBSProProvider(queue="debug", account="proj", cpus_per_node=64,
    ...                select_options="ngpus=4", walltime="01:00:00")  # doctest: +SKIP
    """

    label = "pbspro"

    def __init__(self, account: str | None = None, queue: str | None = None, scheduler_options: str = "",
                 select_options: str = "", worker_init: str = "", nodes_per_block: int = 1, cpus_per_node: int = 1,
                 init_blocks: int = 1, min_blocks: int = 0, max_blocks: int = 1, parallelism: float = 1,
                 launcher=None, walltime: str = "00:20:00", cmd_timeout: int = 120):
        super().__init__(nodes_per_block, launcher, init_blocks, min_blocks, max_blocks, worker_init, cmd_timeout,
                         parallelism, walltime, scheduler_options)
        o = "PBSProProvider"
        self.account = _opt_str(o, "account", account)
        self.queue = _opt_str(o, "queue", queue)
        self.select_options = _opt_str(o, "select_options", select_options)
        self.cpus_per_node = _opt_int(o, "cpus_per_node", cpus_per_node)
        if self.cpus_per_node is None:
            raise ConfigurationError("PBSProProvider cpus_per_node must be an int >= 1, got None")
        self._validate()

    def _make_native(self):
        s = _native.PBSProOptions()
        _set_native(s, self, ("account", "queue", "scheduler_options", "select_options", "cpus_per_node", "walltime"))
        return _native.pbspro_provider(self._options(), s)


class TorqueProvider(ClusterProvider):
    """Blocks are Torque jobs: qsub (with -q queue, -A account), qstat, qdel. The job asks for
    ``nodes=<nodes_per_block>:ppn=<tasks_per_node>``. The default launcher is AprunLauncher, as
    in Parsl; `scheduler_options` (#PBS lines) go before the generated ones.
    """

    label = "torque"

    def __init__(self, account: str | None = None, queue: str | None = None, scheduler_options: str = "",
                 worker_init: str = "", nodes_per_block: int = 1, init_blocks: int = 1, min_blocks: int = 0,
                 max_blocks: int = 1, parallelism: float = 1, launcher=None, walltime: str = "00:20:00",
                 cmd_timeout: int = 120):
        super().__init__(nodes_per_block, launcher if launcher is not None else AprunLauncher(), init_blocks,
                         min_blocks, max_blocks, worker_init, cmd_timeout, parallelism, walltime, scheduler_options)
        self.account = _opt_str("TorqueProvider", "account", account)
        self.queue = _opt_str("TorqueProvider", "queue", queue)
        self._validate()

    def _make_native(self):
        s = _native.TorqueOptions()
        _set_native(s, self, ("account", "queue", "scheduler_options", "walltime"))
        return _native.torque_provider(self._options(), s)


class LSFProvider(ClusterProvider):
    """Blocks are LSF jobs: bsub (``bsub < script`` with bsub_redirection), bjobs, bkill. By
    default a block asks for nodes (#BSUB -nnodes); with request_by_nodes=False it asks for
    cores_per_block cores, cores_per_node per host, and nodes_per_block becomes
    ceil(cores_per_block / cores_per_node). The walltime is given to -W in minutes.
    """

    label = "LSF"

    def __init__(self, nodes_per_block: int = 1, cores_per_block: int | None = None,
                 cores_per_node: int | None = None, init_blocks: int = 1, min_blocks: int = 0, max_blocks: int = 1,
                 parallelism: float = 1, walltime: str = "00:10:00", scheduler_options: str = "",
                 worker_init: str = "", project: str | None = None, queue: str | None = None,
                 cmd_timeout: int = 120, bsub_redirection: bool = False, request_by_nodes: bool = True,
                 launcher=None):
        super().__init__(nodes_per_block, launcher, init_blocks, min_blocks, max_blocks, worker_init, cmd_timeout,
                         parallelism, walltime, scheduler_options)
        o = "LSFProvider"
        self.cores_per_block = _opt_int(o, "cores_per_block", cores_per_block)
        self.cores_per_node = _opt_int(o, "cores_per_node", cores_per_node)
        self.project = _opt_str(o, "project", project)
        self.queue = _opt_str(o, "queue", queue)
        self.bsub_redirection = bool(bsub_redirection)
        self.request_by_nodes = bool(request_by_nodes)
        if not self.request_by_nodes:
            if self.cores_per_block is None or self.cores_per_node is None:
                raise ConfigurationError("LSFProvider request_by_nodes=False needs cores_per_block and cores_per_node")
            self.nodes_per_block = math.ceil(self.cores_per_block / self.cores_per_node)
        self._validate()

    def _make_native(self):
        s = _native.LSFOptions()
        _set_native(s, self, ("cores_per_block", "cores_per_node", "walltime", "scheduler_options", "project", "queue",
                              "bsub_redirection", "request_by_nodes"))
        return _native.lsf_provider(self._options(), s)


class GridEngineProvider(ClusterProvider):
    """Blocks are Grid Engine jobs: qsub -terse (with -q queue), qstat, qdel; #$ directives,
    walltime as -l h_rt."""

    label = "grid_engine"

    def __init__(self, nodes_per_block: int = 1, init_blocks: int = 1, min_blocks: int = 0, max_blocks: int = 1,
                 parallelism: float = 1, walltime: str = "00:10:00", scheduler_options: str = "",
                 worker_init: str = "", launcher=None, cmd_timeout: int = 60, queue: str | None = None):
        super().__init__(nodes_per_block, launcher, init_blocks, min_blocks, max_blocks, worker_init, cmd_timeout,
                         parallelism, walltime, scheduler_options)
        self.queue = _opt_str("GridEngineProvider", "queue", queue)
        self._validate()

    def _make_native(self):
        s = _native.GridEngineOptions()
        _set_native(s, self, ("walltime", "scheduler_options", "queue"))
        return _native.grid_engine_provider(self._options(), s)


class CondorProvider(ClusterProvider):
    """Blocks are HTCondor jobs: condor_submit, condor_q, condor_rm. The job script is the
    job's input file, run by /bin/bash; `scheduler_options` are submit-description lines;
    `environment` is a dict set in the job. A slot counts as a node (cores_per_slot and
    mem_per_slot, in GB, size it). `cmd_chunk_size` is accepted for Parsl compatibility:
    pervade asks for every live job in one call. Condor has no walltime; it is kept for the
    scaling strategy.
    """

    label = "condor"

    def __init__(self, nodes_per_block: int = 1, cores_per_slot: int | None = None,
                 mem_per_slot: float | None = None, init_blocks: int = 1, min_blocks: int = 0, max_blocks: int = 1,
                 parallelism: float = 1, environment: dict | None = None, project: str = "",
                 scheduler_options: str = "", transfer_input_files=(), walltime: str = "00:10:00",
                 worker_init: str = "", launcher=None, requirements: str = "", cmd_timeout: int = 60,
                 cmd_chunk_size: int = 100):
        super().__init__(nodes_per_block, launcher, init_blocks, min_blocks, max_blocks, worker_init, cmd_timeout,
                         parallelism, walltime, scheduler_options)
        o = "CondorProvider"
        self.cores_per_slot = _opt_int(o, "cores_per_slot", cores_per_slot)
        if mem_per_slot is not None and (isinstance(mem_per_slot, bool) or not isinstance(mem_per_slot, (int, float))
                                         or not mem_per_slot > 0):
            raise ConfigurationError(f"CondorProvider mem_per_slot must be None or a number of GB > 0, got {mem_per_slot!r}")
        self.mem_per_slot = mem_per_slot
        # Parsl's executors read a node's size from these.
        self.cores_per_node = self.cores_per_slot
        self.mem_per_node = self.mem_per_slot
        environment = dict(environment or {})
        for k, v in environment.items():
            if not isinstance(k, str) or not isinstance(v, str):
                raise ConfigurationError(f"CondorProvider environment must map str to str, got {k!r}: {v!r}")
        self.environment = environment
        self.project = _opt_str(o, "project", project)
        self.requirements = _opt_str(o, "requirements", requirements)
        files = list(transfer_input_files)
        if not all(isinstance(f, str) for f in files):
            raise ConfigurationError(f"CondorProvider transfer_input_files must be a list of str, got {files!r}")
        self.transfer_input_files = files
        self.cmd_chunk_size = _opt_int(o, "cmd_chunk_size", cmd_chunk_size)
        self.worker_init = worker_init + "\n"  # as Parsl's CondorProvider keeps it
        self._validate()

    def _make_native(self):
        s = _native.CondorOptions()
        s.cores_per_slot = self.cores_per_slot
        s.mem_per_slot = None if self.mem_per_slot is None else float(self.mem_per_slot)
        s.environment = list(self.environment.items())
        _set_native(s, self, ("project", "scheduler_options", "transfer_input_files", "walltime", "requirements"))
        return _native.condor_provider(self._options(), s)


# Parsl's cloud and Kubernetes providers, which pervade does not have: importable, not
# constructible (OptionalModuleMissing, as Parsl without their modules).
AWSProvider = unavailable(ExecutionProvider, "AWSProvider", ["boto3"], __name__)
AzureProvider = unavailable(ExecutionProvider, "AzureProvider", ["azure", "msrestazure"], __name__)
GoogleCloudProvider = unavailable(ExecutionProvider, "GoogleCloudProvider", ["googleapiclient"], __name__)
KubernetesProvider = unavailable(ExecutionProvider, "KubernetesProvider", ["kubernetes"], __name__)

# parsl.<package>.<submodule> without importing it first (_submodules.py)
from .._submodules import submodule_getattr  # noqa: E402
__getattr__ = submodule_getattr(__name__)
del submodule_getattr
