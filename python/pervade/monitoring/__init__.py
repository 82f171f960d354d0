"""Monitoring: the MonitoringHub that writes a run's events to a SQLite database with Parsl's
schema (see docs/monitoring.md)."""

from .monitoring import MonitoringHub

__all__ = ["MonitoringHub"]
