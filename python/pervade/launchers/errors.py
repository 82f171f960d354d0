"""Parsl's parsl.launchers.errors: what a provider raises when its launcher is not a Launcher."""

from ..errors import ConfigurationError
from ..providers.errors import ExecutionProviderException

__all__ = ["BadLauncher"]


class BadLauncher(ExecutionProviderException, TypeError, ConfigurationError):
    """A provider was given something that is not a Launcher: a TypeError too, as in Parsl, and a
    ConfigurationError, as pervade's other bad options."""

    def __init__(self, launcher):
        super().__init__(launcher)
        self.launcher = launcher

    def __str__(self) -> str:
        return f"Bad Launcher provided: {self.launcher}, expecting a parsl.launcher.launcher.Launcher"
