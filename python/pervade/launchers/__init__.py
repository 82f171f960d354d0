"""Launchers with Parsl's names (parsl.launchers); the classes are in launchers.py."""

from .launchers import (AprunLauncher, GnuParallelLauncher, JsrunLauncher, Launcher, MpiExecLauncher, MpiRunLauncher,
                        SimpleLauncher, SingleNodeLauncher, SrunLauncher, SrunMPILauncher, WrappedLauncher)

__all__ = ["AprunLauncher", "GnuParallelLauncher", "JsrunLauncher", "Launcher", "MpiExecLauncher", "MpiRunLauncher",
           "SimpleLauncher", "SingleNodeLauncher", "SrunLauncher", "SrunMPILauncher", "WrappedLauncher"]

# parsl.<package>.<submodule> without importing it first (_submodules.py)
from .._submodules import submodule_getattr  # noqa: E402
__getattr__ = submodule_getattr(__name__)
del submodule_getattr
