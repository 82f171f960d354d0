"""MonitoringHub: Parsl's monitoring configuration object. The database itself is written by the
engine (a C++ observer of the kernel's events), never by Python code on the task path."""

from __future__ import annotations

import inspect
import logging
import os
import warnings
from typing import Any, Optional
from urllib.parse import urlsplit

from ..errors import ConfigurationError

logger = logging.getLogger(__name__)

_PACKAGE_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


class MonitoringHub:
    """Turns on the monitoring database when given as Config(monitoring=MonitoringHub(...)).

    >>> Config(monitoring=MonitoringHub(workflow_name="sweep", resource_monitoring_interval=10))

    workflow_name: the workflow table's name (default: the script's file name, as Parsl).
    workflow_version: its version (default: the time the run began, to the second).
    logging_endpoint: where the database is: a "sqlite:///relative/path.db" or
        "sqlite:////absolute/path.db" URL (default: sqlite:///<Config.run_dir>/monitoring.db).
        Only SQLite is supported; anything else raises ConfigurationError at load().
    monitoring_debug: the writer's log (run_dir/NNN/database_manager.log) at DEBUG instead of INFO,
        when Config(initialize_logging=) is True or False (a FileLogging or JSONLogging sets it).
    resource_monitoring_enabled: sample each running task's processes (CPU, memory, I/O,
        context switches) into the resource table, and node facts into the node table.
    resource_monitoring_interval: seconds between samples, besides a first and a last one; 0: no
        sampling (as in Parsl).
    hub_address, hub_port, hub_port_range: deprecated in Parsl and unused: accepted with a
        DeprecationWarning.
    """

    def __init__(self, hub_address: Any = None, hub_port_range: Any = None, hub_port: Any = None,
                 workflow_name: Optional[str] = None, workflow_version: Optional[str] = None,
                 logging_endpoint: Optional[str] = None, monitoring_debug: bool = False,
                 resource_monitoring_enabled: bool = True, resource_monitoring_interval: float = 30):
        for name, value, instead in (("hub_address", hub_address, "nothing: pervade's workers report over the pool link"),
                                     ("hub_port", hub_port, "nothing: pervade's workers report over the pool link"),
                                     ("hub_port_range", hub_port_range, "HighThroughputExecutor.interchange_port_range")):
            if value is not None:
                message = f"MonitoringHub.{name} is deprecated and unused; use {instead}"
                warnings.warn(message, DeprecationWarning, stacklevel=2)
                logger.warning(message)
        for name, value in (("workflow_name", workflow_name), ("workflow_version", workflow_version),
                            ("logging_endpoint", logging_endpoint)):
            if value is not None and not isinstance(value, str):
                raise TypeError(f"MonitoringHub {name} must be a str or None, got {value!r}")
        if not isinstance(resource_monitoring_interval, (int, float)) or isinstance(resource_monitoring_interval, bool) \
                or resource_monitoring_interval < 0:
            raise TypeError(f"MonitoringHub resource_monitoring_interval must be a number >= 0, got "
                            f"{resource_monitoring_interval!r}")
        self.hub_address = hub_address
        self.hub_port = hub_port
        self.hub_port_range = hub_port_range
        self.workflow_name = workflow_name
        self.workflow_version = workflow_version
        self.logging_endpoint = logging_endpoint
        self.monitoring_debug = bool(monitoring_debug)
        self.resource_monitoring_enabled = bool(resource_monitoring_enabled)
        self.resource_monitoring_interval = resource_monitoring_interval  # as given, as in Parsl (10 stays 10)

    def __repr__(self) -> str:
        return (f"MonitoringHub(workflow_name={self.workflow_name!r}, workflow_version={self.workflow_version!r}, "
                f"logging_endpoint={self.logging_endpoint!r}, "
                f"resource_monitoring_enabled={self.resource_monitoring_enabled!r}, "
                f"resource_monitoring_interval={self.resource_monitoring_interval!r})")

    def database_path(self, config_run_dir: str) -> str:
        """The SQLite file of logging_endpoint (default: <config_run_dir>/monitoring.db, as Parsl)."""
        if self.logging_endpoint is None:
            return os.path.join(config_run_dir, "monitoring.db")
        url = self.logging_endpoint
        scheme = urlsplit(url).scheme if "://" in url else ""
        if not scheme:
            raise ConfigurationError(f"MonitoringHub logging_endpoint {url!r} is not a database URL; "
                                     "expected sqlite:///path/to/monitoring.db")
        if scheme != "sqlite":
            raise ConfigurationError(f"MonitoringHub logging_endpoint {url!r}: database {scheme!r} is not supported; "
                                     "pervade writes SQLite (sqlite:///path/to/monitoring.db)")
        if not url.startswith("sqlite:///") or len(url) == len("sqlite:///"):
            raise ConfigurationError(f"MonitoringHub logging_endpoint {url!r} names no file; "
                                     "expected sqlite:///relative/path.db or sqlite:////absolute/path.db")
        return url[len("sqlite:///"):]

    def resolved_workflow_name(self) -> str:
        """workflow_name, else the first file on the stack outside pervade (the script), as Parsl."""
        if self.workflow_name is not None:
            return self.workflow_name
        for frame in inspect.stack(0):
            path = os.path.abspath(frame.filename)
            if not path.startswith(_PACKAGE_DIR + os.sep) and not frame.filename.startswith("<"):
                return os.path.basename(path)
        return "unnamed"

    def log_file(self, run_dir: str, initialize_logging) -> Optional[tuple[str, bool, int]]:
        """Where the writer logs, as Parsl's database manager: (path, JSON lines?, level), or None.
        run_dir is the run's own (run_dir/NNN); initialize_logging the Config's."""
        from ..logconfigs.file import FileLogging
        from ..logconfigs.json import JSONLogging
        if isinstance(initialize_logging, bool):
            level = logging.DEBUG if self.monitoring_debug else logging.INFO
            return os.path.join(run_dir, "database_manager.log"), False, level
        if isinstance(initialize_logging, JSONLogging):
            return os.path.join(run_dir, "database_manager.jsonlog"), True, initialize_logging.level
        if isinstance(initialize_logging, FileLogging):
            return os.path.join(run_dir, "database_manager.log"), False, initialize_logging.level
        return None  # NoopLogging, or a LogConfig of the user's: nothing written by the engine

    def native_observer(self, config_run_dir: str, run_dir: str = "", initialize_logging=True, run_log=None):
        """The engine's database writer for this hub; ConfigurationError if the database is unusable.
        It logs into run_dir (log_file) and reports its troubles to run_log (the run's LogObserver)."""
        from .. import _native
        path = self.database_path(config_run_dir)
        directory = os.path.dirname(path)
        if directory:
            try:
                os.makedirs(directory, exist_ok=True)
            except OSError as e:
                raise ConfigurationError(f"MonitoringHub logging_endpoint {self.logging_endpoint or path!r}: "
                                         f"cannot create {directory!r}: {e}") from None
        log_path, log_json, log_level = (self.log_file(run_dir, initialize_logging) if run_dir else None) \
            or ("", False, logging.INFO)
        return _native.monitoring_db(path, self.resolved_workflow_name(), self.workflow_version or "",
                                     self.resource_monitoring_enabled, float(self.resource_monitoring_interval),
                                     log_path, log_json, log_level, run_log)
