"""Config: what a DataFlowKernel runs on and how it treats failures (Parsl's parameters)."""

from __future__ import annotations

from typing import Callable, Iterable, Literal, Optional, Union

import typeguard

from .errors import ConfigurationError
from .executors import ParslExecutor, ThreadPoolExecutor, written_in_python
from .logconfigs.base import LogConfig


def check_max_unfinished_tasks(value) -> None:
    if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value < 1):
        raise ConfigurationError(f"max_unfinished_tasks must be None (no limit) or an int >= 1, got {value!r}")


class Config:
    """Configuration of a DataFlowKernel.

    >>> Config(executors=[ThreadPoolExecutor(max_threads=4)], retries=2, exit_mode="wait")

    executors: executors with unique labels (default: one ThreadPoolExecutor).
    retries: a failing task is retried while its summed failure cost is <= retries.
    retry_handler: f(exception, task_record) -> cost of this failure (default cost 1).
    run_dir: where numbered run directories (000, 001, ...) with logs are made.
    exit_mode: what leaving `with pervade.load(config):` does: "cleanup" (default), "wait"
        (wait for all tasks, then clean up), or "skip" (nothing).
    internal_tasks_max_threads: threads for join apps and lifted future operations.
    max_unfinished_tasks: back-pressure (pervade only): at most this many tasks submitted and
        not yet finished; an app call beyond it waits (GIL released, Ctrl-C works) until one
        finishes. Calls made inside tasks running on threads, join-app bodies and done-callbacks
        run by the engine never wait (they could deadlock), so they may pass the limit.
        None (default): no limit, as in Parsl.
    garbage_collect: accepted for compatibility; finished task records are always freed.
    initialize_logging: True (default): the engine writes its records at INFO and above (the
        run, failures, blocks, pools), with pervade's Python records, to <run_dir>/pervade.log;
        FileLogging(level=logging.DEBUG) adds every task event; False: no log file; or a
        pervade.logconfigs LogConfig: FileLogging(level=, format_string=) (pervade.log),
        JSONLogging(level=) (pervade.jsonlog, one JSON object a line), NoopLogging(), or your
        own. pervade never sets the level of the root or the "pervade" logger (docs/logging.md).
    memoizer: a pervade.memoization.BasicMemoizer (checkpoint_mode, checkpoint_files,
        checkpoint_period, memoize), as in current Parsl; default: memoization in memory only.
    app_cache, checkpoint_files, checkpoint_mode, checkpoint_period: the same settings the way
        older Parsl took them (app_cache is BasicMemoizer's memoize); not together with memoizer.
        See docs/python.md, "Memoization and checkpoints".
    strategy: how executors with blocks scale them: "simple" (default), "htex_auto_scale", or
        "none" (keep init_blocks); every strategy_period seconds (default 5); blocks idle for
        max_idletime seconds (default 120) are drained and cancelled (docs/scaling.md).
    std_autopath(task_record, "stdout"|"stderr") -> path replaces the AUTO_LOGNAME path.
    monitoring, usage_tracking, project_name, dependency_resolver: accepted and stored.
    """

    def __init__(self, executors: Optional[Iterable[ParslExecutor]] = None, memoizer=None, dependency_resolver=None,
                 exit_mode: str = "cleanup", garbage_collect: bool = True, internal_tasks_max_threads: int = 10,
                 retries: int = 0, retry_handler: Optional[Callable] = None, run_dir: str = "runinfo",
                 std_autopath: Optional[Callable] = None, strategy: Optional[str] = "simple",
                 strategy_period: float = 5, max_idletime: float = 120.0, monitoring=None, usage_tracking: int = 0,
                 project_name: Optional[str] = None, initialize_logging: Union[bool, LogConfig] = True,
                 app_cache: bool = True,
                 checkpoint_files=None, checkpoint_mode=None, checkpoint_period=None,
                 max_unfinished_tasks: Optional[int] = None):
        executors = list(executors) if executors else [ThreadPoolExecutor()]
        for e in executors:
            if not isinstance(e, ParslExecutor):
                raise ConfigurationError(f"Config executors must be executor objects, got {e!r}")
            if type(e).submit is not ParslExecutor.submit and not written_in_python(e):
                raise ConfigurationError(
                    f"{type(e).__name__} overrides submit(), which is never called: its tasks run in pervade's "
                    "engine. An executor written in Python subclasses ParslExecutor (docs/python.md)")
        labels = [e.label for e in executors]
        duplicates = sorted({label for label in labels if labels.count(label) > 1})
        if duplicates:
            raise ConfigurationError("Executors must have unique labels ({})".format(
                ", ".join(f"label={label!r}" for label in duplicates)))
        if "_parsl_internal" in labels:
            raise ConfigurationError("the executor label '_parsl_internal' is reserved")
        # Parsl's Config is typeguard-checked: an option of the wrong type is typeguard's
        # TypeCheckError (values of the right type that pervade refuses are ConfigurationErrors).
        for value, annotation in ((exit_mode, Literal["cleanup", "skip", "wait"]), (garbage_collect, bool),
                                  (internal_tasks_max_threads, int), (retries, int), (run_dir, str),
                                  (strategy, Optional[str]), (strategy_period, Union[float, int]),
                                  (max_idletime, float), (usage_tracking, int), (project_name, Optional[str])):
            typeguard.check_type(value, annotation)
        if not isinstance(retries, int) or isinstance(retries, bool) or retries < 0:
            raise ConfigurationError(f"retries must be an int >= 0, got {retries!r}")
        if retry_handler is not None and not callable(retry_handler):
            raise ConfigurationError(f"retry_handler must be callable, got {retry_handler!r}")
        if not isinstance(internal_tasks_max_threads, int) or internal_tasks_max_threads < 1:
            raise ConfigurationError(f"internal_tasks_max_threads must be an int >= 1, got {internal_tasks_max_threads!r}")
        check_max_unfinished_tasks(max_unfinished_tasks)
        if not isinstance(initialize_logging, (bool, LogConfig)):
            raise ConfigurationError("initialize_logging must be True, False or a pervade.logconfigs LogConfig, "
                                     f"got {initialize_logging!r}")
        if usage_tracking not in (0, 1, 2, 3):
            raise ConfigurationError(f"Usage Tracking values must be 0, 1, 2, or 3 and not {usage_tracking}")
        if strategy is None:
            strategy = "none"  # Parsl's deprecated spelling of 'none'
        if strategy not in ("none", "simple", "htex_auto_scale"):
            raise ConfigurationError(f"strategy must be 'none', 'simple' or 'htex_auto_scale', got {strategy!r}")
        if not isinstance(strategy_period, (int, float)) or isinstance(strategy_period, bool) or not strategy_period > 0:
            raise ConfigurationError(f"strategy_period must be a number of seconds > 0, got {strategy_period!r}")
        if not isinstance(max_idletime, (int, float)) or isinstance(max_idletime, bool) or not max_idletime >= 0:
            raise ConfigurationError(f"max_idletime must be a number of seconds >= 0, got {max_idletime!r}")
        _memoizer(memoizer, app_cache, checkpoint_files, checkpoint_mode, checkpoint_period)  # errors: now
        self._executors = tuple(executors)
        self.memoizer = memoizer
        self.dependency_resolver = dependency_resolver
        self.exit_mode = exit_mode
        self.garbage_collect = garbage_collect
        self.internal_tasks_max_threads = internal_tasks_max_threads
        self.retries = retries
        self.retry_handler = retry_handler
        self.run_dir = run_dir
        self.std_autopath = std_autopath
        self.strategy = strategy
        self.strategy_period = strategy_period
        self.max_idletime = max_idletime
        self.monitoring = monitoring
        self.usage_tracking = usage_tracking
        self.project_name = project_name
        self.initialize_logging = initialize_logging
        self.app_cache = app_cache
        self.checkpoint_files = checkpoint_files
        self.checkpoint_mode = checkpoint_mode
        self.checkpoint_period = checkpoint_period
        self.max_unfinished_tasks = max_unfinished_tasks

    @property
    def executors(self):
        return self._executors

    @property
    def _memo(self):
        """The BasicMemoizer in effect, made when a kernel loads this config: workflows set
        memoizer, checkpoint_files (get_last_checkpoint() to restart), ... on a config they
        built or imported before loading it."""
        return _memoizer(self.memoizer, self.app_cache, self.checkpoint_files, self.checkpoint_mode,
                         self.checkpoint_period)

    def __repr__(self) -> str:
        return (f"Config(executors={list(self._executors)!r}, retries={self.retries}, "
                f"run_dir={self.run_dir!r}, exit_mode={self.exit_mode!r})")


def _memoizer(memoizer, app_cache, checkpoint_files, checkpoint_mode, checkpoint_period):
    """The BasicMemoizer in effect: the one given (current Parsl), or one made of the older
    Config(app_cache=, checkpoint_*=) options. Both at once is ambiguous."""
    from .memoization import BasicMemoizer
    old_style = checkpoint_files is not None or checkpoint_mode is not None or checkpoint_period is not None
    if memoizer is None:
        return BasicMemoizer(checkpoint_files=checkpoint_files, checkpoint_mode=checkpoint_mode,
                             checkpoint_period=checkpoint_period, memoize=app_cache)
    if not isinstance(memoizer, BasicMemoizer):
        raise ConfigurationError(f"memoizer must be a BasicMemoizer (or a subclass of it), got {memoizer!r}: pervade's "
                                 "memo table is in the engine, so a Memoizer written from scratch cannot run; "
                                 "override BasicMemoizer.check_memo to decide per call")
    if old_style or app_cache is not True:
        raise ConfigurationError("give the checkpoint settings either to memoizer=BasicMemoizer(...) or as "
                                 "Config(app_cache=..., checkpoint_mode=..., checkpoint_files=..., "
                                 "checkpoint_period=...), not both")
    return memoizer
