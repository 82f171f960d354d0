"""Parsl's parsl.tests.configs: local_threads and htex_local, each with `config` and
`fresh_config()` (a new Config each call, as Parsl's test configs have)."""

# parsl.<package>.<submodule> without importing it first (_submodules.py)
from ..._submodules import submodule_getattr  # noqa: E402
__getattr__ = submodule_getattr(__name__)
del submodule_getattr
