"""Parsl's parsl.monitoring.radios.filesystem: FilesystemRadio (configuration only)."""

from .base import RadioConfig


class FilesystemRadio(RadioConfig):
    """Parsl sends monitoring messages as files in the run directory; pervade uses its pool link
    (pervade.monitoring.radios)."""
