"""Parsl's parsl.monitoring.errors."""

from ..errors import ParslError


class MonitoringRouterStartError(ParslError):
    """A radio's receiver process did not start: it did not report ready in time, or ended first
    (`reason` says which)."""

    def __init__(self, reason: str = ""):
        super().__init__(reason)
        self.reason = reason

    def __str__(self) -> str:
        return "Monitoring router failed to start" + (f": {self.reason}" if self.reason else "")


class RadioRequiredError(ParslError):
    """Remote task monitoring was asked for without a radio to carry it."""

    def __str__(self) -> str:
        return "A radio must be configured for remote task monitoring"


__all__ = ["MonitoringRouterStartError", "RadioRequiredError"]
