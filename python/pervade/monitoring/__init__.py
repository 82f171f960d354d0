"""Monitoring: the MonitoringHub that writes a run's events to a SQLite database with Parsl's
schema (see docs/monitoring.md)."""

from .monitoring import MonitoringHub

__all__ = ["MonitoringHub"]

# parsl.<package>.<submodule> without importing it first (_submodules.py)
from .._submodules import submodule_getattr  # noqa: E402
__getattr__ = submodule_getattr(__name__)
del submodule_getattr
