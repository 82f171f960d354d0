"""Parsl's parsl.providers.lsf package (lsf.py)."""

# parsl.<package>.<submodule> without importing it first (_submodules.py)
from ..._submodules import submodule_getattr  # noqa: E402
__getattr__ = submodule_getattr(__name__)
del submodule_getattr
