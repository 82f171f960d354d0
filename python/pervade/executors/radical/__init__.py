"""Parsl's parsl.executors.radical: RadicalPilotExecutor, which pervade does not have (a stand-in:
making one raises OptionalModuleMissing, see pervade/_unavailable.py)."""

from ..._unavailable import unavailable
from .. import ParslExecutor

RadicalPilotExecutor = unavailable(ParslExecutor, "RadicalPilotExecutor", ["radical.pilot"], __name__)

__all__ = ["RadicalPilotExecutor"]

# parsl.<package>.<submodule> without importing it first (_submodules.py)
from ..._submodules import submodule_getattr  # noqa: E402
__getattr__ = submodule_getattr(__name__)
del submodule_getattr
