"""Parsl's parsl.jobs: the states of blocks (states.py), block error handlers (error_handlers.py),
the Strategy class (strategy.py) and their error (errors.py)."""

# parsl.<package>.<submodule> without importing it first (_submodules.py)
from .._submodules import submodule_getattr  # noqa: E402
__getattr__ = submodule_getattr(__name__)
del submodule_getattr
