"""Parsl's parsl.data_provider: File (files.py) and the staging providers (docs/staging.md):
staging (the Staging base class), data_manager (default_staging), file_noop, http, ftp, zip,
rsync, globus."""

# parsl.<package>.<submodule> without importing it first (_submodules.py)
from .._submodules import submodule_getattr  # noqa: E402
__getattr__ = submodule_getattr(__name__)
del submodule_getattr
