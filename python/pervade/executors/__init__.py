"""Executors, configured as in Parsl. Each one is backed by a C++ executor of the engine."""

from __future__ import annotations

import functools
import ipaddress
import logging
import math
import os
import platform
import re
import sys
import warnings
import weakref
from concurrent.futures import Future

from .. import _native
from .._unavailable import unavailable
from ..errors import ConfigurationError
from ..jobs.error_handlers import noop_error_handler

logger = logging.getLogger(__name__)


class ParslExecutor:
    """Base class of executors (Parsl's parsl.executors.base.ParslExecutor): an executor has a
    unique `label` and is started by a DataFlowKernel.

    pervade's own executors run in the engine. A subclass written in Python runs as in Parsl:

    >>> class Immediate(ParslExecutor):
    ...     label = "immediate"
    ...     def submit(self, func, resource_specification, *args, **kwargs):
    ...         future = concurrent.futures.Future()
    ...         future.set_result(func(*args, **kwargs))
    ...         return future
    ...     def shutdown(self):
    ...         pass

    load() calls its start(); each try of a task is handed to submit() on a thread of the
    executor's own, with the dependencies' values in place and the call's
    parsl_resource_specification (or {}), and the returned concurrent.futures.Future's result or
    exception is the try's; submit() raising fails the try with that exception; cleanup() calls
    shutdown(). `shutdown_grace` (pervade only): the seconds cleanup() waits for shutdown() and the
    futures of the tries still running, then fails those with DataFlowKernelClosed (docs/python.md).
    """

    label: str = "undefined"
    run_dir: str = "."
    run_id: str | None = None
    remote: bool = False  # runs tasks in other processes (their calls must pickle)
    remote_monitoring_radio = None
    monitoring_messages = None
    shutdown_grace: float = 10.0

    def __init__(self, *, monitoring_messages=None, run_dir: str = ".", run_id: str | None = None):
        self.monitoring_messages = monitoring_messages
        self.run_dir = os.path.abspath(run_dir)
        self.run_id = run_id

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb):
        self.shutdown()
        return False

    def start(self) -> None:
        """Called by load(), before any task: start what the executor needs."""

    def submit(self, func, resource_specification: dict, *args, **kwargs) -> Future:
        """An executor written in Python runs func(*args, **kwargs) and returns a Future of it."""
        raise NotImplementedError(f"{type(self).__name__} has no submit()")

    def shutdown(self) -> None:
        """Called by cleanup(); pervade's own executors are shut down by the engine."""

    def monitor_resources(self) -> bool:
        return True

    def _native_executor(self):
        """The engine's side of an executor written in Python (pervade._native.python_executor)."""
        from ..dataflow.dflow import submit_with_dependencies

        if type(self).submit is ParslExecutor.submit:
            raise TypeError(f"executor {self.label!r} ({type(self).__name__}) has no submit() method")
        if (isinstance(self.shutdown_grace, bool) or not isinstance(self.shutdown_grace, (int, float))
                or not 0 <= self.shutdown_grace < math.inf):
            raise ConfigurationError(f"executor {self.label!r}: shutdown_grace must be a finite number of seconds "
                                     f">= 0, got {self.shutdown_grace!r}")
        return _native.python_executor(self.label, self.start, functools.partial(submit_with_dependencies, self),
                                       functools.partial(_shutdown_from_engine, self), float(self.shutdown_grace))


def written_in_python(executor: ParslExecutor) -> bool:
    """True for an executor written in Python (whose start/submit/shutdown the engine calls)."""
    return type(executor)._native_executor is ParslExecutor._native_executor


def _shutdown_from_engine(executor: ParslExecutor) -> None:
    """cleanup() shuts an executor written in Python down from the engine: like the others, one that
    raises is logged."""
    try:
        executor.shutdown()
    except Exception:  # noqa: BLE001 - the rest of cleanup goes on
        logger.exception("shutting down executor %s failed", executor.label)


def _monitoring_radio(executor: str, radio, default=None):
    """An executor's `remote_monitoring_radio`: a radio configuration (Parsl's or a subclass), kept
    for the user to read back; pervade's monitoring travels its own way whatever the radio
    (pervade.monitoring.radios)."""
    from ..monitoring.radios import RadioConfig

    if radio is None:
        return default
    if not isinstance(radio, RadioConfig):
        raise ConfigurationError(f"{executor} remote_monitoring_radio must be a RadioConfig "
                                 f"(pervade.monitoring.radios) or None, got {radio!r}")
    return radio


class ThreadPoolExecutor(ParslExecutor):
    """Runs apps on threads of this process.

    >>> ThreadPoolExecutor(max_threads=4, label="local")

    Python code holds the GIL while it runs, so threads help apps that wait (I/O, sleep,
    subprocesses, bash apps) or release the GIL (NumPy). `storage_access` (staging providers,
    default_staging when None) and `working_dir` (where staged files go) are Parsl's
    (docs/staging.md); `thread_name_prefix` is accepted for Parsl compatibility and stored.

    At cleanup, running apps are interrupted (DataFlowKernelClosed is raised in Python code, bash
    commands are killed). One that cannot be interrupted (blocked in a C call, such as
    `threading.Event().wait()`) is given up after `shutdown_grace` seconds (pervade's option;
    Parsl waits forever): its future fails with DataFlowKernelClosed and its thread is left to
    end with the process.
    """

    def __init__(self, label: str = "threads", max_threads: int | None = 2, thread_name_prefix: str | None = None,
                 storage_access=None, working_dir: str | None = None, remote_monitoring_radio=None,
                 shutdown_grace: float = 10.0):
        if not isinstance(label, str) or not label:
            raise ConfigurationError(f"ThreadPoolExecutor label must be a non-empty str, got {label!r}")
        if max_threads is None:
            max_threads = min(32, (os.cpu_count() or 1) + 4)  # concurrent.futures' default
        if not isinstance(max_threads, int) or isinstance(max_threads, bool) or max_threads < 1:
            raise ConfigurationError(f"ThreadPoolExecutor max_threads must be an int >= 1, got {max_threads!r}")
        if (isinstance(shutdown_grace, bool) or not isinstance(shutdown_grace, (int, float))
                or not 0 <= shutdown_grace < math.inf):
            raise ConfigurationError("ThreadPoolExecutor shutdown_grace must be a finite number of seconds >= 0, "
                                     f"got {shutdown_grace!r}")
        self.label = label
        self.max_threads = max_threads
        self.shutdown_grace = float(shutdown_grace)
        self.thread_name_prefix = thread_name_prefix or f"ThreadPoolExecutor-{label}"
        self.storage_access = storage_access
        self.working_dir = working_dir
        self.remote_monitoring_radio = _monitoring_radio("ThreadPoolExecutor", remote_monitoring_radio)

    def _native_executor(self):
        return _native.thread_pool_executor(self.max_threads, self.label, self.shutdown_grace)

    def __repr__(self) -> str:
        return f"ThreadPoolExecutor(label={self.label!r}, max_threads={self.max_threads})"


def _shipped_binary(name: str, env: str, missing: str) -> str:
    """The program `name` in the package's bin/ (the environment variable `env` overrides);
    ConfigurationError, "`missing` ... at <path>: ...", when it is not there."""
    path = os.environ.get(env) or os.path.join(os.path.dirname(os.path.dirname(__file__)), "bin", name)
    if not os.access(path, os.X_OK):
        raise ConfigurationError(missing.format(path=path))
    return path


def pool_binary() -> str:
    """The pervade-pool program shipped with the package (PERVADE_POOL_BINARY overrides)."""
    return _shipped_binary("pervade-pool", "PERVADE_POOL_BINARY",
                           "pervade-pool not found at {path}: reinstall pervade (pip install .)")


def exex_pool_binary() -> str:
    """pervade-exex-pool (pool_mode="mpi"), shipped when pervade was built with MPI
    (PERVADE_EXEX_POOL_BINARY overrides)."""
    return _shipped_binary("pervade-exex-pool", "PERVADE_EXEX_POOL_BINARY",
                           "pool_mode='mpi' needs pervade-exex-pool, not found at {path}: pervade was built "
                           "without MPI (install MPICH's libmpich-dev, then reinstall pervade)")


def _check_pool_mode(pool_mode, provider, mpi_mode: bool) -> None:
    """pool_mode "mpi" (docs/mpi.md, "One pool per block"): the provider's launcher must start one
    copy of the pool command per node, as an MPI job; not with HTEX's MPI mode."""
    from ..launchers import SimpleLauncher, SingleNodeLauncher

    if pool_mode not in ("node", "mpi"):
        raise ConfigurationError(f"pool_mode must be 'node' (a pool per node) or 'mpi' (a pool per block over MPI), "
                                 f"got {pool_mode!r}")
    if pool_mode == "node":
        return
    if mpi_mode:
        raise ConfigurationError("pool_mode='mpi' cannot be combined with MPI mode (MPIExecutor, enable_mpi_mode)")
    launcher = getattr(provider, "launcher", None)
    if isinstance(launcher, (SimpleLauncher, SingleNodeLauncher)):
        raise ConfigurationError(f"pool_mode='mpi' starts one MPI rank per node through the provider's launcher; "
                                 f"{type(launcher).__name__} starts no MPI job (use e.g. "
                                 f"SrunLauncher(overrides='--mpi=pmi2') or MpiExecLauncher())")


_CPU_SET = re.compile(r"^(\d+(-\d+)?)(,\d+(-\d+)?)*$")
_MAX_CPU = 1023  # CPU_SETSIZE - 1: the highest CPU number sched_setaffinity takes


def check_cpu_affinity(spec) -> str:
    """Validates a cpu_affinity value as pervade-pool does; returns it in lower case (as Parsl).

    "none", "block", "block-reverse", "alternating", or "list:<cpus>:<cpus>..." with one entry
    per worker, each a comma-separated list of CPU numbers and ranges ("list:0,1:2-3").
    """
    if not isinstance(spec, str):
        raise ConfigurationError(f"cpu_affinity must be a str, got {spec!r}")
    s = spec.lower()
    if s in ("none", "block", "block-reverse", "alternating"):
        return s
    if s.startswith("list:"):
        for i, entry in enumerate(s[5:].split(":")):
            if not _CPU_SET.match(entry):
                raise ConfigurationError(f"cpu_affinity {spec!r}: worker {i}'s entry {entry!r} is not a "
                                         "comma-separated list of CPU numbers and ranges N-M")
            for item in entry.split(","):
                first, _, last = item.partition("-")
                if int(last or first) < int(first) or int(last or first) > _MAX_CPU:
                    raise ConfigurationError(f"cpu_affinity {spec!r}: bad CPU range {item!r} (CPUs 0 to {_MAX_CPU})")
        return s
    raise ConfigurationError(f"cpu_affinity must be none, block, block-reverse, alternating or "
                             f"list:<cpus>:<cpus>... (e.g. list:0,1:2-3), got {spec!r}")


# Prefetch counts are C ints in the engine (tasks per pool, per worker); beyond this they mean
# nothing but an overflow.
_MAX_PREFETCH = 1_000_000


def _check_int(name: str, value, low: int, high: int) -> None:
    """ConfigurationError unless value is an int (not a bool) in [low, high]."""
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise ConfigurationError(f"{name} must be an int from {low} to {high}, got {value!r}")


def _local_node() -> tuple:
    """(CPUs, GiB available) of this machine, as pervade-pool counts them (PARSL_CORES and
    PARSL_MEMORY_GB override)."""
    try:
        cpus = int(os.environ.get("PARSL_CORES") or 0) or len(os.sched_getaffinity(0))
    except ValueError:  # the pool refuses it with a clear message
        cpus = len(os.sched_getaffinity(0))
    try:
        if os.environ.get("PARSL_MEMORY_GB"):
            return cpus, float(os.environ["PARSL_MEMORY_GB"])
    except ValueError:
        pass
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return cpus, round(int(line.split()[1]) / 2**20, 1)
    except OSError:
        pass
    return cpus, None


def _check_mpi_mode(provider, mpi_launcher) -> None:
    """Parsl's checks of MPI mode: one pool per block (SimpleLauncher), a launcher it knows."""
    from ..launchers import SimpleLauncher
    from .high_throughput.mpi_prefix_composer import VALID_LAUNCHERS

    if not isinstance(getattr(provider, "launcher", None), SimpleLauncher):
        raise TypeError("mpi_mode requires the provider to be configured to use a SimpleLauncher")
    if mpi_launcher not in VALID_LAUNCHERS:
        raise ValueError(f"mpi_launcher set to:{mpi_launcher} must be set to one of {VALID_LAUNCHERS}")


_MPI_HOST = re.compile(r"^[^,:\s]+(:[1-9]\d{0,8})?$")


def _check_mpi_hosts(hosts, mpi_mode: bool):
    """mpi_hosts: None, or a list of "host" or "host:cores" (cores for all or none), MPI mode only."""
    if hosts is None:
        return None
    if not mpi_mode:
        raise ConfigurationError("mpi_hosts is for MPI mode (MPIExecutor, or enable_mpi_mode=True)")
    if isinstance(hosts, str) or not isinstance(hosts, (list, tuple)) or not hosts or not all(
            isinstance(h, str) and _MPI_HOST.match(h) for h in hosts) or len({":" in h for h in hosts}) > 1:
        raise ConfigurationError(f"mpi_hosts must be a non-empty list of 'host' or 'host:cores' (cores for all "
                                 f"hosts or none), got {hosts!r}")
    return list(hosts)


def _block_statuses(tuples) -> dict:
    """Block id -> JobStatus from the engine's (block id, job id, state, message, exit code, log)."""
    from ..providers import JobStatus

    return {b[0]: JobStatus(*b[2:]) for b in tuples}


def _engine_block_errors(executor):
    """What the engine's strategy thread calls with the blocks' states each round: the executor's
    handle_errors. Holds the executor weakly (the engine is owned by it); a handler that raises
    is logged, and the executor keeps working, as in Parsl."""
    ref = weakref.ref(executor)

    def handle(tuples) -> None:
        executor = ref()
        if executor is None:
            return
        try:
            executor.handle_errors(_block_statuses(tuples))
        except Exception:
            logger.exception("block error handler of executor %r failed", executor.label)

    return handle


class BlockProviderExecutor(ParslExecutor):
    """Parsl's base class of the executors whose workers come in blocks from a provider (in
    pervade: the HighThroughputExecutor); `isinstance` checks on it hold."""


class HighThroughputExecutor(BlockProviderExecutor):
    """Runs apps on pools of worker processes (pervade-pool), one pool per node of each block
    (or, with `pool_mode="mpi"`, one pervade-exex-pool per block, an MPI job whose rank 0 alone
    talks to the interchange: docs/mpi.md, "One pool per block").

    >>> HighThroughputExecutor(label="htex", max_workers_per_node=4,
    ...                        provider=LocalProvider(init_blocks=1))

    The interchange runs as a thread of this process; pools connect to it over TCP on
    `address` (the interface to bind; pools use it to connect) at a port from
    `worker_port_range` (or `worker_port`). Workers run the driver's Python by default
    (`python`). Heartbeats every `heartbeat_period` s; a pool silent for `heartbeat_threshold`
    s is lost and its tasks fail with ManagerLost. A pool holds `max_workers_per_node +
    prefetch_capacity` tasks, and while its tasks run under 10 ms as it reports (tasks of
    microseconds) up to `short_task_prefetch` more per worker, which hides the round trip to
    the pool; 0 gives Parsl's exact capacity. With `follow_dependencies` (the default) an app
    call whose one unfinished dependency runs on this executor is sent ahead to that task's
    pool, which starts it the moment the dependency's result is there (a chain of tasks runs
    back to back on a worker); False waits in the driver, as Parsl does. With `encrypted` (the default) the link is
    CurveZMQ: a key pair is made per run and the interchange's public key is written to
    <run_dir>/<label>/server-<port>.key for the pools; a pool without it cannot register.
    With `same_host_ipc` (the default) pools on this host (same kernel and network namespace)
    connect through a Unix socket in a directory of mode 0700 under <run_dir>/<label> instead
    (no encryption needed: only this user can open it; big arguments move much faster); pools
    elsewhere, or that cannot use the socket, connect over TCP as above (docs/htex.md).
    The engine starts the provider's `init_blocks` blocks when the executor starts, scales
    them with the Config's `strategy` every `strategy_period` s between the provider's
    `min_blocks` and `max_blocks` (idle blocks are drained, then cancelled, after
    `max_idletime`), and cancels every block at cleanup. With `block_error_handler` (the
    default) 3 blocks in a row that end before their pool connects fail the executor: its
    tasks raise BadStateException with the provider's message and the block log's tail
    (docs/scaling.md).
    """

    remote = True

    def __init__(self, label: str = "HighThroughputExecutor", provider=None, address: str = "127.0.0.1",
                 worker_port: int | None = None, worker_port_range: tuple = (54000, 55000),
                 max_workers_per_node: int | None = None, cores_per_worker: float = 1.0,
                 mem_per_worker: float | None = None, available_accelerators=(), prefetch_capacity: int = 0,
                 heartbeat_period: float = 30, heartbeat_threshold: float = 120, cpu_affinity: str = "none",
                 python: str | None = None, worker_debug: bool = False, encrypted: bool = True,
                 short_task_prefetch: int = 16, block_error_handler=True, follow_dependencies: bool = True,
                 same_host_ipc: bool = True, launch_cmd: str | None = None, interchange_launch_cmd=None,
                 loopback_address: str = "127.0.0.1", interchange_port_range: tuple = (55000, 56000),
                 storage_access=None, working_dir: str | None = None, drain_period: int | None = None,
                 poll_period: int = 10, address_probe_timeout: int | None = None,
                 worker_logdir_root: str | None = None, manager_selector=None, remote_monitoring_radio=None,
                 enable_mpi_mode: bool = False, mpi_launcher: str = "mpiexec", mpi_hosts=None,
                 walltime_grace: float = 30, pool_mode: str = "node"):
        from ..monitoring.radios import HTEXRadio
        from ..providers import LocalProvider

        if not isinstance(label, str) or not label:
            raise ConfigurationError(f"HighThroughputExecutor label must be a non-empty str, got {label!r}")
        if max_workers_per_node == math.inf:
            max_workers_per_node = None  # Parsl's "no bound"
        if isinstance(max_workers_per_node, float) and max_workers_per_node.is_integer():
            max_workers_per_node = int(max_workers_per_node)
        if max_workers_per_node is not None and (not isinstance(max_workers_per_node, int) or isinstance(
                max_workers_per_node, bool) or max_workers_per_node < 1):
            raise ConfigurationError(f"max_workers_per_node must be an int >= 1 or None, got {max_workers_per_node!r}")
        if not isinstance(cores_per_worker, (int, float)) or isinstance(cores_per_worker, bool) or not (
                0 < cores_per_worker < math.inf):
            raise ConfigurationError(f"cores_per_worker must be a number > 0, got {cores_per_worker!r}")
        if mem_per_worker is not None and (not isinstance(mem_per_worker, (int, float)) or isinstance(
                mem_per_worker, bool) or not (0 <= mem_per_worker < math.inf)):
            raise ConfigurationError(f"mem_per_worker must be a number of GB >= 0 or None, got {mem_per_worker!r}")
        if isinstance(available_accelerators, int) and not isinstance(available_accelerators, bool):
            if available_accelerators < 0:
                raise ConfigurationError(f"available_accelerators must be a count >= 0 or a list of device ids, "
                                         f"got {available_accelerators!r}")
            available_accelerators = [str(i) for i in range(available_accelerators)]  # Parsl: N -> "0".."N-1"
        elif isinstance(available_accelerators, (str, bytes)) or not isinstance(available_accelerators, (list, tuple)):
            raise ConfigurationError(f"available_accelerators must be a count >= 0 or a list of device ids, "
                                     f"got {available_accelerators!r}")
        cpu_affinity = check_cpu_affinity(cpu_affinity)
        _check_int("prefetch_capacity", prefetch_capacity, 0, _MAX_PREFETCH)
        _check_int("short_task_prefetch", short_task_prefetch, 0, _MAX_PREFETCH)
        for name, value in (("follow_dependencies", follow_dependencies), ("encrypted", encrypted),
                            ("same_host_ipc", same_host_ipc), ("worker_debug", worker_debug)):
            if not isinstance(value, bool):
                raise ConfigurationError(f"{name} must be True or False, got {value!r}")
        if not isinstance(block_error_handler, bool) and not callable(block_error_handler):
            raise ConfigurationError("block_error_handler must be True, False or a function (executor, status), "
                                     f"got {block_error_handler!r}")
        for name, value in (("heartbeat_period", heartbeat_period), ("heartbeat_threshold", heartbeat_threshold)):
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value < math.inf:
                raise ConfigurationError(f"{name} must be a finite number of seconds > 0, got {value!r}")
        if isinstance(walltime_grace, bool) or not isinstance(walltime_grace, (int, float)) or \
                not 0 <= walltime_grace < math.inf:
            raise ConfigurationError(f"walltime_grace must be a finite number of seconds >= 0, got {walltime_grace!r}")
        if drain_period is not None and (isinstance(drain_period, bool) or not isinstance(drain_period, (int, float))
                                         or not 0 <= drain_period < math.inf):
            raise ConfigurationError(f"drain_period must be None or a finite number of seconds >= 0 (0: never), "
                                     f"got {drain_period!r}")
        if worker_port is not None:
            _check_int("worker_port", worker_port, 1, 65535)
        if not isinstance(worker_port_range, (list, tuple)) or len(worker_port_range) != 2:
            raise ConfigurationError(f"worker_port_range must be (low, high) with 1 <= low <= high <= 65535, "
                                     f"got {worker_port_range!r}")
        low, high = worker_port_range
        _check_int("worker_port_range low", low, 1, 65535)
        _check_int("worker_port_range high", high, low, 65535)
        if address is None:
            # Parsl's default (its workers then try every address of the driver); pervade's is
            # loopback: pools on other hosts need an address they reach (docs/hosts.md).
            address = "127.0.0.1"
        if not isinstance(address, str) or not address:
            raise ConfigurationError(f"address must be a non-empty str (an interface address, or '*'), got {address!r}")
        if python is not None and (not isinstance(python, str) or not python):
            raise ConfigurationError(f"python must be the path of an interpreter (a str) or None, got {python!r}")
        provider = provider if provider is not None else LocalProvider()
        if not isinstance(enable_mpi_mode, bool):
            raise ConfigurationError(f"enable_mpi_mode must be True or False, got {enable_mpi_mode!r}")
        if enable_mpi_mode:
            _check_mpi_mode(provider, mpi_launcher)
        _check_pool_mode(pool_mode, provider, enable_mpi_mode)
        # "node": a pervade-pool per node; "mpi": one pervade-exex-pool per block, an MPI job whose
        # rank 0 alone talks to the interchange (docs/mpi.md, "One pool per block").
        self.pool_mode = pool_mode
        self.mpi_hosts = _check_mpi_hosts(mpi_hosts, enable_mpi_mode)
        self.enable_mpi_mode = enable_mpi_mode
        self.mpi_launcher = mpi_launcher
        self.label = label
        self.provider = provider
        self.address = address
        self.worker_port = worker_port
        self.worker_port_range = (low, high)
        # Parsl's attribute: inf for "no bound" (scripts compare it, or print it)
        self.max_workers_per_node = math.inf if max_workers_per_node is None else max_workers_per_node
        self.cores_per_worker = cores_per_worker
        self.mem_per_worker = mem_per_worker
        self.available_accelerators = list(available_accelerators)
        self.prefetch_capacity = prefetch_capacity
        self.short_task_prefetch = short_task_prefetch
        self.heartbeat_period = heartbeat_period
        self.heartbeat_threshold = heartbeat_threshold
        self.cpu_affinity = cpu_affinity
        self.python = python or sys.executable
        self.worker_debug = worker_debug
        self.encrypted = encrypted
        # True: the engine's rule (docs/scaling.md); False: Parsl's noop_error_handler; or a
        # function(executor, {block_id: JobStatus}) such as pervade.jobs.error_handlers'.
        self.block_error_handler = noop_error_handler if block_error_handler is False else block_error_handler
        self._executor_exception = None  # set by set_bad_state_and_fail_all
        self.follow_dependencies = follow_dependencies
        self.same_host_ipc = same_host_ipc
        # Before its block's walltime ends a pool SIGTERMs its tasks and is drained (docs/htex.md).
        self.walltime_grace = walltime_grace
        # Parsl's options for its Python interchange and process layout: accepted and stored so
        # that Parsl configs load, without effect here (docs/python.md); storage_access and
        # working_dir are staging's (docs/staging.md).
        self.launch_cmd = launch_cmd
        self.interchange_launch_cmd = interchange_launch_cmd
        self.loopback_address = loopback_address
        self.interchange_port_range = interchange_port_range
        self.storage_access = storage_access
        self.working_dir = working_dir
        # Parsl's: each pool is drained this many seconds after it started (no new task; it
        # exits once its tasks ended), e.g. a little less than the block's walltime. None, 0: never.
        self.drain_period = drain_period
        self.poll_period = poll_period
        self.address_probe_timeout = address_probe_timeout
        self.worker_logdir_root = worker_logdir_root
        self.manager_selector = manager_selector
        self.remote_monitoring_radio = _monitoring_radio("HighThroughputExecutor", remote_monitoring_radio, HTEXRadio())
        self._native = None

    def _native_executor(self):
        # The engine starts the provider's init_blocks blocks once the interchange listens, and
        # cancels them at shutdown; with `encrypted` it makes the run's key pair and writes the
        # public key for the pools (<run_dir>/<label>/server-<port>.key).
        self._warn_if_unencrypted()
        if self.provider.init_blocks == 0 and self.provider.max_blocks == 0:
            logger.warning("HighThroughputExecutor %r: init_blocks=0 and max_blocks=0: no block is started; tasks "
                           "wait until blocks are started by hand (scale_out_facade) or pools connect", self.label)
        o = _native.HtexOptions()
        o.label, o.address = self.label, self.address
        o.worker_port = self.worker_port or 0
        o.port_min, o.port_max = self.worker_port_range
        o.heartbeat_period, o.heartbeat_threshold = float(self.heartbeat_period), float(self.heartbeat_threshold)
        o.python_version = platform.python_version()
        o.encrypted = self.encrypted
        o.short_task_prefetch = self.short_task_prefetch
        o.follow_dependencies = self.follow_dependencies
        o.same_host_ipc = self.same_host_ipc
        o.provider = self.provider._engine_provider()
        o.prefetch_capacity = self.prefetch_capacity
        o.python_workers = True
        o.pool_args = self._pool_args()
        o.run_dir = self.run_dir
        o.pool_binary = exex_pool_binary() if self.pool_mode == "mpi" else pool_binary()
        o.strategy = getattr(self, "strategy", "simple")
        o.strategy_period = float(getattr(self, "strategy_period", 5))
        o.max_idletime = float(getattr(self, "max_idletime", 120))
        o.max_failed_blocks = 3 if self.block_error_handler is True else 0
        if callable(self.block_error_handler) and self.block_error_handler is not noop_error_handler:
            o.set_block_error_handler(_engine_block_errors(self))
        o.expected_workers_per_node = self._estimate_workers_per_node(local=True)
        o.mpi_launcher = self.mpi_launcher if self.enable_mpi_mode else ""
        self._native = _native.htex_executor(o)
        return self._native

    def validate_resource_spec(self, resource_specification: dict) -> None:
        """Parsl's check of a task's parsl_resource_specification: keys other than `priority` and
        pervade's `cores`, `memory`, `gpus` and `running_time`, and values that are not positive
        numbers, raise InvalidResourceSpecification naming the key (each task's spec is checked
        when it is encoded). In MPI mode Parsl's MPI rules (docs/mpi.md): a spec is required, with
        keys num_nodes, ranks_per_node, num_ranks, launcher_options (and the keys above)."""
        if self.enable_mpi_mode:
            from .high_throughput.mpi_prefix_composer import validate_resource_spec
            validate_resource_spec(resource_specification)
        elif resource_specification:
            from ..serialize import validate_resource_spec
            validate_resource_spec(resource_specification)

    def _warn_if_unencrypted(self) -> None:
        """encrypted=False on TCP: whoever can connect to the port can register a pool, receive
        the tasks and send back a forged result, which the driver unpickles, i.e. runs code as
        this user (docs/htex.md, "Threat model"). Loud beyond loopback, logged on loopback
        (where only users of this host can connect)."""
        if self.encrypted:
            return
        try:
            loopback = self.address == "localhost" or ipaddress.ip_address(self.address).is_loopback
        except ValueError:  # "*", a host name, an interface name: reachable from elsewhere
            loopback = False
        message = (f"HighThroughputExecutor {self.label!r}: encrypted=False, the interchange listens on "
                   f"unencrypted TCP at {self.address!r}. Anyone who can connect to it can run code in this "
                   "driver and in the workers (docs/htex.md, Threat model).")
        if loopback:
            logger.warning("%s Here: every user of this host.", message)
        else:
            logger.warning(message)
            warnings.warn(message, RuntimeWarning, stacklevel=2)

    @property
    def workers_per_node(self) -> int:
        """Parsl's estimate of the workers each pool starts (what a scaling strategy counts per
        node): `max_workers_per_node`, bounded by the provider's `cores_per_node` /
        `mem_per_node` when it has them and by `available_accelerators`; 1 when nothing bounds
        it (Parsl's guess). Each pool decides on its own node (docs/htex.md)."""
        return self._estimate_workers_per_node(local=False)

    def _estimate_workers_per_node(self, local: bool) -> int:
        """With local=True a LocalProvider without cores_per_node / mem_per_node is bounded by
        this machine, as its pools will be: the engine's guess until a pool registers."""
        from ..providers import LocalProvider

        cores = getattr(self.provider, "cores_per_node", None)
        mem = getattr(self.provider, "mem_per_node", None)
        if local and cores is None and isinstance(self.provider, LocalProvider):
            cores, local_mem = _local_node()
            mem = local_mem if mem is None else mem
        n = self.max_workers_per_node
        if cores:
            n = min(n, math.floor(cores / self.cores_per_worker + 1e-9))
        if mem is not None and self.mem_per_worker:
            n = min(n, math.floor(mem / self.mem_per_worker + 1e-9))
        if self.available_accelerators:
            n = min(n, len(self.available_accelerators))
        return 1 if n == math.inf else max(1, int(n))

    def _pool_args(self) -> list:
        """The worker options of pervade-pool's command line; the pool decides how many
        workers it starts from these and what its node has."""
        args = ["--cores-per-worker", str(float(self.cores_per_worker)), "--python", self.python,
                "--python-version", platform.python_version()]
        if self.max_workers_per_node != math.inf:
            args += ["--max-workers", str(self.max_workers_per_node)]
        if self.mem_per_worker:
            args += ["--mem-per-worker", str(float(self.mem_per_worker))]
        if self.cpu_affinity != "none":
            args += ["--cpu-affinity", self.cpu_affinity]
        if self.available_accelerators:
            args += ["--available-accelerators", ",".join(map(str, self.available_accelerators))]
        if self.mpi_hosts:  # MPI mode's block nodes, instead of the scheduler's (docs/mpi.md)
            args += ["--mpi-hosts", ",".join(self.mpi_hosts)]
        if self.drain_period:
            args += ["--drain-period", str(float(self.drain_period))]
        if self.worker_debug:  # the pool's and its workers' DEBUG lines (docs/logging.md)
            args += ["--log-level", "debug"]
        walltime = getattr(self.provider, "walltime", None)
        if walltime:  # "HH:MM:SS": when the block's job ends (docs/htex.md, "Walltime-aware blocks")
            hours, minutes, secs = (int(part) for part in walltime.split(":"))
            args += ["--walltime", str(hours * 3600 + minutes * 60 + secs),
                     "--walltime-grace", str(float(self.walltime_grace))]
        return args

    def pool_command(self, block_id: str) -> str:
        """The command a block runs on each of its nodes (valid once the executor started)."""
        return self._started_native().pool_command(str(block_id))

    def start_blocks(self, count: int) -> list:
        """Asks the provider for `count` more blocks; returns their block ids."""
        return self._started_native().scale_out(count)

    @property
    def blocks(self) -> dict:
        """Block id -> provider job id, for every block started so far."""
        return {b[0]: b[1] for b in self._native.blocks()} if self._native else {}

    def block_status(self) -> dict:
        """Block id -> JobStatus (asks the provider, one batched call)."""
        return _block_statuses(self._native.blocks()) if self._native else {}

    # Parsl's interface of an executor with blocks (parsl.executors.status_handling), with its
    # meanings; the engine keeps the blocks and scales them (docs/scaling.md).

    def status(self) -> dict:
        """Block id -> JobStatus of every block started so far (asks the provider)."""
        return self.block_status()

    @property
    def status_facade(self) -> dict:
        """Block id -> JobStatus as the executor's strategy last saw it (no provider call)."""
        return _block_statuses(self._native.blocks(poll=False)) if self._native else {}

    @property
    def status_polling_interval(self) -> float:
        return self.provider.status_polling_interval

    @property
    def logdir(self) -> str:
        """Parsl's per-executor directory, "<run_dir>/<label>" (scripts print or build paths from
        it). pervade writes no files there: its pools log to <run_dir>/block-<N>.log and
        <run_dir>/<pool id>/pool.log (docs/logging.md)."""
        return f"{self.run_dir}/{self.label}"

    @property
    def worker_logdir(self) -> str:
        """Parsl's "<worker_logdir_root>/<label>", or logdir without a worker_logdir_root."""
        if getattr(self, "worker_logdir_root", None) is not None:
            return f"{self.worker_logdir_root}/{self.label}"
        return self.logdir

    def scale_out_facade(self, n: int) -> list:
        """Starts `n` more blocks; returns their block ids."""
        return self.start_blocks(n)

    def scale_in(self, blocks: int, max_idletime: float | None = None) -> list:
        """Scales in up to `blocks` blocks now; returns their ids. With `max_idletime` only
        blocks without tasks whose pools have been idle that long; else any block. Unlike
        Parsl's, no task is lost: a busy block is drained (its pools finish their tasks and
        exit), then cancelled."""
        return self._started_native().scale_in(blocks, max_idletime)

    def scale_in_facade(self, n: int, max_idletime: float | None = None) -> list:
        return self.scale_in(n, max_idletime=max_idletime)

    def connected_blocks(self) -> list:
        """Ids of the blocks from which a pool has registered at some point."""
        return self._native.connected_blocks() if self._native else []

    def connected_managers(self) -> list:
        """One dict per connected pool (Parsl's "manager"), with Parsl's keys: manager, block_id,
        hostname, worker_count, tasks, idle_duration, active (not held), draining, and the
        versions the pool registered with: python_version (its workers') and parsl_version
        (pervade's)."""
        return [{"manager": p["pool_id"], "block_id": p["block_id"], "hostname": p["hostname"],
                 "worker_count": p["worker_count"], "tasks": p["tasks"], "idle_duration": p["idle_seconds"],
                 "active": not p["held"], "draining": p["draining"], "python_version": p["python_version"],
                 "parsl_version": p["pervade_version"]} for p in self.pools()]

    def handle_errors(self, status: dict) -> None:
        """Applies the block error handler to the blocks' states (the strategy thread calls this
        after each poll when the handler is a function; True is the engine's own rule)."""
        if callable(self.block_error_handler):
            self.block_error_handler(self, status)

    def set_bad_state_and_fail_all(self, exception: Exception) -> None:
        """Fails the executor: every outstanding and later task on it fails with
        BadStateException naming `exception`, and its blocks are cancelled."""
        logger.error("executor %r fails: %s", self.label, exception)
        if self._executor_exception is None:
            self._executor_exception = exception
        if self._native is not None:
            self._native.fail(f"{type(exception).__name__}: {exception}")

    @property
    def server_key_file(self):
        """The file pools read the interchange's public key from (None if unencrypted)."""
        return (self._native.server_key_file or None) if self._native else None

    @property
    def hub_zmq_port(self) -> int:
        """Parsl's name for the port where this executor's monitoring messages arrive: pervade's
        pools send theirs (resource samples, node facts) over the interchange's port."""
        return self._started_native().port

    def _started_native(self):
        if self._native is None:
            raise ConfigurationError(f"executor {self.label!r} is not started: load a Config with it first")
        return self._native

    def pools(self) -> list:
        """Connected pools: pool_id, block_id, hostname, worker_count, tasks, idle_seconds, ..."""
        return self._native.pools() if self._native else []

    def outstanding(self) -> int:
        return self._native.outstanding if self._native else 0

    def hold_pool(self, pool_id: str, held: bool = True) -> bool:
        return self._native.hold(pool_id, held)

    def drain_pool(self, pool_id: str) -> bool:
        return self._native.drain(pool_id)

    @property
    def bad_state_is_set(self) -> bool:
        """True once the executor has failed (its blocks kept failing, docs/scaling.md)."""
        return self._executor_exception is not None or bool(self._native and self._native.failure())

    @property
    def executor_exception(self):
        """Why the executor failed, once bad_state_is_set (else None): the exception given to
        set_bad_state_and_fail_all, or the BadStateException its tasks fail with."""
        from ..errors import BadStateException

        if self._executor_exception is not None:
            return self._executor_exception
        return BadStateException(self.label, self._native.failure()) if self.bad_state_is_set else None

    def refusals(self) -> list:
        return self._native.refusals() if self._native else []

    def __repr__(self) -> str:
        return f"{type(self).__name__}(label={self.label!r}, provider={self.provider!r})"


class MPIExecutor(HighThroughputExecutor):
    """A HighThroughputExecutor in MPI mode (Parsl's MPIExecutor, docs/mpi.md): one pool per block,
    on the block's first node (the provider must use a SimpleLauncher), with
    `max_workers_per_block` workers. The pool finds the block's nodes (Slurm, PBS, or
    pervade-pool --mpi-hosts) and gives each task that asks for them (`parsl_resource_specification`
    with `num_nodes`, `ranks_per_node`, `num_ranks`, `launcher_options`) nodes of its own, several
    tasks sharing a node while their ranks fit its cores; the task runs with $PARSL_MPI_PREFIX
    (`mpi_launcher`: "mpiexec", "srun" or "aprun") and Parsl's other PARSL_* variables.
    Every task must have a parsl_resource_specification (InvalidResourceSpecification otherwise).

    >>> MPIExecutor(max_workers_per_block=4, mpi_launcher="srun",
    ...             provider=SlurmProvider(nodes_per_block=8, launcher=SimpleLauncher()))

    Parameters: `label` ("MPIExecutor"), `provider` (its launcher must be a SimpleLauncher),
    `max_workers_per_block` (1: tasks running at once per block), `mpi_launcher` ("mpiexec"),
    `mpi_hosts` (None: the block's nodes come from Slurm or PBS; or a list of "host" or
    "host:cores", the nodes of every block), and the HighThroughputExecutor's others except those
    that size workers on a node.
    """

    def __init__(self, label: str = "MPIExecutor", provider=None, launch_cmd: str | None = None,
                 interchange_launch_cmd=None, address: str = "127.0.0.1", loopback_address: str = "127.0.0.1",
                 worker_port: int | None = None, worker_port_range: tuple = (54000, 55000),
                 interchange_port_range: tuple = (55000, 56000), storage_access=None, working_dir: str | None = None,
                 worker_debug: bool = False, max_workers_per_block: int = 1, prefetch_capacity: int = 0,
                 heartbeat_threshold: float = 120, heartbeat_period: float = 30, drain_period: int | None = None,
                 poll_period: int = 10, address_probe_timeout: int | None = None,
                 worker_logdir_root: str | None = None, mpi_launcher: str = "mpiexec", block_error_handler=True,
                 encrypted: bool = True, remote_monitoring_radio=None, python: str | None = None,
                 short_task_prefetch: int = 16, follow_dependencies: bool = True, same_host_ipc: bool = True,
                 mpi_hosts=None):
        from ..providers import LocalProvider

        provider = provider if provider is not None else LocalProvider(launcher=_simple_launcher())
        _check_int("max_workers_per_block", max_workers_per_block, 1, 65536)
        super().__init__(
            label=label, provider=provider, launch_cmd=launch_cmd, interchange_launch_cmd=interchange_launch_cmd,
            address=address, loopback_address=loopback_address, worker_port=worker_port,
            worker_port_range=worker_port_range, interchange_port_range=interchange_port_range,
            storage_access=storage_access, working_dir=working_dir, worker_debug=worker_debug,
            max_workers_per_node=max_workers_per_block, cores_per_worker=1e-9, prefetch_capacity=prefetch_capacity,
            heartbeat_threshold=heartbeat_threshold, heartbeat_period=heartbeat_period, drain_period=drain_period,
            poll_period=poll_period, address_probe_timeout=address_probe_timeout,
            worker_logdir_root=worker_logdir_root, block_error_handler=block_error_handler, encrypted=encrypted,
            remote_monitoring_radio=remote_monitoring_radio, python=python, short_task_prefetch=short_task_prefetch,
            follow_dependencies=follow_dependencies, same_host_ipc=same_host_ipc, enable_mpi_mode=True,
            mpi_launcher=mpi_launcher, mpi_hosts=mpi_hosts)
        self.max_workers_per_block = max_workers_per_block


def _simple_launcher():
    from ..launchers import SimpleLauncher
    return SimpleLauncher()


# Parsl's executors that pervade does not have: importable (workflows import them beside the ones
# they use), not constructible: OptionalModuleMissing, as Parsl without their modules.
WorkQueueExecutor = unavailable(ParslExecutor, "WorkQueueExecutor", ["work_queue"], __name__)
FluxExecutor = unavailable(ParslExecutor, "FluxExecutor", ["flux"], __name__)
GlobusComputeExecutor = unavailable(ParslExecutor, "GlobusComputeExecutor", ["globus_compute_sdk"], __name__)

# parsl.<package>.<submodule> without importing it first (_submodules.py)
from .._submodules import submodule_getattr  # noqa: E402
__getattr__ = submodule_getattr(__name__)
del submodule_getattr
