"""Parsl's parsl.launchers.base: the Launcher base class (defined in pervade.launchers.launchers),
which users subclass for their own launchers."""

from .launchers import Launcher

__all__ = ["Launcher"]
