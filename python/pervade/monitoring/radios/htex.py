"""Parsl's parsl.monitoring.radios.htex: HTEXRadio, the HighThroughputExecutor's default."""

from .base import RadioConfig


class HTEXRadio(RadioConfig):
    """Monitoring over the HighThroughputExecutor's own connection: what pervade always does."""
