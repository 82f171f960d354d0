"""Parsl's parsl.monitoring.radios.multiprocessing: MultiprocessingQueueRadio (configuration only)."""

from .base import RadioConfig


class MultiprocessingQueueRadio(RadioConfig):
    """Parsl sends monitoring messages through a multiprocessing queue; pervade reports them in
    process (pervade.monitoring.radios)."""
