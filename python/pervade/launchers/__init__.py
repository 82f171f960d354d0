"""Launchers with Parsl's names (parsl.launchers); the classes are in launchers.py."""

from .launchers import (AprunLauncher, GnuParallelLauncher, JsrunLauncher, Launcher, MpiExecLauncher, MpiRunLauncher,
                        SimpleLauncher, SingleNodeLauncher, SrunLauncher, SrunMPILauncher, WrappedLauncher)

__all__ = ["AprunLauncher", "GnuParallelLauncher", "JsrunLauncher", "Launcher", "MpiExecLauncher", "MpiRunLauncher",
           "SimpleLauncher", "SingleNodeLauncher", "SrunLauncher", "SrunMPILauncher", "WrappedLauncher"]
