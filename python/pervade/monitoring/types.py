"""Parsl's parsl.monitoring.types: the shape of a monitoring message, for type annotations."""

from typing import Any, Dict, Tuple

from .message_type import MessageType

MonitoringMessage = Dict[str, Any]
TaggedMonitoringMessage = Tuple[MessageType, MonitoringMessage]  # what radios carry

__all__ = ["MonitoringMessage", "TaggedMonitoringMessage"]
