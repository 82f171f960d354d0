"""Parsl's parsl.tests, for the part of it that scripts import: the test configs that Parsl's
documentation loads (`from parsl.tests.configs.local_threads import config`). Parsl's tests
themselves are Parsl's: `pervade run --parsl-tests` runs them (docs/compat.md)."""

# parsl.<package>.<submodule> without importing it first (_submodules.py)
from .._submodules import submodule_getattr  # noqa: E402
__getattr__ = submodule_getattr(__name__)
del submodule_getattr
