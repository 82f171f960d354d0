"""Ready-made configs with Parsl's module names: each module defines `config`.

    from pervade.configs.local_threads import config     # or htex_local
    pervade.load(config)
"""

# parsl.<package>.<submodule> without importing it first (_submodules.py)
from .._submodules import submodule_getattr  # noqa: E402
__getattr__ = submodule_getattr(__name__)
del submodule_getattr
